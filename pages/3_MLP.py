"""Stage 3: all ten digits with a multi-layer perceptron -- simple_net by hand, then nn.Sequential, trained live."""

import pandas as pd
import streamlit as st

from digitlab import backprop, mlp_lessons, train, ui, viz
from digitlab.config import FIELDS
from digitlab.data import MNIST
from digitlab.models import SimpleNetScratch, TrainConfig, simple_net
from digitlab.train import ConfigError, check_config

OPTIMIZERS, NORMALISATIONS = FIELDS["optimizer"].labels, FIELDS["norm"].choices  # the options: the config's schema
FORMS = {"nn": "nn.Sequential + torch.optim", "scratch": "by hand: w1, b1, w2, b2 and p -= lr * p.grad"}
LINK = ui.LinkedPage("mlp", default="simple_net", network=True)  # the settings travel in the address


def main() -> None:
    data = ui.page_setup(
        "MLP",
        "🧠",
        "Now all ten digits. A linear layer, a non-linearity (ReLU is just `max(x, 0)`), another linear layer: "
        "that is a neural network. Start from one of the two tutorials' nets and change what you like.",
    )
    ui.restore_setup(LINK, data)
    config, problem = the_network()
    by_hand_and_as_nn_sequential(data)
    the_chain_rule(data)
    snap = train_it(config, data, problem)
    what_it_learned(snap, data)


def the_network() -> tuple[TrainConfig, str]:
    """1. The layers a student picks, and the table of what they build; the config and any problem with it."""
    st.header("1. The network")
    preset = ui.preset_picker(("mlp",), key="mlp_preset")
    k = f"mlp_{preset.preset}"
    c1, c2, c3, c4 = st.columns(4)
    hidden_text = c1.text_input(
        "Hidden layer sizes", value=", ".join(str(h) for h in preset.hidden), key=f"{k}_hidden",
        help="One number per hidden layer, separated by commas: '50' is the fastai net, '128, 64' the PyTorch one.",
    )
    act_options = [preset.activations, *[(a,) for a in FIELDS["activations"].choices if (a,) != preset.activations]]
    activations = c2.selectbox(
        "Activation", act_options, key=f"{k}_act",
        format_func=lambda a: ("as the preset: " if a == preset.activations else "") + ", then ".join(a),
        help="The non-linearity after each hidden layer (the last one repeats for deeper nets).",
    )
    optimizer = c3.selectbox(
        "Optimizer", list(OPTIMIZERS), index=list(OPTIMIZERS).index(preset.optimizer), key=f"{k}_opt",
        format_func=OPTIMIZERS.get,
        help="Plain SGD steps against the gradient; momentum keeps some of the last step; Adam scales each weight's "
        "step.",
    )
    norm = c4.selectbox(
        "Input scaling", list(NORMALISATIONS), index=list(NORMALISATIONS).index(preset.norm), key=f"{k}_norm",
        format_func=mlp_lessons.NORM_LABELS.get,
        help="How pixels are scaled before the first layer. The PyTorch tutorial's Normalize(0.5, 0.5) leaves the "
        "background at -1; MNIST's own mean and std centre it, and the same net learns noticeably better.",
    )
    form = st.radio(
        "Written as", list(FORMS), key=f"{k}_form", horizontal=True, format_func=FORMS.get,
        help="The same network two ways. By hand it is plain tensors and the fastai lesson's own SGD step "
        "(one hidden ReLU layer, plain SGD, cross-entropy); nn.Sequential allows any depth and optimizer.",
    )
    config = ui.training_controls(preset, "mlp")
    try:
        config = config.with_(hidden=mlp_lessons.parse_hidden(hidden_text), activations=activations,
                              optimizer=optimizer, norm=norm)
        if form == "scratch" and config.hidden:
            config, changed = mlp_lessons.by_hand(config)
            if changed:
                st.info("Written by hand, simple_net has " + "; ".join(changed) + ". Pick nn.Sequential to keep "
                        "the settings above.", icon="✍️")
        check_config(config)
    except ConfigError as e:
        st.error(str(e))
        return config, str(e)
    layer_table(config)
    return config, ""


def layer_table(config: TrainConfig) -> None:
    rows, total = mlp_lessons.layer_rows(config)
    c1, c2 = st.columns([2, 1])
    c1.dataframe(pd.DataFrame(rows), hide_index=True)
    c2.metric("Parameters", f"{total:,}", help="Every weight and bias the optimizer will tune.")
    c2.caption(" → ".join(str(s) for s in (784, *config.hidden, 10)))


