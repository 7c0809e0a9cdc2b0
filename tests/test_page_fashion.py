"""Fashion-MNIST beside MNIST on every stage, under the real Streamlit runtime: the sidebar's choice and the address,
the Data Explorer's class names, training on the MLP and CNN stages, models listed by dataset, the Sketch Pad's
refusal, and the two datasets compared."""

import json
from pathlib import Path

import pytest
from pagetools import chart_titles, metrics, wait_for_job
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
HOME, PAGES = str(ROOT / "app.py"), ROOT / "pages"


def on_fashion(page: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / page) if page != "app.py" else HOME, default_timeout=120)
    at.query_params["dataset"] = "fashion"
    return at.run()


@pytest.fixture(scope="module")
def fashion_trained(fashion):
    """Two small real Fashion-MNIST models in the session's store: an MLP and a CNN."""
    from digitlab import ui
    from digitlab.models import preset_for

    queue, out = ui.get_queue(), {}
    for name, config in {"mlp": preset_for("simple_net", "fashion").with_(epochs=1, train_limit=3000),
                         "cnn": preset_for("cnn-seed", "fashion").with_(epochs=1, train_limit=2000)}.items():
        snap = queue.wait(queue.submit(config, fashion, owner="tests").id, timeout=300)
        assert snap.state == "done", snap.error
        out[name] = queue.store.info(snap.model_id)
    return out


def test_the_sidebar_choice_switches_every_page_and_the_address_keeps_it(mnist, fashion):
    at = AppTest.from_file(HOME, default_timeout=120).run()
    assert at.radio(key="dataset_pick").value == "mnist" and "dataset" not in at.query_params
    at.radio(key="dataset_pick").set_value("fashion").run()
    assert not at.exception and not at.error
    assert "Where things stand on Fashion-MNIST" in [h.value for h in at.header]
    assert metrics(at)["Training images"] == "60,000"
    assert any(c.value.startswith(f"Data: **Fashion-MNIST** · Fashion-MNIST folder {fashion.source.path}")
               for c in at.caption)
    assert at.query_params["dataset"] in ("fashion", ["fashion"])
    # a reload (or a bookmark) of that address opens on Fashion-MNIST, on any page
    again = on_fashion("1_Data_Explorer.py")
    assert again.radio(key="dataset_pick").value == "fashion"
    assert any(c.value.startswith("Data: **Fashion-MNIST**") for c in again.caption)
    at.radio(key="dataset_pick").set_value("mnist").run()
    assert "Where things stand on MNIST" in [h.value for h in at.header] and "dataset" not in at.query_params
    from digitlab import ui

    digits = ui.get_data("mnist")  # both stay loaded: switching back and forth reloads neither
    assert ui.get_data("fashion").spec.key == "fashion" and ui.get_data("mnist") is digits
    unknown = AppTest.from_file(HOME, default_timeout=120)
    unknown.query_params["dataset"] = "kmnist"
    unknown.run()
    assert not unknown.exception and "Where things stand on MNIST" in [h.value for h in unknown.header]


def test_the_explorer_names_the_classes(fashion):
    from digitlab.data import DATASETS

    names = list(DATASETS["fashion"].classes)
    at = on_fashion("1_Data_Explorer.py")
    assert not at.exception and not at.error
    assert "1. How many of each item" in [h.value for h in at.header]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert specs[0]["data"][0]["x"] == names and specs[0]["layout"]["xaxis"]["title"]["text"] == "item"
    means = next(s for s in specs if s["layout"].get("title", {}).get("text") == "mean image of each class")
    assert means["layout"]["xaxis"]["ticktext"] == names
    assert any(c.value.startswith("Their labels, row by row: ") and "Ankle boot" in c.value for c in at.caption)
    at.radio(key="pick_by").set_value("item").run()
    at.selectbox(key="pick_digit").set_value(6).run()
    assert any("labelled **Shirt**" in m.value for m in at.markdown)


def test_mlp_and_cnn_train_on_fashion_and_record_it(fashion):
    from digitlab import ui

    at = on_fashion("3_MLP.py")
    assert not at.exception and not at.error
    at.number_input(key="mlp_simple_net_fashion_epochs").set_value(1)
    at.number_input(key="mlp_simple_net_fashion_limit").set_value(2000)
    at.button(key="mlp_fashion_train").click().run()
    snap = wait_for_job(at, "mlp_fashion_job")
    assert snap.state == "done", snap.error
    at.run()
    assert not at.exception and ui.get_store().info(snap.model_id).config.dataset == "fashion"
    shown = [t for t in chart_titles(at) if t.startswith("a ")]
    assert len(shown) == 4 and all(t[2:] in fashion.classes for t in shown)

    at = on_fashion("4_CNN.py")  # cnn-fast's recipe on Fashion-MNIST: batch 64, lr 0.008 (bench/bench_fashion.py)
    assert not at.exception and not at.error
    assert at.select_slider(key="cnn_cnn-fast_fashion_lr").value == 0.008
    assert at.number_input(key="cnn_cnn-fast_fashion_bs").value == 64
    (cost,) = [c.value for c in at.caption if c.value.startswith("This run should take about ")]
    fast = cost.removeprefix("This run should take about ").split(" on this server")[0]
    assert any(f"`cnn-fast`: about {fast} ·" in c.value for c in at.caption)  # Fashion's recipe, not MNIST's
    at.number_input(key="cnn_cnn-fast_fashion_limit").set_value(1000)
    at.button(key="cnn_fashion_train").click().run()
    snap = wait_for_job(at, "cnn_fashion_job")
    assert snap.state == "done", snap.error
    info = ui.get_store().info(snap.model_id)
    assert (info.config.dataset, info.config.preset, info.config.lr, info.config.batch_size, info.config.arch) == \
        ("fashion", "cnn-fast", 0.008, 64, "digitcnn_deep")
    assert "lr 0.008" not in info.title  # the preset as it runs on Fashion-MNIST, not a change from it
    assert "two convolutions per block" in info.title
    at.run()
    assert not at.exception and not at.error
    assert any(t.startswith("Test image ") and t.endswith(f"a {fashion.classes[7]}") for t in chart_titles(at))


