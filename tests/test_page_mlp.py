"""The MLP page under the real Streamlit runtime, driven through its widgets."""

from pathlib import Path

from pagetools import chart_spec, chart_titles, code_shown, metrics, wait_for_job
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_MLP.py")


def test_network_table_presets_and_equivalence(mnist):
    from digitlab.models import PRESETS, build_model, count_parameters

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error
    assert metrics(at)["Parameters"] == f"{count_parameters(build_model(PRESETS['simple_net'])):,}"
    assert metrics(at)["Same predicted digit"] == "yes"
    assert float(metrics(at)["Largest difference"]) < 1e-5
    assert not any("def fit(" in c.value for c in at.code)  # a closed code box sends nothing
    code = code_shown(at)  # the boxes open (closed, they send nothing)
    assert any("nn.Linear" in c or "def simple_net" in c for c in code)

    # the chain rule written out, each backward beside its forward, agreeing with autograd on real digits
    assert any("class ReLU" in c and "def backward(self, grad)" in c for c in code)
    for name in ("w1", "b1", "w2", "b2"):
        assert float(metrics(at)[f"{name}: largest difference"]) < 1e-5
    # the loop that trains, fit() itself, and what it will do for this net
    assert any("def fit(" in c and "loss.backward()" in c and "optimizer.step()" in c
               for c in code)
    assert any("fit() runs the tutorial's loop" in c.value for c in at.caption)
    at.radio(key="mlp_simple_net_form").set_value("scratch").run()
    assert any("p -= lr * p.grad" in c.value and "loss.backward()" in c.value for c in at.caption)

    at.selectbox(key="mlp_preset").set_value("mlp-128-64").run()
    assert metrics(at)["Parameters"] == f"{count_parameters(build_model(PRESETS['mlp-128-64'])):,}"
    assert at.text_input(key="mlp_mlp-128-64_hidden").value == "128, 64"
    at.text_input(key="mlp_mlp-128-64_hidden").set_value("32, 32, 16").run()
    assert metrics(at)["Parameters"] == f"{784 * 32 + 32 + 32 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10:,}"
    at.text_input(key="mlp_mlp-128-64_hidden").set_value("32, big").run()
    assert any("'big' is not a layer size" in e.value for e in at.error)
    assert at.button(key="mlp_train").disabled


def test_train_then_accuracy_and_classify_view(mnist):

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.number_input(key="mlp_simple_net_epochs").set_value(2)
    at.number_input(key="mlp_simple_net_limit").set_value(3000)
    at.selectbox(key="mlp_simple_net_opt").set_value("adam")
    at.select_slider(key="mlp_simple_net_lr").set_value(0.003)
    at.button(key="mlp_train").click().run()
    assert not at.exception and not at.error
    snap = wait_for_job(at, "mlp_job")
    assert snap.state == "done" and len(snap.history) == 2
    at.run()
    assert not at.exception
    acc = snap.history[-1]["test_accuracy"]
    assert metrics(at)["Test accuracy"] == f"{acc:.2%}"
    assert acc > 0.8  # Adam on 3,000 images for two epochs learns the digits
    titles = chart_titles(at)
    assert "Loss" in titles and "Accuracy" in titles
    assert titles.count("Class probability") == 4
    # another seed redraws the four test images (its own fragment): the ones classify_view picks for it
    from digitlab import mlp_lessons
    from digitlab.store import ModelStore

    at.number_input(key="mlp_view_seed").set_value(5).run()
    assert not at.exception
    model, info = ModelStore().load(snap.model_id)
    view = mlp_lessons.classify_view(model, info.config, mnist, n=4, seed=5)
    assert [t for t in chart_titles(at) if t.startswith("a ")] == [f"a {label}" for label in view.labels]

    # A learning rate far too high: the run ends with a plain message, not a model that looks fine.
    at.select_slider(key="mlp_simple_net_lr").set_value(10.0)
    at.selectbox(key="mlp_simple_net_opt").set_value("sgd")
    at.number_input(key="mlp_simple_net_epochs").set_value(1)
    at.button(key="mlp_train").click().run()
    wait_for_job(at, "mlp_job")
    at.run()
    problems = [w.value for w in at.warning] + [e.value for e in at.error]
    assert any("learning rate 10" in p for p in problems), problems
    overlay = chart_spec(at, "test accuracy")
    assert overlay and len(overlay["data"]) == 2


