"""A convolution's arithmetic, one output number at a time (CNN Explainer, and more).

Pick a DigitCNN feature map and a position in it. The number there is made like this: take the 3x3 patch of
every input channel under the kernel, multiply it by that channel's 3x3 kernel, add up all the products, add
the bias. After the convolution come the layer's other steps -- BatchNorm if the model has it, ReLU, and the
2x2 max-pool, which keeps the number only if it is the largest of its window. Every number here is read from
the model's own weights and inputs, and the test checks the result against the model's own feature map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .models import TrainConfig
from .train import prepare


@dataclass
class Step:
    """One step after the convolution: what it is, the value before and after it."""

    name: str  # "BatchNorm", "ReLU" or "max-pool"
    before: float
    after: float
    note: str


@dataclass
class ConvArithmetic:
    conv: int  # which convolution: 1 or 2
    channel: int  # the output map
    row: int
    col: int
    patch: torch.Tensor  # [C_in, 3, 3]: the input under the kernel
    kernel: torch.Tensor  # [C_in, 3, 3]
    bias: float  # 0 when BatchNorm follows (the convolution then has no bias of its own)
    steps: list[Step] = field(default_factory=list)
    pool_window: torch.Tensor | None = None  # [2, 2] the values the max-pool compares
    pool_kept: bool = True

    @property
    def products(self) -> torch.Tensor:
        return self.patch * self.kernel

    @property
    def channel_sums(self) -> torch.Tensor:
        """Each input channel's share: the sum of its nine products."""
        return self.products.sum(dim=(1, 2))

    @property
    def total(self) -> float:
        """The convolution's output: every product added up, plus the bias."""
        return float(self.products.sum()) + self.bias

    def largest(self, k: int = 5) -> list[tuple[int, float]]:
        """The k input channels that pushed hardest, either way: (channel, its sum)."""
        sums = self.channel_sums
        order = sums.abs().argsort(descending=True)[:k]
        return [(int(c), float(sums[c])) for c in order]


def convolutions(model: nn.Module) -> list[int]:
    """Indexes in ``model.conv_layers`` of its convolutions (DigitCNN has two)."""
    return [i for i, m in enumerate(model.conv_layers) if isinstance(m, nn.Conv2d)]


@torch.inference_mode()
def explain_position(model: nn.Module, config: TrainConfig, image: torch.Tensor, conv: int, channel: int,
                     row: int, col: int) -> ConvArithmetic:
    """How the number at (row, col) of output map ``channel`` of convolution ``conv`` (1-based) is made for one
    uint8 image [28, 28], and what the layer's later steps do to it."""
    model.eval()
    layers, convs = model.conv_layers, convolutions(model)
    if not 1 <= conv <= len(convs):
        raise ValueError(f"this model has {len(convs)} convolutions; pick 1 to {len(convs)}")
    at = convs[conv - 1]
    x = prepare(image.unsqueeze(0), config)
    for module in layers[:at]:  # the input the convolution reads
        x = module(x)
    layer: nn.Conv2d = layers[at]
    k = layer.kernel_size[0]
    out_h, out_w = x.shape[2] - k + 1, x.shape[3] - k + 1
    if not (0 <= channel < layer.out_channels and 0 <= row < out_h and 0 <= col < out_w):
        raise ValueError(f"convolution {conv} makes {layer.out_channels} maps of {out_h}x{out_w}")
    bias = float(layer.bias[channel]) if layer.bias is not None else 0.0
    found = ConvArithmetic(conv, channel, row, col, x[0, :, row : row + k, col : col + k].clone(),
                           layer.weight[channel].detach().clone(), bias)

    maps = layer(x)  # then follow the model's own steps up to the next convolution
    value, r, c = float(maps[0, channel, row, col]), row, col
    for module in layers[at + 1 : (convs + [len(layers)])[conv]]:
        if isinstance(module, nn.MaxPool2d):
            r0, c0 = r // 2 * 2, c // 2 * 2
            if r0 + 2 > maps.shape[2] or c0 + 2 > maps.shape[3]:  # an odd map's last row or column
                found.pool_kept = False
                found.steps.append(Step("max-pool", value, float("nan"),
                                        "on the map's odd last row or column, in no 2x2 window: dropped"))
                break
            window = maps[0, channel, r0 : r0 + 2, c0 : c0 + 2]
            found.pool_window, kept = window.clone(), value >= float(window.max())
            found.pool_kept = found.pool_kept and kept
            note = "the largest of its 2x2 window: kept" if kept else "not the largest of its 2x2 window: dropped"
            found.steps.append(Step("max-pool", value, float(window.max()), note))
            value, r, c = float(window.max()), r // 2, c // 2
        elif isinstance(module, nn.BatchNorm2d):
            scale = float(module.weight[channel]) / float(torch.sqrt(module.running_var[channel] + module.eps))
            after = (value - float(module.running_mean[channel])) * scale + float(module.bias[channel])
            found.steps.append(Step("BatchNorm", value, after,
                                    f"minus the running mean {float(module.running_mean[channel]):.3g}, times "
                                    f"{scale:.3g}, plus {float(module.bias[channel]):.3g}"))
            value = after
        elif isinstance(module, nn.ReLU):
            found.steps.append(Step("ReLU", value, max(0.0, value),
                                    "negative, so it becomes 0" if value < 0 else "positive, so it passes"))
            value = max(0.0, value)
        maps = module(maps)
    return found


