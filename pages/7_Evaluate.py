"""Stage 7: turn a trained model inside out on the 10,000 test images -- where it fails, and how sure it is."""

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from digitlab import evaluate as ev
from digitlab import ui, viz

data = ui.page_setup(
    "Evaluate",
    "📊",
    "One number (accuracy) hides a lot. Here a trained model meets every test image it never saw in training: "
    "**which digits it confuses, how sure it is when it is wrong, what a confidence threshold buys, how it copes "
    "with rotated, shifted, noisy or bold digits, and what its layers make of the images.**",
)
ui.store_problems()


def progress(label: str):
    """A progress callback that only draws a bar when there is work to show (cached results skip it)."""
    holder: dict = {}

    def update(fraction: float, text: str) -> None:
        if "bar" not in holder:
            holder["bar"] = st.progress(0.0, text=label)
        holder["bar"].progress(min(1.0, max(0.0, fraction)), text=f"{label} · {text}")

    def done() -> None:
        if "bar" in holder:
            holder["bar"].empty()

    return update, done


def leaderboard_section() -> None:
    st.header("Leaderboard")
    st.caption("Every stored model, best first. 3-vs-7 accuracies answer an easier two-class question, "
               "so they are ranked apart from the ten-digit models.")
    rows = ev.leaderboard(ui.get_store().list())
    table = pd.DataFrame(rows, columns=["rank", "model", "task", "test accuracy", "parameters",
                                        "training time (s)", "epochs", "preset", "trained", "id"])
    st.dataframe(
        table, hide_index=True, key="leaderboard",
        column_config={
            "test accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
            "parameters": st.column_config.NumberColumn(format="localized"),
        },
    )


infos = ui.get_store().list()
if not infos:
    st.info("No trained model yet. Train one on a stage page, then come back to see where it goes wrong.")
    for path, title, icon, _ in ui.existing_stages():
        if path.split("/")[-1][0] in "234":
            try:
                st.page_link(path, label=f"Train on the {title} page", icon=icon)
            except StreamlitAPIException:  # run on its own (no app.py navigation): name the page instead
                st.markdown(f"- {icon} the **{title}** page")
    st.stop()

# ---------------------------------------------------------------- choose
left, right = st.columns(2)
with left:
    info_a = ui.model_picker("Model", key="eval_model", help="Every model in the store, newest first.")
with right:
    compare = st.toggle("Compare with a second model", key="eval_compare")
    if compare and info_a is not None and "eval_model_b" not in st.session_state:
        others = [i.id for i in infos if i.id != info_a.id]  # start on a different model than the first
        if others:
            st.session_state["eval_model_b"] = others[0]
    info_b = ui.model_picker("Second model", key="eval_model_b") if compare else None
    if info_b is not None and info_a is not None and info_b.id == info_a.id:
        st.info("Pick a different second model to compare.")

chosen = []
for info in (info_a, info_b):
    if info is not None and info.id not in [i.id for _, i in chosen]:
        loaded = ui.load_model(info.id)  # a missing or damaged file: st.error, and None
        if loaded is not None:
            chosen.append(loaded)
if not chosen:
    st.info("Pick another model above, or train this one again on its stage page.")
    leaderboard_section()
    st.stop()

update, done = progress("Predicting the test set")
with st.spinner("Running the model on every test image..."):
    preds = [ev.cached_predictions(m, info, data, update) for m, info in chosen]
done()


def name_of(info) -> str:
    name = f"{info.config.title} ({info.config.preset})"
    twins = [i for _, i in chosen if f"{i.config.title} ({i.config.preset})" == name]
    return f"{name} · {info.id}" if len(twins) > 1 else name  # two runs of one preset: tell them apart


cols = st.columns(len(chosen))
for col, (_, info), pred in zip(cols, chosen, preds):
    with col:
        st.subheader(name_of(info))
        if pred.n_classes == 2:
            st.caption("A 3-vs-7 model: scored on the test 3s and 7s only, as two classes (7 and 3).")
        c1, c2, c3 = st.columns(3)
        c1.metric("Test images", f"{len(pred.targets):,}")
        c2.metric("Accuracy", f"{pred.accuracy:.2%}")
        c3.metric("Mistakes", f"{int((~pred.correct).sum()):,}")

