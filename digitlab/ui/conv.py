"""A convolution's arithmetic on the CNN page: one number of one feature map, worked out from the model's weights.

The feature maps are drawn here too: hover names a number's map, row and column; a click on a convolution's map
picks that number to work out (outlined on its map). Or pick a convolution, a map and a position in the boxes; a new
map opens on its strongest number over the digit (not a flat patch of paper). The section shows the input patch under the kernel, the kernel, their
products, the sum plus the bias (the convolution's number), then the layer's later steps (BatchNorm when the
model has it, ReLU, the 2x2 max-pool that keeps or drops it). For an input of many channels, each channel's
3x3 sum and the channels that pushed hardest, and the nine products of the largest of them.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st
import torch

from .. import features, viz
from ..conv_arithmetic import ConvArithmetic, explain_position, map_shapes, strongest_map, strongest_position
from ..models import TrainConfig
from .code_box import show_code
from .frame import chart
from .resources import shared_figure

STILL = {"displayModeBar": False}  # a 3x3 grid of numbers: nothing to zoom, and the toolbar would cover its title


def picked(model: torch.nn.Module, config: TrainConfig, image: torch.Tensor, key: str) -> tuple[int, int, int, int]:
    """The number being worked out: (convolution, map, row, column), from the boxes' keys; where nothing was picked
    yet, the convolution's strongest number over the digit."""
    conv = st.session_state.setdefault(f"{key}_layer", 1)
    if f"{key}_{conv}_map" not in st.session_state:  # a visitor's first look: the class's answer, worked out once
        what = ("strongest map", hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
                config.key(), id(model), conv)  # (id: the model as load_model keeps it loaded, once per process)
        _open_map(model, config, image, key, conv, shared_figure(what, strongest_map, model, config, image, conv))
    return (conv, *(int(st.session_state[f"{key}_{conv}_{part}"]) for part in ("map", "row", "col")))


def _open_map(model, config, image, key: str, conv: int, channel: int) -> None:
    st.session_state[f"{key}_{conv}_map"] = channel
    what = ("strongest position", hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
            config.key(), id(model), conv, channel)
    st.session_state[f"{key}_{conv}_row"], st.session_state[f"{key}_{conv}_col"] = shared_figure(
        what, strongest_position, model, config, image, conv, channel)


def _map_changed(model, config, image, key: str, conv: int) -> None:
    """A new map typed in the box: open it on its strongest number over the digit."""
    _open_map(model, config, image, key, conv, int(st.session_state[f"{key}_{conv}_map"]))


def _follow_click(chart_key: str, key: str, conv: int) -> None:
    """A number clicked on convolution ``conv``'s maps becomes the one worked out, once per click (a chart keeps its
    selection across reruns: only a new one moves the boxes)."""
    state = st.session_state.get(chart_key)
    points = (state or {}).get("selection", {}).get("points", []) if isinstance(state, dict) else []
    numbers = [_listed(p.get("customdata")) for p in points]
    numbers = [n for n in numbers if len(n) >= 3]
    if not numbers:
        return
    m, r, c = (int(v) for v in numbers[-1][:3])
    if st.session_state.get(f"{chart_key}_applied") == (m, r, c):
        return
    st.session_state[f"{chart_key}_applied"] = (m, r, c)
    st.session_state[f"{key}_open"] = True  # a click asks for the number: the section below opens on it
    st.session_state[f"{key}_layer"] = conv
    st.session_state[f"{key}_{conv}_map"], st.session_state[f"{key}_{conv}_row"] = m, r
    st.session_state[f"{key}_{conv}_col"] = c


def _listed(customdata) -> list:
    """A selected point's customdata as a list: the browser sends an array row, which may arrive as a list or as a
    mapping from its positions ("0", "1", ...) to the values."""
    if isinstance(customdata, dict):
        return [customdata[k] for k in sorted(customdata, key=lambda k: int(k))]
    return list(customdata) if isinstance(customdata, list | tuple) else []


