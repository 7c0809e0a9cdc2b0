"""The confusion matrix's cell picker on the Evaluate page: a click on the heatmap with a mouse, a tap on a table on a
touch screen.

Plotly takes a clicked point from its last hover, and a tap makes its hover only after its click: on a tablet a tap on
the heatmap selected the cell tapped before. A table's cell selection (st.dataframe, "single-cell") takes the tapped
cell itself, so a touch screen gets the matrix as a table, coloured like the heatmap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from .frame import chart, on_touch_screen

ROW_H, INDEX_W, CELL_W = 36, 58, 34  # px: a finger-sized row; ten columns beside the index fit half a tablet
LIGHT, DARK = np.array([247, 251, 255]), np.array([8, 48, 107])  # the ends of Plotly's "Blues", as the heatmap


def confusion_cells(where, fig, cm, labels: list[str], key: str) -> list[dict]:
    """The matrix (``fig``, or on a touch screen a table of ``cm``) and the cell picked on it, as
    ``[{"y": true name, "x": predicted name}]`` (evaluate.follow_cell's points); [] when none is."""
    if not on_touch_screen():
        right, total = int(np.trace(np.asarray(cm))), int(np.asarray(cm).sum())
        event = chart(where, fig, key=key, on_select="rerun", selection_mode="points", alt=f"Confusion matrix: "
                      f"{right / max(total, 1):.1%} of {total:,} test images on the diagonal (right)")
        return event.selection.points if event and event.selection else []
    counts = pd.DataFrame(np.asarray(cm, dtype=np.int64), index=[f"true {n}" for n in labels], columns=labels)
    where.caption("Tap a cell: its images show beside. Rows: the true label; columns: what the model said.")
    widths = {"_index": st.column_config.Column(width=INDEX_W)} | {
        n: st.column_config.NumberColumn(width=CELL_W) for n in labels}
    event = where.dataframe(counts.style.apply(_shades, axis=None), key=f"{key}_cells", on_select="rerun",
                            selection_mode="single-cell", row_height=ROW_H, column_config=widths)
    cells = event.selection.cells if event and event.selection else []
    return [{"y": labels[row], "x": str(column)} for row, column in cells]


def _shades(counts: pd.DataFrame) -> pd.DataFrame:
    """Each cell's colours on the heatmap's log scale: the rare mistakes show beside the diagonal."""
    level = np.log10(1 + counts.to_numpy(dtype=float))
    level = level / max(level.max(), 1e-9)
    rgb = (LIGHT + (DARK - LIGHT) * level[..., None]).astype(int)
    css = [[f"background-color: rgb({r}, {g}, {b}); color: {'white' if v > 0.55 else 'black'}"
            for (r, g, b), v in zip(row, vs)] for row, vs in zip(rgb, level)]
    return pd.DataFrame(css, index=counts.index, columns=counts.columns)
