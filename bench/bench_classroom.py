"""Issues 12 and 28's figures: DigitLab under a class that visits every page, measured against a real `streamlit run app.py`.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_classroom.py --all            # every figure, ~20 min
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_classroom.py --all --record   # ... into bench/RESULTS.md
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_classroom.py --quick          # smoke run, 3 students
    ... --cold / --class / --cpu / --churn / --evaluate / --watch / --queue / --watch-cnn   # one scenario each

What runs: the benchmark seeds a temporary DIGITLAB_MODEL_DIR with three models (`python -m digitlab train`:
a cnn-fast CNN on 10,000 images, a 2-epoch simple_net, a 5-epoch linear-better; or copies of --models DIR), starts
`streamlit run app.py --server.headless true` on 127.0.0.1 at a free port with that store and the full MNIST,
and drives it with simulated students speaking Streamlit's own websocket protocol (classroom_client.py): a
student sends `rerun_script` as a browser tab does and waits for `script_finished`; its live panels
(`st.fragment(run_every=...)`) are re-run at their interval as the browser does, and a widget inside a
fragment reruns only that fragment. A click's latency is send -> script_finished (live-panel reruns are
counted apart). Server CPU (utime+stime), RSS and PSS come from /proc for the server process, and apart for
its descendants (training workers); memory figures for the two together are PSS, which counts a page both map (the
torch libraries, about 300 MB) once where adding their RSS counts it twice. The server, every student and the temporary store go when the run ends,
on Ctrl-C too. Students visit every page, weighted as a lesson spends its time (LESSON); the output ends with each
page's click p50 / p95 in every class phase beside its server CPU per rerun. After the cold scenario, one visitor
opens every page (a warmed server, as when the teacher checks it).

Scenarios, in the order --all runs them:
- cold: --big-class students arrive within 10 s at the server as it has just started, then click as in the class
  scenario for --phase-s (at least 20 s). Targets: click p95 <= 3 s, no errors; peak memory (PSS) of the server
  and its training process together <= 1.2 GB (their RSS is printed beside it).
- cpu: one student reruns every page --reruns times each; the server's CPU delta over each rerun (0.25 s after
  script_finished included), printed beside the figure. The figure itself, median <= 40 ms per page, is issue 28's
  as it defines it: AppTest's, with a stored CNN, MLP and linear model (bench_pages.py, run by --all and --cpu
  once the server has stopped).
- churn: --churn-n students come and go, two at a time: connect, open Home and one other page, leave.
  Server RSS before and 10 s after. Target: growth <= 50 MB.
- class: --students students arrive within 5 s, each every 2-6 s reruns its page (on Data Explorer
  changing the digit or split) or opens another page, for --phase-s. Then one more tab (the "trainer")
  submits cnn-seed with 100 epochs on the CNN page and watches it, the same students go on for --phase-s;
  then a second trainer submits a 100-epoch simple_net on the MLP page (it trains beside the CNN or waits its
  turn, as DIGITLAB_MAX_TRAINING says) and --big-class students in all (the rest arrive within 5 s) go on for
  --phase-s; then both trainers press Stop. Targets: click p95 <= 1.0 s (no training), <= 0.5 s (a CNN
  training), <= 1.5 s and no errors with the big class and two training. Errors: exceptions drawn on a page,
  compile errors, pages not found, closed connections, clicks unanswered within 120 s.
- evaluate: a new student opens Evaluate (the newest model is chosen) and then picks every other stored
  model in its "Model" box; each rerun's time is that model's first paint. Target: <= 1.5 s each.
- watch: one student trains a tiny run first (1 epoch, 1,000 images: a training worker is started and
  warm), then simple_net (5 epochs, batch 250) on the MLP page and watches it; then --students new
  students arrive within 5 s, open MLP and press Train on the same config with batch 251 within a
  second (the queue gives them one shared job) and all watch it. A run's time: Train pressed -> its
  record in the model store (the record's own train_seconds shown beside). Target: many / one <= 1.3.
- queue: the --students students (already on the MLP page) each press Train on simple_net, 5 epochs, each
  with its own batch size (236..267 without 250/251), within a second. Time: first press -> the last
  record. The sum of solo times is the watched-by-one run's time (Train -> record) scaled by each run's
  batch count (ceil(60000 / batch)); the records' own train_seconds are summed beside it. Target: last
  end <= 1.5x that sum. It waits at most max(90 s, 3x that sum).
- watch-cnn: as watch, on the CNN page with CNN_WATCH (cnn-fast, 1 epoch, 20,000 images, batch 64), and the run watched by one again after the class has left: the class's run is set
  against the mean of the two runs watched by one, so that a machine that slows down or speeds up during the
  scenario moves both sides. The three runs differ by one training image (20,000, 20,001 for the class, 19,999),
  not by batch size: an odd batch trained 25% slower. Target: many / one <= 1.1.

Every phase and wait is bounded (and --max-minutes skips what would start later); a scenario whose page
or widget cannot be found stops the run with a message naming what the page shows. The exit code is 1
when a figure fails. Figures only mean something on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classroom_client import ROOT, BenchError, Server, Student  # noqa: E402
from results import record  # noqa: E402

# Every page, weighted as a lesson spends its time (issue 28): the stages the class works through most, Home and
# the class's own handwriting less, the Teacher page (locked to students) now and then.
LESSON = {"Home": 1.0, "Data Explorer": 2.0, "Linear 3 vs 7": 2.0, "MLP": 2.0, "CNN": 2.0, "Features": 1.5,
          "Sketch Pad": 1.5, "Evaluate": 1.5, "Our Handwriting": 0.5, "Teacher": 0.25}
CLASS_PAGES = tuple(LESSON)
SEED_MODELS = (
    ("cnn", "--preset", "cnn-fast", "--train-limit", "10000"),
    ("mlp", "--preset", "simple_net", "--epochs", "2"),
    ("linear", "--preset", "linear-better", "--epochs", "5"),
)
SOLO_BATCH, WATCHED_BATCH = 250, 251
CNN_WATCH = ("cnn-fast", 1, 20_000)  # the CNN page's watched run: preset, epochs, training images
CNN_SOLO_BATCH = 64  # cnn-fast's own, for the runs watched by one and by the class alike
TRAIN_IMAGES = 60_000


@dataclass
class Figure:
    name: str
    measured: str
    target: str
    ok: bool | None  # None: could not be measured


@dataclass
class Sample:
    t: float
    phase: str
    cpu: float
    rss: float
    kids_cpu: float
    kids_rss: float
    kids: int
    pss: float = math.nan  # the server's and its training processes' PSS together


def pct(values: list[float], q: float) -> float:
    vals = sorted(values)
    if not vals:
        return math.nan
    k = (len(vals) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def secs(v: float) -> str:
    return "-" if v is None or math.isnan(v) else (f"{v:.2f} s" if v < 10 else f"{v:.1f} s")


# ---------------------------------------------------------------- the model store


class Records:
    """The model store's JSON records as they appear, each with the time it was first seen."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.seen: dict[str, tuple[dict, float]] = {}
        self.other: set[str] = set()  # JSON files beside the records that are not records
        self.poll()

    def poll(self) -> None:
        now = time.monotonic()
        for path in self.folder.rglob("*.json"):
            if path.stem in self.seen or path.stem in self.other:
                continue
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # unreadable: look again next time
            if isinstance(rec, dict) and isinstance(rec.get("config"), dict) and "id" in rec:
                self.seen[path.stem] = (rec, now)
            else:
                self.other.add(path.stem)

    def matching(self, preset: str, batch_size: int, epochs: int, limit: int = 0) -> list[tuple[dict, float]]:
        return [(r, t) for r, t in self.seen.values()
                if r["config"].get("preset") == preset and r["config"].get("batch_size") == batch_size
                and r["config"].get("epochs") == epochs and r["config"].get("train_limit", 0) == limit]

    async def wait_for(self, wanted: list[int], preset: str, epochs: int, deadline: float,
                       limit: int = 0) -> dict[int, tuple]:
        """Batch size -> (record, seen at) for every wanted run that ends before ``deadline``."""
        found: dict[int, tuple] = {}
        while time.monotonic() < deadline:
            self.poll()
            for bs in wanted:
                if bs not in found and (hits := self.matching(preset, bs, epochs, limit)):
                    found[bs] = hits[0]
            if len(found) == len(wanted):
                break
            await asyncio.sleep(0.05)  # a 1.5 s run timed in 0.2 s steps moved its ratio by 13%
        return found


