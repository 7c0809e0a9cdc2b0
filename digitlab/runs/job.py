"""A job as the queue keeps it in its books (``queue.JobQueue``; pages get a ``Snapshot`` of it)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from ..data import MNIST
from ..models import TrainConfig
from ..train import Event
from .interface import QUEUED
from .steering import Steering

MAX_BATCH_POINTS = 4000  # loss-per-batch points kept for the live chart
STEPS_KEPT = 20  # the single steps of a run the pages can show


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
    began: float = 0.0  # time.monotonic() when it started
    ended: float = 0.0
    reused: bool = False
    compute_seconds: float = 0.0
    version: int = 0
    watchers: set = field(default_factory=set)
    paused_by: str = ""  # "teacher" or "starter" while paused
    pauses: int = 0  # counts pauses: a student's pause that lapses ends only the pause it was set for
    student_paused_s: float = 0.0  # a student's pauses of this run so far, in all (at most STUDENT_PAUSE_S)
    paused_since: float = 0.0  # the queue's clock when the current student's pause began
    watch: dict | None = None  # the latest live picture (Watch.picture())
    steps: deque = field(default_factory=lambda: deque(maxlen=STEPS_KEPT))  # StepReport.report() of each single step
    watch_version: int = 0
    finetune: dict | None = None  # a fine-tuning of continue_from on the class's drawings (finetune.pack), until it ends
    kind: str = "train"  # JobSpec.kind: "train", "finetune" or "lr_find"
    result: dict | None = None  # what the Finished message said of it (finetune.summary, a sweep's curve)
    steering: Steering = field(default_factory=Steering)  # pause, steps, cancel: followed wherever it trains
    notice: str = ""  # a line its page keeps showing (spec.Notice: where it trains, when not where asked)
    place: str = ""  # the student's browser or machine (JobQueue.submit): one waiting run per place as per owner

    @property
    def paused(self) -> bool:
        return self.steering.paused.is_set()

    @property
    def cancelled(self) -> bool:
        return self.steering.cancelled.is_set()
