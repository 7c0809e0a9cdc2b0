"""How a model copes with digits unlike its training set: rotated, shifted, noisy, or with thicker strokes.

Each perturbation works on uint8 images [N, 28, 28] and is plain PyTorch; ``robustness`` gives a model's accuracy
at each level of each, on the same fixed test images for every model so the curves compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import MNIST
from .metrics import Progress, no_progress, task_test_set
from .models import TrainConfig
from .train import predict_proba


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate uint8 images [N, 28, 28] about their centre (counter-clockwise), bilinear, paper outside."""
    if degrees == 0:
        return images.clone()
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    x = images.float().unsqueeze(1)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1).round().clamp(0, 255).to(torch.uint8)


def shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Move uint8 images ``pixels`` to the right and ``pixels`` down; what falls off the edge is lost."""
    p = int(pixels)
    if p == 0:
        return images.clone()
    padded = F.pad(images, (p, 0, p, 0))  # left and top
    return padded[:, :28, :28].contiguous()


def add_noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Gaussian noise with ``std`` on the 0..255 scale, the same noise for the same seed."""
    if std == 0:
        return images.clone()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen) * std
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def thicken(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate strokes by ``pixels`` on every side: each pixel takes the max of its neighbourhood (max-pool)."""
    p = int(pixels)
    if p == 0:
        return images.clone()
    x = images.float().unsqueeze(1)
    out = F.max_pool2d(x, kernel_size=2 * p + 1, stride=1, padding=p)
    return out.squeeze(1).to(torch.uint8)


# name: (what the level means, levels, function)
PERTURBATIONS: dict[str, tuple[str, list[float], Callable[[torch.Tensor, float], torch.Tensor]]] = {
    "rotation": ("rotated by (degrees)", [0, 10, 20, 30, 45, 60, 90], rotate),
    "shift": ("shifted right and down by (pixels)", [0, 1, 2, 3, 4, 5, 6], shift),
    "noise": ("gaussian noise, std on 0..255", [0, 25, 50, 75, 100, 150, 200], add_noise),
    "thickening": ("strokes thickened by (pixels)", [0, 1, 2, 3], thicken),
}


AXIS_TITLES = {kind: meaning for kind, (meaning, _, _) in PERTURBATIONS.items()}


def perturb(images: torch.Tensor, kind: str, level: float) -> torch.Tensor:
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}: use one of {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[kind][2](images, level)


def perturbation_examples(image: torch.Tensor) -> tuple[list[torch.Tensor], list[str]]:
    """One uint8 image as it is, then changed a little and then more by each perturbation, with titles."""
    images, titles = [image], ["original"]
    for kind, (_, levels, _) in PERTURBATIONS.items():
        for level in levels[1:4]:
            images.append(perturb(image[None], kind, level)[0])
            titles.append(f"{kind} {level:g}")
    return images, titles


def subsample(n_total: int, n: int, seed: int = 0) -> torch.Tensor:
    """A fixed random choice of ``n`` rows (sorted), the same for every model so curves compare."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def robustness(
    model: nn.Module, config: TrainConfig, data: MNIST, n: int = 1000, progress: Progress = no_progress
) -> dict[str, list[tuple[float, float]]]:
    """Accuracy at each level of each perturbation, on the same ``n`` test images of the task."""
    index, targets, _ = task_test_set(data, config)
    rows = subsample(len(index), n)
    images, targets = data.test_images[index[rows]], targets[rows]
    steps = sum(len(levels) for _, levels, _ in PERTURBATIONS.values())
    done = 0
    out: dict[str, list[tuple[float, float]]] = {}
    for kind, (_, levels, fn) in PERTURBATIONS.items():
        out[kind] = []
        for level in levels:
            progress(done / steps, f"{kind} {level:g}")
            probs = predict_proba(model, config, fn(images, level))
            out[kind].append((float(level), float((probs.argmax(dim=1) == targets).float().mean())))
            done += 1
    progress(1.0, "done")
    return out
