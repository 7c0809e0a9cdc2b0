"""digitlab.metrics, robustness, embeddings, ranking and ui.evaluation on the real MNIST test set with the session's real trained models."""

import math

import numpy as np
import pytest
import torch

from digitlab import embeddings, metrics, ranking, robustness, train
from digitlab.store import ModelStore
from digitlab.ui import evaluation as words


@pytest.fixture(scope="module")
def loaded(trained):
    store = ModelStore()
    return {name: store.load(info.id) for name, info in trained.items()}


def test_predictions_confusion_and_scores_agree_with_training(mnist, loaded):
    model, info = loaded["mlp"]
    pred = metrics.predict(model, info.config, mnist)
    assert pred.probs.shape == (10_000, 10) and pred.class_names == metrics.DIGITS
    assert torch.allclose(pred.probs.sum(dim=1), torch.ones(10_000), atol=1e-4)
    cm = metrics.confusion_matrix(pred.targets, pred.predicted, 10)
    assert int(cm.sum()) == 10_000
    assert cm.sum(dim=1).tolist() == mnist.class_counts("test")
    # The diagonal is the accuracy fit() measured and the store recorded.
    assert float(cm.trace()) / 10_000 == pytest.approx(pred.accuracy)
    assert pred.accuracy == pytest.approx(info.metrics["test_accuracy"], abs=1e-6)
    scores = metrics.per_class_scores(cm, pred.class_names)
    for c, row in enumerate(scores):
        truly, called = pred.targets == c, pred.predicted == c
        hits = int((truly & called).sum())
        assert row["recall"] == pytest.approx(hits / int(truly.sum()))
        assert row["precision"] == pytest.approx(hits / int(called.sum()))
        assert row["F1"] == pytest.approx(2 * row["precision"] * row["recall"] / (row["precision"] + row["recall"]))
    assert sum(r["predicted as it"] for r in scores) == 10_000


def test_three_vs_seven_is_scored_on_3s_and_7s_as_two_classes(mnist, loaded):
    model, info = loaded["linear"]
    pred = metrics.predict(model, info.config, mnist)
    n37 = mnist.class_counts("test")[3] + mnist.class_counts("test")[7]
    assert pred.probs.shape == (n37, 2) and pred.class_names == ("7", "3")
    assert set(mnist.test_labels[pred.index].tolist()) == {3, 7}
    assert (mnist.test_labels[pred.index][pred.targets == 1] == 3).all()
    assert pred.accuracy == pytest.approx(info.metrics["test_accuracy"], abs=1e-6)
    cm = metrics.confusion_matrix(pred.targets, pred.predicted, 2)
    assert cm.sum(dim=1).tolist() == [mnist.class_counts("test")[7], mnist.class_counts("test")[3]]


def test_mistakes_cells_and_coverage(mnist, loaded):
    model, info = loaded["mlp"]
    pred = metrics.predict(model, info.config, mnist)
    rows = metrics.confident_mistakes(pred, 15)
    assert len(rows) == 15 and not pred.correct[rows].any()
    conf = pred.confidence[rows]
    assert (conf[:-1] >= conf[1:]).all()
    assert float(conf[0]) == pytest.approx(float(pred.confidence[~pred.correct].max()))

    table = metrics.mistakes_table(pred, 15)
    assert [r["test image"] for r in table] == pred.index[rows].tolist()
    assert all(r["true"] != r["predicted"] for r in table) and table[0]["probability"] == pytest.approx(float(conf[0]))

    cm = metrics.confusion_matrix(pred.targets, pred.predicted, 10)
    cell = metrics.cell_members(pred, 4, 9)
    assert len(cell) == int(cm[4, 9])
    assert (pred.targets[cell] == 4).all() and (pred.predicted[cell] == 9).all()

    everything = metrics.at_threshold(pred, 0.0)
    assert everything.answered == 10_000 and everything.accuracy == pytest.approx(pred.accuracy)
    assert metrics.at_threshold(pred, 1.01).answered == 0 and math.isnan(metrics.at_threshold(pred, 1.01).accuracy)
    curve = metrics.coverage_curve(pred)
    covs = [c.coverage for c in curve]
    assert all(a >= b for a, b in zip(covs, covs[1:]))
    # Only the sure answers: fewer of them, and more of them right.
    sure = metrics.at_threshold(pred, 0.99)
    assert sure.coverage < 1 and sure.accuracy > pred.accuracy


