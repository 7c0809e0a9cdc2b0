"""Issue 18's web figure: a class against two web processes behind HAProxy, beside one process, in one run.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_scaleout.py              # 60 students, 60 s each setup
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_scaleout.py --record     # ... into bench/RESULTS.md
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_scaleout.py --students 6 --phase-s 15   # smoke run

What runs: one temporary model store seeded as bench_classroom.py seeds it (three models trained with
`python -m digitlab train`), then two setups one after the other, each with the same store and the full MNIST:
1. one `streamlit run app.py` on 127.0.0.1 (the laptop default);
2. `digitlab.serve.Cluster(2)`: the class's queue server, two Streamlit processes and Debian's HAProxy in front
   (sticky cookie, websockets through), everything on 127.0.0.1 -- what `python -m digitlab serve --web 2` starts.
Each setup gets a warm-up (one visitor opens every class page on every web process), then --students simulated
students (Streamlit's websocket protocol, classroom_client.py) arrive within 5 s and each, every 2-6 s, reruns
their page or opens another (bench_classroom.classmate) for --phase-s seconds. Behind the proxy each student
first asks for the page over HTTP, as a browser does, and keeps the cookie HAProxy sets. A click's latency is
send -> script_finished. CPU (utime+stime over the phase) and RSS come from /proc for every process of the setup.
On a 2-core machine the two setups share the same two cores: the figure shows what the proxy costs and whether
a second process helps there; on a school server with more cores each process gets its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_classroom import CLASS_PAGES, classmate, pct, secs, seed_store  # noqa: E402
from classroom_client import BenchError, Server, Student, _proc_usage  # noqa: E402
from results import record  # noqa: E402

from digitlab.serve import Cluster, ServeError, free_port  # noqa: E402


@dataclass
class Outcome:
    setup: str
    latencies: list[float]
    clicks: int
    errors: list[str]
    cpu_cores: float  # CPU seconds of the setup's processes per second of the phase
    rss_mb: float  # the setup's processes together, at the end of the phase
    spread: str = ""  # behind the proxy: how many students each process got

    def row(self) -> str:
        lat = self.latencies
        return (f"| {self.setup} | {secs(pct(lat, 0.5))} | {secs(pct(lat, 0.95))} | {secs(max(lat, default=0))} |"
                f" {len(lat)} of {self.clicks} | {len(self.errors)} | {self.cpu_cores:.2f} | {self.rss_mb:,.0f} MB |"
                f" {self.spread} |")


def cookie_for(port: int) -> str:
    """What a browser gets on its first visit through the proxy: the cookie that keeps it on one process."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
        return r.headers.get("Set-Cookie", "").split(";")[0]


def usage(pids: list[int]) -> tuple[float, float]:
    found = [u for u in (_proc_usage(p) for p in pids) if u is not None]
    return sum(u.cpu_s for u in found), sum(u.rss_mb for u in found)


async def a_class(url: str, pids: list[int], students: int, phase_s: float, cookies: list[str]) -> tuple:
    """``students`` classmates for ``phase_s`` seconds; (their Student objects, CPU cores used, RSS at the end)."""
    class_ = [Student(url, f"student-{i}", phase="class", headers={"Cookie": cookies[i]} if cookies else {})
              for i in range(students)]
    stop = asyncio.Event()
    cpu0, _ = usage(pids)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(classmate(s, stop, 5.0)) for s in class_]
    await asyncio.sleep(phase_s)
    cpu1, rss = usage(pids)
    wall = time.monotonic() - t0
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 180)
    for s in class_:
        await s.close()
    return class_, (cpu1 - cpu0) / wall, rss


async def warm_up(url: str, cookies: list[str]) -> None:
    """One visitor per web process opens every class page (its first load pays for imports and shared figures)."""
    for cookie in cookies or [""]:
        s = Student(url, "warm-up", headers={"Cookie": cookie} if cookie else {})
        await s.connect()
        for page in CLASS_PAGES:
            if await s.open(page) is None:
                raise BenchError(f"warm-up: {page} did not load ({s.errors})")
        await s.close()