async def classmate(s: Student, stop: asyncio.Event, arrive_within: float) -> None:
    """One student of a class: arrives within ``arrive_within`` s, then every 2-6 s reruns the page (on the Data
    Explorer changing the digit or the split first) or, 4 times in 10, opens another of CLASS_PAGES."""
    rng = random.Random(s.name)

    def a_page(but: str = "") -> str:
        pages = [p for p in CLASS_PAGES if p != but]
        return rng.choices(pages, weights=[LESSON[p] for p in pages])[0]

    await asyncio.sleep(rng.uniform(0, arrive_within))
    try:
        await s.connect()
        await s.open(a_page())
        while not stop.is_set():
            await s.idle(time.monotonic() + rng.uniform(2, 6), stop)
            if stop.is_set():
                break
            if rng.random() < 0.4:
                await s.open(a_page(but=s.page))
                continue
            if s.page == "Data Explorer" and s.has_widget("selectbox", "Digit"):
                if rng.random() < 0.7:
                    s.set_option("Digit", lambda opts: rng.choice(opts))
                else:
                    s.set_option("Split", lambda opts: rng.choice(opts), kind="radio")
            await s.rerun()
    except BenchError as e:
        s.error(str(e))


def seed_store(folder: Path, models_from: str | None, env: dict[str, str]) -> str:
    if models_from:
        src = Path(models_from)
        files = [p for p in src.iterdir() if p.is_file()]
        if not any(p.suffix == ".json" for p in files):
            raise BenchError(f"--models {src}: no model records (*.json) there")
        for p in files:
            shutil.copy2(p, folder / p.name)
        return f"copied from {src}"
    t0 = time.monotonic()
    for args in SEED_MODELS:
        cmd = [sys.executable, "-m", "digitlab", "train", *args, "--offline"]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise BenchError(f"seeding failed: {' '.join(cmd[1:])}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    return f"trained with `python -m digitlab train` in {time.monotonic() - t0:.0f} s"


# ---------------------------------------------------------------- the benchmark


@dataclass
class Bench:
    args: argparse.Namespace
    server: Server
    records: Records
    figures: list[Figure] = field(default_factory=list)
    students: list[Student] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    phase: str = "start"
    notes: list[str] = field(default_factory=list)
    solo: tuple[float, float, float] | None = None  # the watched-by-one run: (wall s, record's train_seconds, its wall_seconds)
    per_page: dict[str, list] = field(default_factory=dict)  # phase -> the class's reruns in it (each knows its page)
    page_cpu: dict[str, float] = field(default_factory=dict)  # page -> median server CPU s per rerun (cpu scenario)
    page_cpu_apptest: dict[str, float] = field(default_factory=dict)  # page -> the same under AppTest (pages_cpu)

    def __post_init__(self):
        self.rng = random.Random(12)
        self.started = time.monotonic()
        self.deadline = self.started + self.args.max_minutes * 60

    def student(self, name: str) -> Student:
        s = Student(self.server.url, name, phase=self.phase)
        self.students.append(s)
        return s

    def set_phase(self, name: str) -> None:
        self.phase = name
        for s in self.students:
            s.phase = name

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check_server(self) -> None:
        if not self.server.alive():
            raise BenchError(f"the server died (exit code {self.server.proc.returncode}); log: {self.server.log_path}")

    async def sample_forever(self) -> None:
        while True:
            own, kids, n = self.server.usage()
            self.samples.append(Sample(time.monotonic(), self.phase, own.cpu_s, own.rss_mb, kids.cpu_s, kids.rss_mb, n,
                                       own.pss_mb + kids.pss_mb))
            await asyncio.sleep(1.0)

    def usage_in(self, phase: str) -> dict:
        rows = [s for s in self.samples if s.phase == phase]
        if len(rows) < 2:
            return {}
        wall = rows[-1].t - rows[0].t
        return {
            "server CPU": (rows[-1].cpu - rows[0].cpu) / wall,
            "worker CPU": max(0.0, rows[-1].kids_cpu - rows[0].kids_cpu) / wall,
            "server RSS": max(r.rss for r in rows),
            "worker RSS": max(r.kids_rss for r in rows),
            "workers": max(r.kids for r in rows),
        }

    def errors(self, phase: str | None = None) -> list[str]:
        return [e for s in self.students for e in s.errors if phase is None or e.startswith(f"[{phase}]")]

    # ------------------------------------------------------------ scenario: warm-up

    async def warm_up(self) -> None:
        self.set_phase("warm-up")
        s = self.student("teacher")
        await s.connect()
        times = []
        for page in CLASS_PAGES:
            times.append(f"{page} {secs(await s.open(page))}")
        await s.close()
        self.notes.append("Warm-up, one visitor's first load of each page: " + ", ".join(times) + ".")

    # ------------------------------------------------------------ scenario: CPU per rerun

    async def cpu_per_rerun(self) -> None:
        self.set_phase("cpu")
        s = self.student("cpu")
        await s.connect()
        for page in CLASS_PAGES:
            await s.open(page)
            deltas = []
            for _ in range(self.args.reruns):
                before = self.server.usage()[0].cpu_s
                if await s.rerun() is None:
                    continue
                await asyncio.sleep(0.25)
                deltas.append(self.server.usage()[0].cpu_s - before)
            med = statistics.median(deltas) if deltas else math.nan
            mean = statistics.fmean(deltas) if deltas else math.nan
            self.page_cpu[page] = med
            self.figures.append(Figure(
                f"real-server CPU per rerun: {page}",
                f"median {med * 1000:.0f} ms (mean {mean * 1000:.0f} ms, {len(deltas)} reruns; 10 ms ticks, the 0.25 s "
                "after each rerun counted)", "beside AppTest's figure (below)", None))
        await s.close()

    # ------------------------------------------------------------ scenario: students coming and going

    async def churn(self) -> None:
        self.set_phase("churn")
        await asyncio.sleep(2)
        before = self.server.usage()[0].rss_mb
        todo = list(range(self.args.churn_n))
        peak = before
        done = 0

        async def lane() -> None:
            nonlocal peak, done
            while todo and self.left() > 60:
                i = todo.pop(0)
                s = self.student(f"visitor-{i}")
                try:
                    await s.connect()
                    await s.open("Home")
                    await s.open(self.rng.choice(CLASS_PAGES[1:]))
                    done += 1
                except BenchError as e:
                    s.error(str(e))
                finally:
                    await s.close()
                peak = max(peak, self.server.usage()[0].rss_mb)

        await asyncio.gather(lane(), lane())
        await asyncio.sleep(10)
        after = self.server.usage()[0].rss_mb
        self.figures.append(Figure(
            f"{self.args.churn_n} students coming and going: server RSS growth",
            f"{after - before:+.0f} MB ({before:.0f} -> {after:.0f} MB 10 s after the last left, peak {peak:.0f} MB;"
            f" {done} came)",
            "<= 50 MB", done == self.args.churn_n and after - before <= 50))

    # ------------------------------------------------------------ scenario: a class, with and without training

    async def classmate(self, s: Student, stop: asyncio.Event, arrive_within: float) -> None:
        await classmate(s, stop, arrive_within)

    async def start_long_run(self, trainer: Student, page: str = "CNN", preset: str = "cnn-seed") -> None:
        """A 100-epoch run of ``preset`` started from ``page``: it trains (or waits its turn) until stopped."""
        await trainer.connect()
        await trainer.open(page)
        trainer.set_option("Preset", preset)
        await trainer.rerun()
        trainer.set_number("Epochs", 100)
        await trainer.click("Train")
        t_end = time.monotonic() + 30
        while not trainer.has_widget("button", "Stop") and time.monotonic() < t_end:
            await trainer.idle(time.monotonic() + 1)
        if not trainer.has_widget("button", "Stop"):
            raise BenchError(f"the {preset} run did not start: no Stop button on the {page} page "
                             f"(it says {trainer.alerts})")

    async def stop_run(self, trainer: Student) -> str:
        if not trainer.has_widget("button", "Stop"):
            return "the run had ended before Stop"
        await trainer.click("Stop")
        t_end = time.monotonic() + 120
        while trainer.has_widget("button", "Stop") and time.monotonic() < t_end:  # it goes when the job ends
            await trainer.idle(time.monotonic() + 1)
        return "still running 120 s after Stop" if trainer.has_widget("button", "Stop") else "stopped"

    async def a_class(self) -> None:
        a = self.args
        stop = asyncio.Event()
        tasks = []
        msgs = []

        def join(n: int) -> None:
            for i in range(len(tasks), len(tasks) + n):
                s = self.student(f"student-{i}")
                tasks.append(asyncio.create_task(self.classmate(s, stop, 5.0)))

        def result(phase: str, p95_target: float, no_errors: bool) -> None:
            logs = [r for s in self.students if not s.name.startswith("trainer") for r in s.log if r.phase == phase]
            self.per_page[phase] = logs
            clicks = [r for r in logs if r.kind == "click"]
            lat = [r.latency for r in clicks if r.latency is not None]
            auto = [r.latency for r in logs if r.kind == "auto" and r.latency is not None]
            errs = self.errors(phase)
            p50, p95 = pct(lat, 0.5), pct(lat, 0.95)
            ok = bool(lat) and p95 <= p95_target and (not no_errors or not errs)
            self.figures.append(Figure(
                f"{phase}: click p95",
                f"p95 {secs(p95)}, p50 {secs(p50)}, max {secs(max(lat, default=math.nan))}; {len(lat)} clicks,"
                f" {len(clicks) - len(lat)} unanswered, {len(errs)} errors; live-panel reruns: {len(auto)}"
                f" (p95 {secs(pct(auto, 0.95))})",
                f"<= {p95_target:g} s" + (", no errors" if no_errors else ""), ok))

        try:
            phase = f"{a.students} students, no training"
            self.set_phase(phase)
            join(a.students)
            await asyncio.sleep(a.phase_s)
            result(phase, 1.0, False)

            self.check_server()
            trainer = self.student("trainer")
            phase = f"{a.students} students, a CNN training"
            self.set_phase(phase)
            await self.start_long_run(trainer)
            follow = asyncio.create_task(trainer.idle(time.monotonic() + 3 * a.phase_s + 60, stop))
            await asyncio.sleep(a.phase_s)
            result(phase, 0.5, False)

            self.check_server()
            phase = f"{a.big_class} students, two training"
            self.set_phase(phase)
            second = self.student("trainer-2")  # an MLP run: it trains beside the CNN, or waits its turn
            await self.start_long_run(second, "MLP", "simple_net")
            follow2 = asyncio.create_task(second.idle(time.monotonic() + 2 * a.phase_s + 60, stop))
            join(a.big_class - a.students)
            await asyncio.sleep(a.phase_s)
            result(phase, 1.5, True)
            self.set_phase("class leaving")
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, follow, follow2, return_exceptions=True), 180)
            msgs.append(f"CNN run {await self.stop_run(trainer)}, its live panel rerun "
                        f"{sum(r.kind == 'auto' for r in trainer.log)} times; MLP run {await self.stop_run(second)}")
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in self.students:
                await s.close()
        for phase in (f"{a.students} students, no training", f"{a.students} students, a CNN training",
                      f"{a.big_class} students, two training"):
            if u := self.usage_in(phase):
                msgs.append(f"{phase}: server CPU {u['server CPU']:.0%}, {u['workers']} worker process(es) at"
                            f" {u['worker CPU']:.0%} CPU; peak RSS server {u['server RSS']:.0f} MB, workers"
                            f" {u['worker RSS']:.0f} MB")
        self.notes.append("Class: " + "; ".join(msgs) + ".")

    # ------------------------------------------------------------ scenario: Evaluate's first paint

    async def evaluate(self) -> None:
        self.set_phase("evaluate")
        # A run stopped a moment ago may still be saving: its record appears, then the analysis its first paint
        # reads. The figure is for models that are stored, so wait (at most a minute) until each has its analysis.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            self.records.poll()
            if all((self.records.folder / "analyses" / f"{mid}.safetensors").exists() for mid in self.records.seen):
                break
            await asyncio.sleep(0.5)
        self.notes.append(f"Evaluate: every stored model had its analysis {time.monotonic() - t0:.1f} s after the "
                          "scenario began (a stopped run finishes saving first).")
        s = self.student("evaluator")
        await s.connect()
        times = []
        first = await s.open("Evaluate")
        if not s.has_widget("selectbox", "Model"):
            raise BenchError(f"Evaluate shows no 'Model' box (it says {s.alerts}); is the model store empty?")
        box = s.widget("selectbox", "Model").proto
        options = list(box.options)
        default = box.default if box.HasField("default") else 0
        times.append((options[default], first))
        for i, option in enumerate(options):
            if i == default or self.left() < 60:
                continue
            s.set_option("Model", option)
            times.append((option, await s.rerun()))
        await s.close()
        worst = max((t for _, t in times if t is not None), default=math.nan)
        answered = all(t is not None for _, t in times)
        each = "; ".join(f"{o.split(' · ')[0]} {o.split(' · ')[1] if ' · ' in o else ''}: {secs(t)}" for o, t in times)
        self.figures.append(Figure(
            "Evaluate first paint, every stored model", f"max {secs(worst)} ({len(times)} models: {each})",
            "<= 1.5 s", answered and len(times) == len(options) and worst <= 1.5))

    # ------------------------------------------------------------ scenarios: watched runs and the queue

    async def ready_mlp(self, s: Student, batch_size: int) -> None:
        await s.open("MLP")
        s.set_option("Preset", "simple_net")
        await s.rerun()
        s.set_number("Epochs", 5)
        s.set_number("Batch size", batch_size)
        s.set_number("Training images", 0)
        await s.rerun()  # as a browser does when a box is left: the settings rerun the page, then Train its block

    async def warm_up_run(self, batch: list[int], preset: str, limit: int) -> None:
        """Wait for the 1-epoch warm-up run's record, then for the first part of its analysis, which the training
        process makes right after the record: a timed run pressed before that would wait for it (the CNN's solo run
        took 4.8 s longer than its own training and came out slower than the same run watched by 30)."""
        deadline = time.monotonic() + min(120, self.left())
        found = await self.records.wait_for(batch, preset, 1, deadline, limit)
        for rec, _ in found.values():
            await self.analysed(rec["id"], deadline)

    async def analysed(self, model_id: str, deadline: float) -> None:
        """Until the model's analysis (its first part) is in the store, or ``deadline``."""
        while not (self.records.folder / "analyses" / f"{model_id}.safetensors").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def arrive(self, name: str, ready) -> list[Student]:
        """--students new students, one every 5 s / --students, each connecting and getting its page ready
        (``ready(student)``, a coroutine); the class, once all are ready."""
        watchers = [self.student(f"{name}-{i}") for i in range(self.args.students)]

        async def one(s: Student, delay: float) -> None:
            await asyncio.sleep(delay)
            await s.connect()
            await ready(s)

        await asyncio.gather(*(one(s, i * 5.0 / len(watchers)) for i, s in enumerate(watchers)))
        return watchers

    async def watched_run(self, watchers: list[Student], batch_size: int, preset: str = "simple_net", epochs: int = 5,
                          limit: int = 0) -> tuple[float, float, float] | None:
        """Every watcher presses Train on the same run (a 5-epoch simple_net unless told) within a second; (wall,
        train_seconds, the worker's wall_seconds)."""
        stop = asyncio.Event()
        t0 = time.monotonic()
        clicks = [asyncio.create_task(self._click_then_watch(w, i * 1.0 / len(watchers), stop))
                  for i, w in enumerate(watchers)]
        found = await self.records.wait_for([batch_size], preset, epochs, t0 + min(300, self.left()), limit)
        stop.set()
        await asyncio.gather(*clicks, return_exceptions=True)
        if batch_size not in found:
            return None
        rec, seen = found[batch_size]
        await self.analysed(rec["id"], time.monotonic() + 60)  # so that the next timed run does not wait for it
        return seen - t0, float(rec.get("train_seconds", math.nan)), float(rec.get("wall_seconds", math.nan))

    async def _click_then_watch(self, s: Student, delay: float, stop: asyncio.Event) -> None:
        await asyncio.sleep(delay)
        try:
            await s.click("Train")
            await s.idle(time.monotonic() + 600, stop)
        except BenchError as e:
            s.error(str(e))

    async def watch(self) -> list[Student]:
        """Returns the class that watched, still connected and on the MLP page (the queue scenario uses it)."""
        self.set_phase("watched by one")
        one = self.student("watcher")
        await one.connect()
        # A tiny run first (1 epoch on 1,000 images), so that no timed run pays for starting a training worker.
        await self.ready_mlp(one, SOLO_BATCH)
        one.set_number("Epochs", 1)
        one.set_number("Training images", 1000)
        await one.click("Train")
        await self.warm_up_run([SOLO_BATCH], "simple_net", 1000)
        await self.ready_mlp(one, SOLO_BATCH)
        self.solo = await self.watched_run([one], SOLO_BATCH)
        await one.close()
        if self.solo is None:
            raise BenchError(f"the watched-by-one run (simple_net, batch {SOLO_BATCH}) left no model record")

        self.set_phase(f"watched by {self.args.students}")
        watchers = await self.arrive("watcher", lambda s: self.ready_mlp(s, WATCHED_BATCH))
        many = await self.watched_run(watchers, WATCHED_BATCH)
        if many is None:
            self.figures.append(Figure("one run watched by the class vs by one", "the run left no record in 300 s",
                                       "<= 1.3x", False))
            return watchers
        shared = len(self.records.matching("simple_net", WATCHED_BATCH, 5))
        auto = [r.latency for s in watchers for r in s.log if r.kind == "auto" and r.phase == self.phase]
        answered = [a for a in auto if a is not None]
        self.notes.append(f"Watched run: the {len(watchers)} watchers' live panels reran {len(auto)} times, "
                          f"p50 {secs(pct(answered, 0.5))}, p95 {secs(pct(answered, 0.95))}, "
                          f"{len(auto) - len(answered)} unanswered.")
        self.figures.append(Figure(
            f"one run watched by {len(watchers)} vs by one",
            f"{many[0] / self.solo[0]:.2f}x ({secs(many[0])} vs {secs(self.solo[0])}, Train -> record;"
            f" records' train_seconds {many[1]:.1f} vs {self.solo[1]:.1f} s, the worker's wall time {many[2]:.1f} vs"
            f" {self.solo[2]:.1f} s; {shared} job(s) for the class)",
            "<= 1.3x", many[0] / self.solo[0] <= 1.3))
        return watchers

    async def queue(self, students: list[Student]) -> None:
        self.set_phase(f"{len(students)} runs at once")
        sizes = [b for b in range(SOLO_BATCH - 14, SOLO_BATCH + 30) if b not in (SOLO_BATCH, WATCHED_BATCH)]
        sizes = sizes[: len(students)]
        # One rerun each first: a tab whose live panel has just ended may still be drawing the page afresh.
        await asyncio.gather(*(s.rerun() for s in students))
        for s, bs in zip(students, sizes):
            s.set_number("Batch size", bs)
        stop = asyncio.Event()
        t0 = time.monotonic()
        clicks = [asyncio.create_task(self._click_then_watch(s, i * 1.0 / len(students), stop))
                  for i, s in enumerate(students)]
        solo_wall = self.solo[0]
        solo_sum = sum(solo_wall * math.ceil(TRAIN_IMAGES / bs) / math.ceil(TRAIN_IMAGES / SOLO_BATCH) for bs in sizes)
        budget = min(max(90.0, 3.0 * solo_sum), self.left() - 30)
        found = await self.records.wait_for(sizes, "simple_net", 5, t0 + budget)
        stop.set()
        await asyncio.gather(*clicks, return_exceptions=True)
        last = max((seen for _, seen in found.values()), default=math.nan) - t0
        own = sum(float(r.get("train_seconds", 0.0)) for r, _ in found.values())
        name = f"{len(sizes)} different 5-epoch MLP runs at once: last end vs sum of solo times"
        if len(found) < len(sizes):
            measured = (f"> {budget / solo_sum:.2f}x: only {len(found)}/{len(sizes)} runs ended within {budget:.0f} s"
                        f" of the first Train (solo sum {secs(solo_sum)})")
        else:
            measured = (f"{last / solo_sum:.2f}x (last record {secs(last)} after the first Train, solo sum"
                        f" {secs(solo_sum)}; the records' own train_seconds sum to {own:.0f} s)")
        self.figures.append(Figure(name, measured, "<= 1.5x", len(found) == len(sizes) and last <= 1.5 * solo_sum))


    # ------------------------------------------------------------ scenario: a class arriving at a cold server

    async def cold(self) -> None:
        """--big-class students arrive within 10 s at the server as it has just started (nothing computed, nothing
        cached), each then clicking as in the class scenario, for --phase-s."""
        a = self.args
        phase = f"{a.big_class} students arriving within 10 s at a cold server"
        self.set_phase(phase)
        stop = asyncio.Event()
        students = [self.student(f"newcomer-{i}") for i in range(a.big_class)]
        tasks = [asyncio.create_task(classmate(s, stop, 10.0)) for s in students]
        try:
            await asyncio.sleep(max(a.phase_s, 20.0))
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 180)
            for s in students:
                await s.close()
        logs = [r for s in students for r in s.log if r.phase == phase]
        self.per_page[phase] = logs
        lat = [r.latency for r in logs if r.kind == "click" and r.latency is not None]
        rows = [x for x in self.samples if x.phase == phase]
        peak = max((x.pss for x in rows), default=math.nan)
        peak_rss = max((x.rss + x.kids_rss for x in rows), default=math.nan)
        peak_server = max((x.rss for x in rows), default=math.nan)
        errs = self.errors(phase)
        p95 = pct(lat, 0.95)
        self.figures.append(Figure(
            f"{phase}: click p95", f"p95 {secs(p95)}, p50 {secs(pct(lat, 0.5))}, max {secs(max(lat, default=math.nan))};"
            f" {len(lat)} clicks, {len(errs)} errors", "<= 3 s, no errors", bool(lat) and p95 <= 3.0 and not errs))
        self.figures.append(Figure(
            f"{phase}: peak memory", f"{peak:.0f} MB, the server and its training process together (PSS: the torch "
            f"libraries both map counted once; their RSS added up {peak_rss:.0f} MB, the server's alone "
            f"{peak_server:.0f} MB)", "<= 1200 MB", peak <= 1200))

    # ------------------------------------------------------------ scenario: a CNN run watched on the CNN page

    async def ready_cnn(self, s: Student, batch_size: int, epochs: int = CNN_WATCH[1],
                        limit: int = CNN_WATCH[2]) -> None:
        await s.open("CNN")
        s.set_option("Preset", CNN_WATCH[0])
        await s.rerun()
        s.set_number("Epochs", epochs)
        s.set_number("Batch size", batch_size)
        s.set_number("Training images (0 = all)", limit)
        await s.rerun()

    async def watch_cnn(self) -> None:
        """One student trains CNN_WATCH on the CNN page and watches it; then --students students open the CNN page
        and press Train on the same run (one batch size more) within a second: one shared job, 30 live pages."""
        preset, epochs, limit = CNN_WATCH
        self.set_phase("CNN watched by one")
        one = self.student("cnn-watcher")
        await one.connect()
        await self.ready_cnn(one, CNN_SOLO_BATCH, 1, 1000)  # a tiny run first: the training process is warm
        await one.click("Train")
        await self.warm_up_run([CNN_SOLO_BATCH], preset, 1000)
        await self.ready_cnn(one, CNN_SOLO_BATCH)
        solo = await self.watched_run([one], CNN_SOLO_BATCH, preset, epochs, limit)
        name = f"one CNN run watched by {self.args.students} on the CNN page vs by one"
        if solo is None:
            await one.close()
            self.figures.append(Figure(name, "the watched-by-one run left no record", "<= 1.1x", False))
            return
        self.set_phase(f"CNN watched by {self.args.students}")
        watchers = await self.arrive("cnn-watcher", lambda s: self.ready_cnn(s, CNN_SOLO_BATCH, limit=limit + 1))
        try:
            many = await self.watched_run(watchers, CNN_SOLO_BATCH, preset, epochs, limit + 1)
        finally:
            for s in watchers:
                await s.close()
        if many is None:
            await one.close()
            self.figures.append(Figure(name, "the run left no record in 300 s", "<= 1.1x", False))
            return
        self.set_phase("CNN watched by one, again")
        await self.ready_cnn(one, CNN_SOLO_BATCH, limit=limit - 1)
        again = await self.watched_run([one], CNN_SOLO_BATCH, preset, epochs, limit - 1)
        await one.close()
        solos = [solo] + ([again] if again is not None else [])
        one_s = sum(r[0] for r in solos) / len(solos)
        self.figures.append(Figure(
            name, f"{many[0] / one_s:.2f}x ({secs(many[0])} vs {' and '.join(secs(r[0]) for r in solos)} watched by "
            f"one before and after, Train -> record; the training process's wall time {many[2]:.1f} vs "
            f"{' and '.join(f'{r[2]:.1f}' for r in solos)} s, CPU {many[1]:.1f} vs "
            f"{' and '.join(f'{r[1]:.1f}' for r in solos)} s; {preset}, {epochs} epoch, {limit:,} images)",
            "<= 1.1x", many[0] / one_s <= 1.1))