# ---------------------------------------------------------------- 1. confusion
st.header("1. Confusion matrix: which digits get mixed up")
st.markdown("Row = the true label, column = the model's answer. The diagonal is right; everything else is a "
            "mistake. **Click a cell** (or pick it in the two boxes) to see those images.")
# One model: the matrix on the left, the chosen cell's images on the right. Two: a column each.
cols = st.columns([1.1, 1]) if len(chosen) == 1 else st.columns(2)
for i, ((_, info), pred) in enumerate(zip(chosen, preds)):
    chart_area, cell_area = (cols[0], cols[1]) if len(chosen) == 1 else (cols[i], cols[i])
    with chart_area:
        k = info.id
        cm = ev.confusion_matrix(pred.targets, pred.predicted, pred.n_classes)
        names = list(pred.class_names)
        st.markdown(f"**{name_of(info)}**")
        event = st.plotly_chart(viz.confusion_heatmap(cm, names), key=f"cm_{k}",
                                on_select="rerun", selection_mode="points")
        with st.expander("The matrix as numbers"):
            st.dataframe(pd.DataFrame(cm.numpy(), index=[f"true {n}" for n in names],
                                      columns=[f"pred {n}" for n in names]), key=f"cm_table_{k}")
    with cell_area:
        points = event.selection.points if event and event.selection else []
        true_key, pred_key = f"cm_true_{k}", f"cm_pred_{k}"
        if true_key not in st.session_state:  # start on the most common confusion
            off = cm.clone()
            off.fill_diagonal_(-1)
            t, p = divmod(int(off.argmax()), pred.n_classes)
            st.session_state[true_key], st.session_state[pred_key] = names[t], names[p]
        if points and "x" in points[0] and "y" in points[0]:
            picked = (str(points[0]["y"]), str(points[0]["x"]))
            if st.session_state.get(f"cm_last_{k}") != picked and picked[0] in names and picked[1] in names:
                st.session_state[true_key], st.session_state[pred_key] = picked
                st.session_state[f"cm_last_{k}"] = picked
        s1, s2 = st.columns(2)
        t_name = s1.selectbox("True label", names, key=true_key)
        p_name = s2.selectbox("Predicted", names, key=pred_key)
        members = ev.cell_members(pred, names.index(t_name), names.index(p_name))
        st.markdown(f"**{len(members):,}** test images are **{t_name}** and were called **{p_name}**"
                    + (" (the 40 the model was surest about)" if len(members) > 40 else "") + ".")
        if len(members):
            shown = members[:40]
            st.plotly_chart(viz.image_grid(data.test_images[pred.index[shown]],
                                           [f"{float(pred.confidence[r]):.0%}" for r in shown], cols=8,
                                           height_per_row=80, zmax=255), key=f"cell_{k}")
            st.caption("Above each image: the probability the model gave its answer.")
ui.show_code(ev.confusion_matrix)

# ---------------------------------------------------------------- 2. per class
st.header("2. Per-class precision, recall and F1")
st.markdown("**Precision**: of the images the model called *c*, the share that really are *c*. "
            "**Recall**: of the real *c*'s, the share it found. **F1** balances the two.")
cols = st.columns(len(chosen))
for col, (_, info), pred in zip(cols, chosen, preds):
    cm = ev.confusion_matrix(pred.targets, pred.predicted, pred.n_classes)
    table = pd.DataFrame(ev.per_class_scores(cm, pred.class_names))
    col.caption(name_of(info))
    col.dataframe(table, hide_index=True, key=f"scores_{info.id}", column_config={
        c: st.column_config.NumberColumn(format="percent") for c in ("precision", "recall", "F1")})
ui.show_code(ev.per_class_scores)

