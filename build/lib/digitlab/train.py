"""Training: fit() walks the epochs and yields what happens: about 16 times an epoch, and every epoch.

fit() is the tutorials' loop -- forward, loss, backward, step, zero_grad -- on one screen. The speed
comes from small helpers beside it, each a public PyTorch switch with its reason:
- the data side (batching.py): model_inputs() converts the training images to the model's float inputs once per
  run, and batches() gathers shuffled blocks of 16,384 from them, each into the same memory;
- fused optimizers: one kernel updates every parameter;
- the training accuracy is scored once per report (about a 16th of an epoch), not five small calls per batch;
- a CNN on a CPU runs channels-last, and under torch.autocast in bfloat16 where the CPU does bfloat16
  in hardware.
The config's check before any run (check_config) is the schema's, in config.py.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .batching import AUGMENTERS as AUGMENTERS  # the pages, tests and benches import these from train
from .batching import BLOCK_IMAGES as BLOCK_IMAGES
from .batching import CONVERT_IMAGES as CONVERT_IMAGES
from .batching import augment as augment
from .batching import batches, block_rows, model_inputs, prepare, task_data, uses_channels_last
from .batching import block_inputs as block_inputs
from .batching import held_out_rows as held_out_rows
from .batching import mirror_shift as mirror_shift
from .batching import task_size as task_size
from .config import ConfigError, TrainConfig, TrainingError, check_config
from .data import MNIST

EVAL_BATCH = 256  # evaluation and prediction: a CNN block this size stays in cache (2.9 s -> 1.7 s for the test set)


class TrainingDiverged(TrainingError):
    pass


# ---------------------------------------------------------------- the seeds' loss and metric


def mnist_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """3 vs 7: squash to 0..1 with the sigmoid, then how far each prediction is from its target."""
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


def batch_accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The share of a batch predicted right: sigmoid > 0.5 for one output, argmax for ten."""
    if predictions.shape[-1] == 1:
        correct = (predictions.sigmoid() > 0.5) == targets.bool()
    else:
        correct = predictions.argmax(dim=1) == targets
    return correct.float().mean()


def loss_function(config: TrainConfig):
    if config.loss == "mnist_loss":
        return mnist_loss
    if config.loss == "nll":  # the model ends in LogSoftmax, as in the PyTorch MLP tutorial
        return F.nll_loss
    if config.loss == "cross_entropy":  # log_softmax + nll_loss in one step
        return lambda p, t: F.cross_entropy(p, t, label_smoothing=config.label_smoothing)
    raise ConfigError(f"unknown loss {config.loss!r}")


def sgd_step(params, lr: float) -> None:
    """The hand-written optimiser step: move each parameter against its gradient, then reset it."""
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad.zero_()


class SGDByHand:
    """The from-scratch forms' optimiser: step() is the seeds' sgd_step, with torch.optim's two method names."""

    def __init__(self, params, lr: float):
        self.params = list(params)
        self.param_groups = [{"lr": lr}]

    def step(self) -> None:
        sgd_step(self.params, self.param_groups[0]["lr"])  # p -= lr * p.grad, then p.grad.zero_()

    def zero_grad(self) -> None:
        pass  # sgd_step has already reset every gradient


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_label(device: torch.device | None = None) -> str:
    device = device or pick_device()
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "MPS (Apple GPU)"
    return f"CPU ({torch.get_num_threads()} threads)"


