"""Plotly figure builders the pages share (the Evaluate page's own are in viz_evaluate). Plain data in, a figure out; no streamlit here."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

DIGIT_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]
GREYS = "Greys"  # MNIST's own look on a light page: ink dark, paper white


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=float)


def _square(fig: go.Figure, size: int | None = None) -> go.Figure:
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showticklabels=False)
    fig.update_xaxes(constrain="domain", showticklabels=False)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    if size:
        fig.update_layout(width=size, height=size)
    return fig


def image_heatmap(
    img, title: str = "", show_values: bool = False, colorscale: str = GREYS, zmin=0, zmax=255, height: int = 520
) -> go.Figure:
    """One 28x28 image as a heatmap; hover (or ``show_values``) gives each pixel's value."""
    z = _np(img)
    fig = go.Figure(
        go.Heatmap(
            z=z, colorscale=colorscale, zmin=zmin, zmax=zmax,
            text=np.round(z).astype(int) if show_values else None,
            texttemplate="%{text}" if show_values else None,
            textfont={"size": 8},
            hovertemplate="row %{y}, column %{x}: %{z:.0f}<extra></extra>",
            colorbar=dict(thickness=12),
        )
    )
    fig.update_layout(title=title, height=height)
    return _square(fig)


def diverging_heatmap(w, title: str = "", height: int = 360) -> go.Figure:
    """Weights as an image: red pulls towards the answer, blue away, white is zero."""
    z = _np(w)
    lim = float(np.abs(z).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(z=z, colorscale="RdBu_r", zmid=0, zmin=-lim, zmax=lim,
                   hovertemplate="row %{y}, column %{x}: %{z:.3f}<extra></extra>", colorbar=dict(thickness=12))
    )
    fig.update_layout(title=title, height=height)
    return _square(fig)


