"""The learning-rate finder on the real MNIST: the curve a class sees, and the rate it suggests."""

import math

import pytest
import torch

from digitlab.lr_find import finding, lr_find, steepest, valley
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


def _noisy_sweep(fall_from: float, fall_to: float, blow_up: float, seed: int = 0):
    """A sweep's raw losses as a real one looks: flat and noisy at chance, a fall between two rates, a floor, then a
    blow-up; 100 rates from 1e-7 to 10."""
    gen = torch.Generator().manual_seed(seed)
    lrs = [1e-7 * (1e8 ** (i / 99)) for i in range(100)]
    raw = []
    for lr in lrs:
        t = min(1.0, max(0.0, math.log(lr / fall_from) / math.log(fall_to / fall_from)))
        loss = 2.3 - 1.5 * t + (3 * math.log10(lr / blow_up) if lr > blow_up else 0.0)
        raw.append(loss + 0.02 * float(torch.randn(1, generator=gen)))
    return lrs, raw


def test_the_suggestion_sits_in_the_fall_not_in_the_noisy_flat_start():
    # fastai's valley on a lagging average chose 0.0071 for simple_net (preset 0.1): a run of small falls in the noise
    for seed in range(5):
        lrs, raw = _noisy_sweep(0.02, 0.5, 1.0, seed)
        found = finding(lrs, raw)
        assert 0.02 < found.valley < 0.5 and 0.02 < found.steepest < 0.5  # inside the fall of the raw losses
        assert found.suggestion == found.valley  # a constant rate: the valley
        assert 0.25 <= found.knee <= 0.5  # the fall ends near where the raw losses stop falling: no lag
        assert 0.75 < found.low < 1.0 and found.high == pytest.approx(2.3, abs=0.05)  # a short floor, smoothed
        assert max(found.losses) > found.high + 0.5  # the blow-up is in the curve; the chart clips it (low..high)


def test_a_one_cycle_setup_is_suggested_the_end_of_the_fall():
    lrs, raw = _noisy_sweep(1e-4, 2e-3, 2e-2)
    constant, one_cycle = finding(lrs, raw), finding(lrs, raw, schedule="onecycle")
    assert one_cycle.suggestion == one_cycle.knee > one_cycle.valley == constant.valley == constant.suggestion
    assert 1e-3 <= one_cycle.knee <= 2e-3


def test_a_loss_that_rises_and_dips_again_does_not_move_the_bottom():
    # cnn-fast's sweep: a floor at 2e-3..1e-2, a rise, then a lower dip at 0.1 while the steps are already too big
    lrs, raw = _noisy_sweep(1e-4, 2e-3, 1e-2)
    raw = [r if lr < 0.05 else 0.7 for lr, r in zip(lrs, raw)]
    found = finding(lrs, raw, schedule="onecycle")
    assert found.suggestion <= 2e-3 and found.low == pytest.approx(0.8, abs=0.1)
