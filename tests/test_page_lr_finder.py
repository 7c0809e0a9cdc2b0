"""The learning-rate finder on the MLP page, a real sweep on the real MNIST: the curve, the suggestion, one click."""

from pathlib import Path

from pagetools import chart_spec
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_MLP.py")


def test_the_finder_suggests_the_sweeps_valley_and_one_click_puts_it_in_the_box(mnist):
    from digitlab.lr_find import lr_find
    from digitlab.models import PRESETS

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="mlp_preset").set_value("mlp-128-64").run()
    at.button(key="mlp_lr_find").click().run()
    assert not at.exception and not at.error
    expected = lr_find(PRESETS["mlp-128-64"], mnist)  # the same sweep, run here: the page shows its numbers
    valley = float(f"{expected.valley:.2g}")
    curve = chart_spec(at, f"The learning-rate finder: {PRESETS['mlp-128-64'].title}")
    assert curve and curve["layout"]["xaxis"]["type"] == "log"
    assert curve["data"][0]["y"] == expected.losses
    marks = {t["name"]: t["x"][0] for t in curve["data"][1:]}
    assert set(marks) == {"suggested (valley)", "steepest fall"}
    assert abs(marks["suggested (valley)"] / expected.valley - 1) < 0.2  # marked on the curve where it is
    assert any(f"Suggested: **{valley:g}**, by the *valley* rule" in c.value for c in at.caption)

    at.button(key="mlp_lr_use_valley").click().run()
    assert at.select_slider(key="mlp_mlp-128-64_lr").value == valley
    assert at.query_params["lr"] == repr(valley)  # and the address (a shared link) follows
    assert chart_spec(at, f"The learning-rate finder: {PRESETS['mlp-128-64'].title}")  # kept: no second click
