"""Watch it learn, pause and step (issue 16 #3, #4) on the MLP page under the real Streamlit runtime, on real MNIST:
the live pictures move while the run trains; the student who started it pauses it and steps it one batch at a time."""

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_MLP.py")


def shown(at, starts: str) -> tuple[str, dict] | None:
    """The title and Plotly spec of the chart whose title starts with ``starts``; None when the page shows none."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec["layout"].get("title", {})
        title = title.get("text", "") if isinstance(title, dict) else str(title)
        if title.startswith(starts):
            return title, spec
    return None


def rerun_until(at, check, what: str, timeout: float = 120):
    """Rerun the page (as the live panel's timer does) until ``check(at)`` gives something."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if found := check(at):
            return found
        assert time.monotonic() < deadline, f"the page never showed {what}"
        time.sleep(0.5)


def test_the_live_pictures_move_and_the_starter_pauses_and_steps_one_batch(mnist):
    from digitlab import ui

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.number_input(key="mlp_simple_net_epochs").set_value(30)
    at.number_input(key="mlp_simple_net_limit").set_value(20_000)
    at.button(key="mlp_train").click().run()
    job = at.session_state["mlp_job"]
    queue = ui.get_queue()
    try:
        # the first layer's 16 units and the 16 test digits, redrawn as the worker publishes them
        title, first = rerun_until(at, lambda at: shown(at, "First layer now: units 0-15"), "the first layer")
        assert title == "First layer now: units 0-15, 784 weights each"
        assert shown(at, "16 test digits:") is not None
        _, later = rerun_until(at, lambda at: (s := shown(at, "First layer now")) and s[1]["data"][0]["z"] !=
                               first["data"][0]["z"] and s, "the first layer moving")
        digits_title, digits = shown(at, "16 test digits:")
        right = int(digits_title.split(": ")[1].split(" right")[0])
        marks = [a["text"] for a in digits["layout"]["annotations"]]
        assert len(marks) == 16 and sum(m.startswith("✓") for m in marks) == right  # right ones and wrong ones marked
        assert all(m.startswith("✗") and "(is " in m for m in marks if not m.startswith("✓"))

        # pause, then one batch per Step: each shows its loss, accuracy and how far it moved the weights
        at.button(key=f"pause_mlp_job_{job}").click().run()
        assert queue.snapshot(job).paused and at.button(key=f"step_mlp_job_{job}").label == "Step one batch"
        for n in (1, 2):
            at.button(key=f"step_mlp_job_{job}").click().run()
            rerun_until(at, lambda at, n=n: shown(at, f"Step {n}: first layer before, after"), f"step {n}")
        steps = next(d.value for d in at.dataframe if "batch loss" in d.value.columns)
        assert list(steps["step"]) == [1, 2] and steps["batch of the run"][1] == steps["batch of the run"][0] + 1
        assert steps["batch loss"][0] != steps["batch loss"][1]
        moved = next(d.value for d in at.dataframe if "moved ÷ size" in d.value.columns)
        assert list(moved["weights"]) == ["1.weight", "1.bias", "3.weight", "3.bias"]
        assert all(float(m) > 0 for m in moved["moved"])
        _, sheet = shown(at, "Step 2: first layer before, after")
        labels = [a["text"] for a in sheet["layout"]["annotations"]]
        assert labels[:2] == ["unit 0 before", "unit 1 before"] and "unit 0: the change" in labels
        held = queue.snapshot(job).progress
        time.sleep(1.0)
        assert queue.snapshot(job).progress == held  # paused: nothing moves between steps

        at.button(key=f"resume_mlp_job_{job}").click().run()
        assert not queue.snapshot(job).paused and at.button(key=f"pause_mlp_job_{job}").label == "Pause"
    finally:
        queue.cancel(job)
        queue.wait(job, timeout=120)


def test_a_student_who_joined_a_shared_run_watches_but_cannot_pause_it(mnist):
    from digitlab import ui
    from digitlab.models import PRESETS

    config = PRESETS["simple_net"].with_(epochs=30, train_limit=20_000, seed=5)
    queue = ui.get_queue()
    run = queue.submit(config, mnist, owner="the starter")
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["owner_id"] = "a joiner"
    at.session_state["mlp_job"] = queue.submit(config, mnist, owner="a joiner").id  # the same run, shared
    try:
        at.run()
        rerun_until(at, lambda at: shown(at, "16 test digits:"), "the live pictures")
        assert not [b for b in at.button if b.label in ("Pause", "Step one batch")]
        assert any("only they (or the teacher) can pause" in c.value for c in at.caption)
        assert queue.pause(run.id, "the starter")  # the starter pauses: the joiner sees it held, with no controls
        at.run()
        assert any("paused by the student who started it" in p.proto.text for p in at.get("progress"))
        assert not [b for b in at.button if b.label in ("Resume", "Step one batch")]
    finally:
        queue.cancel(run.id)
        queue.wait(run.id, timeout=120)
