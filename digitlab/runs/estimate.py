"""What a run should cost on this server, from the click to "done": the training process's start, the data, every
epoch's training and test pass, and the save; learned from the runs this server has made.

The speed of a network at a batch size is the images per compute second measured on earlier runs (the store's
records, then each finished run); a batch size not measured yet is worked out from the closest one measured, each
step costing a fixed STEP_S plus a share per image. Compute seconds are not wall seconds on a busy machine: each
finished run also says how long it really took against what was estimated, and that ratio (its load, per kind
of network) scales the next estimates, corrected by how much busier the machine is now than then (the system's
load average over its cores: a training process on an oversubscribed machine gets cores / load of its time).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

from ..models import TrainConfig

# images per second of training compute, by kind, before this server has measured anything (one core of a laptop)
DEFAULT_RATES = {"linear": 400_000.0, "mlp": 60_000.0, "cnn": 4_000.0}
# seconds of fixed cost per training step, whatever the batch (Python, optimizer, small kernels): what makes a
# batch of 1 so slow. A CNN at batch 1 measured 72 images/s where batch 64 runs thousands.
STEP_S = {"linear": 0.0003, "mlp": 0.001, "cnn": 0.012}
START_S = 1.5  # from the click to the first batch in a training process (warm 0.4 s, cold 3.2 s), the model built;
# a runner says its own (``start_s``): none to start in this process, a task to place on a Ray cluster
EPOCH_S = 0.3  # each epoch's fixed part: the test pass's start, the record, the progress lines
SAVE_S = 0.3  # the weights and the record written
SAVE_BYTES_PER_S = 200e6  # ...and per byte of weights: written, read back for the checksum, analysed
TEST_IMAGES = {True: 2_000, False: 10_000}  # the test set passed once an epoch (a pair's: its two digits)...
FORWARD_SHARE = 1 / 3  # ...forward only, in large batches: about a third of a training step's cost per image
LOAD_KEPT = 0.5  # how much of the last measured load a new measurement keeps (the rest is the new one's)
LOAD_RANGE = (0.1, 50.0)  # a measured ratio is held within this (a run's wall time is on the monotonic clock, so a
# laptop asleep mid-run does not count); paused runs are not measured


def work_per_image(kind: str, shape) -> float | None:
    """Multiply-adds of one image's forward pass through a linear model or an MLP (``shape``: speed_key's, the
    hidden sizes), known from the config before anything runs; None for a CNN (its presets are few, each measured)."""
    if kind == "linear":
        return 784.0 * 10
    if kind == "mlp":
        sizes = [784, *(int(h) for h in (shape or (50,))), 10]
        return float(sum(a * b for a, b in zip(sizes, sizes[1:], strict=False)))
    return None


_flops: list[float] = []


def matmul_flops() -> float:
    """The training process's float32 matrix-multiply speed (FLOP/s), measured once per process on 512x512 matrices
    (a few ms) with this process's threads and scaled to the training process's (execute.worker_threads: every core
    but one): what a wide layer's training step costs per multiply-add, where a small network's is mostly overhead."""
    if not _flops:
        import time

        import torch

        from .execute import worker_threads

        a = torch.randn(512, 512)
        torch.mm(a, a)
        best = 1e8
        for _ in range(5):  # the best of five short bursts: a training process beside this one slows some of them
            start = time.perf_counter()
            torch.mm(a, a)
            best = max(best, 2 * 512**3 / (time.perf_counter() - start))
        _flops.append(best * min(worker_threads(), torch.get_num_threads()) / torch.get_num_threads())
    return _flops[0]


TRAIN_FLOPS_PER_MAC = 6  # forward, backward to the inputs and to the weights: two FLOPs a multiply-add, three times
TRAIN_EFFICIENCY = 0.5  # a training step reaches about half the 512x512 peak (activations, the optimiser, memory):
# a 6 x 4096 MLP measured 210 images/s on one thread of this 2-core machine (bench_estimate.py --wide)


def busy() -> float:
    """How oversubscribed the machine is now: the load average over the cores, at least 1."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    except (AttributeError, OSError):
        return 1.0


def speed_key(config: TrainConfig) -> tuple:
    """Runs that train at the same speed per image: the same network and batch size."""
    shape = config.arch if config.kind == "cnn" else config.hidden if config.kind == "mlp" else config.task
    return config.kind, config.form, shape, config.batch_size


@dataclass(frozen=True)
class OverLimit:
    """A run over the class's limit: its estimate, the limit, and what would bring it under (plain phrases)."""

    seconds: float
    limit_s: float
    options: tuple[str, ...]


