"""Stage 5: what the weights look for -- first-layer rows as images, activations, filters, saliency, before/after."""

import pandas as pd
import streamlit as st

from digitlab import features, ui, viz
from digitlab.models import build_model

data = ui.page_setup(
    "Features",
    "👁️",
    "A trained network is only numbers, but the first layer's numbers can be looked at: every unit has one weight "
    "per pixel, so its 784 weights form a 28x28 picture of what it looks for. Pick any trained model, then follow "
    "one digit through it, see which pixels decided the answer, and compare the weights with where training began.",
)
ui.store_problems()

infos = ui.get_store().list()
if not infos:
    st.info("No trained model yet: there are no weights to look at. Train one on a stage page, then come back.")
    ui.train_links()
    st.stop()

info = ui.model_picker("Model", key="feat_model", help="Every model in the store, newest first.")
loaded = ui.load_model(info.id) if info is not None else None  # a missing or damaged file: st.error, and None
if loaded is None:
    st.info("Pick another model above, or train this one again on its stage page.")
    if info is not None:
        ui.train_links((info.config.kind,))
    st.stop()
model, info = loaded
config = info.config
names = list(features.class_names(config))
if config.task == "3v7":
    st.caption("A 3-vs-7 model: one output that says how much the image looks like a 3 rather than a 7.")

# ---------------------------------------------------------------- 1. first-layer weights
st.header("1. The first layer's weights as images")
first = features.first_layer(model)
if first is None:
    st.info("A CNN's first layer does not read all 784 pixels at once: it slides small filters over the image. "
            "Its filters are in section 3; pick a linear model or an MLP here to see 784-weight rows.")
else:
    rows, bias = first
    n_units = len(rows)
    st.markdown(
        f"`{'simple_net[0]' if config.kind == 'mlp' else 'linear1'}` has **{n_units}** unit"
        f"{'s' if n_units != 1 else ''}, each with 784 weights and a bias, as the fastai lesson shows with "
        "`w[i].view(28, 28)`. **Red** weights raise the unit's output where there is ink, **blue** ones lower it, "
        "white ones ignore the pixel."
    )
    norms = features.unit_norms(rows)
    if n_units == 1:  # the linear model: one unit, shown big
        order, unit = features.unit_order(rows, "index"), 0
        c1, c2 = st.columns([1, 1])
        c1.plotly_chart(viz.diverging_heatmap(features.weight_images(rows)[0], "Unit 0: its 784 weights as 28x28",
                                              height=380), key="feat_unit_big")
        c2.markdown(f"Bias **{float(bias[0]):+.3f}** · weight norm **{float(norms[0]):.3f}**")
        if config.task == "3v7":
            c2.markdown("The sum of weight × pixel plus the bias is the model's one output: above 0 it answers "
                        "**3**, below 0 **7**. So red pixels are where 3s have ink and 7s do not, blue the reverse.")
    else:
        c1, c2, c3 = st.columns(3)
        by = c1.radio("Order", ["norm", "index"], horizontal=True, key="feat_order",
                      format_func={"norm": "largest weight norm first", "index": "unit number"}.get,
                      help="The norm (length) of a unit's 784 weights: large for units that react strongly to ink.")
        shown_n = n_units
        if n_units > 16:
            shown_n = c2.slider("Units to show", 8, min(n_units, 128), min(n_units, 50), step=1,
                                key="feat_n_units", help="How many units the grid shows, in the chosen order.")
        shared = c3.toggle("One colour scale for all units", key="feat_shared_scale",
                           help="Off: each unit is scaled to its own largest weight, so its pattern shows. "
                                "On: strong and weak units compare.")
        order = features.unit_order(rows, by)
        shown = order[:shown_n]
        st.plotly_chart(
            viz.map_sheet(features.weight_images(rows[shown]),
                          f"First-layer weights: {len(shown)} of {n_units} units as 28x28 images", cols=10,
                          shared_scale=shared, labels=[f"unit {int(u)}" for u in shown], value_name="weight"),
            key="feat_rows",
        )
        unit = st.selectbox("Unit to enlarge", [int(u) for u in order], key="feat_unit",
                            format_func=lambda u: f"unit {u} · norm {float(norms[u]):.2f}",
                            help="Listed in the order above; the chosen unit is shown big, with its bias.")
        c1, c2 = st.columns([1, 2])
        c1.plotly_chart(viz.diverging_heatmap(features.weight_images(rows[unit:unit + 1])[0],
                                              f"Unit {unit}: its 784 weights as 28x28", height=360),
                        key="feat_unit_big")
        c1.caption(f"Bias {float(bias[unit]):+.3f} · weight norm {float(norms[unit]):.3f}")
        c2.plotly_chart(viz.unit_norm_bars(norms, order, "Weight norm of each unit, in the order shown", chosen=unit,
                                           height=360), key="feat_norms")
    ui.show_code(features.first_layer, features.unit_order)