def test_perturbations_on_real_digits(mnist):
    x = mnist.test_images[:50]
    assert torch.equal(robustness.rotate(x, 90), torch.rot90(x, 1, dims=(1, 2)))  # a quarter turn moves pixels exactly
    assert torch.equal(robustness.rotate(x, 0), x)
    s = robustness.shift(x, 3)
    assert torch.equal(s[:, 3:, 3:], x[:, :-3, :-3]) and int(s[:, :3].sum()) == 0 and int(s[:, :, :3].sum()) == 0
    n1, n2 = robustness.add_noise(x, 50, seed=1), robustness.add_noise(x, 50, seed=1)
    assert torch.equal(n1, n2) and not torch.equal(n1, x)
    grey = torch.full((50, 28, 28), 128, dtype=torch.uint8)  # far from 0 and 255: nothing is clipped
    assert float((robustness.add_noise(grey, 20).float() - 128).std()) == pytest.approx(20, abs=0.5)
    t = robustness.thicken(x, 1)
    assert ((t > 0).sum(dim=(1, 2)) > (x > 0).sum(dim=(1, 2))).all() and (t >= x).all()
    dot = torch.zeros(1, 28, 28, dtype=torch.uint8)
    dot[0, 10, 10] = 200
    assert robustness.thicken(dot, 1)[0, 9:12, 9:12].eq(200).all() and int((robustness.thicken(dot, 1) > 0).sum()) == 9
    with pytest.raises(ValueError, match="unknown perturbation"):
        robustness.perturb(x, "blur", 1)


def test_robustness_starts_at_the_plain_accuracy_and_falls(mnist, loaded):
    model, info = loaded["mlp"]
    res = robustness.robustness(model, info.config, mnist, n=400)
    assert list(res) == list(robustness.PERTURBATIONS)
    pred = metrics.predict(model, info.config, mnist)
    rows = robustness.subsample(10_000, 400)
    plain = float(pred.correct[rows].float().mean())
    for kind, points in res.items():
        assert [lvl for lvl, _ in points] == robustness.PERTURBATIONS[kind][1]
        assert points[0][1] == pytest.approx(plain)
    assert res["rotation"][-1][1] < plain - 0.3 and res["shift"][-1][1] < plain - 0.3


