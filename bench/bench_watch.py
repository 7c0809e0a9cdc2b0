"""Watch it learn (issue 16 #4): publishing the live pictures must not slow training by more than 5%.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_watch.py

Each config is trained the way the worker trains it -- fit(), every message turned into its JSON line -- with the
worker's between-batches hook publishing the live pictures (the first layer and the answers on 16 test digits,
about once a second), and without any hook (fit as it was before pictures and pause), alternating, ``--repeats``
times each, in this one process. The ratio is the best time with publishing over the best without (target <= 1.05;
the best of several, as the machine is shared). A sub-second run (linear-better) cannot resolve 5% on a shared
machine by its wall clock alone, so the time spent inside the hook is added up too ("in the hook"): what watching
costs the run, measured directly. The two runs' weights are compared too: the
pictures are taken in eval mode without gradients, so a watched run must end bit for bit where an unwatched one does.
Results go first under "## Watch it learn" in bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import print_and_record  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.live import Publisher  # noqa: E402
from digitlab.models import PRESETS, build_model  # noqa: E402
from digitlab.runs.execute import worker_threads  # noqa: E402
from digitlab.runs.spec import Progress, to_line  # noqa: E402
from digitlab.runs.steering import BetweenBatches, Steering  # noqa: E402
from digitlab.train import device_label, fit  # noqa: E402

TARGET = 1.05
CONFIGS = {  # a few seconds each on a laptop core: long enough for several pictures a run
    "linear-better": PRESETS["linear-better"],
    "simple_net": PRESETS["simple_net"].with_(epochs=3),
    "mlp-128-64": PRESETS["mlp-128-64"].with_(epochs=1),
    "cnn-seed": PRESETS["cnn-seed"].with_(epochs=1, train_limit=10_000),
}


class Timed:
    """The worker's hook, with the time spent inside it added up: what watching costs the run, measured directly."""

    def __init__(self, hook):
        self.hook, self.seconds = hook, 0.0

    def __call__(self, loss, preds, targets) -> None:
        started = time.perf_counter()
        self.hook(loss, preds, targets)
        self.seconds += time.perf_counter() - started


def train_once(config, data, publish: bool) -> tuple[float, float, int, dict, float]:
    """One run as the worker makes it: (wall seconds, CPU seconds, pictures published, final weights, seconds spent
    in the hook, building the Publisher included)."""
    sink = open(os.devnull, "w")
    sent = {"watch": 0}

    def emit(message) -> None:  # what the worker does with every message: one JSON line
        kind = type(message).__name__.lower()
        sent[kind] = sent.get(kind, 0) + 1
        sink.write(to_line(message) + "\n")

    model = build_model(config)
    wall, cpu = time.perf_counter(), time.process_time()
    hook = {}
    if publish:  # built inside the timed run, as run_job builds it: its 16 test digits are part of the cost
        hook["between_batches"] = Timed(BetweenBatches(model, "bench", emit, Steering(),
                                                       Publisher(model, config, data, emit, "bench")))
        hook["between_batches"].seconds = time.perf_counter() - wall
    for ev in fit(model, config, data, **hook):
        if ev.kind == "batch":  # the worker sends its progress line too
            emit(Progress("bench", ev))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sink.close()
    in_hook = hook["between_batches"].seconds if publish else 0.0
    return wall, cpu, sent["watch"], {k: v.detach().clone() for k, v in model.state_dict().items()}, in_hook


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("DIGITLAB_THREADS", str(worker_threads()))  # as in the worker: every core but one
    data = load_mnist(allow_download=False)
    assert data.source.kind == "folder", f"the benchmark needs the full MNIST: {data.source.label}"
    command = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_watch.py " + " ".join(sys.argv[1:])
    out = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {device_label()} · "
           f"{os.cpu_count()} cores · torch {torch.__version__}", "", f"`{command.strip()}`", "",
           f"Best of {args.repeats} runs each, alternating; the ratio is the time with the worker's hook publishing the "
           "live pictures over the time of fit without any hook (wall clock; CPU time beside it). In the hook: the "
           "share of a watched run's wall clock spent inside the hook (pause checks, pictures, their JSON lines, the "
           "Publisher built), timed directly (median run): the part of the ratio that is watching, not the machine.",
           "",
           "| config | without (s) | with (s) | pictures a run | ratio (wall) | ratio (CPU) | in the hook | same weights "
           "| target | |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name in [c for c in args.configs.split(",") if c]:
        config = CONFIGS[name]
        train_once(config.with_(train_limit=2048, epochs=1), data, True)  # warm up: kernels, caches
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for publish in (False, True):
                runs[publish].append(train_once(config, data, publish))
        wall = {p: min(r[0] for r in runs[p]) for p in runs}
        cpu = {p: min(r[1] for r in runs[p]) for p in runs}
        pictures = statistics.median(r[2] for r in runs[True])
        hook_share = statistics.median(r[4] / r[0] for r in runs[True])  # of each watched run's wall clock
        same = all(torch.equal(runs[True][0][3][k], runs[False][0][3][k]) for k in runs[False][0][3])
        ratio, cpu_ratio = wall[True] / wall[False], cpu[True] / cpu[False]
        verdict = "met" if ratio <= TARGET else "**not met**"
        print(f"  {name}: without {wall[False]:.2f} s, with {wall[True]:.2f} s ({pictures:.0f} pictures), "
              f"ratio {ratio:.3f} (CPU {cpu_ratio:.3f}), in the hook {hook_share:.2%}, same weights: {same}",
              flush=True)
        out.append(f"| {name} | {wall[False]:.2f} | {wall[True]:.2f} | {pictures:.0f} | {ratio:.3f} | {cpu_ratio:.3f} | "
                   f"{hook_share:.2%} | {'yes' if same else '**no**'} | <= {TARGET:.2f} | {verdict} |")
    print_and_record("## Watch it learn", out, keep=not args.no_record)


if __name__ == "__main__":
    main()
