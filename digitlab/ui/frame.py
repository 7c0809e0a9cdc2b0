"""The frame around every page: the sidebar's page list, the title, the data banner, the sidebar's status
lines, "The code that runs" boxes and links between stages."""

from __future__ import annotations

import functools
import html
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from .. import data as data_mod
from .. import settings
from ..train import device_label
from .resources import (
    DATASET_KEY,
    PAGES,
    SharedFigure,
    _load_data,
    dataset_in_use,
    get_data,
    get_queue,
    memory_keeper,
    page_fragment,
    whose,
)
from .text import duration_text, status
from .together import class_bar, take_the_move

ROOT = Path(__file__).resolve().parent.parent.parent

# The journey: (page file, title, icon, one line). A stage joins by adding its file to pages/.
STAGES = [
    ("pages/1_Data_Explorer.py", "Data Explorer", "🔍", "Pixels, heatmaps, the average digit, class counts."),
    ("pages/2_Linear_3_vs_7.py", "Linear 3 vs 7", "📏", "A pixel-similarity baseline, then a linear model trained by hand."),
    ("pages/3_MLP.py", "MLP", "🧠", "simple_net and deeper MLPs, trained live."),
    ("pages/4_CNN.py", "CNN", "🧩", "The seed's DigitCNN and better recipes; feature maps."),
    ("pages/5_Features.py", "Features", "👁️", "What the weights look for: 784-weight rows as images, filters."),
    ("pages/6_Sketch_Pad.py", "Sketch Pad", "✏️", "Draw a digit and watch the class's best models answer."),
    ("pages/7_Evaluate.py", "Evaluate", "📊", "Confusion matrix, mistakes, calibration, robustness."),
    ("pages/9_Our_Handwriting.py", "Our Handwriting", "✍️", "Teach a model the class's own handwriting: before and after."),
]
HOME = ("Home", "🔢")

# Set once app.py's st.navigation has run in this process; until then Streamlit may run a deep link the old way.
_app_navigation_seen = False


def existing_stages() -> list[tuple[str, str, str, str]]:
    """The stages whose page file exists, in journey order; any other file in pages/ joins at the end. Looked up
    again only when pages/ changes (one stat a rerun instead of a stat per stage and a listing)."""
    return _stages_in((ROOT / "pages").stat().st_mtime_ns)


@functools.cache
def _stages_in(_pages_changed: int) -> list[tuple[str, str, str, str]]:
    known = [s for s in STAGES if (ROOT / s[0]).is_file()]
    listed = {s[0] for s in STAGES}
    for path in sorted((ROOT / "pages").glob("*.py")):
        rel = f"pages/{path.name}"
        if rel not in listed:
            title = path.stem.split("_", 1)[-1].replace("_", " ")
            known.append((rel, title, "📄", ""))
    return known


def _stage_pages(root: Path | None = None) -> list:
    """One st.Page per stage; paths relative to app.py, or absolute under ``root``."""
    return [st.Page(str(root / path) if root else path, title=title, icon=icon, url_path=title.replace(" ", "_"))
            for path, title, icon, _ in existing_stages()]


NAV_PAGES = "nav_pages"  # session state: (the pages/ listing, its st.Pages) this session's runs reuse


def navigation(home: Callable[[], None]) -> None:
    """The sidebar: Home first, then every stage; a new stage joins by adding its file to pages/. The stages' st.Pages
    are made once per session, not on every run: each st.Page resolves its file's path (a system call per folder on the
    way, each one giving up the interpreter to the class's other runs: 8% of the server's time while 60 followed the
    teacher). Not shared between sessions: st.navigation marks on the page object which page a run may call."""
    global _app_navigation_seen
    _app_navigation_seen = True
    listing = existing_stages()
    made = st.session_state.get(NAV_PAGES)
    if made is None or made[0] is not listing:
        made = (listing, _stage_pages())
        st.session_state[NAV_PAGES] = made
    pages = [st.Page(home, title=HOME[0], icon=HOME[1], default=True), *made[1]]  # (a function: nothing to resolve)
    PAGES.update({"DigitLab" if p.title == HOME[0] else p.title: p for p in pages})  # by page_setup's title
    st.navigation(pages).run()


