"""Scoring a trained model on its test images: where it fails, and how sure it is.

Plain PyTorch on the uint8 test images (no streamlit, no page state, no page copy): predictions in batches,
the confusion matrix by ``torch.bincount``, per-class scores, the most confident mistakes, a confidence
threshold's coverage and accuracy, and calibration (reliability, ECE, temperature scaling fitted on the
held-out training images). Robustness lives in ``digitlab.robustness``, maps of what each layer sees in
``digitlab.embeddings``, which models a page shows first in ``digitlab.ranking``, and the Evaluate page's words
in ``digitlab.ui.evaluation``. The heavy results are computed once per model and kept beside it on disk by
``digitlab.analysis``, so every page visit after the first is instant.

The 3-vs-7 linear model answers a different question, so it is scored on the test 3s and 7s only,
as two classes ("7", "3") in the order ``train.predict_proba`` gives them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import MNIST
from .models import TrainConfig
from .train import predict_proba, task_data

Progress = Callable[[float, str], None]
DIGITS = tuple(str(d) for d in range(10))
THREE_SEVEN = ("7", "3")  # column 0 is P(7), column 1 is P(3), as predict_proba returns them
PREDICT_CHUNK = 2000


def no_progress(fraction: float, text: str) -> None:
    pass


# ---------------------------------------------------------------- predictions


def task_test_set(data: MNIST, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Positions in the test split, class targets and class names for the model's task."""
    labels = data.test_labels
    if config.pair:
        yes, no = config.pair
        index = ((labels == yes) | (labels == no)).nonzero().squeeze(1)
        return index, (labels[index] == yes).long(), config.classes
    return torch.arange(len(labels)), labels.clone(), config.classes