def labels_of(dataset: str) -> set[str]:
    """How the pickers list every stored model of a dataset."""
    from digitlab import ui
    from digitlab.store import ModelStore

    return {ui.model_label(i) for i in ModelStore().list() if i.config.dataset == dataset}


def test_pages_list_only_the_models_of_the_dataset_in_use(trained, fashion_trained):
    from digitlab import ui

    fashion_ids = {i.id for i in fashion_trained.values()}
    at = on_fashion("5_Features.py")
    assert not at.exception and not at.error
    assert set(at.selectbox(key="feat_model").options) == labels_of("fashion")
    assert ui.get_store().info(at.session_state["feat_model"]).config.dataset == "fashion"

    at = on_fashion("7_Evaluate.py")
    assert not at.exception and not at.error
    assert at.session_state["eval_model"] not in {i.id for i in trained.values()}
    at.segmented_control(key="eval_section").set_value("Leaderboard").run()
    board = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    assert not set(board["id"]) & {i.id for i in trained.values()} and set(board["id"]) >= fashion_ids
    compare = next(d.value for d in at.dataframe if "gap (points)" in d.value.columns)
    row = compare[compare["kind"] == "CNN"].iloc[0]  # both datasets have a CNN: the gap opens
    assert row["MNIST"] > row["Fashion-MNIST"] and row["gap (points)"] > 0

    home = on_fashion("app.py")
    assert any("gap (points)" in d.value.columns for d in home.dataframe)
    listed = next(d.value for d in home.dataframe if "id" in d.value.columns)
    assert set(listed["id"]) >= fashion_ids and not set(listed["id"]) & {i.id for i in trained.values()}
    assert set(listed[listed["id"].isin(fashion_ids)]["question"]) == {"which item?"}  # not "which digit?"


def test_the_sketch_pad_offers_digit_models_only_and_says_why(trained, fashion_trained):
    at = on_fashion("6_Sketch_Pad.py")
    assert not at.exception and not at.error
    assert any("only models trained on MNIST can read it" in i.value for i in at.info)
    offered = set(at.multiselect(key="sketch_models").options)
    assert offered and offered <= labels_of("mnist") and not offered & labels_of("fashion")


def test_a_corrupt_fashion_file_is_named_on_the_page_and_the_next_source_is_used(fashion, monkeypatch, tmp_path):
    """A Fashion-MNIST folder whose training labels are cut short: the page does not break, it runs on the next
    source (the local data folder) and says which file was wrong and why."""
    import gzip
    import shutil

    from digitlab import data as D
    from digitlab import ui

    bad, good = tmp_path / "bad", tmp_path / "data" / "fashion-mnist"
    for folder in (bad, good):
        shutil.copytree(D.DATASETS["fashion"].sample_dir, folder)
    labels = bad / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-100]))
    monkeypatch.setenv("DIGITLAB_FASHION_DIR", str(bad))
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "data"))
    ui._load_data.clear()
    try:
        at = on_fashion("1_Data_Explorer.py")
        assert not at.exception and not at.error
        assert "**Fashion-MNIST**, using **the bundled sample" not in " ".join(w.value for w in at.warning)
        assert any(c.value.startswith(f"Data: **Fashion-MNIST** · local data folder {good} · 3,000 train")
                   for c in at.caption)
        notes = [m.value for m in at.markdown if m.value.startswith("- DIGITLAB_FASHION_DIR:")]
        assert len(notes) == 1 and "train-labels-idx1-ubyte" in notes[0] and "truncated" in notes[0], notes
    finally:
        ui._load_data.clear()  # the tests after this one get the full sets again


def test_offline_without_a_fashion_folder_the_stages_run_on_the_bundled_sample(fashion, monkeypatch, tmp_path):
    """No DIGITLAB_FASHION_DIR, no download: Fashion-MNIST starts at once on its bundled sample, says so, and a stage
    still trains on it."""
    from digitlab import ui

    monkeypatch.delenv("DIGITLAB_FASHION_DIR", raising=False)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "nodata"))
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")
    ui._load_data.clear()
    try:
        at = on_fashion("2_Linear_3_vs_7.py")
        assert not at.exception and not at.error
        banner = at.warning[0].value
        assert "**Fashion-MNIST**, using **the bundled sample of Fashion-MNIST" in banner
        assert "3,000 training and 600 test images" in banner
        assert any(e.label.startswith("Fetch the full Fashion-MNIST") for e in at.expander)
        at.number_input(key="lin_linear-seed_fashion_epochs").set_value(1)
        at.button(key="lin_fashion_train").click().run()
        snap = wait_for_job(at, "lin_fashion_job")
        assert snap.state == "done", snap.error
        assert ui.get_store().info(snap.model_id).fingerprint == ui.get_data("fashion").fingerprint()
        assert ui.get_data("fashion").is_sample
    finally:
        ui._load_data.clear()  # the tests after this one get the full sets again
