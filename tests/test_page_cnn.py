"""The CNN page under the real Streamlit runtime, with the session's real trained models."""

from pathlib import Path

import pytest
from pagetools import WAIT_S, chart_spec, chart_titles, code_shown, damaged_copy, metrics, open_page, wait_for_job
from streamlit.testing.v1 import AppTest

from digitlab.store import ModelStore

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "4_CNN.py")


def _open(**state) -> AppTest:
    return open_page(PAGE, **state)


def _frame(at, first_column: str, has: str | None = None):
    return next(d.value for d in at.dataframe if len(d.value.columns) and d.value.columns[0] == first_column
                and (has is None or has in d.value.columns))


def test_architecture_table_measured_from_the_model(mnist):
    from digitlab.models import PRESETS, build_model, count_parameters, layer_table

    at = _open()
    assert not at.exception and not at.error
    # The page starts on the recipe a class need not wait for, with the tutorial's own recipe's time beside it.
    assert at.selectbox(key="cnn_preset").value == "cnn-fast"
    assert any("`cnn-seed`: about" in c.value and "`cnn-fast`: about" in c.value for c in at.caption)
    # the preset's time and the Train button's are the queue's one estimate, for the recipe picked
    (cost,) = [c.value for c in at.caption if c.value.startswith("This run should take about ")]
    fast = cost.removeprefix("This run should take about ").split(" on this server")[0]
    assert any(f"`cnn-fast`: about {fast} ·" in c.value for c in at.caption)
    at.selectbox(key="cnn_preset").set_value("cnn-seed").run()
    net = build_model(PRESETS["cnn-seed"])
    assert metrics(at)["Parameters"] == f"{count_parameters(net):,}" == "121,930"
    assert metrics(at)["Numbers into the first linear layer"] == "1,600"
    table = _frame(at, "layer")
    assert list(table["layer"]) == [r["layer"] for r in layer_table(net)]
    assert list(table["output shape"]) == [r["output shape"] for r in layer_table(net)]
    assert table["parameters"].sum() == count_parameters(net)
    assert any("28 → 26 → 13 → 11 → 5" in m.value for m in at.markdown)
    assert any("64 · 5 · 5 = 1600" in m.value and "64 * 5 * 5" in m.value for m in at.markdown)
    code = code_shown(at)  # the boxes open (closed, they send nothing)
    assert any("class DigitCNN" in c for c in code)
    # the loop that trains it: fit() itself, and the channels-last layout a CNN is fed in
    assert any("def fit(" in c and "loss.backward()" in c for c in code)
    assert any("channels_last" in c for c in code)

    # The fast recipe's network: batch norm, and the parameter count follows the model, not the seed's.
    at.selectbox(key="cnn_preset").set_value("cnn-fast").run()
    assert not at.exception
    bn = build_model(PRESETS["cnn-fast"])
    assert metrics(at)["Parameters"] == f"{count_parameters(bn):,}"
    assert "BatchNorm2d" in set(_frame(at, "layer")["type"])
    assert at.number_input(key="cnn_cnn-fast_epochs").value == PRESETS["cnn-fast"].epochs
    assert at.select_slider(key="cnn_cnn-fast_lr").value == PRESETS["cnn-fast"].lr  # the recipe's own rate


def test_feature_maps_filters_and_the_comparison(mnist, trained):
    from digitlab.models import layer_table

    cnn = trained["cnn"]
    at = _open(cnn_view_model=cnn.id)
    assert not at.exception and not at.error
    titles = chart_titles(at)
    filters = chart_spec(at, "The 32 learned 3x3 filters of the first layer")
    assert filters is not None and len(filters["layout"]["annotations"]) == 32
    model, _ = ModelStore().load(cnn.id)
    maps = [r for r in layer_table(model) if r["type"] in ("Conv2d", "MaxPool2d")]
    sheets = [t for t in titles if t.startswith("After ")]
    assert len(sheets) == 1 and sheets[0].startswith("After conv_layers.0")  # one layer's maps at a time
    assert "The convolution's number" not in metrics(at)  # the worked-out number waits until it is asked for
    for r in maps:  # each convolution and pooling, stepped through
        at.segmented_control(key="cnn_maps_layer").set_value(r["layer"]).run()
        c, h, w = r["output shape"].split("x")
        assert [t for t in chart_titles(at) if t.startswith("After ")] == [f"After {r['layer']} · {r['type']}: "
                                                                           f"{c} maps of {h}x{w}"]
    at.toggle(key="cnn_conv_open").set_value(True).run()
    assert "The convolution's number" in metrics(at)
    assert "The CNN's answer" in titles
    assert any(c.value.startswith("Sure = softmax of its logits") for c in at.caption)  # what shapes its confidence

    # Another digit: the answer chart follows the chosen test image.
    at.selectbox(key="cnn_img_digit").set_value(3).run()
    assert "Test image 18: a 3" in chart_titles(at)

    # The comparison starts on the class's best model of each kind, none below 50%.
    from digitlab.ranking import best_of_each_kind

    infos = [i for i in ModelStore().list() if i.config.dataset == "mnist"]  # the page lists the dataset in use
    best = _frame(at, "model", has="id")
    assert list(best["id"]) == [i.id for i in best_of_each_kind(infos)]
    assert all(i.accuracy >= 0.5 for i in best_of_each_kind(infos))
    rest = [d.value for d in at.dataframe if "learning rate" in d.value.columns and "id" not in d.value.columns]
    assert sum(len(r) for r in rest) == len(infos) - len(best)  # the others: the compact table under the picker

    # The picker puts any stored model side by side: here the three the session trained.
    at.session_state["cnn_compare_models"] = [trained[n].id for n in ("linear", "mlp", "cnn")]
    at.run()
    table = _frame(at, "model", has="id")
    assert set(table["id"]) == {trained[n].id for n in ("linear", "mlp", "cnn")}
    for name in ("linear", "mlp", "cnn"):
        info = trained[name]
        row = table[table["id"] == info.id].iloc[0]
        assert row["test accuracy"] == pytest.approx(info.metrics["test_accuracy"])
        assert row["parameters"] == info.parameters
    lin = table[table["id"] == trained["linear"].id].iloc[0]
    assert "3s and 7s only" in lin["scored on"] and lin["kind"] == "linear"
    assert any("scored on the test 3s and 7s only" in c.value for c in at.caption)
    scatter = chart_spec(at, "Accuracy against parameters: every model from 50% up")
    names = {t["name"] for t in scatter["data"]}
    assert names == {"MLP", "CNN"}  # the 3-vs-7 model is left off the ten-digit chart
    assert chart_spec(at, "Accuracy against training time") is not None