@dataclass(frozen=True)
class Predictions:
    """A model's class probabilities on its test set, with the true classes beside them."""

    probs: torch.Tensor  # [N, C]
    targets: torch.Tensor  # [N] class index
    index: torch.Tensor  # [N] position of each row in data.test_images
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    # Worked out once per Predictions: the Evaluate page reads them several times on every rerun of every student,
    # from one analysis the class shares (callers read them, never change them).
    @cached_property
    def predicted(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    @cached_property
    def confidence(self) -> torch.Tensor:
        return self.probs.max(dim=1).values

    @cached_property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.targets

    @cached_property
    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if len(self.targets) else float("nan")

    @cached_property
    def confusion(self) -> torch.Tensor:
        return confusion_matrix(self.targets, self.predicted, self.n_classes)


def predict(model: nn.Module, config: TrainConfig, data: MNIST, progress: Progress = no_progress) -> Predictions:
    """Probabilities for every test image of the model's task, in chunks so a page can show progress."""
    index, targets, names = task_test_set(data, config)
    images = data.test_images[index]
    chunks = []
    for start in range(0, len(images), PREDICT_CHUNK):
        progress(start / max(1, len(images)), f"Predicting test images {start:,} of {len(images):,}")
        chunks.append(predict_proba(model, config, images[start : start + PREDICT_CHUNK]))
    progress(1.0, f"Predicted {len(images):,} test images")
    probs = torch.cat(chunks) if chunks else torch.empty(0, len(names))
    return Predictions(probs, targets, index, names)


def predict_held_out(model: nn.Module, config: TrainConfig, data: MNIST) -> Predictions | None:
    """Probabilities for the training images the run never trained on (``config.hold_out_every``); None for a
    model trained before images were held out."""
    images, labels = task_data(data, config, "held_out")
    if not len(images):
        return None
    probs = torch.cat([predict_proba(model, config, images[s : s + PREDICT_CHUNK])
                       for s in range(0, len(images), PREDICT_CHUNK)])
    return Predictions(probs, labels.long().reshape(-1), torch.arange(len(images)), task_test_set(data, config)[2])


# ---------------------------------------------------------------- scores


def confusion_matrix(targets: torch.Tensor, predicted: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[true, predicted] counts: one bincount over true*n + predicted."""
    flat = targets.long() * n_classes + predicted.long()
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_scores(cm: torch.Tensor, class_names: tuple[str, ...]) -> list[dict]:
    """Precision (of the images called c, how many are c), recall (of the c's, how many were found), F1."""
    cm = cm.double()
    hits = cm.diag()
    called = cm.sum(dim=0)  # column sums: predicted as c
    actual = cm.sum(dim=1)  # row sums: truly c
    rows = []
    for c, name in enumerate(class_names):
        p = float(hits[c] / called[c]) if called[c] else float("nan")
        r = float(hits[c] / actual[c]) if actual[c] else float("nan")
        f1 = 2 * p * r / (p + r) if (p + r) and not (math.isnan(p) or math.isnan(r)) else float("nan")
        rows.append({"class": name, "precision": p, "recall": r, "F1": f1, "test images": int(actual[c]),
                     "predicted as it": int(called[c])})
    return rows


def cell_members(pred: Predictions, true_class: int, predicted_class: int) -> torch.Tensor:
    """Rows of ``pred`` in one confusion-matrix cell, the most confident first."""
    rows = ((pred.targets == true_class) & (pred.predicted == predicted_class)).nonzero().squeeze(1)
    return rows[pred.confidence[rows].argsort(descending=True)]


def confident_mistakes(pred: Predictions, k: int = 20) -> torch.Tensor:
    """Rows of the wrong answers given with the highest probability: the surest errors."""
    wrong = (~pred.correct).nonzero().squeeze(1)
    return wrong[pred.confidence[wrong].argsort(descending=True)][:k]


def most_confused(cm: torch.Tensor) -> tuple[int, int]:
    """The (true, predicted) cell off the diagonal with the most images: the commonest mistake."""
    off = cm.clone()
    off.fill_diagonal_(-1)
    return divmod(int(off.argmax()), len(cm))


def mistakes_table(pred: Predictions, k: int = 20) -> list[dict]:
    """The ``k`` surest wrong answers as rows: test image, true class, predicted class, probability."""
    names = pred.class_names
    return [{"test image": int(pred.index[r]), "true": names[int(pred.targets[r])],
             "predicted": names[int(pred.predicted[r])], "probability": float(pred.confidence[r])}
            for r in confident_mistakes(pred, k)]


@dataclass(frozen=True)
class Coverage:
    threshold: float
    answered: int  # images whose top probability is at least the threshold
    total: int
    correct: int

    @property
    def coverage(self) -> float:
        return self.answered / self.total if self.total else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else float("nan")


def at_threshold(pred: Predictions, threshold: float) -> Coverage:
    """Answer only when the top probability reaches ``threshold``; say "not sure" otherwise."""
    keep = pred.confidence >= threshold
    return Coverage(float(threshold), int(keep.sum()), len(keep), int((pred.correct & keep).sum()))


def coverage_curve(pred: Predictions, thresholds: list[float] | None = None) -> list[Coverage]:
    """Coverage and accuracy over a sweep of thresholds (from 1/classes, where every image is answered)."""
    if thresholds is None:
        low = 1 / pred.n_classes
        thresholds = [low + (1 - low) * t for t in np.linspace(0, 1, 51)[:-1]]
        thresholds += [0.99, 0.995, 0.999]
        thresholds = sorted(set(thresholds))
    return [at_threshold(pred, t) for t in thresholds]


# ---------------------------------------------------------------- calibration: does "90% sure" mean right 90% of the time?


@dataclass(frozen=True)
class Reliability:
    """Answers grouped by confidence: per bin, how sure the model was on average and how often it was right."""

    confidence: list[float]  # mean top probability in each non-empty bin
    accuracy: list[float]  # share right in that bin
    counts: list[int]
    ece: float  # expected calibration error: the gaps, weighted by how many answers each bin holds


def reliability(probs: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> Reliability:
    """The reliability diagram's points and the expected calibration error, from probabilities and true classes."""
    conf, predicted = probs.max(dim=1)
    right = (predicted == targets).double()
    low = 1 / probs.shape[1]  # no answer is ever less sure than a uniform guess
    which = ((conf.double() - low) / (1 - low) * bins).long().clamp(0, bins - 1)
    c_out, a_out, n_out, ece = [], [], [], 0.0
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        if n:
            c, a = float(conf[members].double().mean()), float(right[members].mean())
            c_out.append(c), a_out.append(a), n_out.append(n)
            ece += n / len(conf) * abs(a - c)
    return Reliability(c_out, a_out, n_out, ece)


def logits_of(probs: torch.Tensor) -> torch.Tensor:
    """Logits back from probabilities (up to a constant per image, which softmax ignores)."""
    return probs.double().clamp_min(1e-12).log()


def with_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T): T > 1 makes the model less sure, T < 1 surer; the answer never changes."""
    return torch.softmax(logits_of(probs) / temperature, dim=1).to(probs.dtype)


def fit_temperature(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """The T that gives the true classes the highest likelihood (a search over log T, then a finer one)."""
    logits = logits_of(probs)

    def nll(t: float) -> float:
        return float(F.cross_entropy(logits / t, targets))

    grid = torch.logspace(-1.5, 1.5, 61, dtype=torch.float64).tolist()  # T from 0.03 to 30
    best = min(grid, key=nll)
    fine = (best * torch.logspace(-0.05, 0.05, 41, dtype=torch.float64)).tolist()
    return float(min(fine, key=nll))


def calibration_halves(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows T is fitted on (every other test image) and the rows it is judged on (the rest)."""
    rows = torch.arange(n)
    return rows[0::2], rows[1::2]


@dataclass(frozen=True)
class Calibration:
    temperature: float
    before: Reliability  # as trained, on the images it is judged on
    after: Reliability  # with the fitted temperature, on the same images
    held_out: int = 0  # how many held-out training images T was fitted on; 0: half the test images (an older model)


def calibrate(pred: Predictions, held_out: Predictions | None = None, bins: int = 10) -> Calibration:
    """Temperature scaling: T fitted on ``held_out`` (training images the run never trained on), both diagrams
    drawn on the whole test set, so T never sees the images it is judged on. A model trained before images were
    held out gets T from half the test images, judged on the other half."""
    n_held_out = len(held_out.targets) if held_out is not None else 0
    if n_held_out:
        t, judge = fit_temperature(held_out.probs, held_out.targets), torch.arange(len(pred.targets))
    else:
        fit, judge = calibration_halves(len(pred.targets))
        t = fit_temperature(pred.probs[fit], pred.targets[fit])
    scaled = with_temperature(pred.probs[judge], t)
    return Calibration(t, reliability(pred.probs[judge], pred.targets[judge], bins),
                       reliability(scaled, pred.targets[judge], bins), n_held_out)


def calibrated(pred: Predictions, held_out: Predictions | None = None, temperature: float | None = None) -> Predictions:
    """The same predictions with every probability rescaled by the temperature (by default the fitted one)."""
    t = calibrate(pred, held_out).temperature if temperature is None else temperature
    return Predictions(with_temperature(pred.probs, t), pred.targets, pred.index, pred.class_names)
