"""Stage 2: is it a 3 or a 7? A pixel-similarity baseline, then a linear model trained by hand (fastai lesson 4).
Any two classes of either dataset may take 3 and 7's place (the pair picker); 3 vs 7 is the default.

What depends only on the data and a setting is computed once per server (ui.shared); a widget reruns its section."""

import streamlit as st

from digitlab import lessons, ui
from digitlab.data import pair_task, plural
from digitlab.models import Linear1, init_params
from digitlab.train import batch_accuracy, mnist_loss, sgd_step

LINK = ui.LinkedPage("lin", default="linear-seed")  # the training settings travel in the address


def the_pair(data) -> tuple[int, int]:
    st.markdown("**The two classes.** 3 vs 7 is the lesson's; pick any two (on Fashion-MNIST, Shirt vs T-shirt/top "
                "is the hard pair). Every section below runs on them.")
    pair = ui.class_pair_picker(data, "lin_pair")
    st.markdown(f"One question first: **{lessons.pair_question(data, pair)}** We start with no learning at all "
                f"(compare with the average {data.spec.noun}), then let a linear model learn one weight per pixel by "
                "gradient descent.")
    return pair


def baseline(data, pair) -> None:
    st.header("1. The baseline: compare with the average image")
    base, mean3, mean7, accuracy = ui.shared(lessons.baseline_view, data, pair)
    yes, no = base.names
    c1, c2, c3 = st.columns([1, 1, 1.3])
    ui.chart(c1, mean3, key="mean3")
    ui.chart(c2, mean7, key="mean7")
    ui.chart(c3, accuracy, key="baseline_acc")
    st.markdown(
        f"An image is called a {yes} when it is closer to the ideal {yes} than to the ideal {no}. **L1** is the mean "
        f"absolute pixel difference, **L2** the root of the mean squared difference (it punishes big differences "
        f"more). On every test {yes} and {no} this gets **{base.accuracy['l1']['all']:.1%}** (L1) and "
        f"**{base.accuracy['l2']['all']:.1%}** (L2) with nothing learned: the number any model must beat."
    )
    compare_one_digit(data, pair, base.n_yes + base.n_no)
    ui.show_code(lessons.mnist_distance, lessons.is_3, title="The baseline's code")


@st.fragment
def compare_one_digit(data, pair, pool_size: int) -> None:
    yes, no = lessons.pair_names(data, pair)
    i = min(int(st.number_input(
        f"Test image to compare (0-{pool_size - 1})", min_value=0, max_value=9_999, value=0, key="lin_pick",
        help=f"Which of the test {plural(yes)} and {plural(no)} to measure against the two ideal images.",
    )), pool_size - 1)
    pool, _ = ui.shared(lessons.pick_pair, data, pair)
    base = ui.shared(lessons.baseline_view, data, pair)[0]
    c1, c2 = st.columns([1, 2])
    ui.chart(c1, ui.shared(lessons.test_digit_figure, data, i, pair), key="pick_img")
    to_yes, to_no = f"to the ideal {yes}", f"to the ideal {no}"
    c2.dataframe(  # one table per test image, for the class
        ui.shared_table(("digit distances", data, pair, i), lambda: lessons.distance_rows(pool[i], base)),
        hide_index=True,
        column_config={to_yes: st.column_config.NumberColumn(format="%.4f"),
                       to_no: st.column_config.NumberColumn(format="%.4f")},
    )


@st.fragment
def by_hand(data, pair) -> None:
    """Sections 2 and 3 share the starting weights, so they rerun together."""
    st.header("2. A linear model, one step at a time")
    st.markdown(
        "`linear1(xb) = xb @ weights + bias`: one weight per pixel, added up, plus a bias. The sigmoid squashes the "
        f"result to 0..1 (near 1 means *{data.classes[pair[0]]}*), and `mnist_loss` measures how far each "
        "prediction is from its target. "
        "`loss.backward()` gives the gradient of every weight; one SGD step moves each weight a little against it."
    )
    ui.glossary("sigmoid", "autograd", "learning rate", "batch size")
    c1, c2 = st.columns(2)
    std = c1.radio(
        "Initial weights", [1.0, 0.01], key="lin_std", horizontal=True,
        format_func=lambda s: "the seed's: std 1" if s == 1.0 else "better: std 0.01",
        help="init_params draws the starting weights with this spread; the seed uses 1.",
    )
    step_lr = c2.select_slider(
        "Learning rate for the step", options=list(lessons.LR_OPTIONS), value=1.0, key="lin_step_lr",
        format_func=lambda v: f"{v:g}", help="How far the one step moves the weights against the gradient.",
    )
    one_step(*ui.shared(lessons.step_view, data, std, step_lr, pair))
    accuracy_is_not_the_loss(*ui.shared(lessons.loss_view, data, std, pair))


