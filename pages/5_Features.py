"""Stage 5: what the weights look for -- first-layer rows as images, activations, filters, saliency, before/after."""

import pandas as pd
import streamlit as st

from digitlab import features, saliency, ui, untrained, viz
from digitlab.models import build_model
from digitlab.train import predict_proba


def label_room() -> int:  # the px a labelled sheet keeps above each tile: presenter mode's labels are twice the size
    return viz.PRESENTER_LABEL_ROOM_PX if ui.presenting() else viz.LABEL_ROOM_PX


def weights_section(model, info, picked) -> None:
    if (first := features.first_layer(model)) is None:
        st.info("A CNN's first layer does not read all 784 pixels at once: it slides small filters over the image. "
                "Its filters are in another section; pick a linear model or an MLP here to see 784-weight rows.")
        return
    rows, bias = first
    norms, n_units = features.unit_norms(rows), len(rows)
    st.markdown(f"`{'simple_net[0]' if info.config.kind == 'mlp' else 'linear1'}` has **{n_units}** unit"
                f"{'s' if n_units != 1 else ''}, each with 784 weights and a bias, as the fastai lesson shows with "
                "`w[i].view(28, 28)`. **Red** weights raise the unit's output where there is ink, **blue** ones "
                "lower it, white ones ignore the pixel.")
    unit = 0
    if n_units > 1:
        c1, c2, c3 = st.columns(3)
        by = c1.radio("Order", ["norm", "index"], horizontal=True, key="feat_order",
                      format_func={"norm": "largest weight norm first", "index": "unit number"}.get,
                      help="The norm (length) of a unit's 784 weights: large for units that react strongly to ink.")
        shown_n = n_units if n_units <= 16 else c2.slider(
            "Units to show", 8, min(n_units, 128), min(n_units, 50), key="feat_n_units",
            help="How many units the grid shows, in the chosen order.")
        shared = c3.toggle("One colour scale for all units", key="feat_shared_scale",
                           help="Off: each unit is scaled to its own largest weight, so its pattern shows. "
                                "On: strong and weak units compare.")
        order = features.unit_order(rows, by)
        shown = order[:shown_n]
        ui.chart(st, ui.shared_figure(("rows", info.id, by, shown_n, shared, label_room()), viz.map_sheet,
                                      features.weight_images(rows[shown]), f"First-layer weights: {len(shown)} of "
                                      f"{n_units} units as 28x28 images", cols=10, shared_scale=shared,
                                      labels=[f"unit {int(u)}" for u in shown], value_name="weight",
                                      label_room=label_room()), key="feat_rows")
        unit = st.selectbox("Unit to enlarge", [int(u) for u in order], key="feat_unit",
                            format_func=lambda u: f"unit {u} · norm {float(norms[u]):.2f}",
                            help="Listed in the order above; the chosen unit is shown big, with its bias.")
    c1, c2 = st.columns([1, 2] if n_units > 1 else [1, 1])
    ui.chart(c1, viz.diverging_heatmap(features.weight_images(rows[unit:unit + 1])[0],
                                       f"Unit {unit}: its 784 weights as 28x28", height=360), key="feat_unit_big")
    c1.caption(f"Bias {float(bias[unit]):+.3f} · weight norm {float(norms[unit]):.3f}")
    if n_units > 1:
        ui.chart(c2, viz.unit_norm_bars(norms, order, "Weight norm of each unit, in the order shown", chosen=unit,
                                        height=360), key="feat_norms")
    elif info.config.pair:
        c2.markdown(ui.pair_weights_note(info.config))
    ui.show_code(features.first_layer, features.unit_order)


