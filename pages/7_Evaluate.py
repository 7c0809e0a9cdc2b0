"""Stage 7: a trained model inside out on its test images (read once per model from digitlab.analysis)."""

import pandas as pd
import streamlit as st

from digitlab import embeddings, metrics, ranking, robustness, ui, viz, viz_evaluate
from digitlab.ui import evaluation as words

PERCENT = st.column_config.NumberColumn(format="percent")


def headline(chosen, names) -> None:
    if len(chosen) == 1:
        st.subheader(names[chosen[0][1].id])
        for c, (label, value) in zip(st.columns(3), words.headline(chosen[0][2].predictions)):
            c.metric(label, value)
    else:  # side by side, metrics in narrow columns would be cut: one row per model instead
        st.dataframe(pd.DataFrame([{"model": names[i.id], **dict(words.headline(f.predictions))} for _, i, f in chosen]),
                     hide_index=True, key="eval_headline")
    if pairs := [i for _, i, _ in chosen if i.config.pair]:
        st.caption(words.pair_caption(pairs[0].config))


def confusion_section(chosen, names) -> None:
    st.markdown(words.INTRO["confusion"])
    # One model: the matrix on the left, the chosen cell's images on the right. More: a column each, two per row.
    cols = st.columns([1.1, 1]) if len(chosen) == 1 else [c for _ in chosen[::2] for c in st.columns(2)]
    for i, (_, info, found) in enumerate(chosen):
        pred, k, sha = found.predictions, info.id, found.weights_sha256
        cm, labels = pred.confusion, list(pred.class_names)
        with cols[0] if len(chosen) == 1 else cols[i]:
            st.markdown(f"**{names[k]}**")
            points = ui.confusion_cells(st, ui.shared_figure(("cm", sha), viz_evaluate.confusion_heatmap, cm, labels),
                                        cm, labels, key=f"cm_{k}")  # a click, or a tap on a touch screen's table
            with st.expander("The matrix as numbers"):
                st.dataframe(pd.DataFrame(cm.numpy(), index=[f"true {n}" for n in labels],
                                          columns=[f"pred {n}" for n in labels]), key=f"cm_table_{k}")
        with cols[1] if len(chosen) == 1 else cols[i]:
            words.follow_cell(st.session_state, f"cm_true_{k}", f"cm_pred_{k}", cm, labels, points)
            s1, s2 = st.columns(2)
            t_name = s1.selectbox("True label", labels, key=f"cm_true_{k}")
            p_name = s2.selectbox("Predicted", labels, key=f"cm_pred_{k}")
            members = metrics.cell_members(pred, labels.index(t_name), labels.index(p_name))
            st.markdown(words.cell_caption(len(members), t_name, p_name))
            if len(members):
                top = members[:40]
                images, titles = data.test_images[pred.index[top]], [f"{c:.0%}" for c in pred.confidence[top].tolist()]
                ui.chart(st, ui.shared_figure(("cell", sha, t_name, p_name), viz.image_grid, images, titles, cols=8,
                                              height_per_row=80, zmax=255), key=f"cell_{k}")
                st.caption("Above each image: the probability the model gave its answer.")
    ui.show_code(metrics.confusion_matrix)


def scores_section(chosen, names) -> None:
    st.markdown(words.INTRO["scores"])
    percent = dict.fromkeys(["precision", "recall", "F1"], PERCENT)
    for col, (_, info, found) in zip(st.columns(len(chosen)), chosen):
        col.caption(names[info.id])
        col.dataframe(pd.DataFrame(metrics.per_class_scores(found.predictions.confusion, found.predictions.class_names)),
                      hide_index=True, key=f"scores_{info.id}", column_config=percent)
    ui.show_code(metrics.per_class_scores)


