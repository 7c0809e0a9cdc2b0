"""Turning a trained model inside out on the test set: where it fails, and how sure it is.

Everything here is plain PyTorch on the uint8 test images (no streamlit): predictions in batches,
the confusion matrix by ``torch.bincount``, per-class scores, the most confident mistakes, a
confidence threshold's coverage and accuracy, robustness to rotation, shift, noise and thicker
strokes, and 2-D maps of what each layer sees. The heavy results are computed once per model and kept
beside it on disk by ``digitlab.analysis``, so every page visit after the first is instant.

The 3-vs-7 linear model answers a different question, so it is scored on the test 3s and 7s only,
as two classes ("7", "3") in the order ``train.predict_proba`` gives them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import DATASETS, MNIST, plural
from .models import ModelInfo, SimpleNetScratch, TrainConfig
from .train import predict_proba, prepare, task_data

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

    @property
    def predicted(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    @property
    def confidence(self) -> torch.Tensor:
        return self.probs.max(dim=1).values

    @property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.targets

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if len(self.targets) else float("nan")

    @property
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
    fitted_on: str = ""  # which images T was fitted on, in words


def calibrate(pred: Predictions, held_out: Predictions | None = None, bins: int = 10) -> Calibration:
    """Temperature scaling: T fitted on ``held_out`` (training images the run never trained on), both diagrams
    drawn on the whole test set, so T never sees the images it is judged on. A model trained before images were
    held out gets T from half the test images, judged on the other half."""
    if held_out is not None and len(held_out.targets):
        t, judge = fit_temperature(held_out.probs, held_out.targets), torch.arange(len(pred.targets))
        fitted_on = f"{len(held_out.targets):,} held-out training images"
    else:
        fit, judge = calibration_halves(len(pred.targets))
        t, fitted_on = fit_temperature(pred.probs[fit], pred.targets[fit]), "half the test images (an older model)"
    scaled = with_temperature(pred.probs[judge], t)
    return Calibration(t, reliability(pred.probs[judge], pred.targets[judge], bins),
                       reliability(scaled, pred.targets[judge], bins), fitted_on)


def calibrated(pred: Predictions, held_out: Predictions | None = None, temperature: float | None = None) -> Predictions:
    """The same predictions with every probability rescaled by the temperature (by default the fitted one)."""
    t = calibrate(pred, held_out).temperature if temperature is None else temperature
    return Predictions(with_temperature(pred.probs, t), pred.targets, pred.index, pred.class_names)


def calibration_rows(results: dict[str, Calibration]) -> list[dict]:
    """One row per model: its temperature and its expected calibration error before and after."""
    return [{"model": name, "ECE as trained": c.before.ece, "ECE after temperature scaling": c.after.ece,
             "temperature T": round(c.temperature, 3), "T fitted on": c.fitted_on,
             "reads as": "underconfident (T < 1 sharpens)" if c.temperature < 0.95 else
             "overconfident (T > 1 softens)" if c.temperature > 1.05 else "about right"}
            for name, c in results.items()]


def threshold_rows(results: dict[str, tuple[Predictions, Coverage]]) -> list[dict]:
    """What a threshold leaves, one row per model (side by side, metrics in narrow columns would be cut)."""
    return [{"model": name, "answered": cov.answered, "coverage": cov.coverage,
             "accuracy on those": cov.accuracy if cov.answered else None, "mistakes left": cov.answered - cov.correct,
             "accuracy on all": pred.accuracy} for name, (pred, cov) in results.items()]


# ---------------------------------------------------------------- robustness


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate uint8 images [N, 28, 28] about their centre (counter-clockwise), bilinear, paper outside."""
    if degrees == 0:
        return images.clone()
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    x = images.float().unsqueeze(1)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1).round().clamp(0, 255).to(torch.uint8)


def shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Move uint8 images ``pixels`` to the right and ``pixels`` down; what falls off the edge is lost."""
    p = int(pixels)
    if p == 0:
        return images.clone()
    padded = F.pad(images, (p, 0, p, 0))  # left and top
    return padded[:, :28, :28].contiguous()


def add_noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Gaussian noise with ``std`` on the 0..255 scale, the same noise for the same seed."""
    if std == 0:
        return images.clone()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen) * std
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def thicken(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate strokes by ``pixels`` on every side: each pixel takes the max of its neighbourhood (max-pool)."""
    p = int(pixels)
    if p == 0:
        return images.clone()
    x = images.float().unsqueeze(1)
    out = F.max_pool2d(x, kernel_size=2 * p + 1, stride=1, padding=p)
    return out.squeeze(1).to(torch.uint8)


# name: (what the level means, levels, function)
PERTURBATIONS: dict[str, tuple[str, list[float], Callable[[torch.Tensor, float], torch.Tensor]]] = {
    "rotation": ("rotated by (degrees)", [0, 10, 20, 30, 45, 60, 90], rotate),
    "shift": ("shifted right and down by (pixels)", [0, 1, 2, 3, 4, 5, 6], shift),
    "noise": ("gaussian noise, std on 0..255", [0, 25, 50, 75, 100, 150, 200], add_noise),
    "thickening": ("strokes thickened by (pixels)", [0, 1, 2, 3], thicken),
}


AXIS_TITLES = {kind: meaning for kind, (meaning, _, _) in PERTURBATIONS.items()}


def perturb(images: torch.Tensor, kind: str, level: float) -> torch.Tensor:
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}: use one of {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[kind][2](images, level)


def subsample(n_total: int, n: int, seed: int = 0) -> torch.Tensor:
    """A fixed random choice of ``n`` rows (sorted), the same for every model so curves compare."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def robustness(
    model: nn.Module, config: TrainConfig, data: MNIST, n: int = 1000, progress: Progress = no_progress
) -> dict[str, list[tuple[float, float]]]:
    """Accuracy at each level of each perturbation, on the same ``n`` test images of the task."""
    index, targets, _ = task_test_set(data, config)
    rows = subsample(len(index), n)
    images, targets = data.test_images[index[rows]], targets[rows]
    steps = sum(len(levels) for _, levels, _ in PERTURBATIONS.values())
    done = 0
    out: dict[str, list[tuple[float, float]]] = {}
    for kind, (_, levels, fn) in PERTURBATIONS.items():
        out[kind] = []
        for level in levels:
            progress(done / steps, f"{kind} {level:g}")
            probs = predict_proba(model, config, fn(images, level))
            out[kind].append((float(level), float((probs.argmax(dim=1) == targets).float().mean())))
            done += 1
    progress(1.0, "done")
    return out


# ---------------------------------------------------------------- embeddings

RAW = "raw pixels"
# The layers worth a map: what each block hands on (activations, pools) and the final output.
_MAPPED = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d, nn.LogSoftmax)


def embedding_layers(model: nn.Module) -> list[str]:
    """What can be mapped: the raw pixels, then each leaf layer's output, in the order they run."""
    names = [RAW]
    if isinstance(model, SimpleNetScratch):
        return [*names, "hidden (relu)", "output"]
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    if not leaves:
        return [*names, "output"]
    mapped = [n for n in leaves[:-1] if isinstance(model.get_submodule(n), _MAPPED)]
    return [*names, *mapped, leaves[-1]]


def layer_label(model: nn.Module, name: str) -> str:
    if name in (RAW, "output", "hidden (relu)"):
        return name
    return f"{name} · {type(model.get_submodule(name)).__name__}"


