"""Data figures of issue 2: load time from .gz, from the process cache, bytes held, Data Explorer rerun time.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_data.py [--repeat 5]

Targets: load <= 1.5 s, cached <= 50 ms, images <= 60 MB resident, Explorer rerun <= 1 s. Adds to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
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

from results import record  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    folder = os.environ.get("DIGITLAB_DATA_DIR") or str(ROOT.parent / "shared" / "mnist")
    os.environ["DIGITLAB_DATA_DIR"] = folder

    # 1. cold load from the .gz files (parse + validate + tensors), fresh each time
    loads: list[float] = []
    grown = 0.0
    for _ in range(args.repeat):
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        data = load_mnist(folder, allow_download=False)
        loads.append(time.perf_counter() - t)
        if len(loads) == 1:
            grown = rss_mb() - before  # later loads reuse freed pages, so only the first one says much
    assert data.source.kind == "folder", data.source
    image_bytes = data.train_images.nbytes + data.test_images.nbytes
    label_bytes = data.train_labels.nbytes + data.test_labels.nbytes
    del data

    # 2. the process cache the pages use (st.cache_resource in digitlab.ui)
    from streamlit.testing.v1 import AppTest

    from digitlab import ui

    ui._load_data.clear()
    t = time.perf_counter()
    ui.get_data()
    first = time.perf_counter() - t
    cached = []
    for _ in range(50):
        t = time.perf_counter()
        ui.get_data()
        cached.append(time.perf_counter() - t)

    # 3. Data Explorer reruns once the data is loaded (real Streamlit runtime via AppTest)
    at = AppTest.from_file(str(ROOT / "pages" / "1_Data_Explorer.py"), default_timeout=120)
    t = time.perf_counter()
    at.run()
    first_run = time.perf_counter() - t
    assert not at.exception, at.exception
    reruns = []
    for i in range(args.repeat):
        t = time.perf_counter()
        if i % 2:
            at.button(key="reshuffle").click().run()
        else:
            at.run()
        reruns.append(time.perf_counter() - t)
    assert not at.exception, at.exception

    ms = 1000
    rows = [
        ("load full MNIST from .gz", f"median {statistics.median(loads):.2f} s, max {max(loads):.2f} s", "<= 1.5 s",
         max(loads) <= 1.5),
        ("get_data() from the process cache", f"median {statistics.median(cached) * ms:.3f} ms, "
         f"max {max(cached) * ms:.3f} ms (first call {first:.2f} s)", "<= 50 ms", max(cached) <= 0.05),
        ("images held (uint8 train + test)", f"{image_bytes / 1e6:.1f} MB (+ labels {label_bytes / 1e6:.2f} MB; "
         f"process RSS grew {grown:.0f} MB on the first load)", "<= 60 MB", image_bytes <= 60e6),
        ("Data Explorer rerun (AppTest)", f"median {statistics.median(reruns):.2f} s, max {max(reruns):.2f} s "
         f"(first run {first_run:.2f} s)", "<= 1 s", max(reruns) <= 1.0),
    ]
    for name, value, target, ok in rows:
        print(f"{name:<38} {value:<70} target {target}: {'met' if ok else 'MISSED'}")
    if args.no_record:
        return
    cmd = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_data.py" + (
        f" --repeat {args.repeat}" if args.repeat != 5 else "")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = [
        f"### {stamp} · {platform.node()} · CPU ({os.cpu_count()} cores) · torch threads {torch.get_num_threads()}",
        "", f"`{cmd}`", "", "| figure | measured | target | |", "|---|---|---|---|",
        *[f"| {n} | {v} | {t} | {'met' if ok else 'MISSED'} |" for n, v, t, ok in rows], "",
    ]
    record("## Data", block)


if __name__ == "__main__":
    main()
