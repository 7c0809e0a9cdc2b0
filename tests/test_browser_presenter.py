"""Presenter mode on a projector (1920x1080, ?present=1) in a real headless Chromium: on every page no visible text
is smaller than 18 px (the browser's own computed font size of each text node's element, chart text included), and
no label above an image (the mistakes grid's titles, the map sheets' labels) overlaps an image, and no chart's title
runs past its chart's edge."""

import pytest
from browser_pages import one_app_per_module, open_page, walk_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SMALLEST_PX = 18

# Every visible text node's element whose computed font size is under the floor: "size, element, its text".
SMALL_TEXT = """floor => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || !el || ["SCRIPT", "STYLE", "NOSCRIPT"].includes(el.tagName)) continue;
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    if (!box.width || !box.height || style.visibility === "hidden" || style.display === "none") continue;
    const size = parseFloat(style.fontSize);
    if (size < floor) out.push(`${size}px ${el.tagName} in ${el.closest("[data-testid]")?.dataset.testid}: `
                               + node.textContent.trim().slice(0, 60));
  }
  return out;
}"""

# Each chart's labels against its images: a subplot title (paper-anchored) must not cross any heatmap image; a
# label in a map sheet's gaps (data-anchored, above its tile) must stay inside the gap between its tile and the one
# above (map_sheet: a label sits 0.6 cells over its tile's first row, whose edge is half a cell higher). The axes'
# range is read against the axes' own area, Plotly's drag rectangle: the grey plot background (.bglayer rect.bg) is
# drawn 8 px beyond it on every side (12 px at presenter mode's sizes), which put a label up to 12 px off its tile.
OVERLAPS = """() => {
  const out = [];
  let labelled = 0;
  const hit = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 &&
                        Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
  for (const gd of document.querySelectorAll(".js-plotly-plot")) {
    const anns = (gd.layout && gd.layout.annotations) || [];
    const images = Array.from(gd.querySelectorAll(".heatmaplayer image")).map(i => i.getBoundingClientRect());
    const area = gd.querySelector(".draglayer .xy .nsewdrag") || gd.querySelector(".bglayer rect.bg");
    const band = Math.min(...anns.filter(b => b.yref === "y").map(b => b.y)) + 0.6;
    gd.querySelectorAll("g.annotation").forEach((g, i) => {
      const a = anns[Number(g.dataset.index ?? i)], text = g.querySelector("text");
      if (!a || !text) return;
      const box = text.getBoundingClientRect();
      labelled += 1;
      if (a.yref === "paper") {
        if (images.some(im => hit(box, im))) out.push(`${a.text}: over an image`);
      } else if (a.yref === "y" && a.yanchor === "bottom" && area && gd.layout.yaxis.range) {
        const plot = area.getBoundingClientRect(), r = gd.layout.yaxis.range;  // reversed: r[0] at the bottom
        const px = y => plot.top + (y - r[1]) / (r[0] - r[1]) * plot.height;
        const edge = a.y + 0.1, above = edge - band <= -0.5 ? -Infinity : px(edge - band);
        if (box.bottom > px(edge) + 1 || box.top < above - 1) out.push(`${a.text}: over a tile`);
      }
    });
  }
  return [labelled, out];
}"""


# Each chart's title against the chart's own box: a title wider than a narrow column (a third of the page) was cut
# at the chart's edge (the Linear page's "The ideal 3 (mean of the training 3s)", now "The ideal 3 (the average 3)").
CUT_TITLES = """() => Array.from(document.querySelectorAll(".js-plotly-plot")).flatMap(gd => {
  const edge = gd.getBoundingClientRect(), title = gd.querySelector("text.gtitle");
  const box = title && title.getBoundingClientRect();
  return box && box.width && (box.left < edge.left - 1 || box.right > edge.right + 1) ? [title.textContent] : [];
})"""


app = one_app_per_module()  # (browser, address), shared by the tests of this file


@pytest.fixture(scope="module")
def walk(app, trained):
    """Every page in presenter mode (Home from its address with ?present=1, the rest through the sidebar), Evaluate's grid of confident mistakes (titles above 20
    images) and Features' other labelled sheets (the MLP's 50 first-layer units, before and after training; the page
    opens on the CNN's filters): {page: (text under 18 px, labels over an image, chart titles cut)} and how many labels
    were measured."""
    browser, base = app
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    found, checked = {}, 0
    mlp = trained["mlp"].id
    more = [("Evaluate", "look=confident-mistakes"), ("Features", f"model={mlp}&look=the-first-layer-s-weights"),
            ("Features", f"model={mlp}&look=before-and-after-training")]

    def visits():  # every page through the sidebar (the switch kept page to page), then the three bookmarks
        yield from ((path, "present=1") for path in walk_pages(page, base, "present=1"))
        for path, query in more:
            open_page(page, base, path, f"{query}&present=1")
            yield path, f"{query}&present=1"

    for path, query in visits():
        assert page.get_by_role("switch", name="Presenter mode").is_checked(), path
        labelled, over = page.evaluate(OVERLAPS)
        checked += labelled
        found[f"{path or 'Home'}?{query}"] = (page.evaluate(SMALL_TEXT, SMALLEST_PX), over, page.evaluate(CUT_TITLES))
    return found, checked


def test_presenter_mode_has_no_text_under_18px(walk):
    found, _ = walk
    assert not any(v[0] for v in found.values()), {k: v[0][:10] for k, v in found.items() if v[0]}


def test_presenter_mode_puts_no_label_over_an_image(walk):
    found, checked = walk
    assert checked >= 20  # the mistakes grid's 20 titles at least, and the CNN's and Features' labelled sheets
    over = {k: v[1][:10] for k, v in found.items() if v[1]}
    assert not over, over


def test_presenter_mode_cuts_no_chart_title_at_its_edge(walk):
    found, _ = walk
    cut = {k: v[2] for k, v in found.items() if v[2]}
    assert not cut, cut
