"""The Evaluate page's Plotly figures: the confusion matrix, coverage against accuracy, the reliability diagram,
robustness curves and the map of what a layer sees. Plain data in, a figure out; no streamlit here. The shared
builders (images, heatmaps, curves) and colours are in ``digitlab.viz``."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .viz import DIGIT_COLORS, _np


def confusion_heatmap(cm, class_names, title: str = "", height: int = 520) -> go.Figure:
    """Counts of [true, predicted]; colour on a log scale so the rare mistakes show beside the diagonal.

    An invisible marker sits on every cell, so a click selects the cell (heatmaps themselves are not selectable).
    """
    z = _np(cm)
    n = len(class_names)
    names = [str(c) for c in class_names]
    fig = go.Figure(
        go.Heatmap(
            z=np.log10(1 + z), x=names, y=names, text=z.astype(int), texttemplate="%{text}",
            colorscale="Blues", showscale=False, hoverinfo="skip",
        )
    )
    xs, ys, counts = [], [], []
    for t in range(n):
        for p in range(n):
            xs.append(names[p])
            ys.append(names[t])
            counts.append(int(z[t, p]))
    fig.add_trace(
        go.Scatter(
            x=xs, y=ys, mode="markers", marker=dict(size=max(12, 360 // max(1, n)), opacity=0.01, symbol="square"),
            customdata=np.array(counts), showlegend=False,
            hovertemplate="true %{y}, predicted %{x}: %{customdata} images<extra>click to see them</extra>",
        )
    )
    fig.update_xaxes(title="predicted", type="category", side="top", showgrid=False, zeroline=False)
    fig.update_yaxes(title="true label", type="category", autorange="reversed", scaleanchor="x", showgrid=False,
                     zeroline=False)
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=90 if title else 50, b=10),
                      clickmode="event+select", dragmode=False)
    return fig


def coverage_accuracy(curves: dict, marks: dict | None = None) -> go.Figure:
    """For each model: answer only above a confidence threshold; how much is answered, and how well."""
    fig = go.Figure()
    for i, (name, points) in enumerate(curves.items()):
        color = DIGIT_COLORS[i % len(DIGIT_COLORS)]
        fig.add_trace(go.Scatter(
            x=[c.coverage for c in points], y=[c.accuracy for c in points], mode="lines+markers", name=name,
            line=dict(color=color), marker=dict(size=4), customdata=[c.threshold for c in points],
            hovertemplate="threshold %{customdata:.3f}<br>answers %{x:.1%} of the test set<br>accuracy %{y:.2%}"
                          "<extra></extra>",
        ))
        mark = (marks or {}).get(name)
        if mark is not None and mark.answered:
            fig.add_trace(go.Scatter(
                x=[mark.coverage], y=[mark.accuracy], mode="markers", showlegend=False,
                marker=dict(size=14, color=color, symbol="star", line=dict(width=1, color="black")),
                hovertemplate=f"threshold {mark.threshold:.2f}: " + "%{x:.1%} answered, %{y:.2%} right<extra></extra>",
            ))
    fig.update_layout(xaxis_title="coverage (share of test images answered)", yaxis_title="accuracy on those",
                      xaxis_tickformat=".0%", yaxis_tickformat=".1%", height=380, margin=dict(t=30, b=40),
                      legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(autorange="reversed")
    return fig


def reliability_diagram(before: dict, after: dict) -> go.Figure:
    """Confidence against how often the answers were right, per model: as trained, and after temperature
    scaling. On the diagonal a model is calibrated; below it, overconfident; above it, underconfident."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("As trained", "After temperature scaling"),
                        horizontal_spacing=0.08)
    for col, results in ((1, before), (2, after)):
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dot"),
                                 name="calibrated", showlegend=col == 1), row=1, col=col)
        for i, (name, r) in enumerate(results.items()):
            fig.add_trace(go.Scatter(x=r.confidence, y=r.accuracy, mode="lines+markers", name=name,
                                     legendgroup=str(i), showlegend=col == 1, line=dict(color=DIGIT_COLORS[i % 10]),
                                     customdata=r.counts, hovertemplate="sure %{x:.1%}, right %{y:.1%}, "
                                     "%{customdata} answers<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="confidence (top probability)", tickformat=".0%", range=[0, 1.02])
    fig.update_yaxes(title_text="share right", tickformat=".0%", range=[0, 1.02])
    fig.update_layout(title="Reliability diagram", height=440, margin=dict(t=60, b=40),
                      legend=dict(orientation="h", y=-0.2, yanchor="top"))
    return fig


def robustness_curves(results: dict, axis_titles: dict[str, str]) -> go.Figure:
    """One panel per perturbation; one line per model: accuracy as the images get harder."""
    kinds = list(axis_titles)
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=kinds, shared_yaxes=True, horizontal_spacing=0.03)
    for i, (name, curves) in enumerate(results.items()):
        color = DIGIT_COLORS[i % len(DIGIT_COLORS)]
        for k, kind in enumerate(kinds):
            pts = curves.get(kind, [])
            fig.add_trace(go.Scatter(
                x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=name, legendgroup=name,
                showlegend=k == 0, line=dict(color=color),
                hovertemplate=f"{name}<br>{axis_titles[kind]} %{{x:g}}: %{{y:.1%}}<extra></extra>",
            ), row=1, col=k + 1)
            fig.update_xaxes(title_text=axis_titles[kind], title_font_size=11, row=1, col=k + 1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(height=360, margin=dict(t=40, b=40), legend=dict(orientation="h", y=-0.35))
    return fig


def embedding_map(coords, targets, class_names, rows=None, predicted=None, title: str = "",
                  height: int = 560) -> go.Figure:
    """Test images as points in 2-D, one colour per true label; hover names the image."""
    xy = np.asarray(coords)
    t = np.asarray(targets)
    rows = np.arange(len(t)) if rows is None else np.asarray(rows)
    pred = np.array([class_names[i] for i in t]) if predicted is None else np.asarray(predicted)
    fig = go.Figure()
    for c, name in enumerate(class_names):
        sel = t == c
        if not sel.any():
            continue
        fig.add_trace(go.Scatter(  # SVG, not WebGL: a click on a point selects it in every browser
            x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=str(name),
            marker=dict(size=5, color=DIGIT_COLORS[int(name) % 10] if str(name).isdecimal() else None, opacity=0.8),
            customdata=np.stack([rows[sel], pred[sel]], axis=1),
            hovertemplate=f"label {name}" + "<br>test image %{customdata[0]}<br>predicted %{customdata[1]}"
                          "<extra></extra>",
        ))
    fig.update_layout(title=title, height=height, margin=dict(t=40, b=10), legend=dict(title="label", itemsizing="constant"),
                      xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False))
    return fig