# ---------------------------------------------------------------- running it


async def run(bench: Bench, which: set[str]) -> None:
    sampler = asyncio.create_task(bench.sample_forever())
    try:
        if "cold" in which:  # first, while the server has only just started
            print(f"[{time.monotonic() - bench.started:5.0f} s] cold", flush=True)
            await bench.cold()
        await bench.warm_up()
        steps = [("cpu", bench.cpu_per_rerun), ("churn", bench.churn), ("class", bench.a_class),
                 ("evaluate", bench.evaluate)]
        for name, step in steps:
            if name not in which:
                continue
            if bench.left() < 60:
                bench.notes.append(f"Skipped {name}: the run reached --max-minutes.")
                continue
            bench.check_server()
            print(f"[{time.monotonic() - bench.started:5.0f} s] {name}", flush=True)
            await step()
        if which & {"watch", "queue"} and bench.left() >= 120:
            bench.check_server()
            print(f"[{time.monotonic() - bench.started:5.0f} s] watch", flush=True)
            watchers = await bench.watch()
            try:
                if "queue" in which and bench.left() >= 120:
                    bench.check_server()
                    print(f"[{time.monotonic() - bench.started:5.0f} s] queue", flush=True)
                    await bench.queue(watchers)
            finally:
                for s in watchers:
                    await s.close()
        if "watch-cnn" in which and bench.left() >= 120:
            bench.check_server()
            print(f"[{time.monotonic() - bench.started:5.0f} s] watch-cnn", flush=True)
            await bench.watch_cnn()
        bench.check_server()
    finally:
        sampler.cancel()
        for s in bench.students:
            await s.close()


