"""The Evaluate page under the real Streamlit runtime, with the session's real trained models."""

import contextlib
import json
from pathlib import Path

import pytest
from pagetools import damaged_copy, open_page
from streamlit.testing.v1 import AppTest

from digitlab.store import ModelStore

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "7_Evaluate.py")


def _metrics(at) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


def _frames(at, first_column: str | None = None, has: str | None = None) -> list:
    out = []
    for d in at.dataframe:
        df = d.value
        if first_column is not None and (len(df.columns) == 0 or not str(df.columns[0]).startswith(first_column)):
            continue
        if has is not None and has not in df.columns:
            continue
        out.append(df)
    return out


def _open(model_id: str, **state) -> AppTest:
    return open_page(PAGE, eval_model=model_id, **state)


def _show(at, section: str) -> AppTest:
    """Open one section with the page's section chooser, as a student clicks it."""
    at.session_state["eval_section"] = section
    return at.run()


def test_confusion_matrix_sums_to_the_test_set_and_matches_the_accuracy(mnist, trained):
    info = trained["mlp"]
    at = _open(info.id)
    assert not at.exception and not at.error
    shown = dict(_metrics(at))
    assert shown["Test images"] == f"{len(mnist.test_images):,}" == "10,000"
    (cm,) = _frames(at, "pred ")
    assert int(cm.values.sum()) == 10_000
    assert cm.values.sum(axis=1).tolist() == mnist.class_counts("test")
    assert shown["Accuracy"] == f"{cm.values.trace() / 10_000:.2%}" == f"{info.metrics['test_accuracy']:.2%}"
    assert shown["Mistakes"] == f"{10_000 - int(cm.values.trace()):,}"
    # Only the open section is drawn: nothing of the others (robustness, leaderboard) was computed.
    assert not _frames(at, "rank") and not _frames(at, "model", has="change") and not _frames(at, "class")

    (scores,) = _frames(_show(at, "Per-class scores"), "class")
    assert scores["test images"].sum() == 10_000
    assert scores["recall"].tolist() == pytest.approx((cm.values.diagonal() / cm.values.sum(axis=1)).tolist())

    # The fallback cell picker: the images of one cell, as many as the matrix says.
    _show(at, "Confusion matrix")
    at.selectbox(key=f"cm_true_{info.id}").set_value("4")
    at.selectbox(key=f"cm_pred_{info.id}").set_value("9")
    at.run()
    n49 = int(cm.loc["true 4", "pred 9"])
    assert any(f"**{n49:,}** test images are **4** and were called **9**" in m.value for m in at.markdown)

    # Threshold 0 answers everything at the plain accuracy; a high one answers fewer.
    _show(at, "Confidence threshold")
    at.slider(key="eval_threshold").set_value(0.0).run()
    shown = dict(_metrics(at))
    assert shown["Answered"] == "10,000 of 10,000" and shown["Accuracy on those"] == shown["Accuracy"]
    at.slider(key="eval_threshold").set_value(0.99).run()
    answered = int(dict(_metrics(at))["Answered"].split(" of ")[0].replace(",", ""))
    assert 0 < answered < 10_000

    (mistakes,) = _frames(_show(at, "Confident mistakes"), "test image")
    assert (mistakes["true"] != mistakes["predicted"]).all() and mistakes["probability"].is_monotonic_decreasing
    robust = _frames(_show(at, "Robustness"), "model", has="change")[0]
    plain = robust[(robust["level"] == 0)]["accuracy"]
    assert set(robust["change"]) == {"rotation", "shift", "noise", "thickening"} and plain.nunique() == 1
    assert len(at.get("plotly_chart")) == 2  # the changed examples and the curves

    (board,) = _frames(_show(at, "Leaderboard"), "rank")
    assert {i.id for i in trained.values()} <= set(board["id"])
    assert board["rank"].tolist() == list(range(1, len(board) + 1))
    assert list(board.columns[:3]) == ["rank", "model", "test accuracy"]  # what matters first, at every width
    assert set(board["question"]) >= {"which digit?", "3 or 7?"}  # what each model answers, in words
    digits = board[board["question"] != "3 or 7?"]["test accuracy"].tolist()
    assert digits == sorted(digits, reverse=True)  # best first


