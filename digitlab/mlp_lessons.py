"""The MLP stage's teaching steps, as plain functions the page calls: hidden sizes from a text box, the layer
table, the same network by hand and with nn, the chain rule against autograd, a few test images classified.

Each runs the real thing on the real data (simple_net, the tutorial's MLP); nothing here imports streamlit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from .backprop import simple_net_gradients
from .data import MNIST, to_float
from .models import (
    MAX_HIDDEN_LAYERS,
    MAX_LAYER_UNITS,
    SimpleNetScratch,
    TrainConfig,
    build_model,
    count_parameters,
    layer_table,
)
from .store import skeleton
from .train import (
    ConfigError,
    check_config,
    loss_function,
    predict_proba,
    prepare,
    task_size,
)

# How the MLP page names each input scaling of data.NORMALISATIONS.
NORM_LABELS = {
    "none": "0..1 (ToTensor only)",
    "half": "-1..1 (Normalize 0.5, 0.5)",
    "mnist": "mean 0, std 1 (MNIST's 0.1307, 0.3081)",
}


def parse_hidden(text: str) -> tuple[int, ...]:
    """'128, 64' -> (128, 64): hidden layer sizes from a text box, with a message a student can act on."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise ConfigError("Give at least one hidden layer size, for example 50 or 128, 64.")
    sizes = []
    for p in parts:
        if not p.isdecimal() or int(p) < 1:
            raise ConfigError(f"{p!r} is not a layer size: use whole numbers of at least 1, separated by commas.")
        sizes.append(int(p))
    if len(sizes) > MAX_HIDDEN_LAYERS:
        raise ConfigError(f"{len(sizes)} hidden layers is more than this stage allows ({MAX_HIDDEN_LAYERS}).")
    if max(sizes) > MAX_LAYER_UNITS:
        raise ConfigError(f"A layer of {max(sizes)} units is more than this stage allows ({MAX_LAYER_UNITS}).")
    return tuple(sizes)


@functools.lru_cache(maxsize=64)
def layer_rows(config: TrainConfig) -> tuple[list[dict], int]:
    """The network the config builds, layer by layer with output shapes and parameter counts, and the total.

    Computed once per config and shared by every visitor: treat the rows as read-only. The network is built as a
    skeleton (store.skeleton: on PyTorch's meta device, shapes and no numbers), so the widest MLP a student may ask
    for (6 x 4096 units, 350 MB of weights) costs the web process nothing (issue 29: four sessions asking, +1.14 GB).
    """
    if config.kind == "cnn":  # a preset's few thousand weights: measured by running one image through it
        model = build_model(config)
        return layer_table(model, (1, 1, 28, 28)), count_parameters(model)
    model = skeleton(config)
    if isinstance(model, SimpleNetScratch):  # plain tensors, no layers to walk: one row per line of forward()
        h, n_out = model.w1.shape[1], model.w2.shape[1]
        rows = [
            {"layer": "res = xb@w1 + b1", "type": "by hand", "output shape": str(h), "parameters": 784 * h + h},
            {"layer": "res = res.max(tensor(0.0))", "type": "by hand (ReLU)", "output shape": str(h), "parameters": 0},
            {"layer": "res@w2 + b2", "type": "by hand", "output shape": str(n_out), "parameters": h * n_out + n_out},
        ]
        return rows, count_parameters(model)
    rows, width = [], 28 * 28  # a chain of layers: each Linear sets the width, the rest keep it (a forward pass on
    for name, module in model.named_modules():  # the meta device would import PyTorch's compiler into the server)
        if name and not list(module.children()):
            width = module.out_features if isinstance(module, nn.Linear) else width
            rows.append({"layer": name, "type": type(module).__name__, "output shape": str(width),
                         "parameters": sum(p.numel() for p in module.parameters())})
    return rows, count_parameters(model)


