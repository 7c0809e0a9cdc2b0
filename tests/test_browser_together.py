"""A lesson played together in real headless Chromiums: the teacher on a projector (1920x1080, presenter mode) and
three students (a laptop, a tablet with a finger, a second laptop), each a browser of its own. Each gets a
pseudonym, kept when the page is reloaded; the teacher says "Class, follow me" and opens the MLP stage: the
students following are taken there with the teacher's setup, the one who left stays; the teacher trains a small
run and asks the class what test accuracy it will reach; the students answer; the answers are drawn against the
truth. Then a fool-the-model round: the students draw on the Sketch Pad (mouse and finger), the drawings that
fool the class's CNN fill the teacher's gallery with their pseudonyms, the teacher ends the round and fine-tunes,
and each student reads their own handwriting report. Screenshots of every step go to screenshots/together/."""

import math
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "the teacher's key for this lesson"
SIDEBAR = "section[data-testid=stSidebar]"
ONE = [(0.5 + 0.01 * i / 20, 0.15 + 0.7 * i / 20) for i in range(21)]  # a '1', in the pad's own fractions
ZERO = [(0.5 + 0.25 * math.sin(t / 12 * math.tau), 0.5 - 0.33 * math.cos(t / 12 * math.tau)) for t in range(13)]


def _shots() -> Path:
    out = ROOT / "screenshots" / "together"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def lesson(trained, mnist, tmp_path_factory):
    """The session's trained models (their CNN is the one to fool), a collection that already holds two MNIST
    drawings of every digit (enough to fine-tune on), the teacher key."""
    from localhost import app_in_chromium

    from digitlab.collection import Collection

    root = tmp_path_factory.mktemp("together")
    shutil.copytree(os.environ["DIGITLAB_MODEL_DIR"], root / "models")
    col = Collection(root / "col")
    for d in range(10):
        for i in (mnist.test_labels == d).nonzero().squeeze(1)[:2].tolist():
            col.add(mnist.test_images[i].numpy(), d, source="imported", saved_by="earlier lesson")
    env = {"DIGITLAB_MODEL_DIR": str(root / "models"), "DIGITLAB_DATA_DIR": os.environ["DIGITLAB_DATA_DIR"],
           "DIGITLAB_COLLECTION_DIR": str(root / "col"), "DIGITLAB_TEACHER_KEY": KEY}
    with app_in_chromium(env) as (browser, base):
        yield browser, base, col


def _name(page) -> str:
    """The pseudonym the sidebar's popover shows (read from the DOM: on a tablet the sidebar is closed)."""
    page.locator(SIDEBAR).get_by_text("You are").first.wait_for(state="attached", timeout=60000)
    text = page.locator(SIDEBAR).get_by_text("You are").first.text_content()
    return text.split("You are", 1)[1].strip()


def _banner_shows(page, name: str, shots: Path) -> None:
    """The "Following the teacher" banner within 15 s; if not, what the page shows instead (and a screenshot)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text("Following the teacher").first.wait_for(timeout=15000)
    except PlaywrightTimeout:
        page.screenshot(path=str(shots / f"no_banner_{name}.png"), full_page=True)
        html = page.content()[:1500]
        raise AssertionError(f"no banner on the {name} at {page.url}; events {_said(page)}; "
                             f"the page's HTML:\n{html}") from None


EVENTS: dict[int, list[str]] = {}


def _listen(page) -> None:
    """Keep what the browser says about a page (crashes, console errors, navigations) for a failure's message."""
    log = EVENTS.setdefault(id(page), [])
    page.on("crash", lambda *_: log.append("crash"))
    page.on("console", lambda m: log.append(f"console {m.type}: {m.text[:200]}") if m.type in ("error", "warning") else None)
    page.on("framenavigated", lambda f: log.append(f"navigated {f.url}") if f == page.main_frame else None)
    page.on("pageerror", lambda e: log.append(f"pageerror {str(e)[:200]}"))


def _said(page) -> list[str]:
    """The first things the browser said about a page (a tab cut off repeats "Cannot send rerun" after them)."""
    return [e for e in EVENTS.get(id(page), []) if "Cannot send" not in e][:10]


