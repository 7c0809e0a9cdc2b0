"""One training queue per server, shared by every browser session; the training itself runs in worker processes.

A page submits a config and gets a Snapshot back at once. The queue is fair: one waiting run per student,
and each waiting run knows its place and when it should start, from the speed measured on earlier runs.
Identical configs share one job (or the model already stored). A worker process (``digitlab.worker``,
at a lower OS priority) trains one job at a time and saves it; this module only keeps the books.

The rules of the books: one lock (``_cond``) guards every job; a job's state changes only in
``_transition``; nothing slow (the store, a process) is touched while holding the lock.

Who may do what: a student's Stop detaches them from a run (``stop``), which is cancelled only when nobody else
waits on it; the teacher (``teacher_key_ok``) and the command line may cancel, pause, resume or step any run
(``cancel``, ``pause``, ``resume``, ``step``) and set the class's limit on one run's cost (``limit_s``): a student's run
(``submit(limited=True)``) estimated to take longer is refused before it is queued, with the estimate and what
to change. A run shared by several students (identical settings) is paused, resumed and stepped only by the student
who started it, while they still follow it (``steerable_by``), or by the teacher; the others watch. A student cannot
resume the teacher's pause, and a student's pause ends by itself after STUDENT_PAUSE_S: the class's training slot
is never held for long by one student.

While a run trains, its worker publishes its first layer and its answers on 16 test digits about once a second,
and what each single step changed (``live``); ``watch`` hands the latest of these to the pages, which redraw
them once per change (``Snapshot.watch_version``).

The queue lives in this module (``shared_queue``), outside anything a client's message can clear; job ids
carry a random part drawn per queue and a counter, so they are never reused, even by a new queue.
"""

from __future__ import annotations

import functools
import hmac
import itertools
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .data import MNIST
from .models import TrainConfig
from .store import ModelStore, StoreError
from .train import Event, task_size
from .worker import env_int

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
MAX_BATCH_POINTS = 4000  # loss-per-batch points kept for the live chart
KEEP_FINISHED = 200  # finished jobs remembered for the pages; older ones are pruned
ROOT = Path(__file__).resolve().parent.parent

# images per second of training compute, by kind, before this server has measured anything (one core of a laptop)
DEFAULT_RATES = {"linear": 400_000.0, "mlp": 60_000.0, "cnn": 4_000.0}
OVERHEAD_S = 1.0  # a job's start, test-set evaluation and save, roughly
# seconds of fixed cost per training step, whatever the batch (Python, optimizer, small kernels): what makes a
# batch of 1 so slow. A CNN at batch 1 measured 72 images/s where batch 64 runs thousands.
STEP_S = {"linear": 0.0003, "mlp": 0.001, "cnn": 0.012}
DEFAULT_LIMIT_S = 300.0  # the class's limit on one student's run: a few minutes
# Memory comes back: a training process keeps what its runs allocated outside Python (oneDNN's kernels for every
# batch shape it met, the allocator's arenas), about 3-6 MB a run with distinct settings. So it is ended when idle
# this long (the next run starts a fresh one, a few seconds), and replaced between runs once it has grown this much.
WORKER_IDLE_S = 120.0
WORKER_GROWTH_MB = 200.0
IDLE = object()  # what _next_job returns when no run came within the idle time
WARM = object()  # what _next_job returns when a page has asked for a training process ahead of its first run
STUDENT_PAUSE_S = 300.0  # a student's pause ends by itself after this: the runs waiting behind it go on
STEPS_KEPT = 20  # the single steps of a run the pages can show