def use_all_cores() -> None:
    """Every core (or DIGITLAB_THREADS) for the matrix multiplications."""
    wanted = settings.get("DIGITLAB_THREADS") or (os.cpu_count() or 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


# ---------------------------------------------------------------- the loop


@dataclass(frozen=True)
class Event:
    """One step of progress. kind: 'batch' (see Progress.report_every), 'epoch' or 'cancelled'."""

    kind: str
    epoch: int  # 1-based
    epochs: int
    batch: int = 0  # 1-based within the epoch
    n_batches: int = 0
    loss: float = float("nan")  # the batches' since the last report, or the epoch's mean training loss
    accuracy: float = float("nan")  # the batches' since the last report, or the epoch's training accuracy
    lr: float = 0.0
    images_per_s: float = 0.0
    elapsed: float = 0.0  # seconds since fit() started
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1) + (self.batch / self.n_batches if self.n_batches else 1)
        return min(1.0, done / max(1, self.epochs))

    def record(self) -> dict:
        """An epoch event as the one row of a run's history that the store keeps and every page reads."""
        return {
            "epoch": self.epoch,
            "train_loss": self.loss,
            "train_accuracy": self.accuracy,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "images_per_s": self.images_per_s,
            "seconds": self.elapsed,
            "lr": self.lr,
        }


def fit(
    model: nn.Module,
    config: TrainConfig,
    data: MNIST,
    *,
    cancel: threading.Event | None = None,
    start_epoch: int = 0,
    device: torch.device | None = None,
    between_batches: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] = lambda loss, preds, targets: None,
) -> Iterator[Event]:
    """Train ``model`` in place for ``config.epochs`` epochs, yielding an Event per batch and per epoch.

    Stops between batches when ``cancel`` is set, leaving the model as the last full step made it.
    ``between_batches`` is called after every step (the worker's pause, single steps and live pictures).
    Raises TrainingDiverged when the loss blows up (see Progress.record).
    """
    device = device or pick_device()
    train_x, train_y = task_data(data, config, "train")
    test_x, test_y = task_data(data, config, "test")
    check_config(config, len(train_x))
    inputs = model_inputs(train_x, config)
    rows = block_rows(inputs, config)  # the memory each gathered block goes into, made once per run
    use_all_cores()
    gen = seeded(config, start_epoch)
    model.to(device).train()
    forward = fast_forward(model, config, device)
    loss_fn = loss_function(config)
    optimizer = make_optimizer(model, config)
    n_batches = math.ceil(len(train_x) / config.batch_size)
    schedule = make_schedule(optimizer, config, n_batches)
    progress = Progress(start_epoch + config.epochs, n_batches, config.batch_size, optimizer)
    try:
        for epoch in range(start_epoch + 1, start_epoch + config.epochs + 1):
            progress.start_epoch(epoch)
            for xb, yb in batches(inputs, train_y, config, gen, device, rows):
                if cancel is not None and cancel.is_set():
                    model.eval()
                    yield progress.cancelled()
                    return
                preds = forward(xb)
                loss = loss_fn(preds, yb)
                report_due = progress.record(loss.item(), preds, yb)  # raises TrainingDiverged before a bad step
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                if schedule is not None:
                    schedule.step()
                if report_due:  # about 16 times an epoch, and at the epoch's end
                    yield progress.report()
                between_batches(loss, preds, yb)
            yield progress.epoch(*evaluate(model, config, test_x, test_y, device))
            model.train()
    finally:
        if uses_channels_last(config, device):  # hand back an ordinary model: the store expects contiguous weights
            model.to(memory_format=torch.contiguous_format)
    model.eval()


# ---------------------------------------------------------------- fit's helpers: randomness, data, speed


def seeded(config: TrainConfig, start_epoch: int = 0) -> torch.Generator:
    """The run's own generator (shuffling, augmentation), seeded from its config.

    Dropout has no generator argument and draws from the global one, so it is seeded here too: fit runs
    in a process of its own (the job queue's worker, or the command line), where nothing else draws.
    """
    torch.manual_seed(config.seed + start_epoch)
    return torch.Generator().manual_seed(config.seed + start_epoch)


PRECISIONS = settings.BY_NAME["DIGITLAB_PRECISION"].choices  # auto, fp32, bf16


