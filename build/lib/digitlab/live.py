"""Watching a model learn (ConvNetJS) and stepping it one batch at a time, from inside the training process.

Between batches the worker publishes a small copy of what the model is now (``Publisher``): its first layer --
the weights of up to 16 units as 28x28 images (linear model, MLPs) or its filters (CNN) -- and its answers on a
fixed grid of 16 test digits (``watch_digits``), at most once every WATCH_EVERY_S. A paused run can be let through
one batch at a time; ``step_report`` says what that batch changed: its loss and accuracy, how far each weight
tensor moved, and the first layer before and after.

Both are computed in the worker, with the model it trains, in eval mode and without gradients: nothing here
changes the run's weights or its random numbers, so a watched run trains exactly as an unwatched one.
"""

from __future__ import annotations

import base64
import time

import numpy as np
import torch
from torch import nn

from .data import MNIST
from .features import first_filters, first_layer, weight_images
from .metrics import task_test_set
from .models import TrainConfig
from .runs.spec import Watch
from .train import batch_accuracy, predict_proba

WATCH_EVERY_S = 1.0  # the live panel's pictures move about once a second
WATCH_DIGITS = 16  # the fixed grid of test digits the model answers
WATCH_UNITS = 16  # first-layer units drawn as 28x28 images (a CNN's filters are all drawn: 3x3 or 5x5 each)


def watch_digits(data: MNIST, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The 16 test digits every watcher sees, as (positions in data.test_images, class targets): the first test
    image of each class the task has, then the next ones in order. The same for every run of the task."""
    index, targets, names = task_test_set(data, config)
    firsts = [int((targets == c).nonzero()[0]) for c in range(len(names)) if (targets == c).any()]
    taken, need = set(firsts), max(0, WATCH_DIGITS - len(firsts))
    rest = [i for i in range(min(len(index), len(firsts) + need)) if i not in taken][:need]  # the next ones in order
    pick = torch.tensor(sorted(firsts + rest)[:WATCH_DIGITS], dtype=torch.long)
    return index[pick], targets[pick]


def first_layer_maps(model: nn.Module) -> tuple[str, torch.Tensor] | None:
    """What the first layer looks for, as small images: ("units", [<=16, 28, 28]) or ("filters", [n, k, k])."""
    rows = first_layer(model)
    if rows is not None:
        return "units", weight_images(rows[0][:WATCH_UNITS])
    filters = first_filters(model)
    return ("filters", filters) if filters is not None else None


def pack(maps: torch.Tensor) -> dict:
    """Maps as plain values that travel light (JSON lines, the queue server): float16 bytes in base64 (3 digits),
    divided by their largest size first, so that a step's tiny change does not round to zero."""
    maps = maps.detach().float().cpu()
    scale = float(maps.abs().max()) if maps.numel() else 0.0
    scaled = maps / scale if scale > 0 else maps
    return {"shape": list(maps.shape), "scale": scale,
            "float16": base64.b64encode(scaled.half().numpy().tobytes()).decode()}


def unpack(packed: dict) -> torch.Tensor:
    """``pack``'s maps back as a float32 tensor."""
    raw = np.frombuffer(base64.b64decode(packed["float16"]), dtype=np.float16).astype(np.float32)
    maps = torch.from_numpy(raw.reshape(packed["shape"]))
    return maps * packed["scale"] if packed["scale"] > 0 else maps


@torch.inference_mode()
def snapshot(model: nn.Module, config: TrainConfig, images: torch.Tensor) -> dict:
    """The model as it is now, in plain values: the first layer's maps and its answers on ``images``.

    Runs in eval mode (no dropout drawn, no batch-norm statistics updated) and puts the training mode back."""
    was_training = model.training
    probs = predict_proba(model, config, images)  # sets eval mode
    model.train(was_training)
    maps = first_layer_maps(model)
    kind, tensor = maps if maps is not None else ("", torch.zeros(0, 1, 1))
    return {"maps_kind": kind, "maps": pack(tensor),
            "answers": probs.argmax(dim=1).tolist(), "confidence": [round(float(p), 4) for p in probs.max(dim=1).values]}


def weights_now(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every weight tensor, to compare with after a step."""
    return {name: p.detach().float().cpu().clone() for name, p in model.named_parameters()}


def step_report(before: dict[str, torch.Tensor], model: nn.Module, loss: float, preds: torch.Tensor,
                targets: torch.Tensor) -> dict:
    """What one batch's step changed: the batch's loss and accuracy (before the step), per weight tensor its size
    and how far the step moved it (L2 norms), and the first layer's maps before, after, and their change."""
    layers = []
    for name, p in model.named_parameters():
        start, now = before[name], p.detach().float().cpu()
        moved, size = float((now - start).norm()), float(start.norm())
        layers.append({"weights": name, "norm": size, "moved": moved, "moved_share": moved / size if size else None})
    after_maps = first_layer_maps(model) or ("", torch.zeros(0, 1, 1))
    before_maps = _maps_of(before, after_maps)
    # the change is taken here, in float32: one step's change is far below the resolution of the weights in float16
    return {"loss": float(loss), "accuracy": float(batch_accuracy(preds.detach().float(), targets)),
            "batch_size": len(targets), "layers": layers, "maps_kind": after_maps[0],
            "before": pack(before_maps), "after": pack(after_maps[1]), "change": pack(after_maps[1] - before_maps)}


def _maps_of(weights: dict[str, torch.Tensor], like: tuple[str, torch.Tensor]) -> torch.Tensor:
    """The first-layer maps of a copy of the weights (``weights_now``), found as first_layer_maps finds them."""
    for w in weights.values():  # the first tensor of the first layer's shape
        if like[0] == "filters" and w.dim() == 4:
            return w.sum(dim=1)
        if like[0] == "units" and w.dim() == 2 and 28 * 28 in w.shape:
            rows = w if w.shape[1] == 28 * 28 else w.T
            return weight_images(rows[:WATCH_UNITS])
    return torch.zeros_like(like[1])


class Publisher:
    """Sends a ``Watch`` message (``snapshot``) at most every WATCH_EVERY_S, or at once when asked (``now``)."""

    def __init__(self, model: nn.Module, config: TrainConfig, data: MNIST, emit, job: str):
        self.model, self.config, self.emit, self.job = model, config, emit, job
        self.images = data.test_images[watch_digits(data, config)[0]]
        self.last = 0.0

    def __call__(self, now: bool = False) -> None:
        if now or time.perf_counter() - self.last >= WATCH_EVERY_S:
            self.emit(Watch(self.job, **snapshot(self.model, self.config, self.images)))
            self.last = time.perf_counter()