class JobRefused(Exception):
    """A submit the queue will not take, with a message fit for a page."""


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a job, safe to read from any session while it trains."""

    id: str
    config: TrainConfig
    owner: str
    state: str
    position: int  # place in the queue (1 = next); 0 when not waiting
    progress: float  # 0..1
    last: Event | None
    history: tuple[dict, ...]  # one record per finished epoch (Event.record())
    batch_losses: tuple[tuple[float, float], ...]  # (epoch as a fraction, loss)
    batch_accuracies: tuple[tuple[float, float], ...]  # (epoch as a fraction, the batch's training accuracy)
    error: str
    model_id: str  # the stored model, once saved
    message: str  # a line for the page: what is happening now
    submitted: float
    reused: bool  # True when this answered a submit with an existing job or stored model
    eta_start: float = 0.0  # waiting: when (time.time()) it should start; 0 otherwise
    compute_seconds: float = 0.0  # the worker's own compute time, once finished
    version: int = 0  # grows with every change: what a page draws from this snapshot can be cached under it
    watchers: tuple[str, ...] = ()  # the students waiting on this run: its owner and everyone who joined it
    paused: bool = False  # held between batches (by the teacher, or by the student who started it)
    paused_by: str = ""  # "teacher" or "starter" while paused
    watch_version: int = 0  # grows with every live picture and single step: what ``watch`` returns is drawn under it
    result: dict | None = None  # a fine-tuning's numbers, once done (finetune.summary)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(eq=False)
class Job:
    id: str
    config: TrainConfig
    owner: str
    data: MNIST
    n_images: int
    continue_from: str = ""
    state: str = QUEUED
    last: Event | None = None
    history: list = field(default_factory=list)
    batch_losses: deque = field(default_factory=lambda: deque(maxlen=MAX_BATCH_POINTS))
    batch_accuracies: deque = field(default_factory=lambda: deque(maxlen=MAX_BATCH_POINTS))
    error: str = ""
    model_id: str = ""
    message: str = "waiting for its turn"
    submitted: float = field(default_factory=time.time)
    started: float = 0.0
    ended: float = 0.0
    reused: bool = False
    cancelled: bool = False
    compute_seconds: float = 0.0
    version: int = 0
    watchers: set = field(default_factory=set)
    paused: bool = False
    paused_by: str = ""
    pauses: int = 0  # counts pauses: a student's pause that lapses ends only the pause it was set for
    watch: dict | None = None  # the worker's latest live picture (live.snapshot)
    steps: deque = field(default_factory=lambda: deque(maxlen=STEPS_KEPT))  # live.step_report of each single step
    watch_version: int = 0
    finetune: dict | None = None  # a fine-tuning of continue_from on the class's drawings (finetune.pack), until it ends
    result: dict | None = None  # what the finished message said of it (finetune.summary)


def steerable_by(job: Job | Snapshot, who: str) -> bool:
    """Whether the student ``who`` may pause, resume and step a run: they started it and still follow it. The
    others who share it (identical settings) only watch; the teacher steers any run."""
    return bool(who) and who == job.owner and who in job.watchers


def speed_key(config: TrainConfig) -> tuple:
    """Runs that train at the same speed per image: the same network and batch size."""
    shape = config.arch if config.kind == "cnn" else config.hidden if config.kind == "mlp" else config.task
    return config.kind, config.form, shape, config.batch_size


class JobQueue:
    def __init__(self, store: ModelStore, max_running: int = 1, limit_s: float | None = None, ray_address: str = ""):
        self.store = store
        self.ray_address = ray_address  # set: every run is a task on that Ray cluster (ray_backend), not a local process
        self.max_running = max(1, max_running)
        self.limit_s = limit_s  # the most one student's run may cost, in seconds; None: no limit (the CLI, tests)
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._ids = (f"job-{secrets.token_hex(3)}-{n}" for n in itertools.count(1))  # never reused
        self._rates: dict[tuple, float] = {}  # speed_key -> images per compute second, measured
        self._slots: list[_Slot] = []
        self._closed = False
        self._learned_from_store = False
        self._warm_asked = 0  # how many times pages have asked for a warm training process (see warm)
        self._warm_data: MNIST | None = None  # the dataset the last page to ask trains on: loaded as the process starts
        self._warm_time = float("-inf")  # when a page last asked (time.monotonic)

    # ------------------------------------------------------------ the API pages use

    def submit(self, config: TrainConfig, data: MNIST, owner: str = "", *, continue_from: str = "",
               fresh: bool = False, limited: bool = False, finetune: dict | None = None) -> Snapshot:
        """Queue a run; an identical run already queued or running is joined, one already stored is answered
        from the store (unless ``fresh``: train it again, live, as a new model).

        With ``finetune`` (the class's drawings, finetune.pack), the stored ``continue_from`` is fine-tuned on them
        instead (``config``: its recipe, epochs as fine-tuning runs them), queued like any run.

        Raises JobRefused, with a message for the page, when the model folder cannot be written, when a
        ``limited`` run (a student's, from a page) is estimated to cost more than the class's limit, or when
        ``owner`` already has a run waiting: one place in the line per student.
        """
        try:
            self.store.check_writable()  # before anyone waits minutes for a run that cannot be saved
        except StoreError as e:
            raise JobRefused(f"Training is off for now: {e}") from None
        stored = None if continue_from or fresh else self.store.find(config, data.fingerprint())  # outside the lock
        n_images = len(finetune["labels"]) if finetune else task_size(data, config)  # from the labels: no image copied
        self._learn_from_store()
        with self._cond:
            if not continue_from:
                for job in self._jobs.values():
                    if (job.state in (QUEUED, RUNNING) and not job.continue_from and job.config.key() == config.key()
                            and job.data.fingerprint() == data.fingerprint()):
                        if owner:
                            job.watchers.add(owner)
                            job.version += 1
                        return self._snapshot(job, reused=True)
                if stored is not None:
                    job = Job(next(self._ids), config, owner, data, n_images, model_id=stored.id,
                              history=list(stored.history), reused=True, compute_seconds=stored.train_seconds)
                    self._jobs[job.id] = job
                    self._transition(job, DONE, "already trained: loaded from the model store")
                    return self._snapshot(job)
            if limited and (refusal := self._over_limit(config, n_images)):
                raise JobRefused(refusal)
            mine = [j for j in self._waiting if owner and j.owner == owner]
            if mine:
                ahead = self._waiting.index(mine[0]) + 1
                raise JobRefused(
                    f"You already have a run waiting ({mine[0].config.title}, number {ahead} in line). "
                    "Stop it, or wait until it starts, before you queue another."
                )
            job = Job(next(self._ids), config, owner, data, n_images, continue_from=continue_from, finetune=finetune)
            if owner:
                job.watchers.add(owner)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._ensure_slots()
            self._cond.notify_all()
            return self._snapshot(job)

    def warm(self, data: MNIST | None = None) -> None:
        """Start the training process now, if none is running, and have it load ``data``, so the next run starts at
        once: from cold (Python, torch, the optimisers' first import, the dataset) a run's first step comes about
        3 s after Train, warmed 0.4 s (bench_first_step.py). The training pages ask as they open; a process nobody
        uses still goes after WORKER_IDLE_S."""
        with self._cond:
            if self._closed or self.ray_address:  # a Ray cluster keeps its own workers
                return
            self._warm_asked += 1
            self._warm_data, self._warm_time = data, time.monotonic()
            self._ensure_slots()
            self._cond.notify_all()

    def estimate(self, config: TrainConfig, n_images: int) -> float:
        """Seconds a run of ``config`` on ``n_images`` training images should take on this server, from the speed
        measured on earlier runs of that network (and, before any, a laptop core's)."""
        self._learn_from_store()
        with self._cond:
            return self._estimate_config(config, n_images)

    def over_limit(self, config: TrainConfig, n_images: int) -> str:
        """Why a student's run of ``config`` would be refused for its cost (its estimate and what to change), or
        "" when it is within the class's limit."""
        self._learn_from_store()
        with self._cond:
            return self._over_limit(config, n_images)

    def _over_limit(self, config: TrainConfig, n_images: int) -> str:
        """over_limit, with the lock held."""
        seconds = self._estimate_config(config, n_images)
        if self.limit_s is None or seconds <= self.limit_s:
            return ""
        options = []
        fit_epochs = int(self.limit_s // (seconds / config.epochs))
        if fit_epochs >= 1:
            options.append(f"at most {fit_epochs} epoch(s)")
        for batch in (64, 128, 256, 512):  # the first larger batch that fits, and in how many epochs
            if batch > config.batch_size:
                n = int(self.limit_s // self._estimate_config(config.with_(batch_size=batch, epochs=1), n_images))
                if n >= 1:
                    options.append(f"a batch size of {batch}" + ("" if n >= config.epochs else
                                                                  f" with at most {n} epoch(s)"))
                    break
        if not options:
            options.append("fewer training images")
        return (f"This run would take about {duration_text(seconds)} on this server, more than the class's limit of "
                f"{duration_text(self.limit_s)} for one run. Try {' or '.join(options)}.")
    def snapshot(self, job_id: str) -> Snapshot | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return self._snapshot(job) if job else None

    def jobs(self, owner: str | None = None) -> list[Snapshot]:
        with self._cond:
            return [self._snapshot(j) for j in self._jobs.values() if owner is None or j.owner == owner]

    def active(self) -> list[Snapshot]:
        """The running jobs, then the waiting ones in line order."""
        with self._cond:
            running = [j for j in self._jobs.values() if j.state == RUNNING]
            return [self._snapshot(j) for j in (*running, *self._waiting)]

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Stop a job between batches (or drop it from the line), for everyone who waits on it.

        With ``owner``, only its owner may; without, anyone who manages the class (the teacher, the CLI)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED or (owner is not None and job.owner and job.owner != owner):
                return False
            job.cancelled, job.paused, job.paused_by = True, False, ""
            if job.state == QUEUED:
                self._waiting.remove(job)
                self._transition(job, CANCELLED, "cancelled before it started")
                return True
            slot = next((s for s in self._slots if s.job is job), None)
        if slot is not None:
            slot.send({"op": "cancel", "job": job_id})
        return True

    def stop(self, job_id: str, who: str) -> str:
        """A student's Stop: ``who`` no longer waits on the run, which is cancelled only when nobody else does.

        Returns what happened: "cancelled", "detached" (others still wait on it) or "" (nothing to stop)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED or who not in job.watchers:
                return ""
            job.watchers.discard(who)
            job.version += 1
            if job.watchers:
                self._cond.notify_all()
                return "detached"
        return "cancelled" if self.cancel(job_id) else ""

    def pause(self, job_id: str, who: str | None = None) -> bool:
        """Hold a running job after its current batch until resume; its worker keeps what it has.

        ``who`` None: the teacher (or the command line), any run. A student's id: only the run they started and
        still follow (``steerable_by``); their pause ends by itself after STUDENT_PAUSE_S."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state != RUNNING or job.paused or not self._may_steer(job, who):
                return False
            job.paused, job.paused_by, job.pauses = True, "teacher" if who is None else "starter", job.pauses + 1
            job.message = ("paused by the teacher" if who is None else
                           "paused by the student who started it: Step takes one batch at a time")
            if who is not None:
                lapse = threading.Timer(STUDENT_PAUSE_S, self._pause_lapsed, (job_id, job.pauses))
                lapse.daemon = True
                lapse.start()
        return self._tell_worker(job, "pause")

    def resume(self, job_id: str, who: str | None = None) -> bool:
        """Let a paused job go on: the teacher any (``who`` None), a student only their own pause."""
        with self._cond:
            job = self._jobs.get(job_id)
            if (job is None or job.state != RUNNING or not job.paused or not self._may_steer(job, who)
                    or (who is not None and job.paused_by != "starter")):
                return False
            job.paused, job.paused_by, job.message = False, "", "resuming"
        return self._tell_worker(job, "resume")

    def step(self, job_id: str, who: str | None = None) -> bool:
        """Let a paused job take one batch, then hold again; the worker answers with what it changed (``watch``).
        Who may: as for ``resume``."""
        with self._cond:
            job = self._jobs.get(job_id)
            if (job is None or job.state != RUNNING or not job.paused or not self._may_steer(job, who)
                    or (who is not None and job.paused_by != "starter")):
                return False
            job.message = f"{'paused by the teacher' if job.paused_by == 'teacher' else 'paused'}: taking one step"
        return self._tell_worker(job, "step")

    def watch(self, job_id: str) -> dict | None:
        """What a running (or just finished) job last showed of itself: {"version", "watch" (live.snapshot: its first
        layer and its answers on the 16 test digits), "steps" (live.step_report of its last single steps)}."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            return {"version": job.watch_version, "watch": job.watch, "steps": list(job.steps)}

    @staticmethod
    def _may_steer(job: Job, who: str | None) -> bool:
        return who is None or steerable_by(job, who)

    def _pause_lapsed(self, job_id: str, pause_no: int) -> None:
        """A student's pause has lasted STUDENT_PAUSE_S: the run goes on (unless a newer pause, or the teacher's)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or not job.paused or job.paused_by != "starter" or job.pauses != pause_no:
                return
            job.paused, job.paused_by = False, ""
            job.message = f"resumed: a student's pause lasts at most {duration_text(STUDENT_PAUSE_S)}"
        self._tell_worker(job, "resume")

    def _tell_worker(self, job: Job, op: str) -> bool:
        """Pass pause, resume or step to the job's worker (after a change made under the lock)."""
        with self._cond:
            job.version += 1
            self._cond.notify_all()
            slot = next((s for s in self._slots if s.job is job), None)
        if slot is not None:
            slot.send({"op": op, "job": job.id})
        return True

    def wait(self, job_id: str, timeout: float | None = None) -> Snapshot | None:
        """Block until the job finishes (for the CLI and tests; pages poll snapshots instead)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                if job is None or job.state in FINISHED:
                    return self._snapshot(job) if job else None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self._snapshot(job)
                self._cond.wait(left)

    def worker_pids(self) -> list[int]:
        """The training processes now alive (for the benchmark, and for tests that kill one)."""
        return [s.proc.pid for s in list(self._slots) if s.proc is not None and s.proc.poll() is None]

    def close(self) -> None:
        """Stop the workers (a running job is cancelled and keeps what it finished)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            slots = list(self._slots)
        for s in slots:
            s.stop()
        with _shared_lock:  # a closed queue is never handed out again
            for key in [k for k, q in _shared.items() if q is self]:
                del _shared[key]

    # ------------------------------------------------------------ the books

    def _transition(self, job: Job, state: str, message: str, *, error: str = "", model_id: str = "") -> None:
        """The one place a job's state changes (called with the lock held)."""
        job.state, job.message = state, message
        job.version += 1
        if error:
            job.error = error
        if model_id:
            job.model_id = model_id
        if state == RUNNING:
            job.started = time.time()
        if state in FINISHED:
            job.ended, job.finetune = time.time(), None  # the drawings it was sent are not kept
            self._prune()
        self._cond.notify_all()

    def _prune(self) -> None:
        done = sorted((j for j in self._jobs.values() if j.state in FINISHED), key=lambda j: j.ended)
        for job in done[: max(0, len(done) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def _learn_from_store(self) -> None:
        """Seed the speed table from the models already stored (once, outside the lock)."""
        if self._learned_from_store:
            return
        self._learned_from_store = True
        for info in self.store.list():
            rate = info.metrics.get("images_per_s")
            if isinstance(rate, (int, float)) and rate > 0:
                with self._cond:
                    self._rates.setdefault(speed_key(info.config), float(rate))

    def _estimate(self, job: Job) -> float:
        """Seconds this job should take from start to end, from the speed measured for its kind of network."""
        return self._estimate_config(job.config, job.n_images)

    def _estimate_config(self, config: TrainConfig, n_images: int) -> float:
        """Seconds a run should take: its images over the speed measured for that network and batch size.

        Not measured at this batch size: from the closest one measured, each step costing a fixed STEP_S (what a
        tiny batch pays over and over) plus a share per image (what a large one pays)."""
        key = speed_key(config)
        rate = self._rates.get(key)
        if rate is None:
            near = [(abs(k[3] - key[3]), k[3], r) for k, r in self._rates.items() if k[:3] == key[:3]]
            b0, r0 = min(near)[1:] if near else (64, DEFAULT_RATES.get(config.kind, 10_000.0))
            step0 = b0 / r0  # seconds per step measured at batch b0
            fixed = min(STEP_S.get(config.kind, 0.001), 0.9 * step0)
            per_image = (step0 - fixed) / b0
            rate = config.batch_size / (fixed + per_image * config.batch_size)
        return config.epochs * n_images / rate + OVERHEAD_S * config.epochs

    def _remaining(self, job: Job) -> float:
        if job.state == RUNNING and job.last is not None and job.last.fraction > 0.05:
            so_far = time.time() - job.started
            return so_far * (1 - job.last.fraction) / job.last.fraction
        if job.state == RUNNING:
            return max(0.0, self._estimate(job) - (time.time() - job.started))
        return self._estimate(job)

    def _eta_start(self, job: Job) -> float:
        """When a waiting job should start: the running jobs' remaining time and every job ahead of it, per slot."""
        ahead = [self._remaining(j) for j in self._jobs.values() if j.state == RUNNING]
        ahead += [self._estimate(j) for j in itertools.takewhile(lambda j: j is not job, self._waiting)]
        return time.time() + sum(ahead) / self.max_running

    def _snapshot(self, job: Job, reused: bool | None = None) -> Snapshot:
        position, eta, message = 0, 0.0, job.message
        if job.state == QUEUED and job in self._waiting:
            position = self._waiting.index(job) + 1
            eta = self._eta_start(job)
            message = f"queued: number {position} in line, starts in about {duration_text(eta - time.time())}"
        progress = 1.0 if job.state == DONE else (job.last.fraction if job.last else 0.0)
        return Snapshot(
            id=job.id, config=job.config, owner=job.owner, state=job.state, position=position, progress=progress,
            last=job.last, history=tuple(job.history), batch_losses=tuple(job.batch_losses),
            batch_accuracies=tuple(job.batch_accuracies), error=job.error, model_id=job.model_id, message=message,
            submitted=job.submitted, reused=job.reused if reused is None else reused, eta_start=eta,
            compute_seconds=job.compute_seconds, version=job.version, watchers=tuple(sorted(job.watchers)),
            paused=job.paused, paused_by=job.paused_by, watch_version=job.watch_version, result=job.result,
        )

    # ------------------------------------------------------------ workers

    def _ensure_slots(self) -> None:
        while len(self._slots) < self.max_running:
            slot = (_RaySlot if self.ray_address else _Slot)(self, len(self._slots))
            self._slots.append(slot)
            slot.thread.start()

    def _next_job(self, slot: _Slot, idle_s: float | None = None) -> Job | object | None:
        """The next waiting job for ``slot``; None once closed; IDLE when neither a run nor a page's warm() came within
        ``idle_s``; WARM when a page has asked for a process since this slot last started one, and it has none."""
        deadline = None if idle_s is None else time.monotonic() + idle_s
        with self._cond:
            while not self._waiting and not self._closed:
                if self._warm_asked > slot.warmed and not slot.alive():
                    slot.warmed = self._warm_asked
                    return WARM
                if deadline is not None:
                    deadline = max(deadline, self._warm_time + idle_s)  # a page still asking keeps the process
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    slot.warmed = self._warm_asked  # asks older than the idle time start nothing
                    return IDLE
                self._cond.wait(left)
            if self._closed:
                return None
            job = self._waiting.popleft()
            slot.job = job
            self._transition(job, RUNNING, "starting")
            return job

    def _on_message(self, job: Job, msg: dict) -> None:
        """A line from the worker about ``job``."""
        with self._cond:
            job.version += 1
            if msg["type"] == "progress":
                ev = Event(**msg["event"])
                job.last = ev
                for at, loss, acc in msg["points"]:
                    job.batch_losses.append((at, loss))
                    job.batch_accuracies.append((at, acc))
                if job.paused:
                    pass  # "paused by ..." stays until resume
                elif ev.kind == "batch":
                    job.message = (f"epoch {ev.epoch}/{ev.epochs}, batch {ev.batch}/{ev.n_batches}, "
                                   f"{ev.images_per_s:,.0f} images/s")
                else:
                    job.message = f"epoch {ev.epoch}/{ev.epochs}: test accuracy {ev.test_accuracy:.2%}"
            elif msg["type"] == "watch":
                job.watch, job.watch_version = msg, job.watch_version + 1
            elif msg["type"] == "step":
                for older in job.steps:  # the pictures only of the last step; the numbers of every one
                    for key in ("before", "after", "change"):
                        older.pop(key, None)
                job.steps.append(msg)
                job.watch_version += 1
                who = "paused by the teacher" if job.paused_by == "teacher" else "paused"
                job.message = (f"{who}: step {msg['step']} took one batch of {msg['batch_size']}, "
                               f"its loss {msg['loss']:.4f}")
            elif msg["type"] == "start":
                job.history = list(msg["history"])
            elif msg["type"] == "epoch":
                job.history.append(msg["record"])
            elif msg["type"] == "finished":
                job.compute_seconds, job.paused, job.paused_by = msg["compute_seconds"], False, ""
                job.result = msg.get("result")
                job.watch, job.watch_version = None, job.watch_version + 1  # a finished run shows its model instead
                job.steps.clear()
                if msg["state"] in (DONE, CANCELLED) and job.history:
                    last = job.history[-1]
                    self._rates[speed_key(job.config)] = last["images_per_s"]
                self._transition(job, msg["state"], msg["message"], error=msg["error"], model_id=msg["model_id"])

    def _on_worker_lost(self, job: Job, why: str) -> None:
        with self._cond:
            if job.state not in FINISHED:
                message = f"the training process stopped ({why}); nothing else was lost, and other runs go on"
                self._transition(job, FAILED, message, error=message)


class _Slot:
    """One worker process and the thread that hands it jobs, one at a time, and reads what it says."""

    def __init__(self, queue: JobQueue, n: int):
        self.queue = queue
        self.proc: subprocess.Popen | None = None
        self.job: Job | None = None
        self.baseline_mb: float | None = None  # the process's memory after its first run
        self.warmed = 0  # the queue's count of warm() calls when this slot last started a process for one
        self._write = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"digitlab-trainer-{n}", daemon=True)

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")  # oneDNN keeps 1,024 compiled kernels by default
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digitlab.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1, env=env, cwd=str(ROOT),
        )
        line = self.proc.stdout.readline()  # "ready", once torch is imported
        if not line:
            raise OSError(f"exit status {self.proc.wait()} while starting")

    def send(self, cmd: dict) -> None:
        with self._write:
            try:
                self.proc.stdin.write(json.dumps(cmd) + "\n")
                self.proc.stdin.flush()
            except (OSError, ValueError, AttributeError):
                pass  # the process has gone; _loop reports it

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.job is not None:
                self.send({"op": "cancel", "job": self.job.id})
            self.send({"op": "quit"})
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def _loop(self) -> None:
        while (job := self.queue._next_job(self, WORKER_IDLE_S if self.alive() else None)) is not None:
            if job is IDLE:  # nobody trains: the process goes, and all it held goes back to the system
                self.stop()
                continue
            if job is WARM:
                try:
                    self._start()
                except OSError:
                    continue  # the next run starts it again, and its page says what stops it
                if (data := self.queue._warm_data) is not None and data.source.path:
                    self.send({"op": "load", "data_dir": data.source.path, "config": {"dataset": data.source.dataset}})
                continue
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
            except OSError as e:
                self.queue._on_worker_lost(job, f"it could not start: {e}")
                self.job = None
                continue
            self.send({"op": "run", "job": job.id, "config": job.config.to_dict(), "continue_from": job.continue_from,
                       "data_dir": job.data.source.path, "fingerprint": job.data.fingerprint(),
                       "store": str(self.queue.store.root.resolve()), "finetune": job.finetune})
            if job.cancelled:
                self.send({"op": "cancel", "job": job.id})
            elif job.paused:
                self.send({"op": "pause", "job": job.id})
            self._follow(job)
            self.job = None
            self._replace_if_grown()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _replace_if_grown(self) -> None:
        """End the process between runs once it has grown WORKER_GROWTH_MB since its first run finished."""
        rss = rss_mb(self.proc.pid) if self.alive() else None
        if rss is None:
            self.baseline_mb = None
        elif self.baseline_mb is None:
            self.baseline_mb = rss
        elif rss - self.baseline_mb > WORKER_GROWTH_MB:
            self.stop()
            self.baseline_mb = None

    def _follow(self, job: Job) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("job") != job.id:
                continue
            self.queue._on_message(job, msg)
            if msg["type"] == "finished":
                return
        code = self.proc.wait()
        why = f"killed by signal {-code}" + (", perhaps out of memory" if code == -9 else "") if code < 0 \
            else f"exit status {code}"
        self.queue._on_worker_lost(job, why)


class _RaySlot:
    """One run at a time as a task on a Ray cluster: the same books as _Slot, with no process of its own here.

    The job's messages come back as the task's streamed results; its model's files come back as bytes and are
    written into this server's store; cancel, pause and resume travel through ray_backend's flags."""

    def __init__(self, queue: JobQueue, n: int):
        from . import ray_backend

        ray_backend.connect(queue.ray_address)
        self.queue, self.job, self.proc = queue, None, None  # no local process: the run lives on the cluster
        self.warmed = 0  # JobQueue.warm never asks a Ray slot for a process
        self.cancel, self.pause, self.step = threading.Event(), threading.Event(), threading.Semaphore(0)
        self.thread = threading.Thread(target=self._loop, name=f"digitlab-ray-{n}", daemon=True)

    def send(self, cmd: dict) -> None:
        {"cancel": self.cancel.set, "pause": self.pause.set, "resume": self.pause.clear,
         "step": self.step.release}.get(cmd["op"], lambda: None)()

    def stop(self) -> None:
        self.cancel.set()

    def alive(self) -> bool:
        return True

    def _loop(self) -> None:
        from . import ray_backend

        while (job := self.queue._next_job(self)) is not None:
            self.cancel.clear()
            self.step = threading.Semaphore(0)
            (self.pause.set if job.paused else self.pause.clear)()
            if job.cancelled:
                self.cancel.set()
            spec = {"job": job.id, "config": job.config.to_dict(), "continue_from": job.continue_from,
                    "data_dir": job.data.source.path, "fingerprint": job.data.fingerprint(), "finetune": job.finetune}
            try:
                parent = ray_backend.model_files(self.queue.store.root, job.continue_from) if job.continue_from else {}
            except OSError as e:
                self.queue._on_worker_lost(job, f"its model could not be read: {e}")
                self.job = None
                continue
            finished = ray_backend.run_on_ray(spec, job.data, lambda msg, job=job: self.queue._on_message(job, msg),
                                              self.cancel, self.queue.store.root, parent, pause=self.pause,
                                              step=self.step)
            self.queue._on_message(job, finished)
            self.job = None


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux's /proc); None where that cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def duration_text(seconds: float) -> str:
    """About how long, for a page: to the nearest 5 s under a minute, then minutes and seconds."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes, s = divmod(seconds, 60)
    if minutes >= 120:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes} min {s:02d} s" if minutes < 10 else f"{minutes} min"


_shared: dict[str, JobQueue] = {}
_shared_lock = threading.Lock()


@functools.lru_cache(maxsize=16)
def _queue_key(root: str, cwd: str) -> str:
    """The store folder as one absolute path (the pages ask for the queue on every rerun: resolved once)."""
    return str((Path(cwd) / root).resolve())


def shared_queue(store: ModelStore, max_running: int | None = None) -> JobQueue:
    """The server's one queue for this model store. It lives in this module, not in a cache a client can clear.

    Its limit on one student's run starts at DIGITLAB_RUN_LIMIT_S (default DEFAULT_LIMIT_S; 0 means none) and is
    the teacher's to change.

    With DIGITLAB_QUEUE_ADDRESS set (``python -m digitlab.serve --web N``), the queue is the one the class's queue
    server holds for every web process, and this returns a ``queue_server.RemoteQueue`` to it."""
    key = _queue_key(str(store.root), "" if store.root.is_absolute() else os.getcwd())
    with _shared_lock:
        if key not in _shared and os.environ.get("DIGITLAB_QUEUE_ADDRESS"):
            from .queue_server import RemoteQueue

            _shared[key] = RemoteQueue(os.environ["DIGITLAB_QUEUE_ADDRESS"], os.environ.get("DIGITLAB_QUEUE_KEY", ""))
        if key not in _shared:
            ray_address = os.environ.get("DIGITLAB_RAY_ADDRESS", "").strip()  # a cluster runs several at once
            n = max_running if max_running is not None else env_int("DIGITLAB_MAX_TRAINING", 2 if ray_address else 1)
            limit = env_int("DIGITLAB_RUN_LIMIT_S", int(DEFAULT_LIMIT_S))
            _shared[key] = JobQueue(store, max_running=n, limit_s=float(limit) if limit > 0 else None,
                                    ray_address=ray_address)
        return _shared[key]


# ---------------------------------------------------------------- the teacher


def teacher_key_set() -> bool:
    return bool(os.environ.get("DIGITLAB_TEACHER_KEY", ""))


def teacher_key_ok(given: str) -> bool:
    """Whether ``given`` is the teacher key set when the server started (DIGITLAB_TEACHER_KEY), compared in
    constant time. No key set: nobody manages the class from a browser (the command line on the machine can)."""
    key = os.environ.get("DIGITLAB_TEACHER_KEY", "")
    return bool(key) and hmac.compare_digest(given.encode(), key.encode())