def _app_page_list() -> None:
    """A deep link opened first after start-up: Streamlit runs a pages/ file alone, the old (v1) multipage way,
    with a sidebar that lists "app" and no icons. Calling st.navigation with app.py's own page list here gives
    this visit the same sidebar, and from then on Streamlit runs every visit through app.py."""
    global _app_navigation_seen
    if _app_navigation_seen or not (ROOT / "app.py").is_file():
        return
    _app_navigation_seen = True
    home = st.Page(str(ROOT / "app.py"), title=HOME[0], icon=HOME[1], default=True)
    st.navigation([home, *_stage_pages(ROOT)])
    st.rerun()  # this visit again, through app.py: else its first widget change (a link's settings) would be lost


def page_setup(title: str, icon: str = "🔢", intro: str = "") -> data_mod.MNIST:
    """Page config, title, the data banner and the sidebar; returns the dataset."""
    memory_keeper()
    _app_page_list()
    take_the_move(title)  # following the teacher: their page, before anything of this one is drawn
    st.set_page_config(page_title=f"{title} · DigitLab", page_icon=icon, layout="wide",
                       initial_sidebar_state=sidebar_start())
    presenter_style()
    touch_style()
    dataset_choice()
    st.title(f"{icon} {title}")
    class_bar(title)  # this browser in the room, its pseudonym, following the teacher, the teacher's question
    if intro:
        st.markdown(intro)
    data = get_data()
    data_banner(data)
    sidebar_status(data, title)
    return data


TOUCH_DEVICES = ("ipad", "tablet", "android", "mobile", "silk", "kindle")


def on_touch_screen() -> bool:
    """Whether this browser is a tablet's or a phone's (it says so in its User-Agent)."""
    if "touch_screen" not in st.session_state:  # a browser does not change within a session: read its headers once
        agent = (st.context.headers.get("User-Agent") or "").lower()
        st.session_state["touch_screen"] = any(word in agent for word in TOUCH_DEVICES)
    return st.session_state["touch_screen"]


def sidebar_start() -> str:
    """Collapsed on tablets and phones, so the page and the drawing pad get the whole width; elsewhere Streamlit's
    "auto" (collapsed below 768 px)."""
    return "collapsed" if on_touch_screen() else "auto"


# ---------------------------------------------------------------- touch screens (tablets, phones)

TOUCH_TIP_S = 4  # a tooltip opened by a tap (no hover ends it) fades after this many seconds
# Only on a touch screen (on_touch_screen). Streamlit's own layout assumes a mouse: the table toolbars show always
# (no hover) 44 px above each table, over the inputs above it; a tooltip opened by a tap stays until the next tap
# elsewhere, over what lies below it (a run's progress line); the sidebar's close button shows only on hover (two
# taps), and an open sidebar above 768 px pushes the page aside instead of lying over it.
TOUCH_CSS = f"""<style>
[data-testid="stMain"] :has(> [data-testid="stElementToolbar"]) {{ margin-top: 2.75rem; }}
div[role="tooltip"]:has([data-testid="stTooltipContent"]) {{
  pointer-events: none; animation: digitlab-tip-fades 0.3s ease-in {TOUCH_TIP_S}s forwards; }}
@keyframes digitlab-tip-fades {{ to {{ opacity: 0; visibility: hidden; }} }}
section[data-testid="stSidebar"] {{ position: fixed !important; top: 0; left: 0; height: 100dvh !important;
  box-shadow: 0 0 1.5rem rgba(0, 0, 0, 0.25); }}
[data-testid="stSidebarCollapseButton"] {{ visibility: visible !important; }}
</style>"""


def touch_style() -> None:
    """On a tablet or phone: room above each table for its toolbar, tooltips that fade, a sidebar that lies over the
    page and closes with one tap (TOUCH_CSS says why)."""
    if on_touch_screen():
        st.html(TOUCH_CSS)


PRESENT_FONT, PRESENT_TITLE = 20, 26  # presenter mode's chart text and titles, in px: readable from the back

