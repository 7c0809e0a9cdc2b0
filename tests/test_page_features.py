"""The Features page under the real Streamlit runtime, with the session's real trained models."""

import base64
from pathlib import Path

import numpy as np
import pytest
import torch
from pagetools import chart_spec, chart_titles, code_shown, damaged_copy, metrics, open_page
from streamlit.testing.v1 import AppTest

from digitlab import features as ft
from digitlab import untrained
from digitlab.store import ModelStore
from digitlab.train import predict_proba

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "5_Features.py")


def _open(model_id: str, **state) -> AppTest:
    return open_page(PAGE, feat_model=model_id, **state)


def _show(at, section: str) -> AppTest:
    """Open one section with the page's section chooser, as a student clicks it."""
    at.session_state["feat_section"] = section
    return at.run()


def _array(value) -> torch.Tensor:
    """A Plotly array from a chart spec: a plain list, or a typed array ({dtype, bdata, shape})."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(s) for s in str(value.get("shape", len(flat))).split(",")]
        return torch.tensor(flat.reshape(shape).astype(np.float32))
    return torch.tensor(value, dtype=torch.float32)


def _labels(spec) -> list[str]:
    return [a["text"] for a in spec["layout"].get("annotations", [])]


def test_mlp_weight_rows_sorted_by_norm_and_one_enlarged(mnist, trained):
    info = trained["mlp"]
    model, _ = ModelStore().load(info.id)
    rows, bias = ft.first_layer(model)
    at = _open(info.id)
    assert not at.exception and not at.error

    sheet = chart_spec(at, "First-layer weights: 50 of 50 units as 28x28 images")
    assert sheet is not None
    by_norm = ft.unit_order(rows, "norm").tolist()
    assert _labels(sheet) == [f"unit {u}" for u in by_norm]
    norms = rows.norm(dim=1)
    assert all(norms[a] >= norms[b] for a, b in zip(by_norm[:-1], by_norm[1:]))
    heat = sheet["data"][0]
    assert heat["colorscale"][0][1] != heat["colorscale"][-1][1] and heat["zmid"] == 0  # diverging, centred on 0
    assert heat["zmin"] == -1 and heat["zmax"] == 1

    at.radio(key="feat_order").set_value("index").run()
    assert _labels(chart_spec(at, "First-layer weights: 50 of 50 units as 28x28 images")) == \
        [f"unit {u}" for u in range(50)]

    at.selectbox(key="feat_unit").set_value(7).run()
    big = chart_spec(at, "Unit 7: its 784 weights as 28x28")
    assert big is not None
    assert torch.allclose(_array(big["data"][0]["z"]), rows[7].reshape(28, 28), atol=1e-6)
    assert any(f"Bias {float(bias[7]):+.3f}" in c.value for c in at.caption)
    assert chart_spec(at, "Weight norm of each unit, in the order shown") is not None
    code = code_shown(at)  # the boxes open (closed, they send nothing)
    assert any("def first_layer" in c for c in code)


def test_one_digit_activations_units_that_fire_and_saliency(mnist, trained):
    info = trained["mlp"]
    at = _open(info.id, feat_img_digit=3, feat_section="One digit through the network")
    assert not at.exception and not at.error
    titles = chart_titles(at)
    assert "Test image 18: a 3" in titles and "The model's answer" in titles
    assert "2 · ReLU: 50 numbers" in titles and "3 · Linear (output): 10 numbers" in titles
    model, _ = ModelStore().load(info.id)
    fire = ft.units_that_fire(model, info.config, mnist.test_images[18], k=8)
    weights = chart_spec(at, "Their weights (784 as 28x28)")
    assert _labels(weights) == [f"unit {int(u)}: {float(v):.2f}" for u, v in zip(fire.units, fire.values)]
    bars = chart_spec(at, "2 · ReLU: 50 numbers")
    red = [i for i, c in enumerate(bars["data"][0]["marker"]["color"]) if c == "#d62728"]
    assert sorted(red) == sorted(fire.units.tolist())
    predicted = str(int(predict_proba(model, info.config, mnist.test_images[18].unsqueeze(0))[0].argmax()))
    assert not any(t.startswith("Saliency") for t in titles)  # only the open section is drawn
    titles = chart_titles(_show(at, "Which pixels drove the answer"))
    assert "Test image 18: a 3" not in titles  # the digit picked stays, the charts are this section's
    assert f"Saliency for '{predicted}'" in titles and f"Gradient × input for '{predicted}'" in titles
    assert not any(t.startswith("Grad-CAM") for t in titles)  # no convolutions in an MLP
    assert any("has no convolutions" in i.value for i in _show(at, "A CNN's filters").info)

    _show(at, "Which pixels drove the answer")
    at.selectbox(key="feat_target_mnist_digits").set_value("8").run()
    assert "Saliency for '8'" in chart_titles(at)


def test_cnn_filters_grad_cam_and_before_after(mnist, trained):
    info = trained["cnn"]
    at = _open(info.id)
    assert not at.exception and not at.error
    assert at.session_state["feat_section"] == "A CNN's filters"  # a CNN opens on what its first layer has
    assert not any("does not read all 784 pixels" in i.value for i in at.info)
    assert any("does not read all 784 pixels" in i.value for i in _show(at, "The first layer's weights").info)
    titles = chart_titles(_show(at, "A CNN's filters"))
    assert "The 32 learned 3x3 filters of the first layer" in titles
    assert any(t.startswith("Their responses to this 7") for t in titles)
    assert "Grad-CAM for '7' (conv_layers.4)" in chart_titles(_show(at, "Which pixels drove the answer"))
    titles = chart_titles(_show(at, "Before and after training"))
    assert not at.exception and not at.error
    assert "Before training: first-layer filters" in titles and "After training: first-layer filters" in titles
    model, _ = ModelStore().load(info.id)
    for title, net in (("Before training: first-layer filters", untrained.initial_model(info.config)),
                       ("After training: first-layer filters", model)):
        raw = _array(chart_spec(at, title)["data"][0]["customdata"])[..., 3]  # (map, row, column, value) per cell
        shown = raw[~raw.isnan()].sort().values
        assert torch.allclose(shown, ft.first_filters(net).reshape(-1).sort().values, atol=1e-6), title

    shown = metrics(at)
    # on the whole test set, from the model's analysis: what training recorded, and what the model scores now
    assert shown["Accuracy after training"] == f"{untrained.accuracy(model, info.config, mnist):.2%}" \
        == f"{info.metrics['test_accuracy']:.2%}"
    assert shown["Accuracy before training"] == f"{untrained.accuracy(untrained.initial_model(info.config), info.config, mnist):.2%}"
    assert float(shown["Accuracy before training"].rstrip("%")) < 30
    assert any("this run's real starting point" in m.value for m in at.markdown)
    change = next(d.value for d in at.dataframe if d.value.columns[0] == "weights")
    assert set(change["weights"]) == {n for n, _ in model.named_parameters()}
    assert all(v.endswith("%") or v == "— (started at 0)" for v in change["moved ÷ norm before"])


def test_the_linear_three_vs_seven_model(mnist, trained):
    info = trained["linear"]
    at = _open(info.id)
    assert not at.exception and not at.error
    titles = chart_titles(at)
    model, _ = ModelStore().load(info.id)
    big = chart_spec(at, "Unit 0: its 784 weights as 28x28")  # one unit: shown big, no grid of one
    assert torch.allclose(_array(big["data"][0]["z"]), model.weights.detach()[:, 0].reshape(28, 28), atol=1e-6)
    assert not any(t.startswith("First-layer weights") for t in titles)
    assert any("looks like a 3 rather than a 7" in c.value for c in at.caption)
    titles = chart_titles(_show(at, "One digit through the network"))
    assert "output: 1 number" in titles and "Its weights (784 as 28x28)" in titles
    assert "Test image 18: a 3" in titles  # a 3-vs-7 model starts on a 3
    assert any("no hidden layer" in m.value for m in at.markdown)
    answer = chart_spec(at, "The model's answer")
    assert answer["data"][0]["y"] == ["7", "3"]
    titles = chart_titles(_show(at, "Before and after training"))
    assert "Before training: first-layer weights" in titles and "After training: first-layer weights" in titles


@pytest.fixture()
def damaged(trained):
    """A copy of the real MLP whose weights file is garbage; removed afterwards so other pages never see it."""
    bad = damaged_copy(trained["mlp"].id, "damaged-features-test", b"\x00not safetensors at all" * 10)
    yield bad
    ModelStore().delete(bad)


def test_a_damaged_model_gives_a_message_not_a_traceback(damaged):
    at = _open(damaged)
    assert not at.exception
    # A weights file that does not match its record is never listed (issue 15): the page names it among the
    # skipped files and goes on with the rest.
    skipped = next(e for e in at.expander if "were skipped" in e.label)
    assert any(f"`{damaged}`" in m.value and "damaged" in m.value for m in skipped.markdown)


def test_an_empty_store_says_where_to_train(tmp_path, monkeypatch, mnist):
    from digitlab import ui

    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(tmp_path / "no-models-yet"))
    ui.get_store.clear()
    try:
        at = AppTest.from_file(PAGE, default_timeout=120).run()
    finally:
        monkeypatch.undo()
        ui.get_store.clear()
    assert not at.exception and not at.error
    assert any("No model trained on MNIST yet" in i.value for i in at.info)
    links = [m.value for m in at.markdown if "Train one on the" in m.value] + \
        [p.proto.label for p in at.get("page_link")]
    assert len(links) == 3 and any("CNN" in v for v in links)
    assert not at.get("plotly_chart")