def image_grid(images, titles: list[str] | None = None, cols: int = 10, diverging: bool = False,
               height_per_row: int = 90, zmax: float | None = None) -> go.Figure:
    """Many small images in a grid (samples, averages, weight rows, feature maps)."""
    imgs = _np(images)
    n = len(imgs)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.04 if titles else 0.01)
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        if diverging:
            lim = float(np.abs(im).max()) or 1.0
            trace = go.Heatmap(z=im, colorscale="RdBu_r", zmid=0, zmin=-lim, zmax=lim, showscale=False,
                               hovertemplate="%{z:.3f}<extra></extra>")
        else:
            trace = go.Heatmap(z=im, colorscale=GREYS, zmin=0, zmax=zmax if zmax is not None else float(imgs.max()) or 1,
                               showscale=False, hovertemplate="%{z:.0f}<extra></extra>")
        fig.add_trace(trace, row=r + 1, col=c + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x", constrain="domain")
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_layout(height=rows * height_per_row + 40, margin=dict(l=5, r=5, t=30, b=5))
    if titles:
        fig.update_annotations(font_size=11)
    return fig


def class_counts(train_counts: list[int], test_counts: list[int] | None = None, names: tuple[str, ...] = ("train", "test"),
                 height: int = 380) -> go.Figure:
    """Images per digit, one bar series per list (the training and test sets, or the class's own drawings)."""
    digits = [str(d) for d in range(10)]
    series = [c for c in (train_counts, test_counts) if c is not None]
    fig = go.Figure([go.Bar(name=name, x=digits, y=c, text=c, textposition="outside") for name, c in zip(names, series)])
    fig.update_layout(barmode="group", xaxis_title="digit", yaxis_title="images", height=height, xaxis_type="category",
                      margin=dict(t=30, b=40), legend=dict(orientation="h", y=1.1), showlegend=len(series) > 1)
    fig.update_yaxes(rangemode="nonnegative")  # counts: never a negative axis, even when every bar is 0
    return fig


def pixel_histogram(counts, log: bool = True) -> go.Figure:
    c = _np(counts)
    fig = go.Figure(go.Bar(x=np.arange(256), y=c, marker_color="#444"))
    fig.update_layout(xaxis_title="pixel value (0 = paper, 255 = ink)", yaxis_title="pixels", height=340,
                      margin=dict(t=30, b=40), bargap=0)
    if log:
        fig.update_yaxes(type="log")
    return fig


def vector_strip(vec, title: str = "") -> go.Figure:
    """A 784-long vector as one long strip: the image as the model sees it."""
    v = _np(vec).reshape(1, -1)
    fig = go.Figure(go.Heatmap(z=v, colorscale=GREYS, showscale=False,
                               hovertemplate="position %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=title, height=140, margin=dict(l=10, r=10, t=40, b=30), xaxis_title="position 0..783")
    return fig


def probability_bars(probs, labels: list[str] | None = None, title: str = "", height: int = 300) -> go.Figure:
    """The seed's classify view: one bar per class, the winner highlighted."""
    p = _np(probs).reshape(-1)
    labels = labels or [str(i) for i in range(len(p))]
    best = int(p.argmax()) if len(p) else -1
    colors = ["#d62728" if i == best else "#7f7f7f" for i in range(len(p))]
    # Room right of a full bar for its whole label ("100.0%"), drawn outside the axis rather than clipped.
    fig = go.Figure(go.Bar(x=p, y=labels, orientation="h", marker_color=colors, cliponaxis=False,
                           text=[f"{v:.1%}" for v in p], textposition="outside"))
    fig.update_layout(title=title, xaxis=dict(range=[0, 1.32], tickvals=[0, 0.5, 1], tickformat=".0%"), height=height,
                      yaxis=dict(autorange="reversed", type="category"), margin=dict(l=10, r=10, t=40, b=10))
    return fig


def loss_curve(snap) -> go.Figure:
    """Training loss per batch, and the epochs' test loss, against epochs. A run that continues a stored model shows
    the epochs it trains (and the one before), not the parent's whole history squeezing its batches into a sliver."""
    fig = go.Figure()
    first = max(0, len(snap.history) - snap.config.epochs)  # the epochs it continued from; 0 for a fresh run
    if snap.batch_losses:
        x, y = zip(*snap.batch_losses)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="train loss (batch)", line=dict(width=1)))
    if history := [h for h in snap.history if h["epoch"] >= first]:
        fig.add_trace(go.Scatter(x=[h["epoch"] for h in history], y=[h["test_loss"] for h in history],
                                 mode="lines+markers", name="test loss"))
    fig.update_layout(title="Loss", xaxis_title="epoch", height=320, margin=dict(t=40, b=40),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def accuracy_curve(history, name: str = "", batch_accuracies=(), epochs: int = 0) -> go.Figure:
    """Train and test accuracy per epoch; while an epoch runs, each batch's training accuracy too."""
    fig = go.Figure()
    if batch_accuracies:
        x, y = zip(*batch_accuracies)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="train accuracy (batch)", line=dict(width=1),
                                 opacity=0.6))
    if history:
        ep = [h["epoch"] for h in history]
        fig.add_trace(go.Scatter(x=ep, y=[h["train_accuracy"] for h in history], mode="lines+markers",
                                 name=f"{name} train".strip()))
        fig.add_trace(go.Scatter(x=ep, y=[h["test_accuracy"] for h in history], mode="lines+markers",
                                 name=f"{name} test".strip()))
    fig.update_layout(title="Accuracy", xaxis_title="epoch", yaxis_tickformat=".1%", height=320,
                      margin=dict(t=40, b=40), legend=dict(orientation="h", y=-0.3))
    # accuracy lives in 0..100%: never let autoscale stretch it past either end
    _accuracy_axis(fig, [v for _, v in batch_accuracies]
                   + [h[k] for h in history for k in ("train_accuracy", "test_accuracy")], top=1.0)
    if not history and epochs:
        fig.update_xaxes(range=[0, epochs])
        fig.add_annotation(text="test accuracy: after each epoch", xref="paper", yref="paper", x=1, y=0,
                           xanchor="right", yanchor="bottom", showarrow=False, font=dict(size=11, color="grey"))
    return fig