def model_and_image(model_id: str, image: torch.Tensor) -> tuple[str, str]:
    """What the maps, the arithmetic and their figures depend on, beside the session's picks: the stored model
    and the image (by its pixels). The key under which the class shares them."""
    return model_id, hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def feature_map_sheets(model: torch.nn.Module, config: TrainConfig, image: torch.Tensor, shared: bool,
                       model_id: str, key: str = "conv", chart_prefix: str = "cnn_maps") -> None:
    """The maps after one convolution or pooling for one image, the layer picked above the sheet (one sheet a rerun:
    the four together were most of the page's cost, issue 28); a click on a convolution's map picks the number the
    section below works out, and that number is outlined. The maps and each sheet are worked out once per model,
    image, scale and outlined number, for the whole class (``model_id``: the stored model's id)."""
    what = model_and_image(model_id, image)
    outs = shared_figure(("feature maps", *what), features.feature_maps, model, config, image)
    convs = [o.name for o in outs if o.kind == "Conv2d"]
    names = {o.name: _short_name(o, outs) for o in outs}
    shown = st.segmented_control(
        "Maps after", list(names), format_func=names.get, required=True, key=f"{chart_prefix}_layer",
        default=outs[0].name, help="Each convolution and pooling in the order the image meets them. Step through: "
        "each step makes the maps smaller and more numerous.")
    out = next((o for o in outs if o.name == shown), outs[0])
    conv = convs.index(out.name) + 1 if out.name in convs else 0
    if conv:
        _follow_click(f"{chart_prefix}_{out.name}", key, conv)
    pick = picked(model, config, image, key)
    c, h, w = out.values.shape
    title = f"After {out.label}: {c} maps of {h}x{w}"  # short: a tablet shows it whole (the text above says click)
    outline = pick[1:] if conv == pick[0] else None
    fig = shared_figure(("feature map sheet", *what, out.name, shared, outline), viz.map_sheet, out.values, title,
                        cols=16, shared_scale=shared, value_name="output", pickable=bool(conv), picked=outline)
    kwargs = {"on_select": "rerun", "selection_mode": "points"} if conv else {}
    chart(st, fig, key=f"{chart_prefix}_{out.name}", **kwargs)


def _short_name(out: features.LayerOutput, outs: list[features.LayerOutput]) -> str:
    """"conv 1", "pool 2": the layer's kind and its place among the layers of that kind."""
    same = [o.name for o in outs if o.kind == out.kind]
    kind = {"Conv2d": "conv", "MaxPool2d": "pool"}.get(out.kind, out.kind)
    return f"{kind} {same.index(out.name) + 1}"


def conv_arithmetic(model: torch.nn.Module, config: TrainConfig, image: torch.Tensor, model_id: str,
                    key: str = "conv") -> None:
    """The section: pick a position (a click on a map above, or the boxes), see its number made step by step. The
    arithmetic and its figures are worked out once per model, image and number for the whole class."""
    st.subheader("One number of a feature map, worked out")
    st.markdown("Every number in the feature maps above is made the same way: lay a 3x3 kernel over a 3x3 patch "
                "of the input, multiply number by number, add the products up and add the bias. Click a number on "
                "a convolution's maps above (it is outlined in green), or pick one here, and follow it through the "
                "rest of its block.")
    if not st.toggle("Work one number out", key=f"{key}_open", help="Opens by itself when you click a number on a "
                     "convolution's maps above."):
        return  # a section nobody opened computes nothing (issue 28)
    what = model_and_image(model_id, image)
    shapes = shared_figure(("map shapes", model_id), map_shapes, model)
    picked(model, config, image, key)  # the boxes start on the strongest number over the digit
    c1, c2, c3, c4 = st.columns(4)
    conv = c1.selectbox("Convolution", list(range(1, len(shapes) + 1)), key=f"{key}_layer",
                        format_func=lambda i: f"conv {i}: {shapes[i - 1][0]} maps of "
                                              f"{shapes[i - 1][1]}x{shapes[i - 1][2]}",
                        help="The first reads the image; each one after it reads all the maps the one before made.")
    maps, height, width = shapes[conv - 1]
    channel = c2.number_input("Map", 0, maps - 1, key=f"{key}_{conv}_map", on_change=_map_changed,
                              args=(model, config, image, key, conv),
                              help="Which output map (each has its own kernel). A new map opens on its strongest "
                                   "number over the digit.")
    row = c3.number_input("Row", 0, height - 1, key=f"{key}_{conv}_row",
                          help="Counted from 0 at the top of the map.")
    col = c4.number_input("Column", 0, width - 1, key=f"{key}_{conv}_col", help="Counted from 0 at the left.")
    number = (conv, int(channel), int(row), int(col))
    found = shared_figure(("conv arithmetic", *what, *number), explain_position, model, config, image, *number)
    figures = shared_figure(("conv arithmetic figures", *what, *number), _figures, found)
    st.caption(f"Working out **conv {conv}, map {int(channel)}, row {int(row)}, column {int(col)}**.")
    the_products(found, figures, key)
    the_sum(found)
    the_steps(found, figures, key)
    show_code(explain_position, ConvArithmetic, title="The arithmetic's code")