def test_train_through_the_page_stop_and_one_more_epoch(mnist):
    from digitlab import ui

    at = _open(cnn_preset="cnn-seed")
    at.number_input(key="cnn_cnn-seed_epochs").set_value(1)
    at.number_input(key="cnn_cnn-seed_limit").set_value(2000)
    at.button(key="cnn_train").click().run()
    assert not at.exception and not at.error
    snap = wait_for_job(at, "cnn_job")
    assert snap.state == "done" and len(snap.history) == 1
    at.run()
    assert not at.exception and not at.error
    assert "Loss" in chart_titles(at) and "Accuracy" in chart_titles(at)
    # The finished run is the one shown inside: its filters are on the page.
    assert at.session_state["cnn_view_model"] == snap.model_id
    assert "The 32 learned 3x3 filters of the first layer" in chart_titles(at)

    more = at.button(key=f"more_cnn_job_{snap.id}")
    more.click().run()
    again = wait_for_job(at, "cnn_job")
    assert again.id != snap.id and again.state == "done" and len(again.history) == 2
    at.run()
    assert not at.exception
    overlay = chart_spec(at, "test accuracy")
    assert overlay and len(overlay["data"]) == 2

    # A long run shows Stop while it trains; Stop ends it.
    at.number_input(key="cnn_cnn-seed_limit").set_value(0)
    at.number_input(key="cnn_cnn-seed_epochs").set_value(3)
    at.button(key="cnn_train").click().run()
    job = at.session_state["cnn_job"]
    stop = [b for b in at.button if b.key == f"stop_cnn_job_{job}"]
    assert stop, "a Stop button while the run trains"
    stop[0].click().run()
    done = ui.get_queue().wait(job, timeout=WAIT_S)
    assert done.state == "cancelled"
    at.run()
    assert not at.exception
    said = " ".join(w.value for w in at.warning)
    assert "You stopped this run" in said and "teacher" not in said  # who ended it: this student


@pytest.fixture()
def damaged(trained):
    """A copy of the real CNN whose weights file is truncated; removed afterwards."""
    bad = damaged_copy(trained["cnn"].id, "damaged-cnn-page-test")
    yield bad
    ModelStore().delete(bad)


def test_a_damaged_cnn_gives_a_message_not_a_traceback(damaged, trained):
    at = _open(cnn_view_model=damaged)
    assert not at.exception and not at.error
    # A weights file that does not match its record is never listed (issue 15): the page goes on with the rest.
    assert damaged not in set(_frame(at, "model", has="id")["id"])
    assert not _frame(at, "model", has="id").empty  # the comparison still shows the class's best


def test_an_empty_store_says_how_to_train_one(tmp_path, monkeypatch, mnist):
    from digitlab import ui

    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(tmp_path / "no-models-yet"))
    ui.get_store.clear()
    try:
        at = _open()
    finally:
        ui.get_queue().close()  # the training process the page warmed for this store: not left for the idle time
        monkeypatch.undo()
        ui.get_store.clear()
    assert not at.exception and not at.error
    assert any("No CNN has been trained yet" in i.value for i in at.info)
    assert any("No trained model yet" in i.value for i in at.info)
    # A link to each page that trains the others (a plain name when the page runs alone, as here).
    links = [m.value for m in at.markdown if "Train one on the" in m.value] + \
        [p.proto.label for p in at.get("page_link")]
    assert any("Linear 3 vs 7" in v for v in links) and any("MLP" in v for v in links)
    assert "The 32 learned 3x3 filters of the first layer" not in chart_titles(at)


def test_the_epochs_box_is_bounded_by_the_class_limit(mnist):
    """A student's run may not pass the class's limit: at batch 1 the Epochs box offers only what fits, says why,
    and a value set before comes down to it."""
    from digitlab import ui

    at = _open(cnn_preset="cnn-seed")
    at64 = at.number_input(key="cnn_cnn-seed_epochs")
    assert 5 <= at64.max < 100 and "At most" in at64.help  # batch 64: the preset's 5 fit, a hundred would not...
    at64.set_value(5).run()
    at.number_input(key="cnn_cnn-seed_bs").set_value(1).run()
    box = at.number_input(key="cnn_cnn-seed_epochs")
    assert not at.exception
    assert box.max == 1 and box.value == 1  # ...and at batch 1 one epoch is all the box offers
    assert "At most 1 at this batch size" in box.help and "class's limit for one run" in box.help
    assert ui.get_queue().limit_s is not None
