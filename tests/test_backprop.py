"""The chain rule written out (digitlab.backprop) against autograd, on real MNIST batches."""

import pytest
import torch
import torch.nn.functional as F

from digitlab.backprop import SequentialBackprop, sgd_stepper
from digitlab.models import PRESETS, build_model
from digitlab.train import fit, loss_function, prepare

CASES = {
    "mlp-128-64 (ReLU, Tanh, LogSoftmax + NLL)": PRESETS["mlp-128-64"],
    "simple_net (ReLU, cross-entropy)": PRESETS["simple_net"],
    "sigmoid, three layers, label smoothing": PRESETS["simple_net"].with_(
        hidden=(64, 32, 16), activations=("sigmoid", "tanh", "relu"), label_smoothing=0.1
    ),
}


def autograd_grads(model, config, xb, yb):
    model.zero_grad(set_to_none=True)
    preds = model(xb)
    loss = loss_function(config)(preds, yb)
    loss.backward()
    return preds.detach(), loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", list(CASES))
def test_written_out_gradients_equal_autograds(mnist, name):
    config = CASES[name]
    model = build_model(config)
    assert SequentialBackprop.supports(model, config)
    xb, yb = prepare(mnist.train_images[:64], config), mnist.train_labels[:64]
    preds, loss, expected = autograd_grads(model, config, xb, yb)
    model.zero_grad(set_to_none=True)
    got_preds, got_loss = SequentialBackprop(model, config).step(xb, yb)
    assert torch.allclose(got_preds, preds, atol=1e-6)
    assert torch.allclose(got_loss, loss, atol=1e-6)
    for (pname, p), want in zip(model.named_parameters(), expected):
        assert p.grad.shape == want.shape
        assert torch.allclose(p.grad, want, rtol=1e-4, atol=1e-7), pname


def test_mixed_precision_first_layer_stays_close_to_float32(mnist):
    config = PRESETS["mlp-128-64"]
    model = build_model(config)
    xb, yb = prepare(mnist.train_images[:64], config), mnist.train_labels[:64]
    _, loss, expected = autograd_grads(model, config, xb, yb)
    model.zero_grad(set_to_none=True)
    _, got_loss = SequentialBackprop(model, config, torch.bfloat16).step(xb.bfloat16(), yb)
    assert abs(float(got_loss) - float(loss)) < 0.01
    for p, want in zip(model.parameters(), expected):
        assert p.grad.dtype == torch.float32  # the optimiser sees float32 gradients
        # bfloat16 keeps about 3 significant digits: close in direction and size, not to the last bit
        cos = F.cosine_similarity(p.grad.flatten(), want.flatten(), dim=0)
        assert cos > 0.995 and abs(p.grad.norm() / want.norm() - 1) < 0.02


def test_other_shapes_train_through_autograd():
    assert not SequentialBackprop.supports(build_model(PRESETS["cnn-seed"]), PRESETS["cnn-seed"])
    scratch = PRESETS["simple_net"].with_(form="scratch")
    assert not SequentialBackprop.supports(build_model(scratch), scratch)
    linear = PRESETS["linear-better"]
    assert not SequentialBackprop.supports(build_model(linear), linear)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mlp_preset_learns_through_fit_in_either_precision(mnist, monkeypatch, precision):
    monkeypatch.setenv("DIGITLAB_PRECISION", precision)
    config = PRESETS["mlp-128-64"].with_(train_limit=6000, epochs=2)
    model = build_model(config)
    epochs = [e for e in fit(model, config, mnist) if e.kind == "epoch"]
    assert epochs[0].loss > epochs[1].loss
    assert epochs[-1].test_accuracy > 0.9
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 0.0), (0.9, 1e-4), (0.0, 0.0)])
def test_sgd_stepper_moves_the_weights_exactly_as_torch_optim_does(mnist, momentum, weight_decay):
    config = PRESETS["mlp-128-64"]
    xb, yb = prepare(mnist.train_images[:256], config), mnist.train_labels[:256]
    models = [build_model(config), build_model(config)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=momentum, weight_decay=weight_decay, fused=True)
            for m in models]
    steps = [opts[0].step, sgd_stepper(opts[1])]
    assert steps[1] != opts[1].step  # the direct kernel, not a copy of opt.step
    for i in range(6):
        if i == 3:  # a scheduler changing the learning rate mid-run is seen by both
            for opt in opts:
                opt.param_groups[0]["lr"] = 0.05
        for model, step in zip(models, steps):
            SequentialBackprop(model, config).step(xb[i * 32 : (i + 1) * 32], yb[i * 32 : (i + 1) * 32])
            step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    if momentum:
        for a, b in zip(models[0].parameters(), models[1].parameters()):
            assert torch.equal(opts[0].state[a]["momentum_buffer"], opts[1].state[b]["momentum_buffer"])


def test_sgd_stepper_leaves_other_optimisers_alone():
    model = build_model(PRESETS["mlp-128-64"])
    adam = torch.optim.Adam(model.parameters())
    assert sgd_stepper(adam) == adam.step
    unfused = torch.optim.SGD(model.parameters(), lr=0.1)
    assert sgd_stepper(unfused) == unfused.step
