"""Every page of DigitLab in one real headless Chromium, for the browser tests that walk them all (presenter mode,
accessibility): one app per test module on a store with the session's trained models, each page opened the way a
bookmark opens it."""

import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))


def page_paths() -> list[str]:
    """Home ('') and every stage's address, as the sidebar lists them."""
    from digitlab.ui.frame import existing_stages

    return ["", *(title.replace(" ", "_") for _, title, _, _ in existing_stages())]


@contextlib.contextmanager
def app_with_models(collection_dir: Path):
    """(browser, address) of the app on the session's model store (the `trained` fixture's linear, MLP, CNN)."""
    from localhost import app_in_chromium

    env = {"DIGITLAB_MODEL_DIR": os.environ["DIGITLAB_MODEL_DIR"], "DIGITLAB_DATA_DIR": os.environ["DIGITLAB_DATA_DIR"],
           "DIGITLAB_COLLECTION_DIR": str(collection_dir)}
    with app_in_chromium(env) as (browser, base):
        yield browser, base


def one_app_per_module():
    """A module-scoped fixture: the app started once for a test file, on the session's trained models."""

    @pytest.fixture(scope="module")
    def app(trained, tmp_path_factory):
        with app_with_models(tmp_path_factory.mktemp("collection")) as running:
            yield running

    return app


def open_page(page, base: str, path: str, query: str = "") -> None:
    """Open a page by its address and wait until its script has finished (the sidebar lists Home once the app's
    navigation runs, which a first visit to a deep link reaches by a rerun)."""
    from screenshot import wait_idle

    page.goto(f"{base}/{path}" + (f"?{query}" if query else ""))
    page.locator('[data-testid="stSidebarNav"]', has_text="Home").wait_for(timeout=90000)
    wait_idle(page)
    errors = page.locator('[data-testid="stException"]').all_inner_texts()
    assert not errors, (path, errors)


def walk_pages(page, base: str, query: str = ""):
    """Every page in the sidebar's order, as a student walks them: the first opened by its address (with ``query``),
    each next one by a click on its link in the sidebar, in the same session (no reload: a fresh load of the app
    costs Chromium about a second of CPU more than the page itself). Yields each page's path once it has finished."""
    from screenshot import wait_idle

    paths = page_paths()
    open_page(page, base, paths[0], query)
    yield paths[0]
    links = page.locator('[data-testid="stSidebarNav"] a')
    for i, path in enumerate(paths[1:], start=1):
        links.nth(i).click()
        page.wait_for_url(f"{base}/{path}**")
        wait_idle(page)
        errors = page.locator('[data-testid="stException"]').all_inner_texts()
        assert not errors, (path, errors)
        yield path


# The pad's toolbar has finished moving up (its opacity reaches 1 at the end of its 0.25 s transition).
TOOLBAR_SHOWN = """() => [...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')].some(h => {
  const bar = h.shadowRoot && h.shadowRoot.querySelector('.dc-toolbar');
  return bar && getComputedStyle(bar).opacity === '1'; })"""


def pad_stroke(page, pad, points, cdp=None) -> None:
    """One stroke through ``points`` (fractions of the pad): the mouse, or a finger (touch events) on a tablet."""
    box = pad.bounding_box()
    xy = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    if cdp is not None:
        def finger(kind, p=None):
            touches = [] if p is None else [{"x": p[0], "y": p[1], "id": 1, "radiusX": 4, "radiusY": 4}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touches})
        finger("touchStart", xy[0])
        for p in xy[1:]:
            finger("touchMove", p)
        finger("touchEnd")
    else:  # a hand's mouse crosses the pad before it presses: the pad's toolbar, hidden over the pad's top edge
        # until then, has moved up out of the way (at 24 px in presenter mode it covers the pad's top 46 px)
        _hover(page, box)
        page.mouse.move(*xy[0])
        page.mouse.down()
        for p in xy[1:]:
            page.mouse.move(*p)
        page.mouse.up()


def _hover(page, box) -> None:
    """The mouse over the pad until its toolbar has moved up. A hand never holds still: each try is a fresh move (a
    rerun that redraws the pad under a resting mouse leaves its toolbar hidden until the mouse moves again)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for i in range(15):
        page.mouse.move(box["x"] + box["width"] / 2 + i % 3, box["y"] + box["height"] / 2)
        try:
            page.wait_for_function(TOOLBAR_SHOWN, timeout=2000)
            return
        except PlaywrightTimeout:
            pass
    raise AssertionError("the pad's toolbar never moved up under the mouse")
