"""A task's images and how fit() gathers them into batches: the data side of training, beside the loop in train.py.

- task_data() picks a config's images (all ten classes or a pair, every hold_out_every-th training image kept out,
  a seeded subset) and task_size() counts them from the labels alone;
- model_inputs() converts the training images to the model's float inputs once per run, and batches() gathers
  shuffled blocks of 16,384 from them, each into the same memory (block_rows): no per-image PIL work, no DataLoader
  over single images, no conversion per batch (an augmented run converts, and augments, 2,048 at a time);
- the augmentations: augment (turn, scale, shift: digits) and mirror_shift (clothes, refused on MNIST).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import MNIST, NORMALISATIONS, to_float


def task_data(data: MNIST, config: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8) and targets for the config's task: all ten classes, or two (e.g. 3s as 1 against 7s as 0).
    ``split`` "train" leaves out the held-out training images; "held_out" is those images alone."""
    images, labels = data.split("train" if split == "held_out" else split)
    keep = None  # the rows kept, picked on the labels alone: the images are copied once, at the end (a mask per
    # step copied the 54,000 training images whole first, 42 MB for each pair-task visit)
    if split == "held_out" or (split == "train" and config.hold_out_every):
        keep = held_out_rows(len(labels), config) == (split == "held_out")
    if config.pair:
        in_pair = (labels == config.pair[0]) | (labels == config.pair[1])
        keep = in_pair if keep is None else keep & in_pair
    rows = keep.nonzero().squeeze(1) if keep is not None else None
    n = len(labels) if rows is None else len(rows)
    if split == "train" and config.train_limit and config.train_limit < n:
        gen = torch.Generator().manual_seed(config.seed)
        pick = torch.randperm(n, generator=gen)[: config.train_limit].sort().values
        rows = pick if rows is None else rows[pick]
    if rows is not None:
        images, labels = images[rows], labels[rows]
    if config.pair:
        labels = (labels == config.pair[0]).float().unsqueeze(1)
    return images, labels


def held_out_rows(n: int, config: TrainConfig) -> torch.Tensor:
    """True for the training images no run trains on (every hold_out_every-th): a model's confidence is
    calibrated on them, images it has never seen, without touching the test set."""
    return torch.arange(n) % config.hold_out_every == 0 if config.hold_out_every else torch.zeros(n, dtype=torch.bool)


def task_size(data: MNIST, config: TrainConfig, split: str = "train") -> int:
    """How many images task_data would give, counted from the labels alone (no image is copied). Pages ask on
    every rerun (a run's cost, the Epochs bound), so each split's class counts are counted once."""
    counts = _class_counts(data, split, config.hold_out_every if split in ("train", "held_out") else 0)
    n = counts[config.pair[0]] + counts[config.pair[1]] if config.pair else sum(counts)
    return min(n, config.train_limit) if split == "train" and config.train_limit else n


_COUNTS: dict[tuple, list[int]] = {}


def _class_counts(data: MNIST, split: str, every: int) -> list[int]:
    key = (data.fingerprint(), split, every)
    if key not in _COUNTS:
        labels = data.split("train" if split == "held_out" else split)[1]
        if split == "held_out" or every:
            labels = labels[held_out_rows(len(labels), TrainConfig(hold_out_every=every)) == (split == "held_out")]
        _COUNTS[key] = torch.bincount(labels.long(), minlength=len(data.classes)).tolist()
    return _COUNTS[key]