# ---------------------------------------------------------------- 2. one digit through the network
st.header("2. One digit through the network")
index, image, label = ui.test_image_picker(data, "feat_img", default_digit=3 if config.task == "3v7" else 7)
probs = features.answer(model, config, image)
c1, c2 = st.columns([1, 2])
c1.plotly_chart(viz.image_heatmap(image, f"Test image {index}: a {label}", height=280), key="feat_image")
c2.plotly_chart(viz.probability_bars(probs, names, "The model's answer", height=280 if len(names) > 2 else 200),
                key="feat_probs")
if config.task == "3v7" and label not in (3, 7):
    st.caption(f"This model only ever answers 3 or 7, so a {label} still gets one of the two.")

if first is not None and len(first[0]) == 1:
    k = 1  # the linear model: one unit, nothing to rank
else:
    k = st.columns(3)[0].slider("Units to rank", 3, 16, 8, key="feat_top_k",
                               help="How many of the strongest units (or filters) to pick out below.")
fire = features.units_that_fire(model, config, image, k)  # None for a CNN: its filters are in section 3
top = set(fire.units.tolist()) if fire is not None else set()
st.subheader("Each layer's activations")
for j, out in enumerate(features.activations(model, config, image)):
    if out.is_maps:
        c, h, w = out.values.shape
        st.plotly_chart(viz.map_sheet(out.values, f"{out.label}: {c} maps of {h}x{w}", cols=16, diverging=False,
                                      value_name="activation"), key=f"feat_act_{j}")
    else:
        hi = [u for u in top if u < len(out.values)] if j == 0 else None
        n_out = len(out.values)
        st.plotly_chart(viz.activation_bars(out.values, f"{out.label}: {n_out} number{'s' if n_out != 1 else ''}",
                                            highlight=hi,
                                            height=240), key=f"feat_act_{j}")
st.caption("Hidden activations are what the next layer reads. The last chart is the output: "
           + ("log-probabilities, as the model ends in LogSoftmax; exp() of them is the answer above."
              if config.loss == "nll" else "raw scores, before softmax turns them into the probabilities above."))

if fire is not None:
    st.subheader("The units that fire most, and what they look for")
    if config.task == "3v7":
        st.markdown("The linear model has no hidden layer: its one output unit is all there is. It multiplies "
                    "every pixel by its weight and adds them up, plus its bias: the second image is that product, "
                    "pixel by pixel, so its red parts pushed the answer towards 3 and its blue parts towards 7.")
    else:
        st.markdown(f"The {len(fire.units)} strongest units of **{fire.layer}** for this image (in red above). "
                    "Each unit multiplies every pixel by its weight and adds them up, plus its bias: the second grid "
                    "is that product, pixel by pixel, so its red parts are the ink that made the unit fire.")
    if len(fire.units) == 1:
        c1, c2 = st.columns(2)
        c1.plotly_chart(viz.diverging_heatmap(fire.weights[0], "Its weights (784 as 28x28)", height=360),
                        key="feat_fire_weights")
        c2.plotly_chart(viz.diverging_heatmap(fire.contributions[0], "Weight × this image's pixels", height=360),
                        key="feat_fire_contrib")
        st.caption(f"The sum of the right-hand image plus the bias is the output: {float(fire.values[0]):+.2f}.")
    else:
        titles = [f"unit {int(u)}: {float(v):.2f}" for u, v in zip(fire.units, fire.values)]
        st.plotly_chart(viz.map_sheet(fire.weights, "Their weights (784 as 28x28)", cols=8, labels=titles,
                                      value_name="weight"), key="feat_fire_weights")
        st.plotly_chart(viz.map_sheet(fire.contributions, "Weight × this image's pixels", cols=8, labels=titles,
                                      value_name="weight × pixel"), key="feat_fire_contrib")
    if features.paper_value(config) != 0:
        st.caption(f"This model reads paper as {features.paper_value(config):g}, not 0 (its inputs are normalised), "
                   "so paper pixels count in the sum too.")
    ui.show_code(features.units_that_fire, features.top_units)