def by_hand_and_as_nn_sequential(data: MNIST) -> None:
    """2. The same numbers in simple_net by hand and in nn.Sequential give the same outputs."""
    st.header("2. simple_net by hand, and as nn.Sequential")
    st.markdown(
        "The fastai lesson writes the net with plain tensors: `res = xb@w1 + b1; res = res.max(tensor(0.0)); "
        "res@w2 + b2`. PyTorch's `nn.Linear` does the same sum (its weight is stored transposed). Copy the same "
        "numbers into both and they give the same outputs on real test images:"
    )
    eq = mlp_lessons.scratch_vs_nn(data)
    c1, c2 = st.columns([3, 1])
    table = pd.DataFrame(
        [{"image": i, "output": d, "by hand": float(eq.scratch_out[i, d]), "nn.Sequential": float(eq.nn_out[i, d])}
         for i in range(min(2, len(eq.scratch_out))) for d in range(10)]
    )
    c1.dataframe(table, hide_index=True, height=250)
    c2.metric("Largest difference", f"{eq.max_abs_diff:.1e}", help="Only float rounding: the two compute the same.")
    c2.metric("Same predicted digit", "yes" if eq.same_predictions else "no")
    c2.caption(f"{eq.scratch_params:,} parameters each")
    ui.show_code(SimpleNetScratch.forward, simple_net, mlp_lessons.scratch_vs_nn)


def the_chain_rule(data: MNIST) -> None:
    """3. Where the gradients come from: each operation's backward beside its forward, checked against autograd."""
    st.header("3. The gradients, by the chain rule")
    st.markdown(
        "`loss.backward()` fills in every weight's gradient. It does so by the chain rule: each operation, "
        "knowing how its output moved the loss, works out how its inputs and weights did, and hands that to the "
        "operation before it. Below, simple_net's four operations do it by hand, each `backward` beside its "
        "`forward`. On a batch of 64 training digits they give autograd's numbers:"
    )
    ui.glossary("autograd", "cross-entropy", "softmax", "logit")
    check = mlp_lessons.chain_rule_vs_autograd(data)
    cols = st.columns(len(check.largest_difference) + 1)
    cols[0].metric("Loss, by hand", f"{check.loss:.4f}", help=f"autograd's: {check.autograd_loss:.4f}")
    for col, (name, diff) in zip(cols[1:], check.largest_difference.items()):
        col.metric(f"{name}: largest difference", f"{diff:.1e}", help="From autograd's gradient: float rounding.")
    ui.show_code(backprop.Linear, backprop.ReLU, backprop.CrossEntropy, backprop.simple_net_gradients,
                 title="The chain rule, written out")


def train_it(config: TrainConfig, data: MNIST, problem: str):
    """4. Train the network picked in section 1; the job's snapshot."""
    st.header("4. Train it")
    if not problem:
        st.caption(ui.how_fit_trains(config))
    ui.glossary("learning rate", "batch size", "epoch", "bfloat16")
    ui.show_code(train.fit, train.model_inputs, train.block_rows, train.batches, train.make_optimizer,
                 title="The training loop: fit()")
    ui.lr_finder(config, data, "mlp", disabled=bool(problem))
    if not problem:
        ui.share_setup(LINK, config, data)
    return ui.train_section(config, data, "mlp", disabled=bool(problem))


def what_it_learned(snap, data: MNIST) -> None:
    """5. The finished model's accuracy and its answers on a few test images."""
    st.header("5. What it learned")
    if snap is not None and snap.finished and snap.model_id:
        loaded = ui.load_model(snap.model_id)
        if loaded:
            model, info = loaded
            st.metric("Test accuracy", f"{info.metrics['test_accuracy']:.2%}",
                      help="Share of the 10,000 test images the trained model gets right.")
            st.caption(f"{ui.trained_caption(info)}; stored as `{info.id}`.")
            test_images(model, info.config, data)
    elif snap is not None and snap.state == "failed":
        st.info("That run did not finish: its message above says why. Train again once that is put right.")
    else:
        st.info("Train a model above: its test accuracy and its answers on a few test images appear here.")


@st.fragment
def test_images(model, config: TrainConfig, data: MNIST) -> None:
    """Four test images and the model's probabilities; a new seed reruns only this part."""
    seed = st.number_input("Test images to show (a seed)", 0, 10_000, 0, key="mlp_view_seed",
                           help="Change it to draw another four test images.")
    view = mlp_lessons.classify_view(model, config, data, n=4, seed=int(seed))
    for j, col in enumerate(st.columns(4)[: len(view.labels)]):
        ui.chart(col, viz.image_heatmap(view.images[j], f"a {data.classes[view.labels[j]]}", height=220), key=f"view_img_{j}")
        ui.chart(col, viz.probability_bars(view.probs[j], view.class_names, "Class probability", height=300),
                      key=f"view_bars_{j}")


main()
