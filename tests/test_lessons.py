"""The Linear and MLP stages' teaching steps, run on the real MNIST."""

import pytest
import torch

from digitlab import lessons, mlp_lessons
from digitlab.models import PRESETS, build_model, count_parameters
from digitlab.train import ConfigError
from digitlab.ui import run_words


def test_pixel_baseline_uses_every_test_3_and_7(mnist):
    b = lessons.pixel_baseline(mnist)
    labels = mnist.test_labels
    assert b.names == ("3", "7") and (b.n_yes, b.n_no) == (int((labels == 3).sum()), int((labels == 7).sum()))
    means = mnist.mean_images("train") / 255
    assert torch.allclose(b.mean_yes, means[3], atol=1e-4) and torch.allclose(b.mean_no, means[7], atol=1e-4)
    for kind in ("l1", "l2"):
        acc = b.accuracy[kind]
        assert 0.9 < acc["all"] < 1.0
        assert acc["all"] == pytest.approx((acc["yes"] * b.n_yes + acc["no"] * b.n_no) / (b.n_yes + b.n_no), abs=1e-6)


def test_distances_and_the_baselines_answer(mnist):
    b = lessons.pixel_baseline(mnist)
    assert float(lessons.mnist_distance(b.mean_yes, b.mean_yes)) == 0.0
    assert bool(lessons.is_3(b.mean_yes, b.mean_yes, b.mean_no))
    assert not bool(lessons.is_3(b.mean_no, b.mean_yes, b.mean_no, "l2"))
    pool, labels = lessons.pick_pair(mnist)
    assert set(labels.tolist()) == {3, 7}
    d = lessons.digit_distances(pool[0], b)
    for kind in ("l1", "l2"):
        assert d[kind]["says"] == ("3" if d[kind]["to yes"] < d[kind]["to no"] else "7")
    # RMS is never below the mean absolute difference.
    assert d["l2"]["to yes"] >= d["l1"]["to yes"]
    with pytest.raises(ValueError):
        lessons.mnist_distance(b.mean_yes, b.mean_no, "l3")


def test_any_pair_of_fashion_classes(fashion):
    """Shirt vs T-shirt/top, the hard pair: the same baseline and one step, on those two classes only."""
    b = lessons.pixel_baseline(fashion, (6, 0))
    labels = fashion.test_labels
    assert b.names == ("Shirt", "T-shirt/top") and (b.n_yes, b.n_no) == (int((labels == 6).sum()), int((labels == 0).sum()))
    easy = lessons.pixel_baseline(fashion, (1, 9))  # Trouser vs Ankle boot
    assert b.accuracy["l1"]["all"] < easy.accuracy["l1"]["all"]  # the hard pair is harder for the baseline
    xb, yb = lessons.first_batch(fashion, 512, pair=(6, 0))
    pool, pool_labels = lessons.pick_pair(fashion, (6, 0))
    assert set(pool_labels.tolist()) == {0, 6} and 0.3 < float(yb.mean()) < 0.7
    step = lessons.one_sgd_step(fashion, init_std=0.01, pair=(6, 0))
    assert step.after.loss < step.before.loss


def test_one_sgd_step_moves_weights_against_the_gradient(mnist):
    step = lessons.one_sgd_step(mnist, init_std=0.01, lr=1.0, batch_size=256)
    assert step.before.predictions.shape == (256, 1)
    assert torch.allclose(step.after.weights, step.before.weights - 1.0 * step.weight_grad, atol=1e-6)
    assert step.after.bias == pytest.approx(step.before.bias - step.bias_grad, abs=1e-6)
    assert step.after.loss < step.before.loss
    with pytest.raises(ConfigError):
        lessons.first_batch(mnist, batch_size=10**6)


def test_linear_steps_leave_the_global_generator_alone(mnist):
    """Pages rerun while a class trains: the linear stage draws from its own generators only."""
    before = torch.get_rng_state()
    lessons.one_sgd_step(mnist, init_std=0.01)
    lessons.init_report(mnist, 1.0)
    lessons.accuracy_is_not_the_loss(mnist)
    lessons.init_weights(1.0)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(42)  # the same numbers as the seed's way of starting Linear1
    assert torch.equal(lessons.init_weights(0.01, 42), (torch.randn(28 * 28, 1) * 0.01)[:, 0].reshape(28, 28))


