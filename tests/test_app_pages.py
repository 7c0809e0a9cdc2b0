"""Home and Data Explorer under the real Streamlit runtime, asserting on what a user sees."""

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
HOME = str(ROOT / "app.py")
EXPLORER = str(ROOT / "pages" / "1_Data_Explorer.py")




def _array(v) -> np.ndarray:
    """Plotly 6 ships numpy arrays as base64 typed arrays; decode them back to what was drawn."""
    if isinstance(v, dict) and "bdata" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return arr.reshape([int(n) for n in str(v["shape"]).split(",")]) if "shape" in v else arr
    return np.asarray(v)


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture()
def fresh_data_cache():
    """ui caches the dataset once per process; tests that change where data comes from start and end clean."""
    from digitlab import ui

    ui._load_data.clear()
    yield
    ui._load_data.clear()


def test_home_shows_journey_data_device_models(mnist, fresh_data_cache):
    at = AppTest.from_file(HOME, default_timeout=120).run()
    assert not at.exception and not at.error
    assert _metrics(at)["Training images"] == "60,000" and _metrics(at)["Test images"] == "10,000"
    assert any(c.value.startswith(f"Data: **MNIST** · MNIST folder {mnist.source.path}") for c in at.caption)
    assert any("CC BY-SA 3.0" in c.value for c in at.caption)
    headers = [h.value for h in at.header]
    assert "The journey" in headers
    assert not at.warning  # full data: no sample banner


def test_explorer_on_full_mnist(mnist, fresh_data_cache):
    from digitlab import explore

    at = AppTest.from_file(EXPLORER, default_timeout=120).run()
    assert not at.exception and not at.error
    assert _metrics(at) == {"Training images": "60,000", "Test images": "10,000"}
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = specs[0]["data"]
    assert bars[0]["name"] == "train" and _array(bars[0]["y"]).tolist() == mnist.class_counts("train")
    assert bars[1]["name"] == "test" and _array(bars[1]["y"]).tolist() == mnist.class_counts("test")
    titles = [s["layout"].get("title", {}).get("text", "") for s in specs]
    assert "60 random train images" in titles and "mean image of each class" in titles
    sheet = specs[titles.index("60 random train images")]["data"][0]["z"]  # real pixels, one byte each
    first = int(explore.sample_indices(mnist.train_labels, None, 60, 0)[0])
    assert sheet["dtype"] == "u1" and (_array(sheet)[:28, :28] == mnist.train_images[first].numpy()).all()
    means = specs[titles.index("mean image of each class")]
    assert means["layout"]["xaxis"]["ticktext"] == [str(d) for d in range(10)]  # each average named by its digit
    # one image: the heatmap holds image 0's real pixel values, the styled table has 28x28 cells
    heat = next(s for s in specs if s["layout"].get("title", {}).get("text") == "Hover for each pixel's value")
    assert (_array(heat["data"][0]["z"]) == mnist.train_images[0].numpy()).all()
    assert any("image 0" in m.value and "labelled **5**" in m.value for m in at.markdown)
    vector = next(s for s in specs if "784-long vector" in s["layout"].get("title", {}).get("text", ""))
    assert _array(vector["data"][0]["z"]).shape == (1, 784)
    # the normalisation table: raw 0..255, then 0..1, -1..1, and the mnist one
    # the seeds' grey-gradient table: 784 cells holding the same values, shaded by background colour
    cells = [int(v) for v in re.findall(r"<td [^>]*>\s*(\d+)\s*</td>", at.get("html")[0].value)]
    assert cells == mnist.train_images[0].reshape(-1).tolist()
    html = at.get("html")[0].value
    assert "background-color: #ffffff" in html and "background-color: #000000" in html  # paper and ink
    norm = next(d.value for d in at.dataframe if "transform" in d.value.columns)
    assert norm["transform"].tolist()[0] == "raw uint8" and norm["max"].tolist()[:3] == [255.0, 1.0, 1.0]
    assert norm["min"].tolist()[2] == -1.0
    assert any("mean 0.1307, std 0.3081" in m.value for m in at.markdown)


