"""Teach it our handwriting, under the real Streamlit runtime: a real model, a real collection of drawings."""

import shutil
from pathlib import Path

import pytest
import torch
from pagetools import WAIT_S, metrics
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "9_Our_Handwriting.py")


@pytest.fixture()
def own_store(trained, tmp_path, monkeypatch):
    """A model store of its own holding a copy of the session's simple_net, so the model fine-tuning stores does
    not join the other tests' store; the session's store comes back after."""
    from digitlab import ui
    from digitlab.store import ModelStore

    parent = trained["mlp"]
    for suffix in (".json", ".safetensors"):
        (tmp_path / "models").mkdir(exist_ok=True)
        shutil.copy(ModelStore().root / f"{parent.id}{suffix}", tmp_path / "models" / f"{parent.id}{suffix}")
    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "collection"))
    ui.get_store.clear()
    yield parent
    ui.get_queue().close()
    monkeypatch.undo()
    ui.get_store.clear()


def _class_hand(mnist, lo: int, n: int):
    """Drawings in a hand MNIST never had: real test digits moved low and right, in thick strokes."""
    moved = torch.roll(mnist.test_images[lo : lo + n], shifts=(2, 3), dims=(1, 2))
    return torch.maximum(moved, torch.roll(moved, 1, 2)), mnist.test_labels[lo : lo + n]


def test_too_few_drawings_then_fine_tuning_learns_the_class_hand(mnist, own_store):
    from digitlab.collection import Collection
    from digitlab.store import ModelStore

    collection = Collection()
    images, labels = _class_hand(mnist, 5000, 200)
    first = [i for i in range(200) if int(labels[i]) != 4][:30] + [int((labels == 4).nonzero()[0])]
    for i in first:
        collection.add(images[i].numpy(), int(labels[i]))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error
    counts = torch.bincount(labels[first], minlength=10)
    needs = [f"**{2 - int(c)} more {d}**" for d, c in enumerate(counts.tolist()) if c < 2]
    assert any("Still needed: " + ", ".join(needs) in w.value for w in at.warning)
    assert "ft_go" not in [b.key for b in at.button]  # nothing to fine-tune on yet

    for i in sorted(set(range(200)) - set(first)):
        collection.add(images[i].numpy(), int(labels[i]))
    at.run()
    assert not at.warning and metrics(at)["Drawings in the class collection"] == "200"
    assert at.selectbox(key="ft_model").value == own_store.id
    at.button(key="ft_go").click().run()
    assert not at.exception and not at.error
    from digitlab import ui  # queued like any run: the class's training process fine-tunes it, not the web server

    assert any(i.value.startswith("Fine-tuning ") for i in at.info)  # in line or under way: the page follows it
    job = ui.get_queue().wait(at.session_state["ft_job"], timeout=WAIT_S)
    assert job.state == "done", job.error
    at.run()
    assert not at.exception and not at.error
    done = at.session_state["ft_result"]
    assert done["model"] == job.model_id
    assert done["after"]["class drawings"] > done["before"]["class drawings"] + 0.2  # it learned our hand
    assert done["before"]["MNIST test"] == pytest.approx(own_store.metrics["test_accuracy"], abs=1e-4)
    shown = metrics(at)
    assert shown[f"Kept-out class drawings ({done['held_out']}): after"] == f"{done['after']['class drawings']:.1%}"
    assert shown["MNIST test set (10,000): after"] == f"{done['after']['MNIST test']:.1%}"

    # stored as a new model that names its parent and the drawings it saw; the parent is untouched
    store = ModelStore()
    record = store.info(done["model"])
    assert record.continued_from == own_store.id and "fine-tuned on" in record.title
    import json

    saved = json.loads((store.root / f"{done['model']}.json").read_text())
    assert saved["fine_tuned_from"] == own_store.id and len(saved["fine_tuned_on"]) == done["trained_on"]
    assert set(saved["fine_tuned_on"]) <= {e.id for e in collection.list()}
    assert store.find(own_store.config, mnist.fingerprint()).id == own_store.id  # a Train is not answered with it