# ---------------------------------------------------------------- 3. a CNN's filters
st.header("3. A CNN's first-layer filters and their responses")
filters = features.first_filters(model)
if filters is None:
    st.info("This model has no convolutions. Pick a CNN above to see its filters and what they find in the digit.")
else:
    fk = filters.shape[-1]
    firing = features.filters_that_fire(model, config, image, len(filters))
    all_maps = firing.maps[firing.units.argsort()]  # back in filter order
    c1, c2 = st.columns([2, 3])
    c1.plotly_chart(viz.map_sheet(filters, f"The {len(filters)} learned {fk}x{fk} filters of the first layer",
                                  cols=8, shared_scale=True, labels=[str(i) for i in range(len(filters))],
                                  value_name="weight", width=400), key="feat_filters")
    c2.plotly_chart(viz.map_sheet(all_maps, f"Their responses to this {label} ({firing.layer})", cols=8,
                                  diverging=False, labels=[str(i) for i in range(len(filters))],
                                  value_name="activation", width=600), key="feat_filter_maps")
    st.markdown("Filter *i* slides over the digit and gives response map *i*: dark where its pattern is found. "
                f"The strongest for this image: **{', '.join(str(int(u)) for u in firing.units[:k])}**.")
    ui.show_code(features.first_filters, features.filters_that_fire)

# ---------------------------------------------------------------- 4. saliency and Grad-CAM
st.header("4. Which pixels drove the answer")
choice = st.selectbox("Explain the score of", ["answer", *names], key=f"feat_target_{config.task}",
                      format_func=lambda c: f"the model's answer ({names[int(probs.argmax())]})" if c == "answer" else c,
                      help="Which class's score to trace back to the pixels; by default the one the model chose.")
target = None if choice == "answer" else names.index(choice)
ex = features.explain(model, config, image, target)
what = names[ex.target]
cols = st.columns(3 if ex.grad_cam is not None else 2)
cols[0].plotly_chart(viz.heat_map(ex.saliency, f"Saliency for '{what}'", height=320, value_name="|gradient|"),
                     key="feat_saliency")
cols[1].plotly_chart(viz.diverging_heatmap(ex.grad_x_input, f"Gradient × input for '{what}'", height=320),
                     key="feat_grad_input")
if ex.grad_cam is not None:
    cols[2].plotly_chart(viz.heat_overlay(image, ex.grad_cam, f"Grad-CAM for '{what}' ({ex.cam_layer})", height=320),
                         key="feat_gradcam")
st.markdown(
    "**Saliency**: how much the score would change if one pixel changed a little (the size of its gradient). "
    "**Gradient × input**: the gradient times the pixel, so it lights up the ink that is there: red pushed the "
    f"score for '{what}' up, blue pushed it down."
    + (" **Grad-CAM**: the last convolution block's maps, each weighted by how much the score rises with it, "
       "added up and stretched back to 28x28: the regions the CNN used, coarser but steadier than saliency."
       if ex.grad_cam is not None else "")
    + (f" This model reads paper as {features.paper_value(config):g}, not 0 (its inputs are normalised), so "
       "gradient × input can light up paper too." if features.paper_value(config) != 0 else "")
)
ui.show_code(features.explain)

