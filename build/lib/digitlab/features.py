"""What the weights look for: the core behind the CNN and Features stages.

Plain PyTorch, no streamlit: the feature maps one image makes, the first layer's 784-weight rows
(``simple_net[0]``) and 3x3 filters, and which hidden units fire for a digit. Beside it:
``digitlab.architecture`` (the arithmetic behind each shape), ``digitlab.saliency`` (saliency and Grad-CAM),
``digitlab.untrained`` (the same run before and after training), ``ranking.side_by_side`` (the trained models
side by side) and ``digitlab.ui.notes`` (what the pages say beside these figures).

Layers are found by walking the model (``named_modules``) and by the torch layer types, never
by position or by DigitLab's own classes, so a DigitCNN with batch norm, a deeper MLP or a
reloaded module all work. Gradients are taken with ``torch.autograd.grad``, so a model shared
by every browser session never collects ``.grad`` from a page, and forward hooks go on a private copy
(``_private``), so two sessions looking inside the same cached model never catch each other's layers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .data import DATASETS, to_float
from .models import TrainConfig
from .train import prepare

MAP_LAYERS = (nn.Conv2d, nn.MaxPool2d)  # the layers whose outputs are stacks of 2-D maps worth drawing
ACTIVATION_LAYERS = (nn.ReLU, nn.Tanh, nn.Sigmoid)


def class_names(config: TrainConfig) -> tuple[str, ...]:
    """The answers a model can give: the ten classes, or (no, yes) for a pair model -- ("7", "3") for 3 vs 7 -- as
    predict_proba orders them."""
    return config.classes


def label_name(config: TrainConfig, label: int) -> str:
    """A test label as its dataset names it: 3 -> "3" on MNIST, 6 -> "Shirt" on Fashion-MNIST."""
    return DATASETS[config.dataset].classes[label]


def input_shape(config: TrainConfig) -> tuple[int, ...]:
    """One image as the model takes it: [1, 1, 28, 28] for a CNN, [1, 784] otherwise."""
    return (1, 1, 28, 28) if config.kind == "cnn" else (1, 28 * 28)


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _private(model: nn.Module) -> nn.Module:
    """A copy to hook: the cached model is shared by every session, and a hook on it would also catch other
    sessions' forward passes (and adding hooks while another thread runs the model can fail). A DigitCNN or
    simple_net copies in about a millisecond."""
    return copy.deepcopy(model).eval()


def leaf_layers(model: nn.Module, types: tuple[type, ...] | None = None) -> list[tuple[str, nn.Module]]:
    """The model's leaf layers (of ``types``, if given), found by walking it, in the order they are registered."""
    out = []
    for name, module in model.named_modules():
        if name and not list(module.children()) and (types is None or isinstance(module, types)):
            out.append((name, module))
    return out


# ---------------------------------------------------------------- one image through the network


@dataclass(frozen=True)
class LayerOutput:
    """What one layer handed on for one image: [channels, height, width] maps, or [units]."""

    name: str  # the module's path in the model, e.g. "conv_layers.0"
    kind: str  # its type, e.g. "Conv2d"
    values: torch.Tensor

    @property
    def shape(self) -> str:
        return _size(tuple(self.values.shape))

    @property
    def label(self) -> str:
        return self.name if self.kind == self.name else f"{self.name} · {self.kind}"

    @property
    def is_maps(self) -> bool:
        return self.values.dim() == 3


def _one(image: torch.Tensor) -> torch.Tensor:
    """A uint8 [28, 28] image as a batch of one."""
    if image.shape[-2:] != (28, 28):
        raise ValueError(f"expected a 28x28 image, got {tuple(image.shape)}")
    return image.reshape(1, 28, 28)


