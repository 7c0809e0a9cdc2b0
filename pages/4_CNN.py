"""Stage 4: the seed's DigitCNN layer by layer, trained live; what its convolutions see; beside the other models."""

import streamlit as st

from digitlab import architecture, features, ranking, train, ui, viz
from digitlab.data import MNIST
from digitlab.models import PRESET_HELP, PRESETS, DigitCNN, TrainConfig, count_parameters, preset_for

LINK = ui.LinkedPage("cnn", default="cnn-fast", model_key="cnn_view_model", image_key="cnn_img")


def main() -> None:
    data = ui.page_setup(
        "CNN",
        "🧩",
        "An MLP sees 784 numbers in a row and has to learn that neighbouring pixels belong together. A "
        "convolutional network slides small 3x3 filters over the image instead, so the same stroke detector works "
        "everywhere. This is the tutorial's `DigitCNN`: two blocks of convolution, ReLU and max-pooling, then two "
        "linear layers.",
    )
    ui.restore_setup(LINK, data)
    preset = layer_by_layer(data)
    snap = train_it(preset, data)
    inside_a_trained_cnn(snap, data)
    beside_the_other_models()


def layer_by_layer(data: MNIST) -> TrainConfig:
    """1. The picked recipe's network, its shapes measured by running one image through it; the preset."""
    st.header("1. DigitCNN, layer by layer")
    preset = ui.preset_picker(("cnn",), key="cnn_preset", default="cnn-fast")
    recipes = {name: preset_for(name, data.spec.key) for name in ("cnn-fast", "cnn-seed", "cnn-best")}
    st.caption(" · ".join(f"`{name}`: about {ui.duration_text(ui.estimated_seconds(config, data))}"
                          for name, config in recipes.items()) + " to train here, once it starts. "
               "The page starts on cnn-fast so the class is not kept waiting; cnn-seed is the tutorial's own recipe.")
    net = ui.initial_model(preset)  # untrained: only its shapes and sizes are read here
    rows = ui.shared_figure(("architecture", preset.key()), architecture.architecture, net)
    flat = architecture.flatten_row(rows)
    c1, c2, c3 = st.columns(3)
    c1.metric("Parameters", f"{count_parameters(net):,}", help="Every weight and bias the optimizer will tune.")
    c2.metric("Layers with weights", sum(1 for r in rows if r["parameters"]),
              help="Convolutions, linear layers (and batch norms): the layers the optimizer tunes.")
    if flat:
        c3.metric("Numbers into the first linear layer", f"{int(flat['output shape']):,}",
                  help="What the last pooling hands on, flattened into one row.")
    st.markdown("Map size after each convolution and pooling: **"
                + " → ".join(str(s) for s in architecture.map_sizes(rows)) + "**")
    st.dataframe(ui.shared_table(("architecture", preset.key()), lambda: rows), hide_index=True, key="cnn_arch",
                 column_config={"parameters": st.column_config.NumberColumn(format="localized")})
    steps = [f"- **{r['layer']}** ({r['type']}): {r['why this shape']}" for r in rows
             if r["type"] in ("Conv2d", "MaxPool2d", "Flatten")]
    st.markdown(
        "Each row above was measured by running one 1x28x28 image through the network. The sizes follow from "
        "two rules: a 3x3 filter without padding fits `n − 3 + 1` times across `n` pixels, and a 2x2 max-pool "
        "halves the side, rounding down.\n" + "\n".join(steps)
        + (f"\n\nSo the first linear layer reads **{flat['why this shape']}**: that is where the "
           "tutorial's `64 * 5 * 5` comes from." if flat else "")
    )
    if notes := architecture.variant_notes(rows):
        st.caption(f"`{preset.preset}` changes the tutorial's blocks: " + "; ".join(notes) + ". The map sizes "
                   "stay the same.")
    ui.show_code(DigitCNN, architecture.architecture)
    return preset


def train_it(preset: TrainConfig, data: MNIST):
    """2. Train the recipe picked in section 1; the job's snapshot."""
    st.header("2. Train it")
    st.markdown("\n".join(f"- `{name}`: {PRESET_HELP[name]}" for name, c in PRESETS.items() if c.kind == "cnn")
                + "\n\nPick the recipe in section 1. Lower the training images for a quick first run.")
    ui.glossary("batch norm", "one-cycle", "label smoothing", "augmentation", "bfloat16")
    config = ui.training_controls(preset, "cnn")
    ui.show_code(train.fit, train.model_inputs, train.block_inputs, train.uses_channels_last, train.fast_forward,
                 title="The training loop: fit(), and how a CNN is fed")
    ui.lr_finder(config, data, "cnn")
    ui.share_setup(LINK, config, data)
    return ui.train_section(config, data, "cnn")