@torch.inference_mode()
def layer_features(
    model: nn.Module, config: TrainConfig, images: torch.Tensor, layer: str, batch: int = 500
) -> torch.Tensor:
    """What ``layer`` outputs for uint8 ``images``, flattened to [N, features] (a forward hook catches it)."""
    if layer == RAW:
        return images.reshape(len(images), -1).float() / 255
    model.eval()
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    hooked: nn.Module | None = None
    for start in range(0, len(images), batch):
        x = prepare(images[start : start + batch], config, device)
        if layer == "output":
            y = model(x)
        elif layer == "hidden (relu)" and isinstance(model, SimpleNetScratch):
            y = (x.reshape(len(x), -1) @ model.w1 + model.b1).clamp(min=0)
        else:
            if hooked is None:
                # hook a copy: the cached model is shared by every session, and a hook on it would also catch
                # the forward passes other sessions make meanwhile
                hooked = copy.deepcopy(model).eval()
            caught: list[torch.Tensor] = []
            handle = hooked.get_submodule(layer).register_forward_hook(lambda m, i, o, c=caught: c.append(o))
            try:
                hooked(x)
            finally:
                handle.remove()
            y = caught[0]
        out.append(y.reshape(len(y), -1).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


@dataclass(frozen=True)
class Embedding:
    coords: np.ndarray  # [n, 2]
    rows: torch.Tensor  # rows of the task's test set (see task_test_set) that were mapped
    targets: np.ndarray  # [n] class index
    method: str
    layer: str
    dims: int  # features per image in that layer
    explained: float = float("nan")  # PCA: share of the variance the two axes keep


def _pca(x: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """The top ``k`` principal components by randomized SVD (what torch.pca_lowrank does), drawing its random
    start from a generator of its own, so the same features always give the same map."""
    x = x - x.mean(dim=0, keepdim=True)
    k = max(1, min(k, x.shape[0], x.shape[1]))
    q = min(k + 8, x.shape[0], x.shape[1])
    start = torch.randn(x.shape[1], q, generator=torch.Generator().manual_seed(seed))
    basis = torch.linalg.qr(x @ start).Q  # [n, q]: a random slice of the directions x spans
    for _ in range(6):  # power iterations: each pass leans the slice further towards the largest spread
        basis = torch.linalg.qr(x @ (x.T @ basis)).Q
    _, s, vt = torch.linalg.svd(basis.T @ x, full_matrices=False)
    total = float((x**2).sum())
    explained = float((s[:k] ** 2).sum()) / total if total else float("nan")
    return x @ vt[:k].T, explained


def _two_columns(coords: np.ndarray) -> np.ndarray:
    """A layer with one number per image (the 3-vs-7 output) maps to a line: y = 0."""
    if coords.shape[1] < 2:
        coords = np.concatenate([coords, np.zeros((len(coords), 2 - coords.shape[1]))], axis=1)
    return coords.astype(np.float32)


def project(features: torch.Tensor, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, float]:
    """[n, d] -> [n, 2]: PCA (torch.pca_lowrank), or t-SNE (sklearn) on the first 50 principal components."""
    x = features.reshape(len(features), -1).float()
    if method == "pca":
        coords, explained = _pca(x, 2)
        return _two_columns(coords.numpy()), explained
    if method == "tsne":
        from sklearn.manifold import TSNE

        reduced, _ = _pca(x, 50)
        perplexity = float(min(30, max(2, (len(x) - 1) / 3)))
        init = "pca" if reduced.shape[1] >= 2 else "random"  # one number per image (3 vs 7's output)
        tsne = TSNE(n_components=2, perplexity=perplexity, init=init, learning_rate="auto", random_state=seed)
        return tsne.fit_transform(reduced.numpy()).astype(np.float32), float("nan")
    raise ValueError(f"unknown projection {method!r}: use 'pca' or 'tsne'")


def embedding(
    model: nn.Module, config: TrainConfig, data: MNIST, layer: str = RAW, method: str = "pca", n: int = 1500
) -> Embedding:
    """``n`` test images of the task, as ``layer`` sees them, projected to 2-D."""
    index, targets, _ = task_test_set(data, config)
    rows = subsample(len(index), n)
    feats = layer_features(model, config, data.test_images[index[rows]], layer)
    coords, explained = project(feats, method)
    return Embedding(coords, rows, targets[rows].numpy(), method, layer, feats.shape[1], explained)


# ---------------------------------------------------------------- what the page keeps track of


def display_names(infos: list[ModelInfo]) -> dict[str, str]:
    """A heading for each model: its title, plus the id where two runs would look alike."""
    names = {i.id: i.title for i in infos}
    return {k: f"{v} · {k}" if list(names.values()).count(v) > 1 else v for k, v in names.items()}


def other_model(infos: list[ModelInfo], first_id: str | None) -> str | None:
    """The model a comparison starts on: the newest one that is not the first."""
    return next((i.id for i in infos if i.id != first_id), None)


def most_confused(cm: torch.Tensor) -> tuple[int, int]:
    """The (true, predicted) cell off the diagonal with the most images: the commonest mistake."""
    off = cm.clone()
    off.fill_diagonal_(-1)
    return divmod(int(off.argmax()), len(cm))


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


def perturbation_examples(image: torch.Tensor) -> tuple[list[torch.Tensor], list[str]]:
    """One uint8 image as it is, then changed a little and then more by each perturbation, with titles."""
    images, titles = [image], ["original"]
    for kind, (_, levels, _) in PERTURBATIONS.items():
        for level in levels[1:4]:
            images.append(perturb(image[None], kind, level)[0])
            titles.append(f"{kind} {level:g}")
    return images, titles


def stored_accuracy(info: ModelInfo) -> float:
    """The test accuracy training recorded for a model; -1 where there is none, so it sorts last."""
    return info.accuracy if info.accuracy is not None else -1.0


def ranked(infos: list[ModelInfo]) -> list[ModelInfo]:
    """The leaderboard's order: ten-class models first, then yes/no pairs such as 3 vs 7 (a different question),
    best accuracy first."""
    return sorted(infos, key=lambda i: (i.config.pair is not None, -stored_accuracy(i)))


# The kinds a page shows one of each: a yes/no pair (3 or 7?, any architecture), then linear, MLP, CNN on ten classes.
KINDS = {"pair": "two classes", "linear": "linear", "mlp": "MLP", "cnn": "CNN"}


def kind_of(info: ModelInfo) -> str:
    """The kind a page picks the best of: a yes/no pair model (any architecture), or linear, MLP, CNN on ten classes."""
    return "pair" if info.config.pair else info.config.kind


def best_of_each_kind(infos: list[ModelInfo], limit: int = 4, kinds: tuple[str, ...] = tuple(KINDS)) -> list[ModelInfo]:
    """What a page shows before anyone picks: the most accurate model of each kind (3 or 7?, linear, MLP, CNN),
    at most ``limit``; a model below 50% never (a broken run answering '8, 12% sure' to everything)."""
    best: dict[str, ModelInfo] = {}
    for info in ranked(infos):
        if not info.broken and kind_of(info) in kinds:
            best.setdefault(kind_of(info), info)
    return [best[k] for k in kinds if k in best][:limit]


def dataset_comparison(infos: list[ModelInfo]) -> list[dict]:
    """Each kind's best test accuracy on each dataset, side by side, where a kind has models on both: the gap that
    opens from MNIST to Fashion-MNIST. A yes/no pair counts as one kind (its pair may differ: named in "pairs")."""
    best: dict[tuple[str, str], ModelInfo] = {}
    for info in ranked(infos):
        if not info.broken:
            best.setdefault((kind_of(info), info.config.dataset), info)
    rows = []
    for kind, label in KINDS.items():
        by_dataset = {d: best[kind, d] for d in DATASETS if (kind, d) in best}
        if len(by_dataset) < len(DATASETS):
            continue
        row = {"kind": label if kind != "pair" else "two classes (yes/no)"}
        row |= {DATASETS[d].title: i.accuracy for d, i in by_dataset.items()}
        accs = [i.accuracy for i in by_dataset.values()]
        row["gap (points)"] = round(100 * (accs[0] - accs[-1]), 1)
        row["best models"] = " · ".join(f"{DATASETS[d].title}: {i.config.preset}"
                                        + (f" ({i.config.question[:-1]})" if i.config.pair else "")
                                        for d, i in by_dataset.items())
        rows.append(row)
    return rows


def pair_caption(config: TrainConfig) -> str:
    """What a two-class model's scores count (3 vs 7: the test 3s and 7s only, as two classes, 7 and 3)."""
    no, yes = config.classes
    return f"A {yes}-vs-{no} model: scored on the test {plural(yes)} and {plural(no)} only, as two classes ({no} and {yes})."


def picker_order(infos: list[ModelInfo]) -> list[ModelInfo]:
    """Every model for a picker: the best of each kind first (ten-digit models before 3-vs-7), then the rest best
    first, the broken ones last."""
    first = ranked(best_of_each_kind(infos, limit=len(KINDS)))  # the best ten-digit model leads
    rest = [i for i in ranked(infos) if i.id not in {f.id for f in first}]
    return first + [i for i in rest if not i.broken] + [i for i in rest if i.broken]


def mistakes_table(pred: Predictions, k: int = 20) -> list[dict]:
    """The ``k`` surest wrong answers as rows: test image, true class, predicted class, probability."""
    names = pred.class_names
    return [{"test image": int(pred.index[r]), "true": names[int(pred.targets[r])],
             "predicted": names[int(pred.predicted[r])], "probability": float(pred.confidence[r])}
            for r in confident_mistakes(pred, k)]


def point_caption(pred: Predictions, position: int) -> str:
    """What the test image at ``position`` is, and what the model called it, for the map's side panel."""
    row = int((pred.index == position).nonzero()[0, 0])
    names = pred.class_names
    return (f"label **{names[int(pred.targets[row])]}**, predicted **{names[int(pred.predicted[row])]}** "
            f"({float(pred.confidence[row]):.1%})")


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


def robustness_rows(results: dict[str, dict[str, list[tuple[float, float]]]]) -> list[dict]:
    """Robustness curves of several models as table rows: model, change, level, accuracy."""
    return [{"model": name, "change": kind, "level": level, "accuracy": acc}
            for name, curves in results.items() for kind, points in curves.items() for level, acc in points]


def map_title(model: nn.Module, emb: Embedding) -> str:
    """The map's title: the layer, how many numbers it gives per image, and (PCA) the spread the axes keep."""
    how = f"{emb.dims:,} number{'s' if emb.dims != 1 else ''} per image"
    if emb.method == "pca":
        how += f"; the two axes keep {emb.explained:.0%} of the spread"
    return f"{layer_label(model, emb.layer)} · {how}"


def cell_caption(n: int, true_name: str, predicted_name: str, shown: int = 40) -> str:
    """What the images beside the confusion matrix are: how many, of which true class, called what."""
    surest = f" (the {shown} the model was surest about)" if n > shown else ""
    return f"**{n:,}** test images are **{true_name}** and were called **{predicted_name}**{surest}."


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
