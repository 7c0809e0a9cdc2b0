"""Fashion-MNIST in a real headless Chromium: a link with ?dataset=fashion opens the MLP stage on it (the sidebar's
choice and the data line say so), a short run trains on clothes, and the finished model's answers carry Fashion-MNIST's
class names, not digits."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

pytestmark = pytest.mark.browser

CHART_TITLES = "() => Array.from(document.querySelectorAll('.js-plotly-plot .gtitle')).map(t => t.textContent)"


def test_a_fashion_link_trains_on_clothes_in_the_browser(mnist, fashion, tmp_path):
    from localhost import app_in_chromium
    from screenshot import wait_idle

    env = {"DIGITLAB_MODEL_DIR": str(tmp_path / "models"), "DIGITLAB_DATA_DIR": os.environ["DIGITLAB_DATA_DIR"],
           "DIGITLAB_FASHION_DIR": os.environ["DIGITLAB_FASHION_DIR"], "DIGITLAB_COLLECTION_DIR": str(tmp_path / "col")}
    with app_in_chromium(env) as (browser, base):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        # a shared link: the PyTorch tutorial's MLP for one epoch on 3,000 training images, on Fashion-MNIST
        page.goto(f"{base}/MLP?dataset=fashion&preset=mlp-128-64&epochs=1&limit=3000")
        page.get_by_text("Data: Fashion-MNIST").first.wait_for(timeout=90000)
        wait_idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_by_role("radio", name="Fashion-MNIST").is_checked()
        assert page.get_by_role("spinbutton", name="Epochs").input_value() == "1"
        page.get_by_role("button", name="Train", exact=True).click()
        page.locator('[data-testid="stMetric"]', has_text="Test accuracy").wait_for(timeout=120000)
        wait_idle(page)
        accuracy = page.locator('[data-testid="stMetric"]', has_text="Test accuracy").inner_text()
        answers = [t for t in page.evaluate(CHART_TITLES) if t.startswith("a ")]
        address = page.url
    assert "dataset=fashion" in address
    shown = float(accuracy.split("\n")[-1].rstrip("%")) / 100
    assert 0.5 < shown < 1  # a real model of ten classes of clothes (chance: 10%), 47 steps on 3,000 images
    assert len(answers) == 4 and all(a[2:] in fashion.classes for a in answers), answers
    from digitlab.store import ModelStore

    (info,) = ModelStore(tmp_path / "models").list()
    assert (info.config.dataset, info.config.epochs, info.config.train_limit) == ("fashion", 1, 3000)
    assert f"{info.metrics['test_accuracy']:.2%}" in accuracy
