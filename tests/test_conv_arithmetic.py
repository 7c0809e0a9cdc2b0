"""A convolution's arithmetic, checked against the model's own feature maps for every DigitCNN variant."""

import pytest
import torch

from digitlab.conv_arithmetic import convolutions, explain_position
from digitlab.features import feature_maps
from digitlab.models import PRESETS, build_model
from digitlab.train import prepare


@pytest.fixture(scope="module")
def cnns(mnist):
    """Each DigitCNN variant, its BatchNorm running numbers taken from real digits (forward passes in training
    mode), so every step of the arithmetic has numbers of its own."""
    out = {}
    for name in ("cnn-seed", "cnn-fast", "cnn-best"):
        config = PRESETS[name]
        model = build_model(config).train()
        with torch.no_grad():
            for lo in range(0, 1024, 256):
                model(prepare(mnist.train_images[lo : lo + 256], config))
        out[name] = (model.eval(), config)
    return out


@pytest.mark.parametrize("name", ["cnn-seed", "cnn-fast", "cnn-best"])
def test_the_sum_of_products_plus_bias_is_the_models_own_number(cnns, mnist, name):
    model, config = cnns[name]
    image = mnist.test_images[0]
    inputs = prepare(image.unsqueeze(0), config)
    convs = convolutions(model)
    gen = torch.Generator().manual_seed(0)
    for conv, at in enumerate(convs, start=1):
        with torch.inference_mode():
            before = inputs
            for module in model.conv_layers[:at]:
                before = module(before)
            out = model.conv_layers[at](before)[0]
        for _ in range(5):
            ch = int(torch.randint(out.shape[0], (1,), generator=gen))
            r, c = (int(v) for v in torch.randint(out.shape[1] - 1, (2,), generator=gen))
            found = explain_position(model, config, image, conv, ch, r, c)
            assert found.patch.shape == found.kernel.shape == (before.shape[1], 3, 3)
            assert found.total == pytest.approx(float(out[ch, r, c]), abs=1e-4)
            assert float(found.channel_sums.sum()) + found.bias == pytest.approx(found.total, abs=1e-4)
            assert len(found.largest(5)) == min(5, before.shape[1])
            names = [s.name for s in found.steps]
            assert "max-pool" in names and "ReLU" in names and ("BatchNorm" in names) == (name != "cnn-seed")


def test_what_reaches_the_pooled_map_is_the_models_pooled_number(cnns, mnist):
    model, config = cnns["cnn-seed"]  # conv -> ReLU -> pool: the first pooled map is the model's 'pool1'
    image = mnist.test_images[0]
    pooled = [o for o in feature_maps(model, config, image) if "Pool" in o.kind][0].values  # [32, 13, 13]
    kept = dropped = 0
    for r in range(0, 26, 3):
        for c in range(0, 26, 5):
            found = explain_position(model, config, image, 1, 4, r, c)
            pool = found.steps[-1]
            assert pool.name == "max-pool" and pool.after == pytest.approx(float(pooled[4, r // 2, c // 2]), abs=1e-5)
            kept += found.pool_kept
            dropped += not found.pool_kept
    assert kept and dropped  # the pool keeps some numbers and drops others


def test_positions_outside_the_map_are_refused_plainly(cnns, mnist):
    model, config = cnns["cnn-seed"]
    with pytest.raises(ValueError, match="makes 32 maps of 26x26"):
        explain_position(model, config, mnist.test_images[0], 1, 0, 26, 0)
    with pytest.raises(ValueError, match="has 2 convolutions"):
        explain_position(model, config, mnist.test_images[0], 3, 0, 0, 0)
    edge = explain_position(model, config, mnist.test_images[0], 2, 0, 10, 10)  # 11x11 map: row 10 is in no window
    assert not edge.pool_kept and "in no 2x2 window" in edge.steps[-1].note