def _wait_url(page, part: str, timeout_s: float = 20) -> float:
    t0 = time.monotonic()
    while part not in page.url:
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{page.url} never reached {part}; events "
                                 f"{_said(page)}")
        page.wait_for_timeout(50)
    return time.monotonic() - t0


def _stroke(page, points, cdp=None) -> None:
    from browser_pages import pad_stroke

    pad = page.locator("canvas.upper-canvas").first
    pad.scroll_into_view_if_needed()
    pad_stroke(page, pad, points, cdp)


def _save(page, digit: int) -> str:
    """Pick the true digit and Save; what the confirmation says."""
    group = page.locator('[class*="st-key-draw_pad"]')
    group.get_by_test_id("stSelectbox").scroll_into_view_if_needed()
    group.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name=str(digit), exact=True).click()
    page.get_by_role("button", name="Save to the class collection").click()
    said = page.get_by_text("The collection now holds")
    said.first.wait_for(timeout=60000)
    return said.first.inner_text()


def test_a_lesson_together(lesson):
    from playwright.sync_api import expect
    from screenshot import TABLET_AGENT, wait_idle

    browser, base, col = lesson
    shots = _shots()
    projector = browser.new_context(viewport={"width": 1920, "height": 1080})
    laptop = browser.new_context(viewport={"width": 1400, "height": 900})
    tablet = browser.new_context(viewport={"width": 820, "height": 1180}, has_touch=True, user_agent=TABLET_AGENT)
    other = browser.new_context(viewport={"width": 1400, "height": 900})
    t, a, b, c = (ctx.new_page() for ctx in (projector, laptop, tablet, other))
    for page in (a, b, c):
        _listen(page)
    cdp = tablet.new_cdp_session(b)
    try:
        # 1. A name each, kept across a reload.
        for page in (a, b, c):
            page.goto(f"{base}/Data_Explorer")
        names = [_name(p) for p in (a, b, c)]
        assert len(set(names)) == 3, names
        b.reload()
        assert _name(b) == names[1]  # the tablet's name survived the reload

        # 2. The teacher unlocks on the projector and leads the class to the MLP stage.
        t.goto(f"{base}/Teacher?present=1")
        t.get_by_label("Teacher key", exact=True).and_(t.locator("input")).fill(KEY)
        t.keyboard.press("Enter")
        t.get_by_text("Teacher mode").wait_for(timeout=60000)
        t.locator(SIDEBAR).get_by_text("Class, follow me").click()
        for page in (a, b, c):
            page.get_by_text("Following the teacher").first.wait_for(timeout=15000)
        c.get_by_role("button", name="Leave").click()
        wait_idle(c)
        t.locator(SIDEBAR).get_by_role("link", name="MLP").click()
        took = [_wait_url(p, "/MLP") for p in (a, b)]
        assert max(took) < 5, took  # (the benchmark measures 60 students against 2 s)
        t.wait_for_timeout(1500)
        assert "/Data_Explorer" in c.url  # left: not taken along
        for name, page in (("laptop", a), ("tablet", b)):
            _banner_shows(page, name, shots)
        wait_idle(a)
        a.screenshot(path=str(shots / "1_laptop_following_mlp.png"))
        b.screenshot(path=str(shots / "1_tablet_following_mlp.png"))

        # 3. Predict, then see: the teacher trains a small run and asks what test accuracy it will reach.
        t.get_by_label("Epochs", exact=True).and_(t.locator("input")).fill("6")  # long enough to reach the Pause
        t.get_by_label("Training images (0 = all)", exact=True).and_(t.locator("input")).fill("0")
        t.keyboard.press("Enter")
        wait_idle(t)
        t.get_by_role("button", name="Train", exact=True).click()
        # the run waits while the class thinks: held at once, on its page (once, on a loaded machine, it ran all six
        # epochs while the Teacher page opened, and the page had no run left to ask about)
        t.get_by_role("button", name="Pause", exact=True).click(timeout=90000)
        t.get_by_role("button", name="Resume", exact=True).wait_for(timeout=30000)
        t.locator(SIDEBAR).get_by_text("Class, follow me").click()  # the class stays on MLP meanwhile
        t.locator(SIDEBAR).get_by_role("link", name="Teacher").click()
        t.get_by_role("button", name="Ask the class").wait_for(timeout=60000)
        t.get_by_role("button", name="Resume", exact=True).wait_for(timeout=30000)  # the Teacher page: it is held
        t.get_by_role("button", name="Ask the class").click()
        for page, guess in ((a, "ArrowRight"), (b, "ArrowLeft"), (c, "ArrowRight")):
            page.get_by_text("The teacher asks about").first.wait_for(timeout=15000)
            slider = page.locator('[class*="st-key-class_question"]').get_by_role("slider")
            slider.scroll_into_view_if_needed()
            slider.focus()
            for _ in range(4):
                page.keyboard.press(guess)
            wait_idle(page)
            page.locator('[class*="st-key-class_question"]').get_by_role("button", name="Answer").click()
            page.get_by_text("Your answer:").first.wait_for(timeout=15000)
        a.screenshot(path=str(shots / "2_laptop_answered.png"))
        t.get_by_role("button", name="Resume", exact=True).click()
        t.get_by_text("the truth:").first.wait_for(timeout=240000)
        t.get_by_text("3 answer(s)").first.wait_for(timeout=15000)
        t.screenshot(path=str(shots / "2_projector_answers_and_truth.png"), full_page=True)
        for page in (a, b, c):
            page.get_by_text("It reached").first.wait_for(timeout=15000)
        b.screenshot(path=str(shots / "2_tablet_truth.png"))
        t.get_by_role("button", name="Close the question").click()
        t.get_by_role("button", name="Close the question").wait_for(state="detached", timeout=60000)
        wait_idle(t)  # the page has settled: a click during its rerun (a loaded machine) landed on a moving button

        # 4. Fool the model: a round on the class's CNN.
        t.get_by_role("button", name="Start the round").click()
        t.get_by_text("Drawings this round").first.wait_for(timeout=30000)
        for page in (a, b, c):
            page.get_by_text("Fool the model!").first.wait_for(timeout=15000)
            page.goto(f"{base}/Sketch_Pad")
            page.get_by_text("nothing to guess at yet").wait_for(timeout=90000)
            wait_idle(page)
        said = {}
        for page, strokes, label, finger in ((a, ONE, 4, None), (b, ONE, 7, cdp), (c, ZERO, 0, None)):
            _stroke(page, strokes, finger)
            page.get_by_text("Predicted digit").first.wait_for(timeout=60000)
            wait_idle(page)
            said[page] = _save(page, label)
        a.screenshot(path=str(shots / "3_laptop_fooled.png"))
        assert "It fooled the class's model" in said[a], said[a]  # a '1' labelled 4
        t.get_by_text("Students who fooled it").first.wait_for(timeout=15000)
        t.wait_for_timeout(2500)  # the gallery's next refresh
        gallery = t.get_by_test_id("stImage").all_inner_texts() + [t.locator("body").inner_text()]
        assert any(names[0] in g for g in gallery), names[0]
        t.screenshot(path=str(shots / "3_projector_gallery.png"), full_page=True)
        t.get_by_role("button", name="End the round").click()
        t.get_by_role("button", name="Fine-tune it on the class collection").click()
        t.get_by_text("MNIST test accuracy after fine-tuning").first.wait_for(timeout=240000)
        t.get_by_text("After fine-tuning:").first.wait_for(timeout=15000)
        t.screenshot(path=str(shots / "4_projector_after_fine_tuning.png"), full_page=True)

        # 5. Each student's own report.
        for page, shot in ((a, "laptop"), (b, "tablet"), (c, "laptop2")):
            page.goto(f"{base}/Our_Handwriting")
            report = page.get_by_text("5. My handwriting")
            report.wait_for(timeout=90000)
            wait_idle(page)
            report.scroll_into_view_if_needed()
            expect(page.get_by_text("Read right by the class's fine-tuned model")).to_be_visible(timeout=30000)
            page.screenshot(path=str(shots / f"5_{shot}_my_handwriting.png"))
        errors = [e for p in (t, a, b, c) for e in p.locator('[data-testid="stException"]').all_inner_texts()]
    finally:
        for ctx in (projector, laptop, tablet, other):
            ctx.close()
    assert not errors, errors
    book = col.book  # what the pages wrote, read back
    r = book.round()
    assert r.ended and r.tuned_id
    fooled = {book.pseudonym(d.browser) for d in book.round_drawings(r.id) if d.fooled}
    assert names[0] in fooled