def test_explorer_widgets(mnist, fresh_data_cache):
    at = AppTest.from_file(EXPLORER, default_timeout=120).run()
    first = at.caption[2].value if len(at.caption) > 2 else ""
    at.button(key="reshuffle").click().run()
    labels_caption = [c.value for c in at.caption if c.value.startswith("Their labels")]
    assert labels_caption and labels_caption[0] != first  # a new draw
    # filter to one digit: the sheet title says so and the labels line goes
    at.selectbox(key="grid_digit").select_index(8).run()  # options: any, 0..9
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert "60 random train images of the digit 7" in titles
    # choose by digit: the 4th '3' of the test split
    at.radio(key="explore_split").set_value("test").run()
    at.radio(key="pick_by").set_value("digit").run()
    at.number_input(key="pick_nth").set_value(3).run()
    assert not at.exception
    idx = int((mnist.test_labels == 3).nonzero()[3])
    assert any(f"test image {idx}**, labelled **3**" in m.value for m in at.markdown)
    # the normalised images are drawn when asked for, each with that normalisation's own range
    shown = len(at.get("plotly_chart"))
    at.toggle(key="norm_images").set_value(True).run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == shown + 3
    assert [s["data"][0]["zmax"] for s in specs[-3:]][:2] == [1.0, 1.0]  # 0..1, then -1..1
    assert specs[-2]["data"][0]["zmin"] == -1.0


def test_sample_banner_without_data_dir(monkeypatch, tmp_path, fresh_data_cache):
    monkeypatch.delenv("DIGITLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "nodata"))
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")
    for page in (HOME, EXPLORER):
        at = AppTest.from_file(page, default_timeout=120).run()
        assert not at.exception and not at.error
        assert at.warning and "bundled sample" in at.warning[0].value
        assert "5,000 training and 1,000 test images" in at.warning[0].value
        assert any(e.label.startswith("Fetch the full MNIST") for e in at.expander)
        assert _metrics(at)["Training images"] == "5,000"


def test_home_lists_a_model_saved_after_the_first_visit(mnist, trained):
    """The store listing is kept between reruns, yet a model saved or removed since shows at the next one."""
    from pagetools import damaged_copy

    from digitlab.store import ModelStore

    at = AppTest.from_file(HOME, default_timeout=120).run()
    count = len([i for i in ModelStore().list() if i.config.dataset == "mnist"])  # Home lists MNIST's to start with
    assert any(h.value == f"Trained on MNIST ({count})" for h in at.subheader)
    whole = (ModelStore().root / f"{trained['mlp'].id}.safetensors").read_bytes()
    bad = damaged_copy(trained["mlp"].id, "copy-listed-later", whole)  # a whole copy: damaged ones are not listed
    try:
        at.run()
        assert any(h.value == f"Trained on MNIST ({count + 1})" for h in at.subheader)
        assert "copy-listed-later" in at.dataframe[0].value["id"].tolist()
    finally:
        ModelStore().delete(bad)
    at.run()
    assert any(h.value == f"Trained on MNIST ({count})" for h in at.subheader)


def test_presenter_mode_from_the_address_makes_charts_and_the_pixel_table_readable(mnist):
    at = AppTest.from_file(EXPLORER, default_timeout=120)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception and at.toggle(key="present_mode").value  # ?present=1 turns the toggle on
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert specs
    for spec in specs:
        layout = spec["layout"]
        assert layout["font"]["size"] >= 18 and layout["title"]["font"]["size"] == 26
        for name, axis in layout.items():
            if name.startswith(("xaxis", "yaxis")):
                assert axis["tickfont"]["size"] >= 18, name
    html = " ".join(h.proto.body for h in at.get("html"))
    assert "font-size: 18px" in html  # the pixel table's numbers, from the back of the room

    at.toggle(key="present_mode").set_value(False).run()  # off again: the address drops it, charts as before
    assert "present" not in at.query_params
    plain = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert plain.get("font", {}).get("size") is None


def test_the_data_note_blames_digitlab_offline_only_when_it_is_set(monkeypatch, tmp_path, fresh_data_cache):
    monkeypatch.delenv("DIGITLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "nodata"))
    for offline, said in (("", "use **Fetch full MNIST**"), ("1", "switched off (DIGITLAB_OFFLINE)")):
        monkeypatch.setenv("DIGITLAB_OFFLINE", offline)
        at = AppTest.from_file(EXPLORER, default_timeout=120).run()
        notes = " ".join(m.value for m in at.markdown if m.value.startswith("- download"))
        assert said in notes and (offline or "DIGITLAB_OFFLINE" not in notes), notes