def test_three_vs_seven_and_comparing_two_models(mnist, trained):
    lin, mlp = trained["linear"], trained["mlp"]
    at = _open(lin.id, eval_compare=True, eval_models=[lin.id, mlp.id])
    assert not at.exception and not at.error
    (shown,) = _frames(at, "model", has="Accuracy")  # side by side: one row per model, nothing cut
    n37 = mnist.class_counts("test")[3] + mnist.class_counts("test")[7]
    assert shown["Test images"].tolist() == [f"{n37:,}", "10,000"]
    assert shown["Accuracy"].tolist() == [f"{lin.metrics['test_accuracy']:.2%}", f"{mlp.metrics['test_accuracy']:.2%}"]
    assert shown["model"].tolist() == [lin.title, mlp.title]
    assert any("scored on the test 3s and 7s only" in c.value for c in at.caption)
    two, ten = _frames(at, "pred ")
    assert two.shape == (2, 2) and int(two.values.sum()) == n37 and int(ten.values.sum()) == 10_000
    robust = _frames(_show(at, "Robustness"), "model", has="change")[0]
    assert robust["model"].nunique() == 2  # a curve per model

    # The threshold, side by side: a table with each model's name, whole numbers, not metrics cut short.
    (cut,) = _frames(_show(at, "Confidence threshold"), "model", has="coverage")
    assert cut["model"].tolist() == [lin.title, mlp.title] and (cut["answered"] <= [n37, 10_000]).all()

    # The map of the linear model's single output number, by t-SNE: a picture, not a traceback.
    _show(at, "What the layers see")
    at.radio(key="eval_method").set_value("tsne")
    at.select_slider(key="eval_points").set_value(500)
    at.selectbox(key=f"eval_layer_{lin.id}").set_value("output")
    at.run()
    assert not at.exception and not at.error
    assert any("1 number per image" in json.loads(c.proto.spec)["layout"]["title"]["text"]
               for c in at.get("plotly_chart") if "title" in json.loads(c.proto.spec)["layout"])


@pytest.fixture()
def damaged(trained):
    """A copy of a real model whose weights file got corrupted; removed afterwards so other pages never see it."""
    bad = damaged_copy(trained["mlp"].id, "damaged-evaluate-test", b"\x00garbage, not safetensors" * 10)
    yield bad
    ModelStore().delete(bad)


def test_a_damaged_model_gives_a_message_not_a_traceback(damaged, trained):
    at = _open(damaged)
    assert not at.exception
    # A weights file that does not match its record is never listed (issue 15): the page names it among the
    # skipped files and goes on with the rest.
    skipped = next(e for e in at.expander if "were skipped" in e.label)
    assert any(f"`{damaged}`" in m.value and "damaged" in m.value for m in skipped.markdown)
    assert not at.error and at.session_state["eval_model"] != damaged  # the page goes on with a usable model


