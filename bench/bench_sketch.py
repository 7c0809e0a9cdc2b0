"""Sketch Pad latency: one 280x280 canvas -> MNIST-style 28x28 -> every stored model's answer.

    DIGITLAB_DATA_DIR=../shared/mnist DIGITLAB_MODEL_DIR=/tmp/h6/models python bench/bench_sketch.py [--n 200]

The target is 50 ms at p95 on the server, preprocessing plus all models. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import record  # noqa: E402

from digitlab import preprocess as pp  # noqa: E402
from digitlab.data import load_mnist  # noqa: E402
from digitlab.store import ModelStore  # noqa: E402
from digitlab.train import device_label  # noqa: E402


def canvas_of(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(90, 260))
    y, x = (int(v) for v in rng.integers(0, 280 - size + 1, size=2))
    im = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[y : y + size, x : x + size, :3] = im[..., None]
    rgba[..., 3] = 255
    return rgba


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--while-training", action="store_true",
                    help="measure while the job queue trains a CNN in this process, as in a class that trains live")
    args = ap.parse_args()
    store = ModelStore()
    models = [store.load(i.id) for i in store.list()]
    if not models:
        sys.exit(f"no models in {store.root}: train some first")
    data = load_mnist(allow_download=False)
    rng = np.random.default_rng(0)
    canvases = [canvas_of(data.test_images[i].numpy(), rng) for i in range(args.n)]
    labels = data.test_labels[: args.n].tolist()
    job = None
    if args.while_training:
        import tempfile

        from digitlab.models import PRESETS
        from digitlab.runs.queue import JobQueue

        queue = JobQueue(ModelStore(tempfile.mkdtemp(prefix="bench-sketch-")))
        job = queue.submit(PRESETS["cnn-seed"].with_(epochs=1), data, owner="bench")
        time.sleep(3)  # let it get going
    for c in canvases[:5]:  # warm-up: first calls allocate
        pp.answer_all(models, pp.from_canvas(c).image)
    pre, total, right = [], [], {m[1].id: 0 for m in models}
    for c, y in zip(canvases, labels):
        t0 = time.perf_counter()
        result = pp.from_canvas(c)
        t1 = time.perf_counter()
        answers = pp.answer_all(models, result.image)
        t2 = time.perf_counter()
        pre.append((t1 - t0) * 1e3)
        total.append((t2 - t0) * 1e3)
        for a in answers:
            right[a.info.id] += int(a.info.config.task != "3v7" and a.predicted == str(y))
    if job is not None:
        queue.cancel(job.id, "bench")
        queue.wait(job.id, timeout=120)  # the worker thread must end before the interpreter does
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    kinds = ", ".join(f"{m[1].config.kind} ({m[1].config.preset})" for m in models)
    lines = [
        f"### {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} · {platform.node()} · {device_label()} · "
        f"torch threads {torch.get_num_threads()}",
        "",
        f"`DIGITLAB_MODEL_DIR={store.root} python bench/bench_sketch.py --n {args.n}"
        + (" --while-training`: a cnn-seed CNN trains in the same process meanwhile" if job else "`"),
        "",
        f"{len(models)} stored models: {kinds}. {args.n} real MNIST test digits drawn at random sizes and places "
        "on a 280x280 canvas.",
        "",
        "| step | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|",
        f"| preprocessing | {p(pre, 50):.2f} | {p(pre, 95):.2f} | {max(pre):.2f} |",
        f"| preprocessing + every model | {p(total, 50):.2f} | {p(total, 95):.2f} | {max(total):.2f} |",
        "",
        "Accuracy of the ten-class models on these redrawn digits: "
        + ", ".join(f"{m[1].config.preset} {right[m[1].id] / args.n:.1%}" for m in models if m[1].config.task != "3v7"),
        "",
        f"Target p95 <= 50 ms: {'met' if p(total, 95) <= 50 else 'NOT met'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        record("## Sketch Pad", text)


if __name__ == "__main__":
    main()
