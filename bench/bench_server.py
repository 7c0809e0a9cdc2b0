"""Memory that comes back (issue 15): RSS after many runs with distinct settings, after large uploads, and what a
large image costs to decode.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_server.py [--runs 200] [--idle 120] [--record]

1. Runs: ``--runs`` CNN runs, each with its own batch size (cnn-fast, 600 images, one epoch: the bfloat16 path on a
   CPU that has it), through the server's own queue code (``runs.queue.JobQueue``, its worker processes, the store and
   the analysis each run gets). RSS of this process plus its training processes: at the start, the peak, after the
   last run, and once the queue has been idle ``--idle`` seconds (``runs.runners.process.WORKER_IDLE_S``).
2. Uploads: a real ``streamlit run app.py`` with the project's .streamlit/config.toml; 6 uploads of 9.5 MB (taken)
   and 6 of 190 MB (refused), each from its own session, as the browser sends them. Server RSS before, after, and
   30 s later.
3. Decoding: the peak RSS of a fresh process that reads a 6300x6300 PNG, a 2800x2800 PNG and a 7000x5000 JPEG
   through ``preprocess.from_upload``, over the same process importing only.
4. The issue's cases, rerun: each hostile record beside a good model (store, ``python -m digitlab models``), the
   CNN at batch size 1 for 100 epochs (refused with its estimate), the DNS-rebinding handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from classroom_client import ROOT, Server  # noqa: E402
from results import record  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.models import PRESETS  # noqa: E402
from digitlab.runs.queue import DEFAULT_LIMIT_S, JobQueue  # noqa: E402
from digitlab.runs.runners import process  # noqa: E402
from digitlab.runs.runners.process import rss_mb  # noqa: E402
from digitlab.store import ModelStore  # noqa: E402

TARGET_MB = 100.0


def total_rss(queue: JobQueue) -> tuple[float, float]:
    """(this process, its training processes together), MB."""
    return rss_mb(os.getpid()) or 0.0, sum(rss_mb(p) or 0.0 for p in queue.worker_pids())


def bench_runs(n: int, idle: float) -> tuple[list[str], str]:
    data = load_mnist(allow_download=False)
    process.WORKER_IDLE_S = idle
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        queue = JobQueue(ModelStore(tmp))
        start = sum(total_rss(queue))
        peak, pids, t0, lines = start, set(), time.time(), []
        try:
            for i in range(n):
                config = PRESETS["cnn-fast"].with_(batch_size=16 + i, train_limit=600, epochs=1)
                snap = queue.wait(queue.submit(config, data, owner="").id, timeout=600)
                if snap.state != "done":
                    raise SystemExit(f"run {i + 1} {snap.state}: {snap.error}")
                own, workers = total_rss(queue)
                peak = max(peak, own + workers)
                pids.update(queue.worker_pids())
                if (i + 1) % 20 == 0 or i + 1 == n:
                    lines.append(f"after {i + 1} runs ({time.time() - t0:.0f} s): this process {own:.0f} MB, "
                                 f"training process {workers:.0f} MB")
                    print(lines[-1], flush=True)
            after_runs = sum(total_rss(queue))
            waited = time.monotonic()
            while queue.worker_pids() and time.monotonic() - waited < idle + 60:
                time.sleep(1)
            idle_rss = sum(total_rss(queue))
        finally:
            queue.close()
    row = (f"| {n} runs, each its own batch size: RSS back to within {TARGET_MB:.0f} MB of the start | "
           f"{idle_rss - start:+.0f} MB ({start:.0f} -> {idle_rss:.0f} MB after {idle:.0f} s idle; {after_runs:.0f} MB "
           f"right after the last run, peak {peak:.0f} MB; {len(pids)} training process(es) in turn) | "
           f"<= {TARGET_MB:.0f} MB | {'PASS' if idle_rss - start <= TARGET_MB else 'FAIL'} |")
    return lines, row


async def _upload(server: Server, size: int) -> int:
    from test_server_protocol import Watcher, _put  # the tests' browser-style upload

    student = Watcher(server.url, f"upload-{size}")
    await student.connect()
    try:
        await student.open("Home")
        return await asyncio.to_thread(_put, server.port, student.session_id, size)
    finally:
        await student.close()


def bench_uploads(data_dir: str) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        env = {**os.environ, "DIGITLAB_MODEL_DIR": f"{tmp}/models", "DIGITLAB_DATA_DIR": data_dir}
        server = Server(env, Path(tmp) / "server.log")
        try:
            server.wait_ready()
            asyncio.run(_upload(server, 1000))  # the first visit loads the data: measured from after it
            time.sleep(2)
            before = server.usage()[0].rss_mb
            taken = [asyncio.run(_upload(server, 9_500_000)) for _ in range(6)]
            refused = [asyncio.run(_upload(server, 190_000_000)) for _ in range(6)]
            right_after = server.usage()[0].rss_mb
            time.sleep(30)
            later = server.usage()[0].rss_mb
        finally:
            server.stop()
    return (f"| 6 uploads of 9.5 MB and 6 of 190 MB: server RSS 30 s later | {later - before:+.0f} MB ({before:.0f} -> "
            f"{later:.0f} MB; {right_after:.0f} MB right after; answers {sorted(set(taken))} for 9.5 MB, "
            f"{sorted(set(refused))} for 190 MB) | <= {TARGET_MB:.0f} MB | "
            f"{'PASS' if later - before <= TARGET_MB and set(refused) == {413} else 'FAIL'} |")


DECODE = """
import sys
from digitlab import preprocess as pp

def kb(field):
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith(field))

