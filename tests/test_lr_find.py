"""The learning-rate finder on the real MNIST: the curve a class sees, and the rate it suggests."""

import math

import pytest
import torch

from digitlab.lr_find import lr_find, steepest, valley
from digitlab.models import PRESETS


def test_the_sweep_from_the_tutorials_mlp_suggests_a_rate_near_the_tutorials(mnist):
    config = PRESETS["mlp-128-64"]
    before = torch.random.get_rng_state()
    found = lr_find(config, mnist)
    assert torch.equal(torch.random.get_rng_state(), before)  # a page may call it: the global generator is untouched
    assert 50 <= len(found.lrs) <= 100 and len(found.losses) == len(found.lrs)
    ratios = [b / a for a, b in zip(found.lrs, found.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios)) and found.lrs[0] == pytest.approx(1e-7)  # exponential from 1e-7
    assert found.losses[0] == pytest.approx(math.log(10), abs=0.1)  # an untrained 10-class net: chance
    assert min(found.losses) < found.losses[0] - 0.3  # it fell...
    assert found.losses[-1] > min(found.losses)  # ...and rose again once the steps got too big
    # the tutorial trains this net at 0.01; the suggestion lands within a factor of ten of it
    assert 1e-3 <= found.valley <= 1e-1 and found.suggestion == found.valley
    assert found.lrs[0] < found.steepest < found.lrs[-1]


def test_the_same_config_gives_the_same_curve(mnist):
    config = PRESETS["simple_net"].with_(train_limit=5000)
    a, b = lr_find(config, mnist, steps=40), lr_find(config, mnist, steps=40)
    assert a.losses == b.losses and a.valley == b.valley


def test_valley_and_steepest_on_a_known_curve():
    lrs = [10 ** (-6 + i * 0.1) for i in range(61)]  # 1e-6 .. 1
    # flat, then falling from 1e-4 to 1e-2, then blowing up
    losses = [2.3 if lr < 1e-4 else (2.3 - 0.5 * math.log10(lr / 1e-4) if lr < 1e-2 else 1.3 + 5 * math.log10(lr / 1e-2))
              for lr in lrs]
    assert 1e-4 < valley(lrs, losses) < 1e-2  # inside the fall, before the bottom
    assert 1e-4 <= steepest(lrs, losses) <= 1e-2