def by_hand(config: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """simple_net written by hand has one hidden ReLU layer, plain SGD and cross-entropy: the config adjusted to
    that, and what was changed, in words (nothing for a config that already fits)."""
    changed = []
    if len(config.hidden) != 1:
        changed.append(f"one hidden layer of {config.hidden[0]} (not {'-'.join(map(str, config.hidden))})")
    if config.activations[:1] != ("relu",) or len(config.activations) != 1:
        changed.append("ReLU, res.max(tensor(0.0))")
    if config.optimizer != "sgd":
        changed.append(f"plain SGD (not {config.optimizer})")
    if config.loss != "cross_entropy":
        changed.append("cross-entropy loss")
    adjusted = config.with_(form="scratch", hidden=config.hidden[:1], activations=("relu",), optimizer="sgd",
                            loss="cross_entropy")
    return adjusted, changed


def check_training(config: TrainConfig, data: MNIST) -> int:
    """Check a config against the data it would train on; the number of training images, or ConfigError."""
    n_train = task_size(data, config)
    check_config(config, n_train)
    return n_train


@dataclass(frozen=True)
class Equivalence:
    scratch_out: torch.Tensor  # [N, 10]
    nn_out: torch.Tensor
    max_abs_diff: float
    same_predictions: bool
    scratch_params: int
    nn_params: int


@functools.lru_cache(maxsize=8)
def scratch_vs_nn(data: MNIST, n_hidden: int = 50, n_images: int = 5, seed: int = 42) -> Equivalence:
    """simple_net by hand (w1, b1, w2, b2, res.max(0)) and as nn.Sequential, with the same numbers copied in.

    nn.Linear keeps its weight as [out, in] and computes x @ W.T + b, so w1 goes in transposed.
    (Computed once per input and shared by every visitor.)
    """
    scratch = SimpleNetScratch(n_hidden, 10, generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng(devices=[]):  # its own start is overwritten below (as models.build_model does)
        seq = nn.Sequential(nn.Linear(28 * 28, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 10))
    with torch.no_grad():
        seq[0].weight.copy_(scratch.w1.T)
        seq[0].bias.copy_(scratch.b1)
        seq[2].weight.copy_(scratch.w2.T)
        seq[2].bias.copy_(scratch.b2)
        xb = to_float(data.test_images[:n_images]).reshape(n_images, -1)
        a, b = scratch(xb), seq(xb)
    return Equivalence(a, b, float((a - b).abs().max()), bool((a.argmax(1) == b.argmax(1)).all()),
                       count_parameters(scratch), count_parameters(seq))


@dataclass(frozen=True)
class ChainRuleCheck:
    loss: float  # one batch's cross-entropy, by the chain rule written out
    autograd_loss: float  # the same, by F.cross_entropy
    largest_difference: dict  # parameter name: largest |chain rule - autograd| over its gradient


@functools.lru_cache(maxsize=8)
def chain_rule_vs_autograd(data: MNIST, batch_size: int = 64, seed: int = 42) -> ChainRuleCheck:
    """One batch of training digits through simple_net by hand: backprop.py's gradients beside loss.backward()'s."""
    config = TrainConfig(kind="mlp", form="scratch", seed=seed)
    model = SimpleNetScratch(50, 10, generator=torch.Generator().manual_seed(seed))
    xb, yb = prepare(data.train_images[:batch_size], config), data.train_labels[:batch_size]
    loss = loss_function(config)(model(xb), yb)
    loss.backward()
    by_hand, grads = simple_net_gradients(model, xb, yb)
    diffs = {name: float((grads[name] - p.grad).abs().max()) for name, p in model.named_parameters()}
    return ChainRuleCheck(float(by_hand), float(loss.detach()), diffs)


@dataclass(frozen=True)
class ClassifyView:
    images: torch.Tensor  # uint8 [n, 28, 28]
    labels: list[int]
    probs: torch.Tensor  # [n, classes]
    class_names: list[str]


def classify_view(model: nn.Module, config: TrainConfig, data: MNIST, n: int = 4, seed: int = 0) -> ClassifyView:
    """The seed's classify(): a few random test images with the model's probability for each class."""
    images, labels = data.split("test")
    if config.pair:
        keep = (labels == config.pair[0]) | (labels == config.pair[1])
        images, labels = images[keep], labels[keep]
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:n]
    probs = predict_proba(model, config, images[idx])
    return ClassifyView(images[idx], [int(v) for v in labels[idx]], probs, list(config.classes))
