"""The learning-rate finder (fastai's ``lr_find``): train briefly while the learning rate grows, watch the loss.

Start from the preset's own untrained model, take about a hundred batches, and multiply the learning rate by
the same factor after each one, from 1e-7 to 10. While the rate is too small the loss barely moves; then it
falls fast; then the steps become too large and the loss shoots up. A good rate sits in the fall, before the
bottom. The model it trained is thrown away: only the curve and the suggestion are kept.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import torch

from .config import FIELDS
from .data import MNIST
from .models import TrainConfig, build_model
from .train import batches, check_config, fast_forward, loss_function, make_optimizer, pick_device, task_data

START_LR, END_LR = FIELDS["lr"].lo, FIELDS["lr"].hi  # every rate a run may take (the config's schema): 1e-7 to 10
STEPS = 100
SMOOTHING = 0.98  # the loss is averaged like fastai's: each batch counts 2%, the past 98%
DIVERGED = 4.0  # stop once the smoothed loss is four times its lowest


@dataclass
class LRFinding:
    lrs: list[float]  # the rate used for each batch
    losses: list[float]  # the smoothed loss after each batch
    valley: float  # the suggestion: a rate in the long valley of the curve, before its bottom
    steepest: float  # where the loss fell fastest
    seconds: float

    @property
    def suggestion(self) -> float:
        return self.valley


def lr_find(config: TrainConfig, data: MNIST, steps: int = STEPS, start_lr: float = START_LR,
            end_lr: float = END_LR) -> LRFinding:
    """Sweep the learning rate exponentially over ``steps`` batches from ``config``'s untrained model.

    Safe to call from a page: the shuffling has its own generator, and dropout's draws from the global one
    happen inside torch.random.fork_rng, which puts the global generator back as it was.
    """
    check_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _sweep(config, data, steps, start_lr, end_lr)


def _sweep(config: TrainConfig, data: MNIST, steps: int, start_lr: float, end_lr: float) -> LRFinding:
    started = time.perf_counter()
    device = pick_device()
    model = build_model(config).to(device).train()  # the same start as training this config would use
    forward, loss_fn = fast_forward(model, config, device), loss_function(config)
    optimizer = make_optimizer(model, config.with_(lr=start_lr))
    grow = (end_lr / start_lr) ** (1 / max(1, steps - 1))  # the rate's factor from one batch to the next
    images, targets = task_data(data, config, "train")
    gen = torch.Generator().manual_seed(config.seed)
    stream = itertools.chain.from_iterable(batches(images, targets, config, gen, device) for _ in itertools.count())
    lrs, losses, average, lowest = [], [], 0.0, math.inf
    for step, (xb, yb) in enumerate(itertools.islice(stream, steps)):
        lr = start_lr * grow**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_fn(forward(xb), yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
        smoothed = average / (1 - SMOOTHING ** (step + 1))  # without the pull towards the starting 0
        lrs.append(lr)
        losses.append(smoothed)
        lowest = min(lowest, smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGED * lowest:
            break
    return LRFinding(lrs, losses, valley(lrs, losses), steepest(lrs, losses), time.perf_counter() - started)


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's 'valley': the longest stretch over which the loss keeps going down (not necessarily every
    batch), and a rate two thirds of the way down it -- well before the bottom, where the steps become too big."""
    n = len(losses)
    longest = [1] * n  # longest[i]: the longest falling sequence of losses that ends at batch i
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[end]:
            end = i
            start = end - longest[end]
    third = (end - start) / 3
    return lrs[min(n - 1, max(0, start + int(third) + int(third / 2)))]


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The rate where the smoothed loss falls fastest against log(rate)."""
    if len(losses) < 3:
        return lrs[0]
    slopes = [(losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
              for i in range(1, len(losses) - 1)]
    return lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]
