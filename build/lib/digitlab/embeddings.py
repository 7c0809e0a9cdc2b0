"""2-D maps of what each layer of a model sees: a forward hook catches a layer's output, PCA or t-SNE flattens it."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import MNIST
from .metrics import task_test_set
from .models import SimpleNetScratch, TrainConfig
from .robustness import subsample
from .train import prepare

RAW = "raw pixels"
# The layers worth a map: what each block hands on (activations, pools) and the final output.
_MAPPED = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d, nn.LogSoftmax)


def embedding_layers(model: nn.Module) -> list[str]:
    """What can be mapped: the raw pixels, then each leaf layer's output, in the order they run."""
    names = [RAW]
    if isinstance(model, SimpleNetScratch):
        return [*names, "hidden (relu)", "output"]
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    if not leaves:
        return [*names, "output"]
    mapped = [n for n in leaves[:-1] if isinstance(model.get_submodule(n), _MAPPED)]
    return [*names, *mapped, leaves[-1]]


def layer_label(model: nn.Module, name: str) -> str:
    if name in (RAW, "output", "hidden (relu)"):
        return name
    return f"{name} · {type(model.get_submodule(name)).__name__}"


@torch.inference_mode()
def layer_features(
    model: nn.Module, config: TrainConfig, images: torch.Tensor, layer: str, batch: int = 500
) -> torch.Tensor:
    """What ``layer`` outputs for uint8 ``images``, flattened to [N, features] (a forward hook catches it)."""
    if layer == RAW:
        return images.reshape(len(images), -1).float() / 255
    model.eval()
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    hooked: nn.Module | None = None
    for start in range(0, len(images), batch):
        x = prepare(images[start : start + batch], config, device)
        if layer == "output":
            y = model(x)
        elif layer == "hidden (relu)" and isinstance(model, SimpleNetScratch):
            y = (x.reshape(len(x), -1) @ model.w1 + model.b1).clamp(min=0)
        else:
            if hooked is None:
                # hook a copy: the cached model is shared by every session, and a hook on it would also catch
                # the forward passes other sessions make meanwhile
                hooked = copy.deepcopy(model).eval()
            caught: list[torch.Tensor] = []
            handle = hooked.get_submodule(layer).register_forward_hook(lambda m, i, o, c=caught: c.append(o))
            try:
                hooked(x)
            finally:
                handle.remove()
            y = caught[0]
        out.append(y.reshape(len(y), -1).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


@dataclass(frozen=True)
class Embedding:
    coords: np.ndarray  # [n, 2]
    rows: torch.Tensor  # rows of the task's test set (see task_test_set) that were mapped
    targets: np.ndarray  # [n] class index
    method: str
    layer: str
    dims: int  # features per image in that layer
    explained: float = float("nan")  # PCA: share of the variance the two axes keep


def _pca(x: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """The top ``k`` principal components by randomized SVD (what torch.pca_lowrank does), drawing its random
    start from a generator of its own, so the same features always give the same map."""
    x = x - x.mean(dim=0, keepdim=True)
    k = max(1, min(k, x.shape[0], x.shape[1]))
    q = min(k + 8, x.shape[0], x.shape[1])
    start = torch.randn(x.shape[1], q, generator=torch.Generator().manual_seed(seed))
    basis = torch.linalg.qr(x @ start).Q  # [n, q]: a random slice of the directions x spans
    for _ in range(6):  # power iterations: each pass leans the slice further towards the largest spread
        basis = torch.linalg.qr(x @ (x.T @ basis)).Q
    _, s, vt = torch.linalg.svd(basis.T @ x, full_matrices=False)
    total = float((x**2).sum())
    explained = float((s[:k] ** 2).sum()) / total if total else float("nan")
    return x @ vt[:k].T, explained


def _two_columns(coords: np.ndarray) -> np.ndarray:
    """A layer with one number per image (the 3-vs-7 output) maps to a line: y = 0."""
    if coords.shape[1] < 2:
        coords = np.concatenate([coords, np.zeros((len(coords), 2 - coords.shape[1]))], axis=1)
    return coords.astype(np.float32)


def project(features: torch.Tensor, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, float]:
    """[n, d] -> [n, 2]: PCA (torch.pca_lowrank), or t-SNE (sklearn) on the first 50 principal components."""
    x = features.reshape(len(features), -1).float()
    if method == "pca":
        coords, explained = _pca(x, 2)
        return _two_columns(coords.numpy()), explained
    if method == "tsne":
        from sklearn.manifold import TSNE

        reduced, _ = _pca(x, 50)
        perplexity = float(min(30, max(2, (len(x) - 1) / 3)))
        init = "pca" if reduced.shape[1] >= 2 else "random"  # one number per image (3 vs 7's output)
        tsne = TSNE(n_components=2, perplexity=perplexity, init=init, learning_rate="auto", random_state=seed)
        return tsne.fit_transform(reduced.numpy()).astype(np.float32), float("nan")
    raise ValueError(f"unknown projection {method!r}: use 'pca' or 'tsne'")


def embedding(
    model: nn.Module, config: TrainConfig, data: MNIST, layer: str = RAW, method: str = "pca", n: int = 1500
) -> Embedding:
    """``n`` test images of the task, as ``layer`` sees them, projected to 2-D."""
    index, targets, _ = task_test_set(data, config)
    rows = subsample(len(index), n)
    feats = layer_features(model, config, data.test_images[index[rows]], layer)
    coords, explained = project(feats, method)
    return Embedding(coords, rows, targets[rows].numpy(), method, layer, feats.shape[1], explained)
