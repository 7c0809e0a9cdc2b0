"""What the Evaluate page says and keeps track of: its introductions, captions and headline numbers, the table
rows it shows, which confusion cell a student looks at (``follow_cell``, in the session's state) and which map point
was clicked; ``confidence_note`` is shared with the CNN and Sketch Pad pages. The numbers come from
``digitlab.metrics``, ``digitlab.robustness`` and ``digitlab.embeddings``."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

import torch
from torch import nn

from ..data import plural
from ..embeddings import Embedding, layer_label
from ..metrics import Calibration, Coverage, Predictions, most_confused
from ..models import TrainConfig


def confidence_note(config: TrainConfig) -> str:
    """What shapes a model's "% sure", in a sentence: sigmoid or softmax, and label smoothing's cap."""
    if config.pair:
        return "Sure = the sigmoid of its one output."
    how = "exp of its LogSoftmax output" if config.loss == "nll" else "softmax of its logits"
    if config.label_smoothing:
        aim = 1 - config.label_smoothing + config.label_smoothing / 10
        return (f"Sure = {how}; trained with label smoothing {config.label_smoothing:g}, it aimed at {aim:.0%} for "
                "the right class, so it rarely says more even when right.")
    return f"Sure = {how}; trained towards 100% for the right class, it readily says 100%."


def pair_caption(config: TrainConfig) -> str:
    """What a two-class model's scores count (3 vs 7: the test 3s and 7s only, as two classes, 7 and 3)."""
    no, yes = config.classes
    return f"A {yes}-vs-{no} model: scored on the test {plural(yes)} and {plural(no)} only, as two classes ({no} and {yes})."


def headline(pred: Predictions) -> list[tuple[str, str]]:
    """The three numbers above the sections: how many test images, the accuracy, how many mistakes."""
    return [("Test images", f"{len(pred.targets):,}"), ("Accuracy", f"{pred.accuracy:.2%}"),
            ("Mistakes", f"{int((~pred.correct).sum()):,}")]


def threshold_metrics(pred: Predictions, cov: Coverage) -> list[tuple[str, str, str | None]]:
    """(label, value, change) for what a threshold leaves: answered, accuracy on those, mistakes left."""
    return [("Answered", f"{cov.answered:,} of {cov.total:,}", f"{cov.coverage:.1%} coverage"),
            ("Accuracy on those", f"{cov.accuracy:.2%}" if cov.answered else "—",
             f"{cov.accuracy - pred.accuracy:+.2%} vs all" if cov.answered else None),
            ("Mistakes left", f"{cov.answered - cov.correct:,}", None)]


def cell_caption(n: int, true_name: str, predicted_name: str, shown: int = 40) -> str:
    """What the images beside the confusion matrix are: how many, of which true class, called what."""
    surest = f" (the {shown} the model was surest about)" if n > shown else ""
    return f"**{n:,}** test images are **{true_name}** and were called **{predicted_name}**{surest}."


def point_caption(pred: Predictions, position: int) -> str:
    """What the test image at ``position`` is, and what the model called it, for the map's side panel."""
    row = int((pred.index == position).nonzero()[0, 0])
    names = pred.class_names
    return (f"label **{names[int(pred.targets[row])]}**, predicted **{names[int(pred.predicted[row])]}** "
            f"({float(pred.confidence[row]):.1%})")


def map_title(model: nn.Module, emb: Embedding) -> str:
    """The map's title: the layer, how many numbers it gives per image, and (PCA) the spread the axes keep."""
    how = f"{emb.dims:,} number{'s' if emb.dims != 1 else ''} per image"
    if emb.method == "pca":
        how += f"; the two axes keep {emb.explained:.0%} of the spread"
    return f"{layer_label(model, emb.layer)} · {how}"


def fitted_on(c: Calibration) -> str:
    """Which images a temperature was fitted on, in words."""
    return f"{c.held_out:,} held-out training images" if c.held_out else "half the test images (an older model)"


def calibration_rows(results: dict[str, Calibration]) -> list[dict]:
    """One row per model: its temperature and its expected calibration error before and after."""
    return [{"model": name, "ECE as trained": c.before.ece, "ECE after temperature scaling": c.after.ece,
             "temperature T": round(c.temperature, 3), "T fitted on": fitted_on(c),
             "reads as": "underconfident (T < 1 sharpens)" if c.temperature < 0.95 else
             "overconfident (T > 1 softens)" if c.temperature > 1.05 else "about right"}
            for name, c in results.items()]


