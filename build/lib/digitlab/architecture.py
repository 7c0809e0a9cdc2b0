"""A network's architecture with the arithmetic behind each shape: what the CNN stage's table shows, measured by
running one image through the model (``trace_layers``), never read off DigitLab's own classes."""

from __future__ import annotations

from torch import nn

from .features import ACTIVATION_LAYERS, _private
from .models import layer_row, trace_layers


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
