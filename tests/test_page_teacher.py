"""The teacher's page under the real Streamlit runtime, and what a student's page says about limits and Stop."""

from pathlib import Path

import pytest
from pagetools import WAIT_S
from streamlit.testing.v1 import AppTest

from digitlab.models import PRESETS
from digitlab.train import task_size
from digitlab.ui.text import over_limit_text

ROOT = Path(__file__).resolve().parent.parent
TEACHER = str(ROOT / "pages" / "8_Teacher.py")
CNN = str(ROOT / "pages" / "4_CNN.py")
MLP = str(ROOT / "pages" / "3_MLP.py")
KEY = "a long teacher key for the tests"


@pytest.fixture()
def own_store(tmp_path, monkeypatch, mnist):
    """A store and queue of this test's own, with the teacher key set as when the server started."""
    from digitlab import ui

    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "col"))
    monkeypatch.setenv("DIGITLAB_TEACHER_KEY", KEY)
    ui.get_store.clear()
    yield ui.get_queue()
    ui.get_queue().close()
    monkeypatch.undo()
    ui.get_store.clear()


def _submit(at: AppTest) -> AppTest:
    return at.button(key="teacher_unlock").click().run()


def test_without_a_key_set_nobody_manages_from_a_browser(own_store, monkeypatch):
    monkeypatch.delenv("DIGITLAB_TEACHER_KEY")
    at = AppTest.from_file(TEACHER, default_timeout=120).run()
    assert not at.exception
    assert any("No teacher key was set when this server started" in i.value for i in at.info)
    assert not at.text_input and "Runs" not in [h.value for h in at.header]


def test_a_wrong_key_shows_nothing_and_the_right_one_everything(own_store, mnist):
    at = AppTest.from_file(TEACHER, default_timeout=120).run()
    assert not at.exception and "Runs" not in [h.value for h in at.header]
    at.text_input(key="teacher_key_input").input("a guess")
    _submit(at)
    assert any("not the teacher key" in e.value for e in at.error)
    assert "Runs" not in [h.value for h in at.header]
    at.text_input(key="teacher_key_input").input(KEY)
    _submit(at)
    assert not at.exception
    assert [h.value for h in at.header][-9:] == ["The room now", "Lead the class", "Predict, then see", "Fool the model",
                                                 "Runs", "Limits", "Models", "Drawings in the class collection",
                                                 "The class's names", "The model store"][-9:]
    assert at.session_state["teacher_unlocked"] and KEY not in repr(at.session_state)  # a flag, never the key


def test_the_teacher_cancels_a_students_run_and_sets_the_limit(own_store, mnist):
    queue = own_store
    run = queue.submit(PRESETS["cnn-seed"].with_(epochs=30, seed=31), mnist, owner="a student")
    at = AppTest.from_file(TEACHER, default_timeout=120).run()
    at.text_input(key="teacher_key_input").input(KEY)
    _submit(at)
    assert any(PRESETS["cnn-seed"].title in m.value and "1 student(s) waiting on it" in m.value for m in at.markdown)
    at.button(key=f"teacher_cancel_{run.id}").click().run()
    assert not at.exception
    assert queue.wait(run.id, timeout=WAIT_S).state == "cancelled"
    at.number_input(key="teacher_limit").set_value(2.0)
    at.button(key="teacher_set_limit").click().run()
    assert queue.limit_s == 120.0


def test_a_students_page_refuses_a_run_over_the_limit_before_it_is_queued(own_store, mnist):
    """The issue's hog: a CNN with batch size 1 and 100 epochs, set through the page's own widgets."""
    at = AppTest.from_file(CNN, default_timeout=120).run()
    preset = at.session_state["cnn_preset"]
    at.number_input(key=f"cnn_{preset}_bs").set_value(1)
    at.number_input(key=f"cnn_{preset}_epochs").set_value(100)
    at.run()
    assert not at.exception
    (warning,) = [w.value for w in at.warning if "more than the class's limit" in w.value]
    assert at.number_input(key=f"cnn_{preset}_epochs").value == 1  # the box comes down to what it offers at batch 1
    config = PRESETS[preset].with_(batch_size=1, epochs=1)  # and even one epoch at batch 1 is over the limit
    # what the queue would refuse it with, in the page's words
    assert warning == over_limit_text(own_store.over_limit(config, task_size(mnist, config)))
    assert "This run would take about" in warning and "of 5 min 00 s for one run. Try" in warning
    assert at.button(key="cnn_train").disabled
    assert own_store.jobs() == []


