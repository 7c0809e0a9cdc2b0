"""Backpropagation written out for simple_net's MLPs: the chain rule, one layer at a time.

For a small MLP on a CPU most of a training step is not arithmetic but bookkeeping: autograd records a
node for every operation and walks them back one by one, and at batch 64 that costs more than the
multiplications. Here the gradients of ``nn.Sequential(Flatten, Linear, act, ..., Linear[, LogSoftmax])``
are computed directly -- the same formulas autograd applies, in as few tensor operations as they need --
and handed to the ordinary optimiser through ``p.grad``. A test checks them against autograd's.

In mixed precision the first layer, 784 pixels wide and most of the net's arithmetic, multiplies in
bfloat16 (forward and weight gradient); everything else, the weights and the gradients stay float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import TrainConfig

_aten = torch.ops.aten
# d(activation)/d(input) times the incoming gradient, from the activation's output (all three are ATen ops)
_FORWARD = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh, nn.Sigmoid: torch.sigmoid}
_BACKWARD = {
    nn.ReLU: lambda grad, out: _aten.threshold_backward(grad, out, 0),
    nn.Tanh: _aten.tanh_backward,
    nn.Sigmoid: _aten.sigmoid_backward,
}


def _split(model: nn.Module):
    """(linear layers, activations between them, ends in LogSoftmax) of Flatten, Linear, act, ..., Linear[,
    LogSoftmax]; None for any other shape."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = list(model)
    if not layers or not isinstance(layers[0], nn.Flatten):
        return None
    layers = layers[1:]
    log_softmax = bool(layers) and isinstance(layers[-1], nn.LogSoftmax)
    if log_softmax:
        if layers[-1].dim not in (1, -1):
            return None
        layers = layers[:-1]
    if len(layers) % 2 != 1:
        return None
    return layers[0::2], layers[1::2], log_softmax


class SequentialBackprop:
    """One training step's loss and gradients for an MLP built by ``models.simple_net``."""

    def __init__(self, model: nn.Sequential, config: TrainConfig, dtype: torch.dtype = torch.float32):
        linears, acts, self.log_softmax = _split(model)
        # the parameters themselves, looked up once: nn.Module attribute lookups cost more than small tensor ops
        self.weights = [lin.weight for lin in linears]
        self.biases = [lin.bias for lin in linears]
        self.forward_activations = [_FORWARD[type(a)] for a in acts]
        self.activations = [_BACKWARD[type(a)] for a in acts]
        self.dtype = dtype  # of the first layer's multiplications
        self.mixed = dtype != torch.float32
        self.label_smoothing = config.label_smoothing if config.loss == "cross_entropy" else 0.0
        self._columns: dict[tuple[int, float], torch.Tensor] = {}

    @staticmethod
    def supports(model: nn.Module, config: TrainConfig) -> bool:
        """simple_net's shape exactly, trained on all ten digits with NLL (after LogSoftmax) or cross-entropy."""
        if config.kind != "mlp" or config.form != "nn" or config.loss not in ("nll", "cross_entropy"):
            return False
        parts = _split(model)
        if parts is None:
            return False
        linears, acts, log_softmax = parts
        return log_softmax == (config.loss == "nll") and all(
            type(m) is nn.Linear and m.bias is not None for m in linears
        ) and all(type(a) in _BACKWARD for a in acts)

    def _minus(self, n: int, value: float) -> torch.Tensor:
        """A column of -value, n tall: what scatter_add_ takes from each row's label entry (kept, not remade)."""
        key = (n, value)
        if key not in self._columns:
            self._columns[key] = torch.full((n, 1), -value)
        return self._columns[key]

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss and backward for one batch; sets ``p.grad`` on every parameter.

        ``xb`` is [B, 784] (in ``self.dtype``), ``yb`` the labels. Returns (the model's output, the loss).
        """
        with torch.no_grad():
            weights, biases, mixed = self.weights, self.biases, self.mixed
            # forward, keeping each layer's input for the weight gradients
            if mixed:
                z = torch.mm(xb, weights[0].to(self.dtype).t()).float().add_(biases[0])
            else:
                z = torch.addmm(biases[0], xb, weights[0].t())
            inputs = [xb]
            for act, w, b in zip(self.forward_activations, weights[1:], biases[1:]):
                a = act(z)
                inputs.append(a)
                z = torch.addmm(b, a, w.t())
            n = len(yb)
            # the loss, and its gradient with respect to the last layer's output z:
            # (softmax(z) - target) / n, where the target is the one-hot label (smoothed for label smoothing)
            rows = yb.view(n, 1)
            if self.log_softmax:
                preds = z.log_softmax(1)
                loss = F.nll_loss(preds, yb)
                grad = preds.exp()
                hit = 1.0
            else:
                preds = z
                loss = F.cross_entropy(z, yb, label_smoothing=self.label_smoothing)
                grad = z.softmax(1)
                eps = self.label_smoothing
                if eps:
                    grad.sub_(eps / z.shape[1])
                hit = 1.0 - eps
            grad.scatter_add_(1, rows, self._minus(n, hit))
            grad.div_(n)
            # backward, last layer first: dW = g^T a, db = sum(g), then g W back through the activation
            for i in range(len(weights) - 1, -1, -1):
                w = weights[i]
                if i == 0 and mixed:
                    w.grad = torch.mm(grad.to(self.dtype).t(), xb).float()
                else:
                    w.grad = torch.mm(grad.t(), inputs[i])
                biases[i].grad = grad.sum(0)
                if i > 0:
                    grad = self.activations[i - 1](torch.mm(grad, w), inputs[i])
        return preds, loss


def sgd_stepper(opt: torch.optim.Optimizer):
    """``opt.step``, or for a fused ``torch.optim.SGD`` the very kernel its step() ends in, called directly.

    SGD's step() spends longer in Python (hooks, profiler labels, regrouping the tensors) than its fused
    kernel spends updating a small MLP, so once the first step has made the momentum buffers, later
    steps hand the same parameters, gradients and buffers, with the group's current learning rate, to
    ``torch._fused_sgd_``. A test checks the result is bit-for-bit what ``opt.step()`` gives.
    Anything else -- another optimiser, several groups, unfused -- gets ``opt.step`` itself.
    """
    if type(opt) is not torch.optim.SGD or len(opt.param_groups) != 1:
        return opt.step
    group = opt.param_groups[0]
    if not group.get("fused") or group.get("differentiable") or group.get("maximize"):
        return opt.step
    params = group["params"]
    buffers: list[torch.Tensor] = []
    ready = False

    def step() -> None:
        nonlocal ready, buffers
        if not ready:  # the first step through torch.optim itself: it makes the momentum buffers
            opt.step()
            if group["momentum"]:
                buffers = [opt.state[p]["momentum_buffer"] for p in params]
            ready = True
            return
        torch._fused_sgd_(
            params, [p.grad for p in params], buffers,
            weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
            dampening=group["dampening"], nesterov=group["nesterov"], maximize=False, is_first_step=False,
        )

    return step
