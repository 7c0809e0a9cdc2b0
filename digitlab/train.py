"""Training: fit() walks the epochs and yields what happens, batch by batch.

Batches are drawn straight from the in-memory uint8 tensors and converted to float a block of
1,024 images at a time -- no per-image PIL work, no DataLoader over single images, never the
whole set in float. That is most of why this is many times faster than the tutorials' pipelines
on a laptop CPU. simple_net's MLPs go further: their gradients come from backprop.py, the chain
rule written out, with no autograd bookkeeping; everything else trains through autograd.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backprop import SequentialBackprop, sgd_stepper
from .data import MNIST, NORMALISATIONS, to_float
from .models import TrainConfig

EVAL_BATCH = 1000


class TrainingError(Exception):
    """A run that cannot go on, with a message fit for a page."""


class TrainingDiverged(TrainingError):
    pass


class ConfigError(TrainingError):
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


# ---------------------------------------------------------------- data for a task


def task_data(data: MNIST, config: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8) and targets for the config's task: all ten digits, or 3s (1) against 7s (0)."""
    images, labels = data.split(split)
    if config.task == "3v7":
        keep = (labels == 3) | (labels == 7)
        images, labels = images[keep], (labels[keep] == 3).float().unsqueeze(1)
    if split == "train" and config.train_limit and config.train_limit < len(images):
        gen = torch.Generator().manual_seed(config.seed)
        idx = torch.randperm(len(images), generator=gen)[: config.train_limit].sort().values
        images, labels = images[idx], labels[idx]
    return images, labels