def runs_overlay(runs: dict[str, list[dict]], metric: str = "test_accuracy") -> go.Figure:
    """Several runs' curves on one chart, to compare settings. A run that continues an earlier one ("one more
    epoch": its history starts with the other's) is drawn only from where it branched off, dashed, so it does
    not hide its parent."""
    fig = go.Figure()
    for name, history in runs.items():
        start = branch_point(history, [h for other, h in runs.items() if other != name])
        shown = history[max(0, start - 1):]  # from the parent's last epoch, so the segment joins its line
        if shown:
            fig.add_trace(go.Scatter(x=[h["epoch"] for h in shown], y=[h[metric] for h in shown],
                                     mode="lines+markers", name=name,
                                     line=dict(dash="dash") if start else None))
    fig.update_layout(title=metric.replace("_", " "), xaxis_title="epoch", height=360, margin=dict(t=40, b=40),
                      yaxis_tickformat=".1%" if "accuracy" in metric else None)
    if "accuracy" in metric:  # a single run is a single point: plotly would stretch the axis past 100%
        _accuracy_axis(fig, [h.get(metric) for history in runs.values() for h in history])
    return fig


def branch_point(history: list[dict], others: list[list[dict]]) -> int:
    """How many first epochs ``history`` shares with the longest shorter run it continues (0: its own run)."""
    def same(a: list[dict], b: list[dict]) -> bool:
        return [(h["epoch"], h.get("test_accuracy"), h.get("train_loss")) for h in a] == \
            [(h["epoch"], h.get("test_accuracy"), h.get("train_loss")) for h in b]

    shared = [len(o) for o in others if 0 < len(o) < len(history) and same(history[: len(o)], list(o))]
    return max(shared, default=0)


def _accuracy_axis(fig: go.Figure, values, top: float | None = None) -> None:
    """Keep an accuracy axis inside 0..100% around ``values`` (ending at ``top`` when given)."""
    values = [v for v in values if isinstance(v, int | float) and v == v]
    if values:
        lo, hi = min(values), max(values)
        pad = max(0.005, (hi - lo) * 0.1)
        fig.update_yaxes(range=[max(0.0, lo - pad), top if top is not None else min(1.0, hi + pad)])


# ---------------------------------------------------------------- tiles (the Evaluate page's figures: viz_evaluate)


def tiled_images(tiled, title: str = "", height: int | None = None, zmax: float | None = None) -> go.Figure:
    """A sheet of tiled digits (``explore.tile``) as ONE heatmap: fast to draw where 60 subplots are not. Sent as
    0-255 greys, one byte a pixel: as float64 the 60-image sheet was 555 KiB of every rerun of every student."""
    z = np.clip(np.rint(_np(tiled)), 0, 255).astype(np.uint8)
    fig = go.Figure(go.Heatmap(z=z, colorscale=GREYS, zmin=0, zmax=zmax if zmax is not None else float(z.max()) or 1,
                               showscale=False, hoverinfo="skip"))
    fig.update_layout(title=title, height=height or int(80 + 700 * z.shape[0] / max(z.shape[1], 1)))
    fig = _square(fig)
    fig.update_xaxes(ticks="", showgrid=False, zeroline=False)
    fig.update_yaxes(ticks="", showgrid=False, zeroline=False)
    return fig


# ---------------------------------------------------------------- what the weights look for (CNN and Features pages)

GAP_COLOR = "#e8e8e8"  # between tiles, so an all-white map still shows as a square


# The room a map sheet keeps above each tile for its label, in screen px at the sheet's ``width``: a 10 px line; on a
# projector (presenter mode) ui.chart writes labels at 20 px, a 27 px line it lifts 6 px, so a gap needs 40. A
# sheet drawn wider than ``width`` has larger cells and more room: ``width`` is the least the sheet gets.
LABEL_ROOM_PX, PRESENTER_LABEL_ROOM_PX = 15, 40


