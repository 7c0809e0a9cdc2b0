"""One training queue per process, shared by every browser session.

A page submits a config and gets a Job back at once; worker threads train (one at a time by
default, so two classes of students don't halve each other's speed) and every session can read
any job's snapshot. Training lives here, not in a page, so it survives reruns and page switches.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

from torch import nn

from .data import MNIST
from .models import TrainConfig, build_model
from .store import ModelStore, StoreError
from .train import Event, TrainingError, fit

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
MAX_BATCH_POINTS = 4000  # loss-per-batch points kept for the live chart


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
    history: tuple[dict, ...]  # one dict per finished epoch
    batch_losses: tuple[tuple[float, float], ...]  # (epoch as a fraction, loss)
    batch_accuracies: tuple[tuple[float, float], ...]  # (epoch as a fraction, the batch's training accuracy)
    error: str
    model_id: str  # the stored model, once saved
    message: str  # a line for the page: what is happening now
    submitted: float
    reused: bool  # True when this answered a submit with an existing job or stored model

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(eq=False)
class Job:
    id: str
    config: TrainConfig
    owner: str
    data: MNIST
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
    cancel: threading.Event = field(default_factory=threading.Event)
    reused: bool = False
    base_seconds: float = 0.0  # training time of the model this job continues
    lock: threading.Lock = field(default_factory=threading.Lock)


class JobQueue:
    def __init__(self, store: ModelStore, max_running: int = 1):
        self.store = store
        self.max_running = max(1, max_running)
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._workers: list[threading.Thread] = []

    # ------------------------------------------------------------ the API pages use

    def submit(self, config: TrainConfig, data: MNIST, owner: str = "", *, continue_from: str = "") -> Snapshot:
        """Queue a run; an identical run already queued, running or stored is returned instead."""
        with self._cond:
            if not continue_from:
                for job in self._jobs.values():
                    if (
                        job.state in (QUEUED, RUNNING)
                        and job.config.key() == config.key()
                        and job.data.fingerprint() == data.fingerprint()
                        and not job.continue_from
                    ):
                        return self._snapshot(job, reused=True)
                stored = self.store.find(config, data.fingerprint())
                if stored is not None:
                    job = Job(f"job-{next(self._ids)}", config, owner, data, state=DONE, model_id=stored.id,
                              history=list(stored.history), message="already trained: loaded from the model store",
                              reused=True)
                    self._jobs[job.id] = job
                    return self._snapshot(job, reused=True)
            job = Job(f"job-{next(self._ids)}", config, owner, data, continue_from=continue_from)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._ensure_workers()
            self._cond.notify()
            return self._snapshot(job)

    def snapshot(self, job_id: str) -> Snapshot | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return self._snapshot(job) if job else None

    def jobs(self, owner: str | None = None) -> list[Snapshot]:
        with self._cond:
            return [self._snapshot(j) for j in self._jobs.values() if owner is None or j.owner == owner]

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Stop a job between batches (or drop it from the queue). Only its owner may, when owner is given."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED or (owner is not None and job.owner and job.owner != owner):
                return False
            job.cancel.set()
            if job.state == QUEUED:
                self._waiting.remove(job)
                job.state, job.message = CANCELLED, "cancelled before it started"
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
                self._cond.wait(left if left is not None else 1.0)

    # ------------------------------------------------------------ workers

    def _ensure_workers(self) -> None:
        self._workers = [w for w in self._workers if w.is_alive()]
        while len(self._workers) < self.max_running:
            w = threading.Thread(target=self._work, name=f"digitlab-trainer-{len(self._workers)}", daemon=True)
            w.start()
            self._workers.append(w)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                job = self._waiting.popleft()
                job.state, job.message = RUNNING, "starting"
            try:
                self._run(job)
            except Exception as e:  # never let one run take the worker down
                job.state, job.error = FAILED, f"training failed unexpectedly: {e}"
                job.message = job.error
                traceback.print_exc()
            with self._cond:
                self._cond.notify_all()

    def _run(self, job: Job) -> None:
        config, started = job.config, time.perf_counter()
        start_epoch, earlier = 0, []
        try:
            if job.continue_from:
                model, base = self.store.load(job.continue_from)
                start_epoch, earlier = len(base.history), list(base.history)
                job.base_seconds = base.train_seconds
                job.history = list(earlier)
            else:
                model = build_model(config)
            for ev in fit(model, config, job.data, cancel=job.cancel, start_epoch=start_epoch):
                with job.lock:
                    job.last = ev
                    if ev.kind == "batch":
                        if ev.batch % max(1, ev.n_batches // 200) == 0 or ev.batch == ev.n_batches:
                            at = ev.epoch - 1 + ev.batch / ev.n_batches
                            job.batch_losses.append((at, ev.loss))
                            job.batch_accuracies.append((at, ev.accuracy))
                        job.message = (
                            f"epoch {ev.epoch}/{ev.epochs}, batch {ev.batch}/{ev.n_batches}, "
                            f"{ev.images_per_s:,.0f} images/s"
                        )
                    elif ev.kind == "epoch":
                        job.history.append(_epoch_row(ev))
                        job.message = f"epoch {ev.epoch}/{ev.epochs}: test accuracy {ev.test_accuracy:.2%}"
        except TrainingError as e:
            job.state, job.error, job.message = FAILED, str(e), str(e)
            return
        except StoreError as e:
            job.state, job.error, job.message = FAILED, f"cannot continue: {e}", f"cannot continue: {e}"
            return
        new_epochs = len(job.history) - len(earlier)
        if job.cancel.is_set() and new_epochs == 0:
            job.state, job.message = CANCELLED, "stopped before the first epoch finished: nothing to keep"
            return
        self._save(job, model, started, new_epochs)

    def _save(self, job: Job, model: nn.Module, started: float, new_epochs: int) -> None:
        config = job.config.with_(epochs=len(job.history)) if (job.cancel.is_set() or job.continue_from) else job.config
        last = job.history[-1]
        try:
            info = self.store.save(
                model, config,
                metrics={"test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"],
                         "train_accuracy": last["train_accuracy"], "train_loss": last["train_loss"],
                         "images_per_s": last["images_per_s"]},
                history=job.history,
                fingerprint=job.data.fingerprint(),
                train_seconds=time.perf_counter() - started + job.base_seconds,
                extra={"data_source": job.data.source.kind, "continued_from": job.continue_from or None},
            )
        except OSError as e:
            job.state, job.error = FAILED, f"trained, but could not save the model: {e}"
            job.message = job.error
            return
        job.model_id = info.id
        if job.cancel.is_set():
            job.state, job.message = CANCELLED, f"stopped after {new_epochs} epoch(s); saved as {info.id}"
        else:
            job.state, job.message = DONE, f"done: test accuracy {job.history[-1]['test_accuracy']:.2%}"

    # ------------------------------------------------------------ snapshots

    def _snapshot(self, job: Job, reused: bool | None = None) -> Snapshot:
        with job.lock:
            position = self._waiting.index(job) + 1 if job.state == QUEUED and job in self._waiting else 0
            progress = 1.0 if job.state == DONE else (job.last.fraction if job.last else 0.0)
            return Snapshot(
                id=job.id, config=job.config, owner=job.owner, state=job.state, position=position,
                progress=progress, last=job.last, history=tuple(job.history),
                batch_losses=tuple(job.batch_losses), batch_accuracies=tuple(job.batch_accuracies), error=job.error, model_id=job.model_id,
                message=job.message if job.state != QUEUED else f"queued: number {position} in line",
                submitted=job.submitted, reused=job.reused if reused is None else reused,
            )


def _epoch_row(ev: Event) -> dict:
    return {
        "epoch": ev.epoch,
        "train_loss": ev.loss,
        "train_accuracy": ev.accuracy,
        "test_loss": ev.test_loss,
        "test_accuracy": ev.test_accuracy,
        "images_per_s": ev.images_per_s,
        "seconds": ev.elapsed,
        "lr": ev.lr,
    }
