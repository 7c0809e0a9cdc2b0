"""digitlab.features on the real MNIST and the session's real trained models (the `trained` fixture)."""

import copy
import math

import pytest
import torch

from digitlab import architecture, ranking, saliency, untrained
from digitlab import features as ft
from digitlab.models import PRESETS, DigitCNN, build_model, count_parameters, layer_table
from digitlab.store import ModelStore
from digitlab.train import fit, predict_proba, prepare
from digitlab.ui import notes


@pytest.fixture(scope="module")
def models(trained):
    store = ModelStore()
    return {name: store.load(info.id) for name, info in trained.items()}


def _image(mnist, digit: int, nth: int = 0):
    return mnist.test_images[int((mnist.test_labels == digit).nonzero()[nth])]


@pytest.mark.parametrize("preset", ["cnn-seed", "cnn-fast"])
def test_architecture_shows_the_seeds_arithmetic(preset):
    net = build_model(PRESETS[preset])
    rows = architecture.architecture(net)
    measured = layer_table(net)
    assert [(r["layer"], r["output shape"], r["parameters"]) for r in rows] == \
        [(r["layer"], r["output shape"], r["parameters"]) for r in measured]
    assert architecture.map_sizes(rows) == [28, 26, 13, 11, 5]
    assert architecture.flatten_row(rows)["why this shape"].startswith("64 · 5 · 5 = 1600")
    assert sum(r["parameters"] for r in rows) == count_parameters(net)
    convs = [r for r in rows if r["type"] == "Conv2d"]
    assert convs[0]["why this shape"] == "32 maps of 28 − 3 + 1 = 26"
    assert convs[0]["why these parameters"].endswith(f"= {convs[0]['parameters']:,}")
    notes = architecture.variant_notes(rows)
    assert bool(notes) == any(r["type"] in ("BatchNorm2d", "Dropout") for r in rows)
    assert (preset == "cnn-seed") == (notes == [])