class Estimates:
    """The server's speed table and load, and every estimate made from them. Thread-safe."""

    def __init__(self, start_s: float = START_S):
        self.start_s = start_s
        self.rates: dict[tuple, float] = {}  # speed_key -> images per compute second, measured
        self.load: dict[str, tuple[float, float]] = {}  # kind -> (wall seconds over seconds estimated, busy() then)
        self._lock = threading.Lock()
        self._learned_from_store = False

    def learn_from_store(self, store) -> None:
        """Seed the speed table from the models already stored (once)."""
        if self._learned_from_store:
            return
        self._learned_from_store = True
        for info in store.list():
            rate = info.metrics.get("images_per_s")
            if isinstance(rate, (int, float)) and rate > 0:
                with self._lock:
                    self.rates.setdefault(speed_key(info.config), float(rate))

    def measured(self, config: TrainConfig, images_per_s: float | None, wall_s: float | None = None,
                 n_images: int = 0) -> None:
        """A finished run: its speed (images per compute second of its last epoch) and, when it ran to the end,
        how long it took from start to done against what it was estimated to take before it started."""
        with self._lock:
            if wall_s and n_images:
                predicted = self._seconds(config, n_images, loaded=False)
                ratio = min(max(wall_s / max(predicted, 1e-9), LOAD_RANGE[0]), LOAD_RANGE[1])
                old, now = self.load.get(config.kind), busy()
                self.load[config.kind] = (ratio, now) if old is None else (
                    LOAD_KEPT * old[0] + (1 - LOAD_KEPT) * ratio, LOAD_KEPT * old[1] + (1 - LOAD_KEPT) * now)
            if images_per_s and images_per_s > 0:
                self.rates[speed_key(config)] = float(images_per_s)

    def seconds(self, config: TrainConfig, n_images: int, loaded: bool = True) -> float:
        """Seconds from the click to "done" for a run of ``config`` on ``n_images`` training images; with ``loaded``
        False, on this server as if nothing else ran (what the class's limit is judged on: a run's own cost, the
        same however busy the machine is when a student asks)."""
        with self._lock:
            return self._seconds(config, n_images, loaded)

    def _seconds(self, config: TrainConfig, n_images: int, loaded: bool = True) -> float:
        key = speed_key(config)
        rate = self.rates.get(key)
        if rate is None:
            near = [(abs(k[3] - key[3]), k[3], r) for k, r in self.rates.items() if k[:3] == key[:3]]
            b0, r0 = min(near)[1:] if near else (64, DEFAULT_RATES.get(config.kind, 10_000.0))
            step0 = b0 / r0  # seconds per step measured at batch b0
            fixed = min(STEP_S.get(config.kind, 0.001), 0.9 * step0)
            per_image = (step0 - fixed) / b0
            if not near and (work := work_per_image(*key[:3:2])) is not None:
                per_image = self._per_image_by_size(key, work, per_image)
            rate = config.batch_size / (fixed + per_image * config.batch_size)
            test_rate = 1 / max(per_image, 1e-12)
        else:
            fixed = min(STEP_S.get(config.kind, 0.001), 0.9 * config.batch_size / rate)
            test_rate = config.batch_size / max(config.batch_size / rate - fixed, 1e-12)
        epoch = n_images / rate + TEST_IMAGES[bool(config.pair)] * FORWARD_SHARE / test_rate + EPOCH_S
        return self.fixed_seconds(config, loaded) + config.epochs * epoch * (self._load(config) if loaded else 1.0)

    def _per_image_by_size(self, key: tuple, work: float, default: float) -> float:
        """A network of this kind not measured yet: the closest one measured (by work per image, then batch size),
        or the kind's default, with its per-image overhead kept and its multiply-adds replaced by this one's at the
        machine's matrix speed. A 6 x 4096 MLP was estimated at a small MLP's speed: 2 min for 12 hours."""
        measured = [(abs(math.log(w / work)), abs(k[3] - key[3]), k, r) for k, r in self.rates.items()
                    if k[:2] == key[:2] and (w := work_per_image(k[0], k[2])) is not None]
        if measured:
            _, _, k, r = min(measured)
            step = k[3] / r
            per_image, work0 = (step - min(STEP_S.get(k[0], 0.001), 0.9 * step)) / k[3], work_per_image(k[0], k[2])
        else:
            per_image, work0 = default, work_per_image(key[0], None if key[0] == "mlp" else key[2])
        seconds_per_mac = TRAIN_FLOPS_PER_MAC / (matmul_flops() * TRAIN_EFFICIENCY)
        overhead = max(0.0, per_image - work0 * seconds_per_mac)
        return overhead + work * seconds_per_mac

    def _load(self, config: TrainConfig) -> float:
        """Wall seconds per estimated second now: as measured on this kind of network, scaled by how much busier
        (or quieter) the machine is now than it was then."""
        measured = self.load.get(config.kind)
        return 1.0 if measured is None else measured[0] * busy() / measured[1]

    def fixed_seconds(self, config: TrainConfig, loaded: bool = True) -> float:
        """The part of a run's estimate that is paid once, however many epochs: its start and its save (the
        weights written and checksummed: a wide MLP's are hundreds of MB)."""
        work = work_per_image(*speed_key(config)[:3:2]) or 0.0  # about one weight per multiply-add
        return (self.start_s + SAVE_S + 4 * work / SAVE_BYTES_PER_S) * (self._load(config) if loaded else 1.0)

    def over_limit(self, config: TrainConfig, n_images: int, limit_s: float | None) -> OverLimit | None:
        """Why a run of ``config`` would be refused for its cost (its estimate as if nothing else ran), or None when
        within ``limit_s`` (None: no limit)."""
        seconds = self.seconds(config, n_images, loaded=False)
        if limit_s is None or seconds <= limit_s:
            return None
        options = []
        fixed = self.fixed_seconds(config, loaded=False)
        fit_epochs = int((limit_s - fixed) // ((seconds - fixed) / config.epochs))
        if fit_epochs >= 1:
            options.append(f"at most {fit_epochs} epoch(s)")
        for batch in (64, 128, 256, 512):  # the first larger batch that fits, and in how many epochs
            if batch > config.batch_size:
                one = self.seconds(config.with_(batch_size=batch, epochs=1), n_images, loaded=False)
                n = int((limit_s - fixed) // (one - fixed))
                if n >= 1:
                    options.append(f"a batch size of {batch}" + ("" if n >= config.epochs else
                                                                  f" with at most {n} epoch(s)"))
                    break
        if not options:
            options.append("fewer training images")
        return OverLimit(seconds, limit_s, tuple(options))
