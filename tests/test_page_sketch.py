"""The Sketch Pad under the real Streamlit runtime (the canvas itself is driven in test_browser_sketch.py)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "6_Sketch_Pad.py")


@pytest.fixture()
def empty_store(tmp_path, monkeypatch):
    """A fresh, empty model store behind the page's cached accessors; the session's store comes back after."""
    from digitlab import ui

    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(tmp_path / "models"))
    ui.get_store.clear()  # a new store folder, and with it the queue of that folder
    yield
    ui.get_queue().close()
    monkeypatch.undo()
    ui.get_store.clear()


def test_no_model_offers_one_click_training(mnist, empty_store, tmp_path, monkeypatch):
    from digitlab import ui

    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "col"))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert any("No model that knows all ten digits" in i.value for i in at.info)
    assert any("Draw a digit" in i.value for i in at.info)  # an empty pad asks, never guesses
    at.button(key="sketch_train").click().run()
    assert not at.exception and not at.error
    jobs = {at.session_state[f"sketch_job_{n}"] for n in ("cnn", "mlp", "linear")}
    presets = {ui.get_queue().snapshot(j).config.preset for j in jobs}
    assert presets == {"cnn-fast", "simple_net", "linear-better"}
    assert at.get("progress") or at.success  # each job shows its progress panel


def test_with_models_the_collection_is_scored(mnist, trained, tmp_path, monkeypatch):
    import torch
    from pagetools import code_shown

    from digitlab.collection import Collection
    from digitlab.train import predict_proba

    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "col"))
    col = Collection()
    for i in range(20):
        col.add(mnist.test_images[i].numpy(), int(mnist.test_labels[i]))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error
    assert not any("No model that knows" in i.value for i in at.info)
    assert any("Draw a digit" in i.value for i in at.info)
    assert any("20 drawings" in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "accuracy on the collection" in d.value.columns)
    assert list(table.columns[:3]) == ["model", "accuracy on the collection", "MNIST test accuracy"]
    from digitlab.store import ModelStore

    model, info = ModelStore().load(trained["cnn"].id)
    images, labels, _ = col.load()
    expected = float((predict_proba(model, info.config, images).argmax(1) == labels).float().mean())
    mine = (table["preset"] == info.config.preset) & (table["MNIST test accuracy"] == info.metrics["test_accuracy"])
    row = table[mine].iloc[0]  # (the store may hold other cnn-seed models: one fine-tuned from it, say)
    assert row["accuracy on the collection"] == pytest.approx(expected)
    assert "linear-better" not in set(table["preset"])  # the 3-vs-7 model is not scored on ten digits
    assert set(table["preset"]) >= {"cnn-seed", "simple_net"}
    assert torch.is_tensor(images)
    code = code_shown(at)  # the boxes open (closed, they send nothing)
    assert any("def to_mnist" in c for c in code)
    # The scores are kept for the class, but a new drawing is counted at the next rerun.
    col.add(mnist.test_images[20].numpy(), int(mnist.test_labels[20]))
    at.run()
    assert any("21 drawings" in m.value for m in at.markdown)


@pytest.fixture()
def broken(mnist, trained, tmp_path, monkeypatch):
    """The session's trained models in a store of this test's own (a run another test left training cannot land in
    it), and a real run that went nowhere (a rate far too small, 512 images): below 50%."""
    from classroom import train_in_process
    from pagetools import copy_trained

    from digitlab import ui
    from digitlab.models import PRESETS
    from digitlab.store import ModelStore

    own = tmp_path / "models"
    copy_trained(trained, own)
    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(own))
    ui.get_store.clear()
    [model_id] = train_in_process(ModelStore(), mnist, [PRESETS["simple_net"].with_(epochs=1, lr=0.001,
                                                                                    train_limit=512, seed=99)])
    info = ModelStore().info(model_id)
    assert info.broken
    yield info
    monkeypatch.undo()
    ui.get_store.clear()


def test_the_picker_starts_on_the_best_of_each_kind_and_marks_a_broken_model(broken, tmp_path, monkeypatch):
    from digitlab import ranking
    from digitlab.store import ModelStore

    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "col"))
    infos = [i for i in ModelStore().list() if i.config.dataset == "mnist"]  # the pad reads digits: MNIST models only
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error
    picker = at.multiselect(key="sketch_models")
    best = ranking.best_of_each_kind(infos)
    assert picker.value == [i.id for i in best] and broken.id not in picker.value
    assert len(picker.value) <= 4 and {ranking.kind_of(i) for i in best} >= {"pair", "mlp", "cnn"}
    # Each listed by its title and accuracy; the broken run carries a warning sign.
    assert f"⚠️ {broken.title} · {broken.accuracy:.2%}" in picker.options
    rest = next(d.value for d in at.dataframe if "learning rate" in d.value.columns)
    row = rest[rest["model"] == broken.title].iloc[0]
    assert row[""] == "⚠️ below 50%" and row["learning rate"] == 0.001 and row["epochs"] == 1
    assert len(rest) == len(infos) - len(best)
    # A student may still add it on purpose.
    picker.set_value([*picker.value[:3], broken.id]).run()
    assert not at.exception and broken.id in at.multiselect(key="sketch_models").value
