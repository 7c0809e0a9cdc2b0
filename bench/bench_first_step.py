"""From Train to the first step: a training process started cold by the run, beside one a training page warmed.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_first_step.py [--rounds 3] [--record]

Each round, in turn: a fresh queue (``runs.queue.JobQueue``, its own model folder) gets a run with no training process
and no zygote running (cold: Python, torch, the optimisers' first import and the dataset are all ahead of the first
step), and a
fresh queue that a page has asked to ``warm`` a few seconds earlier (the student picking settings) gets the same
run, and so does one whose earlier run's process ended idle before a page warmed a new one (a later lesson's first
Train). Timed from ``submit`` (the Train click's own call) to the first progress report the page can show.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import record  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.models import PRESETS  # noqa: E402
from digitlab.runs.queue import JobQueue  # noqa: E402
from digitlab.runs.runners import process, zygote  # noqa: E402
from digitlab.store import ModelStore  # noqa: E402

CONFIG = PRESETS["mlp-128-64"].with_(epochs=1, train_limit=6_000)
SETTLE_S = 8.0  # how long the student reads and picks settings after the page opened


def first_step_seconds(data, warm: bool, after_a_run: bool = False) -> float:
    if not warm:
        zygote.stop()  # cold: no training process and no zygote to fork one from (a server's first run of the day)
    with tempfile.TemporaryDirectory() as folder:
        queue = JobQueue(ModelStore(Path(folder) / "models"))
        try:
            if after_a_run:  # the class has trained before; that process ended idle (a page then warms a new one)
                queue.wait(queue.submit(CONFIG.with_(train_limit=1_000, seed=1), data, owner="earlier").id, 120)
                idle, process.WORKER_IDLE_S = process.WORKER_IDLE_S, 0.2
                deadline = time.monotonic() + 60
                while queue.worker_pids() and time.monotonic() < deadline:
                    time.sleep(0.05)
                process.WORKER_IDLE_S = idle
            if warm:
                queue.warm(data)
                time.sleep(SETTLE_S)
            t = time.perf_counter()
            job = queue.submit(CONFIG, data, owner="student")
            while (snap := queue.snapshot(job.id)).last is None and not snap.finished:
                time.sleep(0.01)
            seconds = time.perf_counter() - t
            assert snap.last is not None, snap.error
            queue.wait(job.id, timeout=120)
            return seconds
        finally:
            queue.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--record", action="store_true", help="write the result into bench/RESULTS.md")
    args = ap.parse_args()
    data = load_mnist(allow_download=False)
    cold, warm, later = [], [], []
    for i in range(args.rounds):
        cold.append(first_step_seconds(data, warm=False))
        warm.append(first_step_seconds(data, warm=True))
        later.append(first_step_seconds(data, warm=True, after_a_run=True))
        print(f"  round {i + 1}: cold {cold[-1]:.2f} s, warmed {warm[-1]:.2f} s, warmed after a run {later[-1]:.2f} s",
              flush=True)
    c, w, lt = statistics.median(cold), statistics.median(warm), statistics.median(later)
    command = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_first_step.py " + " ".join(sys.argv[1:])
    report = "\n".join([
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {os.cpu_count()} cores",
        "",
        f"`{command.strip()}`",
        "",
        "| Train to the first progress report (mlp-128-64), median of "
        f"{args.rounds} | cold process | warmed by the page: the server's first run | ... a later run | cold / "
        "warmed (first, later) |",
        "|---|---|---|---|---|",
        f"| seconds (each round: {', '.join(f'{a:.2f}/{b:.2f}/{d:.2f}' for a, b, d in zip(cold, warm, later))}) | "
        f"{c:.2f} | {w:.2f} | {lt:.2f} | {c / w:.1f}x, {c / lt:.1f}x |",
        "",
        "The first training process a server starts ahead of its first run leaves torch's compiler stack to that run "
        "(70 MB less while a class only browses); a process started ahead after runs have come imports it first.",
    ])
    print("\n" + report)
    if args.record:
        record("## First step", report)


if __name__ == "__main__":
    main()