def compute_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    """The dtype the big multiplications run in during training; the weights always stay float32.

    ``DIGITLAB_PRECISION`` picks: ``fp32``, ``bf16`` (torch.autocast for CNNs and nn-form MLPs), or
    ``auto`` (the default): bfloat16 for a CNN's convolutions on a CPU that does bfloat16 in hardware
    (AVX512-BF16 or AMX), about 1.5x faster; float32 everywhere else. An MLP stays float32 under auto:
    at batch 64 autocast's casts cost more than its bfloat16 multiplications save. The linear model and
    the from-scratch forms always stay float32: they are the lesson's own arithmetic. Evaluation and
    prediction are always float32.
    """
    try:
        wanted = settings.get("DIGITLAB_PRECISION")
    except settings.SettingError as e:  # a page says it before the run is queued
        raise ConfigError(str(e)) from None
    if wanted == "fp32" or device.type != "cpu" or config.form != "nn" or config.kind == "linear":
        return torch.float32
    if wanted == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if config.kind == "cnn" and native_bf16() else torch.float32


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16), as Linux lists its flags."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: take float32, which is never wrong
        return False
    return re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None


def fast_forward(model: nn.Module, config: TrainConfig, device: torch.device) -> Callable:
    """The forward pass to train with: ``model`` itself, in the run's memory layout, or under autocast."""
    if uses_channels_last(config, device):
        model.to(memory_format=torch.channels_last)
    dtype = compute_dtype(config, device)
    if dtype == torch.float32:
        return model

    def mixed_precision_forward(xb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):  # big multiplications in bfloat16, weights float32
            return model(xb).float()  # the loss in float32

    return mixed_precision_forward


def make_optimizer(model: nn.Module, config: TrainConfig):
    params = list(model.parameters())
    if config.form == "scratch":
        return SGDByHand(params, config.lr)
    # fused: one kernel updates every parameter (same arithmetic as the per-tensor loop, far fewer calls)
    fused = {"fused": True} if params and params[0].device.type in ("cpu", "cuda") else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **fused)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay, **fused)


def make_schedule(optimizer, config: TrainConfig, n_batches: int):
    """The one-cycle learning rate (warm up, then anneal) over the whole run; None for a constant rate."""
    if config.schedule != "onecycle" or not isinstance(optimizer, torch.optim.Optimizer):
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * n_batches)


BLOWN_UP = 1000.0  # a loss this many times the first batch's means the run has diverged
REPORT_IMAGES = 1024  # fit reports after this many images first (Train shows progress at once, even for a CNN),
# then at most this often, so a small task's epoch still draws a curve (3s and 7s: 12 points) ...
REPORTS_PER_EPOCH = 16  # ... and at most about this many times an epoch: scoring a report's batches costs about
# 0.2 ms whatever their number (the MLP on MNIST trained 2.0% faster reporting every 4,096 images than every 1,024)