def prepare(images: torch.Tensor, config: TrainConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [N, 28, 28] -> the float input the config's model expects."""
    x = to_float(images.to(device), config.norm)
    return x.unsqueeze(1) if config.kind == "cnn" else x.reshape(len(x), -1)


def augment(x01: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light per-image augmentation on 0..1 images [N, 1, 28, 28]: rotate up to 10 degrees, scale 0.9-1.1,
    shift 2 px."""
    n = len(x01)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 / 14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.to(x01.device)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, align_corners=False, padding_mode="zeros")


def mirror_shift(x01: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Clothes' augmentation on 0..1 images [N, 1, 28, 28]: half of them mirrored left-right (a mirrored shoe is
    still a shoe; a mirrored 3 is no digit, so never on MNIST), each moved by up to 2 whole pixels."""
    n = len(x01)
    mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = torch.randint(-2, 3, (n, 2), generator=gen) / 14  # whole pixels: 1 px is 2/28 of the [-1, 1] grid
    zero, one = torch.zeros(n), torch.ones(n)
    theta = torch.stack([torch.stack([mirror, zero, shift[:, 0]], 1), torch.stack([zero, one, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x01.device), list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, align_corners=False, padding_mode="zeros")


AUGMENTERS = {"affine": augment, "mirror": mirror_shift}  # config.augment_kind -> its helper (models.AUGMENTATIONS)



# ---------------------------------------------------------------- blocks and batches


def model_inputs(images: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The training images as the model takes them (float, normalised), made once per run, not once per batch:
    converting 64 images costs a tenth of an MLP step on them. An augmented run keeps its uint8 images, since
    each block is augmented afresh."""
    return images if config.augment else prepare(images, config)


BLOCK_IMAGES = 16384  # ready floats gathered in one go (51 MB of 28x28 images): each gather pushes the model out of
# the CPU's cache, so fewer, larger gathers make faster steps (the MLP's: 1.5% over 4,096, 3.3% over 2,048)
CONVERT_IMAGES = 2048  # uint8 images gathered, converted and augmented at a time: small working memory


def block_rows(inputs: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The memory batches() gathers each block into, refilled block after block: fresh memory costs the first touch of
    every page (16,384 MNIST floats: 18 ms into fresh memory, 3.7 ms into touched), 6% of an MLP step if every block
    had its own."""
    block = max(1, (CONVERT_IMAGES if inputs.dtype == torch.uint8 else BLOCK_IMAGES) // config.batch_size)
    return torch.empty((min(block * config.batch_size, len(inputs)), *inputs.shape[1:]), dtype=inputs.dtype)


def batches(inputs: torch.Tensor, targets: torch.Tensor, config: TrainConfig, gen: torch.Generator,
            device: torch.device, rows: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled (inputs, targets) batches, the last one possibly smaller.

    A block of rows is gathered at a time, then sliced into batches: BLOCK_IMAGES of model_inputs' floats, or
    CONVERT_IMAGES of uint8 images (an augmented run, the learning-rate finder's hundred batches), converted a
    block at a time. Each block is gathered into ``rows`` (block_rows'), so a batch is good until the next block.
    """
    bs = config.batch_size
    order = torch.randperm(len(inputs), generator=gen)
    rows = block_rows(inputs, config) if rows is None else rows
    block = len(rows)
    for start in range(0, len(order), block):
        idx = order[start : start + block]
        x = block_inputs(torch.index_select(inputs, 0, idx, out=rows[: len(idx)]), config, gen, device)
        y = targets.index_select(0, idx).to(device)
        yield from zip(x.split(bs), y.split(bs))


def block_inputs(x: torch.Tensor, config: TrainConfig, gen: torch.Generator, device: torch.device):
    """A block of inputs as the model trains on them, in the run's memory layout: model_inputs' floats as they are,
    uint8 images converted (augmented if asked)."""
    if x.dtype != torch.uint8:
        x = x.to(device)
    elif not config.augment:
        x = prepare(x, config, device)
    else:  # augment on 0..1 (the border stays background), then normalise
        x = AUGMENTERS[config.augment_kind](to_float(x.to(device)).unsqueeze(1), gen)
        mean, std = NORMALISATIONS[config.norm]
        x = (x - mean) / std
        if config.kind != "cnn":
            x = x.reshape(len(x), -1)
    if uses_channels_last(config, device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def uses_channels_last(config: TrainConfig, device: torch.device) -> bool:
    # oneDNN's CPU convolutions are fastest on channels-last (NHWC) tensors: same arithmetic, less reshuffling
    return config.kind == "cnn" and device.type == "cpu"