def test_seed_init_saturates_the_sigmoid(mnist):
    seed, better = lessons.init_report(mnist, 1.0), lessons.init_report(mnist, 0.01)
    assert seed.saturated > 0.5 and better.saturated == 0.0
    assert better.mean_abs_grad > 3 * seed.mean_abs_grad
    assert lessons.init_weights(1.0).std() > 50 * lessons.init_weights(0.01).std()


def test_a_tiny_change_moves_the_loss_but_not_the_accuracy(mnist):
    r = lessons.accuracy_is_not_the_loss(mnist, init_std=1.0)
    assert r.tiny_loss_change < 0
    assert r.tiny_accuracy_change == 0.0
    assert len(set(r.accuracies.tolist())) > 1  # bigger moves do change it, in jumps
    assert len(set(r.losses.tolist())) == len(r.losses)  # every move changes the loss


def test_scratch_simple_net_equals_nn_sequential(mnist):
    eq = mlp_lessons.scratch_vs_nn(mnist, n_hidden=50, n_images=5)
    assert eq.scratch_out.shape == eq.nn_out.shape == (5, 10)
    assert eq.max_abs_diff < 1e-5 and eq.same_predictions
    assert eq.scratch_params == eq.nn_params == 784 * 50 + 50 + 50 * 10 + 10


def test_chain_rule_check_agrees_with_autograd_and_is_computed_once(mnist):
    check = mlp_lessons.chain_rule_vs_autograd(mnist)
    assert set(check.largest_difference) == {"w1", "b1", "w2", "b2"}
    assert max(check.largest_difference.values()) < 1e-5
    assert check.loss == pytest.approx(check.autograd_loss, abs=1e-5) and 1.5 < check.loss < 3.5  # near ln(10)
    assert mlp_lessons.chain_rule_vs_autograd(mnist) is check  # every later visitor gets the same answer at once


def test_the_mlp_stage_never_touches_the_global_generator(mnist):
    before = torch.get_rng_state()
    mlp_lessons.scratch_vs_nn.cache_clear()
    mlp_lessons.chain_rule_vs_autograd.cache_clear()
    mlp_lessons.layer_rows.cache_clear()
    mlp_lessons.scratch_vs_nn(mnist)
    mlp_lessons.chain_rule_vs_autograd(mnist)
    mlp_lessons.layer_rows(PRESETS["cnn-best"])
    run_words.how_fit_trains(PRESETS["mlp-128-64"])
    assert torch.equal(torch.get_rng_state(), before)


def test_how_fit_trains_says_what_fit_will_run(monkeypatch):
    monkeypatch.setenv("DIGITLAB_PRECISION", "auto")
    text = run_words.how_fit_trains(PRESETS["mlp-128-64"])
    assert "loss.backward()" in text and "zero_grad()" in text and "bfloat16" not in text
    monkeypatch.setenv("DIGITLAB_PRECISION", "bf16")
    assert "torch.autocast" in run_words.how_fit_trains(PRESETS["mlp-128-64"])
    assert "p -= lr * p.grad" in run_words.how_fit_trains(PRESETS["simple_net"].with_(form="scratch"))


def test_parse_hidden_and_layer_rows():
    assert mlp_lessons.parse_hidden("128, 64") == (128, 64)
    assert mlp_lessons.parse_hidden(" 50 ") == (50,)
    for bad in ("", "0", "50, x", "-3", "1,2,3,4,5,6,7", "10000"):
        with pytest.raises(ConfigError):
            mlp_lessons.parse_hidden(bad)
    config = PRESETS["mlp-128-64"]
    rows, total = mlp_lessons.layer_rows(config)
    assert total == count_parameters(build_model(config)) == sum(r["parameters"] for r in rows)
    assert [r["output shape"] for r in rows if r["type"] == "Linear"] == ["128", "64", "10"]


def test_check_training_refuses_a_batch_larger_than_the_data(mnist):
    config = PRESETS["simple_net"].with_(train_limit=1000, batch_size=2000)
    with pytest.raises(ConfigError, match="larger than the 1000 training images"):
        mlp_lessons.check_training(config, mnist)
    assert mlp_lessons.check_training(config.with_(batch_size=100), mnist) == 1000