def _figures(found: ConvArithmetic) -> dict:
    """The section's charts for one worked-out number: the channels' shares (many input channels), the patch, the
    kernel, their products, the max-pool's window."""
    n_in = found.patch.shape[0]
    shown = found.largest(5)[0][0] if n_in > 1 else 0
    where = f" (input channel {shown})" if n_in > 1 else ""
    figures = {"patch": viz.number_grid(found.patch[shown], f"The input patch{where}"),
               "kernel": viz.number_grid(found.kernel[shown], f"The kernel{where}"),
               "products": viz.number_grid(found.products[shown], f"Patch x kernel{where}")}
    if n_in > 1:
        shares = viz.activation_bars(found.channel_sums, f"Each of the {n_in} input channels' share: its 3x3 sum of "
                                     "products", highlight=[c for c, _ in found.largest(5)], height=280)
        shares.update_layout(xaxis_title="input channel", yaxis_title="sum of its 9 products")
        figures["shares"] = shares
    if found.pool_window is not None:
        figures["pool"] = viz.number_grid(found.pool_window, "The max-pool's 2x2 window", height=220, fmt=".3f")
    return figures


def the_products(found: ConvArithmetic, figures: dict, key: str) -> None:
    """The patch, the kernel and their products; for many input channels, each channel's share first."""
    n_in = found.patch.shape[0]
    if n_in > 1:
        top = found.largest(5)
        left, right = st.columns([3, 2])
        chart(left, figures["shares"], key=f"{key}_shares")
        right.dataframe(pd.DataFrame([{"input channel": c, "sum of its 9 products": v} for c, v in top]),
                        hide_index=True, column_config={"sum of its 9 products": st.column_config.NumberColumn(
                            format="%.4f")})
        right.caption("The five channels that pushed hardest, either way. Below: the nine products of the first.")
    cols = st.columns(3)
    chart(cols[0], figures["patch"], key=f"{key}_patch", config=STILL)
    chart(cols[1], figures["kernel"], key=f"{key}_kernel", config=STILL)
    chart(cols[2], figures["products"], key=f"{key}_products", config=STILL)


def the_sum(found: ConvArithmetic) -> None:
    products = float(found.products.sum())
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Sum of the {found.products.numel()} products", f"{products:.4f}")
    c2.metric("Bias", f"{found.bias:.4f}", help="0 when BatchNorm follows: the convolution then has no bias.")
    c3.metric("The convolution's number", f"{found.total:.4f}",
              help=f"Sum plus bias: map {found.channel}, row {found.row}, column {found.col} of conv {found.conv}.")


def the_steps(found: ConvArithmetic, figures: dict, key: str) -> None:
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
        chart(mid, figures["pool"], key=f"{key}_pool", config=STILL)
    verdict = ("kept: it reaches the next layer" if found.pool_kept else
               "dropped: another number of its window is larger, so the next layer never sees this one")
    st.caption(f"This number is {verdict}.")
