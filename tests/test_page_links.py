"""A setup shared by link, under the real Streamlit runtime: the address restores every widget, shows a stored run,
follows the widgets, and a bad link still opens the page with a note."""

from pathlib import Path
from urllib.parse import urlencode

from pagetools import chart_titles, metrics
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parent.parent / "pages"


def _open(page: str, params: dict) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=120)
    at.query_params.update(params)
    return at.run()


def test_a_link_restores_the_mlp_page_and_shows_the_stored_run(mnist, trained):
    from digitlab.links import to_params

    info = trained["mlp"]
    params = to_params(info.config)
    at = _open("3_MLP.py", params)
    assert not at.exception and not at.error
    k = f"mlp_{info.config.preset}"
    assert at.selectbox(key="mlp_preset").value == info.config.preset
    assert at.number_input(key=f"{k}_epochs").value == info.config.epochs
    assert at.number_input(key=f"{k}_limit").value == info.config.train_limit
    assert at.select_slider(key=f"{k}_lr").value == info.config.lr
    assert any("This exact run is in the model store" in s.value for s in at.success)
    assert metrics(at)["Test accuracy"] == f"{info.metrics['test_accuracy']:.2%}"  # its result, not a new run
    assert {k: v for k, v in at.query_params.items() if k in params} == params  # the round trip
    assert any(c.value.endswith("?" + urlencode(params)) for c in at.code)  # "Link to this setup"

    at.number_input(key=f"{k}_epochs").set_value(4).run()  # the address follows the widgets
    assert at.query_params["epochs"] == "4" and not at.exception
    at.run().run()  # the runs in which the link's values are set again (links.HOLD_RUNS) leave the student's change
    assert at.number_input(key=f"{k}_epochs").value == 4 and at.query_params["epochs"] == "4"
    assert at.number_input(key=f"{k}_limit").value == info.config.train_limit


def test_a_link_with_other_settings_and_bad_values_opens_with_a_note(mnist):
    at = _open("3_MLP.py", {"preset": "mlp-128-64", "hidden": "32-16", "act": "tanh", "optimizer": "adam",
                            "lr": "fast", "batch": "96", "epochs": "1000", "norm": "half", "colour": "red"})
    assert not at.exception and not at.error
    k = "mlp_mlp-128-64"
    assert at.text_input(key=f"{k}_hidden").value == "32, 16"
    assert at.selectbox(key=f"{k}_act").value == ("tanh",)
    assert at.selectbox(key=f"{k}_opt").value == "adam" and at.selectbox(key=f"{k}_norm").value == "half"
    assert at.number_input(key=f"{k}_bs").value == 96
    assert at.select_slider(key=f"{k}_lr").value == 0.01  # the preset's own: 'fast' was left out
    note = " ".join(w.value for w in at.warning)
    for left_out in ("lr='fast' left out", "epochs='1000' left out", "colour='red' left out"):
        assert left_out in note
    assert metrics(at)["Parameters"] == f"{784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10:,}"
    at.run()  # the note is said once; the widgets keep the link's values
    assert not at.warning and at.text_input(key=f"{k}_hidden").value == "32, 16"


def test_a_cnn_link_restores_the_model_and_test_image_it_names(mnist, trained):
    from digitlab.links import to_params

    cnn = trained["cnn"]
    at = _open("4_CNN.py", to_params(cnn.config, model=cnn.id, image=17))
    assert not at.exception and not at.error
    assert at.selectbox(key="cnn_view_model").value == cnn.id
    assert f"Test image 17: a {int(mnist.test_labels[17])}" in chart_titles(at)
    assert at.query_params["image"] == "17" and at.query_params["model"] == cnn.id
    assert any("This exact run is in the model store" in s.value for s in at.success)


def test_a_features_link_restores_the_model_section_and_test_image(mnist, trained):
    from digitlab.links import slug, view_params
    from digitlab.store import ModelStore

    mlp = trained["mlp"]
    params = view_params(model=mlp.id, look="One digit through the network", image=17)
    at = _open("5_Features.py", params)
    assert not at.exception and not at.error and not at.warning
    assert at.selectbox(key="feat_model").value == mlp.id
    assert at.session_state["feat_section"] == "One digit through the network"
    assert f"Test image 17: a {int(mnist.test_labels[17])}" in chart_titles(at)
    assert dict(at.query_params.items()) == params  # the round trip
    assert any(c.value.endswith("?" + urlencode(params)) for c in at.code)  # "Link to this setup"

    bad = _open("5_Features.py", {"model": "no-such-model", "look": "the-weights", "image": "99999"})
    assert not bad.exception and not bad.error
    note = " ".join(w.value for w in bad.warning)
    for left_out in ("model='no-such-model' left out", "look='the-weights' left out", "image='99999' left out"):
        assert left_out in note
    shown = ModelStore().info(bad.selectbox(key="feat_model").value)  # the page's own start for the model it shows:
    start = "A CNN's filters" if shown.config.kind == "cnn" else "The first layer's weights"  # a CNN's are filters
    assert bad.session_state["feat_section"] == start
    assert bad.query_params["look"] == slug(start)
    # the image left out: the address holds the picker's own start (test image 0), only where the section shows a digit
    assert bad.query_params.get("image") == ("0" if shown.config.kind == "cnn" else None)


def test_an_evaluate_link_restores_the_models_side_by_side_and_the_section(trained):
    from digitlab.links import view_params

    lin, cnn = trained["linear"], trained["cnn"]
    at = _open("7_Evaluate.py", {"models": f"{cnn.id},gone,{lin.id}", "look": "per-class-scores", "colour": "red"})
    assert not at.exception and not at.error
    assert at.toggle(key="eval_compare").value and at.multiselect(key="eval_models").value == [cnn.id, lin.id]
    assert at.session_state["eval_section"] == "Per-class scores"
    scores = [d.value for d in at.dataframe if "precision" in d.value.columns]
    assert len(scores) == 2  # the section open: each model's per-class scores
    note = " ".join(w.value for w in at.warning)
    assert "'gone' left out" in note and "colour='red' left out" in note
    params = view_params(models=[cnn.id, lin.id], look="Per-class scores")
    assert dict(at.query_params.items()) == params  # what could be used, and nothing else
    assert any(c.value.endswith("?" + urlencode(params, safe=",")) for c in at.code)