payload = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
base = kb("VmRSS:")
try:
    pp.from_upload(payload)
    said = "taken"
except pp.PreprocessError:
    said = "refused"
print(base, kb("VmHWM:"), said)
"""


def bench_decode() -> list[str]:
    from PIL import Image

    rows = []
    for kind, w, h in (("PNG", 6300, 6300), ("PNG", 2800, 2800), ("JPEG", 7000, 5000)):
        im = Image.new("RGB", (w, h), (255, 255, 255))
        im.paste((0, 0, 0), (w // 3, h // 5, w // 3 + w // 10, 4 * h // 5))  # a "1"
        with tempfile.NamedTemporaryFile(suffix=f".{kind.lower()}") as f:
            im.save(f, format=kind, **({"optimize": True} if kind == "PNG" else {"quality": 85}))
            f.flush()
            size = Path(f.name).stat().st_size
            out = subprocess.run([sys.executable, "-c", DECODE, f.name], cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
        base, peak, said = int(out[0]), int(out[1]), out[2]
        rows.append(f"| decode a {w}x{h} {kind} ({size / 1e6:.2f} MB file): peak RSS over the process before | "
                    f"+{(peak - base) / 1024:.0f} MB ({said}) | <= 64 MB | "
                    f"{'PASS' if (peak - base) / 1024 <= 64 else 'FAIL'} |")
        print(rows[-1], flush=True)
    return rows


def bench_cases(data_dir: str) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    import json
    import shutil

    from test_server_protocol import _handshake
    from test_server_safety import HOSTILE

    from digitlab.runs.queue import JobRefused

    rows = []
    data = load_mnist(allow_download=False)
    with tempfile.TemporaryDirectory(prefix="bench-cases-") as tmp:
        store = ModelStore(Path(tmp) / "models")
        queue = JobQueue(store, limit_s=DEFAULT_LIMIT_S)
        try:
            good = queue.wait(queue.submit(PRESETS["simple_net"].with_(epochs=1, train_limit=2000), data).id, 300)
            try:
                queue.submit(PRESETS["cnn-seed"].with_(batch_size=1, epochs=100), data, owner="a", limited=True)
                refusal = "queued"
            except JobRefused as e:
                from digitlab.ui.text import refusal_text

                refusal = refusal_text(e)
        finally:
            queue.close()
        for name, (field, value, _) in HOSTILE.items():
            record = json.loads((store.root / f"{good.model_id}.json").read_text())
            record["id"] = name
            if field.startswith("config."):
                record["config"][field.split(".")[1]] = value
            else:
                record[field] = value
            (store.root / f"{name}.json").write_text(json.dumps(record))
            shutil.copy(store.root / f"{good.model_id}.safetensors", store.root / f"{name}.safetensors")
        infos, problems = ModelStore(store.root).scan()
        cli = subprocess.run([sys.executable, "-m", "digitlab", "models"], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "DIGITLAB_MODEL_DIR": str(store.root)})
        rows.append(f"| {len(HOSTILE)} hostile records beside a good model: listed, skipped, CLI | {len(infos)} listed, "
                    f"{len(problems)} skipped with a reason; `models` exit {cli.returncode}, "
                    f"{'a traceback' if 'Traceback' in cli.stderr else 'no traceback'} | 1 listed, none raises | "
                    f"{'PASS' if len(infos) == 1 and len(problems) == len(HOSTILE) and cli.returncode == 0 else 'FAIL'} |")
        rows.append(f"| a CNN at batch size 1 for 100 epochs, from a student | {refusal} | refused with its estimate | "
                    f"{'PASS' if refusal.startswith('This run would take about') else 'FAIL'} |")
        server = Server({**os.environ, "DIGITLAB_MODEL_DIR": str(store.root), "DIGITLAB_DATA_DIR": data_dir},
                        Path(tmp) / "server.log")
        try:
            server.wait_ready()
            evil = _handshake(server.port, "evil.example", "http://evil.example")
            own = _handshake(server.port, f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}")
        finally:
            server.stop()
        rows.append(f"| websocket handshake, Host and Origin evil.example (DNS rebinding) | HTTP {evil} (127.0.0.1: "
                    f"HTTP {own}) | refused | {'PASS' if evil != 101 and own == 101 else 'FAIL'} |")
    for row in rows:
        print(row, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--idle", type=float, default=process.WORKER_IDLE_S)
    parser.add_argument("--skip-uploads", action="store_true")
    parser.add_argument("--record", action="store_true", help="write the results into bench/RESULTS.md")
    args = parser.parse_args()
    data_dir = str(Path(os.environ.get("DIGITLAB_DATA_DIR", "../shared/mnist")).resolve())
    os.environ["DIGITLAB_DATA_DIR"] = data_dir
    t0 = time.time()
    cases = bench_cases(data_dir)
    decode = bench_decode()
    uploads = [] if args.skip_uploads else [bench_uploads(data_dir)]
    print(*uploads, sep="\n", flush=True)
    progress, runs = bench_runs(args.runs, args.idle) if args.runs > 0 else ([], "")
    print(runs)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_server.py " + " ".join(sys.argv[1:])
    block = [f"### {when} · {platform.node()} · {os.cpu_count()} cores · {(time.time() - t0) / 60:.1f} min", "",
             f"`{command.strip()}`", "", "| figure | measured | target | |", "|---|---|---|---|",
             *([runs] if runs else []), *uploads, *decode, *cases]
    if progress:
        block += ["", "Runs, as they went: " + "; ".join(progress) + "."]
    if args.record:
        record("## Server safety", block)
    print("\n".join(block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
