"""A lesson in a real headless Chromium, as the teacher and two students met it: the address follows every change of
the MLP's setup (laptop); on a tablet (820x1180, touch) a tap on the confusion matrix opens the cell tapped, table
toolbars sit over no input, a tapped tooltip fades and takes no tap, the sidebar lies over the page and closes with
one tap; the Teacher page removes the model picked, after a rename, and nothing else."""

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "the teacher's key for this lesson"
BOXES = """sel => Array.from(document.querySelectorAll(sel)).map(e => { const r = e.getBoundingClientRect();
    return {x: r.x, y: r.y, width: r.width, height: r.height}; }).filter(b => b.width > 0 && b.height > 0)"""


@pytest.fixture(scope="module")
def lesson(trained, tmp_path_factory):
    """One app for the module, on a copy of the session's trained models (the Teacher test removes one)."""
    from localhost import app_in_chromium

    root = tmp_path_factory.mktemp("lesson")
    shutil.copytree(os.environ["DIGITLAB_MODEL_DIR"], root / "models")
    env = {"DIGITLAB_MODEL_DIR": str(root / "models"), "DIGITLAB_DATA_DIR": os.environ["DIGITLAB_DATA_DIR"],
           "DIGITLAB_COLLECTION_DIR": str(root / "col"), "DIGITLAB_TEACHER_KEY": KEY}
    with app_in_chromium(env) as (browser, base):
        yield browser, base, root / "models"


def _tablet(browser):
    from screenshot import TABLET_AGENT

    return browser.new_context(viewport={"width": 820, "height": 1180}, has_touch=True, user_agent=TABLET_AGENT)


def _input(page, label: str):
    return page.get_by_label(label, exact=True).and_(page.locator("input"))


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] - 1 and b["x"] < a["x"] + a["width"] - 1 and \
        a["y"] < b["y"] + b["height"] - 1 and b["y"] < a["y"] + a["height"] - 1


def test_the_address_follows_every_change_of_the_setup(lesson):
    from screenshot import wait_idle

    browser, base, _ = lesson
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{base}/MLP")
        hidden = _input(page, "Hidden layer sizes")
        hidden.wait_for(timeout=90000)
        wait_idle(page)
        seen = []
        for label, value in (("Hidden layer sizes", "32, 16"), ("Batch size", "128"), ("Epochs", "3")):
            box = _input(page, label)
            box.fill(value)
            box.press("Enter")
            wait_idle(page)
            seen.append({k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()})
        page.get_by_text("Link to this setup").first.click()
        code = page.get_by_test_id("stCode").filter(has_text="hidden=32-16").first
        code.wait_for(timeout=10000)
        link = "".join(code.inner_text().split())
        page.goto(page.url)  # what a student opening the copied address gets
        hidden.wait_for(timeout=90000)
        wait_idle(page)
        reopened = (hidden.input_value(), _input(page, "Batch size").input_value(), _input(page, "Epochs").input_value())
    finally:
        page.close()
    assert (seen[0]["hidden"], seen[0]["batch"]) == ("32-16", "256"), seen[0]
    assert (seen[1]["hidden"], seen[1]["batch"]) == ("32-16", "128"), seen[1]
    assert (seen[2]["hidden"], seen[2]["batch"], seen[2]["epochs"]) == ("32-16", "128", "3"), seen[2]
    assert {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}.items() >= \
        {"hidden": "32-16", "batch": "128", "epochs": "3"}.items(), link
    assert reopened == ("32, 16", "128", "3"), reopened