class Progress:
    """What fit() has done so far -- counts, sums, clocks, the first loss -- and the Events it yields."""

    def __init__(self, epochs: int, n_batches: int, batch_size: int, optimizer):
        self.epochs, self.n_batches, self.optimizer = epochs, n_batches, optimizer
        self.report_every = max(1, REPORT_IMAGES // batch_size, n_batches // REPORTS_PER_EPOCH)  # batches
        self.every = max(1, REPORT_IMAGES // batch_size)  # the first report's, then report_every's
        self.started = time.perf_counter()
        self.first_loss: float | None = None
        self.limit = math.inf  # BLOWN_UP times the first batch's loss, once there is one
        self.epoch_no, self.lr = 0, 0.0

    def start_epoch(self, epoch: int) -> None:
        self.epoch_no, self.batches, self.seen = epoch, 0, 0
        self.sum_loss, self.sum_correct = 0.0, 0.0
        self.accuracy, self.unscored, self.unscored_loss = float("nan"), [], 0.0
        self.epoch_started = self.last_batch_done = time.perf_counter()

    def record(self, loss: float, preds: torch.Tensor, targets: torch.Tensor) -> bool:
        """Note a batch, before its step: its loss and predictions. True when a report is due (after REPORT_IMAGES
        images first, then every report_every batches, and at the epoch's end). Called every step, so it does as
        little as it can: the scoring waits for the report.

        Raises TrainingDiverged if the loss is not a finite number, or has grown past BLOWN_UP times the first
        batch's (weights that large answer at chance).
        """
        if self.first_loss is None:
            self.first_loss, self.limit = loss, BLOWN_UP * max(1.0, loss)
        if not -self.limit < loss < self.limit:  # also false for NaN
            self.lr = self.optimizer.param_groups[0]["lr"]
            raise TrainingDiverged(
                f"The loss became {loss:.4g} at epoch {self.epoch_no}, batch {self.batches + 1}: the model's numbers "
                f"blew up. The learning rate {self.lr:g} is probably too high for this model; try one ten times "
                "smaller."
            )
        self.batches += 1
        self.unscored.append((preds.detach(), targets))
        self.unscored_loss += loss * len(targets)
        if len(self.unscored) < self.every and self.batches < self.n_batches:
            return False
        self.lr = self.optimizer.param_groups[0]["lr"]  # the rate of the step this report ends with
        return True

    def report(self) -> Event:
        """Score the batches since the last report in one go: an Event with their mean loss and accuracy."""
        self.score_unscored()
        self.every = self.report_every
        now = self.last_batch_done = time.perf_counter()
        return Event("batch", self.epoch_no, self.epochs, self.batches, self.n_batches, self.block_loss,
                     self.accuracy, self.lr, self.seen / max(1e-9, now - self.epoch_started), now - self.started)

    def score_unscored(self) -> None:
        preds = torch.cat([p for p, _ in self.unscored])
        targets = torch.cat([t for _, t in self.unscored])
        n = len(targets)
        self.block_loss, self.accuracy = self.unscored_loss / n, float(batch_accuracy(preds, targets))
        self.seen += n
        self.sum_loss += self.unscored_loss
        self.sum_correct += self.accuracy * n
        self.unscored, self.unscored_loss = [], 0.0

    def epoch(self, test_loss: float, test_accuracy: float) -> Event:
        seconds = self.last_batch_done - self.epoch_started  # training only, not the test pass
        return Event("epoch", self.epoch_no, self.epochs, self.n_batches, self.n_batches,
                     self.sum_loss / max(1, self.seen), self.sum_correct / max(1, self.seen), self.lr,
                     self.seen / max(1e-9, seconds), time.perf_counter() - self.started, test_loss, test_accuracy)

    def cancelled(self) -> Event:
        return Event("cancelled", self.epoch_no, self.epochs, self.batches, self.n_batches,
                     elapsed=time.perf_counter() - self.started)


@torch.inference_mode()
def evaluate(model: nn.Module, config: TrainConfig, images: torch.Tensor, targets: torch.Tensor, device=None):
    """Mean loss and accuracy over a whole split, in large batches."""
    device = device or next(model.parameters()).device
    loss_fn = loss_function(config)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0.0
    for i in range(0, len(images), EVAL_BATCH):
        xb = prepare(images[i : i + EVAL_BATCH], config, device)
        yb = targets[i : i + EVAL_BATCH].to(device)
        preds = model(xb)
        total_loss += float(loss_fn(preds, yb)) * len(xb)
        correct += float(batch_accuracy(preds, yb)) * len(xb)
    model.train(was_training)
    n = max(1, len(images))
    return total_loss / n, correct / n


@torch.inference_mode()
def predict_proba(model: nn.Module, config: TrainConfig, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities for uint8 images [N, 28, 28]: [N, 10], or [N, 2] as (P(no), P(yes)) for a pair
    (for 3 vs 7: P(7), P(3))."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), EVAL_BATCH):
        preds = model(prepare(images[i : i + EVAL_BATCH], config, device)).float().cpu()
        if config.pair:
            yes = preds.sigmoid()
            out.append(torch.cat([1 - yes, yes], dim=1))
        elif config.loss == "nll":
            out.append(preds.exp())
        else:
            out.append(preds.softmax(dim=1))
    return torch.cat(out) if out else torch.empty(0, 2 if config.pair else 10)
