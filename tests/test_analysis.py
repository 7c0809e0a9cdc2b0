"""digitlab.analysis: a stored model's analysis computed once, kept beside it, recomputed only when it must be.

Real MNIST, a real trained simple_net (the session's `trained` models, copied into a store of this module's
own so the tests can replace weights and damage files), and the Evaluate page under the real runtime.
"""

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from pagetools import metrics, open_page
from safetensors.torch import save as st_save

from digitlab import analysis, embeddings, robustness, untrained
from digitlab.metrics import predict
from digitlab.store import ModelStore

EVALUATE = str(Path(__file__).resolve().parent.parent / "pages" / "7_Evaluate.py")


@pytest.fixture()
def own(tmp_path, trained):
    """(store, model id): a copy of the session's trained simple_net in a store of this test's own."""
    source, store = ModelStore(), ModelStore(tmp_path / "models")
    store.root.mkdir(parents=True)
    model_id = trained["mlp"].id
    for suffix in (".json", ".safetensors"):
        shutil.copy(source.root / f"{model_id}{suffix}", store.root / f"{model_id}{suffix}")
    return store, model_id


@pytest.fixture()
def computed(monkeypatch):
    """Counts the analyses actually computed (not loaded) in this test."""
    calls = []
    real = analysis.compute

    def counting(store, model_id, data, model):
        calls.append(model_id)
        return real(store, model_id, data, model)

    monkeypatch.setattr(analysis, "compute", counting)
    return calls


def test_ensure_computes_once_and_then_loads_from_disk(mnist, own, computed):
    store, model_id = own
    path = store.analysis_path(model_id)
    assert not path.exists()
    first = analysis.ensure(store, model_id, mnist)
    assert computed == [model_id] and path.is_file()
    written = path.stat().st_mtime_ns

    # What it holds is what the model does on the test set, and what training recorded.
    model, info = store.load(model_id)
    pred = predict(model, info.config, mnist)
    assert torch.equal(first.predictions.probs, pred.probs) and torch.equal(first.predictions.index, pred.index)
    assert first.predictions.accuracy == pytest.approx(info.metrics["test_accuracy"], abs=1e-6)
    assert first.accuracy_before == pytest.approx(untrained.accuracy(untrained.initial_model(info.config), info.config, mnist))
    assert first.robustness(analysis.ROBUST_N) is None  # the costly part comes with complete()
    raw = first.embedding(embeddings.RAW, "pca", analysis.EMBED_N)
    assert raw.coords.shape == (analysis.EMBED_N, 2) and raw.dims == 784
    assert torch.equal(torch.as_tensor(raw.targets), pred.targets[raw.rows])
    assert first.robustness(500) is None and first.embedding("2", "tsne", 500) is None  # not computed yet

    # A second ensure (another visitor, another process) reads the file: nothing computed, nothing written.
    again = analysis.ensure(store, model_id, mnist, model)
    assert computed == [model_id] and path.stat().st_mtime_ns == written
    assert torch.equal(again.predictions.probs, first.predictions.probs)
    assert again.accuracy_before == first.accuracy_before
    assert analysis.load(store, model_id, mnist) is not None

    # complete() (the worker, when no run waits) adds the robustness curves once
    full = analysis.complete(store, model_id, mnist)
    assert full.robustness(analysis.ROBUST_N) == robustness.robustness(model, info.config, mnist, analysis.ROBUST_N)
    assert computed == [model_id]
    assert analysis.load(store, model_id, mnist).robustness() == full.robustness()