def test_train_again_live_trains_a_stored_recipe_as_a_new_model(own_store, mnist):
    """A recipe already in the store answers from it; "Train again live" queues it like any run, a new model."""
    at = AppTest.from_file(MLP, default_timeout=120).run()
    at.number_input(key="mlp_simple_net_epochs").set_value(1)
    at.number_input(key="mlp_simple_net_limit").set_value(3000)
    at.button(key="mlp_train").click().run()
    first = own_store.wait(at.session_state["mlp_job"], timeout=WAIT_S)
    assert first.state == "done" and not first.reused
    at.button(key="mlp_train").click().run()  # the same recipe again: answered from the store
    stored = own_store.snapshot(at.session_state["mlp_job"])
    assert stored.reused and stored.model_id == first.model_id
    assert any("already trained: loaded from the model store" in s.value for s in at.success)
    at.button(key=f"again_mlp_job_{stored.id}").click().run()
    assert not at.exception
    again = own_store.wait(at.session_state["mlp_job"], timeout=WAIT_S)
    assert again.state == "done" and not again.reused and again.model_id != first.model_id
    assert again.history[-1]["test_accuracy"] == first.history[-1]["test_accuracy"]  # same recipe, same model
    assert len(own_store.store.list()) == 2


def test_a_students_stop_detaches_and_the_last_one_cancels(own_store, mnist):
    """Two students asked for the same run (shared); the first one's Stop leaves it training for the other."""
    pages = [AppTest.from_file(MLP, default_timeout=120).run() for _ in range(2)]
    for at in pages:
        at.number_input(key="mlp_simple_net_epochs").set_value(30)
        at.button(key="mlp_train").click().run()
    first, second = pages
    job_id = first.session_state["mlp_job"]
    assert second.session_state["mlp_job"] == job_id and len(own_store.snapshot(job_id).watchers) == 2
    first.button(key=f"stop_mlp_job_{job_id}").click().run()
    assert not first.exception
    assert any("You stopped following" in i.value and "the 1 other(s) who wait on it" in i.value for i in first.info)
    assert own_store.snapshot(job_id).state in ("queued", "running")  # still going for the second student
    second.button(key=f"stop_mlp_job_{job_id}").click().run()
    assert own_store.wait(job_id, timeout=WAIT_S).state == "cancelled"


def test_the_teacher_renames_and_removes_a_model_and_removes_a_drawing(own_store, mnist):
    from digitlab.collection import Collection

    queue = own_store
    snap = queue.wait(queue.submit(PRESETS["simple_net"].with_(epochs=1, train_limit=2000), mnist).id, timeout=120)
    kept = Collection().add(mnist.test_images[0].numpy(), int(mnist.test_labels[0]))
    gone = Collection().add(mnist.test_images[1].numpy(), int(mnist.test_labels[1]))
    at = AppTest.from_file(TEACHER, default_timeout=120).run()
    at.text_input(key="teacher_key_input").input(KEY)
    _submit(at)
    at.text_input(key="teacher_model_name").input("Monday's first net").run()  # typed: Rename is enabled
    at.button(key="teacher_rename").click().run()
    assert queue.store.name(snap.model_id) == "Monday's first net"
    assert any("Called “Monday's first net”" in c.value for c in at.caption)
    at.multiselect(key="teacher_drawings").select(gone.id).run()
    at.button(key="teacher_remove_drawings").click().run()
    assert [e.id for e in Collection().list()] == [kept.id]
    at.checkbox(key="teacher_model_sure").check().run()
    at.button(key="teacher_remove").click().run()
    assert not at.exception and queue.store.list() == []


def test_the_room_now_counts_the_browsers_on_each_stage(own_store):
    """Issue 32, the room at a glance: a student opening the MLP page is one more browser on MLP in the teacher's
    "The room now" (each AppTest is its own browser session)."""
    at = AppTest.from_file(TEACHER, default_timeout=WAIT_S).run()
    at.text_input(key="teacher_key_input").input(KEY)
    _submit(at)
    assert "The room now" in [h.value for h in at.header]

    def room() -> dict[str, int]:
        return {m.label: int(m.value) for m in at.metric}

    def on(page: str) -> int:
        return room()[page]

    before, teacher = on("MLP"), on("Teacher")
    assert teacher >= 1  # the teacher's own browser
    student = AppTest.from_file(MLP, default_timeout=WAIT_S).run()
    assert not student.exception
    at.run()
    assert on("MLP") == before + 1 and on("Teacher") == teacher
    assert list(room())[:3] == ["Home", "Data Explorer", "Linear 3 vs 7"]