def test_an_empty_store_says_where_to_train(tmp_path, trained):
    import os

    from digitlab import ui

    before = os.environ["DIGITLAB_MODEL_DIR"]
    os.environ["DIGITLAB_MODEL_DIR"] = str(tmp_path / "no-models-yet")
    ui.get_store.clear()
    try:
        at = AppTest.from_file(PAGE, default_timeout=120).run()
    finally:
        os.environ["DIGITLAB_MODEL_DIR"] = before
        ui.get_store.clear()
    assert not at.exception and not at.error
    assert any("No model trained on MNIST yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_the_page_starts_on_the_best_model_and_compares_the_best_of_each_kind(trained):
    from digitlab import ranking

    infos = [i for i in ModelStore().list() if i.config.dataset == "mnist"]  # the page lists the dataset in use
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error
    best = ranking.best_of_each_kind(infos)
    top = ranking.ranked(best)[0]  # the most accurate ten-digit model
    assert at.session_state["eval_model"] == top.id and top.config.task == "digits"
    at.toggle(key="eval_compare").set_value(True).run()
    expected = [top, *[i for i in best if i.id != top.id]][:4]
    assert at.multiselect(key="eval_models").value == [i.id for i in expected]
    (shown,) = _frames(at, "model", has="Accuracy")
    assert shown["model"].tolist() == [i.title for i in expected]


def test_calibration_diagram_and_temperature_from_the_models_own_predictions(mnist, trained):
    """The reliability diagram's points, the ECE and the fitted temperature, checked against the model's own test
    probabilities computed here again (metrics.predict) and binned by hand; T is fitted on the training images
    the run held out, never on the test images it is judged on."""
    import numpy as np

    from digitlab import metrics

    cnn = trained["cnn"]
    at = _open(cnn.id)
    _show(at, "Calibration")
    assert not at.exception and not at.error
    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart")
                           if "Reliability" in json.dumps(json.loads(c.proto.spec)["layout"].get("title", ""))))
    (table,) = _frames(at, "model", has="temperature T")
    model, info = ModelStore().load(cnn.id)
    with worker_threads():  # the sums in the order the worker made the page's analysis: an image on a bin's edge stays
        pred = metrics.predict(model, info.config, mnist)  # in its bin (2 threads against 1 moved one, and the ECE by 1e-4)
        held_out = metrics.predict_held_out(model, info.config, mnist)
    judge = pred.probs.numpy()  # the figures are drawn on the whole test set
    targets = pred.targets.numpy()
    conf, right = judge.max(1), judge.argmax(1) == targets
    bins = np.clip(((conf - 0.1) / 0.9 * 10).astype(int), 0, 9)
    gaps = [abs(right[bins == b].mean() - conf[bins == b].mean()) * (bins == b).sum() for b in range(10)
            if (bins == b).any()]
    assert table["ECE as trained"].iloc[0] == pytest.approx(sum(gaps) / len(conf), abs=1e-4)
    before = next(t for t in spec["data"] if t.get("xaxis", "x") == "x" and t["name"] != "calibrated")
    assert before["y"] == pytest.approx([right[bins == b].mean() for b in range(10) if (bins == b).any()], abs=1e-6)
    t = table["temperature T"].iloc[0]
    assert table["T fitted on"].iloc[0] == f"{len(held_out.targets):,} held-out training images"
    nll = [float(torch_nll(held_out.probs, held_out.targets, x)) for x in (t * 0.8, t, t * 1.25)]
    assert nll[1] <= min(nll[0], nll[2])  # the fitted T is a minimum of the likelihood on the held-out images
    after = metrics.reliability(metrics.with_temperature(pred.probs, t), pred.targets).ece  # the test set, rescaled by T
    assert table["ECE after temperature scaling"].iloc[0] == pytest.approx(after, abs=2e-3)  # (T shown rounded)
    assert nll[1] <= torch_nll(held_out.probs, held_out.targets, 1.0)  # where T was fitted, its likelihood only rises
    # (its ECE there may not fall: T maximises the likelihood, and 500 held-out images bin coarsely)
    assert any("softmax" in c.value for c in at.caption)  # what shapes the confidence is said


@contextlib.contextmanager
def worker_threads():
    """Torch's intra-op threads as many as the training worker's, for the length of the block."""
    import torch

    from digitlab.runs.execute import worker_threads as wanted

    before = torch.get_num_threads()
    torch.set_num_threads(wanted())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_nll(probs, targets, temperature):
    import torch

    return torch.nn.functional.cross_entropy(probs.double().clamp_min(1e-12).log() / temperature, targets)
