"""Which pixels drove the answer: saliency, gradient x input and Grad-CAM for one image.

Gradients are taken with ``torch.autograd.grad`` on a private copy of the model (``features._private``), so a model
shared by every browser session never collects ``.grad`` from a page and two sessions never catch each other's hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .features import ACTIVATION_LAYERS, _one, _private, leaf_layers
from .models import TrainConfig
from .train import predict_proba, prepare


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
