"""The model zoo, named as the seeds name things so a student can put tutorial and code side by side.

Every model is an ``nn.Module`` (so one store, one evaluator and one sketch pad serve them all),
but the from-scratch forms hold plain parameter tensors and compute with ``@`` and ``.max``,
exactly as the tutorials write them before they reach for ``nn.Linear``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import CNN_ARCHS, FIELDS, TrainConfig, describe
from .config import MAX_HIDDEN_LAYERS as MAX_HIDDEN_LAYERS  # the stages import the MLP's limits from here
from .config import MAX_LAYER_UNITS as MAX_LAYER_UNITS

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
assert set(ACTIVATIONS) == set(FIELDS["activations"].choices), "the schema names every activation built here"


# ---------------------------------------------------------------- the from-scratch forms


def init_params(size, std: float = 1.0, generator: torch.Generator | None = None) -> nn.Parameter:
    """The seed's init_params: random numbers with a chosen spread, gradients on (drawn from ``generator``)."""
    return nn.Parameter(torch.randn(size, generator=generator) * std)


class Linear1(nn.Module):
    """linear1(xb) = xb @ weights + bias -- one weight per pixel and a bias."""

    def __init__(self, n_out: int = 1, std: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        self.weights = init_params((28 * 28, n_out), std, generator)
        self.bias = init_params(n_out, std, generator)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.reshape(xb.shape[0], -1) @ self.weights + self.bias  # one row of 784 pixels per image


class SimpleNetScratch(nn.Module):
    """simple_net by hand: res = xb@w1 + b1; res = res.max(tensor(0.0)); res@w2 + b2."""

    def __init__(self, n_hidden: int = 50, n_out: int = 10, std: float | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        # Scaled like nn.Linear's default so lr 0.1 works as it does for the nn form.
        s1 = std if std is not None else (1 / 28)
        s2 = std if std is not None else n_hidden**-0.5
        self.w1, self.b1 = init_params((28 * 28, n_hidden), s1, generator), init_params(n_hidden, s1, generator)
        self.w2, self.b2 = init_params((n_hidden, n_out), s2, generator), init_params(n_out, s2, generator)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        res = xb.reshape(xb.shape[0], -1) @ self.w1 + self.b1
        res = res.max(torch.tensor(0.0))
        return res @ self.w2 + self.b2


# ---------------------------------------------------------------- the nn forms


def simple_net(hidden=(50,), activations=("relu",), n_out: int = 10, log_softmax: bool = False) -> nn.Sequential:
    """784 -> hidden... -> n_out as nn.Sequential; the seeds' 784-50-10 and 784-128-64-10."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for i, h in enumerate(hidden):
        act = activations[i] if i < len(activations) else activations[-1]
        layers += [nn.Linear(width, h), ACTIVATIONS[act]()]
        width = h
    layers.append(nn.Linear(width, n_out))
    if log_softmax:
        layers.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*layers)


class DigitCNN(nn.Module):
    """The seed's CNN: two conv/ReLU/pool blocks (64 maps of 5x5 at the end), then two linear layers.

    ``batch_norm`` adds BatchNorm after each convolution. ``pool_first`` max-pools straight after the
    convolution, so BatchNorm and ReLU work on a quarter of the values: ReLU and max-pooling commute,
    so only BatchNorm's place changes, and an epoch runs about a third faster. ``convs_per_block=2`` looks twice
    before each pooling (for Fashion-MNIST's finer details: 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4), and ``hidden``
    sets the width of the layer between the two linear ones.
    """

    def __init__(self, batch_norm: bool = False, dropout: float = 0.0, pool_first: bool = False,
                 hidden: int = 64, convs_per_block: int = 1):
        super().__init__()

        def conv(c_in, c_out):
            return nn.Conv2d(c_in, c_out, kernel_size=3, bias=not batch_norm)

        def norm(c):
            return [nn.BatchNorm2d(c)] if batch_norm else []

        def block(c_in, c_out):
            if pool_first:
                return [conv(c_in, c_out), nn.MaxPool2d(2), *norm(c_out), nn.ReLU()]
            layers = [conv(c_in, c_out), *norm(c_out), nn.ReLU()]
            for _ in range(convs_per_block - 1):  # a second look before pooling: 28 -> 26 -> 24 -> 12
                layers += [conv(c_out, c_out), *norm(c_out), nn.ReLU()]
            return [*layers, nn.MaxPool2d(2)]

        side = ((28 - 2 * convs_per_block) // 2 - 2 * convs_per_block) // 2  # each 3x3 takes 2, each pool halves
        self.conv_layers = nn.Sequential(*block(1, 32), *block(32, 64))
        self.fc_layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, hidden),
            nn.ReLU(),
            *([nn.Dropout(dropout)] if dropout else []),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.conv_layers(x)
        return self.fc_layers(x)


def build_model(config: TrainConfig) -> nn.Module:
    """A fresh, randomly initialised model for ``config``, its numbers drawn from a generator seeded by the
    config: the same config gives the same weights, whatever else in the process draws random numbers."""
    gen = torch.Generator().manual_seed(config.seed)
    n_out = config.n_outputs
    if config.form == "scratch" and config.kind == "linear":
        return Linear1(n_out, config.init_std, generator=gen)
    if config.form == "scratch" and config.kind == "mlp":
        return SimpleNetScratch(config.hidden[0] if config.hidden else 50, n_out, generator=gen)
    # nn layers draw a start from the global generator as they are made: drawn from a fork of it, which is put back
    # after, and overwritten below (made on the meta device instead, to_empty() would import torch's symbolic-shape
    # machinery, 36 MB, into the web server)
    with torch.random.fork_rng(devices=[]):
        model = nn_layers(config, n_out)
    return initialise(model, gen)


def nn_layers(config: TrainConfig, n_out: int) -> nn.Module:
    """The nn form's layers for ``config`` (built under torch.device("meta") by callers that want shapes only)."""
    if config.kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, n_out))
    if config.kind == "mlp":
        return simple_net(config.hidden, config.activations, n_out, log_softmax=config.loss == "nll")
    if config.kind == "cnn":
        if config.arch not in CNN_ARCHS:
            raise ValueError(f"unknown CNN architecture {config.arch!r}")
        return DigitCNN(**CNN_ARCHS[config.arch][1])
    raise ValueError(f"unknown model kind {config.kind!r}")


def initialise(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """PyTorch's own default initialisation, drawn from ``gen``, layer by layer in order.

    nn.Linear and nn.Conv2d: weights kaiming_uniform_(a=sqrt(5)), biases uniform in +-1/sqrt(fan_in);
    BatchNorm: weight 1, bias 0, fresh running statistics. Seeded alike, the numbers equal PyTorch's.
    """
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                bound = 1 / math.sqrt(m.weight[0].numel())  # fan_in: inputs (times kernel size) per output
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class LayerTrace:
    """One leaf layer as one image went through it."""

    name: str
    module: nn.Module
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]


def trace_layers(model: nn.Module, input_shape=(1, 1, 28, 28)) -> list[LayerTrace]:
    """Run one blank image through ``model`` and record every leaf layer's input and output shape, in order."""
    seen: list[LayerTrace] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0 and name:

            def hook(mod, inp, out, name=name):
                seen.append(LayerTrace(name, mod, tuple(inp[0].shape), tuple(out.shape)))

            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


def layer_row(t: LayerTrace) -> dict:
    return {
        "layer": t.name,
        "type": type(t.module).__name__,
        "output shape": "x".join(str(s) for s in t.shape_out[1:]),
        "parameters": sum(p.numel() for p in t.module.parameters()),
    }


def layer_table(model: nn.Module, input_shape=(1, 1, 28, 28)) -> list[dict]:
    """Each leaf layer, its output shape for one image and its parameter count, measured by running it."""
    return [layer_row(t) for t in trace_layers(model, input_shape)]


def preset_changes(config: TrainConfig) -> list[str]:
    """What a run changed from its preset, in a few words each (all the main settings for a custom run)."""
    base = preset_for(config.preset, config.dataset) if config.preset in PRESETS else None
    if base is None:
        return [f"lr {config.lr:g}", f"batch {config.batch_size}", f"{config.epochs} ep"]
    words = {
        "lr": f"lr {config.lr:g}", "batch_size": f"batch {config.batch_size}", "epochs": f"{config.epochs} ep",
        "optimizer": config.optimizer, "schedule": f"{config.schedule} lr", "momentum": f"momentum {config.momentum:g}",
        "weight_decay": f"wd {config.weight_decay:g}", "norm": f"inputs {config.norm}",
        "init_std": f"init std {config.init_std:g}", "augment": "augmented" if config.augment else "no augmentation",
        "label_smoothing": f"smoothing {config.label_smoothing:g}", "seed": f"seed {config.seed}",
        "train_limit": f"{config.train_limit:,} images" if config.train_limit else "all images",
        "loss": f"{config.loss} loss",
    }
    return [w for f, w in words.items() if getattr(config, f) != getattr(base, f)]


def trained_when(created: str) -> str:
    """'25 Nov 14:32' from the store's ISO time; '' when unknown."""
    try:
        return dt.datetime.fromisoformat(created).strftime("%d %b %H:%M").lstrip("0")
    except (TypeError, ValueError):
        return ""


# ---------------------------------------------------------------- presets

PRESETS: dict[str, TrainConfig] = {
    # 3 vs 7, the seed's way: weights with std 1, plain SGD at lr 1, batch 256, 20 epochs.
    "linear-seed": TrainConfig(
        kind="linear", preset="linear-seed", task="3v7", form="scratch", init_std=1.0,
        optimizer="sgd", lr=1.0, batch_size=256, epochs=20, loss="mnist_loss",
    ),
    # The same model from small initial weights: sigmoids start unsaturated, so gradients flow.
    "linear-better": TrainConfig(
        kind="linear", preset="linear-better", task="3v7", form="scratch", init_std=0.01,
        optimizer="sgd", lr=1.0, batch_size=256, epochs=20, loss="mnist_loss",
    ),
    # fastai lesson 4: 784-50-10, SGD lr 0.1, batch 256.
    "simple_net": TrainConfig(
        kind="mlp", preset="simple_net", hidden=(50,), activations=("relu",), optimizer="sgd",
        lr=0.1, batch_size=256, epochs=40, loss="cross_entropy",
    ),
    # The PyTorch MLP tutorial: 784-128-64-10, ReLU then Tanh, LogSoftmax + NLLLoss, SGD momentum 0.9,
    # with one change: inputs standardised with MNIST's own mean and std, where the tutorial's
    # Normalize((0.5,), (0.5,)) leaves the background at -1. Same net, same steps: 98.2% instead of 97.2%.
    "mlp-128-64": TrainConfig(
        kind="mlp", preset="mlp-128-64", hidden=(128, 64), activations=("relu", "tanh"),
        optimizer="momentum", lr=0.01, momentum=0.9, batch_size=64, epochs=15, loss="nll", norm="mnist",
    ),
    # The DigitCNN tutorial exactly: Adam 1e-3, batch 64, 5 epochs, Normalize((0.5,), (0.5,)).
    "cnn-seed": TrainConfig(
        kind="cnn", preset="cnn-seed", arch="digitcnn", optimizer="adam", lr=1e-3,
        batch_size=64, epochs=5, loss="cross_entropy", norm="half",
    ),
    # Going further: batch norm, a one-cycle schedule and label smoothing reach 99% in one epoch.
    "cnn-fast": TrainConfig(
        kind="cnn", preset="cnn-fast", arch="digitcnn_fast", optimizer="adam", lr=5e-3,
        schedule="onecycle", batch_size=128, epochs=1, loss="cross_entropy", norm="mnist",
        label_smoothing=0.1,
    ),
    # The best: also light augmentation (small shifts, rotations), label smoothing, more epochs.
    "cnn-best": TrainConfig(
        kind="cnn", preset="cnn-best", arch="digitcnn_bn", optimizer="adam", lr=3e-3,
        schedule="onecycle", batch_size=128, epochs=12, loss="cross_entropy", norm="mnist",
        augment=True, label_smoothing=0.05, weight_decay=1e-4,
    ),
}

# Where a preset's recipe differs on another dataset (the stored config records what ran; bench/bench_fashion.py).
# On Fashion-MNIST both CNN recipes take the deeper DigitCNN (two convolutions a block), where MNIST's networks stop
# near 89.8% (cnn-fast's one epoch) and 91.3% (cnn-best's twelve). cnn-fast also takes more, smaller steps (batch 64,
# lr 8e-3); cnn-best trains on clothes mirrored left-right and shifted by up to 2 pixels (a mirrored shirt is still a
# shirt; a mirrored digit is no digit), for 15 epochs.
DATASET_RECIPES: dict[str, dict[str, dict]] = {
    "fashion": {
        "cnn-fast": {"arch": "digitcnn_deep", "batch_size": 64, "lr": 8e-3},
        "cnn-best": {"arch": "digitcnn_deep", "augment_kind": "mirror", "epochs": 15},
    },
}


def preset_for(name: str, dataset: str = "mnist") -> TrainConfig:
    """A preset as it runs on ``dataset``: its recipe, with that dataset's changes, and the dataset recorded."""
    return PRESETS[name].with_(dataset=dataset, **DATASET_RECIPES.get(dataset, {}).get(name, {}))


PRESET_HELP = {
    "linear-seed": "The tutorial's own run: weights drawn with std 1, lr 1, 20 epochs.",
    "linear-better": "Same model, small initial weights: the sigmoid starts unsaturated.",
    "simple_net": "fastai lesson 4: 784-50-10 with ReLU, SGD lr 0.1, batch 256.",
    "mlp-128-64": "PyTorch tutorial: 784-128-64-10, ReLU/Tanh, NLLLoss, SGD momentum 0.9; inputs scaled to mean 0, std 1.",
    "cnn-seed": "The DigitCNN tutorial: Adam 1e-3, batch 64, 5 epochs.",
    "cnn-fast": "BatchNorm, one-cycle learning rate, label smoothing: 99% in one epoch (90% on Fashion-MNIST).",
    "cnn-best": "BatchNorm, one-cycle, light augmentation (digits turned, clothes mirrored), 12-15 epochs: the best.",
}


@dataclass
class ModelInfo:
    """What the pages need to know about a trained model, whether fresh or from the store."""

    id: str
    config: TrainConfig
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    created: str = ""
    train_seconds: float = 0.0
    fingerprint: str = ""
    parameters: int = 0
    name: str = ""  # the teacher's name for it (store.rename), if any
    continued_from: str = ""  # the stored model this run went on training ("One more epoch")

    @property
    def accuracy(self) -> float | None:
        """The test accuracy training recorded; None where there is none."""
        acc = self.metrics.get("test_accuracy")
        return float(acc) if isinstance(acc, int | float) and acc == acc else None

    @property
    def broken(self) -> bool:
        """Below 50% (or never scored): pages never show it by default, and mark it where it is listed."""
        return self.accuracy is None or self.accuracy < BROKEN_BELOW

    @property
    def title(self) -> str:
        """A short title that tells it apart: the architecture, the preset and what differs from it, when trained."""
        recipe = ", ".join([self.config.preset, *preset_changes(self.config)])
        more = f"continued from {self.continued_from}" if self.continued_from else ""
        return " · ".join(p for p in (self.name, describe(self.config), recipe, more, trained_when(self.created)) if p)


BROKEN_BELOW = 0.5  # a model below this test accuracy is not worth a student's attention by default
