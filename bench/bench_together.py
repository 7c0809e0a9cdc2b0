"""Issue 32's figures: follow me, and a fool-the-model round, with a class of simulated students speaking
Streamlit's own websocket protocol (classroom_client.py) to a real `streamlit run app.py` on 127.0.0.1.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_together.py            # 60 students, a 3-minute round
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_together.py --record   # ... into bench/RESULTS.md
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_together.py --students 5 --round-s 20   # a smoke run

What runs: a temporary store seeded with a cnn-fast CNN (`python -m digitlab train`), an empty class collection,
the teacher key set; the server started as the teacher starts it. Every student is a tab with a browser token (as
its storage would hand over), sitting on a page of the lesson and re-running its live fragments as a browser does
(the class bar every second, the sidebar's training line).

- follow me: the teacher (a tab that gave the key) turns "Class, follow me" on and opens --moves pages in turn; a
  student's time is the teacher's click -> the server's new run of the teacher's page for that student (taken there)
  and -> that run finished (drawn). Target: drawn p95 <= 2 s, every student taken, no errors.
- the round: the teacher starts a fool-the-model round and watches its gallery (a fragment every 2 s); each student,
  on the Sketch Pad, draws a real MNIST test digit (sent as the pad's PNG, 280x280 as the pad sends it) every 10 s
  for --round-s, picks its true digit and saves it. Targets: every save kept once (the collection and the round's
  table hold exactly the saves that were answered, no id twice), save p95 <= 1 s, the gallery's refresh p95 <= 2 s.

Server CPU (utime+stime) and RSS come from /proc, printed per phase. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_classroom import seed_store  # noqa: E402
from bench_scaleout import cookie_for  # noqa: E402
from classroom_client import BenchError, Server, Student, WidgetState, _proc_usage  # noqa: E402
from PIL import Image  # noqa: E402
from results import print_and_record  # noqa: E402

from digitlab.serve import Cluster, free_port  # noqa: E402

KEY = "the teacher's key for the benchmark"
PAGES = ("Home", "Data Explorer", "Linear 3 vs 7", "MLP", "Features", "Evaluate", "Our Handwriting")
MOVES = ("CNN", "MLP", "Data Explorer", "Evaluate", "Linear 3 vs 7", "Features")
SEED = (("cnn", "--preset", "cnn-fast", "--train-limit", "10000"),)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def pad_png(image) -> str:
    """A 28x28 digit as the pad sends it: 280x280 RGBA, white ink on black, as a data URL."""
    im = Image.fromarray(image.numpy()).resize((280, 280), Image.BILINEAR).convert("RGBA")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Usage:
    """CPU and peak RSS of the web processes (PIDS: one `streamlit run`, or each of `serve --web N`'s)."""

    def __init__(self):
        self.cpu0, self.t0, self.peak = self._now()[0], time.monotonic(), 0.0

    @staticmethod
    def _now() -> tuple[float, float]:
        found = [u for u in (_proc_usage(p) for p in PIDS) if u is not None]
        return sum(u.cpu_s for u in found), sum(u.rss_mb for u in found)

    def sample(self) -> None:
        self.peak = max(self.peak, self._now()[1])

    def line(self) -> str:
        cpu_s, rss = self._now()
        cpu = (cpu_s - self.cpu0) / max(time.monotonic() - self.t0, 1e-9)
        return f"web CPU {cpu:.0%} of a core, RSS peak {max(self.peak, rss):.0f} MB"


def tab(url: str, name: str) -> Student:
    """A browser tab; behind serve's proxy it keeps the cookie its first visit got (one web process per browser)."""
    cookie = cookie_for(PROXY_PORT) if PROXY_PORT else ""
    return Student(url, name, headers={"Cookie": cookie} if cookie else {})


async def sampling(usage: Usage, stop: asyncio.Event) -> None:
    while not stop.is_set():
        usage.sample()
        await asyncio.sleep(0.5)


async def arrive(s: Student, page: str, rng: random.Random) -> None:
    """A student's tab arrives within 5 s, opens ``page`` and hands over its browser's token."""
    await asyncio.sleep(rng.uniform(0, 5))
    await s.connect()
    await s.open(page)
    s.has_browser(f"{rng.getrandbits(128):032x}")
    await s.rerun()


async def leave(tabs: list[Student], errors: list[str]) -> None:
    for e in errors[:5]:
        print("  error:", e)
    for s in tabs:
        await s.close()


async def teacher_tab(url: str) -> Student:
    t = tab(url, "teacher")
    await t.connect()
    await t.open("Teacher")
    w = t.widget("text_input", "Teacher key")
    t.sticky[w.proto.id] = WidgetState(id=w.proto.id, string_value=KEY)
    await t.rerun()
    t.sticky.pop(w.proto.id, None)
    if not t.has_widget("checkbox", "📣 Class, follow me"):
        raise BenchError(f"the teacher's key was not taken; the page says {t.alerts}")
    return t


def set_toggle(t: Student, label: str, on: bool) -> None:
    w = t.widget("checkbox", label)
    t.sticky[w.proto.id] = WidgetState(id=w.proto.id, bool_value=on)
    t.changed.add(w.fragment)


async def follow_me(url: str, args, rng: random.Random, out: list[str]) -> bool:
    students = [tab(url, f"student-{n}") for n in range(args.students)]
    t = await teacher_tab(url)

    await asyncio.gather(*(arrive(s, rng.choice(PAGES), rng) for s in students))
    stop = asyncio.Event()
    sitting = [asyncio.create_task(s.idle(time.monotonic() + 3600, stop)) for s in students]
    await asyncio.sleep(3)
    usage = Usage()
    sampler = asyncio.create_task(sampling(usage, stop))
    set_toggle(t, "📣 Class, follow me", True)
    await t.rerun()
    taken, drawn, missed, per_move = [], [], 0, []
    for page in MOVES[: args.moves]:
        marks = {s.name: len(s.arrivals) for s in students}
        clicked = time.monotonic()
        await t.open(page)
        deadline = clicked + 15
        while time.monotonic() < deadline and not all(
                any(name == page for _, name in s.arrivals[marks[s.name]:]) for s in students):
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # the last ones' pages finish drawing
        for s in students:
            when = next((at for at, name in s.arrivals[marks[s.name]:] if name == page), None)
            if when is None:
                missed += 1
                continue
            taken.append(when - clicked)
            done = next((d for d in s.finished if d >= when), None)
            if done is not None:
                drawn.append(done - clicked)
        move = drawn[-args.students:]
        per_move.append(f"{page} {pct(move, 50):.2f}/{pct(move, 95):.2f} s")
        await asyncio.sleep(3)
    cpu_line = usage.line()
    stop.set()
    await asyncio.gather(*sitting, sampler, return_exceptions=True)
    set_toggle(t, "📣 Class, follow me", False)
    await t.rerun()
    errors = [e for s in [t, *students] for e in s.errors]
    ok = pct(drawn, 95) <= 2.0 and not missed and not errors and len(drawn) == len(taken)
    out += [
        f"| follow me: {args.students} students on {len(PAGES)} pages, the teacher opens {args.moves} pages in turn | "
        f"taken p50 {pct(taken, 50):.2f} s, p95 {pct(taken, 95):.2f} s; drawn p50 {pct(drawn, 50):.2f} s, p95 "
        f"{pct(drawn, 95):.2f} s, max {max(drawn, default=float('nan')):.2f} s; {len(taken)} moves of "
        f"{args.students * args.moves}, {missed} missed, {len(errors)} errors; drawn p50/p95 by move: "
        f"{', '.join(per_move)}; {cpu_line} | drawn p95 <= 2 s, none "
        f"missed, no errors | {'PASS' if ok else 'FAIL'} |"]
    await leave([t, *students], errors)
    return ok


async def fool_round(url: str, args, rng: random.Random, collection_dir: Path, out: list[str]) -> bool:
    from digitlab.collection import Collection
    from digitlab.data import load_dataset

    mnist = load_dataset("mnist", allow_download=False)
    t = await teacher_tab(url)
    await t.click("Start the round")
    book = Collection(collection_dir).book
    r = book.round()
    if r is None:
        raise BenchError(f"the round did not start; the Teacher page says {t.alerts}")
    students = [tab(url, f"drawer-{n}") for n in range(args.students)]

    await asyncio.gather(*(arrive(s, "Sketch Pad", rng) for s in students))
    saves, answered = [], {s.name: 0 for s in students}
    stop = asyncio.Event()
    usage = Usage()
    end = time.monotonic() + args.round_s

    async def draw_and_save(s: Student, n: int) -> None:
        await s.idle(time.monotonic() + rng.uniform(0, 10), stop)
        j = 0
        while time.monotonic() < end:
            next_at = time.monotonic() + 10
            i = (n * 97 + j * 13) % len(mnist.test_labels)
            j += 1
            (pad,) = set(s.components) if s.components else (None,)
            if pad is None:
                s.error("no drawing pad on the Sketch Pad")
                return
            drawing = {"drawing": {"raw": {"objects": []}, "data": pad_png(mnist.test_images[i])}}
            s.sticky[pad] = WidgetState(id=pad, json_value=json.dumps(drawing))
            s.changed.add(s.widget("selectbox", "The true digit").fragment)
            await s.rerun()  # the pad's new drawing: the models answer
            s.set_option("The true digit", str(int(mnist.test_labels[i])))
            await s.rerun()
            lat = await s.click("Save to the class collection", timeout=30)
            s.sticky.pop(pad, None)
            for w in [w for w in s.widgets.values() if w.label == "The true digit"]:
                s.sticky.pop(w.proto.id, None)
            if lat is not None:
                saves.append(lat)
                answered[s.name] += 1
            await s.idle(next_at, stop)

    teacher_watch = asyncio.create_task(t.idle(end + 2, stop))
    sampler = asyncio.create_task(sampling(usage, stop))
    await asyncio.gather(*(draw_and_save(s, n) for n, s in enumerate(students)))
    await teacher_watch
    cpu_line = usage.line()
    stop.set()
    await sampler
    gallery = [x.latency for x in t.log if x.kind == "auto" and x.latency is not None and x.page == "Teacher"]
    drawings = Collection(collection_dir).list()
    in_round = book.round_drawings(r.id)
    kept_once = len({d.id for d in drawings}) == len(drawings) and len({d.drawing for d in in_round}) == len(in_round)
    all_kept = len(drawings) == sum(answered.values()) == len(in_round)
    fooled = sum(d.fooled for d in in_round)
    errors = [e for s in [t, *students] for e in s.errors]
    ok = kept_once and all_kept and pct(saves, 95) <= 1.0 and pct(gallery, 95) <= 2.0 and not errors
    out += [
        f"| fool the model: {args.students} students each saving a drawing every 10 s for {args.round_s:.0f} s, the "
        f"teacher's gallery every 2 s | {sum(answered.values())} saves answered, {len(drawings)} in the collection, "
        f"{len(in_round)} in the round ({fooled} fooled it), ids unique: {kept_once}; save p50 {pct(saves, 50):.2f} s, "
        f"p95 {pct(saves, 95):.2f} s; gallery refresh p50 {pct(gallery, 50):.2f} s, p95 {pct(gallery, 95):.2f} s "
        f"({len(gallery)}); {len(errors)} errors; {cpu_line} | every save kept once, save p95 <= 1 s, gallery p95 "
        f"<= 2 s | {'PASS' if ok else 'FAIL'} |"]
    await leave([t, *students], errors)
    return ok


PIDS: list[int] = []  # the web processes measured
PROXY_PORT = 0  # serve's HAProxy, with --web


def main() -> int:
    global PROXY_PORT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=60)
    ap.add_argument("--moves", type=int, default=5, help=f"pages the teacher opens in turn (at most {len(MOVES)})")
    ap.add_argument("--round-s", type=float, default=180.0, help="the round's length (0: follow me only)")
    ap.add_argument("--models", help="copy the seed models from this store instead of training them")
    ap.add_argument("--web", type=int, default=0, help="N web processes behind HAProxy, as `python -m digitlab serve "
                    "--web N` starts them (default: one `streamlit run app.py`)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    data_dir = os.environ.get("DIGITLAB_DATA_DIR")
    if not data_dir:
        ap.error("set DIGITLAB_DATA_DIR to the full MNIST (../shared/mnist)")
    rng = random.Random(32)
    rows = ["| scenario | measured | target | |", "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        models, collection = Path(tmp) / "models", Path(tmp) / "collection"
        models.mkdir()
        env = dict(os.environ, DIGITLAB_DATA_DIR=str(Path(data_dir).resolve()), DIGITLAB_MODEL_DIR=str(models),
                   DIGITLAB_COLLECTION_DIR=str(collection), DIGITLAB_TEACHER_KEY=KEY, DIGITLAB_RUN_LIMIT_S="0")
        os.environ.update(DIGITLAB_COLLECTION_DIR=str(collection))
        import bench_classroom

        bench_classroom.SEED_MODELS = SEED
        seeded = seed_store(models, args.models, env)
        if args.web:
            PROXY_PORT = free_port()
            with Cluster(args.web, PROXY_PORT, env=env) as cluster:
                PIDS[:] = [pid for name, pid in cluster.pids().items() if name.startswith("web")]
                url = f"ws://127.0.0.1:{PROXY_PORT}/_stcore/stream"
                ok = asyncio.run(follow_me(url, args, rng, rows))
                if args.round_s > 0:
                    ok = asyncio.run(fool_round(url, args, rng, collection, rows)) and ok
        else:
            server = Server(env, Path(tmp) / "server.log")
            PIDS[:] = [server.pid]
            try:
                server.wait_ready()
                ok = asyncio.run(follow_me(server.url, args, rng, rows))
                if args.round_s > 0:
                    ok = asyncio.run(fool_round(server.url, args, rng, collection, rows)) and ok
            finally:
                server.stop()
    block = [f"`DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_together.py --students {args.students} "
             f"--moves {args.moves} --round-s {args.round_s:.0f}" + (f" --web {args.web}" if args.web else "")
             + f"` ({seeded}; {os.cpu_count()} cores):", "", *rows]
    print_and_record("## The class together: follow me and a fool-the-model round (bench_together.py)", block,
                     keep=args.record)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