# ---------------------------------------------------------------- 5. before and after training
st.header("5. Before and after training")
start = features.initial_model(config)
st.markdown(
    "**The 'before' weights are this run's real starting point.** Training builds every model with "
    f"`build_model(config)`, which seeds PyTorch with the run's seed ({config.seed}) before it creates the layers, "
    "so building it again here gives exactly the numbers training began from."
)
c1, c2, c3 = st.columns(3)
n_check = 2000
acc_before = features.cached_accuracy(start, info, data, "before", n_check)
acc_after = features.cached_accuracy(model, info, data, "after", n_check)
c1.metric("Accuracy before training", f"{acc_before:.2%}",
          help=f"The untrained start on the first {n_check:,} test images of this model's task.")
c2.metric("Accuracy after training", f"{acc_after:.2%}", help=f"The same {n_check:,} test images.")
c3.metric("Epochs trained", len(info.history), help="Passes over the training images this model has had.")
stored = info.metrics.get("test_accuracy")
if isinstance(stored, int | float):
    st.caption(f"Both accuracies on the same {n_check:,} test images, to keep this page quick; on the whole test set "
               f"the trained model scored {stored:.2%}.")
if first is not None:
    rows_before, _ = features.first_layer(start)
    pick = features.unit_order(rows, "norm")[:10]
    labels = [f"unit {int(u)}" for u in pick]
    if len(pick) == 1:
        c1, c2 = st.columns(2)
        c1.plotly_chart(viz.diverging_heatmap(features.weight_images(rows_before)[0],
                                              "Before training: first-layer weights", height=360),
                        key="feat_before_rows")
        c2.plotly_chart(viz.diverging_heatmap(features.weight_images(rows)[0], "After training: first-layer weights",
                                              height=360), key="feat_after_rows")
    else:
        st.plotly_chart(viz.map_sheet(features.weight_images(rows_before[pick]),
                                      "Before training: first-layer weights", cols=10, labels=labels,
                                      value_name="weight"), key="feat_before_rows")
        st.plotly_chart(viz.map_sheet(features.weight_images(rows[pick]), "After training: first-layer weights",
                                      cols=10, labels=labels, value_name="weight"), key="feat_after_rows")
    st.caption(("The same unit" if len(pick) == 1 else f"The same {len(pick)} units (largest trained norm first)")
               + ", each on its own colour scale (mind the numbers on the bars). "
               + ("With the seed's std-1 start the weights stay mostly noise; the change is small beside them."
                  if config.kind == "linear" and config.init_std >= 1 else
                  "Random noise before; strokes and blobs after."))
elif filters is not None:
    c1, c2 = st.columns(2)
    fb = features.first_filters(start)
    c1.plotly_chart(viz.map_sheet(fb, "Before training: first-layer filters", cols=8, shared_scale=True,
                                  labels=[str(i) for i in range(len(fb))], value_name="weight", width=480),
                    key="feat_before_filters")
    c2.plotly_chart(viz.map_sheet(filters, "After training: first-layer filters", cols=8, shared_scale=True,
                                  labels=[str(i) for i in range(len(filters))], value_name="weight", width=480),
                    key="feat_after_filters")
change = features.weight_change(start, model)
if change:
    moved = change[0]["moved ÷ norm before"]  # the first layer's weights
    st.caption(f"Training moved the first layer's weights by {moved:.0%} of their starting size"
               + (": they still carry much of their random start, as the pictures show." if moved < 0.5 else "."))
st.markdown("How far training moved each weight tensor (L2 norms):")
table = pd.DataFrame(change)
if not table.empty:  # a tensor that started at zero (BatchNorm's shifts, zeroed biases) has no "before" to divide by
    table["moved ÷ norm before"] = [f"{v:.1%}" if v == v else "— (started at 0)" for v in table["moved ÷ norm before"]]
st.dataframe(table, hide_index=True, key="feat_change")
ui.show_code(features.initial_model, build_model, features.weight_change)