def test_variant_notes_read_the_layer_order():
    pool_first = [{"type": t} for t in ("Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU", "Flatten", "Linear")]
    assert any("max-pooling straight after" in n for n in architecture.variant_notes(pool_first))
    seed = [{"type": t} for t in ("Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "Dropout", "Linear")]
    assert [n.split(" ")[0] for n in architecture.variant_notes(seed)] == ["dropout"]


def test_feature_maps_have_the_shapes_layer_table_measures(mnist, models):
    image = _image(mnist, 7)
    for net, config in [(models["cnn"][0], models["cnn"][1].config),
                        (build_model(PRESETS["cnn-fast"]).eval(), PRESETS["cnn-fast"])]:
        expected = {r["layer"]: r["output shape"] for r in layer_table(net) if r["type"] in ("Conv2d", "MaxPool2d")}
        maps = ft.feature_maps(net, config, image)
        assert [(m.name, m.shape) for m in maps] == list(expected.items())
        assert all(m.is_maps and m.values.abs().sum() > 0 for m in maps)
    model, info = models["cnn"]
    # The first map stack is the first convolution applied to the image, by hand.
    x = prepare(image.reshape(1, 28, 28), info.config)
    conv = ft.first_conv(model)
    assert torch.allclose(ft.feature_maps(model, info.config, image)[0].values, conv(x)[0].detach(), atol=1e-5)


def test_first_filters_are_the_first_convolutions_weights(models):
    model, _ = models["cnn"]
    filters = ft.first_filters(model)
    assert filters.shape == (32, 3, 3)
    assert torch.equal(filters, model.conv_layers[0].weight.detach()[:, 0])
    assert ft.first_filters(models["mlp"][0]) is None


def test_first_layer_rows_of_every_form(models):
    mlp, _ = models["mlp"]
    rows, bias = ft.first_layer(mlp)
    assert rows.shape == (50, 784) and torch.equal(rows, mlp[1].weight.detach())
    assert torch.equal(bias, mlp[1].bias.detach())
    lin, info = models["linear"]
    assert info.config.form == "scratch"
    rows, bias = ft.first_layer(lin)
    assert rows.shape == (1, 784) and torch.equal(rows[0], lin.weights.detach()[:, 0])
    scratch = build_model(PRESETS["simple_net"].with_(form="scratch"))
    rows, _ = ft.first_layer(scratch)
    assert rows.shape == (50, 784) and torch.equal(rows, scratch.w1.detach().T)
    assert ft.first_layer(models["cnn"][0]) is None  # its first Linear reads 1600 pooled numbers, not pixels
    assert ft.weight_images(rows).shape == (50, 28, 28)
    assert torch.equal(ft.weight_images(rows)[3].reshape(-1), rows[3])


def test_units_sorted_by_weight_norm(models):
    rows, _ = ft.first_layer(models["mlp"][0])
    order = ft.unit_order(rows, "norm")
    norms = rows.norm(dim=1)
    assert sorted(order.tolist()) == list(range(50))
    assert all(norms[a] >= norms[b] for a, b in zip(order[:-1], order[1:]))
    assert norms[order[0]] == norms.max() and norms[order[-1]] == norms.min()
    assert ft.unit_order(rows, "index").tolist() == list(range(50))
    with pytest.raises(ValueError):
        ft.unit_order(rows, "colour")


def test_units_that_fire_are_the_strongest_and_add_up(mnist, models):
    model, info = models["mlp"]
    image = _image(mnist, 3)
    fire = ft.units_that_fire(model, info.config, image, k=6)
    rows, bias = ft.first_layer(model)
    x = prepare(image.reshape(1, 28, 28), info.config)[0]
    hidden = (rows @ x + bias).clamp(min=0)
    assert fire.units.tolist() == hidden.topk(6).indices.tolist()
    assert torch.allclose(fire.values, hidden[fire.units], atol=1e-5)
    assert fire.layer.endswith("ReLU") and fire.weights.shape == (6, 28, 28)
    # Weight x pixel, summed, plus the bias, is the unit's input.
    assert torch.allclose(fire.contributions.sum(dim=(1, 2)) + bias[fire.units], fire.pre_activations, atol=1e-4)
    acts = ft.activations(model, info.config, image)
    assert [a.values.shape[0] for a in acts] == [50, 10]
    # The linear model has no hidden layer: its one output is the unit.
    lin, lin_info = models["linear"]
    one = ft.units_that_fire(lin, lin_info.config, image, k=8)
    assert one.units.tolist() == [0] and one.layer.startswith("output")
    assert ft.units_that_fire(models["cnn"][0], models["cnn"][1].config, image) is None


def test_filters_that_fire(mnist, models):
    model, info = models["cnn"]
    fire = ft.filters_that_fire(model, info.config, _image(mnist, 0), k=5)
    assert fire.weights.shape == (5, 3, 3) and fire.maps.shape == (5, 26, 26)
    assert fire.values.tolist() == sorted(fire.values.tolist(), reverse=True)
    assert torch.allclose(fire.maps.mean(dim=(1, 2)), fire.values, atol=1e-5)


@pytest.mark.parametrize("name", ["linear", "mlp", "cnn"])
def test_saliency_has_the_image_shape_and_points_at_pixels(mnist, models, name):
    model, info = models[name]
    image = _image(mnist, 3)
    ex = saliency.explain(model, info.config, image)
    probs = predict_proba(model, info.config, image.reshape(1, 28, 28))[0]
    assert ex.target == int(probs.argmax()) and torch.allclose(ex.probs, probs)
    assert ex.saliency.shape == (28, 28) and (ex.saliency >= 0).all()
    assert ex.saliency.max() > 0 and (ex.saliency > 0.05 * ex.saliency.max()).sum() > 30  # not one hot pixel
    assert ex.grad_x_input.shape == (28, 28)
    assert all(p.grad is None for p in model.parameters())  # the shared model collects no gradients
    if name == "cnn":
        cam = ex.grad_cam
        assert cam.shape == (28, 28) and cam.min() >= 0 and math.isclose(float(cam.max()), 1.0, rel_tol=1e-5)
        assert ex.cam_layer == "conv_layers.4"  # the ReLU after the last convolution
        # Grad-CAM looks where the digit is: more of it on the ink than on the paper.
        ink = image.float() > 50
        assert cam[ink].mean() > cam[~ink].mean()
    else:
        assert ex.grad_cam is None
    other = saliency.explain(model, info.config, image, 0 if ex.target != 0 else 1)
    if name == "linear":
        # One output: "7" is minus "3", so the size of the gradient is the same (the weights), its sign flips.
        assert torch.allclose(ex.saliency, model.weights.detach()[:, 0].abs().reshape(28, 28))
        assert torch.allclose(other.grad_x_input, -ex.grad_x_input)
    else:
        assert not torch.allclose(other.saliency, ex.saliency)
    with pytest.raises(ValueError):
        saliency.explain(model, info.config, image, target=len(probs))


@pytest.mark.slow  # the training process, started and waited for
def test_the_initial_model_is_the_runs_real_start(mnist, store, monkeypatch):
    """The training worker starts from the weights initial_model rebuilds: trained here from that start, with
    the worker's thread count, they end as the worker's model did, bit for bit."""
    from digitlab.runs.execute import worker_threads
    from digitlab.runs.queue import JobQueue
    from digitlab.train import fit

    queue = JobQueue(store)
    config = PRESETS["cnn-fast"].with_(epochs=1, train_limit=600)
    try:
        snap = queue.wait(queue.submit(config, mnist).id, timeout=120)
    finally:
        queue.close()
    assert snap.state == "done", snap.error
    start = untrained.initial_model(config)
    here = copy.deepcopy(start)
    threads = torch.get_num_threads()
    monkeypatch.setenv("DIGITLAB_THREADS", str(worker_threads()))
    try:
        torch.rand(3)  # whatever the global generator did before
        for _ in fit(here, config, mnist):
            pass
    finally:
        torch.set_num_threads(threads)
    trained, _ = store.load(snap.model_id)
    assert all(torch.equal(a, b) for a, b in zip(here.state_dict().values(), trained.state_dict().values()))
    change = untrained.weight_change(start, trained)
    assert {r["weights"] for r in change} == {n for n, _ in trained.named_parameters()}
    assert all(r["moved (norm of the change)"] > 0 for r in change)
    assert not torch.equal(ft.first_filters(start), ft.first_filters(trained))


def test_training_from_the_initial_model_gives_the_stored_model(mnist, models):
    """fit() starts from exactly these weights: replaying it reproduces the stored MLP."""
    trained, info = models["mlp"]
    model = untrained.initial_model(info.config)
    for _ in fit(model, info.config, mnist):
        pass
    for (name, a), b in zip(model.state_dict().items(), trained.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4), name


def test_accuracy_before_and_after(mnist, models, trained):
    model, info = models["mlp"]
    before = untrained.accuracy(untrained.initial_model(info.config), info.config, mnist, n=2000)
    after = untrained.accuracy(model, info.config, mnist)
    assert before < 0.3 and after > 0.85
    assert after == pytest.approx(info.metrics["test_accuracy"], abs=1e-6)


def test_models_side_by_side_in_stage_order_best_first(trained):
    infos = list(trained.values())
    assert [i.config.kind for i in ranking.side_by_side(infos)] == ["linear", "mlp", "cnn"]
    extra = copy.deepcopy(trained["cnn"])
    extra.id, extra.metrics = "another-cnn", {"test_accuracy": 0.5}
    better = copy.deepcopy(trained["cnn"])
    better.id, better.metrics = "better-cnn", {"test_accuracy": 0.999}
    ordered = ranking.side_by_side([extra, *infos, better])
    assert [i.id for i in ordered if i.config.kind == "cnn"] == ["better-cnn", trained["cnn"].id, "another-cnn"]
    assert [i.id for i in ranking.side_by_side([extra, *infos, better], best_only=True)] == \
        [trained["linear"].id, trained["mlp"].id, "better-cnn"]


def test_before_after_pictures_and_their_note(models):
    for name in ("mlp", "cnn"):
        model, info = models[name]
        start = untrained.initial_model(info.config)
        (t0, before, labels), (t1, after, _) = untrained.before_after(start, model)
        assert t0.startswith("Before training") and t1.startswith("After training")
        if name == "mlp":
            rows, _ = ft.first_layer(model)
            top = ft.unit_order(rows, "norm")[:10]
            assert labels == [f"unit {int(u)}" for u in top]
            assert torch.equal(after, ft.weight_images(rows[top]))
            assert torch.equal(before, ft.weight_images(ft.first_layer(start)[0][top]))
        else:
            assert torch.equal(after, ft.first_filters(model)) and torch.equal(before, ft.first_filters(start))
        change = untrained.weight_change(start, model)
        note = notes.before_after_note(info.config, untrained.before_after(start, model), change)
        assert f"by {change[0]['moved ÷ norm before']:.0%} of their starting size" in note
        assert ("The same 10 units" in note) == (name == "mlp")


def test_grad_cam_reads_the_last_blocks_rectified_maps(mnist):
    """Past batch norm and pooling to the ReLU, whatever order the preset puts them in."""
    image = _image(mnist, 2)
    for name in ("cnn-fast", "cnn-best"):
        config = PRESETS[name]
        net = build_model(config).eval()
        ex = saliency.explain(net, config, image)
        order = [n for n, _ in ft.leaf_layers(net)]
        last_conv = max((n for n, _ in ft.leaf_layers(net, (torch.nn.Conv2d,))), key=order.index)
        after = order[order.index(last_conv) + 1:]
        relu = next(n for n in after if isinstance(net.get_submodule(n), torch.nn.ReLU))
        assert ex.cam_layer == relu and ex.grad_cam.shape == (28, 28)


def test_a_digitcnn_without_batch_norm_classes_still_walks(mnist):
    """Layers are found by walking, so a plain DigitCNN() works without any config of its own."""
    net = DigitCNN().eval()
    maps = ft.feature_maps(net, PRESETS["cnn-seed"], _image(mnist, 1))
    assert [m.kind for m in maps] == ["Conv2d", "MaxPool2d", "Conv2d", "MaxPool2d"]


def test_saliency_of_a_log_softmax_model_traces_the_logit(mnist):
    """The PyTorch tutorial's MLP ends in LogSoftmax: the score explained is the number before it."""
    config = PRESETS["mlp-128-64"]
    model = build_model(config).eval()
    image = _image(mnist, 5)
    ex = saliency.explain(model, config, image, target=5)
    x = prepare(image.reshape(1, 28, 28), config).requires_grad_(True)
    logits = model[:-1](x)  # everything but the LogSoftmax
    (grad,) = torch.autograd.grad(logits[0, 5], x)
    assert torch.allclose(ex.saliency, grad.abs().reshape(28, 28), atol=1e-6)
    assert ft.paper_value(config.with_(norm="half")) == -1.0 and ft.paper_value(config.with_(norm="none")) == 0.0


def test_two_sessions_looking_inside_one_shared_model_do_not_mix(mnist, models):
    """Streamlit runs each browser session in its own thread, on the same cached model."""
    import threading

    model, info = models["cnn"]
    images = {d: _image(mnist, d) for d in (1, 8)}
    expected = {d: [m.values for m in ft.feature_maps(model, info.config, im)] for d, im in images.items()}
    problems = []

    def look(d):
        for _ in range(15):
            got = [m.values for m in ft.feature_maps(model, info.config, images[d])]
            ex = saliency.explain(model, info.config, images[d])
            if len(got) != 4 or not all(torch.equal(a, b) for a, b in zip(got, expected[d])) or ex.grad_cam is None:
                problems.append(d)

    threads = [threading.Thread(target=look, args=(d,)) for d in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems
    assert not any(m._forward_hooks for m in model.modules())  # nothing left on the shared model
