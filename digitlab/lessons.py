"""The teaching steps of the Linear stage (any two classes, 3 vs 7 by default), as plain functions the page calls.

Each function runs the real thing on the real data (the seeds' mnist_loss, sgd_step, Linear1) and returns numbers
and figures; the page only draws them. Nothing here imports streamlit, so every step is unit-tested on real MNIST.
The MLP stage's steps are in ``digitlab.mlp_lessons``; what the training pages say about a run in
``digitlab.ui.run_words``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from . import viz
from .data import MNIST, pair_task, plural, to_float
from .models import (
    PRESETS,
    Linear1,
    ModelInfo,
    TrainConfig,
)
from .train import (
    ConfigError,
    batch_accuracy,
    mnist_loss,
    sgd_step,
    task_data,
)

# Learning rates on a log scale, for select_slider controls.
LR_OPTIONS = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


# ---------------------------------------------------------------- pixel similarity (the baseline)


THREE_SEVEN = (3, 7)  # the lesson's own pair: 3 is "yes" (target 1), 7 is "no"


def pair_names(data: MNIST, pair: tuple[int, int] = THREE_SEVEN) -> tuple[str, str]:
    """The names of the two classes, yes first: ("3", "7"), ("Shirt", "T-shirt/top")."""
    return data.classes[pair[0]], data.classes[pair[1]]


def pair_images(data: MNIST, split: str, pair: tuple[int, int] = THREE_SEVEN) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of the two classes of a split as float 0..1 stacks [N, 28, 28], as the seed builds its 3s and 7s."""
    images, labels = data.split(split)
    return to_float(images[labels == pair[0]]), to_float(images[labels == pair[1]])


def mnist_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean absolute (L1) or root-mean-square (L2) pixel difference over the last two axes; broadcasts."""
    if kind == "l1":
        return (a - b).abs().mean((-1, -2))
    if kind == "l2":
        return ((a - b) ** 2).mean((-1, -2)).sqrt()
    raise ValueError(f"unknown distance {kind!r}: use 'l1' or 'l2'")


def is_3(x: torch.Tensor, mean3: torch.Tensor, mean7: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """The baseline's answer: an image is a 3 when it is closer to the ideal 3 than to the ideal 7 (any pair: the
    first class when closer to its average than to the second's)."""
    return mnist_distance(x, mean3, kind) < mnist_distance(x, mean7, kind)


@dataclass(frozen=True)
class Baseline:
    names: tuple[str, str]  # the two classes, yes first: ("3", "7")
    mean_yes: torch.Tensor  # the ideal 3 from the training set, 0..1
    mean_no: torch.Tensor  # the ideal 7
    n_yes: int  # test images of each class the accuracy is measured on
    n_no: int
    accuracy: dict  # {"l1": {"yes": acc on 3s, "no": acc on 7s, "all": acc on both}, "l2": ...}


def pixel_baseline(data: MNIST, pair: tuple[int, int] = THREE_SEVEN) -> Baseline:
    """Ideal images of the two classes from the training set; accuracy of 'nearest ideal' on every test image of both."""
    train_yes, train_no = pair_images(data, "train", pair)
    mean_yes, mean_no = train_yes.mean(0), train_no.mean(0)
    test_yes, test_no = pair_images(data, "test", pair)
    acc = {}
    for kind in ("l1", "l2"):
        right_yes = is_3(test_yes, mean_yes, mean_no, kind).float()
        right_no = (~is_3(test_no, mean_yes, mean_no, kind)).float()
        acc[kind] = {
            "yes": float(right_yes.mean()),
            "no": float(right_no.mean()),
            "all": float((right_yes.sum() + right_no.sum()) / (len(test_yes) + len(test_no))),
        }
    return Baseline(pair_names(data, pair), mean_yes, mean_no, len(test_yes), len(test_no), acc)


def digit_distances(image_uint8: torch.Tensor, baseline: Baseline) -> dict:
    """One image's L1 and L2 distance to each ideal image, and what the baseline calls it."""
    x = to_float(image_uint8)
    yes, no = baseline.names
    out = {}
    for kind in ("l1", "l2"):
        d_yes = float(mnist_distance(x, baseline.mean_yes, kind))
        d_no = float(mnist_distance(x, baseline.mean_no, kind))
        out[kind] = {"to yes": d_yes, "to no": d_no, "says": yes if d_yes < d_no else no}
    return out


def distance_rows(image_uint8: torch.Tensor, baseline: Baseline) -> list[dict]:
    """digit_distances as the page's table shows them: a row per distance (L1, L2)."""
    yes, no = baseline.names
    return [{"distance": k.upper(), f"to the ideal {yes}": v["to yes"], f"to the ideal {no}": v["to no"],
             "baseline says": v["says"]} for k, v in digit_distances(image_uint8, baseline).items()]


