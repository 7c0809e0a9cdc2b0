"""Stage 2: is it a 3 or a 7? A pixel-similarity baseline, then a linear model trained by hand (fastai lesson 4)."""

import pandas as pd
import streamlit as st

from digitlab import lessons, ui, viz
from digitlab.models import Linear1, init_params
from digitlab.train import batch_accuracy, mnist_loss, sgd_step

data = ui.page_setup(
    "Linear 3 vs 7",
    "📏",
    "One question first: **is this digit a 3 or a 7?** We start with no learning at all (compare with the "
    "average digit), then let a linear model learn one weight per pixel by gradient descent.",
)

# ---------------------------------------------------------------- 1. pixel similarity
st.header("1. The baseline: compare with the average digit")
base = lessons.pixel_baseline(data)
c1, c2, c3 = st.columns([1, 1, 1.3])
c1.plotly_chart(viz.image_heatmap(base.mean3, "The ideal 3 (mean of the training 3s)", zmax=1, height=320),
                key="mean3")
c2.plotly_chart(viz.image_heatmap(base.mean7, "The ideal 7 (mean of the training 7s)", zmax=1, height=320),
                key="mean7")
c3.plotly_chart(lessons.baseline_figure(base), key="baseline_acc")
st.markdown(
    f"A digit is called a 3 when it is closer to the ideal 3 than to the ideal 7. **L1** is the mean absolute pixel "
    f"difference, **L2** the root of the mean squared difference (it punishes big differences more). On every test "
    f"3 and 7 this gets **{base.accuracy['l1']['all']:.1%}** (L1) and **{base.accuracy['l2']['all']:.1%}** (L2) "
    "with nothing learned: the number any model must beat."
)
pool, pool_labels = lessons.pick_3s_and_7s(data)
i = st.number_input(
    f"Test digit to compare (0-{len(pool) - 1})", min_value=0, max_value=len(pool) - 1, value=0, key="lin_pick",
    help="Which of the test 3s and 7s to measure against the two ideal digits.",
)
d = lessons.digit_distances(pool[i], base)
c1, c2 = st.columns([1, 2])
c1.plotly_chart(viz.image_heatmap(pool[i], f"Test digit {i}: a {int(pool_labels[i])}", height=300), key="pick_img")
c2.dataframe(
    pd.DataFrame([{"distance": k.upper(), "to the ideal 3": v["to 3"], "to the ideal 7": v["to 7"],
                   "baseline says": v["says"]} for k, v in d.items()]),
    hide_index=True,
    column_config={"to the ideal 3": st.column_config.NumberColumn(format="%.4f"),
                   "to the ideal 7": st.column_config.NumberColumn(format="%.4f")},
)
ui.show_code(lessons.mnist_distance, lessons.is_3, title="The baseline's code")

# ---------------------------------------------------------------- 2. one step by hand
st.header("2. A linear model, one step at a time")
st.markdown(
    "`linear1(xb) = xb @ weights + bias`: one weight per pixel, added up, plus a bias. The sigmoid squashes the "
    "result to 0..1 (near 1 means *3*), and `mnist_loss` measures how far each prediction is from its target. "
    "`loss.backward()` gives the gradient of every weight; one SGD step moves each weight a little against it."
)
c1, c2 = st.columns(2)
std = c1.radio(
    "Initial weights", [1.0, 0.01], key="lin_std", horizontal=True,
    format_func=lambda s: "the seed's: std 1" if s == 1.0 else "better: std 0.01",
    help="init_params draws the starting weights with this spread; the seed uses 1.",
)
step_lr = c2.select_slider(
    "Learning rate for the step", options=list(ui.LR_OPTIONS), value=1.0, key="lin_step_lr",
    format_func=lambda v: f"{v:g}", help="How far the one step moves the weights against the gradient.",
)
step = lessons.one_sgd_step(data, init_std=std, lr=step_lr)
m = st.columns(4)
m[0].metric("Loss before", f"{step.before.loss:.4f}")
m[1].metric("Loss after one step", f"{step.after.loss:.4f}", delta=f"{step.after.loss - step.before.loss:+.4f}",
            delta_color="inverse")
m[2].metric("Batch accuracy before", f"{step.before.accuracy:.1%}")
m[3].metric("Batch accuracy after", f"{step.after.accuracy:.1%}",
            delta=f"{step.after.accuracy - step.before.accuracy:+.1%}")
c1, c2, c3 = st.columns(3)
c1.plotly_chart(lessons.predictions_figure(step), key="step_preds")
c2.plotly_chart(viz.diverging_heatmap(step.weight_grad, "Weight gradient (784 as 28x28)", height=340),
                key="step_grad")
c3.plotly_chart(viz.diverging_heatmap(step.after.weights - step.before.weights, "What the step changed", height=340),
                key="step_change")
