"""What the Evaluate page costs per stored model, now that its analysis is computed once (run by hand; not a test).

    DIGITLAB_DATA_DIR=../shared/mnist DIGITLAB_MODEL_DIR=/tmp/bench-eval/models python bench/bench_evaluate.py [--train]

For each stored model: the analysis as the training worker computes it once (analysis.compute; then again with its
untrained start's accuracy already in the store's table, as for a second run of one recipe and seed), reading it back
(analysis.load, what every later visitor or server pays), then the Evaluate page under Streamlit's AppTest with
the analysis on disk and the server's memory cleared (first paint; target <= 1.5 s) and once more (a rerun),
and each section opened once: wall and CPU seconds for each. ``--train`` first trains the three models of
bench_evaluate.txt (cnn-fast 1 epoch on 20,000 images, simple_net 3 epochs, linear-better 5 epochs) into an
empty store.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digitlab import analysis  # noqa: E402
from digitlab.data import load_mnist  # noqa: E402
from digitlab.models import PRESETS  # noqa: E402
from digitlab.store import ModelStore  # noqa: E402
from digitlab.train import device_label  # noqa: E402

PAGE = str(ROOT / "pages" / "7_Evaluate.py")
RECIPES = [PRESETS["cnn-fast"].with_(epochs=1, train_limit=20_000), PRESETS["simple_net"].with_(epochs=3),
           PRESETS["linear-better"].with_(epochs=5)]


def timed(fn, *args):
    t, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t, time.process_time() - cpu


def train(store: ModelStore, data) -> None:
    from digitlab.runs.queue import JobQueue

    queue = JobQueue(store)
    for config in RECIPES:
        snap = queue.wait(queue.submit(config, data, owner="bench").id, timeout=900)
        print(f"trained {config.title} ({config.preset}): {snap.state}")


def page_run(model_id: str, section: str | None = None, clear: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds for one run of the Evaluate page on this model (AppTest, in this process). CPU time is
    what the server spends: on a machine shared with other work it is the steadier figure."""
    from streamlit.testing.v1 import AppTest

    from digitlab.ui import analyses

    if clear:  # a server that has not seen this model yet: only the file on disk
        analyses._model_analysis.clear()
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.session_state["eval_model"] = model_id
    if section:
        at.session_state["eval_section"] = section
    t, cpu = time.perf_counter(), time.process_time()
    at.run()
    seconds = time.perf_counter() - t, time.process_time() - cpu
    if at.exception or at.error:
        raise SystemExit(f"the page failed on {model_id}: {at.exception or [e.value for e in at.error]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train the three benchmark models into an empty store")
    args = parser.parse_args()
    data = load_mnist(allow_download=False)
    store = ModelStore()
    if args.train and not store.list():
        train(store, data)
    infos = store.list()
    if not infos:
        raise SystemExit(f"no models in {store.root}: run with --train, or point DIGITLAB_MODEL_DIR at a store")
    print(f"device {device_label()}, torch threads {torch.get_num_threads()}, data {data.source.label}, "
          f"{len(infos)} models in {store.root}, load average {os.getloadavg()[0]:.1f}")
    page_run(infos[-1].id)  # imports, the data and the page itself: paid once per server, not per model
    for info in infos:
        model, _ = store.load(info.id)
        (store.root / analysis.STARTS_FILE).unlink(missing_ok=True)  # its untrained start not seen yet (as before)
        fresh, t_compute, cpu_compute = timed(analysis.compute, store, info.id, data, model)
        _, t_known, cpu_known = timed(analysis.compute, store, info.id, data, model)  # a run from a start seen before
        analysis.save(store, fresh)
        _, t_load, _ = timed(analysis.load, store, info.id, data)
        first = page_run(info.id, clear=True)
        again = page_run(info.id)
        sections = {s: page_run(info.id, s) for s in ("Per-class scores", "Confident mistakes", "Confidence threshold",
                                                    "Robustness", "What the layers see", "Leaderboard")}
        print(f"{info.config.title:<24} {len(fresh.predictions.targets):>6,} test images, "
              f"accuracy {fresh.predictions.accuracy:.2%} | analysis computed once {t_compute:.2f}s "
              f"(CPU {cpu_compute:.2f}s, 2 threads), start seen before {t_known:.2f}s (CPU {cpu_known:.2f}s, "
              f"{cpu_compute / max(cpu_known, 1e-9):.1f}x less), "
              f"read back {t_load * 1000:.0f} ms | Evaluate first paint {first[0]:.2f}s (CPU {first[1]:.2f}s), "
              f"rerun {again[0]:.2f}s (CPU {again[1]:.2f}s) | sections, wall/CPU: "
              + ", ".join(f"{s} {w:.2f}/{c:.2f}s" for s, (w, c) in sections.items()))


if __name__ == "__main__":
    main()