def test_a_tablet_taps_the_cell_it_means_and_nothing_lies_over_an_input(lesson):
    from screenshot import wait_idle

    from digitlab.ui.cells import CELL_W, INDEX_W, ROW_H

    browser, base, _ = lesson
    context = _tablet(browser)
    page = context.new_page()
    opened = []
    try:
        page.goto(f"{base}/Evaluate")
        page.get_by_text("and were called").first.wait_for(timeout=120000)
        wait_idle(page)
        table = page.locator('[class*="_cells"]').get_by_test_id("stDataFrame").first
        table.scroll_into_view_if_needed()
        for true, said in [(3, 5), (7, 2), (4, 9), (0, 6)]:
            box = table.bounding_box()
            page.touchscreen.tap(box["x"] + INDEX_W + CELL_W * (said + 0.5), box["y"] + ROW_H * (true + 1.5))
            wait_idle(page)
            opened.append(page.get_by_text("and were called").first.inner_text())
        tables_vs_inputs = {}
        for path in ("MLP", "Linear_3_vs_7"):  # Epochs above the MLP's layer table; the Linear page's test image
            page.goto(f"{base}/{path}")
            page.get_by_test_id("stNumberInput").first.wait_for(timeout=90000)
            wait_idle(page)
            toolbars = page.evaluate(BOXES, '[data-testid="stMain"] [data-testid="stElementToolbar"]')
            inputs = page.evaluate(BOXES, '[data-testid="stMain"] [data-testid="stNumberInput"]')
            tables_vs_inputs[path] = (len(toolbars), [(t, i) for t in toolbars for i in inputs if _overlap(t, i)])
        # A tapped tooltip: it lets taps through, and fades by itself (no hover will end it).
        icon = page.locator('[data-testid="stMain"] [data-testid="stTooltipIcon"]').first
        icon.scroll_into_view_if_needed()
        box = icon.bounding_box()
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        tip = page.locator('div[role="tooltip"]').filter(has=page.get_by_test_id("stTooltipContent")).first
        tip.wait_for(timeout=10000)
        tip_taps = tip.evaluate("e => getComputedStyle(e).pointerEvents")
        page.wait_for_function("""() => Array.from(document.querySelectorAll('div[role="tooltip"]'))
            .every(e => getComputedStyle(e).visibility === 'hidden')""", timeout=10000)
        # The sidebar: over the page, not beside it; its close is one tap.
        page.get_by_test_id("stExpandSidebarButton").tap()
        sidebar = page.get_by_test_id("stSidebar")
        page.wait_for_function("""() => document.querySelector('[data-testid="stSidebar"]')
            .getBoundingClientRect().width > 100""", timeout=10000)
        main_open = page.get_by_test_id("stMain").bounding_box()
        page.get_by_test_id("stSidebarCollapseButton").locator("button").tap(timeout=5000)
        page.wait_for_function("""() => document.querySelector('[data-testid="stSidebar"]')
            .getBoundingClientRect().right <= 1""", timeout=10000)
        closed = sidebar.bounding_box()
        errors = page.locator('[data-testid="stException"]').all_inner_texts()
    finally:
        context.close()
    assert not errors, errors
    wanted = ["are **3** and were called **5**", "are **7** and were called **2**", "are **4** and were called **9**",
              "are **0** and were called **6**"]
    for text, want in zip(opened, wanted):
        assert want.replace("**", "") in text, (opened, wanted)
    for path, (n, overlaps) in tables_vs_inputs.items():
        assert n >= 1 and not overlaps, (path, n, overlaps)
    assert tip_taps == "none"
    assert main_open["x"] == 0 and main_open["width"] == 820, main_open  # the page keeps its width
    assert closed is None or closed["x"] + closed["width"] <= 1, closed


def test_the_teacher_removes_the_model_picked_after_renaming_it(lesson):
    from screenshot import wait_idle

    browser, base, models = lesson
    ids = sorted(p.stem for p in models.glob("*.json"))
    assert len(ids) >= 3
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{base}/Teacher")
        key = _input(page, "Teacher key")
        key.wait_for(timeout=90000)
        key.fill(KEY)
        key.press("Enter")
        page.get_by_text("Teacher mode:").wait_for(timeout=30000)
        wait_idle(page)
        picker = page.get_by_test_id("stSelectbox").filter(has_text="Model")

        def open_picker() -> None:  # scrolled to first: a click while the page still scrolls only focuses the box
            picker.scroll_into_view_if_needed()
            wait_idle(page)
            picker.click()
            page.get_by_role("option").first.wait_for(timeout=10000)

        open_picker()
        options = page.get_by_role("option").all_inner_texts()
        picked = options[-1].rsplit(" · ", 1)[-1]  # the last model in the box, never the one it opens on
        page.get_by_role("option").nth(len(options) - 1).click()
        wait_idle(page)
        name = _input(page, "New name")
        name.fill("Monday's net")
        name.press("Enter")
        wait_idle(page)
        page.get_by_role("button", name="Rename").click()
        page.get_by_text("Called “Monday's net”.", exact=True).wait_for(timeout=30000)
        wait_idle(page)
        sure = page.get_by_test_id("stCheckbox").filter(has_text="Yes, remove")
        sure.click()
        wait_idle(page)
        ticked_for = sure.inner_text()
        # Another choice clears the tick: Remove is off until the new model is ticked for.
        open_picker()
        page.get_by_role("option").first.click()
        wait_idle(page)
        cleared = (sure.locator("input").is_checked(), page.get_by_role("button", name="Remove model").is_disabled())
        open_picker()
        page.get_by_role("option").filter(has_text=picked).click()
        wait_idle(page)
        sure.click()
        wait_idle(page)
        page.get_by_role("button", name="Remove model").click()
        page.get_by_text(f"Removed {picked}.", exact=True).wait_for(timeout=30000)
        wait_idle(page)
        errors = page.locator('[data-testid="stException"]').all_inner_texts()
    finally:
        page.close()
    assert not errors, errors
    assert picked in ids and picked in ticked_for, (picked, ticked_for)
    assert cleared == (False, True), cleared
    assert sorted(p.stem for p in models.glob("*.json")) == [i for i in ids if i != picked]
