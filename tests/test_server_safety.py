"""A server a class cannot break: hostile records and files, leftovers of interrupted saves, folders that cannot be
written. Each case is the one tried by hand in issue 15, rerun against the real store, command line and pages."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from digitlab.store import MAX_RECORD_BYTES, ModelStore, StoreError

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"Home": ROOT / "app.py", "Sketch Pad": ROOT / "pages" / "6_Sketch_Pad.py",
         "Evaluate": ROOT / "pages" / "7_Evaluate.py"}

# Each record is the good model's own, with one field changed as a student might: (field, value, what is said).
HOSTILE = {
    "bad-parameters": ("parameters", "many", "parameters is 'many', not a whole number"),
    "bad-seconds": ("train_seconds", "slow", "train_seconds is 'slow', not a number"),
    "bad-created": ("created", 5, "created is 5, not text"),
    "bad-metrics": ("metrics", [1, 2], "metrics is not a table of at most 32 numbers"),
    "bad-history": ("history", 5, "history is int, not a list"),
    "bad-accuracy": ("metrics", {"test_accuracy": 7.5}, "metrics.test_accuracy is 7.5, outside 0..1"),
    "huge-net": ("config.hidden", [20000, 20000], "config.hidden[0] is 20,000, outside 1..4,096"),
}


def _copy_model(src: ModelStore, dst: ModelStore, model_id: str, new_id: str) -> dict:
    dst.root.mkdir(parents=True, exist_ok=True)
    record = json.loads((src.root / f"{model_id}.json").read_text())
    record["id"] = new_id
    shutil.copy(src.root / f"{model_id}.safetensors", dst.root / f"{new_id}.safetensors")
    (dst.root / f"{new_id}.json").write_text(json.dumps(record))
    return record


@pytest.fixture()
def hostile_store(trained, tmp_path, monkeypatch):
    """A store behind the pages with one good model and every hostile file of the issue beside it."""
    from digitlab import ui

    good = trained["mlp"]
    store = ModelStore(tmp_path / "models")
    _copy_model(ModelStore(), store, good.id, good.id)
    for name, (field, value, _) in HOSTILE.items():
        record = _copy_model(ModelStore(), store, good.id, name)
        if field.startswith("config."):
            record["config"][field.split(".")[1]] = value
        else:
            record[field] = value
        (store.root / f"{name}.json").write_text(json.dumps(record))
    # a record padded past the size limit (the was 137 MB; over the limit is enough to be refused)
    record = _copy_model(ModelStore(), store, good.id, "huge-record")
    record["notes"] = "x" * (MAX_RECORD_BYTES + 1)
    (store.root / "huge-record.json").write_text(json.dumps(record))
    # weights cut short, an honest record
    _copy_model(ModelStore(), store, good.id, "cut-weights")
    weights = (store.root / "cut-weights.safetensors").read_bytes()
    (store.root / "cut-weights.safetensors").write_bytes(weights[: len(weights) - 100])
    # special files, for anyone who can write in the folder (issue 29): a record that is /dev/zero, a record that is
    # a FIFO (reading it waits for a writer forever), weights of 4 GB that are a hole (sparse: no disk used)
    (store.root / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(store.root / "fifo.json")
    record = _copy_model(ModelStore(), store, good.id, "sparse-weights")
    record["weights_bytes"] = 4 * 1024**3
    (store.root / "sparse-weights.json").write_text(json.dumps(record))
    with open(store.root / "sparse-weights.safetensors", "r+b") as f:
        f.truncate(4 * 1024**3)
    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(store.root))
    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "col"))
    ui.get_store.clear()
    yield store, good
    ui.get_queue().close()
    monkeypatch.undo()
    ui.get_store.clear()


def test_every_hostile_record_is_reported_and_skipped_by_the_store(hostile_store):
    import resource

    store, good = hostile_store
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    infos, problems = store.scan()
    assert [i.id for i in infos] == [good.id]
    reasons = {p.name: p.reason for p in problems}
    for name, (_, _, said) in HOSTILE.items():
        assert said in reasons[name], (name, reasons[name])
    assert "more than one this app writes" in reasons["huge-record"]
    assert "damaged" in reasons["cut-weights"]
    assert "not a regular file" in reasons["zero"] and "not a regular file" in reasons["fifo"]
    assert "4,295.0 MB, more than one this app writes" in reasons["sparse-weights"]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < peak + 20_000  # kB: nothing of them was read
    for name in [*HOSTILE, "huge-record", "cut-weights", "zero", "fifo", "sparse-weights"]:
        with pytest.raises(StoreError):
            store.load(name)
    store.load(good.id)


@pytest.mark.slow  # the command line in its own process
def test_the_command_line_lists_the_good_model_and_skips_the_rest(hostile_store):
    store, good = hostile_store
    out = subprocess.run([sys.executable, "-m", "digitlab", "models"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "DIGITLAB_MODEL_DIR": str(store.root)}, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines() if not line.startswith("skipped")]
    assert listed == [good.id]
    for name in [*HOSTILE, "huge-record", "cut-weights", "zero", "fifo", "sparse-weights"]:
        assert f"skipped {name}: " in out.stdout


@pytest.mark.parametrize("page", list(PAGES))
def test_pages_show_the_good_model_and_name_every_skipped_file(hostile_store, page):
    at = AppTest.from_file(str(PAGES[page]), default_timeout=120).run()
    assert not at.exception
    skipped = next(e for e in at.expander if "were skipped" in e.label)
    assert skipped.label.startswith(f"⚠️ {len(HOSTILE) + 5} file(s)")
    text = " ".join(m.value for m in skipped.markdown)
    for name in [*HOSTILE, "huge-record", "cut-weights", "zero", "fifo", "sparse-weights"]:
        assert f"`{name}`" in text


@pytest.mark.slow  # the command line in its own process
def test_leftovers_of_interrupted_saves_are_removed_or_reported(trained, tmp_path):
    """kill -9 during a save leaves a hidden .tmp file, or weights whose record was never written."""
    good = trained["mlp"]
    store = ModelStore(tmp_path / "models")
    _copy_model(ModelStore(), store, good.id, good.id)
    old_tmp = store.root / f".{good.id}.json.abc123.tmp"
    old_tmp.write_text("{half a rec")
    os.utime(old_tmp, (time.time() - 3600, time.time() - 3600))
    fresh_tmp = store.root / ".other.json.def456.tmp"  # a save in progress, perhaps in another process
    fresh_tmp.write_text("{")
    shutil.copy(store.root / f"{good.id}.safetensors", store.root / "no-record.safetensors")

    out = subprocess.run([sys.executable, "-m", "digitlab", "models"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "DIGITLAB_MODEL_DIR": str(store.root)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"removed {old_tmp} (left by a save that was interrupted)" in out.stdout
    assert "skipped no-record: weights with no record" in out.stdout
    assert not old_tmp.exists() and fresh_tmp.exists()
    assert (store.root / "no-record.safetensors").exists()  # a user's weights: reported, never deleted

    from digitlab.collection import Collection

    (tmp_path / "col").mkdir()
    old_png = tmp_path / "col" / ".3_0123456789ab.png.x1y2.tmp"  # a drawing whose save never finished
    old_png.write_bytes(b"\x89PNG half")
    os.utime(old_png, (time.time() - 3600, time.time() - 3600))
    assert Collection(tmp_path / "col").list() == [] and not old_png.exists()


@pytest.mark.slow  # the command line in its own process
def test_an_unwritable_model_folder_is_said_before_training(mnist, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = subprocess.run([sys.executable, "-m", "digitlab", "train", "mlp", "--epochs", "1", "--offline"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DIGITLAB_MODEL_DIR": str(blocker / "models"),
                              "DIGITLAB_DATA_DIR": mnist.source.path})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"the model folder {blocker / 'models'} cannot be written" in out.stderr
    assert "epoch 1/1" not in out.stdout  # said before a single epoch ran