def one_step(step, predictions, gradient, change) -> None:
    m = st.columns(4)
    m[0].metric("Loss before", f"{step.before.loss:.4f}")
    m[1].metric("Loss after one step", f"{step.after.loss:.4f}", delta=f"{step.after.loss - step.before.loss:+.4f}",
                delta_color="inverse")
    m[2].metric("Batch accuracy before", f"{step.before.accuracy:.1%}")
    m[3].metric("Batch accuracy after", f"{step.after.accuracy:.1%}",
                delta=f"{step.after.accuracy - step.before.accuracy:+.1%}")
    for col, fig, key in zip(st.columns(3), (predictions, gradient, change), ("step_preds", "step_grad", "step_change")):
        ui.chart(col, fig, key=key)
    st.caption(f"Bias gradient {step.bias_grad:+.5f}; the step moved every weight by -lr x its gradient.")
    ui.show_code(init_params, Linear1.__init__, Linear1.forward, mnist_loss, batch_accuracy, sgd_step,
                 lessons.one_sgd_step)


def accuracy_is_not_the_loss(lva, figure) -> None:
    st.header("3. Why we follow the loss, not the accuracy")
    c1, c2 = st.columns([2, 1])
    ui.chart(c1, figure, key="loss_vs_acc")
    c2.markdown(
        f"Moving the weights by **{lva.tiny_step:g}** x the gradient changes the loss by "
        f"**{lva.tiny_loss_change:+.6f}** and the accuracy by **{lva.tiny_accuracy_change:+.2%}**.\n\n"
        "Accuracy only changes when a prediction crosses the 0.5 line, so for small changes it is flat: its "
        "gradient is zero and gives SGD nothing to follow. The loss responds to every small change, so we "
        "train on the loss and *report* the accuracy."
    )
    ui.show_code(lessons.accuracy_is_not_the_loss, title="The demonstration's code")


@st.fragment
def training(data, pair) -> None:
    yes, no = lessons.pair_names(data, pair)
    st.header(f"4. Train it on every {yes} and {no}")
    preset = ui.preset_picker(("linear",), key="lin_preset").with_(task=pair_task(*pair))
    config = ui.training_controls(preset, "lin")
    ui.share_setup(LINK, config, data)
    ui.train_section(config, data, "lin", after_run=lambda snap: against_the_baseline(data, snap))


def against_the_baseline(data, snap) -> None:
    pair = snap.config.pair
    base = ui.shared(lessons.baseline_view, data, pair)[0]
    acc = snap.history[-1]["test_accuracy"]
    st.metric(f"Test accuracy ({plural(base.names[0])} and {plural(base.names[1])})", f"{acc:.2%}",
              delta=f"{acc - base.accuracy['l2']['all']:+.2%} vs the L2 baseline")


@st.fragment
def weights(data, pair) -> None:
    yes, no = lessons.pair_names(data, pair)
    st.header("5. The weights as an image")
    st.markdown(
        f"Each of the 784 weights belongs to one pixel. Red pixels push the answer towards *{yes}*, blue towards *{no}*. "
        "Starting with std 1 saturates the sigmoid (most first predictions are almost exactly 0 or 1, where its "
        "slope is nearly zero), so the first steps barely move; std 0.01 starts every prediction near 0.5."
    )
    cols = st.columns(4)
    for col, (r, fig) in zip(cols, ui.shared(lessons.init_views, data, pair)):
        ui.chart(col, fig, key=f"init_{r.std}")
        col.caption(f"First batch: loss {r.loss:.3f}, {r.saturated:.0%} of sigmoids saturated, "
                    f"mean |gradient| {r.mean_abs_grad:.5f}")
    trained_weights(cols[2], cols[3], pair)


def trained_model_id(pair) -> str:
    """The model this session's last run saved, else one picked from the store."""
    job = st.session_state.get(f"{ui.dataset_prefix('lin', ui.dataset_in_use())}_job")
    snap = ui.get_queue().snapshot(job) if job else None
    if snap is not None and snap.finished and snap.model_id and snap.config.pair == pair:
        return snap.model_id
    picked = ui.model_picker("Trained model to show (train one above, or pick a stored one)", "lin_show_model",
                             where=lambda i: i.config.kind == "linear" and i.config.pair == pair,
                             help="Any linear model of these two classes in the store.")
    return picked.id if picked else ""


def trained_weights(left, right, pair) -> None:
    model_id = trained_model_id(pair)
    loaded = ui.load_model(model_id) if model_id else None
    if not loaded:
        left.info("Train a model above and its learned weights appear here.")
        return
    info = loaded[1]
    weights_fig, learned_fig = ui.per_model(lessons.trained_views, model_id)
    ui.chart(left, weights_fig, key=f"trained_w_{info.id}")
    left.caption(f"{ui.trained_caption(info)}. It redraws after each run "
                 "and after each extra epoch.")
    if learned_fig is not None:
        ui.chart(right, learned_fig, key=f"trained_dw_{info.id}")
        right.caption("Trained minus starting weights: where the pattern that tells the two apart shows, even when "
                      "the std-1 start still dominates the weights themselves.")


data = ui.page_setup(
    "Linear 3 vs 7",
    "📏",
    "Two classes, one question: is it this one or that one? Pick the two below (3 and 7, the lesson's, to start with).",
)
ui.restore_setup(LINK, data)
pair = the_pair(data)
baseline(data, pair)
by_hand(data, pair)
training(data, pair)
weights(data, pair)