def pages_table(bench: Bench) -> list[str]:
    """Each page's click latency (p50 / p95, clicks) in every class phase, and its median server CPU per rerun."""
    phases = list(bench.per_page)
    if not phases and not bench.page_cpu:
        return []
    out = ["", "Per page: click p50 / p95 (clicks) in each phase; server CPU per rerun (median): AppTest's (the figure), "
           "and the real server's (the cpu scenario).", "",
           "| " + " | ".join(["page", *phases, "server CPU per rerun, AppTest", "real server"]) + " |",
           "|---" * (len(phases) + 3) + "|"]
    for page in CLASS_PAGES:
        cells = []
        for phase in phases:
            lat = [r.latency for r in bench.per_page[phase] if r.page == page and r.kind == "click"
                   and r.latency is not None]
            cells.append(f"{secs(pct(lat, 0.5))} / {secs(pct(lat, 0.95))} ({len(lat)})" if lat else "-")
        for cpu in (bench.page_cpu_apptest.get(page), bench.page_cpu.get(page)):
            cells.append("-" if cpu is None or math.isnan(cpu) else f"{cpu * 1000:.0f} ms")
        out.append(f"| {page} | " + " | ".join(cells) + " |")
    return out


def table(bench: Bench) -> list[str]:
    out = ["| figure | measured | target | |", "|---|---|---|---|"]
    for f in bench.figures:
        verdict = "-" if f.ok is None else ("PASS" if f.ok else "FAIL")
        out.append(f"| {f.name} | {f.measured} | {f.target} | {verdict} |")
    out += pages_table(bench)
    errs = bench.errors()
    out += ["", f"Errors over the whole run: {len(errs)}."]
    out += [f"- {e}" for e in errs[:8]]
    if len(errs) > 8:
        out.append(f"- ... and {len(errs) - 8} more")
    return out