# Presenter mode scales the whole page, not only the charts: Streamlit sizes its text in rem, so a 24 px root makes
# its smallest text (0.75rem) 18 px and body text 24 px; headings are brought back to a sensible scale, and the few
# things sized in px (the skip link) are named. Tables are drawn on a canvas: zoomed as a whole.
PRESENTER_CSS = """<style>
html { font-size: 24px; }
h1 { font-size: 2.2rem !important; }
h2 { font-size: 1.7rem !important; }
h3 { font-size: 1.35rem !important; }
[data-testid="stSkipToContent"] { font-size: 1rem; }
[data-testid="stCaptionContainer"] code { font-size: 0.8rem; }
[data-testid="stElementContainer"]:has(> [data-testid="stDataFrame"]) { zoom: 1.3; width: calc(100% / 1.3) !important; }
</style>"""


# Streamlit's theme has no colour for code inside a caption: it fades the code colour as it fades the caption (3:1
# on its grey background). Written in the caption's own colour, as readable as the caption (4.5:1 and up).
# Streamlit's chart theme writes ticks, axis titles and labels in #808495 (3.7:1 on white): that grey, and only it
# (a label given its own colour keeps it), becomes #5c5f6b (6.3:1).
# A chart's text alternative (chart(alt=...)) is read by a screen reader, not shown: out of the flow, one pixel.
CONTRAST_CSS = """<style>
[data-testid="stCaptionContainer"] code { color: inherit; }
.js-plotly-plot text[style*="fill: rgb(128, 132, 149)"] { fill: #5c5f6b !important; }
[data-testid="stElementContainer"]:has(.dl-alt) { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip-path: inset(50%); white-space: nowrap; }
</style>"""


PRESENT_KEY = "presenting"  # the session's presenter mode; the sidebar's toggle ("present_mode") only mirrors it


def presenting() -> bool:
    """Presenter mode: the sidebar's toggle, or ``?present=1`` in the address (a projector's bookmark). Kept under a
    key no widget owns: Streamlit forgets a widget's value when the sidebar takes the student to another page (the
    toggle is a new widget there), which switched presenter mode off one click after the teacher turned it on."""
    if PRESENT_KEY not in st.session_state:
        st.session_state[PRESENT_KEY] = st.query_params.get("present") == "1"
    return bool(st.session_state[PRESENT_KEY])


def px(size: int) -> int:
    """A size in px as the page shows it: 1.5 times as large in presenter mode, as its 24 px root font is to 16 px
    (for what Streamlit sizes in px: a pad, a column, an image)."""
    return round(size * 1.5) if presenting() else size


def presenter_style() -> None:
    """The page's contrast fix (CONTRAST_CSS) and presenter mode's page-wide sizes (PRESENTER_CSS); keep ``?present=1`` in the address while it is on, so a
    reload (or a bookmark) stays in it."""
    on = presenting()
    st.html(CONTRAST_CSS + (PRESENTER_CSS if on else ""))
    if on != (st.query_params.get("present") == "1"):
        if on:
            st.query_params["present"] = "1"
        else:
            del st.query_params["present"]


def dataset_choice() -> None:
    """The sidebar's dataset switch (MNIST or Fashion-MNIST), kept in the address as ``?dataset=fashion`` so a
    reload, a bookmark or a link to a page keeps it. Every page reads the choice through get_data()."""
    current = dataset_in_use()
    st.session_state["dataset_pick"] = current  # the widget shows the session's choice on every page

    def chosen() -> None:
        st.session_state[DATASET_KEY] = st.session_state["dataset_pick"]

    st.sidebar.radio("Dataset", list(data_mod.DATASETS), key="dataset_pick", on_change=chosen, horizontal=True,
                     format_func=lambda k: data_mod.DATASETS[k].title,
                     help="Every stage works on either: handwritten digits (MNIST), or ten kinds of clothing and "
                     "shoes in the same 28x28 format (Fashion-MNIST), where the models are further apart.")
    if current == "mnist" and st.query_params.get(DATASET_KEY, "mnist") != "mnist":
        del st.query_params[DATASET_KEY]  # (a stage page's setup says dataset=mnist: left, or each run changed it twice)
    elif current != "mnist" and st.query_params.get(DATASET_KEY) != current:
        st.query_params[DATASET_KEY] = current


