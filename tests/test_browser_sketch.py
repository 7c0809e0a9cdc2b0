"""A real headless Chromium draws a '1' on the Sketch Pad with the mouse and with a finger (touch events); the
page must predict 1 both times. It also uploads a refused GIF and a photo of a 7."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

pytestmark = pytest.mark.browser


def _paper_png(mnist) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    digit = mnist.test_images[0].numpy()  # a 7
    assert int(mnist.test_labels[0]) == 7
    ink = np.asarray(Image.fromarray(digit).resize((240, 240), Image.Resampling.BILINEAR)).astype(np.float32) / 255
    paper = np.full((320, 320), 225.0)
    paper[40:280, 40:280] = paper[40:280, 40:280] * (1 - ink) + 20 * ink
    buf = io.BytesIO()
    Image.fromarray(paper.astype(np.uint8)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _gif() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buf, format="GIF")
    return buf.getvalue()


def test_draw_a_one_and_the_cnn_says_1(mnist, trained, tmp_path):
    from localhost import app_in_chromium
    from screenshot import wait_idle

    env = {
        "DIGITLAB_MODEL_DIR": os.environ["DIGITLAB_MODEL_DIR"],  # the session store: trained linear, MLP, CNN
        "DIGITLAB_DATA_DIR": os.environ["DIGITLAB_DATA_DIR"],
        "DIGITLAB_COLLECTION_DIR": str(tmp_path / "col"),
    }
    with app_in_chromium(env) as (browser, base):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/Sketch_Pad")
        page.get_by_text("nothing to guess at yet").wait_for(timeout=90000)  # empty pad: a prompt, not a guess
        wait_idle(page)
        # a deep link opened first after start-up still gets app.py's sidebar: Home first, with icons
        nav = [line.strip() for line in page.locator('[data-testid="stSidebarNav"]').inner_text().split("\n")]
        assert "Home" in nav and "app" not in nav and nav.index("Home") < nav.index("Sketch Pad"), nav
        assert "🔢" in nav and "✏️" in nav, nav  # app.py's icons, not the bare pages/ listing
        canvas = page.locator("canvas.upper-canvas").first
        canvas.wait_for(timeout=30000)
        box = canvas.bounding_box()
        x = box["x"] + box["width"] * 0.5
        page.mouse.move(x, box["y"] + box["height"] * 0.15)
        page.mouse.down()
        for i in range(1, 21):  # a vertical stroke, top to bottom, in small steps like a hand
            page.mouse.move(x + i * 0.3, box["y"] + box["height"] * (0.15 + 0.7 * i / 20))
        page.mouse.up()
        page.get_by_text("Predicted digit").first.wait_for(timeout=60000)
        wait_idle(page)
        shots = ROOT / "screenshots" / "h6"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "browser_drawn_1.png"), full_page=True)
        metrics = page.locator('[data-testid="stMetric"]').all_inner_texts()
        cnn = page.locator('[class*="_card_"]').filter(has_text="DigitCNN").filter(
            has=page.locator('[data-testid="stMetric"]')).last.locator('[data-testid="stMetric"]').inner_text()
        # The upload path: a GIF named .png (the browser only checks the name) is refused with a message, then a photo-like PNG of a real MNIST 7
        # (dark ink on light paper) is inverted, processed and read.
        page.get_by_role("tab", name="Upload a photo").click()
        uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
        uploader.set_input_files(files=[{"name": "seven.png", "mimeType": "image/png", "buffer": _gif()}])
        page.get_by_text("GIF images are not accepted").wait_for(timeout=60000)
        uploader.set_input_files(files=[{"name": "seven.png", "mimeType": "image/png", "buffer": _paper_png(mnist)}])
        page.get_by_test_id("stTabs").get_by_text("2. inverted").wait_for(timeout=60000)
        wait_idle(page)
        page.screenshot(path=str(shots / "browser_upload_7.png"), full_page=True)
        panel = page.locator('[data-testid="stTabPanel"]').nth(1)
        uploaded = panel.locator('[class*="_card_"]').filter(has_text="DigitCNN").filter(
            has=page.locator('[data-testid="stMetric"]')).last.locator('[data-testid="stMetric"]').inner_text()
        errors = page.locator('[data-testid="stException"]').all_inner_texts()

        # A classroom tablet: the same stroke drawn with a finger (touch events, no mouse) is read too.
        tablet = browser.new_context(viewport={"width": 1024, "height": 1366}, has_touch=True, is_mobile=True)
        tpage = tablet.new_page()
        tpage.goto(f"{base}/Sketch_Pad")
        tpage.get_by_text("nothing to guess at yet").wait_for(timeout=90000)
        wait_idle(tpage)
        pad = tpage.locator("canvas.upper-canvas").first
        pad.scroll_into_view_if_needed()
        box = pad.bounding_box()
        cdp = tablet.new_cdp_session(tpage)
        x = box["x"] + box["width"] * 0.5

        def finger(kind: str, y: float = 0.0, dx: float = 0.0) -> None:
            points = [] if kind == "touchEnd" else [{"x": x + dx, "y": y, "id": 1, "radiusX": 4, "radiusY": 4}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        finger("touchStart", box["y"] + box["height"] * 0.15)
        for i in range(1, 21):
            finger("touchMove", box["y"] + box["height"] * (0.15 + 0.7 * i / 20), i * 0.3)
        finger("touchEnd")
        tpage.get_by_text("Predicted digit").first.wait_for(timeout=60000)
        wait_idle(tpage)
        tpage.screenshot(path=str(shots / "browser_touch_1.png"), full_page=True)
        touched = tpage.locator('[class*="_card_"]').filter(has_text="DigitCNN").filter(
            has=tpage.locator('[data-testid="stMetric"]')).last.locator('[data-testid="stMetric"]').inner_text()
        errors += tpage.locator('[data-testid="stException"]').all_inner_texts()
    assert not errors, errors
    def value(metric: str) -> str:
        return [line.strip() for line in metric.splitlines() if line.strip()][1]

    digits = [value(m) for m in metrics if m.startswith("Predicted digit")]
    assert len(digits) == 2, metrics  # the best MLP and the best CNN of the session store answer (by default)
    assert value(cnn) == "1", (cnn, metrics)  # the CNN reads the stroke as a 1
    assert any(m.startswith("3 or 7?") for m in metrics), metrics  # the linear model answers its own question
    assert value(uploaded) == "7", uploaded
    assert value(touched) == "1", touched  # drawn with a finger
