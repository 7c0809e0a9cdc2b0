"""Words that say who did what and what is shown, and lists of models that follow a finished run (issue 27, items 9
and 10), each as the text a user sees under the real Streamlit runtime, on the real datasets."""

import json
import shutil
from pathlib import Path

import pytest
from pagetools import chart_spec, open_page, wait_for_job
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parent.parent / "pages"


@pytest.fixture()
def own_store(tmp_path, monkeypatch):
    """An empty model store and class collection of this test's own (the session's come back after)."""
    from digitlab import ui

    before = ui.get_store().root  # the session's store, where the `trained` models are
    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "collection"))
    ui.get_store.clear()
    yield tmp_path / "models", before
    ui.get_queue().close()
    monkeypatch.undo()
    ui.get_store.clear()


def _fashion(page: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=120)
    at.query_params["dataset"] = "fashion"
    return at.run()


def _texts(at) -> str:
    return " ".join(e.value for kind in (at.markdown, at.caption, at.info, at.warning) for e in kind)


def test_the_cnn_pages_lists_follow_a_finished_run_and_every_point_has_its_own_name(mnist, own_store):
    from digitlab import ui
    from digitlab.models import PRESETS

    queue = ui.get_queue()
    for lr in (0.1, 0.3):  # two runs of one preset, told apart only by their rate
        snap = queue.wait(queue.submit(PRESETS["simple_net"].with_(lr=lr, epochs=1, train_limit=3000), mnist,
                                       owner="tests").id, timeout=300)
        assert snap.state == "done", snap.error
    at = AppTest.from_file(str(PAGES / "4_CNN.py"), default_timeout=120).run()
    assert not at.exception and not at.error
    before = at.multiselect(key="cnn_compare_models").value
    assert len(before) == 1  # the best MLP: no CNN yet
    scatter = chart_spec(at, "Accuracy against parameters: every model from 50% up")
    names = [t for trace in scatter["data"] for t in trace["text"]]
    assert sorted(names) == ["simple_net (lr 0.1)", "simple_net (lr 0.3)"]  # never two points both "simple_net"

    at.number_input(key="cnn_cnn-fast_limit").set_value(2000).run()
    at.button(key="cnn_train").click().run()
    snap = wait_for_job(at, "cnn_job")
    assert snap.state == "done", snap.error
    at.run()  # the page's next run after the run finished, no reload
    assert not at.exception
    after = at.multiselect(key="cnn_compare_models").value
    assert snap.model_id in after and before[0] in after  # the new CNN joins the table beside the MLP
    table = at.dataframe(key="cnn_compare").value
    assert snap.model_id in list(table["id"])
    # a student's own pick is kept as it is: a later run does not undo it
    at.multiselect(key="cnn_compare_models").set_value([before[0]]).run()
    assert at.multiselect(key="cnn_compare_models").value == [before[0]]


def test_a_run_the_teacher_cancelled_says_so_and_the_run_list_says_whose_it_is(mnist, own_store):
    import time

    from digitlab import ui

    at = AppTest.from_file(str(PAGES / "3_MLP.py"), default_timeout=120).run()
    at.selectbox(key="mlp_preset").set_value("simple_net").run()
    at.button(key="mlp_train").click().run()  # 40 epochs of the full MNIST: long enough to be cancelled
    job, queue = at.session_state["mlp_job"], ui.get_queue()
    deadline = time.monotonic() + 120
    while queue.snapshot(job).state == "queued" and time.monotonic() < deadline:  # until its worker takes it
        time.sleep(0.05)
    at.run()
    lines = [c.value for c in at.sidebar.caption]
    assert any("(yours)" in line for line in lines), lines  # the sidebar's run list: this student's run
    assert ui.get_queue().cancel(job)  # what the Teacher page's Cancel does (jobs.cancel, no owner)
    assert ui.get_queue().wait(job, timeout=90).state == "cancelled"
    at.run()
    said = " ".join(w.value for w in at.warning)
    assert "The teacher cancelled this run" in said, said
    assert "nothing to keep" in said or "stored as a model" in said


def test_the_explorer_and_the_linear_stage_speak_of_the_dataset_in_use(mnist, fashion):
    at = AppTest.from_file(str(PAGES / "1_Data_Explorer.py"), default_timeout=120).run()
    assert not at.exception
    said = _texts(at)
    assert "the ideal 3 against the ideal 7" in said
    table = at.dataframe(key="norm_table").value
    row = table[table["transform"].str.startswith("Normalize((0.1307,)")].iloc[0]
    assert "mean 0, std 1" not in row["transform"]  # one image's row does not claim what it does not show
    assert f"this image gets mean {row['mean']:.3f} and std {row['std']:.3f}, not 0 and 1" in said
    assert "every MNIST training pixel together gets mean 0 and std 1" in said

    at = _fashion("1_Data_Explorer.py")
    said = _texts(at)
    assert "the ideal Shirt against the ideal T-shirt/top" in said and "ideal 3" not in said
    assert "on Fashion-MNIST, whose own mean and std are 0.2860 and 0.3530" in said

    at = _fashion("2_Linear_3_vs_7.py")
    assert not at.exception
    said = _texts(at)
    assert "is this item a Shirt or a T-shirt/top?" in said and "3 or a 7" not in said
    at = AppTest.from_file(str(PAGES / "2_Linear_3_vs_7.py"), default_timeout=120).run()
    assert "is this digit a 3 or a 7?" in _texts(at)


def test_features_opens_on_what_a_cnn_has(trained):
    at = open_page(str(PAGES / "5_Features.py"), feat_model=trained["cnn"].id)
    assert not at.exception and not at.error
    assert at.session_state["feat_section"] == "A CNN's filters"
    assert not any("does not read all 784 pixels" in i.value for i in at.info)  # not a note in place of a picture
    assert any(t.startswith("The 32 learned 3x3 filters") for t in
               [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")])
    at = open_page(str(PAGES / "5_Features.py"), feat_model=trained["mlp"].id)
    assert at.session_state["feat_section"] == "The first layer's weights"


def test_our_handwriting_with_no_drawings_says_so_instead_of_an_empty_chart(trained, own_store):
    root, session_root = own_store
    root.mkdir(exist_ok=True)
    for suffix in (".json", ".safetensors"):  # a model to teach, so only the drawings are missing
        shutil.copy(session_root / f"{trained['mlp'].id}{suffix}", root)
    at = AppTest.from_file(str(PAGES / "9_Our_Handwriting.py"), default_timeout=120).run()
    assert not at.exception and not at.error
    assert any("The class collection is empty: nobody has saved a drawing yet" in i.value for i in at.info)
    axes = [json.loads(c.proto.spec)["layout"].get("yaxis", {}).get("title", {}) for c in at.get("plotly_chart")]
    assert {"text": "images"} not in axes  # no count chart of nothing, with its -1..1 axis
