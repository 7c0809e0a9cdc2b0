"""The chain rule written out (digitlab.backprop) against autograd, on real MNIST batches."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from digitlab import backprop, train
from digitlab.backprop import CrossEntropy, Linear, ReLU, simple_net_gradients
from digitlab.models import PRESETS, build_model
from digitlab.train import prepare

SCRATCH = PRESETS["simple_net"].with_(form="scratch")


@pytest.mark.parametrize("rows", [1, 64, 256])
def test_chain_rule_gradients_equal_autograds(mnist, rows):
    model = build_model(SCRATCH)
    xb, yb = prepare(mnist.train_images[:rows], SCRATCH), mnist.train_labels[:rows]
    loss = F.cross_entropy(model(xb), yb)
    loss.backward()
    by_hand_loss, grads = simple_net_gradients(model, xb, yb)
    assert torch.allclose(by_hand_loss, loss.detach(), atol=1e-6)
    for name, p in model.named_parameters():
        assert grads[name].shape == p.grad.shape
        assert torch.allclose(grads[name], p.grad, rtol=1e-4, atol=1e-7), name


def test_each_backward_is_its_forwards_derivative():
    """Each operation on its own: backward(grad) equals autograd's vector-Jacobian product of forward."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=gen, requires_grad=True)
    w, b = torch.randn(4, 3, generator=gen), torch.randn(3, generator=gen)
    grad = torch.randn(5, 3, generator=gen)
    for op, g in ((Linear(w, b), grad), (ReLU(), torch.randn(5, 4, generator=gen))):
        out = op.forward(x)
        (want,) = torch.autograd.grad(out, x, g)
        assert torch.allclose(op.backward(g), want, atol=1e-6), type(op).__name__
    scores, targets = torch.randn(5, 10, generator=gen, requires_grad=True), torch.tensor([0, 3, 9, 3, 1])
    ce = CrossEntropy()
    (want,) = torch.autograd.grad(ce.forward(scores, targets), scores)
    assert torch.allclose(ce.backward(), want, atol=1e-6)


def test_stepping_on_the_chain_rules_gradients_learns(mnist):
    model = build_model(SCRATCH)
    xb, yb = prepare(mnist.train_images[:512], SCRATCH), mnist.train_labels[:512]
    first, _ = simple_net_gradients(model, xb, yb)
    for _ in range(30):
        _, grads = simple_net_gradients(model, xb, yb)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p -= 0.5 * grads[name]
    last, _ = simple_net_gradients(model, xb, yb)
    assert float(last) < float(first) / 2


def test_the_lesson_is_not_the_training_path():
    assert "backprop" not in inspect.getsource(train)
    assert len(inspect.getsource(backprop).splitlines()) < 90  # short enough to read on a page