def mistakes_section(chosen, names) -> None:
    st.markdown(words.INTRO["mistakes"])
    n_mistakes = st.slider("How many", 10, 50, 20, step=10, key="eval_n_mistakes")
    for _, info, found in chosen:
        rows = metrics.mistakes_table(found.predictions, n_mistakes)
        st.caption(f"{names[info.id]} · title: true → predicted (probability)")
        if not rows:
            st.success("No mistakes at all on this test set.")
            continue
        ui.chart(st, ui.shared_figure(("mistakes", found.weights_sha256, n_mistakes), viz.image_grid,
                                      data.test_images[[r["test image"] for r in rows]],
                                      [f"{r['true']}→{r['predicted']} {r['probability']:.0%}" for r in rows],
                                      cols=10, height_per_row=95, zmax=255), key=f"mistakes_{info.id}",
                 alt=f"The {len(rows)} surest mistakes; the first, a {rows[0]['true']} read as {rows[0]['predicted']} at {rows[0]['probability']:.0%}")
        with st.expander("As a table"):
            st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"mistakes_table_{info.id}")


def calibration_section(chosen, names) -> None:
    st.markdown(words.INTRO["calibration"])
    ui.glossary("calibration", "temperature scaling", "label smoothing", "softmax", "logit")
    found = {names[i.id]: ui.shared_figure(("calibration", f.weights_sha256), metrics.calibrate, f.predictions, f.held_out)
             for _, i, f in chosen}
    ui.chart(st, viz_evaluate.reliability_diagram({n: c.before for n, c in found.items()},
                                         {n: c.after for n, c in found.items()}), key="reliability")
    st.dataframe(pd.DataFrame(words.calibration_rows(found)), hide_index=True, key="calibration_table",
                 column_config=dict.fromkeys(["ECE as trained", "ECE after temperature scaling"], PERCENT))
    st.caption(words.INTRO["ece"] + " ".join(dict.fromkeys(words.confidence_note(i.config) for _, i, _ in chosen)))
    ui.show_code(metrics.reliability, metrics.fit_temperature)


def threshold_section(chosen, names) -> None:
    st.markdown(words.INTRO["threshold"])
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")  # the threshold, and which confidence it reads
    threshold = c1.slider("Confidence threshold", 0.0, 0.999, 0.9, step=0.001, format="%.3f", key="eval_threshold")
    scaled = c2.toggle("Calibrated confidence", key="eval_calibrated", help="Temperature-scaled (see Calibration), "
                       "so one threshold means the same for every model.")
    preds = {names[i.id]: ui.shared_figure(("calibrated", f.weights_sha256), metrics.calibrated, f.predictions, f.held_out)
             if scaled else f.predictions for _, i, f in chosen}
    results = {name: (pred, metrics.at_threshold(pred, threshold)) for name, pred in preds.items()}
    if len(results) == 1:
        (pred, cov), = results.values()
        for c, (label, value, change) in zip(st.columns(3), words.threshold_metrics(pred, cov)):
            c.metric(label, value, change, delta_color="off" if label == "Answered" else "normal")
    else:
        st.dataframe(pd.DataFrame(words.threshold_rows(results)), hide_index=True, key="threshold_table",
                     column_config=dict.fromkeys(["coverage", "accuracy on those", "accuracy on all"], PERCENT))
    curves = {name: metrics.coverage_curve(pred) for name, pred in preds.items()}
    ui.chart(st, viz_evaluate.coverage_accuracy(curves, {n: cov for n, (_, cov) in results.items()}), key="coverage_curve")
    ui.show_code(metrics.at_threshold)


def robustness_section(chosen, names) -> None:
    st.markdown(words.INTRO["robustness"])
    n = st.select_slider("Test images per point", [500, 1000, 2000, 5000], value=1000, key="eval_n_robust")
    examples = robustness.perturbation_examples(data.test_images[0])  # the first test image (a 7), changed, with titles
    ui.chart(st, ui.shared_figure(("robust examples",), viz.image_grid, *examples, cols=len(examples[0]),
                                  height_per_row=110, zmax=255), key="robust_examples")
    results = {names[info.id]: ui.model_robustness(model, info, data, n) for model, info, _ in chosen}
    which = ("robust", n, *((names[info.id], found.weights_sha256) for _, info, found in chosen))
    ui.chart(st, ui.shared_figure(which, viz_evaluate.robustness_curves, results, robustness.AXIS_TITLES), key="robust_curves")
    with st.expander("The numbers"):
        st.dataframe(pd.DataFrame(words.robustness_rows(results)), hide_index=True, key="robust_table")
    ui.show_code(robustness.rotate, robustness.shift, robustness.add_noise, robustness.thicken)