# Each button of a chart's toolbar is a stop for the Tab key: eight a chart (Plotly's seven, Streamlit's full screen)
# made 48 of the Data Explorer's 91 stops. Left out are the drag modes (zoom, pan: only a mouse drags) and what a mouse
# gesture does as well (zoom in, zoom out, autoscale: a drag zooms, a double click resets); kept are the download, the
# reset after a drag's zoom and the full screen: three stops a chart.
TOOLBAR = {"modeBarButtonsToRemove": ["zoom2d", "pan2d", "zoomIn2d", "zoomOut2d", "autoScale2d"]}


def chart(where, fig, alt: str = "", **kwargs):
    """``where.plotly_chart(fig, **kwargs)`` and the chart's one-line text alternative for a screen reader: ``alt``
    (what it shows and its key number, from the call site's data), or else one read from the figure's own data
    (chart_summary). In presenter mode a copy of the figure with text of at least 20 px,
    titles of 26 px and a little more height for them (the figure itself may be shared by the class: never changed)."""
    if presenting():
        fig = go.Figure(fig)
        fig.update_layout(font_size=PRESENT_FONT, title_font_size=PRESENT_TITLE, legend_font_size=PRESENT_FONT)
        for axes in (fig.update_xaxes, fig.update_yaxes):  # Streamlit's chart theme sets 12 px ticks: say otherwise
            axes(tickfont_size=PRESENT_FONT, title_font_size=PRESENT_FONT)
        fig.for_each_yaxis(lambda ax: ax.update(dtick=1), selector={"type": "log"})  # no 15 px "2" and "5" between
        fig.for_each_xaxis(lambda ax: ax.update(dtick=1), selector={"type": "log"})  # powers of ten on a log axis
        for ann in fig.layout.annotations:  # subplot titles, labels: never below the presenter size
            ann.font.size = max(ann.font.size or 0, PRESENT_FONT)
        fig.update_traces(textfont_size=PRESENT_FONT, selector=lambda t: getattr(t, "text", None) is not None
                          or getattr(t, "texttemplate", None) is not None)  # numbers written in a heatmap's cells
        if fig.layout.height:
            fig.update_layout(height=int(fig.layout.height * 1.25))
            _room_for_labels(fig)
    # A touch screen shows Plotly's toolbar all the time, over the chart's title; taps select. Elsewhere the toolbar
    # keeps what a keyboard can use and no mouse gesture replaces (TOOLBAR); the call site's config has the last word.
    kwargs["config"] = {**({"displayModeBar": False} if on_touch_screen() else TOOLBAR), **kwargs.get("config", {})}
    shown = where.plotly_chart(fig, **kwargs)
    where.markdown(f'<p class="dl-alt">Chart: {html.escape(alt or _summary(fig))}</p>', unsafe_allow_html=True)
    return shown


def _summary(fig: go.Figure) -> str:
    """chart_summary, read once for a figure the class shares (it never changes): reading a sheet's labels back
    from Plotly's objects cost a few ms on every rerun."""
    if not isinstance(fig, SharedFigure):
        return chart_summary(fig)
    if getattr(fig, "_summary", None) is None:
        fig._summary = chart_summary(fig)
    return fig._summary


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def chart_summary(fig: go.Figure) -> str:
    """A figure in one line from its own data: its title, what kind of chart, and its key number (the largest bar,
    each line's last point, a map's size and range)."""
    title = re.sub(r"<[^>]+>", " ", fig.layout.title.text or "").strip()
    traces = [t for t in fig.data if t.visible is not False]
    said = ""
    if traces and traces[0].type == "heatmap":
        z = np.asarray(traces[0].z, dtype=float)
        if z.size and np.isfinite(z).any():
            said = (f"{len(traces)} images" if len(traces) > 1 else f"a {z.shape[0]}x{z.shape[-1]} map") + \
                   f", values {_number(np.nanmin(z))} to {_number(np.nanmax(z))}"
            if labels := [a.text for a in fig.layout.annotations if a.text][:3]:  # subplot titles, map labels
                said += ", the first labelled " + ", ".join(labels)
    elif traces and traces[0].type == "bar":
        bar = traces[0]
        values, names = (bar.x, bar.y) if bar.orientation == "h" else (bar.y, bar.x)
        if values is not None and len(values):
            top = int(np.argmax(np.asarray(values, dtype=float)))
            value = bar.text[top] if bar.text is not None and len(bar.text) > top else _number(float(values[top]))
            said = f"{len(values)} bars, the largest {names[top] if names is not None else top}: {value}"
    elif traces:
        ends = [f"{t.name + ' ' if t.name else ''}ends at {_number(float(t.y[-1]))}" for t in traces[:4]
                if t.type == "scatter" and t.y is not None and len(t.y) and t.y[-1] is not None]
        said = f"{len(traces)} series" + (": " + "; ".join(ends) if ends else "")
    return "; ".join(x for x in (title, said) if x) or "a chart"


