"""What the weights look for: the core behind the CNN and Features stages.

Plain PyTorch, no streamlit: a network's architecture with the arithmetic behind each shape,
the feature maps one image makes, the first layer's 784-weight rows (``simple_net[0]``) and
3x3 filters, which hidden units fire for a digit, a saliency map and Grad-CAM, the same run
before and after training, and the trained models side by side.

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
import torch.nn.functional as F
from torch import nn

from .data import DATASETS, MNIST, plural, to_float
from .metrics import task_test_set
from .models import ModelInfo, TrainConfig, build_model, layer_row, trace_layers
from .ranking import stored_accuracy
from .train import predict_proba, prepare

MAP_LAYERS = (nn.Conv2d, nn.MaxPool2d)  # the layers whose outputs are stacks of 2-D maps worth drawing
ACTIVATION_LAYERS = (nn.ReLU, nn.Tanh, nn.Sigmoid)


def class_names(config: TrainConfig) -> tuple[str, ...]:
    """The answers a model can give: the ten classes, or (no, yes) for a pair model -- ("7", "3") for 3 vs 7 -- as
    predict_proba orders them."""
    return config.classes


def label_name(config: TrainConfig, label: int) -> str:
    """A test label as its dataset names it: 3 -> "3" on MNIST, 6 -> "Shirt" on Fashion-MNIST."""
    return DATASETS[config.dataset].classes[label]


def pair_note(config: TrainConfig) -> str:
    """What a two-class model is, in a sentence (3 vs 7: how much the image looks like a 3 rather than a 7)."""
    no, yes = config.classes
    return f"A two-class model: one output that says how much the image looks like a {yes} rather than a {no}."


def pair_weights_note(config: TrainConfig) -> str:
    """How a two-class linear model's 784 weights read, with its two classes' names."""
    no, yes = config.classes
    return (f"The sum of weight × pixel plus the bias is the model's one output: above 0 it answers **{yes}**, below "
            f"0 **{no}**. So red pixels are where {plural(yes)} have ink and {plural(no)} do not, blue the reverse.")


def input_shape(config: TrainConfig) -> tuple[int, ...]:
    """One image as the model takes it: [1, 1, 28, 28] for a CNN, [1, 784] otherwise."""
    return (1, 1, 28, 28) if config.kind == "cnn" else (1, 28 * 28)


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


# ---------------------------------------------------------------- the architecture, measured


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _arithmetic(module: nn.Module, shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> tuple[str, str]:
    """Why a layer gives this shape and has this many parameters, in numbers a student can check."""
    n_params = sum(p.numel() for p in module.parameters())
    if isinstance(module, nn.Conv2d):
        (k, _), (st, _), (pad, _) = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        side, out = shape_in[-1], shape_out[-1]
        size = f"{side} − {k} + 1 = {out}" if st == 1 and pad == 0 else f"({side} + 2·{pad} − {k}) ÷ {st} + 1 = {out}"
        c_in, c_out = module.in_channels, module.out_channels
        params = f"{c_out} filters × ({c_in}·{k}·{k}) weights"
        params += f" + {c_out} biases" if module.bias is not None else " (no bias)"
        return f"{c_out} maps of {size}", f"{params} = {n_params:,}"
    if isinstance(module, nn.MaxPool2d):
        (k, _) = _pair(module.kernel_size)
        side, out = shape_in[-1], shape_out[-1]
        return (f"{side} ÷ {k} = {out}" + (" (rounded down)" if side % k else "") + f": the largest of each {k}x{k}",
                "no weights")
    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        return "same shape, each channel rescaled", f"a scale and a shift per channel: 2 × {module.num_features} = {n_params}"
    if isinstance(module, nn.Flatten):
        return " · ".join(str(s) for s in shape_in[1:]) + f" = {shape_out[-1]} numbers in a row", "no weights"
    if isinstance(module, nn.Linear):
        bias = f" + {module.out_features} biases" if module.bias is not None else ""
        return (f"{module.out_features} outputs",
                f"{module.in_features:,} × {module.out_features} weights{bias} = {n_params:,}")
    if isinstance(module, ACTIVATION_LAYERS):
        what = {"ReLU": "max(x, 0)", "Tanh": "tanh(x)", "Sigmoid": "sigmoid(x)"}[type(module).__name__]
        return f"same shape: {what} on every number", "no weights"
    if isinstance(module, nn.Dropout):
        return "same shape (zeroes some numbers while training only)", "no weights"
    if isinstance(module, nn.LogSoftmax):
        return "same shape: log of the probabilities", "no weights"
    return "", ""


def architecture(model: nn.Module, shape: tuple[int, ...] = (1, 1, 28, 28)) -> list[dict]:
    """``models.layer_table`` (each layer's output shape and parameters, measured by running one image),
    with the arithmetic behind each shape and each parameter count beside it."""
    model = _private(model)
    rows = []
    for t in trace_layers(model, shape):
        why_shape, why_params = _arithmetic(t.module, t.shape_in, t.shape_out)
        rows.append({**layer_row(t), "why this shape": why_shape, "why these parameters": why_params})
    return rows


def map_sizes(rows: list[dict]) -> list[int]:
    """The side of the maps after each convolution and pooling, from 28: DigitCNN's 28 → 26 → 13 → 11 → 5."""
    sizes = [28]
    for r in rows:
        if r["type"] in ("Conv2d", "MaxPool2d"):
            sizes.append(int(r["output shape"].split("x")[-1]))
    return sizes


def flatten_row(rows: list[dict]) -> dict | None:
    """The Flatten layer's row, where the maps become one row of numbers (64·5·5 = 1600 for DigitCNN)."""
    return next((r for r in rows if r["type"] == "Flatten"), None)


def variant_notes(rows: list[dict]) -> list[str]:
    """How a CNN's layer rows differ from the tutorial's conv, ReLU, pool blocks, read from the rows themselves."""
    types = [r["type"] for r in rows]
    notes = []
    if "BatchNorm2d" in types:
        no_bias = any("(no bias)" in r.get("why these parameters", "") for r in rows if r["type"] == "Conv2d")
        notes.append("batch norm in each block" + (", so the convolution needs no bias of its own" if no_bias else ""))
    if any(a == "Conv2d" and b == "MaxPool2d" for a, b in zip(types, types[1:])) and "ReLU" in types:
        notes.append("max-pooling straight after each convolution, so what follows works on a quarter of the "
                     "values (ReLU and max-pooling commute: only batch norm's place changes)")
    if "Dropout" in types:
        notes.append("dropout before the last layer, which zeroes some numbers while training only")
    return notes


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


def output_note(config: TrainConfig) -> str:
    """What the last activation chart is, and what turns it into the answer's probabilities."""
    if config.pair:
        return ("Hidden activations are what the next layer reads. The last chart is the one output: the sigmoid "
                f"of it is the probability of {config.classes[1]}.")
    out = ("log-probabilities, as the model ends in LogSoftmax; exp() of them is the answer above."
           if config.loss == "nll" else "raw scores (logits), before softmax turns them into the probabilities above.")
    if config.label_smoothing:
        out += (f" Trained with label smoothing {config.label_smoothing:g}, it keeps its logits close together, so "
                "even a clear digit rarely gets more than about 90%.")
    return "Hidden activations are what the next layer reads. The last chart is the output: " + out


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


# ---------------------------------------------------------------- which pixels drove the answer


@dataclass(frozen=True)
class Explanation:
    probs: torch.Tensor  # the model's answer, in class_names order
    target: int  # the class explained (index into class_names)
    saliency: torch.Tensor  # [28, 28] |d score / d pixel|
    grad_x_input: torch.Tensor  # [28, 28] d score / d pixel x pixel: signed, where the ink pushed the score
    grad_cam: torch.Tensor | None  # [28, 28] in 0..1 for a CNN, else None
    cam_layer: str = ""  # the layer Grad-CAM looked at


def _score(out: torch.Tensor, config: TrainConfig, target: int) -> torch.Tensor:
    """The number that decides class ``target``: its output; the 3-vs-7 model's one output is "3"-ness."""
    if config.pair:
        return out[0, 0] if target == 1 else -out[0, 0]
    return out[0, target]


def _cam_layer(model: nn.Module, order: list[str]) -> str | None:
    """Grad-CAM's layer: the last block's rectified maps -- the first activation after the last convolution,
    past any batch norm or pooling (cnn-fast pools first) -- else the convolution itself."""
    convs = [n for n, _ in leaf_layers(model, (nn.Conv2d,))]
    if not convs:
        return None
    last = max(convs, key=order.index)
    modules = dict(model.named_modules())
    for name in order[order.index(last) + 1:]:
        if isinstance(modules[name], ACTIVATION_LAYERS):
            return name
        if isinstance(modules[name], nn.Conv2d | nn.Linear | nn.Flatten):
            break
    return last


def explain(model: nn.Module, config: TrainConfig, image: torch.Tensor, target: int | None = None) -> Explanation:
    """Saliency (the gradient of the answer's score with respect to every pixel) and, for a CNN, Grad-CAM.

    The score is the class's output before softmax (the logit).

    Grad-CAM weighs each map of the last convolution block by how much the score rises with it
    (its gradient, averaged over the map), adds the maps up, keeps the positive part and stretches
    the result back to 28x28: the regions the CNN used, coarser than saliency but steadier.
    """
    model.eval()
    device = next(model.parameters()).device
    probs = predict_proba(model, config, _one(image))[0]
    target = int(probs.argmax()) if target is None else int(target)
    if not 0 <= target < len(probs):
        raise ValueError(f"class {target} is not one of this model's {len(probs)} answers")
    x = prepare(_one(image), config, device).detach().requires_grad_(True)
    model = _private(model)
    order: list[str] = []
    outputs: dict[str, torch.Tensor] = {}
    logits: list[torch.Tensor] = []
    hooks = []
    for name, module in leaf_layers(model):

        def hook(mod, inp, res, name=name):
            order.append(name)
            outputs[name] = res
            if isinstance(mod, nn.LogSoftmax):
                logits.append(inp[0])

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            out = model(x)
            # The class score is the number before softmax; a model ending in LogSoftmax (the PyTorch MLP
            # tutorial's) hands on log-probabilities, whose gradient at a confident answer is nearly zero.
            out = logits[-1] if logits else out
            cam_name = _cam_layer(model, order) if config.kind == "cnn" else None
            wrt = [x] + ([outputs[cam_name]] if cam_name else [])
            grads = torch.autograd.grad(_score(out, config, target), wrt)
    finally:
        for h in hooks:
            h.remove()
    g = grads[0].detach().float().cpu().reshape(28, 28)
    xi = x.detach().float().cpu().reshape(28, 28)
    cam = None
    if cam_name:
        maps, gmaps = outputs[cam_name].detach()[0], grads[1].detach()[0]
        weights = gmaps.mean(dim=(1, 2))
        cam = (weights[:, None, None] * maps).sum(dim=0).clamp(min=0)
        cam = F.interpolate(cam[None, None], size=(28, 28), mode="bilinear", align_corners=False)[0, 0].float().cpu()
        span = cam.max() - cam.min()
        cam = (cam - cam.min()) / span if span > 0 else torch.zeros_like(cam)  # 0..1, as Grad-CAM is drawn
    return Explanation(probs, target, g.abs(), g * xi, cam, cam_name or "")


def firing_note(fire: Firing, config: TrainConfig) -> str:
    """What the units-that-fire pictures show, in words."""
    if config.pair:
        no, yes = config.classes
        text = ("The linear model has no hidden layer: its one output unit is all there is. It multiplies every "
                "pixel by its weight and adds them up, plus its bias: the second image is that product, pixel by "
                f"pixel, so its red parts pushed the answer towards {yes} and its blue parts towards {no}.")
    else:
        text = (f"The {len(fire.units)} strongest units of **{fire.layer}** for this image (in red above). Each unit "
                "multiplies every pixel by its weight and adds them up, plus its bias: the second grid is that "
                "product, pixel by pixel, so its red parts are the ink that made the unit fire.")
    if paper_value(config) != 0:
        text += (f" This model reads paper as {paper_value(config):g}, not 0 (its inputs are normalised), so paper "
                 "pixels count in the sum too.")
    return text


def saliency_note(ex: Explanation, config: TrainConfig) -> str:
    """What the saliency, gradient × input and Grad-CAM pictures show, in words."""
    what = class_names(config)[ex.target]
    text = ("**Saliency**: how much the score would change if one pixel changed a little (the size of its gradient). "
            "**Gradient × input**: the gradient times the pixel, so it lights up the ink that is there: red pushed "
            f"the score for '{what}' up, blue pushed it down.")
    if ex.grad_cam is not None:
        text += (" **Grad-CAM**: the last convolution block's maps, each weighted by how much the score rises with "
                 "it, added up and stretched back to 28x28: the regions the CNN used, coarser but steadier than "
                 "saliency.")
    if paper_value(config) != 0:
        text += (f" This model reads paper as {paper_value(config):g}, not 0 (its inputs are normalised), so "
                 "gradient × input can light up paper too.")
    return text


# ---------------------------------------------------------------- before and after training


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


def share_of_start(moved: float) -> str:
    """``weight_change``'s "moved ÷ norm before" as a percentage; a tensor that started at zero (BatchNorm's
    shifts, zeroed biases) has no "before" to divide by."""
    return f"{moved:.1%}" if moved == moved else "— (started at 0)"


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


def before_after_note(config: TrainConfig, pairs: list[tuple[str, torch.Tensor, list[str]]], change: list[dict]) -> str:
    """What the before-and-after pictures show (``before_after``) and how far training moved the first weights
    (``weight_change``'s first row), in words."""
    text = ""
    if pairs and pairs[0][1].shape[-1] == 28:
        n = len(pairs[0][2])
        text = ("The same unit before and after, on its own colour scale. " if n == 1 else
                f"The same {n} units before and after (largest trained norm first), each on its own colour scale. ")
        text += ("With the seed's std-1 start the weights stay mostly noise; the change is small beside them. "
                 if config.kind == "linear" and config.init_std >= 1 else "Random noise before; strokes and blobs after. ")
    if change:
        moved = change[0]["moved ÷ norm before"]
        text += (f"Training moved the first layer's weights by {moved:.0%} of their starting size"
                 + (": they still carry much of their random start, as the pictures show." if moved < 0.5 else ".")
                 + " The table: how far training moved each weight tensor (L2 norms).")
    return text


# ---------------------------------------------------------------- the models side by side

_KIND_ORDER = {"linear": 0, "mlp": 1, "cnn": 2}


def side_by_side(infos: list[ModelInfo], best_only: bool = False) -> list[ModelInfo]:
    """Stored models in the order the stages go: linear first, then MLPs, then CNNs, best first within each.

    ``best_only`` keeps the best of each kind (and task: the linear model answers only "3 or 7?").
    """
    ordered = sorted(infos, key=lambda i: (_KIND_ORDER.get(i.config.kind, 9), i.config.task, -stored_accuracy(i)))
    if not best_only:
        return ordered
    best: dict[tuple[str, str], ModelInfo] = {}
    for i in ordered:
        best.setdefault((i.config.kind, i.config.task), i)
    return list(best.values())