def inside_a_trained_cnn(snap, data: MNIST) -> None:
    """3. A stored CNN (the one just trained, at first): its answer, first filters and feature maps."""
    st.header("3. What the convolutions see")
    if snap is not None and snap.model_id and st.session_state.get("cnn_view_job") != (snap.id, snap.model_id):
        st.session_state["cnn_view_job"] = (snap.id, snap.model_id)  # a run just finished: look inside it
        st.session_state["cnn_view_model"] = snap.model_id
    info = ui.model_picker("Trained CNN", key="cnn_view_model", where=lambda i: i.config.kind == "cnn",
                           help="Every CNN in the model store, newest first.")
    if info is None:
        st.info("No CNN has been trained yet. Train one in section 2 above: with 'Training images' at 10,000 and "
                "one epoch it takes a few seconds, and its feature maps and filters appear here.")
        return
    loaded = ui.load_model(info.id)  # a missing or damaged file: an error on the page, and None
    if loaded is None:
        st.info("Pick another CNN above, or train this recipe again in section 2.")
        return
    model, info = loaded
    index, image, label = ui.test_image_picker(data, "cnn_img")
    seen = ui.model_and_image(info.id, image)  # what the answer and its charts depend on: shared by the class
    probs = ui.shared_figure(("answer", *seen), train.predict_proba, model, info.config, image.unsqueeze(0))[0]
    names, title = list(features.class_names(info.config)), f"Test image {index}: a {data.classes[label]}"
    c1, c2 = st.columns([1, 2])
    ui.chart(c1, ui.shared_figure(("test image", seen[1], title), viz.image_heatmap, image, title, height=280),
             key="cnn_image")
    ui.chart(c2, ui.shared_figure(("answer chart", *seen), viz.probability_bars, probs, names, "The CNN's answer",
                                  height=280), key="cnn_probs", alt=f"The CNN's answer to test image {index}, a "
             f"{data.classes[label]}: {names[int(probs.argmax())]}, {float(probs.max()):.0%}")
    c2.caption(ui.confidence_note(info.config))  # why cnn-fast says 90% where an MLP says 100%
    first_filters(model, info.id)
    feature_maps(model, info.config, image, info.id)
    ui.conv_arithmetic(model, info.config, image, info.id, key="cnn_conv")
    ui.link("pages/5_Features.py", "More on the Features page: saliency, Grad-CAM, before and after training", "👁️")


def first_filters(model, model_id: str) -> None:
    filters = ui.shared_figure(("first filters", model_id), features.first_filters, model)
    if filters is None:
        return
    k = filters.shape[-1]
    st.subheader("The first layer's filters")
    st.markdown("Each filter is a small pattern of weights: red multiplies the pixel under it by a positive number, "
                "blue by a negative one. Sliding it over the image gives one feature map: bright (red) where the "
                "pattern is found, such as an edge at one angle.")
    ui.chart(st, ui.shared_figure(("cnn filters", model_id), viz.map_sheet, filters, f"The {len(filters)} learned "
                                  f"{k}x{k} filters of the first layer", cols=16, shared_scale=True,
                                  labels=[str(i) for i in range(len(filters))], value_name="weight"), key="cnn_filters")


def feature_maps(model, config: TrainConfig, image, model_id: str) -> None:
    st.subheader("Feature maps, layer by layer")
    shared = st.toggle("One colour scale for all maps of a layer", key="cnn_shared_scale",
                       help="Off: each map is scaled to its own largest value, so weak maps still show their "
                            "pattern. On: strong and weak maps can be compared.")
    st.markdown("Red is a positive output, blue a negative one (ReLU will set those to zero). Map *i* of the first "
                "layer comes from filter *i* above. Hover a number for its map, row, column and value; click one on "
                "a convolution's maps to work it out below.")
    ui.feature_map_sheets(model, config, image, shared, model_id, key="cnn_conv")
    st.caption("Each step makes the maps smaller and more numerous: fewer pixels, more kinds of evidence. After "
               "the last pooling the linear layers see only these numbers, not the image.")
    ui.show_code(features.feature_maps, features.layer_outputs, features.first_filters)


def beside_the_other_models() -> None:
    """4. The class's best model of each kind side by side (add or remove any stored model), then two charts."""
    st.header("4. The CNN beside the linear model and the MLPs")
    infos = ui.dataset_models()
    table = ui.models_table(ranking.side_by_side(ui.choose_models("Models side by side", key="cnn_compare_models")))
    if table.empty:
        st.info("No trained model yet: train a CNN above, and a linear model and an MLP on their pages.")
    else:
        st.dataframe(
            table, hide_index=True, key="cnn_compare",
            column_config={
                "test accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
                "parameters": st.column_config.NumberColumn(format="localized"),
            },
        )
        st.caption("The linear model answers only \"3 or 7?\" and is scored on the test 3s and 7s only, an easier "
                   "two-way question: its accuracy is not comparable with the ten-digit models', so the charts "
                   "leave it out. Training time is on this computer, for the epochs and images each run used.")
    ten_way = [i for i in ranking.side_by_side([i for i in infos if not i.broken]) if not i.config.pair]
    if ten := ui.models_table(ten_way).to_dict("records"):
        c1, c2 = st.columns(2)
        ids = tuple(i.id for i in ten_way)
        ui.chart(c1, ui.shared_figure(("scatter parameters", ids), viz.models_scatter, ten, "parameters",
                                      "Accuracy against parameters: every model from 50% up", log_x=True),
                 key="cnn_scatter_params")
        ui.chart(c2, ui.shared_figure(("scatter time", ids), viz.models_scatter, ten, "training time (s)",
                                      "Accuracy against training time"), key="cnn_scatter_time")
    missing = [k for k in ("linear", "mlp", "cnn") if not any(i.config.kind == k for i in infos)]
    if infos and missing:
        names = {"linear": "a linear model", "mlp": "an MLP", "cnn": "a CNN"}
        st.info("Not trained yet: " + " and ".join(names[k] for k in missing) + ". Train "
                + ("them" if len(missing) > 1 else "it") + " to see " + ("them" if len(missing) > 1 else "it")
                + " beside the rest.")
    if missing:
        ui.train_links(tuple(k for k in missing if k != "cnn"))  # a CNN trains in section 2 of this page
    ui.show_code(ranking.side_by_side, ui.models_table)


main()
