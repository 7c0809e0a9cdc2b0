"""A convolution's arithmetic on the CNN page: one number of one feature map, worked out from the model's weights.

Pick a convolution, a map and a position; the section shows the input patch under the kernel, the kernel, their
products, the sum plus the bias (the convolution's number), then the layer's later steps (BatchNorm when the
model has it, ReLU, the 2x2 max-pool that keeps or drops it). For an input of many channels, each channel's
3x3 sum and the channels that pushed hardest, and the nine products of the largest of them.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from .. import viz
from ..conv_arithmetic import ConvArithmetic, explain_position, map_shapes, strongest_position
from ..models import TrainConfig
from .frame import chart, show_code

STILL = {"displayModeBar": False}  # a 3x3 grid of numbers: nothing to zoom, and the toolbar would cover its title


def conv_arithmetic(model: torch.nn.Module, config: TrainConfig, image: torch.Tensor, key: str = "conv") -> None:
    """The section: pick a position, see its number made step by step."""
    st.subheader("One number of a feature map, worked out")
    st.markdown("Every number in the feature maps above is made the same way: lay a 3x3 kernel over a 3x3 patch "
                "of the input, multiply number by number, add the products up and add the bias. Pick one and "
                "follow it through the rest of its block.")
    shapes = map_shapes(model)
    c1, c2, c3, c4 = st.columns(4)
    conv = c1.selectbox("Convolution", list(range(1, len(shapes) + 1)), key=f"{key}_layer",
                        format_func=lambda i: f"conv {i}: {shapes[i - 1][0]} maps of "
                                              f"{shapes[i - 1][1]}x{shapes[i - 1][2]}",
                        help="The first reads the image; each one after it reads all the maps the one before made.")
    maps, height, width = shapes[conv - 1]
    channel = c2.number_input("Map", 0, maps - 1, 0, key=f"{key}_{conv}_map",
                              help="Which output map (each has its own kernel).")
    start = strongest_position(model, config, image, conv, 0)  # where it opens: map 0's strongest spot
    row = c3.number_input("Row", 0, height - 1, start[0], key=f"{key}_{conv}_row",
                          help="It opens where map 0 is strongest for this image.")
    col = c4.number_input("Column", 0, width - 1, start[1], key=f"{key}_{conv}_col")
    found = explain_position(model, config, image, conv, int(channel), int(row), int(col))
    the_products(found, key)
    the_sum(found)
    the_steps(found, key)
    show_code(explain_position, ConvArithmetic, title="The arithmetic's code")


def the_products(found: ConvArithmetic, key: str) -> None:
    """The patch, the kernel and their products; for many input channels, each channel's share first."""
    n_in, shown = found.patch.shape[0], 0
    if n_in > 1:
        sums = found.channel_sums
        top = found.largest(5)
        left, right = st.columns([3, 2])
        shares = viz.activation_bars(sums, f"Each of the {n_in} input channels' share: its 3x3 sum of products",
                                     highlight=[c for c, _ in top], height=280)
        shares.update_layout(xaxis_title="input channel", yaxis_title="sum of its 9 products")
        chart(left, shares, key=f"{key}_shares")
        right.dataframe(pd.DataFrame([{"input channel": c, "sum of its 9 products": v} for c, v in top]),
                        hide_index=True, column_config={"sum of its 9 products": st.column_config.NumberColumn(
                            format="%.4f")})
        right.caption("The five channels that pushed hardest, either way. Below: the nine products of the first.")
        shown = top[0][0]
    where = f" (input channel {shown})" if n_in > 1 else ""
    cols = st.columns(3)
    chart(cols[0], viz.number_grid(found.patch[shown], f"The input patch{where}"), key=f"{key}_patch", config=STILL)
    chart(cols[1], viz.number_grid(found.kernel[shown], f"The kernel{where}"), key=f"{key}_kernel", config=STILL)
    chart(cols[2], viz.number_grid(found.products[shown], f"Patch x kernel{where}"), key=f"{key}_products", config=STILL)


def the_sum(found: ConvArithmetic) -> None:
    products = float(found.products.sum())
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Sum of the {found.products.numel()} products", f"{products:.4f}")
    c2.metric("Bias", f"{found.bias:.4f}", help="0 when BatchNorm follows: the convolution then has no bias.")
    c3.metric("The convolution's number", f"{found.total:.4f}",
              help=f"Sum plus bias: map {found.channel}, row {found.row}, column {found.col} of conv {found.conv}.")


def the_steps(found: ConvArithmetic, key: str) -> None:
    """The block's later steps in this model's order: BatchNorm (if any), ReLU, the 2x2 max-pool that keeps or
    drops it."""
    st.markdown("Then, in this model's order: convolution → " + " → ".join(s.name for s in found.steps))
    cols = st.columns(len(found.steps))
    for n, (col, step) in enumerate(zip(cols, found.steps), start=1):
        if step.name == "max-pool" and step.after != step.after:  # NaN: in no window
            col.metric(f"{n}. After the max-pool", "dropped")
        else:
            col.metric(f"{n}. After {step.name}", f"{step.after:.4f}")
        col.caption(step.note)
    if found.pool_window is not None:
        _, mid, _ = st.columns([1, 1, 1])
        chart(mid, viz.number_grid(found.pool_window, "The max-pool's 2x2 window", height=220, fmt=".3f"),
              key=f"{key}_pool", config=STILL)
    verdict = ("kept: it reaches the next layer" if found.pool_kept else
               "dropped: another number of its window is larger, so the next layer never sees this one")
    st.caption(f"This number is {verdict}.")