def test_batch_larger_than_the_data_is_refused(mnist):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.number_input(key="mlp_simple_net_limit").set_value(500)
    at.number_input(key="mlp_simple_net_bs").set_value(1000)
    at.button(key="mlp_train").click().run()
    assert not at.exception
    assert any("batch size 1000 is larger than the 500 training images" in e.value for e in at.error)
    assert "mlp_job" not in at.session_state


def test_a_run_that_blows_up_ends_with_the_queues_message(mnist):

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.text_input(key="mlp_simple_net_hidden").set_value("256, 256, 256")
    at.selectbox(key="mlp_simple_net_opt").set_value("momentum")
    at.select_slider(key="mlp_simple_net_lr").set_value(10.0)
    at.number_input(key="mlp_simple_net_limit").set_value(2000)
    at.number_input(key="mlp_simple_net_epochs").set_value(1)
    at.button(key="mlp_train").click().run()
    snap = wait_for_job(at, "mlp_job")
    assert snap.state == "failed"
    at.run()
    assert not at.exception
    assert any("The loss became" in e.value and "blew up" in e.value and "ten times smaller" in e.value
               for e in at.error)
    assert any("did not finish" in i.value for i in at.info)


def test_input_scaling_is_a_choice_and_reaches_the_config(mnist):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="mlp_preset").set_value("mlp-128-64").run()
    scaling = at.selectbox(key="mlp_mlp-128-64_norm")
    assert scaling.value == "mnist"  # the preset standardises; the tutorial's 0.5/0.5 is one click away
    assert "-1..1 (Normalize 0.5, 0.5)" in scaling.options
    scaling.set_value("half").run()
    assert not at.exception and not at.error
    assert at.session_state["mlp_mlp-128-64_norm"] == "half"


def test_one_run_compared_keeps_the_accuracy_axis_within_0_to_100_percent():
    from digitlab import viz

    fig = viz.runs_overlay({"one run": [{"epoch": 1, "test_accuracy": 0.93}]})
    lo, hi = fig.layout.yaxis.range
    assert 0.0 <= lo < 0.93 < hi <= 1.0


def test_simple_net_written_by_hand_trains_through_the_page(mnist):

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="mlp_simple_net_form").set_value("scratch").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["layer"]) == ["res = xb@w1 + b1", "res = res.max(tensor(0.0))", "res@w2 + b2"]
    assert metrics(at)["Parameters"] == f"{784 * 50 + 50 + 50 * 10 + 10:,}"

    # What the hand-written net cannot do is adjusted and said, not a red error: its step is plain SGD ...
    at.selectbox(key="mlp_simple_net_opt").set_value("adam").run()
    assert not at.error and any("plain SGD (not adam)" in i.value for i in at.info)
    assert not at.button(key="mlp_train").disabled
    at.selectbox(key="mlp_simple_net_opt").set_value("sgd").run()
    # ... and it has one hidden layer: the first size is kept, the table shows what will train.
    at.text_input(key="mlp_simple_net_hidden").set_value("64, 32").run()
    assert not at.error and any("one hidden layer of 64" in i.value for i in at.info)
    assert metrics(at)["Parameters"] == f"{784 * 64 + 64 + 64 * 10 + 10:,}"
    at.text_input(key="mlp_simple_net_hidden").set_value("50").run()
    assert not any("Written by hand" in i.value for i in at.info)  # nothing to adjust: nothing said

    at.number_input(key="mlp_simple_net_epochs").set_value(2)
    at.number_input(key="mlp_simple_net_limit").set_value(10_000).run()
    at.button(key="mlp_train").click().run()
    snap = wait_for_job(at, "mlp_job")
    assert snap.state == "done" and snap.config.form == "scratch"
    at.run()
    assert not at.exception
    shown = metrics(at)["Test accuracy"]
    assert shown == f"{snap.history[-1]['test_accuracy']:.2%}" and float(shown.rstrip("%")) > 75