PAGES_RERUNS = 20  # warm AppTest reruns of each page for issue 28's per-page figure


def pages_cpu(bench: Bench, env: dict, tmp: Path) -> None:
    """Issue 28's per-page figure as it is defined: the server CPU of one rerun of each page under AppTest (the real
    runtime in this process, no websocket), median of PAGES_RERUNS warm reruns, with a stored CNN, MLP and linear model
    (bench_pages.py, run here once the server has stopped, so nothing else shares the machine)."""
    out = tmp / "pages.json"
    print(f"[{time.monotonic() - bench.started:5.0f} s] pages (AppTest)", flush=True)
    done = subprocess.run([sys.executable, "bench/bench_pages.py", "--keep-models", str(tmp / "pages-models"),
                           "--reruns", str(PAGES_RERUNS), "--json", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    if not out.is_file():
        bench.figures.append(Figure("server CPU per rerun (AppTest)", f"bench_pages.py failed: "
                                    f"{(done.stderr or done.stdout)[-300:]}", "<= 40 ms", False))
        return
    for page, r in json.loads(out.read_text()).items():
        bench.page_cpu_apptest[page] = r["median"]
        bench.figures.append(Figure(
            f"server CPU per rerun (AppTest): {page}", f"median {r['median'] * 1000:.0f} ms (p95 "
            f"{r['p95'] * 1000:.0f} ms, {PAGES_RERUNS} reruns; first run {r['first_cpu']:.2f} s)", "<= 40 ms",
            r["median"] <= 0.040 and not r["problems"]))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    for name in ("all", "cold", "class", "cpu", "churn", "evaluate", "watch", "queue", "watch-cnn"):
        ap.add_argument(f"--{name}", action="store_true", help=f"run the {name} scenario" if name != "all" else
                        "every scenario (the figures of issues 12 and 28)")
    ap.add_argument("--quick", action="store_true", help="smoke run: every scenario, 3 students, 15 s phases")
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--big-class", type=int, default=60)
    ap.add_argument("--phase-s", type=float, default=50.0, help="seconds of each class phase")
    ap.add_argument("--reruns", type=int, default=30, help="reruns per page for the CPU figure")
    ap.add_argument("--churn-n", type=int, default=100)
    ap.add_argument("--models", default=None, help="copy the stored models from DIR instead of training three")
    ap.add_argument("--max-minutes", type=float, default=20.0, help="skip what would start after this")
    ap.add_argument("--record", action="store_true", help="put the table into bench/RESULTS.md")
    args = ap.parse_args()
    scenarios = ("cold", "class", "cpu", "churn", "evaluate", "watch", "queue", "watch-cnn")
    which = {n for n in scenarios if getattr(args, n.replace("-", "_"))}
    if args.all or args.quick or not which:
        which = set(scenarios)
    if args.quick:
        args.students, args.big_class, args.phase_s, args.reruns, args.churn_n = 3, 4, 15.0, 4, 6
    if args.record and args.quick:
        ap.error("--quick runs are smoke tests: nothing to record")

    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops the server and the students as Ctrl-C does
    data_dir = Path(os.environ.get("DIGITLAB_DATA_DIR") or ROOT.parent / "shared" / "mnist").resolve()
    if not any(data_dir.glob("train-images*")):
        raise SystemExit(f"no full MNIST in {data_dir}: set DIGITLAB_DATA_DIR (the figures are for the full data set)")
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-classroom-") as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        # no limit on one run's cost: the CNN scenarios measure the class while a long run trains
        env = dict(os.environ, DIGITLAB_DATA_DIR=str(data_dir), DIGITLAB_MODEL_DIR=str(models), DIGITLAB_RUN_LIMIT_S="0")
        print("seeding the model store ...", flush=True)
        seeded = seed_store(models, args.models, env)
        server = Server(env, Path(tmp) / "server.log")
        bench, stopped = None, ""
        try:
            up = server.wait_ready()
            print(f"server pid {server.pid} on port {server.port}, up in {up:.1f} s", flush=True)
            bench = Bench(args, server, Records(models))
            bench.notes.insert(0, f"{len(bench.records.seen)} stored models at the start ({seeded}).")
            asyncio.run(run(bench, which))
        except BenchError as e:
            stopped = f"Stopped early: {e}"
        except KeyboardInterrupt:
            stopped = "Interrupted (Ctrl-C or a kill)."
        finally:
            server.stop()
            log_tail = (Path(tmp) / "server.log").read_text(errors="replace")[-3000:]
        if stopped:
            print(f"\n{stopped} The server and the students are stopped.", file=sys.stderr)
        if bench is None or not bench.figures:
            print(f"no figures; the server's log ends:\n{log_tail}", file=sys.stderr)
            return 1
        if stopped:
            bench.notes.append(stopped)
            args.record = False  # a partial run is not a result
        elif "cpu" in which:
            pages_cpu(bench, env, Path(tmp))
    elapsed = time.monotonic() - t_start
    command = f"DIGITLAB_DATA_DIR={os.environ.get('DIGITLAB_DATA_DIR', '../shared/mnist')} python bench/bench_classroom.py " \
        + " ".join(sys.argv[1:])
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {os.cpu_count()} cores"
        f" · streamlit run app.py · {elapsed / 60:.1f} min",
        "",
        f"`{command.strip()}`",
        "",
        *table(bench),
        "",
        *bench.notes,
        f"Bench client's own CPU: {sum(os.times()[:2]):.0f} s over {elapsed:.0f} s (it shares the machine).",
    ]
    print("\n" + "\n".join(lines))
    if args.record:
        record("## Classroom", lines)
        print("\nrecorded in bench/RESULTS.md")
    failed = [f for f in bench.figures if f.ok is False]
    return 1 if failed or stopped else 0


if __name__ == "__main__":
    sys.exit(main())
