"""What the pages may ask of the class's queue and what they get back: ``TrainingQueue`` (``queue.JobQueue`` in
this process, ``queue_server.RemoteQueue`` from another web process, both implement it), the ``Snapshot`` of a
job, ``JobRefused``, and who may steer a run (``steerable_by``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..data import MNIST
from ..models import TrainConfig
from ..train import Event
from .estimate import OverLimit
from .spec import CANCELLED, DONE, FAILED

QUEUED, RUNNING = "queued", "running"
FINISHED = (DONE, FAILED, CANCELLED)
STUDENT_PAUSE_S = 300.0  # a student's pause ends by itself after this: the runs waiting behind it go on


class JobRefused(Exception):
    """A submit the queue will not take: ``message`` for a page, or ``over`` (the run's estimate, the class's
    limit and what to change) for the page to say in its words."""

    def __init__(self, message: str = "", over: OverLimit | None = None):
        super().__init__(message, over)
        self.message, self.over = message, over

    def __str__(self) -> str:
        return self.message or f"over the class's limit: {self.over}"


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
    message: str  # a line for the page: what is happening now (a waiting run's start: eta_start)
    submitted: float
    reused: bool  # True when this answered a submit with an existing job or stored model
    eta_start: float = 0.0  # waiting: when (time.time()) it should start; 0 otherwise
    compute_seconds: float = 0.0  # the runner's own compute time, once finished
    version: int = 0  # grows with every change: what a page draws from this snapshot can be cached under it
    watchers: tuple[str, ...] = ()  # the students waiting on this run: its owner and everyone who joined it
    paused: bool = False  # held between batches (by the teacher, or by the student who started it)
    paused_by: str = ""  # "teacher" or "starter" while paused
    watch_version: int = 0  # grows with every live picture and single step: what ``watch`` returns is drawn under it
    result: dict | None = None  # a fine-tuning's numbers, once done (finetune.summary)
    notice: str = ""  # a line the run's page keeps showing (spec.Notice), such as where it trains instead
    kind: str = "train"  # "train", "finetune" or "lr_find" (JobSpec.kind)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def steerable_by(job, who: str) -> bool:
    """Whether the student ``who`` may pause, resume and step a run (a Snapshot or the queue's Job): they started
    it and still follow it. The others who share it (identical settings) only watch; the teacher steers any run."""
    return bool(who) and who == job.owner and who in job.watchers


class TrainingQueue(Protocol):
    """What the pages may ask of the class's queue (JobQueue here, RemoteQueue from another web process)."""

    limit_s: float | None  # the most one student's run may cost, in seconds; None: no limit

    def submit(self, config: TrainConfig, data: MNIST, owner: str = "", *, continue_from: str = "",
               fresh: bool = False, limited: bool = False, finetune: dict | None = None,
               kind: str = "train", place: str = "") -> Snapshot: ...
    def warm(self, data: MNIST | None = None) -> None: ...
    def estimate(self, config: TrainConfig, n_images: int, loaded: bool = True) -> float: ...
    def over_limit(self, config: TrainConfig, n_images: int) -> OverLimit | None: ...
    def snapshot(self, job_id: str) -> Snapshot | None: ...
    def jobs(self, owner: str | None = None) -> list[Snapshot]: ...
    def active(self) -> list[Snapshot]: ...
    def cancel(self, job_id: str, owner: str | None = None) -> bool: ...
    def stop(self, job_id: str, who: str) -> str: ...
    def pause(self, job_id: str, who: str | None = None) -> bool: ...
    def resume(self, job_id: str, who: str | None = None) -> bool: ...
    def step(self, job_id: str, who: str | None = None) -> bool: ...
    def watch(self, job_id: str) -> dict | None: ...