@torch.no_grad()
def layer_outputs(
    model: nn.Module, config: TrainConfig, image: torch.Tensor, types: tuple[type, ...] | None = None
) -> list[LayerOutput]:
    """Run one uint8 28x28 image through the model and keep each leaf layer's output (forward hooks), in run order.

    The from-scratch simple_net has no layers to hook: its hidden layer is computed as its forward does.
    """
    model.eval()
    device = next(model.parameters()).device
    x = prepare(_one(image), config, device)
    if config.form == "scratch":
        out = []
        if config.kind == "mlp" and hasattr(model, "w1"):  # SimpleNetScratch: res = xb@w1 + b1; res.max(0)
            res = (x @ model.w1 + model.b1)[0].cpu()
            out.append(LayerOutput("w1, b1", "Linear (by hand)", res))
            out.append(LayerOutput("res.max(0)", "ReLU (by hand)", res.clamp(min=0)))
        out.append(LayerOutput("output", "output", model(x)[0].float().cpu()))
        return out if types is None else [o for o in out if o.kind.split(" ")[0] in {t.__name__ for t in types}]
    model = _private(model)
    caught: list[LayerOutput] = []
    hooks = []
    for name, module in leaf_layers(model, types):

        def hook(mod, inp, res, name=name):
            caught.append(LayerOutput(name, type(mod).__name__, res[0].detach().float().cpu()))

        hooks.append(module.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return caught


def feature_maps(model: nn.Module, config: TrainConfig, image: torch.Tensor) -> list[LayerOutput]:
    """The maps after each convolution and each pooling layer for one image (DigitCNN: 32x26x26 ... 64x5x5)."""
    return layer_outputs(model, config, image, MAP_LAYERS)


def activations(model: nn.Module, config: TrainConfig, image: torch.Tensor) -> list[LayerOutput]:
    """What each layer hands on for one image: every activation (ReLU, Tanh, Sigmoid) and the final output."""
    outs = layer_outputs(model, config, image)
    if not outs:
        return []
    kept = [o for o in outs[:-1] if o.kind.split(" ")[0] in {t.__name__ for t in ACTIVATION_LAYERS}]
    last = outs[-1]
    return [*kept, LayerOutput(last.name, f"{last.kind} (output)" if last.kind != "output" else "output", last.values)]


def paper_value(config: TrainConfig) -> float:
    """What a blank (paper) pixel becomes after the model's normalisation: 0, or -1 for Normalize((0.5,), (0.5,))."""
    return round(float(to_float(torch.zeros(1, 1, dtype=torch.uint8), config.norm)), 3)


# ---------------------------------------------------------------- first-layer weights


def first_layer(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first layer that reads all 784 pixels, as (weights [units, 784], biases [units]); None if there is none.

    That is ``simple_net[0]`` (an ``nn.Linear`` keeps its weight as [out, in]), the by-hand ``w1`` or the
    linear model's ``weights`` (kept as [784, out], so transposed here). A CNN reads 3x3 patches instead.
    """
    for _, module in leaf_layers(model, (nn.Linear,)):
        if module.in_features == 28 * 28:
            bias = module.bias if module.bias is not None else torch.zeros(module.out_features)
            return module.weight.detach().float().cpu(), bias.detach().float().cpu()
        break  # a CNN's first Linear reads maps, not pixels
    params = dict(model.named_parameters())
    for w_name, b_name in (("weights", "bias"), ("w1", "b1")):  # Linear1, SimpleNetScratch
        w = params.get(w_name)
        if w is not None and w.dim() == 2 and w.shape[0] == 28 * 28:
            b = params.get(b_name)
            bias = b.detach().float().cpu() if b is not None else torch.zeros(w.shape[1])
            return w.detach().float().cpu().T.contiguous(), bias
    return None


def weight_images(rows: torch.Tensor) -> torch.Tensor:
    """[units, 784] -> [units, 28, 28]: each unit's weights laid out where their pixels are (the seed's w[i].view(28,28))."""
    return rows.reshape(len(rows), 28, 28)


def unit_norms(rows: torch.Tensor) -> torch.Tensor:
    """The length (L2 norm) of each unit's weight row: how strongly the unit reacts to ink at all."""
    return rows.norm(dim=1)


def unit_order(rows: torch.Tensor, by: str = "norm") -> torch.Tensor:
    """Unit numbers in display order: by weight norm, largest first, or as they are numbered ("index")."""
    if by == "index":
        return torch.arange(len(rows))
    if by == "norm":
        return unit_norms(rows).argsort(descending=True, stable=True)
    raise ValueError(f"unknown order {by!r}: use 'norm' or 'index'")


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    convs = leaf_layers(model, (nn.Conv2d,))
    return convs[0][1] if convs else None


def first_filters(model: nn.Module) -> torch.Tensor | None:
    """The first convolution's learned filters as [filters, k, k] (DigitCNN: 32 of 3x3); None without one.

    The first layer reads one grey channel, so each filter is one small image; with more input channels
    they are summed, to keep one picture per filter.
    """
    conv = first_conv(model)
    if conv is None:
        return None
    return conv.weight.detach().float().cpu().sum(dim=1)


# ---------------------------------------------------------------- which units fire for a digit


@dataclass(frozen=True)
class Firing:
    """The units of the first layer that respond most to one image, strongest first."""

    layer: str  # the layer whose outputs were ranked
    units: torch.Tensor  # unit (or filter) numbers
    values: torch.Tensor  # their activations (a filter: the mean of its map)
    weights: torch.Tensor  # their weight images: [k, 28, 28] rows, or [k, 3, 3] filters
    contributions: torch.Tensor | None  # weight x input per pixel [k, 28, 28]; its sum plus the bias is the unit's input
    maps: torch.Tensor | None  # a filter's response map [k, H, W]
    pre_activations: torch.Tensor | None = None  # rows @ x + bias, for the units above


def top_units(values: torch.Tensor, k: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest activations and their unit numbers; a stack of maps is ranked by each map's mean."""
    v = values.reshape(len(values), -1).mean(dim=1) if values.dim() > 1 else values
    k = max(0, min(k, len(v)))
    top = v.topk(k)
    return top.indices, top.values


def units_that_fire(model: nn.Module, config: TrainConfig, image: torch.Tensor, k: int = 8) -> Firing | None:
    """For a model that reads the 784 pixels with one layer: the units of that layer that fire most for ``image``.

    A unit's input is its weights times the pixels, summed, plus its bias; the activation after it
    (ReLU, Tanh...) is what is ranked. The linear model has no hidden layer: its one output is the unit.
    """
    layer = first_layer(model)
    if layer is None:
        return None
    rows, bias = layer
    x = prepare(_one(image), config).reshape(-1).float().cpu()
    pre = rows @ x + bias
    acts = {t.__name__ for t in ACTIVATION_LAYERS}
    after = next((o for o in activations(model, config, image)
                  if o.kind.split(" ")[0] in acts and o.values.shape == pre.shape), None)
    units, values = top_units(after.values if after is not None else pre, k)
    return Firing(
        layer=after.label if after is not None else "output (no hidden layer)",
        units=units, values=values, weights=weight_images(rows[units]),
        contributions=(rows[units] * x).reshape(len(units), 28, 28), maps=None, pre_activations=pre[units],
    )


def filters_that_fire(model: nn.Module, config: TrainConfig, image: torch.Tensor, k: int = 8) -> Firing | None:
    """For a CNN: the first-layer filters whose response maps (after their activation) are strongest for ``image``."""
    filters = first_filters(model)
    if filters is None:
        return None
    outs = layer_outputs(model, config, image)
    conv_at = next(i for i, o in enumerate(outs) if o.kind == "Conv2d")
    # The first activation after the first convolution (batch norm may sit between them).
    after = next((o for o in outs[conv_at + 1:] if o.kind in {t.__name__ for t in ACTIVATION_LAYERS}), outs[conv_at])
    units, values = top_units(after.values, k)
    return Firing(layer=after.label, units=units, values=values, weights=filters[units], contributions=None,
                  maps=after.values[units])
