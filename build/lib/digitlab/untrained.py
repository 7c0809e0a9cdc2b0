"""The same run before and after training: its exact untrained start rebuilt from its seed, how far training moved
each weight tensor, the first layer's pictures before and after, and the accuracy of the start."""

from __future__ import annotations

import torch
from torch import nn

from .data import MNIST
from .features import _size, first_filters, first_layer, unit_order, weight_images
from .metrics import task_test_set
from .models import TrainConfig, build_model
from .train import predict_proba


def initial_model(config: TrainConfig) -> nn.Module:
    """The untrained model of the same run, rebuilt: its exact starting weights.

    The training queue (and the CLI) start every run with ``build_model(config)``, which seeds torch
    with ``config.seed`` before creating the layers, and ``fit`` draws its own random numbers only after
    that. So the same call here gives the same numbers. ``fork_rng`` leaves the global generator as it was.
    A run continued with "one more epoch" keeps the seed and the architecture, so its start is this too.
    """
    with torch.random.fork_rng(devices=[]):
        model = build_model(config)
    return model.eval()


def weight_change(before: nn.Module, after: nn.Module) -> list[dict]:
    """Per weight tensor: its size before and after training (L2 norm), and how far training moved it."""
    start = dict(before.named_parameters())
    rows = []
    for name, p in after.named_parameters():
        b = start.get(name)
        if b is None or b.shape != p.shape:
            continue
        b, a = b.detach().float().cpu(), p.detach().float().cpu()
        moved = float((a - b).norm())
        size = float(b.norm())
        rows.append({"weights": name, "shape": _size(tuple(p.shape)), "norm before": size,
                     "norm after": float(a.norm()), "moved (norm of the change)": moved,
                     "moved ÷ norm before": moved / size if size else float("nan")})
    return rows


def accuracy(model: nn.Module, config: TrainConfig, data: MNIST, n: int = 10_000) -> float:
    """Accuracy on (up to ``n`` of) the model's test images: all ten digits, or the test 3s and 7s."""
    index, targets, _ = task_test_set(data, config)
    index, targets = index[:n], targets[:n]
    probs = predict_proba(model, config, data.test_images[index])
    return float((probs.argmax(dim=1) == targets).float().mean()) if len(targets) else float("nan")


def before_after(before: nn.Module, after: nn.Module) -> list[tuple[str, torch.Tensor, list[str]]]:
    """What to draw side by side, as (title, maps, labels): the first layer's rows (the ten with the largest
    trained norm) or, for a CNN, its filters -- before training, then after."""
    first = first_layer(after)
    if first is not None:
        pick = unit_order(first[0], "norm")[:10]
        labels = [f"unit {int(u)}" for u in pick]
        return [("Before training: first-layer weights", weight_images(first_layer(before)[0][pick]), labels),
                ("After training: first-layer weights", weight_images(first[0][pick]), labels)]
    filters = first_filters(after)
    if filters is None:
        return []
    labels = [str(i) for i in range(len(filters))]
    return [("Before training: first-layer filters", first_filters(before), labels),
            ("After training: first-layer filters", filters, labels)]