def outcome(setup: str, class_: list[Student], cpu: float, rss: float, spread: str = "") -> Outcome:
    clicks = [r for s in class_ for r in s.log if r.kind == "click"]
    return Outcome(setup, [r.latency for r in clicks if r.latency is not None], len(clicks),
                   [e for s in class_ for e in s.errors], cpu, rss, spread)


def one_process(env: dict, tmp: Path, args) -> Outcome:
    server = Server(env, tmp / "one.log")
    try:
        server.wait_ready()
        asyncio.run(warm_up(server.url, []))
        class_, cpu, rss = asyncio.run(a_class(server.url, [server.pid], args.students, args.phase_s, []))
        return outcome("1 process (`streamlit run app.py`)", class_, cpu, rss)
    finally:
        server.stop()


def two_processes(env: dict, args) -> Outcome:
    port = free_port()
    with Cluster(2, port, env=env) as cluster:
        url = f"ws://127.0.0.1:{port}/_stcore/stream"
        cookies = [cookie_for(port) for _ in range(args.students)]
        one_each = list(dict.fromkeys(cookies))
        asyncio.run(warm_up(url, one_each))
        pids = list(cluster.pids().values())  # queue server, both web processes, HAProxy
        class_, cpu, rss = asyncio.run(a_class(url, pids, args.students, args.phase_s, cookies))
        spread = ", ".join(f"{c.split('=')[1]}: {cookies.count(c)}" for c in one_each)
        return outcome("2 processes behind HAProxy (`python -m digitlab serve --web 2`)", class_, cpu, rss,
                       f"students per process: {spread}")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=60)
    ap.add_argument("--phase-s", type=float, default=60.0, help="seconds the class works on each setup")
    ap.add_argument("--models", default=None, help="copy the stored models from DIR instead of training three")
    ap.add_argument("--record", action="store_true", help="put the table into bench/RESULTS.md")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    data_dir = Path(os.environ.get("DIGITLAB_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "mnist")
    if not any(data_dir.resolve().glob("train-images*")):
        raise SystemExit(f"no full MNIST in {data_dir}: set DIGITLAB_DATA_DIR")
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp_name:
        tmp = Path(tmp_name)
        models = tmp / "models"
        models.mkdir()
        env = dict(os.environ, DIGITLAB_DATA_DIR=str(data_dir.resolve()), DIGITLAB_MODEL_DIR=str(models),
                   DIGITLAB_COLLECTION_DIR=str(tmp / "collection"))
        print("seeding the model store ...", flush=True)
        seeded = seed_store(models, args.models, env)
        try:
            print("1 process ...", flush=True)
            one = one_process(env, tmp, args)
            print("2 processes behind HAProxy ...", flush=True)
            two = two_processes(env, args)
        except (BenchError, ServeError) as e:
            print(f"stopped: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 1
    elapsed = time.monotonic() - t_start
    p95_one, p95_two = pct(one.latencies, 0.95), pct(two.latencies, 0.95)
    command = (f"DIGITLAB_DATA_DIR={os.environ.get('DIGITLAB_DATA_DIR', '../shared/mnist')} python "
               f"bench/bench_scaleout.py {' '.join(sys.argv[1:])}").strip()
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {os.cpu_count()} cores"
        f" · {elapsed / 60:.1f} min",
        "",
        f"`{command}`",
        "",
        f"{args.students} students clicking every 2-6 s for {args.phase_s:.0f} s on each setup (Home, Data Explorer, "
        f"MLP, Sketch Pad), the same store ({seeded}).",
        "",
        "| setup | click p50 | click p95 | max | answered | errors | CPU (cores) | RSS | |",
        "|---|---|---|---|---|---|---|---|---|",
        one.row(),
        two.row(),
        "",
        f"Rerun p95 behind the proxy: {secs(p95_two)} beside {secs(p95_one)} for one process "
        f"({p95_two / p95_one:.2f}x).",
    ]
    for o in (one, two):
        lines += [f"- {o.setup}: {e}" for e in o.errors[:4]]
    print("\n" + "\n".join(lines))
    if args.record:
        record("## Scale-out", lines)
        print("\nrecorded in bench/RESULTS.md")
    return 1 if one.errors or two.errors else 0


if __name__ == "__main__":
    sys.exit(main())
