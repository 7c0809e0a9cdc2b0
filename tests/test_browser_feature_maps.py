"""The CNN page's feature maps in a real headless Chromium: hovering a number of a convolution's map names that map,
row and column (not the sheet's), and a click on it makes it the number worked out below, outlined on its map. Then
Train, which reruns only its own block of the page: when the run ends, the page's later sections show its model."""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

pytestmark = pytest.mark.browser

SHEET = "After conv_layers.0 · Conv2d: 32 maps of 26x26"
# Where a number sits on the screen: the chart's own axes turn a sheet cell into page pixels.
CELL_XY = """([title, x, y]) => {
  const plot = Array.from(document.querySelectorAll('.js-plotly-plot'))
    .find(p => (p.querySelector('.gtitle') || {}).textContent?.startsWith(title));
  plot.scrollIntoView({block: 'center'});
  const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis, box = plot.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}"""


def test_hover_and_click_a_feature_map_number_then_train(mnist, trained, tmp_path):
    from localhost import app_in_chromium
    from screenshot import wait_idle

    from digitlab.explore import first_index_of
    from digitlab.store import ModelStore
    from digitlab.train import prepare

    cnn = trained["cnn"]
    model, info = ModelStore().load(cnn.id)
    image = mnist.test_images[first_index_of(mnist.test_labels, 7, 0)]  # the page's first test image
    with torch.inference_mode():
        conv1 = model.eval().conv_layers[0](prepare(image.unsqueeze(0), info.config))[0]
    want_map, want_row, want_col = 21, 14, 17  # map 21 sits in the second row of the sheet (16 maps a row)
    # the sheet's own layout (viz.map_sheet, 16 columns, a 1-cell gap): the cell of that number
    sheet_x, sheet_y = (want_map % 16) * 27 + want_col, (want_map // 16) * 27 + want_row

    store = tmp_path / "models"  # the class's CNN alone, in a store of this test's own (it gets a second model)
    (store / "analyses").mkdir(parents=True)
    for f in Path(os.environ["DIGITLAB_MODEL_DIR"]).rglob(f"{cnn.id}.*"):
        shutil.copy(f, store / f.relative_to(os.environ["DIGITLAB_MODEL_DIR"]))
    env = {"DIGITLAB_MODEL_DIR": str(store), "DIGITLAB_DATA_DIR": os.environ["DIGITLAB_DATA_DIR"],
           "DIGITLAB_COLLECTION_DIR": str(tmp_path / "col")}
    with app_in_chromium(env) as (browser, base):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/CNN?model={cnn.id}")
        page.get_by_text(SHEET).first.wait_for(timeout=120000)
        wait_idle(page)
        x, y = page.evaluate(CELL_XY, [SHEET, sheet_x, sheet_y])
        page.mouse.move(x, y)
        hover = page.locator(".hoverlayer .hovertext").first
        hover.wait_for(timeout=10000)
        said = hover.text_content()  # SVG text: no innerText
        page.mouse.click(x, y)
        page.get_by_text(f"conv 1, map {want_map}, row {want_row}, column {want_col}").first.wait_for(timeout=60000)
        wait_idle(page)
        number = page.locator('[data-testid="stMetric"]', has_text="The convolution's number").inner_text()
        boxes = [page.get_by_role("spinbutton", name=n).first.input_value() for n in ("Map", "Row", "Column")]
        outlined = page.evaluate("""(title) => {
          const plot = Array.from(document.querySelectorAll('.js-plotly-plot'))
            .find(p => (p.querySelector('.gtitle') || {}).textContent?.startsWith(title));
          return (plot.layout.shapes || []).map(s => [s.x0, s.y0]);
        }""", SHEET)

        # Train a small run: the Train block reruns on its own, and the run's end reruns the page, whose section 3
        # then looks inside the new model.
        for box, value in (("Epochs", "1"), ("Training images (0 = all)", "1000")):
            page.get_by_role("spinbutton", name=box).first.fill(value)
            page.get_by_role("spinbutton", name=box).first.press("Enter")
            wait_idle(page)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("done: test accuracy").first.wait_for(timeout=120000)
        wait_idle(page)
        (new,) = [i for i in ModelStore(store).list() if i.id != cnn.id]
        picker = page.get_by_role("combobox", name="Trained CNN").input_value()
    said = said.replace("\u2212", "-")  # Plotly writes a minus sign
    assert re.search(rf"map {want_map}\s*row {want_row}, column {want_col}", said), said  # the map's own place
    assert f"output {float(conv1[want_map, want_row, want_col]):.3f}" in said
    assert boxes == [str(want_map), str(want_row), str(want_col)]
    assert number.split("\n")[-1] == f"{float(conv1[want_map, want_row, want_col]):.4f}"
    assert [sheet_x - 0.5, sheet_y - 0.5] in outlined  # the picked number, outlined
    assert new.title in picker  # section 3 moved to the model the run made