LABEL_ROOM = 1.6  # a label's line in px per px of font: what presenter mode keeps free above each image


def _room_for_labels(fig: go.Figure) -> None:
    """Presenter mode's larger labels above each image, kept off the images: a grid of subplots (image_grid) gets
    taller by the label's growth per row and its rows move apart; a sheet of maps drawn as one heatmap with its
    labels in the gaps (map_sheet) gets tall enough that each gap holds a label."""
    need = LABEL_ROOM * PRESENT_FONT
    height = fig.layout.height
    margin = (fig.layout.margin.t or 0) + (fig.layout.margin.b or 0)
    titled = [a for a in fig.layout.annotations if a.yref == "paper" and a.yanchor == "bottom"]
    tops = sorted({round(d, 6) for d in (ax.domain[1] for ax in fig.select_yaxes() if ax.domain)}, reverse=True)
    if titled and len(tops) > 1:  # subplot titles: a row of images per distinct domain top, top row first
        plot = height - margin
        bottoms = [min(ax.domain[0] for ax in fig.select_yaxes() if ax.domain and round(ax.domain[1], 6) == t)
                   for t in tops]
        extra = max(0.0, need - min(b - t for b, t in zip(bottoms, tops[1:])) * plot)
        if not extra:
            return
        new_plot = plot + extra * len(tops)

        def moved(y: float, row: int) -> float:  # a height in the old plot, in the new one, its row moved down
            return 1 - ((1 - y) * plot + (row + 1) * extra) / new_plot

        for ax in fig.select_yaxes():
            if ax.domain:
                row = tops.index(round(ax.domain[1], 6))
                ax.domain = [moved(ax.domain[0], row), moved(ax.domain[1], row)]
        for a in titled:
            a.y = moved(a.y, min(range(len(tops)), key=lambda i: abs(tops[i] - a.y)))
        fig.update_layout(height=int(round(new_plot + margin)))
        return
    labels = [a for a in fig.layout.annotations if a.yref == "y" and a.yanchor == "bottom"]
    if labels and fig.layout.yaxis.range:  # map_sheet: the gap above a tile is `band` cells, its label sits in it
        room = min(a.y for a in labels) + 0.5  # cells between tiles: a label sits 0.6 cells over its tile's first
        # row, 0.1 over its edge
        lift = PRESENT_FONT // 3  # px: a 20 px line reaches below its anchor; lifted, it clears the tile
        for a in labels:
            a.yshift = lift
        cells = abs(fig.layout.yaxis.range[0] - fig.layout.yaxis.range[1])
        fig.update_layout(height=max(height, int(cells * (need + lift) / max(room, 0.1) + margin)))


def glossary(*terms: str) -> None:
    """The words just used, explained in a small pop-over beside them."""
    from .. import glossary as words

    found = words.entries(*terms)
    if found:
        with st.popover("📖 " + ", ".join(t for t, _ in found), help="What these words mean"):
            st.markdown(words.markdown(*terms))


def data_banner(data: data_mod.MNIST) -> None:
    src, title = data.source, data.spec.title
    if data.is_sample:
        st.warning(
            f"**{title}**, using **{src.label}**: {len(data.train_images):,} training and {len(data.test_images):,} "
            f"test images. Results will be a little lower than on the full {title}.",
            icon="📦",
        )
        size = "about 11 MB" if data.spec.key == "mnist" else "about 30 MB"
        with st.expander(f"Fetch the full {title} (70,000 images, {size})"):
            st.caption(
                f"Downloads from torchvision's {title} mirrors into the local data folder "
                f"`{data.spec.cache(data_mod.cache_dir())}`. Nothing is kept unless all four files arrive whole."
            )
            if st.button(f"Fetch full {title}", key=f"fetch_full_{data.spec.key}"):
                fetch_full_mnist(data.spec.key)
    else:
        st.caption(f"Data: **{title}** · {src.label} · {len(data.train_images):,} train / "
                   f"{len(data.test_images):,} test images")
    if src.skipped:
        with st.expander("Why not the other data sources"):
            for reason in src.skipped:
                st.markdown(f"- {skipped_reason(reason, title)}")


