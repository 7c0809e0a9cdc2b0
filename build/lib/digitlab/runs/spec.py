"""What a run is and what it says: the job spec and the messages a run sends, as typed dataclasses, built here
and turned into bytes (JSON lines) here, whichever road the run takes (the training process, Ray, the CLI, the
queue server).

A spec names everything a runner needs: the config, where the data is and its fingerprint, the store, and what
kind of run it is: ``train``, ``finetune`` (a stored model on the class's drawings) or ``lr_find`` (the
learning-rate finder's sweep: nothing stored, its curve in the Finished's result). A run answers with ``Started``
(the history it continues), ``Progress`` (about four times a second), ``EpochDone``, ``Watch`` (the live pictures),
``StepReport`` (one single step), ``Notice`` (a line the page keeps showing: where it trains, when not where
asked) and, last, exactly one ``Finished`` (done, cancelled or failed).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..train import Event

DONE, FAILED, CANCELLED = "done", "failed", "cancelled"


@dataclass(frozen=True)
class JobSpec:
    """One run, as every runner receives it."""

    job: str
    config: dict  # TrainConfig.to_dict()
    data_dir: str  # where the dataset came from (the training process loads it from there)
    dataset: str
    fingerprint: str  # the data's: a training process whose copy differs refuses the run
    store: str = ""  # the model store's folder
    continue_from: str = ""  # a stored model to continue (one more epoch) or fine-tune
    finetune: dict | None = None  # the class's drawings (finetune.pack): fine-tune continue_from on them
    kind: str = "train"  # "train", "finetune" or "lr_find"

    @classmethod
    def of(cls, job: str, config, data, store="", continue_from: str = "", finetune: dict | None = None,
           kind: str = "train") -> JobSpec:
        """The one way a spec is made: from a TrainConfig, the loaded dataset and the store (or its folder)."""
        root = Path(store) if isinstance(store, (str, os.PathLike)) else store.root  # a folder, or a ModelStore
        return cls(job, config.to_dict(), data.source.path, data.source.dataset, data.fingerprint(),
                   str(root.resolve()) if store != "" else "", continue_from, finetune,
                   "finetune" if finetune else kind)

    def with_store(self, store: str) -> JobSpec:
        return dataclasses.replace(self, store=str(store))


# ---------------------------------------------------------------- what a run says


@dataclass(frozen=True)
class Started:
    """A continued run's earlier epochs, before its first new one."""

    job: str
    history: list


@dataclass(frozen=True)
class Progress:
    """fit's latest Event and the batch points (epoch as a fraction, loss, accuracy) since the last one."""

    job: str
    event: Event
    points: list = field(default_factory=list)


@dataclass(frozen=True)
class EpochDone:
    """One finished epoch's row of the run's history (Event.record() and the timings)."""

    job: str
    record: dict


@dataclass(frozen=True)
class Watch:
    """The model as it is now (live.snapshot): its first layer's maps and its answers on the 16 test digits."""

    job: str
    maps_kind: str
    maps: dict
    answers: list
    confidence: list

    def picture(self) -> dict:
        return {"maps_kind": self.maps_kind, "maps": self.maps, "answers": self.answers, "confidence": self.confidence}


@dataclass(frozen=True)
class StepReport:
    """What one single step changed (live.step_report)."""

    job: str
    step: int
    batch_of_run: int
    loss: float
    accuracy: float
    batch_size: int
    layers: list
    maps_kind: str
    before: dict
    after: dict
    change: dict

    def report(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "job"}


@dataclass(frozen=True)
class Notice:
    """A line the run's page shows until it ends, such as "the Ray cluster ... is not answering; training here
    instead"."""

    job: str
    text: str


@dataclass(frozen=True)
class Finished:
    """A run's last message: done, cancelled or failed, the model it stored, its compute and wall time."""

    job: str
    state: str
    message: str
    error: str = ""
    model_id: str = ""
    compute_seconds: float = 0.0
    wall_seconds: float = 0.0
    result: dict | None = None  # a fine-tuning's numbers (finetune.summary), a sweep's curve (lr_find.LRFinding)

    @classmethod
    def failed(cls, job: str, message: str, error: str = "") -> Finished:
        """A run that failed: ``message`` for the page, ``error`` (by default the same) for the record."""
        return cls(job, FAILED, message, error or message)


@dataclass(frozen=True)
class Ready:
    """The training process has started (torch imported): it takes runs now."""

    pid: int
    threads: int


Message = Started | Progress | EpochDone | Watch | StepReport | Notice | Finished | Ready
TYPES: dict[str, type] = {"start": Started, "progress": Progress, "epoch": EpochDone, "watch": Watch,
                          "step": StepReport, "notice": Notice, "finished": Finished, "ready": Ready}
TYPE_OF = {cls: name for name, cls in TYPES.items()}


# ---------------------------------------------------------------- what the queue tells a training process


@dataclass(frozen=True)
class Command:
    """run (with its spec), load (a dataset ahead of a run: spec without a job), cancel, pause, resume, step, quit."""

    op: str
    job: str = ""
    spec: JobSpec | None = None


# ---------------------------------------------------------------- bytes: the one place


def to_line(message: Message | Command) -> str:
    """A message or command as one JSON line (no newline)."""
    if isinstance(message, Command):
        body = {"op": message.op, "job": message.job,
                "spec": dataclasses.asdict(message.spec) if message.spec is not None else None}
        return json.dumps(body)
    body = dataclasses.asdict(message)
    body["type"] = TYPE_OF[type(message)]
    return json.dumps(body)


def from_line(line: str) -> Message | Command | None:
    """``to_line``'s message or command back; None for a line that is neither (a stray print)."""
    try:
        body = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    if "op" in body:
        spec = body.get("spec")
        return Command(body["op"], body.get("job") or "", JobSpec(**spec) if spec else None)
    cls = TYPES.get(body.pop("type", None))
    if cls is None:
        return None
    if cls is Progress:
        body["event"] = Event(**body["event"])
    try:
        return cls(**body)
    except TypeError:
        return None
