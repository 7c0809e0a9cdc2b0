"""The learning-rate finder (fastai's ``lr_find``): train briefly while the learning rate grows, watch the loss.

Start from the preset's own untrained model, take about a hundred batches, and multiply the learning rate by
the same factor after each one, from 1e-7 to 10. While the rate is too small the loss barely moves; then it
falls fast; then the steps become too large and the loss shoots up. The model it trained is thrown away: only
the curve and the suggestions are kept.

Like fastai's recorder, the sweep follows a running average of the loss (each batch 2%) and stops once it is
four times its lowest. That average lags: over a hundred batches it trails the rate by about 50 batches, four
decades of learning rate, so a curve drawn from it puts the fall far to the right of where it happened, and
fastai's valley (the longest falling run of a noisy, flat start) lands in the flat part: 0.0071 for simple_net,
whose preset trains at 0.1. The curve here is the raw losses smoothed without lag (a Gaussian over a few
batches on either side), and the suggestions are read from *the fall* only: from where the loss has dropped a
tenth of the way to its bottom, to where it is within a tenth of it, before its first real rise (fastai drops
the first tenth of the sweep and its last five batches for the same reason).
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
SMOOTHING = 0.98  # the sweep's stopping average, fastai's: each batch counts 2%, the past 98%
DIVERGED = 4.0  # stop once that average is four times its lowest
WIDTH = 3.0  # the curve: each batch's loss averaged with its neighbours, Gaussian weights of this many batches
SKIP = 0.1  # the first tenth of the sweep only sets the starting level (fastai skips it too)
FALL = 0.1  # the fall starts once the loss has dropped a tenth of the way to its bottom, ends within a tenth of it
RISE = 0.15  # the curve's useful part ends where the loss climbs back by this share of what it had fallen...
FELL = 0.05  # ... once it has fallen by at least this share of its starting level (before, a rise is noise)


@dataclass
class LRFinding:
    lrs: list[float]  # the rate used for each batch
    losses: list[float]  # the loss after each batch, smoothed without lag (the curve drawn)
    valley: float  # a rate in the fall, two thirds of the way down it (log scale)
    steepest: float  # where the loss fell fastest
    seconds: float
    raw: list[float] | None = None  # each batch's own loss
    knee: float = 0.0  # where the fall ends: the loss within a tenth of its bottom
    schedule: str = "constant"  # the setup's schedule: a one-cycle run peaks at the knee
    low: float = 0.0  # the curve's bottom (before its first real rise) and its starting level: the
    high: float = 0.0  # chart shows this band, not the blow-up at the end

    @property
    def suggestion(self) -> float:
        """The rate to train with: the valley for a constant rate; for a one-cycle schedule, which warms up from a
        25th of its peak and touches the peak briefly, the end of the fall (Smith's range test takes the peak where
        the loss stops falling)."""
        return self.knee if self.schedule == "onecycle" and self.knee else self.valley

    @property
    def rule(self) -> str:
        """How the suggestion was read: "valley", or "end of the fall" (a one-cycle setup)."""
        return "valley" if self.suggestion == self.valley else "end of the fall"


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
    lrs, raw, average, lowest = [], [], 0.0, math.inf
    for step, (xb, yb) in enumerate(itertools.islice(stream, steps)):
        lr = start_lr * grow**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_fn(forward(xb), yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        lrs.append(lr)
        raw.append(loss.item())
        average = SMOOTHING * average + (1 - SMOOTHING) * raw[-1]
        smoothed = average / (1 - SMOOTHING ** (step + 1))  # without the pull towards the starting 0
        lowest = min(lowest, smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGED * lowest:
            break
    return finding(lrs, raw, time.perf_counter() - started, config.schedule)


def finding(lrs: list[float], raw: list[float], seconds: float = 0.0, schedule: str = "constant") -> LRFinding:
    """The curve and its suggestions from a sweep's rates and raw losses."""
    finite = next((i for i, v in enumerate(raw) if not math.isfinite(v)), len(raw))
    lrs, raw = lrs[: max(1, finite)], raw[: max(1, finite)]  # a NaN or infinite loss ends the curve
    curve = smooth(raw)
    a, bottom, start, knee_at = the_fall(curve)
    return LRFinding(lrs, curve, valley(lrs, curve), steepest(lrs, curve), seconds, raw=raw,
                     knee=lrs[knee_at], schedule=schedule, low=curve[bottom], high=curve_level(curve))


def smooth(raw: list[float], width: float = WIDTH) -> list[float]:
    """Each loss averaged with its neighbours (Gaussian weights, ``width`` batches): steadier, and unlike a running
    average, not shifted towards larger rates."""
    n, reach = len(raw), int(3 * width)
    out = []
    for i in range(n):
        js = range(max(0, i - reach), min(n, i + reach + 1))
        weights = [math.exp(-0.5 * ((j - i) / width) ** 2) for j in js]
        out.append(sum(w * raw[j] for w, j in zip(weights, js)) / sum(weights))
    return out


def curve_level(curve: list[float]) -> float:
    """The loss before the rate does anything: the mean of the sweep's first tenth."""
    a = max(1, int(len(curve) * SKIP))
    return sum(curve[:a]) / a


def the_fall(curve: list[float]) -> tuple[int, int, int, int]:
    """(first index looked at, the bottom, where the fall starts, where it ends) of a smoothed curve.

    The curve's useful part runs from after its first tenth to its first real rise (the loss, once down by FELL of
    its starting level, back up by RISE of what it had fallen): after that the steps are too large, whatever the loss does next. The bottom is its lowest
    point; the fall starts at the last point before the bottom still within FALL of the starting level, and ends at
    the first within FALL of the bottom."""
    n = len(curve)
    a = min(n - 1, max(1, int(n * SKIP)))
    level, best, end = curve_level(curve), math.inf, n
    for i in range(a, n):
        best = min(best, curve[i])
        fell = level - best
        if fell > FELL * level and curve[i] > best + RISE * fell:
            end = i
            break
    bottom = min(range(a, max(a + 1, end)), key=curve.__getitem__)
    drop = level - curve[bottom]
    start = max((i for i in range(a, bottom + 1) if curve[i] >= level - FALL * drop), default=a)
    knee = min(i for i in range(start, bottom + 1) if curve[i] <= curve[bottom] + FALL * drop)
    return a, bottom, start, knee


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's 'valley', read from the fall only: a rate two thirds of the way down it (on the log scale), where the
    loss still falls fast and the bottom, where the steps start to be too big, is still well ahead."""
    _, _, start, knee = the_fall(losses)
    return math.exp(math.log(lrs[start]) + 2 / 3 * (math.log(lrs[knee]) - math.log(lrs[start])))


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The rate in the fall where the smoothed loss falls fastest against log(rate)."""
    if len(losses) < 3:
        return lrs[0]
    _, _, start, knee = the_fall(losses)
    inside = range(max(1, start), min(len(losses) - 1, knee + 1))
    if not inside:
        return lrs[start]
    slope = {i: (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in inside}
    return lrs[min(slope, key=slope.__getitem__)]