# ---------------------------------------------------------------- 3. mistakes
st.header("3. The most confident mistakes")
st.markdown("Wrong answers given with the highest probability. Some are the model's fault; some digits are "
            "hard even for people, and a few labels in MNIST are simply wrong.")
n_mistakes = st.slider("How many", 10, 50, 20, step=10, key="eval_n_mistakes")
for (_, info), pred in zip(chosen, preds):
    rows = ev.confident_mistakes(pred, n_mistakes)
    names = pred.class_names
    st.caption(f"{name_of(info)} · title: true → predicted (probability)")
    if len(rows) == 0:
        st.success("No mistakes at all on this test set.")
        continue
    titles = [f"{names[int(pred.targets[r])]}→{names[int(pred.predicted[r])]} {float(pred.confidence[r]):.0%}"
              for r in rows]
    st.plotly_chart(viz.image_grid(data.test_images[pred.index[rows]], titles, cols=10, height_per_row=95, zmax=255),
                    key=f"mistakes_{info.id}")
    with st.expander("As a table"):
        st.dataframe(pd.DataFrame({
            "test image": pred.index[rows].tolist(),
            "true": [names[int(pred.targets[r])] for r in rows],
            "predicted": [names[int(pred.predicted[r])] for r in rows],
            "probability": [float(pred.confidence[r]) for r in rows],
        }), hide_index=True, key=f"mistakes_table_{info.id}")

# ---------------------------------------------------------------- 4. threshold
st.header("4. Answer only when sure: a confidence threshold")
st.markdown("The model may say *not sure* when its top probability is below the threshold. Fewer answers "
            "(coverage), but the ones it gives are more often right.")


@st.fragment
def threshold_section() -> None:
    """Only this part reruns as the slider moves: the rest of the page stays put."""
    threshold = st.slider("Confidence threshold", 0.0, 0.999, 0.9, step=0.001, format="%.3f", key="eval_threshold")
    marks, curves = {}, {}
    cols = st.columns(len(chosen))
    for col, (_, info), pred in zip(cols, chosen, preds):
        cov = ev.at_threshold(pred, threshold)
        marks[name_of(info)], curves[name_of(info)] = cov, ev.coverage_curve(pred)
        c1, c2, c3 = col.columns(3)
        c1.metric("Answered", f"{cov.answered:,} of {cov.total:,}", f"{cov.coverage:.1%} coverage", delta_color="off")
        c2.metric("Accuracy on those", f"{cov.accuracy:.2%}" if cov.answered else "—",
                  f"{cov.accuracy - pred.accuracy:+.2%} vs all" if cov.answered else None)
        c3.metric("Mistakes left", f"{cov.answered - cov.correct:,}")
    st.plotly_chart(viz.coverage_accuracy(curves, marks), key="coverage_curve")


threshold_section()
ui.show_code(ev.at_threshold)

# ---------------------------------------------------------------- 5. robustness
st.header("5. Robustness: harder versions of the test images")
st.markdown("Each test image rotated, shifted, covered in noise, or its strokes thickened (a max-pool "
            "dilation), then given to the model. Nothing like this was in the training set (unless the "
            "model was trained with augmentation).")
n_robust = st.select_slider("Test images per point", [500, 1000, 2000, 5000], value=1000, key="eval_n_robust")
sample = data.test_images[:1]  # the first test image (a 7), changed a little, then more
ex_imgs, ex_titles = [sample[0]], ["original"]
for kind, (_, levels, _) in ev.PERTURBATIONS.items():
    for level in levels[1:4]:
        ex_imgs.append(ev.perturb(sample, kind, level)[0])
        ex_titles.append(f"{kind} {level:g}")
st.plotly_chart(viz.image_grid(ex_imgs, ex_titles, cols=len(ex_imgs), height_per_row=110, zmax=255),
                key="robust_examples")
results = {}
for m, info in chosen:
    update, done = progress(f"Robustness of {name_of(info)}")
    with st.spinner(f"Testing {name_of(info)} on {n_robust:,} changed images per point..."):
        results[name_of(info)] = ev.cached_robustness(m, info, data, n_robust, update)
    done()
