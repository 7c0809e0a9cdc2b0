"""Fashion-MNIST figures of issue 17: each preset trained in full on the harder dataset, beside MNIST's.

    DIGITLAB_DATA_DIR=../shared/mnist DIGITLAB_FASHION_DIR=../shared/fashion-mnist python bench/bench_fashion.py

1. Loading Fashion-MNIST from its four .gz files (best of three; target <= 1.5 s).
2. Every ten-class preset trained on Fashion-MNIST's 60,000 training images and scored on its 10,000 test images
   (targets: mlp-128-64 >= 88.0%, cnn-seed >= 90.0%, cnn-fast >= 90.0% in its one epoch, cnn-best >= 93.0%).
3. (--pairs) The linear model on two classes: Shirt vs T-shirt/top (the hard pair) and Trouser vs Ankle boot.

Results go first under "## Fashion-MNIST" in bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import record  # noqa: E402

from digitlab.data import load_dataset  # noqa: E402
from digitlab.models import PRESETS, build_model  # noqa: E402
from digitlab.train import device_label, fit  # noqa: E402

TARGETS = {"mlp-128-64": 0.88, "cnn-seed": 0.90, "cnn-fast": 0.90, "cnn-best": 0.93}


def load_seconds(folder: Path) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        load_dataset("fashion", folder, allow_download=False)
        best = min(best, time.perf_counter() - t)
    return best


def train(preset: str, data) -> tuple[float, float, int]:
    """(test accuracy after the preset's last epoch, seconds, epochs)."""
    config = PRESETS[preset]
    model = build_model(config)
    t, last = time.perf_counter(), None
    for ev in fit(model, config, data):
        if ev.kind == "epoch":
            last = ev
    return last.test_accuracy, time.perf_counter() - t, config.epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(TARGETS))
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    folder = Path(os.environ.get("DIGITLAB_FASHION_DIR") or ROOT.parent / "shared" / "fashion-mnist")
    fashion = load_dataset("fashion", folder, allow_download=False)
    assert fashion.source.kind == "folder", f"the benchmark needs the full Fashion-MNIST: {fashion.source.label}"
    command = "DIGITLAB_FASHION_DIR=../shared/fashion-mnist python bench/bench_fashion.py " + " ".join(sys.argv[1:])
    out = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {device_label()} · "
           f"{os.cpu_count()} cores · torch {torch.__version__}", "", f"`{command.strip()}`", ""]

    seconds = load_seconds(folder)
    print(f"loading Fashion-MNIST from .gz: {seconds:.2f} s", flush=True)
    out += [f"Loading Fashion-MNIST from its four .gz files: **{seconds:.2f} s** (best of 3; target <= 1.5 s: "
            f"{'met' if seconds <= 1.5 else '**not met**'}).", "",
            "| preset | epochs | Fashion-MNIST test accuracy | target | seconds | |", "|---|---|---|---|---|---|"]
    for preset in [p for p in args.presets.split(",") if p]:
        accuracy, secs, epochs = train(preset, fashion)
        target = TARGETS.get(preset)
        ok = "" if target is None else ("met" if accuracy >= target else "**not met**")
        print(f"  {preset}: {accuracy:.2%} after {epochs} epochs, {secs:.1f} s", flush=True)
        out.append(f"| {preset} | {epochs} | {accuracy:.2%} | {'' if target is None else f'>= {target:.1%}'} | "
                   f"{secs:.1f} | {ok} |")
    print("\n".join(out))
    if not args.no_record:
        record("## Fashion-MNIST", out)


if __name__ == "__main__":
    main()
