"""Teach it our handwriting (Teachable Machine): fine-tune a stored ten-digit model on the class collection.

Some of the class's drawings -- at least one of every digit -- are kept out of training. The model trains a few
epochs on the rest, starting from its stored weights, with a small learning rate. Then it is scored on the kept-out
drawings (did it learn the class's hand?) and on the MNIST test set (did it forget MNIST?), before and after.

It runs in the class's training queue like any run: the page submits the parent and the drawings (``pack``), the
worker fine-tunes and stores the result (``run_job``), and the finished message carries the numbers (``summary``).
"""

from __future__ import annotations

import base64
import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .data import MNIST
from .models import ModelInfo, TrainConfig
from .store import ModelStore
from .train import loss_function, make_optimizer, predict_proba, prepare

MIN_PER_DIGIT = 2  # one to learn from, one to check on
HELD_OUT = 0.3  # the share of each digit's drawings kept out of training (at least one)
EPOCHS = 10
LR_FACTOR = 0.3  # fine-tuning steps are a third of the model's own: enough to learn a hand, not to wipe out MNIST
BATCH = 32


class NotEnoughDrawings(ValueError):
    """The collection is too small to fine-tune on; the message says how many more each digit needs."""


@dataclass
class FineTuning:
    model: nn.Module
    config: TrainConfig
    held_out: list[str]  # ids of the drawings kept out
    trained_on: list[str]  # ids of the drawings it learned from
    before: dict[str, float]  # {"class drawings": accuracy on the kept-out drawings, "MNIST test": ...}
    after: dict[str, float]
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch


def missing_drawings(labels: torch.Tensor) -> dict[int, int]:
    """How many more drawings each digit needs before fine-tuning can start (only digits that need some)."""
    counts = torch.bincount(labels, minlength=10).tolist()
    return {d: MIN_PER_DIGIT - n for d, n in enumerate(counts) if n < MIN_PER_DIGIT}