def test_by_hand_with_the_pytorch_preset_adjusts_instead_of_an_error():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["mlp_preset"] = "mlp-128-64"
    at.run()
    at.radio(key="mlp_mlp-128-64_form").set_value("scratch").run()
    assert not at.exception and not at.error
    note = " ".join(i.value for i in at.info)
    assert "one hidden layer of 128" in note and "ReLU" in note and "plain SGD (not momentum)" in note
    assert not at.button(key="mlp_train").disabled
    assert metrics(at)["Parameters"] == f"{784 * 128 + 128 + 128 * 10 + 10:,}"


def test_accuracy_chart_is_live_in_the_first_epoch():
    from digitlab import viz

    fig = viz.accuracy_curve([], batch_accuracies=[(0.1, 0.42), (0.2, 0.81)], epochs=1)
    assert [t.name for t in fig.data] == ["train accuracy (batch)"]
    lo, hi = fig.layout.yaxis.range
    assert 0.0 <= lo < 0.42 and hi == 1.0  # not -100%..400% while waiting for the first test score
    assert tuple(fig.layout.xaxis.range) == (0, 1)


def test_a_bad_precision_setting_is_a_message_not_a_traceback(mnist, monkeypatch):
    monkeypatch.setenv("DIGITLAB_PRECISION", "half")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert any("DIGITLAB_PRECISION must be one of auto, fp32, bf16" in c.value for c in at.caption)
    at.number_input(key="mlp_simple_net_limit").set_value(2000)
    at.number_input(key="mlp_simple_net_epochs").set_value(1)
    at.button(key="mlp_train").click().run()
    # said at once, before anything is queued for the training process
    assert not at.exception
    assert any("Cannot train with these settings: DIGITLAB_PRECISION must be one of" in e.value for e in at.error)
    assert "mlp_job" not in at.session_state


def test_a_second_waiting_run_is_refused_with_a_message_and_the_first_keeps_its_place(mnist):
    """While the class's worker is busy, a student's run waits; a second one from the same student is refused."""
    import time

    from digitlab import ui
    from digitlab.models import PRESETS

    queue = ui.get_queue()
    busy = queue.submit(PRESETS["cnn-seed"].with_(epochs=30, seed=21), mnist, owner="someone else")
    deadline = time.monotonic() + 120
    while queue.snapshot(busy.id).state != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    try:
        at.number_input(key="mlp_simple_net_epochs").set_value(1)
        at.button(key="mlp_train").click().run()
        first = at.session_state["mlp_job"]
        assert queue.snapshot(first).state == "queued"
        assert any("queued: number 1 in line, starts in about" in p.proto.text for p in at.get("progress"))
        at.number_input(key="mlp_simple_net_bs").set_value(128)
        at.button(key="mlp_train").click().run()
        assert not at.exception
        assert any("You already have a run waiting" in w.value for w in at.warning)
        assert at.session_state["mlp_job"] == first and queue.snapshot(first).state == "queued"
    finally:
        queue.cancel(busy.id)
        queue.cancel(at.session_state["mlp_job"])


def test_opening_the_page_starts_the_training_process_before_train_is_pressed(mnist, tmp_path, monkeypatch):
    """The student reads and picks settings while the training process starts (about 3 s from cold), so Train
    starts at once; the run then trains in that process."""
    import time

    from digitlab import ui
    from digitlab.runs.shared import shared_queue
    from digitlab.store import ModelStore

    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(tmp_path / "models"))  # a queue of its own: no other test's process
    ui.get_store.clear()
    queue = shared_queue(ModelStore())
    try:
        assert queue.worker_pids() == []
        at = AppTest.from_file(PAGE, default_timeout=120).run()
        assert not at.exception and not at.error
        deadline = time.monotonic() + 60
        while not queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        (pid,) = queue.worker_pids()
        assert queue.jobs() == []
        at.number_input(key="mlp_simple_net_epochs").set_value(1).run()
        at.button(key="mlp_train").click().run()
        snap = wait_for_job(at, "mlp_job")
        assert snap.state == "done", snap.error
        assert queue.worker_pids() == [pid]
    finally:
        queue.close()
        monkeypatch.undo()
        ui.get_store.clear()
