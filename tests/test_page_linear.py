"""The Linear 3-vs-7 page under the real Streamlit runtime, driven through its widgets."""

from pathlib import Path

from pagetools import WAIT_S, chart_spec, chart_titles, metrics
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "2_Linear_3_vs_7.py")


def test_baseline_and_one_step_show_real_numbers(mnist):
    from digitlab import lessons

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error
    base = lessons.pixel_baseline(mnist)
    text = " ".join(md.value for md in at.markdown)
    assert f"{base.accuracy['l1']['all']:.1%}" in text and f"{base.accuracy['l2']['all']:.1%}" in text
    titles = chart_titles(at)
    assert any("ideal 3" in t for t in titles) and any("Weight gradient" in t for t in titles)
    step = lessons.one_sgd_step(mnist, init_std=1.0, lr=1.0)
    assert metrics(at)["Loss before"] == f"{step.before.loss:.4f}"

    at.radio(key="lin_std").set_value(0.01).run()
    step = lessons.one_sgd_step(mnist, init_std=0.01, lr=1.0)
    assert metrics(at)["Loss after one step"] == f"{step.after.loss:.4f}"
    at.number_input(key="lin_pick").set_value(5).run()
    assert any(t.startswith("Test digit 5: a ") for t in chart_titles(at))


def test_train_one_more_epoch_and_compare(mnist):
    from digitlab import ui

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.number_input(key="lin_linear-seed_epochs").set_value(2)
    at.number_input(key="lin_linear-seed_limit").set_value(2000)
    at.button(key="lin_train").click().run()
    assert not at.exception and not at.error
    job = at.session_state["lin_job"]
    assert ui.get_queue().wait(job, timeout=WAIT_S).state == "done"
    at.run()
    assert not at.exception
    assert any("test accuracy" in s.value for s in at.success)
    acc = metrics(at)["Test accuracy (3s and 7s)"]
    assert acc.endswith("%")
    titles = chart_titles(at)
    assert "Accuracy" in titles and "Loss" in titles and any(t.startswith("Trained: init std 1") for t in titles)
    assert "What training changed" in titles

    # One more epoch continues the stored model: three epochs now, saved as a new model.
    at.button(key=f"more_lin_job_{job}").click().run()
    job2 = at.session_state["lin_job"]
    assert job2 != job
    snap = ui.get_queue().wait(job2, timeout=WAIT_S)
    assert snap.state == "done" and len(snap.history) == 3
    # A second setting: both runs (and the continued one) overlaid.
    at.select_slider(key="lin_linear-seed_lr").set_value(0.1)
    at.button(key="lin_train").click().run()
    assert ui.get_queue().wait(at.session_state["lin_job"], timeout=WAIT_S).state == "done"
    at.run()
    overlay = chart_spec(at, "test accuracy")
    assert overlay and len(overlay["data"]) == 3


def test_bad_settings_give_a_message_not_a_run(mnist):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.number_input(key="lin_linear-seed_limit").set_value(100)
    at.number_input(key="lin_linear-seed_bs").set_value(256)
    at.button(key="lin_train").click().run()
    assert not at.exception
    assert any("larger than the 100 training images" in e.value for e in at.error)
    assert "lin_job" not in at.session_state


def test_stop_a_running_training(mnist):
    from digitlab import ui

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="lin_preset").set_value("linear-better").run()
    at.number_input(key="lin_linear-better_epochs").set_value(100)
    at.button(key="lin_train").click().run()
    job = at.session_state["lin_job"]
    stop = [b for b in at.button if b.label == "Stop"]
    assert stop, "a running job shows a Stop button"
    stop[0].click().run()
    snap = ui.get_queue().wait(job, timeout=WAIT_S)
    assert snap.state == "cancelled"
    at.run()
    assert any("stopped" in w.value for w in at.warning)


def test_stored_linear_model_weights_without_training(mnist, trained):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    picker = at.selectbox(key="lin_show_model")
    assert any(o.startswith("linear1 784-1 (by hand) · linear-better") for o in picker.options)
    picker.set_value(trained["linear"].id).run()
    titles = chart_titles(at)
    acc = trained["linear"].metrics["test_accuracy"]
    assert f"Trained: init std 0.01, {acc:.1%}" in titles and "What training changed" in titles


def test_any_two_classes_on_fashion(mnist, fashion):
    """?dataset=fashion: the pair picker starts on Shirt vs T-shirt/top; the baseline, the step and a run use that
    pair of that dataset, and the store records both. The address keeps the dataset."""
    from digitlab import lessons, ui

    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["dataset"] = "fashion"
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="lin_pair_fashion_yes").value == 6 and at.selectbox(key="lin_pair_fashion_no").value == 0
    base = lessons.pixel_baseline(fashion, (6, 0))
    text = " ".join(md.value for md in at.markdown)
    assert "closer to the ideal Shirt than to the ideal T-shirt/top" in text and f"{base.accuracy['l1']['all']:.1%}" in text
    assert any("The ideal Shirt" in t for t in chart_titles(at))
    at.selectbox(key="lin_pair_fashion_yes").set_value(7).run()  # Sneaker vs T-shirt/top
    assert any("The ideal Sneaker" in t for t in chart_titles(at))
    assert at.query_params["dataset"] in ("fashion", ["fashion"])
    at.number_input(key="lin_linear-seed_fashion_epochs").set_value(1)
    at.number_input(key="lin_linear-seed_fashion_limit").set_value(2000)
    at.button(key="lin_fashion_train").click().run()  # each dataset's runs under keys of their own
    assert not at.exception and not at.error
    snap = ui.get_queue().wait(at.session_state["lin_fashion_job"], timeout=WAIT_S)
    assert snap.state == "done", snap.error
    info = ui.get_store().info(snap.model_id)
    assert (info.config.dataset, info.config.task, info.config.classes) == ("fashion", "7v0", ("T-shirt/top", "Sneaker"))
    at.run()
    assert "Test accuracy (Sneakers and T-shirt/tops)" in metrics(at)