def prepare(images: torch.Tensor, config: TrainConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [N, 28, 28] -> the float input the config's model expects."""
    x = to_float(images.to(device), config.norm)
    return x.unsqueeze(1) if config.kind == "cnn" else x.reshape(len(x), -1)


def augment(x01: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light per-image augmentation on a 0..1 batch: rotate up to 10 degrees, scale 0.9-1.1, shift 2 px."""
    n = len(x01)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 / 14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.to(x01.device)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, align_corners=False, padding_mode="zeros")


# ---------------------------------------------------------------- checks


def check_config(config: TrainConfig, n_train: int | None = None) -> None:
    """Refuse settings that cannot train, with a message a student can act on."""
    problems = []
    if config.kind not in ("linear", "mlp", "cnn"):
        problems.append(f"unknown model kind {config.kind!r}")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        problems.append(f"the learning rate must be a positive number, not {config.lr}")
    if config.batch_size < 1:
        problems.append("the batch size must be at least 1")
    elif n_train is not None and config.batch_size > n_train:
        problems.append(f"the batch size {config.batch_size} is larger than the {n_train} training images")
    if config.epochs < 1:
        problems.append("train for at least one epoch")
    if config.kind == "mlp" and (not config.hidden or min(config.hidden) < 1):
        problems.append("every hidden layer needs at least one unit")
    if config.form == "scratch" and config.optimizer != "sgd":
        problems.append("the from-scratch form steps by hand with plain SGD; pick the nn form for momentum or Adam")
    if config.kind == "mlp" and config.form == "scratch":
        if len(config.hidden) != 1:
            problems.append("simple_net by hand has one hidden layer (w1, b1, w2, b2): give one size, or write a "
                            "deeper net with nn.Sequential")
        if config.activations[:1] != ("relu",):
            problems.append("simple_net by hand uses ReLU, res.max(tensor(0.0)); pick ReLU or the nn form")
        if config.loss == "nll":
            problems.append("simple_net by hand ends in raw scores, not LogSoftmax: it trains with cross-entropy")
    if config.optimizer not in ("sgd", "momentum", "adam"):
        problems.append(f"unknown optimizer {config.optimizer!r}")
    if config.norm not in NORMALISATIONS:
        problems.append(f"unknown normalisation {config.norm!r}")
    if any(a not in ("relu", "tanh", "sigmoid") for a in config.activations):
        problems.append(f"unknown activation in {config.activations}")
    if (config.task == "3v7") != (config.loss == "mnist_loss"):
        problems.append("mnist_loss is for the 3-vs-7 task, and the 3-vs-7 task needs mnist_loss")
    if problems:
        message = "; ".join(problems)
        raise ConfigError(message[0].upper() + message[1:] + ".")


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


def _set_threads() -> None:
    wanted = int(os.environ.get("DIGITLAB_THREADS", 0)) or (os.cpu_count() or 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


PRECISIONS = ("auto", "fp32", "bf16")


def compute_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    """The dtype the big multiplications run in during training; the weights always stay float32.

    ``DIGITLAB_PRECISION`` picks: ``fp32``, ``bf16``, or ``auto`` (the default): bfloat16 mixed precision
    on a CPU that does bfloat16 in hardware (AVX512-BF16 or AMX), float32 everywhere else. Mixed means a
    CNN's convolutions (about 1.5x faster) and an MLP's first layer, 784 pixels wide and most of its
    arithmetic (about 2x faster), multiply in bfloat16 while the weights, the optimiser, the loss and the
    small layers stay float32. The linear model and the from-scratch forms stay float32: they are the
    lesson's own arithmetic. Evaluation and prediction are always float32.
    """
    wanted = os.environ.get("DIGITLAB_PRECISION", "auto").strip().lower() or "auto"
    if wanted not in PRECISIONS:
        raise ConfigError(f"DIGITLAB_PRECISION must be one of {', '.join(PRECISIONS)}, not {wanted!r}.")
    mixed = config.kind == "cnn" or (config.kind == "mlp" and config.form == "nn")
    if wanted == "fp32" or not mixed or device.type != "cpu":
        return torch.float32
    if wanted == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if _native_bf16() else torch.float32


def _native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# ---------------------------------------------------------------- fit


@dataclass(frozen=True)
class Event:
    """One step of progress. kind: 'batch', 'epoch' or 'cancelled'."""

    kind: str
    epoch: int  # 1-based
    epochs: int
    batch: int = 0  # 1-based within the epoch
    n_batches: int = 0
    loss: float = float("nan")  # this batch's, or the epoch's mean training loss
    accuracy: float = float("nan")  # this batch's, or the epoch's training accuracy
    lr: float = 0.0
    images_per_s: float = 0.0
    elapsed: float = 0.0  # seconds since fit() started
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")

    def record(self) -> dict:
        """An epoch's line in a run's history: what the stored model, the pages and the CLI keep."""
        return {
            "epoch": self.epoch, "train_loss": self.loss, "train_accuracy": self.accuracy,
            "test_loss": self.test_loss, "test_accuracy": self.test_accuracy,
            "images_per_s": self.images_per_s, "seconds": self.elapsed, "lr": self.lr,
        }

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1) + (self.batch / self.n_batches if self.n_batches else 1)
        return min(1.0, done / max(1, self.epochs))


def make_optimizer(model: nn.Module, config: TrainConfig):
    params = list(model.parameters())
    if config.form == "scratch":
        return None  # stepped by hand in sgd_step
    # fused: one kernel updates every parameter (same arithmetic as the per-tensor loop, fewer steps)
    fused = {"fused": True} if params and params[0].device.type in ("cpu", "cuda") else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **fused)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay, **fused)


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


BLOWN_UP = 1000.0  # a loss this many times the first batch's means the run has diverged
CHUNK_IMAGES = 1024  # images converted to float in one go: a few calls instead of one per batch, and still in cache


def training_forward(model: nn.Module, config: TrainConfig, dtype: torch.dtype, device: torch.device):
    """The forward pass fit() trains a model with through autograd: ``model`` itself, or for a CNN in
    mixed precision, ``model`` under autocast (convolutions in bfloat16, the loss in float32)."""
    if dtype == torch.float32 or config.kind != "cnn":
        return model

    def cnn_forward(xb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return model(xb).float()

    return cnn_forward


def fit(
    model: nn.Module,
    config: TrainConfig,
    data: MNIST,
    *,
    cancel: threading.Event | None = None,
    start_epoch: int = 0,
    device: torch.device | None = None,
) -> Iterator[Event]:
    """Train ``model`` in place for ``config.epochs`` epochs, yielding an Event per batch and per epoch.

    Stops between batches when ``cancel`` is set, leaving the model as the last full step made it.
    Raises TrainingDiverged when the loss stops being a finite number, or grows past BLOWN_UP times the
    first batch's (at least BLOWN_UP): weights that large answer at chance, even where the loss stays finite.
    """
    _set_threads()
    device = device or pick_device()
    train_x, train_y = task_data(data, config, "train")
    test_x, test_y = task_data(data, config, "test")
    check_config(config, len(train_x))
    model.to(device).train()
    dtype = compute_dtype(config, device)
    # CNNs on a CPU run channels-last (NHWC): oneDNN's convolutions are faster that way. Same arithmetic.
    channels_last = config.kind == "cnn" and device.type == "cpu"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    forward = training_forward(model, config, dtype, device)
    # simple_net's MLPs on a CPU: gradients by the chain rule written out (backprop.py), the same numbers
    # as autograd's in a third of the bookkeeping; the first layer multiplies in ``dtype``.
    backprop = None
    if device.type == "cpu" and SequentialBackprop.supports(model, config):
        backprop = SequentialBackprop(model, config, dtype)
    input_dtype = dtype if backprop is not None else torch.float32
    loss_fn = loss_function(config)
    opt = make_optimizer(model, config)
    bs = config.batch_size
    n_batches = math.ceil(len(train_x) / bs)
    per_chunk = max(1, CHUNK_IMAGES // bs)  # batches drawn, moved and converted together
    sched = None
    if opt is not None and config.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * n_batches)
    # after the scheduler, which wraps opt.step to check the order of the two calls
    opt_step = None if opt is None else sgd_stepper(opt) if backprop is not None else opt.step
    gen = torch.Generator().manual_seed(config.seed + start_epoch)
    torch.manual_seed(config.seed + start_epoch)
    train_y = train_y.to(device)
    mean, std = NORMALISATIONS[config.norm]
    started = time.perf_counter()
    total_epochs = start_epoch + config.epochs
    first_loss = None

    try:
        for e in range(config.epochs):
            epoch = start_epoch + e + 1
            perm = torch.randperm(len(train_x), generator=gen)
            t_epoch, seen, sum_loss, sum_correct = time.perf_counter(), 0, 0.0, 0.0
            for b in range(n_batches):
                if cancel is not None and cancel.is_set():
                    model.eval()
                    yield Event("cancelled", epoch, total_epochs, b, n_batches, elapsed=time.perf_counter() - started)
                    return
                if b % per_chunk == 0:  # the next few batches' images, gathered and converted in one go
                    chunk = perm[b * bs : (b + per_chunk) * bs]
                    images = train_x.index_select(0, chunk)
                    if config.augment:  # augmented per batch below, from 0..1
                        x_chunk = to_float(images.to(device)).unsqueeze(1)
                    else:
                        x_chunk = prepare(images, config, device).to(input_dtype)
                        if channels_last:
                            x_chunk = x_chunk.contiguous(memory_format=torch.channels_last)
                    y_chunk = train_y.index_select(0, chunk.to(device))
                lo = (b % per_chunk) * bs
                xb, yb = x_chunk[lo : lo + bs], y_chunk[lo : lo + bs]
                if config.augment:
                    xb = augment(xb, gen)
                    if config.norm != "none":
                        xb = (xb - mean) / std
                    if config.kind != "cnn":
                        xb = xb.reshape(len(xb), -1).to(input_dtype)
                    elif channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                if backprop is not None:
                    preds, loss = backprop.step(xb, yb)  # sets every p.grad
                else:
                    preds = forward(xb)
                    loss = loss_fn(preds, yb)
                loss_value = loss.item()
                if first_loss is None:
                    first_loss = loss_value
                if not math.isfinite(loss_value) or loss_value > BLOWN_UP * max(1.0, first_loss):
                    lr_now = opt.param_groups[0]["lr"] if opt else config.lr
                    raise TrainingDiverged(
                        f"The loss became {loss_value:.4g} at epoch {epoch}, batch {b + 1}: the model's numbers blew up. "
                        f"The learning rate {lr_now:g} is probably too high for this model; "
                        "try one ten times smaller."
                    )
                if backprop is None:
                    loss.backward()
                lr_now = config.lr
                if opt is None:
                    sgd_step(model.parameters(), config.lr)
                else:
                    lr_now = opt.param_groups[0]["lr"]
                    opt_step()
                    if backprop is None:  # backprop.step overwrites every p.grad, so only autograd's need clearing
                        opt.zero_grad(set_to_none=True)
                    if sched is not None:
                        sched.step()
                with torch.no_grad():
                    acc = float(batch_accuracy(preds, yb))
                n = len(yb)
                seen += n
                sum_loss += loss_value * n
                sum_correct += acc * n
                now = time.perf_counter()
                yield Event(
                    "batch", epoch, total_epochs, b + 1, n_batches, loss_value, acc, lr_now,
                    seen / max(1e-9, now - t_epoch), now - started,
                )
            train_seconds = time.perf_counter() - t_epoch
            test_loss, test_acc = evaluate(model, config, test_x, test_y, device)
            model.train()
            yield Event(
                "epoch", epoch, total_epochs, n_batches, n_batches, sum_loss / seen, sum_correct / seen,
                lr_now, seen / max(1e-9, train_seconds), time.perf_counter() - started, test_loss, test_acc,
            )
    finally:
        if channels_last:  # hand back an ordinary model: the store and every page expect contiguous weights
            model.to(memory_format=torch.contiguous_format)
    model.eval()


@torch.inference_mode()
def predict_proba(model: nn.Module, config: TrainConfig, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities for uint8 images [N, 28, 28]: [N, 10], or [N, 2] as (P(7), P(3)) for 3 vs 7."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), EVAL_BATCH):
        preds = model(prepare(images[i : i + EVAL_BATCH], config, device)).float().cpu()
        if config.task == "3v7":
            p3 = preds.sigmoid()
            out.append(torch.cat([1 - p3, p3], dim=1))
        elif config.loss == "nll":
            out.append(preds.exp())
        else:
            out.append(preds.softmax(dim=1))
    return torch.cat(out) if out else torch.empty(0, 2 if config.task == "3v7" else 10)