st.plotly_chart(viz.robustness_curves(results, {k: v[0] for k, v in ev.PERTURBATIONS.items()}),
                key="robust_curves")
with st.expander("The numbers"):
    st.dataframe(pd.DataFrame([{"model": name, "change": kind, "level": lvl, "accuracy": acc}
                               for name, res in results.items() for kind, pts in res.items() for lvl, acc in pts]),
                 hide_index=True, key="robust_table")
ui.show_code(ev.rotate, ev.shift, ev.add_noise, ev.thicken)

# ---------------------------------------------------------------- 6. embeddings
st.header("6. What the layers see: test images as points")
st.markdown("Each test image becomes a long list of numbers (784 pixels, or a layer's outputs), squeezed into "
            "two dimensions. **PCA** keeps the two directions of largest spread; **t-SNE** keeps neighbours "
            "together. Digits that form clean islands are easy to tell apart at that layer. Click a point to "
            "see its image.")
m_emb, info_emb = chosen[0]
if len(chosen) > 1:
    by_id = {i.id: (m, i) for m, i in chosen}
    pick = st.radio("Model", list(by_id), horizontal=True, key="eval_emb_model",
                    format_func=lambda i: name_of(by_id[i][1]))
    m_emb, info_emb = by_id[pick]
pred_emb = preds[[i.id for _, i in chosen].index(info_emb.id)]
layers = ev.embedding_layers(m_emb)
e1, e2, e3 = st.columns([2, 1, 1])
layer = e1.selectbox("Layer", layers, key=f"eval_layer_{info_emb.id}", format_func=lambda n: ev.layer_label(m_emb, n))
method = e2.radio("Method", ["pca", "tsne"], horizontal=True, key="eval_method",
                  format_func=lambda s: {"pca": "PCA", "tsne": "t-SNE"}[s])
n_points = e3.select_slider("Points", [500, 1000, 1500, 2000], value=1000, key="eval_points")
with st.spinner(f"Projecting {n_points:,} test images with {'PCA' if method == 'pca' else 't-SNE'}..."):
    try:
        emb = ev.cached_embedding(m_emb, info_emb, data, layer, method, n_points)
    except (ValueError, RuntimeError) as e:
        st.error(f"This map cannot be drawn for {ev.layer_label(m_emb, layer)}: {e}")
        emb = None
if emb is not None:
    positions = pred_emb.index[emb.rows].numpy()
    predicted = [pred_emb.class_names[int(p)] for p in pred_emb.predicted[emb.rows]]
    how = f"{emb.dims:,} number{'s' if emb.dims != 1 else ''} per image"
    if method == "pca":
        how += f"; the two axes keep {emb.explained:.0%} of the spread"
    left, right = st.columns([3, 1])
    with left:
        event = st.plotly_chart(
            viz.embedding_map(emb.coords, emb.targets, pred_emb.class_names, positions, predicted,
                              title=f"{ev.layer_label(m_emb, layer)} · {how}"),
            key=f"emb_{info_emb.id}_{layer}_{method}_{n_points}", on_select="rerun", selection_mode="points")
    with right:
        points = event.selection.points if event and event.selection else []
        pos = int(points[0]["customdata"][0]) if points and points[0].get("customdata") else int(positions[0])
        if not points:
            st.caption("Click a point on the map to see its image here.")
        row = int((pred_emb.index == pos).nonzero()[0, 0])
        st.plotly_chart(viz.image_heatmap(data.test_images[pos], title=f"test image {pos}", height=260), key="emb_image")
        st.markdown(f"label **{pred_emb.class_names[int(pred_emb.targets[row])]}**, predicted "
                    f"**{pred_emb.class_names[int(pred_emb.predicted[row])]}** "
                    f"({float(pred_emb.confidence[row]):.1%})")
ui.show_code(ev.layer_features, ev.project)

leaderboard_section()
