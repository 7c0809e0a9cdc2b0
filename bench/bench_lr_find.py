"""The learning-rate finder's figures: a sweep for the CNN presets in under 10 s on this machine (issue 16), and a
run at its suggestion as good as the preset's own (issue 27: within 0.5 points, simple_net and cnn-fast).

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_lr_find.py
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_lr_find.py --presets "" --train simple_net,cnn-fast

Each preset's sweep (about a hundred batches from its untrained model, the learning rate from 1e-7 to 10) is
timed from the call to the suggestion, the data already loaded, as on a page. With --train, each named preset is
swept, then trained as "Train with" does (the preset's epochs, the full MNIST) at the suggestion and at the preset's
own rate, one after the other in this process, and both test accuracies compared. Results go first under
"## Learning-rate finder" in bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import print_and_record  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.lr_find import lr_find  # noqa: E402
from digitlab.models import PRESETS, build_model  # noqa: E402
from digitlab.train import device_label, fit  # noqa: E402

TARGET_S = 10.0
WITHIN = 0.5  # points: the suggestion's run may trail the preset's own by at most this


def trained_accuracy(config, data) -> tuple[float, float]:
    """(test accuracy after the config's epochs, seconds): the run the finder's one click would start."""
    import time

    started, last = time.perf_counter(), None
    for event in fit(build_model(config), config, data):
        if event.kind == "epoch":
            last = event
    return last.test_accuracy, time.perf_counter() - started


def suggestion_runs(names: list[str], data) -> list[str]:
    out = ["", "| preset | epochs | suggested | rule | accuracy at the suggestion | the preset's rate | accuracy at it | "
           "gap (points) | target | |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        config = PRESETS[name]
        found = lr_find(config, data)
        rate = float(f"{found.suggestion:.2g}")  # as the button says it, and submits it
        rule = found.rule
        ours, s1 = trained_accuracy(config.with_(lr=rate), data)
        theirs, s2 = trained_accuracy(config, data)
        gap = (ours - theirs) * 100
        print(f"  {name}: {rate:g} ({rule}) {ours:.2%} in {s1:.0f} s, the preset's {config.lr:g} {theirs:.2%} in "
              f"{s2:.0f} s", flush=True)
        out.append(f"| {name} | {config.epochs} | {rate:g} | {rule} | {ours:.2%} | {config.lr:g} | {theirs:.2%} | "
                   f"{gap:+.2f} | >= -{WITHIN} | {'met' if gap >= -WITHIN else '**not met**'} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="cnn-seed,cnn-fast,cnn-best,mlp-128-64")
    ap.add_argument("--train", default="", help="presets to train at the suggestion and at their own rate")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    data = load_mnist(allow_download=False)
    assert data.source.kind == "folder", f"the benchmark needs the full MNIST: {data.source.label}"
    command = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_lr_find.py " + shlex.join(sys.argv[1:])
    out = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {device_label()} · "
           f"{os.cpu_count()} cores · torch {torch.__version__}", "", f"`{command.strip()}`", "",
           ]
    if args.presets:
        out += ["| preset | batches | suggested (valley) | steepest | the preset's own rate | seconds | target | |",
                "|---|---|---|---|---|---|---|---|"]
    for name in [p for p in args.presets.split(",") if p]:
        config = PRESETS[name]
        found = lr_find(config, data)
        cnn = config.kind == "cnn"
        verdict = ("met" if found.seconds <= TARGET_S else "**not met**") if cnn else ""
        print(f"  {name}: {len(found.lrs)} batches, valley {found.valley:.2g}, steepest {found.steepest:.2g}, "
              f"{found.seconds:.1f} s", flush=True)
        out.append(f"| {name} | {len(found.lrs)} | {found.valley:.2g} | {found.steepest:.2g} | {config.lr:g} | "
                   f"{found.seconds:.1f} | {f'<= {TARGET_S:.0f} s' if cnn else ''} | {verdict} |")
    if args.train:
        out += suggestion_runs([p for p in args.train.split(",") if p], data)
    print_and_record("## Learning-rate finder", out, keep=not args.no_record)


if __name__ == "__main__":
    main()