def skipped_reason(reason: str, title: str = "MNIST") -> str:
    """Why a data source was not used, as the page says it now: the web app never downloads on its own (the Fetch
    button does), so a download not tried points at the button, unless DIGITLAB_OFFLINE is set."""
    if reason.startswith(("download: not tried", "download: switched off")):
        if settings.get("DIGITLAB_OFFLINE"):
            return "download: switched off (DIGITLAB_OFFLINE)"
        return f"download: not done automatically by the web app; use **Fetch full {title}** above to download it"
    return reason


def fetch_full_mnist(dataset: str = "mnist") -> None:
    spec = data_mod.dataset_spec(dataset)
    bar = st.progress(0.0, text="Connecting...")

    def progress(name: str, done: int, total: int | None) -> None:
        frac = done / total if total else 0.0
        bar.progress(min(1.0, frac), text=f"{name}: {done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else ""))

    try:
        data_mod.download(spec.cache(data_mod.cache_dir()), progress, dataset=dataset)
    except data_mod.DataError as e:
        bar.empty()
        st.error(f"Could not fetch {spec.title}, so DigitLab stays on the sample. {e}")
        return
    _load_data.clear()
    st.success(f"Full {spec.title} downloaded. Reloading...")
    st.rerun()


def sidebar_status(data: data_mod.MNIST, title: str) -> None:
    with st.sidebar:
        where = f"the bundled sample of {data.spec.title}" if data.is_sample else f"full {data.spec.title} ({data.source.kind})"
        st.caption(f"**Data:** {where}")
        st.caption(f"**Device:** {device_label()}")
        st.session_state["present_mode"] = presenting()  # the toggle shows the session's mode on every page

        def switched() -> None:
            st.session_state[PRESENT_KEY] = st.session_state["present_mode"]

        st.toggle("Presenter mode", key="present_mode", on_change=switched, help="Larger charts and text for a "
                  "projector. Add ?present=1 to the address to open any page in it.")
        page_fragment("training_line", title, _training_line, SIDEBAR_EVERY_S)()  # one per page


SIDEBAR_EVERY_S = 3.0  # the sidebar's training line looks at the queue this often, on every page


def _training_line() -> None:
    """What the class's queue is doing now, redrawn on its own: a run another student starts appears, and the line
    goes when the last run ends, with no rerun of the page (which would wipe a drawing on the Sketch Pad)."""
    active = get_queue().active()
    if not active:
        return
    running = [j for j in active if j.state == "running"]
    st.caption("**Training now:**")
    for j in running:
        st.caption(f"· {j.config.title} ({whose(j)}) — {status(j)}")
    if waiting := len(active) - len(running):
        starts = duration_text(active[len(running)].eta_start - time.time())
        st.caption(f"· and {waiting} more waiting; the next starts in about {starts}")


# ---------------------------------------------------------------- pointing to where a model is trained

TRAIN_PAGES = {"linear": "pages/2_Linear_3_vs_7.py", "mlp": "pages/3_MLP.py", "cnn": "pages/4_CNN.py"}


def link(path: str, label: str, icon: str = "") -> None:
    """st.page_link; a page run on its own (no navigation, as under AppTest) names the page instead."""
    from streamlit.errors import StreamlitAPIException

    try:
        st.page_link(path, label=label, icon=icon or None)
    except StreamlitAPIException:
        st.markdown(f"- {icon} {label}")


def train_links(kinds: tuple[str, ...] = ("linear", "mlp", "cnn")) -> None:
    """A link to each stage page that trains these kinds of model."""
    wanted = [TRAIN_PAGES[k] for k in kinds if k in TRAIN_PAGES]
    for path, title, icon, _ in existing_stages():
        if path in wanted:
            link(path, f"Train one on the {title} page", icon)