def map_sheet(maps, title: str, cols: int = 8, diverging: bool = True, shared_scale: bool = False,
              labels: list[str] | None = None, width: int = 950, height: int | None = None, gap: int = 1,
              value_name: str = "value", max_tile: int = 160, pickable: bool = False,
              picked: tuple[int, int, int] | None = None, label_room: int = LABEL_ROOM_PX) -> go.Figure:
    """Many small maps (weight rows, filters, feature maps) as ONE heatmap with grey gaps: quick where 64 subplots
    are not. Each map is scaled to its own largest |value| so its pattern shows, or all share one scale
    (``shared_scale``) so strengths compare. Diverging maps are centred on zero: red positive, blue negative.
    Hover names the map and the row and column inside it. ``pickable``: an invisible marker on every number, so a
    click selects it (heatmaps themselves are not selectable; customdata [map, row, column, value]); ``picked``
    (map, row, column) is outlined. ``label_room``: the px kept above each tile for its label at ``width``
    (PRESENTER_LABEL_ROOM_PX for presenter mode's larger labels).
    """
    m = _np(maps)
    if m.ndim == 2:
        m = m[None]
    n, h, w = m.shape
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    step_x = w + gap
    total_x = cols * step_x - gap
    px = min((width - 90) / total_x, max_tile / max(h, w))  # screen pixels per cell: fill ``width``, tiles capped
    top = max(gap, int(np.ceil(label_room / px))) if labels else 0  # rows of cells above each tile for its label
    step_y = h + (top if labels else gap)
    total_y = rows * step_y - (0 if labels else gap)
    z = np.full((total_y, total_x), np.nan, dtype=np.float32)
    raw = np.full((total_y, total_x), np.nan, dtype=np.float32)
    which = np.full((total_y, total_x), np.nan, dtype=np.float32)
    inside_r = np.full((total_y, total_x), np.nan, dtype=np.float32)  # the row and column inside the map
    inside_c = np.full((total_y, total_x), np.nan, dtype=np.float32)
    if shared_scale:
        lim = np.full(n, float(np.abs(m).max()) or 1.0)
    else:
        lim = np.abs(m).reshape(n, -1).max(axis=1)
        lim[lim == 0] = 1.0
    for i in range(n):
        r, c = divmod(i, cols)
        y0, x0 = r * step_y + top, c * step_x
        z[y0:y0 + h, x0:x0 + w] = m[i] / lim[i]
        raw[y0:y0 + h, x0:x0 + w] = m[i]
        which[y0:y0 + h, x0:x0 + w] = i
        inside_r[y0:y0 + h, x0:x0 + w] = np.arange(h)[:, None]
        inside_c[y0:y0 + h, x0:x0 + w] = np.arange(w)[None, :]
    if diverging:
        colorscale, zmin = "RdBu_r", -1.0
    else:
        colorscale, zmin = GREYS, 0.0
    if height is None:
        height = int(min(1400, max(160, total_y * px + 60)))
    scale_txt = value_name if shared_scale else "per map"
    lim_all = float(lim.max())
    colorbar = dict(thickness=10, len=min(1.0, max(0.3, 260 / height)), title=dict(text=scale_txt, side="right"),
                    tickvals=[zmin, 0, 1] if diverging else [0, 1],
                    ticktext=([f"{-lim_all:.2g}", "0", f"{lim_all:.2g}"] if diverging else ["0", f"{lim_all:.2g}"])
                    if shared_scale else (["−max", "0", "+max"] if diverging else ["0", "max"]))
    names = labels or [str(i) for i in range(n)]
    custom = np.stack([which, inside_r, inside_c, raw], axis=-1)
    hover = ("map %{customdata[0]}<br>row %{customdata[1]}, column %{customdata[2]}<br>" + value_name
             + " %{customdata[3]:.3f}<extra></extra>")
    fig = go.Figure(go.Heatmap(  # pickable: the markers hover, so the heatmap sends no numbers of its own twice
        z=z, colorscale=colorscale, zmin=zmin, zmax=1.0, zmid=0 if diverging else None,
        customdata=None if pickable else custom, hovertemplate=None if pickable else hover, colorbar=colorbar,
        hoverongaps=False, hoverinfo="skip" if pickable else None,
    ))
    if pickable:
        ys, xs = (a.astype(np.int16) for a in np.nonzero(~np.isnan(which)))  # a quarter of int64's bytes per click
        # Each marker's place as small integers and its value as the marker's colour (invisible at this opacity):
        # a third of the bytes of one float32 [map, row, column, value] row, sent again on every rerun (issue 28).
        place = custom[ys, xs, :3]
        place = place.astype(np.uint8 if place.max(initial=0) < 256 else np.uint16)
        fig.add_trace(go.Scattergl(
            x=xs, y=ys, mode="markers", customdata=place, showlegend=False,
            hovertemplate=hover.replace("%{customdata[3]:.3f}", "%{marker.color:.3f}"),
            marker=dict(symbol="square", size=max(3.0, px * 0.95), opacity=0.01, color=raw[ys, xs]),
            selected=dict(marker=dict(opacity=0.01)), unselected=dict(marker=dict(opacity=0.01)),
        ))
        fig.update_layout(clickmode="event+select", dragmode=False)
    if picked is not None and 0 <= picked[0] < n:
        r, c = divmod(picked[0], cols)
        y, x = r * step_y + top + picked[1], c * step_x + picked[2]
        fig.add_shape(type="rect", x0=x - 0.5, x1=x + 0.5, y0=y - 0.5, y1=y + 0.5, line=dict(color="#00c853", width=3))
        fig.add_shape(type="rect", x0=c * step_x - 0.5, x1=c * step_x + w - 0.5, y0=r * step_y + top - 0.5,
                      y1=r * step_y + top + h - 0.5, line=dict(color="#00c853", width=1.5))
    # The labels in one layout update: add_annotation one at a time validated the whole list again each time
    # (most of the CNN page's rerun, issue 28).
    notes = [dict(x=(i % cols) * step_x + (w - 1) / 2, y=(i // cols) * step_y + top - 0.6, text=text, showarrow=False,
                  yanchor="bottom", font=dict(size=10), xref="x", yref="y") for i, text in enumerate(names[:n])]
    fig.update_layout(title=title, height=height, plot_bgcolor=GAP_COLOR, margin=dict(l=5, r=5, t=40, b=5),
                      annotations=notes if labels else None)
    fig.update_xaxes(showgrid=False, zeroline=False, ticks="", range=[-0.5, total_x - 0.5])
    fig.update_yaxes(showgrid=False, zeroline=False, ticks="", range=[total_y - 0.5, -0.5])
    return _square(fig)


def unit_norm_bars(norms, order, title: str, chosen: int | None = None, height: int = 260) -> go.Figure:
    """Each unit's weight norm, in display order; the enlarged unit highlighted."""
    v, o = _np(norms), [int(i) for i in _np(order)]
    colors = ["#d62728" if i == chosen else "#7f7f7f" for i in o]
    fig = go.Figure(go.Bar(x=[f"u{i}" for i in o], y=v[o], marker_color=colors,
                           hovertemplate="unit %{x}: norm %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=height, xaxis=dict(type="category", title="unit", showticklabels=len(o) <= 64),
                      yaxis_title="weight norm", margin=dict(l=10, r=10, t=40, b=40), bargap=0.1)
    return fig


def activation_bars(values, title: str, highlight=None, height: int = 260) -> go.Figure:
    """One layer's activations for one image: a bar per unit, the units that fire most in red."""
    v = _np(values).reshape(-1)
    hi = {int(i) for i in _np(highlight)} if highlight is not None else set()
    colors = ["#d62728" if i in hi else "#7f7f7f" for i in range(len(v))]
    fig = go.Figure(go.Bar(x=list(range(len(v))), y=v, marker_color=colors,
                           hovertemplate="unit %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=height, xaxis_title="unit", yaxis_title="activation",
                      margin=dict(l=10, r=10, t=40, b=40), bargap=0.1 if len(v) > 12 else 0.5)
    if len(v) <= 12:
        fig.update_xaxes(type="category")
    return fig


def heat_map(z, title: str, colorscale: str = "Reds", height: int = 300, value_name: str = "value") -> go.Figure:
    """A 28x28 map of non-negative importance (saliency), from 0 to its largest value."""
    a = _np(z)
    fig = go.Figure(go.Heatmap(z=a, colorscale=colorscale, zmin=0, zmax=float(a.max()) or 1.0,
                               hovertemplate="row %{y}, column %{x}: " + value_name + " %{z:.3g}<extra></extra>",
                               colorbar=dict(thickness=10)))
    fig.update_layout(title=title, height=height)
    return _square(fig)


def heat_overlay(image, heat, title: str, height: int = 300) -> go.Figure:
    """A heat map (0..1, e.g. Grad-CAM) laid over the digit in grey: where the model looked."""
    img, h = _np(image), _np(heat)
    fig = go.Figure([
        go.Heatmap(z=img, colorscale=GREYS, zmin=0, zmax=float(img.max()) or 1.0, showscale=False, hoverinfo="skip",
                   opacity=0.55),
        go.Heatmap(z=h, zmin=0, zmax=1, colorbar=dict(thickness=10),
                   colorscale=[[0, "rgba(255,230,0,0)"], [0.3, "rgba(255,210,0,0.1)"], [0.65, "rgba(253,141,60,0.55)"],
                               [1, "rgba(215,25,28,0.9)"]],
                   hovertemplate="row %{y}, column %{x}: %{z:.2f}<extra></extra>"),
    ])
    fig.update_layout(title=title, height=height)
    return _square(fig)


KIND_SYMBOLS = {"linear": "diamond", "MLP": "circle", "CNN": "square"}


def point_labels(rows: list[dict]) -> dict[int, str]:
    """Each model's label on a chart (by id() of its row): its preset, and where two share one, what tells them apart
    (learning rate, batch size, epochs; else when each was trained), so no two points read the same."""
    out = {}
    for r in rows:
        same = [o for o in rows if o["preset"] == r["preset"]]
        if len(same) == 1:
            out[id(r)] = r["preset"]
            continue
        differ = [(c, short) for c, short in (("learning rate", "lr"), ("batch size", "batch"), ("epochs", "epochs"))
                  if len({o.get(c) for o in same}) > 1]
        extra = ", ".join(f"{short} {r.get(c):g}" for c, short in differ)
        if not extra or sum(all(o.get(c) == r.get(c) for c, _ in differ) for o in same) > 1:
            extra = ", ".join(filter(None, [extra, str(r.get("trained", ""))]))
        out[id(r)] = f"{r['preset']} ({extra})"
    twins = [r for r in rows if list(out.values()).count(out[id(r)]) > 1]  # same settings, trained the same minute
    for r in twins:
        out[id(r)] += f" {str(r.get('id', ''))[:6]}"  # the stored model's id tells them apart
    return out


def models_scatter(rows: list[dict], x: str, title: str, log_x: bool = False, height: int = 360) -> go.Figure:
    """Trained models as points: test accuracy against ``x`` (parameters, training time), one colour per kind."""
    fig, labels = go.Figure(), point_labels(rows)
    for k, kind in enumerate(["linear", "MLP", "CNN"]):
        pts = [r for r in rows if r["kind"] == kind]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[r[x] for r in pts], y=[r["test accuracy"] for r in pts], mode="markers+text", name=kind,
            text=[labels[id(r)] for r in pts], textposition="top center", textfont=dict(size=10),
            cliponaxis=False,
            marker=dict(size=12, symbol=KIND_SYMBOLS[kind], color=DIGIT_COLORS[k], line=dict(width=1, color="black")),
            customdata=[[r["model"], r["preset"]] for r in pts],
            hovertemplate="%{customdata[0]} (%{customdata[1]})<br>" + x + " %{x:,}<br>accuracy %{y:.2%}<extra></extra>",
        ))
    accs = [r["test accuracy"] for r in rows if r["test accuracy"] == r["test accuracy"]]
    pad = max(0.005, (max(accs) - min(accs)) * 0.15) if accs else 0.01
    fig.update_layout(title=title, xaxis_title=x, yaxis_title="test accuracy", yaxis_tickformat=".1%", height=height,
                      margin=dict(t=40, b=40, l=10, r=20), legend=dict(orientation="h", y=-0.25),
                      yaxis_range=[min(accs) - pad, min(1.0, max(accs) + 2 * pad)] if accs else None)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def lr_finder_curve(lrs, losses, suggestion: float, steepest: float, title: str = "The learning-rate finder",
                    height: int = 360, preset_lr: float | None = None, y_range: tuple[float, float] | None = None,
                    suggestion_name: str = "suggested (valley)") -> go.Figure:
    """The smoothed loss against the learning rate on a log axis, the suggestion and the steepest fall marked on the
    curve, the preset's own rate as a dashed line beside them. ``y_range`` (the curve's bottom to its starting
    level, from lr_find) keeps the blow-up at the end from squashing the fall into a flat line."""
    fig = go.Figure(go.Scatter(x=list(lrs), y=list(losses), mode="lines", name="smoothed loss",
                               hovertemplate="learning rate %{x:.2g}<br>loss %{y:.3f}<extra></extra>"))
    for lr, name, symbol, color in ((suggestion, suggestion_name, "star", "#d62728"),
                                    (steepest, "steepest fall", "triangle-down", "#2ca02c")):
        i = min(range(len(lrs)), key=lambda j: abs(np.log(lrs[j]) - np.log(lr)))
        fig.add_trace(go.Scatter(x=[lrs[i]], y=[losses[i]], mode="markers+text", name=name, text=[f"{lr:.2g}"],
                                 textposition="top center", marker=dict(symbol=symbol, size=14, color=color)))
    if preset_lr:  # a dashed upright line from the curve's bottom to its top
        top = y_range or (min(losses), max(losses))
        fig.add_trace(go.Scatter(x=[preset_lr, preset_lr], y=list(top), mode="lines+text", name="the preset's own rate",
                                 text=["", f"the preset's {preset_lr:g}"], textposition="top right",
                                 line=dict(color="#7f7f7f", dash="dash", width=2),
                                 hovertemplate="the preset's own rate %{x:.2g}<extra></extra>"))
    fig.update_layout(title=title, xaxis_type="log", xaxis_title="learning rate (log scale)",
                      yaxis_title="loss (smoothed)", height=height, margin=dict(t=40, b=40),
                      legend=dict(orientation="h", y=-0.25, yanchor="top"))
    if y_range is not None:
        low, high = y_range
        span = max(high - low, 1e-3)
        fig.update_yaxes(range=[low - 0.15 * span, high + 0.2 * span])  # the blow-up runs off the top
    return fig


def number_grid(values, title: str, height: int = 250, fmt: str = ".2f") -> go.Figure:
    """A small grid of numbers (a 3x3 patch, a kernel, their products), each cell coloured and written out:
    red positive, blue negative, as the filters are drawn."""
    a = _np(values)
    lim = float(np.abs(a).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=a, colorscale="RdBu", reversescale=True, zmin=-lim, zmax=lim, showscale=False,
                               texttemplate="%{z:" + fmt + "}", textfont=dict(size=15),
                               hovertemplate="row %{y}, column %{x}: %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title, height=height)
    return _square(fig)