def embedding_section(chosen, names) -> None:
    st.markdown(words.INTRO["embedding"])
    by_id = {info.id: (model, info, found) for model, info, found in chosen}
    pick = st.radio("Model", list(by_id), horizontal=True, key="eval_emb_model", format_func=names.get) \
        if len(by_id) > 1 else chosen[0][1].id
    model, info, found = by_id[pick]
    pred = found.predictions
    e1, e2, e3 = st.columns([2, 1, 1])
    layer = e1.selectbox("Layer", embeddings.embedding_layers(model), key=f"eval_layer_{info.id}",
                         format_func=lambda n: embeddings.layer_label(model, n))
    method = e2.radio("Method", ["pca", "tsne"], horizontal=True, key="eval_method",
                      format_func={"pca": "PCA", "tsne": "t-SNE"}.get)
    n_points = e3.select_slider("Points", [500, 1000, 1500, 2000], value=1000, key="eval_points")
    ui.show_code(embeddings.layer_features, embeddings.project)
    if (emb := ui.model_embedding(model, info, data, layer, method, n_points)) is None:
        return
    positions, predicted = pred.index[emb.rows].numpy(), [pred.class_names[int(p)] for p in pred.predicted[emb.rows]]
    left, right = st.columns([3, 1])
    fig = ui.shared_figure(("map", found.weights_sha256, layer, method, n_points), viz_evaluate.embedding_map, emb.coords,
                           emb.targets, pred.class_names, positions, predicted, title=words.map_title(model, emb))
    event = ui.chart(left, fig, key=f"emb_{info.id}_{layer}_{method}_{n_points}", on_select="rerun",
                           selection_mode="points")
    points = event.selection.points if event and event.selection else []
    pos = words.clicked_position(points, positions[0])
    if not points:
        right.caption("Click a point on the map to see its image here.")
    ui.chart(right, viz.image_heatmap(data.test_images[pos], title=f"test image {pos}", height=260), key="emb_image")
    right.markdown(words.point_caption(pred, pos))


def leaderboard_section(*_) -> None:
    st.caption(f"Every {data.spec.title} model, best first (⚠️: below 50%). Two-class (3-vs-7) accuracies answer an "
               "easier question, so they are ranked apart from the ten-class ones. Click a column's name to sort by it.")
    st.dataframe(ui.models_table(ranking.ranked(infos), ranks=True), hide_index=True, key="leaderboard", column_config={
        "test accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)})
    ui.dataset_comparison()


SECTIONS = {"Confusion matrix": confusion_section, "Per-class scores": scores_section,  # each runs as a fragment
            "Confident mistakes": mistakes_section, "Calibration": calibration_section,  # (its widgets rerun only
            "Confidence threshold": threshold_section, "Robustness": robustness_section,  # it), and only the one the
            "What the layers see": embedding_section, "Leaderboard": leaderboard_section}  # student opened runs
LINK = ui.ViewPage("eval", "eval_model", "eval_section", tuple(SECTIONS), compare_key="eval_compare",
                   many_key="eval_models")  # the models and the section open, kept in the address

data = ui.page_setup("Evaluate", "📊", words.INTRO["page"])
ui.store_problems()
infos = ui.dataset_models()
if not infos:
    st.info(f"No model trained on {data.spec.title} yet. Train one on a stage page, then see where it goes wrong.")
    ui.train_links()
    st.stop()
ui.restore_view(LINK, data)
chosen = ui.models_with_analyses("eval_model", "eval_compare", "eval_models", data)
if not chosen:
    st.info("Pick another model above, or train this one again on its stage page.")
    leaderboard_section()
    st.stop()
names = ranking.display_names([info for _, info, _ in chosen])
headline(chosen, names)
st.session_state.setdefault("eval_section", "Confusion matrix")
section = st.segmented_control("Look at", list(SECTIONS), required=True, key="eval_section",
                               help="Only the part you open is computed and drawn.")
ui.share_view(LINK, [i.id for _, i, _ in chosen], section, side_by_side=bool(st.session_state.get("eval_compare")))
st.fragment(SECTIONS[section])(chosen, names)
ui.take_home([info for _, info, _ in chosen], "eval")