def digit_section(model, info, picked) -> None:
    config, (index, image, label), names = info.config, picked, list(features.class_names(info.config))
    probs = predict_proba(model, config, image.unsqueeze(0))[0]
    c1, c2 = st.columns([1, 2])
    ui.chart(c1, viz.image_heatmap(image, f"Test image {index}: a {features.label_name(config, label)}", height=280),
             key="feat_image")
    ui.chart(c2, viz.probability_bars(probs, names, "The model's answer", height=280 if len(names) > 2 else 200),
                 key="feat_probs")
    if config.pair and label not in config.pair:
        st.caption(f"This model only ever answers {config.question} so a {features.label_name(config, label)} still "
                   "gets one of the two.")
    k = 1  # the linear model: one unit, nothing to rank; a CNN's filters have their own section
    if (first := features.first_layer(model)) is not None and len(first[0]) > 1:
        k = st.columns(3)[0].slider("Units to rank", 3, 16, 8, key="feat_top_k", help="How many to pick out below.")
    fire = features.units_that_fire(model, config, image, k)  # None for a CNN
    st.subheader("Each layer's activations")
    for j, out in enumerate(features.activations(model, config, image)):
        if out.is_maps:  # a CNN's maps: one sheet per layer, the same for every student who sends this digit
            c, h, w = out.values.shape
            ui.chart(st, ui.shared_figure(("maps", info.id, index, j), viz.map_sheet, out.values, f"{out.label}: "
                                          f"{c} maps of {h}x{w}", cols=16, diverging=False, value_name="activation"),
                         key=f"feat_act_{j}")
        else:
            n, hot = len(out.values), fire.units.tolist() if fire is not None and j == 0 else None
            ui.chart(st, viz.activation_bars(out.values, f"{out.label}: {n} number{'s' if n != 1 else ''}",
                                             highlight=hot, height=240), key=f"feat_act_{j}")
    st.caption(ui.output_note(config))
    ui.glossary("logit", "softmax", "label smoothing")
    if fire is None:
        return
    st.subheader("The units that fire most, and what they look for")
    st.markdown(ui.firing_note(fire, config))
    if len(fire.units) == 1:
        c1, c2 = st.columns(2)
        ui.chart(c1, viz.diverging_heatmap(fire.weights[0], "Its weights (784 as 28x28)", height=360),
                     key="feat_fire_weights")
        ui.chart(c2, viz.diverging_heatmap(fire.contributions[0], "Weight × this image's pixels", height=360),
                     key="feat_fire_contrib")
        st.caption(f"The sum of the right-hand image plus the bias is the output: {float(fire.values[0]):+.2f}.")
    else:
        titles = [f"unit {int(u)}: {float(v):.2f}" for u, v in zip(fire.units, fire.values)]
        ui.chart(st, viz.map_sheet(fire.weights, "Their weights (784 as 28x28)", cols=8, labels=titles,
                                   value_name="weight", label_room=label_room()), key="feat_fire_weights")
        ui.chart(st, viz.map_sheet(fire.contributions, "Weight × this image's pixels", cols=8, labels=titles,
                                   value_name="weight × pixel", label_room=label_room()), key="feat_fire_contrib")
    ui.show_code(features.units_that_fire, features.top_units)


def filters_section(model, info, picked) -> None:
    if (filters := features.first_filters(model)) is None:
        st.info("This model has no convolutions. Pick a CNN above to see its filters and what they find in the digit.")
        return
    firing = ui.shared_figure(("firing", info.id, picked[0]), features.filters_that_fire, model, info.config,
                              picked[1], len(filters))  # a forward pass per model and test image, for the class
    numbers, room, k = [str(i) for i in range(len(filters))], label_room(), filters.shape[-1]
    c1, c2 = st.columns([2, 3])
    ui.chart(c1, ui.shared_figure(("filters", info.id, room), viz.map_sheet, filters, f"The {len(filters)} learned "
                                  f"{k}x{k} filters of the first layer", cols=8, shared_scale=True, labels=numbers,
                                  value_name="weight", width=400, label_room=room), key="feat_filters")
    responses = firing.maps[firing.units.argsort()]  # back in filter order
    ui.chart(c2, ui.shared_figure(("responses", info.id, picked[0], room), viz.map_sheet, responses, "Their responses "
                                  f"to this {features.label_name(info.config, picked[2])} ({firing.layer})", cols=8,
                                  diverging=False, labels=numbers, value_name="activation", width=600, label_room=room),
             key="feat_filter_maps")
    st.markdown("Filter *i* slides over the digit and gives response map *i*: dark where its pattern is found. "
                f"The strongest for this image: **{', '.join(str(int(u)) for u in firing.units[:8])}**.")
    ui.show_code(features.first_filters, features.filters_that_fire)


