"""Issue 18's Ray figure: 8 jobs on a 2-worker local Ray cluster beside the same 8 on the embedded worker.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_ray.py            # 8 jobs each way
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_ray.py --record   # ... into bench/RESULTS.md

What runs: 8 configs (simple_net on the full MNIST, --epochs each, seeds 0-7) submitted at once to a
``runs.queue.JobQueue`` twice, each time with its own temporary model store:
1. embedded: the queue as `streamlit run app.py` has it, one worker process on this machine;
2. Ray: a local cluster started by scripts/local_ray.py -- a head and one more node on 127.0.0.1, one CPU each,
   so two workers -- and the queue with DIGITLAB_RAY_ADDRESS's path (two runs at once, the default on Ray).
Wall time is from the first submit to the last job done, including what each run does after training (saving,
the analyses). Test accuracy is each stored model's own record; Ray's must be within 0.1 points of the embedded
run's for the same config and seed.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import local_ray  # noqa: E402
from results import record  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.models import PRESETS  # noqa: E402
from digitlab.runs.queue import JobQueue  # noqa: E402
from digitlab.runs.runners.ray_runner import RayRunner  # noqa: E402
from digitlab.store import ModelStore  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_all(queue: JobQueue, store: ModelStore, configs: list, data) -> tuple[float, list[float]]:
    """Submit every config at once; (seconds to the last one done, each model's test accuracy in order)."""
    t0 = time.monotonic()
    jobs = [queue.submit(c, data, owner=f"student-{i}") for i, c in enumerate(configs)]
    done = [queue.wait(j.id, timeout=1800) for j in jobs]
    wall = time.monotonic() - t0
    failed = [f"{d.id}: {d.state} {d.message}" for d in done if d.state != "done"]
    if failed:
        raise SystemExit("jobs did not finish: " + "; ".join(failed))
    return wall, [store.info(d.model_id).metrics["test_accuracy"] for d in done]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    data = load_mnist(allow_download=False)
    if data.is_sample:
        raise SystemExit("no full MNIST: set DIGITLAB_DATA_DIR (the figures are for the full data set)")
    configs = [PRESETS["simple_net"].with_(epochs=args.epochs, seed=s) for s in range(args.jobs)]
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        print(f"{args.jobs} jobs on the embedded worker ...", flush=True)
        store = ModelStore(tmp / "embedded")
        queue = JobQueue(store)
        try:
            wall_embedded, acc_embedded = run_all(queue, store, configs, data)
        finally:
            queue.close()

        print(f"{args.jobs} jobs on a 2-worker Ray cluster ...", flush=True)
        joined = local_ray.start(tmp / "ray", free_port(), nodes=2, cpus=1)
        try:
            ray_store = ModelStore(tmp / "ray-models")
            ray_queue = JobQueue(ray_store, max_running=2,
                                 runner=functools.partial(RayRunner, joined["DIGITLAB_RAY_ADDRESS"]))
            try:
                wall_ray, acc_ray = run_all(ray_queue, ray_store, configs, data)
            finally:
                ray_queue.close()
        finally:
            local_ray.stop(tmp / "ray")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    gaps = [abs(a - b) * 100 for a, b in zip(acc_ray, acc_embedded, strict=True)]
    rows = [f"| {c.seed} | {a * 100:.2f}% | {b * 100:.2f}% | {g:.2f} |"
            for c, a, b, g in zip(configs, acc_embedded, acc_ray, gaps, strict=True)]
    ok = max(gaps) <= 0.1
    command = (f"DIGITLAB_DATA_DIR={os.environ.get('DIGITLAB_DATA_DIR', '../shared/mnist')} python bench/bench_ray.py "
               + " ".join(sys.argv[1:])).strip()
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {os.cpu_count()} cores"
        f" · {(time.monotonic() - t_start) / 60:.1f} min",
        "",
        f"`{command}`",
        "",
        f"{args.jobs} jobs (simple_net, {args.epochs} epochs, full MNIST, seeds 0-{args.jobs - 1}) submitted at once:",
        "",
        "| seed | embedded worker | Ray (2 workers) | gap (points) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"All {args.jobs} finished both ways; largest gap {max(gaps):.2f} points (target <= 0.1: "
        f"{'met' if ok else 'NOT met'}).",
        f"Wall time, first submit to last done: embedded {wall_embedded:.1f} s, Ray {wall_ray:.1f} s "
        f"({wall_embedded / wall_ray:.2f}x).",
    ]
    print("\n" + "\n".join(lines))
    if args.record:
        record("## Ray", lines)
        print("\nrecorded in bench/RESULTS.md")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
