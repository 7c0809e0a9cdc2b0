"""Accessibility in a real headless Chromium: axe-core finds no serious or critical violation on any page (colour
contrast of 4.5:1 for text among them), each chart carries a one-line text alternative, and the journey works from
the keyboard: Tab through the sidebar to a stage, Enter opens it, Tab to a button, Space presses it."""

import pytest
from browser_pages import one_app_per_module, open_page, walk_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Chart text that sits on the page's white (axe leaves SVG text out): ticks, axis and chart titles, labels, legends,
# each with its contrast against white, below 4.5:1 listed.
CHART_TEXT = """() => {
  const lum = c => { const [r, g, b] = c.match(/[0-9.]+/g).slice(0, 3).map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const found = Array.from(document.querySelectorAll(".js-plotly-plot :is(.xtick, .ytick, .g-xtitle, .g-ytitle, "
    + ".g-gtitle, g.annotation, .legendtext, .legendtitletext) text, .js-plotly-plot text.legendtext"))
    .filter(t => t.textContent.trim() && t.getBoundingClientRect().width);
  return [found.length, found.map(t => [t.textContent.trim().slice(0, 30), 1.05 / (lum(getComputedStyle(t).fill) + 0.05)])
    .filter(([, ratio]) => ratio < 4.5)];
}"""

FOCUSED = "() => { const e = document.activeElement; return e ? (e.innerText || e.getAttribute('aria-label') || '')" \
          ".trim() : ''; }"


app = one_app_per_module()  # (browser, address), shared by the tests of this file


def test_axe_finds_no_serious_or_critical_violation_on_any_page(app):
    from axe_playwright_python.sync_playwright import Axe

    browser, base = app
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    axe, found, rules, texts, shown, chart_text = Axe(), {}, set(), {}, 0, 0
    for path in walk_pages(page, base):
        result = axe.run(page).response
        rules |= {r["id"] for r in result["passes"]}
        charts, alts = page.locator(".js-plotly-plot").count(), page.locator("p.dl-alt").all_inner_texts()
        shown += charts
        texts[path or "Home"] = (charts, alts)
        found[path or "Home"] = [f"{v['id']} ({v['impact']}): {n['target']} {n.get('failureSummary', '')[:160]}"
                                 for v in result["violations"] if v["impact"] in ("serious", "critical")
                                 for n in v["nodes"]]
        n_text, faint = page.evaluate(CHART_TEXT)
        chart_text += n_text
        found[path or "Home"] += [f"chart text {t!r} at {ratio:.2f}:1" for t, ratio in faint]
    assert "color-contrast" in rules  # axe did check the text's contrast (and found it enough)
    assert not any(found.values()), {k: v[:5] for k, v in found.items() if v}
    assert chart_text >= 100  # the charts' ticks, titles and labels were read
    # each chart with its one-line text alternative: what it shows and a number read from its data
    assert shown >= 15, texts
    assert all(charts == len(alts) for charts, alts in texts.values()), texts
    alts = [a for _, page_alts in texts.values() for a in page_alts]
    assert all(a.startswith("Chart: ") and any(c.isdigit() for c in a) for a in alts), alts
    assert "Chart: Training images per digit: from 5,421 (5) to 6,742 (1)" in alts  # the Data Explorer's counts


# Where the keyboard's focus is, in a few words: the trail of stops a failure shows.
STOP = "() => { const e = document.activeElement; return e ? (e.getAttribute('aria-label')" \
       " || e.labels?.[0]?.innerText || e.innerText || e.tagName).replace(/\\s+/g, ' ').trim().slice(0, 40) : ''; }"

# Every chart on the page drawn (Plotly's SVG and its toolbar in place): what a keyboard user sees before pressing Tab.
CHARTS_DRAWN = """() => { const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
  return charts.length > 0 && Array.from(charts).every(c => c.querySelector('.main-svg')); }"""


def _tab_to(page, wanted: str, most: int) -> int:
    """Press Tab until ``wanted`` has the focus, at most ``most`` times: how many presses it took."""
    stops = []
    while len(stops) < most:
        page.keyboard.press("Tab")
        stops.append(page.evaluate(STOP))
        if page.evaluate(FOCUSED).endswith(wanted):
            return len(stops)
    raise AssertionError(f"{wanted!r} never took the keyboard's focus in {most} presses of Tab: " + " | ".join(stops))


def test_the_journey_works_from_the_keyboard(app):
    from screenshot import wait_idle

    browser, base = app
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    open_page(page, base, "")
    _tab_to(page, "Data Explorer", 5)  # the skip link, Home, then the sidebar's link to the first stage
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="1. How many of each digit").wait_for(timeout=60000)
    assert page.url.endswith("/Data_Explorer")
    # A keyboard user starts once the page is there: its script finished, the button shown, the charts drawn. Under
    # load the button's widget is drawn seconds after the caption below it, and the charts later still; Tab pressed
    # before then passed the button's place and went round the whole page (the CI failure at 80 presses).
    wait_idle(page)
    page.get_by_role("button", name="Reshuffle").wait_for(timeout=60000)
    page.wait_for_function(CHARTS_DRAWN, timeout=60000)
    labels = page.get_by_text("Their labels, row by row:")
    before = labels.inner_text()
    # From the sidebar's link: 8 more links, the sidebar's 4 controls (Dataset and its help, Presenter mode and its
    # help), the page, 2 heading links, the counts chart's toolbar (3: download, reset axes, full screen), a heading
    # link, Split's help and choice, the Digit box, Reshuffle: 23. A new control or two may join; a page where the
    # keyboard must pass dozens of stops to reach the stage's first button may not.
    _tab_to(page, "Reshuffle", 30)
    page.keyboard.press("Space")
    page.wait_for_function("before => !document.body.innerText.includes(before)", arg=before, timeout=60000)
    after = page.get_by_text("Their labels, row by row:").inner_text()
    assert after != before  # a new sample of 60 digits, asked for with the keyboard alone
