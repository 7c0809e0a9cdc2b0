"""The learning-rate finder on the MLP page, a real sweep on the real MNIST: the curve, the suggestion, one click to
put it in the box, one click to train with it."""

from pathlib import Path

import torch
from pagetools import chart_spec, wait_for_job
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_MLP.py")


def test_the_finder_suggests_the_sweeps_valley_and_one_click_trains_with_it(mnist):
    from digitlab import ui
    from digitlab.lr_find import lr_find
    from digitlab.models import PRESETS
    from digitlab.runs.execute import worker_threads

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="mlp_preset").set_value("mlp-128-64").run()
    at.number_input(key="mlp_mlp-128-64_limit").set_value(2000)  # a quick run once "Train with" is pressed
    at.number_input(key="mlp_mlp-128-64_epochs").set_value(1).run()
    at.button(key="mlp_lr_find").click().run()
    assert not at.exception and not at.error
    assert "mlp_lr_find" not in [b.key for b in at.button]  # the sweep's progress took the button's place
    # the sweep is queued like any run and trains in the training process; the page follows it, then draws its curve
    sweep = ui.get_queue().wait(at.session_state["mlp_lr_job"][1], timeout=300)
    assert sweep.state == "done" and sweep.config.preset == "mlp-128-64" and not sweep.model_id  # nothing stored
    at.run()
    assert not at.exception and not at.error and "mlp_lr_job" not in at.session_state
    setup = PRESETS["mlp-128-64"].with_(train_limit=2000, epochs=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(worker_threads())  # as many threads as the training process: the same sums
    try:
        expected = lr_find(setup, mnist)  # the same sweep, run here: the page shows its numbers
    finally:
        torch.set_num_threads(threads)
    valley = float(f"{expected.valley:.2g}")
    curve = chart_spec(at, f"The learning-rate finder: {setup.title}")
    assert curve and curve["layout"]["xaxis"]["type"] == "log"
    assert curve["data"][0]["y"] == expected.losses
    marks = {t["name"]: t["x"][0] for t in curve["data"][1:]}
    assert set(marks) == {"suggested (valley)", "steepest fall", "the preset's own rate"}
    assert abs(marks["suggested (valley)"] / expected.valley - 1) < 0.2  # marked on the curve where it is
    assert marks["the preset's own rate"] == 0.01  # the tutorial's rate beside the suggestion
    low, high = curve["layout"]["yaxis"]["range"]
    assert low < min(expected.losses) and expected.losses[0] < high < max(expected.losses)  # the blow-up runs off
    assert any(f"Suggested: **{valley:g}**, by the *valley* rule" in c.value for c in at.caption)

    at.button(key="mlp_lr_use_valley").click().run()
    assert at.select_slider(key="mlp_mlp-128-64_lr").value == valley
    assert at.query_params["lr"] == repr(valley)  # and the address (a shared link) follows
    assert chart_spec(at, f"The learning-rate finder: {setup.title}")  # kept: no second click
    assert "mlp_job" not in at.session_state  # "Use" only puts it in the box

    # "Train with": the rate in the box and the run started, queued as Train queues it, at exactly that rate, for
    # the preset's own epochs (a rate is judged by the run it was found for, not the one epoch set for a quick try)
    at.button(key="mlp_lr_train_valley").click().run()
    assert not at.exception and not at.error
    epochs = PRESETS["mlp-128-64"].epochs
    assert any(f"Training at learning rate {valley:g} for {epochs} epochs" in s.value for s in at.success)
    assert at.select_slider(key="mlp_mlp-128-64_lr").value == valley
    assert at.number_input(key="mlp_mlp-128-64_epochs").value == epochs
    snap = wait_for_job(at, "mlp_job", timeout=300)
    assert snap.state == "done", snap.error
    assert (snap.config.lr, snap.config.train_limit, snap.config.epochs) == (valley, 2000, epochs)
    assert ui.get_store().info(snap.model_id).config.lr == valley  # the stored record's rate
    assert snap.id in at.session_state["mlp_runs"]  # one of this session's runs, compared below like any other
