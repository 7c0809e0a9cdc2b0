"""The Sketch Pad in a real classroom: twenty models in the store, drawn on in a real headless Chromium on a laptop
(1400x900), a projector (1920x1080) and a tablet (820x1180, touch). Read from the page's geometry: the pad is fully
in view and not covered, the preprocessing steps and the answer cards do not overlap or spill out of the page, every
probability label and metric is whole; the class's best model of each kind answers (not the broken one), and a saved
drawing shows in the collection at once."""

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

pytestmark = pytest.mark.browser

VIEWPORTS = [("laptop", 1400, 900, False), ("projector", 1920, 1080, False), ("tablet", 820, 1180, True)]

# Every box's page coordinates, to check from the layout itself.
BOXES = """sel => Array.from(document.querySelectorAll(sel)).map(e => {
    const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height, text: e.innerText}; })"""
# Plotly's bar labels, each with its box and the box of the chart it belongs to.
BAR_LABELS = """sel => Array.from(document.querySelectorAll(sel + ' .bartext')).map(t => {
    const r = t.getBoundingClientRect(), c = t.closest('.js-plotly-plot').getBoundingClientRect();
    return {text: t.textContent, x: r.x, right: r.right, chartRight: c.right, chartX: c.x}; })"""
# The element under each point, looking inside the component's shadow root (the pad lives in one).
WHAT_IS_AT = """pts => pts.map(([x, y]) => { let e = document.elementFromPoint(x, y);
    while (e && e.shadowRoot) { const inner = e.shadowRoot.elementFromPoint(x, y); if (!inner || inner === e) break;
                                e = inner; }
    return String(e?.className || ''); })"""
# Text that does not fit its box (cut with an ellipsis or hidden).
CUT = """sel => Array.from(document.querySelectorAll(sel)).filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => e.innerText)"""


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] - 1 and b["x"] < a["x"] + a["w"] - 1 and \
        a["y"] < b["y"] + b["h"] - 1 and b["y"] < a["y"] + a["h"] - 1


@pytest.fixture(scope="module")
def classroom(mnist, trained, tmp_path_factory):
    """The session's three models and seventeen more, trained for real: twenty in all, one broken."""
    from classroom import classroom_store

    from digitlab.store import ModelStore

    root = tmp_path_factory.mktemp("classroom") / "models"
    classroom_store(root, mnist, copy_from=Path(os.environ["DIGITLAB_MODEL_DIR"]))
    infos = ModelStore(root).list()
    assert len(infos) >= 20 and any(i.broken for i in infos)
    return root, infos


def _draw(page, box, touch: bool, cdp=None) -> None:
    """A vertical stroke, a '1', top to bottom in small steps like a hand (a finger on the tablet)."""
    x = box["x"] + box["width"] * 0.5
    ys = [box["y"] + box["height"] * (0.15 + 0.7 * i / 20) for i in range(21)]
    if touch:
        def finger(kind, y=0.0, dx=0.0):
            points = [] if kind == "touchEnd" else [{"x": x + dx, "y": y, "id": 1, "radiusX": 4, "radiusY": 4}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})
        finger("touchStart", ys[0])
        for i, y in enumerate(ys[1:], start=1):
            finger("touchMove", y, i * 0.3)
        finger("touchEnd")
    else:
        page.mouse.move(x, ys[0])
        page.mouse.down()
        for i, y in enumerate(ys[1:], start=1):
            page.mouse.move(x + i * 0.3, y)
        page.mouse.up()


