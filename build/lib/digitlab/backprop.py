"""The chain rule for simple_net, written out: each operation's forward pass beside its backward pass.

A lesson, not the training path: fit() gets its gradients from autograd (``loss.backward()``). Here
every operation of simple_net by hand -- ``xb@w1 + b1``, ``max(0)``, ``@w2 + b2``, cross-entropy --
is a small class, as micrograd writes each operation of ``Value``: ``forward`` computes the output and
keeps what the backward pass will need; ``backward`` takes the gradient of the loss with respect to the
output and returns it with respect to the input (noting the weights' gradients on the way).
tests/test_backprop.py checks every gradient against autograd's.
"""

from __future__ import annotations

import torch

from .models import SimpleNetScratch


class Linear:
    """out = x @ w + b, with w stored [inputs, outputs] as the by-hand simple_net keeps it."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        self.w, self.b = w, b

    def forward(self, x):
        self.x = x  # each weight's gradient needs the input it multiplied
        return x @ self.w + self.b

    def backward(self, grad):
        self.w_grad = self.x.T @ grad  # weight i->j moved output j by x_i: sum x_i * grad_j over the batch
        self.b_grad = grad.sum(0)  # a bias adds to every image of the batch
        return grad @ self.w.T  # each input fed every output through its weight


class ReLU:
    """out = x.max(0): negative numbers become 0."""

    def forward(self, x):
        self.positive = x > 0
        return x * self.positive

    def backward(self, grad):
        return grad * self.positive  # slope 1 where the input was positive, 0 where it was cut


class CrossEntropy:
    """The loss: the mean over the batch of -log(softmax(scores)[target])."""

    def forward(self, scores, targets):
        self.probs, self.targets = scores.softmax(1), targets
        rows = torch.arange(len(targets))
        return -self.probs[rows, targets].log().mean()

    def backward(self):
        grad = self.probs.clone()  # d loss / d scores = softmax(scores) - one_hot(target), over the batch size
        grad[torch.arange(len(self.targets)), self.targets] -= 1
        return grad / len(self.targets)


def simple_net_gradients(model: SimpleNetScratch, xb: torch.Tensor, yb: torch.Tensor):
    """The loss of one batch and the gradient of every parameter, by the chain rule: forward through the
    operations, then backward through them in reverse order, each passing the gradient to the one before."""
    with torch.no_grad():  # no autograd: the backward passes above do its work
        layers = [Linear(model.w1, model.b1), ReLU(), Linear(model.w2, model.b2)]
        loss_fn = CrossEntropy()
        x = xb.reshape(len(xb), -1)
        for layer in layers:
            x = layer.forward(x)
        loss = loss_fn.forward(x, yb)
        grad = loss_fn.backward()
        for layer in reversed(layers):
            grad = layer.backward(grad)
    first, _, last = layers
    return loss, {"w1": first.w_grad, "b1": first.b_grad, "w2": last.w_grad, "b2": last.b_grad}