def pick_pair(data: MNIST, pair: tuple[int, int] = THREE_SEVEN) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images of the two classes (uint8) and their labels, for picking one to classify."""
    images, labels = data.split("test")
    keep = (labels == pair[0]) | (labels == pair[1])
    return images[keep], labels[keep]


# ---------------------------------------------------------------- the linear model by hand


def linear1(xb: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The seed's linear1 written out: one weight per pixel, summed, plus a bias (Linear1.forward runs this)."""
    return xb @ weights + bias


def first_batch(data: MNIST, batch_size: int = 256, seed: int = 42,
                pair: tuple[int, int] = THREE_SEVEN) -> tuple[torch.Tensor, torch.Tensor]:
    """A shuffled batch of training 3s and 7s (or the pair's two classes): x [B, 784] in 0..1, y [B, 1] with 1 for a 3."""
    config = PRESETS["linear-seed"].with_(task=pair_task(*pair))
    images, targets = task_data(data, config, "train")
    if batch_size < 1 or batch_size > len(images):
        raise ConfigError(f"the batch size must be between 1 and {len(images)}, not {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:batch_size]
    return to_float(images[idx]).reshape(batch_size, -1), targets[idx]


@dataclass(frozen=True)
class StepState:
    predictions: torch.Tensor  # raw outputs [B, 1]
    loss: float
    accuracy: float
    weights: torch.Tensor  # [28, 28]
    bias: float


@dataclass(frozen=True)
class OneStep:
    before: StepState
    after: StepState
    weight_grad: torch.Tensor  # [28, 28], the gradient the step used
    bias_grad: float
    lr: float
    targets: torch.Tensor


def seeded_linear1(std: float, seed: int = 42) -> Linear1:
    """Linear1 with the starting weights build_model gives it for this seed, drawn from the run's own generator.

    The same numbers as ``torch.manual_seed(seed); Linear1(1, std)``, without touching the global generator,
    which training and other pages share.
    """
    return Linear1(1, std, generator=torch.Generator().manual_seed(seed))  # the weights first, then the bias


def _state(model: Linear1, xb: torch.Tensor, yb: torch.Tensor) -> StepState:
    with torch.no_grad():
        preds = model(xb)
        return StepState(preds.clone(), float(mnist_loss(preds, yb)), float(batch_accuracy(preds, yb)),
                         model.weights[:, 0].reshape(28, 28).clone(), float(model.bias[0]))


def one_sgd_step(data: MNIST, init_std: float = 1.0, lr: float = 1.0, batch_size: int = 256, seed: int = 42,
                 pair: tuple[int, int] = THREE_SEVEN) -> OneStep:
    """init_params, predict a batch, mnist_loss, backward, one sgd_step; the batch seen before and after."""
    xb, yb = first_batch(data, batch_size, seed, pair)
    model = seeded_linear1(init_std, seed)
    before = _state(model, xb, yb)
    loss = mnist_loss(model(xb), yb)
    loss.backward()
    weight_grad = model.weights.grad[:, 0].reshape(28, 28).clone()
    bias_grad = float(model.bias.grad[0])
    sgd_step(model.parameters(), lr)
    return OneStep(before, _state(model, xb, yb), weight_grad, bias_grad, lr, yb)


@dataclass(frozen=True)
class InitReport:
    std: float
    loss: float
    accuracy: float
    saturated: float  # share of predictions whose sigmoid is below 0.01 or above 0.99
    mean_abs_grad: float  # how hard the first step pushes the weights


def init_report(data: MNIST, std: float, batch_size: int = 256, seed: int = 42,
                pair: tuple[int, int] = THREE_SEVEN) -> InitReport:
    """What an initial spread does to the first batch: saturated sigmoids give almost no gradient."""
    xb, yb = first_batch(data, batch_size, seed, pair)
    model = seeded_linear1(std, seed)
    preds = model(xb)
    loss = mnist_loss(preds, yb)
    loss.backward()
    p = preds.detach().sigmoid()
    return InitReport(std, float(loss.detach()), float(batch_accuracy(preds.detach(), yb)),
                      float(((p < 0.01) | (p > 0.99)).float().mean()), float(model.weights.grad.abs().mean()))


def init_weights(std: float, seed: int = 42) -> torch.Tensor:
    """The 28x28 starting weights Linear1 draws with this spread (the seeds' init_params)."""
    return seeded_linear1(std, seed).weights.detach()[:, 0].reshape(28, 28)


@dataclass(frozen=True)
class LossVsAccuracy:
    steps: np.ndarray  # how far along minus the gradient the weights moved
    losses: np.ndarray
    accuracies: np.ndarray
    tiny_step: float  # the smallest nonzero step
    tiny_loss_change: float  # loss after the tiny step minus loss before
    tiny_accuracy_change: float  # the same for accuracy: zero, because no prediction crossed 0.5


def accuracy_is_not_the_loss(data: MNIST, init_std: float = 1.0, batch_size: int = 256, seed: int = 42,
                             max_step: float = 2.0, n: int = 41, pair: tuple[int, int] = THREE_SEVEN) -> LossVsAccuracy:
    """Move the weights a little along minus the gradient: the loss moves at once, accuracy only jumps.

    Accuracy only changes when a prediction crosses the 0.5 line, so for a tiny change its gradient
    is zero almost everywhere -- which is why SGD follows the loss and we only report accuracy.
    """
    xb, yb = first_batch(data, batch_size, seed, pair)
    model = seeded_linear1(init_std, seed)
    mnist_loss(model(xb), yb).backward()
    w0, b0 = model.weights.detach().clone(), model.bias.detach().clone()
    gw, gb = model.weights.grad.clone(), model.bias.grad.clone()
    steps = np.concatenate([[0.0, max_step / 1000], np.linspace(max_step / (n - 1), max_step, n - 1)])
    losses, accs = [], []
    with torch.no_grad():
        for t in steps:
            preds = linear1(xb, w0 - t * gw, b0 - t * gb)
            losses.append(float(mnist_loss(preds, yb)))
            accs.append(float(batch_accuracy(preds, yb)))
    losses_a, accs_a = np.array(losses), np.array(accs)
    return LossVsAccuracy(steps, losses_a, accs_a, float(steps[1]), float(losses_a[1] - losses_a[0]),
                          float(accs_a[1] - accs_a[0]))


def linear_weights(model: nn.Module) -> torch.Tensor:
    """The 784 weights of a trained linear 3-vs-7 model as a 28x28 image (scratch or nn form)."""
    # By shape, not class: Streamlit may reload the models module while a cached model keeps the old class.
    for _, p in model.named_parameters():
        if p.dim() == 2 and p.shape[0] == 28 * 28:  # Linear1.weights: [784, out]
            return p.detach()[:, 0].reshape(28, 28)
        if p.dim() == 2 and p.shape[1] == 28 * 28:  # nn.Linear.weight: [out, 784]
            return p.detach()[0].reshape(28, 28)
    raise ValueError("this model has no 784-weight layer")


def learned_pattern(model: nn.Module, config: TrainConfig) -> torch.Tensor | None:
    """What training added to a from-scratch linear model: its 28x28 weights minus the ones it started from
    (the start is rebuilt from the config's seed); None for any other model.

    With the seed's std-1 start the trained weights still look like the noise they began as; the change
    is where the 3-vs-7 pattern shows.
    """
    if config.kind != "linear" or config.form != "scratch":
        return None
    return linear_weights(model) - init_weights(config.init_std, config.seed)


# ---------------------------------------------------------------- the Linear page's pictures
# Each takes the dataset and plain values, so the Streamlit layer computes it once per input and shares it.


def baseline_view(data: MNIST, pair: tuple[int, int] = THREE_SEVEN) -> tuple[Baseline, go.Figure, go.Figure, go.Figure]:
    """The baseline, the ideal image of each class, and its accuracy as bars."""
    base = pixel_baseline(data, pair)
    yes, no = base.names
    return (base, viz.image_heatmap(base.mean_yes, ideal_title(yes), zmax=1, height=320),
            viz.image_heatmap(base.mean_no, ideal_title(no), zmax=1, height=320), baseline_figure(base))


def pair_question(data: MNIST, pair: tuple[int, int]) -> str:
    """The Linear stage's question in the dataset's words: 'is this digit a 3 or a 7?', 'is this item a Shirt or a
    T-shirt/top?'."""
    yes, no = (data.classes[c] for c in pair)
    return f"is this {data.spec.noun} a {yes} or a {no}?"


def ideal_title(name: str) -> str:
    """'The ideal 3 (the average 3)'; a long class name gets the short form, so it fits its column (a third of the
    page: "The ideal 3 (mean of the training 3s)" ran past its chart's edge in presenter mode)."""
    return f"The ideal {name} (the average {name})" if len(name) < 3 else f"The ideal {name} (the mean)"


def test_digit_figure(data: MNIST, i: int, pair: tuple[int, int] = THREE_SEVEN) -> go.Figure:
    """Test image ``i`` of the pair's two classes, titled with its label."""
    pool, labels = pick_pair(data, pair)
    return viz.image_heatmap(pool[i], f"Test {data.spec.noun} {i}: a {data.classes[int(labels[i])]}", height=300)


def trained_views(model: nn.Module, info: ModelInfo) -> tuple[go.Figure, go.Figure | None]:
    """A trained linear model's weights as an image, and what training changed (None unless it started by hand)."""
    acc = info.metrics.get("test_accuracy", float("nan"))
    weights = viz.diverging_heatmap(linear_weights(model), f"Trained: init std {info.config.init_std:g}, {acc:.1%}",
                                    height=330)
    learned = learned_pattern(model, info.config)
    return weights, None if learned is None else viz.diverging_heatmap(learned, "What training changed", height=330)


def step_view(data: MNIST, init_std: float, lr: float,
              pair: tuple[int, int] = THREE_SEVEN) -> tuple[OneStep, go.Figure, go.Figure, go.Figure]:
    """One SGD step, and the predictions, the gradient and the change it made as pictures."""
    step = one_sgd_step(data, init_std=init_std, lr=lr, pair=pair)
    return (step, predictions_figure(step, names=pair_names(data, pair)),
            viz.diverging_heatmap(step.weight_grad, "Weight gradient (784 as 28x28)", height=340),
            viz.diverging_heatmap(step.after.weights - step.before.weights, "What the step changed", height=340))


def loss_view(data: MNIST, init_std: float, pair: tuple[int, int] = THREE_SEVEN) -> tuple[LossVsAccuracy, go.Figure]:
    lva = accuracy_is_not_the_loss(data, init_std=init_std, pair=pair)
    return lva, loss_vs_accuracy_figure(lva)


def init_views(data: MNIST, pair: tuple[int, int] = THREE_SEVEN) -> list[tuple[InitReport, go.Figure]]:
    """The seed's start (std 1) and the better one (std 0.01): the weights as an image, and the first batch."""
    out = []
    for std in (1.0, 0.01):
        name = "the seed's init (std 1)" if std == 1.0 else "better init (std 0.01)"
        out.append((init_report(data, std, pair=pair),
                    viz.diverging_heatmap(init_weights(std), f"Start: {name}", height=330)))
    return out


# ---------------------------------------------------------------- figures for these steps


def loss_vs_accuracy_figure(r: LossVsAccuracy) -> go.Figure:
    """Loss (smooth) and accuracy (a staircase) against how far the weights moved."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=r.steps, y=r.losses, name="mnist_loss", mode="lines+markers", yaxis="y"))
    fig.add_trace(go.Scatter(x=r.steps, y=r.accuracies, name="accuracy", mode="lines+markers",
                             line=dict(shape="hv"), yaxis="y2"))
    fig.update_layout(
        height=340, margin=dict(t=40, b=40), xaxis_title="step along minus the gradient",
        yaxis=dict(title="loss"), yaxis2=dict(title="accuracy", overlaying="y", side="right", tickformat=".0%"),
        legend=dict(orientation="h", y=-0.3), title="A small move: the loss changes, the accuracy waits",
    )
    return fig


def predictions_figure(step: OneStep, n: int = 40, names: tuple[str, str] = ("3", "7")) -> go.Figure:
    """The first n predictions of the batch through the sigmoid, before and after the step, by target."""
    p0 = step.before.predictions[:n, 0].sigmoid().numpy()
    p1 = step.after.predictions[:n, 0].sigmoid().numpy()
    is3 = step.targets[:n, 0].numpy() == 1
    x = np.arange(n)
    fig = go.Figure()
    for mask, name, color in ((is3, f"a {names[0]} (target 1)", "#d62728"), (~is3, f"a {names[1]} (target 0)", "#1f77b4")):
        fig.add_trace(go.Scatter(x=x[mask], y=p0[mask], mode="markers", name=f"{name}: before",
                                 marker=dict(color=color, symbol="circle-open", size=9)))
        fig.add_trace(go.Scatter(x=x[mask], y=p1[mask], mode="markers", name=f"{name}: after",
                                 marker=dict(color=color, size=7)))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#888")
    fig.update_layout(height=340, margin=dict(t=40, b=40), xaxis_title="image in the batch",
                      yaxis=dict(title="sigmoid(prediction)", range=[-0.05, 1.05]),
                      title="Predictions before and after", legend=dict(orientation="h", y=-0.3))
    return fig


def baseline_figure(b: Baseline) -> go.Figure:
    yes, no = b.names
    names = [plural(yes), plural(no), "all"]
    fig = go.Figure([go.Bar(name=kind.upper(), x=names, y=[b.accuracy[kind][k] for k in ("yes", "no", "all")],
                            text=[f"{b.accuracy[kind][k]:.1%}" for k in ("yes", "no", "all")], textposition="outside")
                     for kind in ("l1", "l2")])
    fig.update_layout(barmode="group", height=300, yaxis=dict(range=[0, 1.1], tickformat=".0%"),
                      margin=dict(t=40, b=30), title=f"Baseline on {b.n_yes + b.n_no:,} test "
                      + (f"{plural(yes)} and {plural(no)}" if len(yes + no) < 5 else "images of the two"))
    return fig
