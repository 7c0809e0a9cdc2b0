"""Issue 29's figures against a real server: what a student who pokes at the websocket can still cost it.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_hostile.py [--clears 500] [--idle 60] [--keys 1000] [--record]

A ``streamlit run app.py`` on 127.0.0.1 (the project's .streamlit/config.toml, an empty model store, no teacher key
but one set for the run), spoken to with Streamlit's own protocol (classroom_client.py):

1. ``--clears`` clear_cache messages from one session, a rerun of Home after every tenth (each rerun is where a
   per-process resource would be started again); the server's thread count and RSS before, and after ``--idle``
   seconds with nobody connected. Target: both within 5% of before.
2. A PNG of about 150 KB that declares 6000x6000 pixels, sent as the drawing pad's value (the canvas component's
   JSON, as the browser sends it). Target: a message under the pad, server RSS +20 MB at most.
3. ``--keys`` wrong teacher keys from 50 sessions at once (the Teacher page's key box), as students on the room's
   network send them: to this machine's network address (the server listens there as ``serve --room`` does), then
   the right key from the laptop (127.0.0.1). How many were checked in the first minute, and whether the right key
   still opened the page. Target: at most 20 checked; the right key works.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classroom_client import Server, Student  # noqa: E402
from PIL import Image  # noqa: E402
from results import print_and_record  # noqa: E402
from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: E402
from streamlit.proto.WidgetStates_pb2 import WidgetState  # noqa: E402

KEY = "a long phrase only the teacher knows"


async def clears(server: Server, n: int, idle: float) -> list[str]:
    s = Student(server.url, "prankster")
    await s.connect()
    await s.open("Home")
    before_t, before_rss = server.threads(), server.usage()[0].rss_mb
    msg = BackMsg()
    msg.clear_cache = True
    for i in range(n):
        await s._ws.send(msg.SerializeToString())
        if i % 10 == 9:
            await s.open("Home")
    await s.close()
    await asyncio.sleep(idle)
    after_t, after_rss = server.threads(), server.usage()[0].rss_mb
    ok = after_t <= before_t * 1.05 and after_rss <= before_rss * 1.05
    return [f"| {n} clear_cache messages, then {idle:.0f} s idle | threads {before_t} -> {after_t}, RSS "
            f"{before_rss:.0f} -> {after_rss:.0f} MB; errors: {len(s.errors)} | both within 5% | "
            f"{'PASS' if ok and not s.errors else 'FAIL'} |"]


async def bomb(server: Server) -> list[str]:
    buf = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buf, format="PNG", optimize=True)
    s = Student(server.url, "bomber")
    await s.connect()
    await s.open("Sketch Pad")
    (pad,) = set(s.components)
    before = server.usage()[0].rss_mb
    value = {"drawing": {"raw": {"objects": []}, "data": "data:image/png;base64," + base64.b64encode(
        buf.getvalue()).decode()}}
    s.sticky[pad] = WidgetState(id=pad, json_value=json.dumps(value))
    await s.rerun()
    after = server.usage()[0].rss_mb
    said = any("could not be read" in a for a in s.alerts)
    await s.close()
    return [f"| a {len(buf.getvalue()) / 1e3:.0f} KB PNG of 6000x6000 as the pad's drawing | "
            f"{'refused with a message' if said else 'no message'}; RSS {before:.0f} -> {after:.0f} MB | "
            f"refused, +20 MB at most | {'PASS' if said and after - before <= 20 else 'FAIL'} |"]


def room_address() -> str:
    """This machine's address on its network (no packet is sent: a UDP socket only picks its route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        return s.getsockname()[0]


async def keys(server: Server, n: int, room: str) -> list[str]:
    sessions = [Student(server.url.replace("127.0.0.1", room), f"guesser-{i}") for i in range(50)]
    for s in sessions:
        await s.connect()
        await s.open("Teacher")
    started = time.monotonic()

    async def guess(s: Student, tries: int, first: int) -> tuple[int, int]:
        checked = waited = 0
        for t in range(tries):
            w = s.widget("text_input", "Teacher key")
            s.sticky[w.proto.id] = WidgetState(id=w.proto.id, string_value=f"guess {first + t}")
            await s.rerun()
            if time.monotonic() - started < 60:
                checked += any("not the teacher key" in a for a in s.alerts[-2:])
                waited += any("try again in" in a for a in s.alerts[-2:])
            s.alerts.clear()
        return checked, waited

    counts = await asyncio.gather(*(guess(s, n // 50, i * (n // 50)) for i, s in enumerate(sessions)))
    took = time.monotonic() - started
    for s in sessions:
        await s.close()
    teacher = Student(server.url, "teacher")
    await teacher.connect()
    await teacher.open("Teacher")
    w = teacher.widget("text_input", "Teacher key")
    teacher.sticky[w.proto.id] = WidgetState(id=w.proto.id, string_value=KEY)
    await teacher.rerun()
    opened = not teacher.has_widget("text_input", "Teacher key")
    await teacher.close()
    checked = sum(c for c, _ in counts)
    return [f"| {n} wrong teacher keys from 50 sessions on {room} ({took:.0f} s), then the right one on the laptop | "
            f"{checked} checked in "
            f"the first minute, {sum(w for _, w in counts)} told to wait; the right key "
            f"{'opened the page' if opened else 'was refused'} | at most 20; the right key works | "
            f"{'PASS' if checked <= 20 and opened else 'FAIL'} |"]


async def run(server: Server, args) -> list[str]:
    rows = await clears(server, args.clears, args.idle)
    rows += await bomb(server)
    rows += await keys(server, args.keys, args.room)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clears", type=int, default=500)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        env = {**os.environ, "DIGITLAB_MODEL_DIR": f"{tmp}/models", "DIGITLAB_COLLECTION_DIR": f"{tmp}/col",
               "DIGITLAB_TEACHER_KEY": KEY, "DIGITLAB_OFFLINE": "1"}
        args.room = room_address()
        hosts = [a for h in ("127.0.0.1", "localhost", args.room) for a in ("--server.allowedHosts", h)]
        server = Server(env, Path(tmp) / "server.log", ("--server.address", "0.0.0.0", *hosts))
        try:
            server.wait_ready()
            rows = asyncio.run(run(server, args))
        finally:
            server.stop()
    command = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_hostile.py " + " ".join(sys.argv[1:])
    block = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {os.cpu_count()} cores",
             "", f"`{command.strip()}`", "", "| what a client sent | what the server did | target | |",
             "|---|---|---|---|", *rows]
    print_and_record("## What a poking student can cost the server (bench_hostile.py)", block, keep=args.record)


if __name__ == "__main__":
    main()