@torch.inference_mode()
def map_shapes(model: nn.Module) -> list[tuple[int, int, int]]:
    """(maps, height, width) each convolution makes from a 28x28 image: what a position may be picked from."""
    x, shapes = torch.zeros(1, 1, 28, 28), []
    for module in model.eval().conv_layers:
        x = module(x)
        if isinstance(module, nn.Conv2d):
            shapes.append(tuple(x.shape[1:]))
    return shapes


@torch.inference_mode()
def _conv_input_and_maps(model: nn.Module, config: TrainConfig, image: torch.Tensor, conv: int):
    """(what convolution ``conv`` (1-based) reads, the maps it makes) for one uint8 image [28, 28]."""
    at = convolutions(model.eval())[conv - 1]
    x = prepare(image.unsqueeze(0), config)
    for module in model.conv_layers[:at]:
        x = module(x)
    return x, model.conv_layers[at](x)


def _informative(x: torch.Tensor, k: int) -> torch.Tensor:
    """[out_h, out_w]: True where the k x k patch under the kernel is not one flat value in every channel. On a flat
    patch (the paper around a digit) every product is the weight times the same number: nothing to see."""
    patches = torch.nn.functional.unfold(x, k)[0]  # [C*k*k, L]
    c = x.shape[1]
    spread = patches.reshape(c, k * k, -1).amax(dim=1) - patches.reshape(c, k * k, -1).amin(dim=1)
    return (spread.amax(dim=0) > 1e-6).reshape(x.shape[2] - k + 1, x.shape[3] - k + 1)


@torch.inference_mode()
def strongest_position(model: nn.Module, config: TrainConfig, image: torch.Tensor, conv: int,
                       channel: int) -> tuple[int, int]:
    """(row, col) where map ``channel`` of convolution ``conv`` is largest for this image, over the patches that are
    not flat paper (unless every patch is): a place worth a look."""
    x, maps = _conv_input_and_maps(model, config, image, conv)
    values = maps[0, channel]
    keep = _informative(x, model.conv_layers[convolutions(model)[conv - 1]].kernel_size[0])
    if keep.any():
        values = values.masked_fill(~keep, float("-inf"))
    row, col = divmod(int(values.argmax()), values.shape[1])
    return row, col


@torch.inference_mode()
def strongest_map(model: nn.Module, config: TrainConfig, image: torch.Tensor, conv: int) -> int:
    """The map of convolution ``conv`` with the largest number for this image over patches that are not flat paper:
    where the section opens."""
    x, maps = _conv_input_and_maps(model, config, image, conv)
    keep = _informative(x, model.conv_layers[convolutions(model)[conv - 1]].kernel_size[0])
    values = maps[0].masked_fill(~keep, float("-inf")) if keep.any() else maps[0]
    return int(values.flatten(1).amax(dim=1).argmax())