def test_embeddings_from_pixels_and_every_hidden_layer(mnist, loaded):
    cnn, cnn_info = loaded["cnn"]
    layers = embeddings.embedding_layers(cnn)
    # Each block's ReLU and pool, the hidden ReLU, then the output layer.
    assert layers == [embeddings.RAW, "conv_layers.1", "conv_layers.2", "conv_layers.4", "conv_layers.5", "fc_layers.2",
                      "fc_layers.3"]
    imgs = mnist.test_images[:20]
    assert embeddings.layer_features(cnn, cnn_info.config, imgs, "conv_layers.2").shape == (20, 32 * 13 * 13)
    assert embeddings.layer_features(cnn, cnn_info.config, imgs, "fc_layers.2").shape == (20, 64)
    # the cached model is shared by every session: while another thread runs it on other images, what
    # layer_features returns is still this batch's, every time
    import threading

    stop, others = threading.Event(), mnist.test_images[100:107]

    def other_session():
        while not stop.is_set():
            train.predict_proba(cnn, cnn_info.config, others)

    worker = threading.Thread(target=other_session)
    worker.start()
    try:
        first = embeddings.layer_features(cnn, cnn_info.config, imgs, "fc_layers.2")
        for _ in range(15):
            assert torch.equal(embeddings.layer_features(cnn, cnn_info.config, imgs, "fc_layers.2"), first)
    finally:
        stop.set()
        worker.join()

    mlp, mlp_info = loaded["mlp"]
    assert embeddings.embedding_layers(mlp)[1:] == ["2", "3"]  # the ReLU's output, then the output layer
    emb = embeddings.embedding(mlp, mlp_info.config, mnist, embeddings.RAW, "pca", n=600)
    assert emb.coords.shape == (600, 2) and emb.dims == 784
    from sklearn.decomposition import PCA

    raw = mnist.test_images[emb.rows].reshape(600, -1).float().numpy() / 255
    assert emb.explained == pytest.approx(PCA(2).fit(raw).explained_variance_ratio_.sum(), abs=1e-3)
    hidden = embeddings.embedding(mlp, mlp_info.config, mnist, "2", "tsne", n=200)
    assert hidden.coords.shape == (200, 2) and np.isfinite(hidden.coords).all() and hidden.dims == 50
    # Same digit, nearby point: nearest neighbours in the t-SNE map mostly share the label.
    d = ((hidden.coords[:, None, :] - hidden.coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (hidden.targets[d.argmin(axis=1)] == hidden.targets).mean() > 0.7


def test_a_layer_of_one_number_still_maps_to_2d(mnist, loaded):
    lin, lin_info = loaded["linear"]
    assert embeddings.embedding_layers(lin) == [embeddings.RAW, "output"]
    for method in ("pca", "tsne"):
        emb = embeddings.embedding(lin, lin_info.config, mnist, "output", method, n=150)
        assert emb.coords.shape == (150, 2) and np.isfinite(emb.coords).all() and emb.dims == 1


def test_leaderboard_order_ten_digit_models_best_first(trained):
    ranked = ranking.ranked(ModelStore().list())
    assert {i.id for i in trained.values()} <= {i.id for i in ranked}
    tasks = [i.config.task for i in ranked]
    assert tasks == sorted(tasks, key=lambda t: t != "digits")  # 3-vs-7 (any pair) after every ten-class one
    digits = [i.metrics["test_accuracy"] for i in ranked if i.config.task == "digits"]
    assert digits == sorted(digits, reverse=True)


def test_the_confusion_cell_starts_on_the_commonest_mistake_and_follows_clicks(mnist, loaded):
    model, info = loaded["mlp"]
    pred = metrics.predict(model, info.config, mnist)
    cm = metrics.confusion_matrix(pred.targets, pred.predicted, 10)
    names = list(pred.class_names)
    state: dict = {}
    words.follow_cell(state, "t", "p", cm, names, [])
    t, p = int(names.index(state["t"])), int(names.index(state["p"]))
    off = cm.clone().fill_diagonal_(0)
    assert t != p and cm[t, p] == off.max()
    words.follow_cell(state, "t", "p", cm, names, [{"x": "9", "y": "4"}])  # a click on row 4, column 9
    assert (state["t"], state["p"]) == ("4", "9")
    state["t"] = "3"  # then the student changes the box: the same click does not move it back
    words.follow_cell(state, "t", "p", cm, names, [{"x": "9", "y": "4"}])
    assert state["t"] == "3"
    words.follow_cell(state, "t", "p", cm, names, [{"x": "ten", "y": "4"}])  # not a cell: ignored
    assert (state["t"], state["p"]) == ("3", "9")


def test_two_runs_of_one_preset_get_told_apart(trained):
    import copy

    twin = copy.deepcopy(trained["mlp"])
    twin.id = "another-run"
    names = ranking.display_names([trained["mlp"], twin, trained["cnn"]])
    assert names[twin.id].endswith("· another-run") and names[trained["mlp"].id].endswith(trained["mlp"].id)
    assert names[trained["cnn"].id] == trained["cnn"].title
    assert ranking.other_model([trained["mlp"], twin], trained["mlp"].id) == "another-run"
    assert ranking.other_model([trained["mlp"]], trained["mlp"].id) is None


def test_titles_tell_runs_apart_and_say_the_architecture_as_it_is(trained):
    import copy

    from digitlab.models import PRESETS, ModelInfo

    tutorial = ModelInfo("a", PRESETS["mlp-128-64"], created="2026-11-25T09:05:00+00:00")
    assert tutorial.title == "MLP 784-128-64-10 ReLU/Tanh · mlp-128-64 · 25 Nov 09:05"  # not "simple_net"
    fastai = ModelInfo("b", PRESETS["simple_net"].with_(lr=0.3, epochs=3), created="2026-11-25T14:32:10+00:00")
    assert fastai.title == "simple_net 784-50-10 · simple_net, lr 0.3, 3 ep · 25 Nov 14:32"
    # Five runs of one preset that differ in a setting, or only in when they ran, get five titles.
    runs = []
    for n, lr in enumerate((0.01, 0.03, 0.1, 0.1, 0.1)):
        run = copy.deepcopy(trained["mlp"])
        run.config, run.created = run.config.with_(lr=lr), f"2026-11-25T10:0{n}:00+00:00"
        runs.append(run)
    assert len({r.title for r in runs}) == 5


def _scored(info, accuracy, model_id):
    import copy

    twin = copy.deepcopy(info)
    twin.id, twin.metrics = model_id, {**info.metrics, "test_accuracy": accuracy}
    return twin


def test_pages_start_on_the_best_of_each_kind_and_never_on_a_broken_model(trained):
    lin, mlp, cnn = trained["linear"], trained["mlp"], trained["cnn"]
    broken_cnn = _scored(cnn, 0.097, "broken-cnn")
    better_mlp = _scored(mlp, mlp.metrics["test_accuracy"] + 0.001, "better-mlp")
    infos = [broken_cnn, lin, mlp, better_mlp, cnn]
    assert broken_cnn.broken and not cnn.broken
    assert [i.id for i in ranking.best_of_each_kind(infos)] == [lin.id, "better-mlp", cnn.id]  # 3 or 7?, MLP, CNN
    assert [i.id for i in ranking.best_of_each_kind(infos, limit=2)] == [lin.id, "better-mlp"]
    assert [i.id for i in ranking.best_of_each_kind([broken_cnn])] == []  # a broken model alone: nothing by default
    order = [i.id for i in ranking.picker_order(infos)]
    assert order[:3] == [cnn.id, "better-mlp", lin.id] and order[-1] == "broken-cnn"  # ten digits lead


def test_reliability_and_ece_on_a_case_worked_by_hand():
    # Ten answers at 0.95 confidence of which 8 are right, ten at 0.55 of which all 10 are right (two classes).
    probs = torch.tensor([[0.95, 0.05]] * 10 + [[0.55, 0.45]] * 10)
    targets = torch.tensor([0] * 8 + [1] * 2 + [0] * 10)
    r = metrics.reliability(probs, targets, bins=10)
    assert r.counts == [10, 10] and r.accuracy == pytest.approx([1.0, 0.8])
    assert r.confidence == pytest.approx([0.55, 0.95])
    assert r.ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)


def test_temperature_scaling_finds_the_temperature_that_made_a_model_underconfident():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6000, 10, generator=gen) * 4
    targets = torch.distributions.Categorical(logits=logits).sample()  # calibrated at T = 1 by construction
    soft = torch.softmax(logits / 2.0, dim=1)  # the same model made twice less sure, as label smoothing does
    pred = metrics.Predictions(soft, targets, torch.arange(6000), metrics.DIGITS)
    cal = metrics.calibrate(pred)
    assert cal.temperature == pytest.approx(0.5, rel=0.08)
    assert cal.before.ece > 0.1 and cal.after.ece < 0.03
    assert torch.equal(metrics.calibrated(pred).predicted, pred.predicted)  # the answers never change
    assert metrics.calibrated(pred).confidence.mean() > pred.confidence.mean()
    # no held-out images (a model trained before they were kept): T comes from half the test images, and the table
    # says so; with held-out images, T comes from them and the table counts them
    assert cal.held_out == 0 and words.calibration_rows({"m": cal})[0]["T fitted on"] == \
        "half the test images (an older model)"
    held_out = metrics.Predictions(soft[:500], targets[:500], torch.arange(500), metrics.DIGITS)
    by_held_out = metrics.calibrate(pred, held_out)
    assert by_held_out.held_out == 500 and by_held_out.temperature == pytest.approx(0.5, rel=0.2)
    assert words.calibration_rows({"m": by_held_out})[0]["T fitted on"] == "500 held-out training images"


def test_confidence_notes_say_what_shapes_the_confidence():
    from digitlab.models import PRESETS

    assert "label smoothing 0.1" in words.confidence_note(PRESETS["cnn-fast"])
    assert "91%" in words.confidence_note(PRESETS["cnn-fast"])  # 1 - 0.1 + 0.1 / 10
    assert "softmax" in words.confidence_note(PRESETS["simple_net"])
    assert "LogSoftmax" in words.confidence_note(PRESETS["mlp-128-64"])
    assert "sigmoid" in words.confidence_note(PRESETS["linear-better"])
