"""One training queue per server, shared by every browser session; the training itself runs in worker processes.

A page submits a config and gets a Snapshot back at once. The queue is fair: one waiting run per student,
and each waiting run knows its place and when it should start, from the speed measured on earlier runs.
Identical configs share one job (or the model already stored). A worker process (``digitlab.worker``,
at a lower OS priority) trains one job at a time and saves it; this module only keeps the books.

The rules of the books: one lock (``_cond``) guards every job; a job's state changes only in
``_transition``; nothing slow (the store, a process) is touched while holding the lock.
"""

from __future__ import annotations

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
from .store import ModelStore
from .train import Event, task_data
from .worker import env_int

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
MAX_BATCH_POINTS = 4000  # loss-per-batch points kept for the live chart
KEEP_FINISHED = 200  # finished jobs remembered for the pages; older ones are pruned
ROOT = Path(__file__).resolve().parent.parent

# images per second of training compute, by kind, before this server has measured anything (one core of a laptop)
DEFAULT_RATES = {"linear": 400_000.0, "mlp": 60_000.0, "cnn": 4_000.0}
OVERHEAD_S = 1.0  # a job's start, test-set evaluation and save, roughly


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


def speed_key(config: TrainConfig) -> tuple:
    """Runs that train at the same speed per image: the same network and batch size."""
    shape = config.arch if config.kind == "cnn" else config.hidden if config.kind == "mlp" else config.task
    return config.kind, config.form, shape, config.batch_size


class JobQueue:
    def __init__(self, store: ModelStore, max_running: int = 1):
        self.store = store
        self.max_running = max(1, max_running)
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._ids = (f"job-{secrets.token_hex(3)}-{n}" for n in itertools.count(1))  # never reused
        self._rates: dict[tuple, float] = {}  # speed_key -> images per compute second, measured
        self._slots: list[_Slot] = []
        self._closed = False
        self._learned_from_store = False

    # ------------------------------------------------------------ the API pages use

    def submit(self, config: TrainConfig, data: MNIST, owner: str = "", *, continue_from: str = "") -> Snapshot:
        """Queue a run; an identical run already queued, running or stored is returned instead.

        Raises JobRefused when ``owner`` already has a run waiting: one place in the line per student.
        """
        stored = None if continue_from else self.store.find(config, data.fingerprint())  # the store, outside the lock
        n_images = len(task_data(data, config, "train")[0])
        self._learn_from_store()
        with self._cond:
            if not continue_from:
                for job in self._jobs.values():
                    if (job.state in (QUEUED, RUNNING) and not job.continue_from and job.config.key() == config.key()
                            and job.data.fingerprint() == data.fingerprint()):
                        return self._snapshot(job, reused=True)
                if stored is not None:
                    job = Job(next(self._ids), config, owner, data, n_images, model_id=stored.id,
                              history=list(stored.history), reused=True, compute_seconds=stored.train_seconds)
                    self._jobs[job.id] = job
                    self._transition(job, DONE, "already trained: loaded from the model store")
                    return self._snapshot(job)
            mine = [j for j in self._waiting if owner and j.owner == owner]
            if mine:
                ahead = self._waiting.index(mine[0]) + 1
                raise JobRefused(
                    f"You already have a run waiting ({mine[0].config.title}, number {ahead} in line). "
                    "Stop it, or wait until it starts, before you queue another."
                )
            job = Job(next(self._ids), config, owner, data, n_images, continue_from=continue_from)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._ensure_slots()
            self._cond.notify_all()
            return self._snapshot(job)

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
        """Stop a job between batches (or drop it from the line). Only its owner may, when owner is given."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED or (owner is not None and job.owner and job.owner != owner):
                return False
            job.cancelled = True
            if job.state == QUEUED:
                self._waiting.remove(job)
                self._transition(job, CANCELLED, "cancelled before it started")
                return True
            slot = next((s for s in self._slots if s.job is job), None)
        if slot is not None:
            slot.send({"op": "cancel", "job": job_id})
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
            job.ended = time.time()
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
        key = speed_key(job.config)
        rate = self._rates.get(key)
        if rate is None:  # the same network at another batch size: the closest batch size measured
            near = [(abs(k[3] - key[3]), r) for k, r in self._rates.items() if k[:3] == key[:3]]
            rate = min(near)[1] if near else DEFAULT_RATES.get(job.config.kind, 10_000.0)
        return job.config.epochs * job.n_images / rate + OVERHEAD_S * job.config.epochs

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
            compute_seconds=job.compute_seconds, version=job.version,
        )

    # ------------------------------------------------------------ workers

    def _ensure_slots(self) -> None:
        while len(self._slots) < self.max_running:
            slot = _Slot(self, len(self._slots))
            self._slots.append(slot)
            slot.thread.start()

    def _next_job(self, slot: _Slot) -> Job | None:
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
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
                if ev.kind == "batch":
                    job.message = (f"epoch {ev.epoch}/{ev.epochs}, batch {ev.batch}/{ev.n_batches}, "
                                   f"{ev.images_per_s:,.0f} images/s")
                else:
                    job.message = f"epoch {ev.epoch}/{ev.epochs}: test accuracy {ev.test_accuracy:.2%}"
            elif msg["type"] == "start":
                job.history = list(msg["history"])
            elif msg["type"] == "epoch":
                job.history.append(msg["record"])
            elif msg["type"] == "finished":
                job.compute_seconds = msg["compute_seconds"]
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
        self._write = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"digitlab-trainer-{n}", daemon=True)

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
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

    def _loop(self) -> None:
        while (job := self.queue._next_job(self)) is not None:
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
            except OSError as e:
                self.queue._on_worker_lost(job, f"it could not start: {e}")
                self.job = None
                continue
            self.send({"op": "run", "job": job.id, "config": job.config.to_dict(), "continue_from": job.continue_from,
                       "data_dir": job.data.source.path, "fingerprint": job.data.fingerprint(),
                       "store": str(self.queue.store.root.resolve())})
            if job.cancelled:
                self.send({"op": "cancel", "job": job.id})
            self._follow(job)
            self.job = None

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


def duration_text(seconds: float) -> str:
    """About how long, for a page: to the nearest 5 s under a minute, then minutes and seconds."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes, s = divmod(seconds, 60)
    return f"{minutes} min {s:02d} s" if minutes < 10 else f"{minutes} min"


_shared: dict[str, JobQueue] = {}
_shared_lock = threading.Lock()


def shared_queue(store: ModelStore, max_running: int | None = None) -> JobQueue:
    """The server's one queue for this model store. It lives in this module, not in a cache a client can clear."""
    key = str(store.root.resolve())
    with _shared_lock:
        if key not in _shared:
            n = max_running if max_running is not None else env_int("DIGITLAB_MAX_TRAINING", 1)
            _shared[key] = JobQueue(store, max_running=n)
        return _shared[key]
