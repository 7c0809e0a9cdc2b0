"""The learning-rate finder's figure of issue 16: a sweep for the CNN presets in under 10 s on this machine.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_lr_find.py

Each preset's sweep (about a hundred batches from its untrained model, the learning rate from 1e-7 to 10) is
timed from the call to the suggestion, the data already loaded, as on a page. Results go first under
"## Learning-rate finder" in bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import print_and_record  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.lr_find import lr_find  # noqa: E402
from digitlab.models import PRESETS  # noqa: E402
from digitlab.train import device_label  # noqa: E402

TARGET_S = 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="cnn-seed,cnn-fast,cnn-best,mlp-128-64")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    data = load_mnist(allow_download=False)
    assert data.source.kind == "folder", f"the benchmark needs the full MNIST: {data.source.label}"
    command = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_lr_find.py " + " ".join(sys.argv[1:])
    out = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {device_label()} · "
           f"{os.cpu_count()} cores · torch {torch.__version__}", "", f"`{command.strip()}`", "",
           "| preset | batches | suggested (valley) | steepest | the preset's own rate | seconds | target | |",
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
    print_and_record("## Learning-rate finder", out, keep=not args.no_record)


if __name__ == "__main__":
    main()