def split(labels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indexes (to train on, to keep out): about HELD_OUT of each digit kept out, at least one, at least one left."""
    gen = torch.Generator().manual_seed(seed)
    train, held = [], []
    for d in range(10):
        idx = (labels == d).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = min(len(idx) - 1, max(1, round(HELD_OUT * len(idx))))
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def accuracy(model: nn.Module, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict_proba(model, config, images).argmax(1) == labels).float().mean())


def fine_tune(model: nn.Module, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, ids: list[str],
              mnist: MNIST, epochs: int = EPOCHS, seed: int = 0) -> FineTuning:
    """Fine-tune a copy of ``model`` on the class's drawings (uint8 [N, 28, 28], labels, their ids)."""
    if config.pair:
        raise ValueError("fine-tuning needs a ten-digit model; a two-class model cannot learn every digit")
    if missing := missing_drawings(labels):
        needs = ", ".join(f"{n} more {d}" for d, n in missing.items())
        raise NotEnoughDrawings(f"Each digit needs at least {MIN_PER_DIGIT} drawings (one to learn from, one to "
                                f"check on). Still needed: {needs}.")
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: put it back afterwards
        torch.manual_seed(seed)
        return _fine_tune(model, config, images, labels, ids, mnist, epochs, seed)


def _fine_tune(model: nn.Module, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, ids: list[str],
               mnist: MNIST, epochs: int, seed: int) -> FineTuning:
    train_idx, held_idx = split(labels, seed)
    tuned = copy.deepcopy(model)
    before = {"class drawings": accuracy(model, config, images[held_idx], labels[held_idx]),
              "MNIST test": accuracy(model, config, mnist.test_images, mnist.test_labels)}

    tuned_config = config.with_(lr=config.lr * LR_FACTOR, weight_decay=0.0)
    optimizer, loss_fn = make_optimizer(tuned, tuned_config), loss_function(config)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = prepare(images[train_idx], config), labels[train_idx]
    losses = []
    tuned.train()
    for m in tuned.modules():  # BatchNorm keeps MNIST's statistics: a few dozen drawings are too few to redo them
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.eval()
    for _ in range(epochs):
        order, total = torch.randperm(len(train_idx), generator=gen), 0.0
        for lo in range(0, len(order), BATCH):
            batch = order[lo : lo + BATCH]
            loss = loss_fn(tuned(x_all[batch]), y_all[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
        if not math.isfinite(losses[-1]):
            raise ValueError("the loss blew up while fine-tuning; nothing was kept")
    tuned.eval()
    after = {"class drawings": accuracy(tuned, config, images[held_idx], labels[held_idx]),
             "MNIST test": accuracy(tuned, config, mnist.test_images, mnist.test_labels)}
    return FineTuning(tuned, config, [ids[i] for i in held_idx.tolist()], [ids[i] for i in train_idx.tolist()],
                      before, after, losses)


def record_extra(parent_id: str, result: FineTuning) -> dict:
    """What the stored model says about where it came from."""
    return {"fine_tuned_from": parent_id, "fine_tuned_on": result.trained_on, "held_out": result.held_out,
            "before": result.before, "after": result.after}


def save(store: ModelStore, parent: ModelInfo, result: FineTuning, data: MNIST, seconds: float) -> ModelInfo:
    """Store the fine-tuned model as a new model that names its parent and the drawings it saw.

    Its fingerprint says it learned from class drawings too, so the queue never hands it out as the parent's
    recipe trained on MNIST alone (store.find matches the config and the data)."""
    return store.save(
        result.model, result.config,
        metrics={"test_accuracy": result.after["MNIST test"], "class_drawings_accuracy": result.after["class drawings"]},
        history=list(parent.history), fingerprint=f"{data.fingerprint()}+class-drawings-{len(result.trained_on)}",
        train_seconds=parent.train_seconds + seconds,
        extra={"data_source": data.source.kind, "continued_from": parent.id,
               "name": f"fine-tuned on {len(result.trained_on)} class drawings", **record_extra(parent.id, result)},
    )


# ---------------------------------------------------------------- through the training queue


def pack(images: torch.Tensor, labels: torch.Tensor, ids: list[str]) -> dict:
    """The drawings as plain values for a job's spec (a JSON line to the worker): uint8 pixels in base64."""
    return {"images": base64.b64encode(images.to(torch.uint8).contiguous().numpy().tobytes()).decode(),
            "labels": [int(v) for v in labels], "ids": list(ids)}


def unpack(packed: dict) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``pack``'s drawings back: uint8 [N, 28, 28], labels, ids; a malformed payload is a ValueError."""
    labels, ids = packed.get("labels"), packed.get("ids")
    raw = np.frombuffer(base64.b64decode(packed.get("images", ""), validate=True), dtype=np.uint8)
    if not isinstance(labels, list) or not isinstance(ids, list) or len(raw) != len(labels) * 28 * 28 \
            or len(ids) != len(labels) or not all(isinstance(v, int) and 0 <= v <= 9 for v in labels):
        raise ValueError("the drawings sent with this run are malformed")
    return torch.from_numpy(raw.copy()).reshape(-1, 28, 28), torch.tensor(labels, dtype=torch.long), [str(i) for i in ids]


def summary(parent: ModelInfo, new: ModelInfo, result: FineTuning, seconds: float) -> dict:
    """What the page shows of a finished fine-tuning: plain numbers, and the new model's id."""
    return {"parent": parent.id, "model": new.id, "before": result.before, "after": result.after,
            "losses": result.losses, "trained_on": len(result.trained_on), "held_out": len(result.held_out),
            "seconds": seconds}


def run_job(store: ModelStore, parent_id: str, packed: dict, data: MNIST) -> tuple[ModelInfo, dict]:
    """The worker's side: fine-tune the stored ``parent_id`` on the packed drawings, store the result; returns the new
    model and its ``summary``. Raises ValueError (bad drawings, too few, a loss that blew up), StoreError, OSError."""
    started = time.perf_counter()
    model, parent = store.load(parent_id)
    result = fine_tune(model, parent.config, *unpack(packed), data)
    seconds = time.perf_counter() - started
    new = save(store, parent, result, data, seconds)
    return new, summary(parent, new, result, seconds)