def saliency_section(model, info, picked) -> None:
    config, names = info.config, list(features.class_names(info.config))
    answer = names[int(predict_proba(model, config, picked[1].unsqueeze(0))[0].argmax())]
    choice = st.selectbox("Explain the score of", ["answer", *names], key=f"feat_target_{config.dataset}_{config.task}",
                          format_func=lambda c: f"the model's answer ({answer})" if c == "answer" else c,
                          help="Which class's score to trace back to the pixels; by default the one the model chose.")
    ex = saliency.explain(model, config, picked[1], None if choice == "answer" else names.index(choice))
    what = names[ex.target]
    cols = st.columns(3 if ex.grad_cam is not None else 2)
    ui.chart(cols[0], viz.heat_map(ex.saliency, f"Saliency for '{what}'", height=320, value_name="|gradient|"),
                      key="feat_saliency")
    ui.chart(cols[1], viz.diverging_heatmap(ex.grad_x_input, f"Gradient × input for '{what}'", height=320),
                      key="feat_grad_input")
    if ex.grad_cam is not None:
        ui.chart(cols[2], viz.heat_overlay(picked[1], ex.grad_cam, f"Grad-CAM for '{what}' ({ex.cam_layer})",
                                           height=320), key="feat_gradcam")
    st.markdown(ui.saliency_note(ex, config))
    ui.show_code(saliency.explain)


def before_after_section(model, info, picked) -> None:
    config, start = info.config, ui.initial_model(info.config)
    st.markdown("**The 'before' weights are this run's real starting point.** Training builds every model with "
                f"`build_model(config)`, which seeds PyTorch with the run's seed ({config.seed}) before it creates the "
                "layers, so building it again here gives exactly the numbers training began from.")
    if (found := ui.model_analysis(model, info, data)) is not None:
        c1, c2, c3 = st.columns(3)
        c1.metric("Accuracy before training", f"{found.accuracy_before:.2%}", help="The untrained start, on all "
                  f"{len(found.predictions.targets):,} test images of this model's task.")
        c2.metric("Accuracy after training", f"{found.predictions.accuracy:.2%}", help="The same test images.")
        c3.metric("Epochs trained", len(info.history), help="Passes over the training images this model has had.")
    pairs = untrained.before_after(start, model)
    for col, (title, maps, labels) in zip(st.columns(2), pairs):
        rows = maps.shape[-1] == 28  # weight rows as 28x28 images, each on its own scale; filters share one
        ui.chart(col, ui.shared_figure((title, info.id, label_room()), viz.map_sheet, maps, title,
                                       cols=5 if rows else 8, labels=labels, shared_scale=not rows, value_name="weight",
                                       width=480, label_room=label_room()), key=f"feat_{title}")
    change = untrained.weight_change(start, model)
    st.caption(ui.before_after_note(config, pairs, change))
    shares = [ui.share_of_start(r["moved ÷ norm before"]) for r in change]
    st.dataframe(pd.DataFrame(change).assign(**{"moved ÷ norm before": shares}), hide_index=True, key="feat_change")
    ui.show_code(untrained.initial_model, build_model, untrained.weight_change)


SECTIONS = {"The first layer's weights": weights_section, "One digit through the network": digit_section,
            "A CNN's filters": filters_section, "Which pixels drove the answer": saliency_section,
            "Before and after training": before_after_section}  # each runs as a fragment; only the open one runs
NEEDS_A_DIGIT = ("One digit through the network", "A CNN's filters", "Which pixels drove the answer")
LINK = ui.ViewPage("feat", "feat_model", "feat_section", tuple(SECTIONS), image_key="feat_img")  # kept in the address

data = ui.page_setup("Features", "👁️", "A trained network is only numbers, but the first layer's numbers can be "
                     "looked at: every unit has one weight per pixel, so its 784 weights form a 28x28 picture of what "
                     "it looks for. Pick any trained model, then follow one digit through it, see which pixels decided "
                     "the answer, and compare the weights with where training began.")
ui.store_problems()
if not ui.dataset_models():
    st.info(f"No model trained on {data.spec.title} yet: no weights to look at. Train one on a stage page.")
    ui.train_links()
    st.stop()
ui.restore_view(LINK, data)
model, info = ui.loaded_model("feat_model")
if pair := info.config.pair:
    st.caption(ui.pair_note(info.config))
opening = "A CNN's filters" if info.config.kind == "cnn" else "The first layer's weights"  # a CNN's first layer: filters
if st.session_state.get("feat_section") in (None, st.session_state.get("feat_opened_on")):  # not the student's pick
    st.session_state["feat_section"] = opening
st.session_state["feat_opened_on"] = opening
section = st.segmented_control("Look at", list(SECTIONS), required=True, key="feat_section",
                               help="Only the part you open is computed and drawn.")
picked = ui.test_image_picker(data, "feat_img", pair[0] if pair else 7) if section in NEEDS_A_DIGIT else None  # 3-vs-7: a 3
ui.share_view(LINK, [info.id], section, picked[0] if picked else None)
st.fragment(SECTIONS[section])(model, info, picked)