def test_classify_view_and_weights_of_trained_models(mnist, trained):
    from digitlab.store import ModelStore

    store = ModelStore()
    model, info = store.load(trained["mlp"].id)
    view = mlp_lessons.classify_view(model, info.config, mnist, n=4, seed=1)
    assert view.probs.shape == (4, 10) and view.class_names == [str(d) for d in range(10)]
    assert torch.allclose(view.probs.sum(1), torch.ones(4), atol=1e-5)
    assert all(0 <= v <= 9 for v in view.labels)

    model, info = store.load(trained["linear"].id)
    view = mlp_lessons.classify_view(model, info.config, mnist, n=3)
    assert view.class_names == ["7", "3"] and set(view.labels) <= {3, 7}
    w = lessons.linear_weights(model)
    assert w.shape == (28, 28) and float(w.abs().max()) > 0


def test_run_verdict_flags_a_run_that_learned_nothing():
    config = PRESETS["simple_net"].with_(lr=10.0)
    assert "10" in run_words.run_verdict(config, [{"test_accuracy": 0.101}])
    assert run_words.run_verdict(config, [{"test_accuracy": 0.95}]) == ""
    assert run_words.run_verdict(PRESETS["linear-seed"], [{"test_accuracy": 0.55}])
    assert run_words.run_verdict(config, []) == ""


def test_learned_pattern_starts_from_the_models_own_init(mnist, trained):
    from digitlab.store import ModelStore

    model, info = ModelStore().load(trained["linear"].id)
    fresh = build_model(info.config)
    assert torch.equal(lessons.linear_weights(fresh), lessons.init_weights(info.config.init_std, info.config.seed))
    change = lessons.learned_pattern(model, info.config)
    assert torch.allclose(change, lessons.linear_weights(model) - lessons.linear_weights(fresh))
    assert float(change.abs().max()) > 0
    assert lessons.learned_pattern(model, PRESETS["simple_net"]) is None


def test_linear_weights_reads_both_forms():
    scratch = build_model(PRESETS["linear-better"])
    nn_form = build_model(PRESETS["linear-better"].with_(form="nn"))
    assert torch.equal(lessons.linear_weights(scratch), scratch.weights.detach()[:, 0].reshape(28, 28))
    assert torch.equal(lessons.linear_weights(nn_form), nn_form[1].weight.detach()[0].reshape(28, 28))
    with pytest.raises(ValueError):
        lessons.linear_weights(torch.nn.Linear(3, 2))


def test_by_hand_adjusts_what_the_hand_written_net_cannot_do():
    config, changed = mlp_lessons.by_hand(PRESETS["mlp-128-64"])
    assert config.hidden == (128,) and config.activations == ("relu",) and config.optimizer == "sgd"
    assert config.form == "scratch" and config.loss == "cross_entropy"
    assert len(changed) == 4
    same, nothing = mlp_lessons.by_hand(PRESETS["simple_net"])
    assert nothing == [] and same == PRESETS["simple_net"].with_(form="scratch")


def test_a_continued_run_is_captioned_once_and_drawn_as_its_own_segment():
    import copy

    from digitlab import viz
    from digitlab.models import ModelInfo

    parent = [{"epoch": e, "test_accuracy": 0.9 + e / 100, "train_loss": 1 / e} for e in range(1, 21)]
    child = parent + [{"epoch": 21, "test_accuracy": 0.95, "train_loss": 0.01}]
    info = ModelInfo("x", PRESETS["simple_net"].with_(epochs=21), history=child)
    caption = run_words.trained_caption(info)
    assert caption.endswith("; trained for 21 epochs") and caption.count("21") == 1
    fig = viz.runs_overlay({"1. parent": parent, "2. one more": copy.deepcopy(child)})
    first, second = fig.data
    assert list(first.x) == list(range(1, 21))
    assert list(second.x) == [20, 21] and second.line.dash == "dash"  # from where it branched off, not over it
    own = viz.runs_overlay({"1. a": parent, "2. b": [dict(h, test_accuracy=0.5) for h in parent]})
    assert [list(t.x) for t in own.data] == [list(range(1, 21))] * 2  # two separate runs: both whole