def test_new_weights_make_the_analysis_stale(mnist, own, computed):
    store, model_id = own
    old = analysis.ensure(store, model_id, mnist)
    # The model file is replaced (other weights, its record's checksum to match): the analysis is of the old ones.
    model, _ = store.load(model_id)
    state = {k: v * 0.5 for k, v in model.state_dict().items()}
    payload = st_save(state, metadata={"digitlab_id": model_id})
    (store.root / f"{model_id}.safetensors").write_bytes(payload)
    record = json.loads((store.root / f"{model_id}.json").read_text())
    record["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (store.root / f"{model_id}.json").write_text(json.dumps(record))

    assert analysis.load(store, model_id, mnist) is None
    new = analysis.ensure(store, model_id, mnist)
    assert computed == [model_id, model_id]
    assert new.weights_sha256 == record["weights_sha256"] != old.weights_sha256
    halved, info = store.load(model_id)
    assert torch.equal(new.predictions.probs, predict(halved, info.config, mnist).probs)
    assert analysis.load(store, model_id, mnist).weights_sha256 == record["weights_sha256"]


def test_an_analysis_of_other_data_is_not_used(mnist, own, computed):
    store, model_id = own
    found = analysis.ensure(store, model_id, mnist)
    analysis.save(store, replace(found, fingerprint="0123456789abcdef"))  # as if computed on other images
    assert analysis.load(store, model_id, mnist) is None
    assert analysis.ensure(store, model_id, mnist).fingerprint == mnist.fingerprint()
    assert computed == [model_id, model_id]


@pytest.mark.parametrize("damage", ["garbage", "cut in half", "empty", "the weights file", "another model's"])
def test_a_damaged_or_foreign_file_is_computed_again_without_a_traceback(mnist, own, computed, trained, damage):
    store, model_id = own
    good = analysis.ensure(store, model_id, mnist)
    path = store.analysis_path(model_id)
    whole = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not an analysis" * 50)
    elif damage == "cut in half":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "the weights file":  # valid safetensors, but not an analysis
        shutil.copy(store.root / f"{model_id}.safetensors", path)
    else:  # a whole analysis, of a different model
        other = trained["cnn"].id
        for suffix in (".json", ".safetensors"):
            shutil.copy(ModelStore().root / f"{other}{suffix}", store.root / f"{other}{suffix}")
        analysis.ensure(store, other, mnist)
        shutil.copy(store.analysis_path(other), path)
    assert analysis.load(store, model_id, mnist) is None
    again = analysis.ensure(store, model_id, mnist)
    assert torch.equal(again.predictions.probs, good.predictions.probs)
    assert computed.count(model_id) == 2 and analysis.load(store, model_id, mnist) is not None


def test_what_a_student_asks_for_beyond_the_defaults_is_added_once(mnist, own, computed):
    store, model_id = own
    model, info = store.load(model_id)
    found = analysis.ensure(store, model_id, mnist, model)
    grown = analysis.add_robustness(store, found, mnist, 500, model)
    assert grown.robustness(500) == robustness.robustness(model, info.config, mnist, 500)
    grown = analysis.add_embedding(store, grown, mnist, "2", "tsne", 300, model)
    on_disk = analysis.load(store, model_id, mnist)
    assert on_disk.robustness(500) == grown.robustness(500) and on_disk.robustness() == found.robustness()
    emb = on_disk.embedding("2", "tsne", 300)
    assert emb.coords.shape == (300, 2) and emb.dims == 50 and emb.method == "tsne"
    written = store.analysis_path(model_id).stat().st_mtime_ns
    assert analysis.add_robustness(store, on_disk, mnist, 500, model) is on_disk  # already there: nothing done
    assert store.analysis_path(model_id).stat().st_mtime_ns == written and computed == [model_id]


def test_the_store_keeps_analyses_out_of_the_model_list_and_deletes_them_with_the_model(mnist, own):
    store, model_id = own
    analysis.ensure(store, model_id, mnist)
    infos, problems = store.scan()
    assert [i.id for i in infos] == [model_id] and not problems
    store.delete(model_id)
    assert not store.analysis_path(model_id).exists() and store.list() == []


def test_the_evaluate_page_shows_the_analysis_and_a_later_visitor_does_not_recompute(mnist, trained, monkeypatch):
    from digitlab import ui

    store, info = ModelStore(), trained["mlp"]
    store.analysis_path(info.id).unlink(missing_ok=True)
    ui.analyses._model_analysis.clear()
    at = open_page(EVALUATE, eval_model=info.id)  # the first visitor: the page computes it, once
    assert not at.exception and not at.error
    found = analysis.load(store, info.id, mnist)
    assert found is not None
    assert metrics(at)["Accuracy"] == f"{found.predictions.accuracy:.2%}" == f"{info.metrics['test_accuracy']:.2%}"
    assert metrics(at)["Mistakes"] == f"{int((~found.predictions.correct).sum()):,}"

    # A later visitor, in a server started afresh: the analysis comes from the file, nothing is computed.
    ui.analyses._model_analysis.clear()

    def fail(*args):
        raise AssertionError("computed again")

    monkeypatch.setattr(analysis, "compute", fail)
    at = open_page(EVALUATE, eval_model=info.id)
    assert not at.exception and not at.error
    assert metrics(at)["Accuracy"] == f"{found.predictions.accuracy:.2%}"


def test_the_training_process_gives_way_to_a_run_that_arrives_during_an_analysis(mnist, tmp_path):
    """The costly part of a model's analysis (robustness) is done when no run waits; a run that arrives stops
    it between two levels, nothing half-done is kept, and it is done whole later."""
    from digitlab import analysis
    from digitlab.models import PRESETS
    from digitlab.runs.execute import analyse_model, run_job
    from digitlab.runs.spec import JobSpec
    from digitlab.runs.steering import Steering
    from digitlab.store import ModelStore

    config = PRESETS["simple_net"].with_(epochs=1, train_limit=2000)
    done = run_job(JobSpec.of("j", config, mnist, ModelStore(tmp_path)), mnist, Steering(), lambda m: None)
    store, model_id = ModelStore(tmp_path), done.model_id
    assert analyse_model(str(tmp_path), model_id, mnist, complete=False)  # what the process makes at once
    assert analysis.load(store, model_id, mnist).robustness(analysis.ROBUST_N) is None  # only the first part
    asked = []
    assert not analyse_model(str(tmp_path), model_id, mnist, give_way=lambda: asked.append(1) or len(asked) > 2)
    assert len(asked) == 3 and analysis.load(store, model_id, mnist).robustness(analysis.ROBUST_N) is None
    assert analyse_model(str(tmp_path), model_id, mnist, give_way=lambda: False)
    assert analysis.load(store, model_id, mnist).robustness(analysis.ROBUST_N) is not None


def test_the_untrained_start_is_worked_out_once_per_start_and_a_damaged_table_again(own, mnist):
    """A class training one recipe from one seed shares its untrained start: its accuracy (a pass over the test
    set, a third of a DigitCNN's analysis) is worked out once and read from the store's table after that."""
    store, model_id = own
    config = store.info(model_id).config
    start = untrained.initial_model(config)
    fresh = untrained.accuracy(start, config, mnist)
    assert analysis.start_accuracy(store, start, config, mnist) == fresh
    table = store.root / analysis.STARTS_FILE
    (key, value), = json.loads(table.read_text()).items()
    assert value == fresh
    table.write_text(json.dumps({key: 0.5}))  # read, not worked out again: the table's word is taken
    assert analysis.start_accuracy(store, untrained.initial_model(config), config, mnist) == 0.5
    other = config.with_(seed=config.seed + 1)  # another seed: another start, another entry
    theirs = analysis.start_accuracy(store, untrained.initial_model(other), other, mnist)
    assert theirs == untrained.accuracy(untrained.initial_model(other), other, mnist) != 0.5
    assert len(json.loads(table.read_text())) == 2
    for damaged in (b"\x00 not json", b"[1, 2]", json.dumps({key: "0.5"}).encode(), json.dumps({key: 7.0}).encode()):
        table.write_bytes(damaged)
        assert analysis.start_accuracy(store, start, config, mnist) == fresh
    assert analysis.ensure(store, model_id, mnist).accuracy_before == fresh  # what Features shows