st.caption(f"Bias gradient {step.bias_grad:+.5f}; the step moved every weight by -lr x its gradient.")
ui.show_code(init_params, Linear1.__init__, Linear1.forward, mnist_loss, batch_accuracy, sgd_step,
             lessons.one_sgd_step)

# ---------------------------------------------------------------- 3. accuracy is not the loss
st.header("3. Why we follow the loss, not the accuracy")
lva = lessons.accuracy_is_not_the_loss(data, init_std=std)
c1, c2 = st.columns([2, 1])
c1.plotly_chart(lessons.loss_vs_accuracy_figure(lva), key="loss_vs_acc")
c2.markdown(
    f"Moving the weights by **{lva.tiny_step:g}** x the gradient changes the loss by **{lva.tiny_loss_change:+.6f}** "
    f"and the accuracy by **{lva.tiny_accuracy_change:+.2%}**.\n\n"
    "Accuracy only changes when a prediction crosses the 0.5 line, so for small changes it is flat: its "
    "gradient is zero and gives SGD nothing to follow. The loss responds to every small change, so we "
    "train on the loss and *report* the accuracy."
)
ui.show_code(lessons.accuracy_is_not_the_loss, title="The demonstration's code")

# ---------------------------------------------------------------- 4. training
st.header("4. Train it on every 3 and 7")
config = ui.preset_picker(("linear",), key="lin_preset")
config = ui.training_controls(config, "lin")
if st.button("Train", type="primary", key="lin_train", help="Start training in the background; it keeps going "
             "if you switch page, and this page picks it up again when you come back."):
    ui.start_training(config, data, "lin_job", runs_key="lin_runs")
snap = ui.training_panel("lin_job")
if snap is not None and snap.finished and (verdict := lessons.run_verdict(snap.config, snap.history)):
    st.warning(verdict)
ui.one_more_epoch(snap, data, "lin_job", runs_key="lin_runs")
if snap is not None and snap.finished and snap.history:
    st.metric("Test accuracy (3s and 7s)", f"{snap.history[-1]['test_accuracy']:.2%}",
              delta=f"{snap.history[-1]['test_accuracy'] - base.accuracy['l2']['all']:+.2%} vs the L2 baseline")
st.subheader("Compare runs")
ui.runs_comparison("lin_runs", lessons.run_label)

# ---------------------------------------------------------------- 5. the weights
st.header("5. The weights as an image")
st.markdown(
    "Each of the 784 weights belongs to one pixel. Red pixels push the answer towards *3*, blue towards *7*. "
    "Starting with std 1 saturates the sigmoid (most first predictions are almost exactly 0 or 1, where its "
    "slope is nearly zero), so the first steps barely move; std 0.01 starts every prediction near 0.5."
)
trained_id = snap.model_id if snap is not None and snap.finished and snap.model_id else ""
if not trained_id:
    picked = ui.model_picker("Trained model to show (train one above, or pick a stored one)", "lin_show_model",
                             where=lambda i: i.config.kind == "linear", help="Any 3-vs-7 linear model in the store.")
    trained_id = picked.id if picked else ""
reports = [lessons.init_report(data, s) for s in (1.0, 0.01)]
cols = st.columns(4)
for col, r in zip(cols, reports):
    name = "the seed's init (std 1)" if r.std == 1.0 else "better init (std 0.01)"
    col.plotly_chart(viz.diverging_heatmap(lessons.init_weights(r.std), f"Start: {name}", height=330),
                     key=f"init_{r.std}")
    col.caption(f"First batch: loss {r.loss:.3f}, {r.saturated:.0%} of sigmoids saturated, "
                f"mean |gradient| {r.mean_abs_grad:.5f}")
trained_cols = cols[2:]
with trained_cols[0]:
    loaded = ui.load_model(trained_id) if trained_id else None
    if loaded:
        model, info = loaded
        acc = info.metrics.get("test_accuracy", float("nan"))
        st.plotly_chart(viz.diverging_heatmap(lessons.linear_weights(model),
                                              f"Trained: init std {info.config.init_std:g}, {acc:.1%}", height=330),
                        key=f"trained_w_{info.id}")
        st.caption(f"{lessons.run_label(info.config)}; {len(info.history)} epoch(s). It redraws after each run "
                   "and after each extra epoch.")
        change = lessons.weight_change(model, info.config)
        if change is not None:
            trained_cols[1].plotly_chart(viz.diverging_heatmap(change, "What training changed", height=330),
                                         key=f"trained_dw_{info.id}")
            trained_cols[1].caption("Trained minus starting weights: where the 3-vs-7 pattern shows, even when "
                                    "the std-1 start still dominates the weights themselves.")
    else:
        st.info("Train a model above and its learned weights appear here.")