def test_sketch_pad_with_twenty_models_on_laptop_projector_and_tablet(classroom, tmp_path):
    from localhost import app_in_chromium
    from screenshot import TABLET_AGENT, wait_idle

    from digitlab import ranking

    root, infos = classroom
    best = ranking.best_of_each_kind(infos)
    broken = [i for i in infos if i.broken]
    env = {"DIGITLAB_MODEL_DIR": str(root), "DIGITLAB_DATA_DIR": os.environ["DIGITLAB_DATA_DIR"],
           "DIGITLAB_COLLECTION_DIR": str(tmp_path / "col")}
    shots = ROOT / "screenshots" / "h14"
    shots.mkdir(parents=True, exist_ok=True)
    seen: dict[str, dict] = {}
    with app_in_chromium(env) as (browser, base):
        for saved, (name, width, height, tablet) in enumerate(VIEWPORTS, start=1):
            extra = {"has_touch": True, "user_agent": TABLET_AGENT} if tablet else {}
            context = browser.new_context(viewport={"width": width, "height": height}, **extra)
            page = context.new_page()
            page.goto(f"{base}/Sketch_Pad")
            page.get_by_text("nothing to guess at yet").wait_for(timeout=90000)
            wait_idle(page)
            out = seen[name] = {}
            out["sidebar open"] = page.evaluate("""() => { const r = document.querySelector(
                '[data-testid="stSidebar"]').getBoundingClientRect(); return r.right > 1 && r.width > 5; }""")
            pad = page.locator("canvas.upper-canvas").first
            pad.scroll_into_view_if_needed()
            box = pad.bounding_box()
            out["pad"] = box
            corners = [[box["x"] + dx * box["width"], box["y"] + dy * box["height"]]
                       for dx in (0.02, 0.98) for dy in (0.02, 0.98)]
            out["pad on top"] = page.evaluate(WHAT_IS_AT, corners)  # what a finger touches at its four corners
            _draw(page, box, tablet, context.new_cdp_session(page) if tablet else None)
            page.get_by_text("Predicted digit").first.wait_for(timeout=60000)
            wait_idle(page)
            main = page.locator('[data-testid="stMain"]').bounding_box()
            out["main"] = main
            out["steps"] = page.evaluate(BOXES, '[class*="st-key-draw_step_"]')
            out["cards"] = page.evaluate(BOXES, '[class*="st-key-draw_card_"]')
            out["labels"] = page.evaluate(BAR_LABELS, '[class*="st-key-draw_card_"]')
            out["charts"] = page.locator(".js-plotly-plot").count()
            out["chart toolbars"] = page.locator(".js-plotly-plot .modebar").count()  # a tablet shows them always
            out["cut"] = page.evaluate(CUT, '[class*="st-key-draw_card_"] [data-testid="stMetricLabel"] p, '
                                            '[class*="st-key-draw_card_"] [data-testid="stMetricDelta"] div')
            page.screenshot(path=str(shots / f"sketch_{name}_{width}x{height}_pad.png"))
            page.locator('[class*="st-key-draw_card_"]').first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / f"sketch_{name}_{width}x{height}_cards.png"))
            # Save the drawing as a 1: the collection below shows it at once, no reload.
            page.get_by_test_id("stSelectbox").filter(has_text="The true digit").click()
            page.keyboard.type("1")
            page.get_by_role("option", name="1", exact=True).click()
            page.get_by_role("button", name="Save to the class collection").click()
            page.get_by_text(f"The collection now holds {saved} drawing").wait_for(timeout=60000)
            wait_idle(page)
            out["pad after save"] = page.get_by_text("nothing to guess at yet").count()  # a fresh pad
            out["collection"] = page.get_by_test_id("stMarkdownContainer").filter(
                has_text=re.compile(r"^\d+ drawings?\.")).all_inner_texts()
            out["nothing saved"] = page.get_by_text("Nothing saved yet").count()
            out["errors"] = page.locator('[data-testid="stException"]').all_inner_texts()
            context.close()

    for (name, width, height, tablet), saved in zip(VIEWPORTS, (1, 2, 3)):
        out = seen[name]
        assert not out["errors"], (name, out["errors"])
        if tablet:
            assert out["sidebar open"] is False, name  # a tablet starts with the page, not the sidebar
        # Plotly's toolbar: on hover with a mouse; none on a touch screen, where it would sit over the titles
        assert out["charts"] > 0 and out["chart toolbars"] == (0 if tablet else out["charts"]), (name, out)
        pad = out["pad"]
        assert pad["x"] >= 0 and pad["x"] + pad["width"] <= width and pad["y"] >= 0 and \
            pad["y"] + pad["height"] <= height, (name, pad)  # the whole pad in view
        assert pad["width"] == pytest.approx(280, abs=1), (name, pad)  # not shrunk
        # not covered: the pad, or its own toolbar (undo, redo, clear), which shows over a corner on hover
        assert all(c.startswith("dc-") for c in out["pad on top"]), (name, out["pad on top"])
        steps, cards, main = out["steps"], out["cards"], out["main"]
        assert len(steps) >= 5, (name, steps)
        for group in (steps, cards):
            for i, a in enumerate(group):
                assert a["x"] >= main["x"] - 1 and a["x"] + a["w"] <= main["x"] + main["width"] + 1, (name, a)
                for b in group[i + 1:]:
                    assert not _overlap(a, b), (name, a, b)
        # The class's best of each kind answers, at most four, never the broken run.
        assert len(cards) == len(best) <= 4, (name, len(cards))
        titles = " ".join(c["text"] for c in cards)
        assert all(i.title in titles for i in best), (name, titles)
        assert not any(i.title in titles for i in broken), name
        labels = out["labels"]
        assert len(labels) == sum(2 if i.config.task == "3v7" else 10 for i in best), (name, len(labels))
        for label in labels:  # every probability label whole and inside its chart
            assert re.fullmatch(r"\d{1,3}\.\d%", label["text"]), (name, label)
            assert label["chartX"] - 1 <= label["x"] and label["right"] <= label["chartRight"] + 1, (name, label)
        assert not out["cut"], (name, out["cut"])
        assert out["collection"] and out["collection"][0].startswith(f"{saved} drawing"), (name, out["collection"])
        assert out["nothing saved"] == 0 and out["pad after save"] == 1, name