def threshold_rows(results: dict[str, tuple[Predictions, Coverage]]) -> list[dict]:
    """What a threshold leaves, one row per model (side by side, metrics in narrow columns would be cut)."""
    return [{"model": name, "answered": cov.answered, "coverage": cov.coverage,
             "accuracy on those": cov.accuracy if cov.answered else None, "mistakes left": cov.answered - cov.correct,
             "accuracy on all": pred.accuracy} for name, (pred, cov) in results.items()]


def robustness_rows(results: dict[str, dict[str, list[tuple[float, float]]]]) -> list[dict]:
    """Robustness curves of several models as table rows: model, change, level, accuracy."""
    return [{"model": name, "change": kind, "level": level, "accuracy": acc}
            for name, curves in results.items() for kind, points in curves.items() for level, acc in points]


def follow_cell(state: MutableMapping, true_key: str, pred_key: str, cm: torch.Tensor, names: list[str],
                points: list[Mapping]) -> None:
    """Which confusion cell a student looks at, kept in ``state[true_key]`` and ``state[pred_key]``.

    It starts on the commonest mistake; a click on the matrix moves it there (once per click, so the two
    boxes under the matrix can still change it afterwards).
    """
    last_key = f"{true_key}_last_click"
    if true_key not in state:
        t, p = most_confused(cm)
        state[true_key], state[pred_key] = names[t], names[p]
    if points and "x" in points[0] and "y" in points[0]:
        picked = (str(points[0]["y"]), str(points[0]["x"]))
        if state.get(last_key) != picked and picked[0] in names and picked[1] in names:
            state[true_key], state[pred_key] = picked
            state[last_key] = picked


def clicked_position(points: list[Mapping], default: int) -> int:
    """The test image a click on the embedding map chose (its position rides in customdata), else ``default``."""
    if points and points[0].get("customdata"):
        return int(points[0]["customdata"][0])
    return int(default)


# ---------------------------------------------------------------- what the Evaluate page says


INTRO = {
    "confusion": (
        "Row = the true label, column = the model's answer. The diagonal is right; everything else is a "
        "mistake. **Click a cell** (or pick it in the two boxes) to see those images."
    ),
    "scores": (
        "**Precision**: of the images the model called *c*, the share that really are *c*. "
        "**Recall**: of the real *c*'s, the share it found. **F1** balances the two."
    ),
    "mistakes": (
        "Wrong answers given with the highest probability. Some are the model's fault; some digits are "
        "hard even for people, and a few labels in MNIST are simply wrong."
    ),
    "calibration": (
        "Is *90% sure* right 90% of the time? Answers are grouped by confidence; each point is how sure the "
        "model was in a group and how often it was right. **Temperature scaling** divides the logits by one "
        "number T, fitted on training images the run never trained on (every 120th is held out) and judged on "
        "the test set: the answers stay the same, the confidence moves onto the diagonal, and one threshold "
        "then means the same for every model."
    ),
    "ece": "ECE (expected calibration error): the gap between confidence and accuracy, averaged over the answers. ",
    "threshold": (
        "The model may say *not sure* when its top probability is below the threshold. Fewer answers "
        "(coverage), but the ones it gives are more often right."
    ),
    "robustness": (
        "Each test image rotated, shifted, covered in noise, or its strokes thickened (a max-pool dilation), "
        "then given to the model. Nothing like this was in the training set (unless it trained with "
        "augmentation)."
    ),
    "embedding": (
        "Each test image becomes a long list of numbers (784 pixels, or a layer's outputs), squeezed into two "
        "dimensions. **PCA** keeps the two directions of largest spread; **t-SNE** keeps neighbours together. "
        "Digits that form clean islands are easy to tell apart at that layer. Click a point to see its image."
    ),
    "page": (
        "One number (accuracy) hides a lot. Here a trained model meets every test image it never saw in training: "
        "**which digits it confuses, how sure it is when it is wrong (and whether its confidence can be trusted), "
        "what a confidence threshold buys, how it copes with rotated, shifted, noisy or bold digits, and what its "
        "layers make of the images.** It starts on the class's best model; compare up to four."
    ),
}
