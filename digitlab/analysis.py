"""Analyses once per model, not once per visitor: what Evaluate and Features show, kept beside the model.

A stored model's test-set probabilities, its accuracy before training, its robustness curves and its
2-D maps cost seconds for a CNN. They are computed once -- by the training worker right after it saves
the model, or by the first visitor who asks -- and written next to the model as a safetensors file
(``ModelStore.analysis_path``): tensors only, never pickle, written to a temporary name and renamed into
place. Its metadata names the weights (sha256) and the data (fingerprint) it was computed from, so an
analysis of other weights or other data is never shown: it is computed again, and so is a file that is
damaged or not an analysis at all.

    ensure(store, model_id, data, model=None) -> Analysis   # load it, or compute and save it
    load(store, model_id, data) -> Analysis | None          # only what is on disk and current
    complete(store, model_id, data, model=None) -> Analysis # ensure, plus the robustness curves (the worker, when idle)

What a student picks beyond the page's defaults (more images per robustness point, another layer or
t-SNE on the map) is computed on the first request and added to the same file (``add_robustness``,
``add_embedding``), so it too is computed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from dataclasses import dataclass, replace

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from . import embeddings, metrics, robustness, untrained
from .data import MNIST
from .models import TrainConfig
from .store import ModelStore, StoreError, atomic_write, read_regular

FORMAT = "digitlab-analysis"
VERSION = "2"  # 2: predictions on the held-out training images (temperature scaling)
ROBUST_N = 1000  # the Evaluate page's default test images per robustness point
EMBED_N = 1000  # and its default number of points on the map
_WRITE_LOCK = threading.Lock()  # sessions of one server adding parts to one file take turns
STARTS_FILE = "analyses/untrained-accuracy.json"  # start_accuracy's table: {the start's key: its accuracy}
STARTS_KEPT = 1000  # entries kept (the latest), about 80 kB
STARTS_BYTES = 1_000_000  # a larger file is not read (worked out again)


@dataclass(frozen=True)
class Analysis:
    """One model's analysis: the predictions on its test set, plus named parts (robustness, maps)."""

    model_id: str
    weights_sha256: str
    fingerprint: str
    predictions: metrics.Predictions
    accuracy_before: float  # the same run's untrained start, on the same test images
    parts: dict[str, torch.Tensor]

    def robustness(self, n: int = ROBUST_N) -> dict[str, list[tuple[float, float]]] | None:
        """Accuracy at each level of each perturbation on ``n`` test images; None if not computed yet."""
        curves = {kind: self.parts.get(f"robust|{n}|{kind}") for kind in robustness.PERTURBATIONS}
        if any(c is None for c in curves.values()):
            return None
        return {kind: [(float(lvl), float(acc)) for lvl, acc in c.tolist()] for kind, c in curves.items()}

    @property
    def held_out(self) -> metrics.Predictions | None:
        """The predictions on the training images the run never trained on (what temperature scaling is fitted
        on); None for a model trained before images were held out."""
        probs, targets = self.parts.get("held_out|probs"), self.parts.get("held_out|targets")
        if probs is None or targets is None:
            return None
        return metrics.Predictions(probs, targets, torch.arange(len(targets)), self.predictions.class_names)

    def embedding(self, layer: str = embeddings.RAW, method: str = "pca", n: int = EMBED_N) -> embeddings.Embedding | None:
        """The 2-D map of ``n`` test images at ``layer``; None if not computed yet."""
        key = f"embed|{layer}|{method}|{n}"
        coords, rows, sizes = (self.parts.get(f"{key}|{p}") for p in ("coords", "rows", "sizes"))
        if coords is None or rows is None or sizes is None:
            return None
        targets = self.predictions.targets[rows].numpy()
        dims, explained = sizes.tolist()
        return embeddings.Embedding(coords.numpy(), rows, targets, method, layer, int(dims), float(explained))


# ---------------------------------------------------------------- computing


def _robustness_parts(curves: dict[str, list[tuple[float, float]]], n: int) -> dict[str, torch.Tensor]:
    return {f"robust|{n}|{kind}": torch.tensor(points, dtype=torch.float64) for kind, points in curves.items()}


def _embedding_parts(emb: embeddings.Embedding, n: int) -> dict[str, torch.Tensor]:
    key = f"embed|{emb.layer}|{emb.method}|{n}"
    return {f"{key}|coords": torch.from_numpy(emb.coords).float(), f"{key}|rows": emb.rows.long(),
            f"{key}|sizes": torch.tensor([emb.dims, emb.explained], dtype=torch.float64)}


def compute(store: ModelStore, model_id: str, data: MNIST, model: nn.Module) -> Analysis:
    """What the pages show first for one model: predictions, the untrained start's accuracy and the raw-pixel
    map of EMBED_N images. Robustness (25 perturbed copies of ROBUST_N images, the costly part for a CNN) is
    added by ``complete``, which the training worker runs when no run is waiting, or on its section's first view."""
    info = store.info(model_id)
    config = info.config
    pred = metrics.predict(model, config, data)
    before = start_accuracy(store, untrained.initial_model(config), config, data)
    parts = _embedding_parts(embeddings.embedding(model, config, data, embeddings.RAW, "pca", EMBED_N), EMBED_N)
    if (held_out := metrics.predict_held_out(model, config, data)) is not None:
        parts |= {"held_out|probs": held_out.probs.float(), "held_out|targets": held_out.targets.long()}
    return Analysis(model_id, store.weights_sha256(model_id), data.fingerprint(), pred, before, parts)


def complete(store: ModelStore, model_id: str, data: MNIST, model: nn.Module | None = None,
             progress: metrics.Progress = metrics.no_progress) -> Analysis:
    """Everything Evaluate and Features show by default, robustness on ROBUST_N images included. ``progress`` is
    called before each robustness level (the training process uses it to give way to a run that arrives)."""
    if model is None:
        model, _ = store.load(model_id)
    return add_robustness(store, ensure(store, model_id, data, model), data, ROBUST_N, model, progress)


def start_accuracy(store: ModelStore, start: nn.Module, config: TrainConfig, data: MNIST) -> float:
    """The untrained start's accuracy on the model's test images, worked out once per start: a class training one
    recipe from one seed (and every "one more epoch") shares its start, and for the seed's DigitCNN that pass over
    the test set was near half of each run's analysis (3.8 s; 2.1 s with the start known, two threads). Kept in
    STARTS_FILE, keyed by the start's weights, the task, the input scaling and the data; a damaged file is
    worked out again."""
    digest = hashlib.sha256(f"{config.kind}|{config.norm}|{config.pair}|{data.fingerprint()}".encode())
    for name, tensor in start.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    key, path = digest.hexdigest(), store.root / STARTS_FILE
    try:
        known = json.loads(read_regular(path, STARTS_BYTES, "start accuracies"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError, StoreError):
        known = {}
    found = known.get(key)
    if isinstance(found, float) and 0.0 <= found <= 1.0:
        return found
    accuracy = untrained.accuracy(start, config, data)
    known = dict(list(known.items())[-(STARTS_KEPT - 1):]) | {key: accuracy}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(known).encode())
    except OSError:
        pass  # a folder it cannot write: worked out again next time
    return accuracy


# ---------------------------------------------------------------- the file beside the model


def _to_bytes(a: Analysis) -> bytes:
    p = a.predictions
    tensors = {"probs": p.probs.float().contiguous(), "targets": p.targets.long(), "index": p.index.long(),
               "accuracy_before": torch.tensor([a.accuracy_before], dtype=torch.float64),
               **{k: v.contiguous() for k, v in a.parts.items()}}
    meta = {"format": FORMAT, "version": VERSION, "model_id": a.model_id, "weights_sha256": a.weights_sha256,
            "fingerprint": a.fingerprint, "class_names": json.dumps(list(p.class_names))}
    return st_save(tensors, metadata=meta)


def _metadata(payload: bytes) -> dict:
    """The ``__metadata__`` of a safetensors payload: 8 bytes of header length, then a JSON header."""
    if len(payload) < 8:
        raise ValueError("too short to be safetensors")
    (size,) = struct.unpack("<Q", payload[:8])
    if size > len(payload) - 8:
        raise ValueError("its header is cut off")
    header = json.loads(payload[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("its header is not a table")
    return header.get("__metadata__") or {}


def _from_bytes(payload: bytes) -> Analysis:
    """An Analysis from a file's bytes; ValueError (or a safetensors error) if it is not a whole one."""
    meta = _metadata(payload)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError("not a DigitLab analysis of this version")
    tensors = st_load(payload)
    names = tuple(json.loads(meta["class_names"]))
    probs, targets, index = tensors.pop("probs"), tensors.pop("targets"), tensors.pop("index")
    if probs.dim() != 2 or probs.shape != (len(index), len(names)) or targets.shape != index.shape:
        raise ValueError("its predictions do not fit together")
    before = float(tensors.pop("accuracy_before")[0])
    pred = metrics.Predictions(probs, targets, index, names)
    return Analysis(meta["model_id"], meta["weights_sha256"], meta["fingerprint"], pred, before, tensors)


def load(store: ModelStore, model_id: str, data: MNIST) -> Analysis | None:
    """The model's analysis from disk if it is there, whole, and of these very weights and data; else None."""
    try:
        payload = store.analysis_path(model_id).read_bytes()
        found = _from_bytes(payload)
        current = store.weights_sha256(model_id)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, RuntimeError, StoreError):
        return None  # missing, damaged, foreign, or the model itself is gone: the caller computes it again
    if (found.model_id, found.weights_sha256, found.fingerprint) != (model_id, current, data.fingerprint()):
        return None  # stale: other weights (the model was replaced) or other data
    return found


def save(store: ModelStore, a: Analysis) -> bool:
    """Write the analysis beside its model; False (and nothing written) if the folder cannot be written."""
    try:
        store.write_analysis(a.model_id, _to_bytes(a))
    except OSError:
        return False
    return True


def ensure(store: ModelStore, model_id: str, data: MNIST, model: nn.Module | None = None) -> Analysis:
    """The model's analysis: loaded from disk, or computed (and saved) if missing, stale or damaged.

    ``model`` saves loading the weights again when the caller has them (the training worker, a page).
    Raises StoreError only when the model itself cannot be used.
    """
    found = load(store, model_id, data)
    if found is not None:
        return found
    if model is None:
        model, _ = store.load(model_id)
    fresh = compute(store, model_id, data, model)
    save(store, fresh)
    return fresh


def _extend(store: ModelStore, a: Analysis, data: MNIST, parts: dict[str, torch.Tensor]) -> Analysis:
    """Add parts to the analysis and to its file (merged with whatever another session added meanwhile)."""
    with _WRITE_LOCK:
        latest = load(store, a.model_id, data) or a
        grown = replace(latest, parts={**latest.parts, **parts})
        save(store, grown)
    return grown


def add_robustness(store: ModelStore, a: Analysis, data: MNIST, n: int, model: nn.Module,
                   progress: metrics.Progress = metrics.no_progress) -> Analysis:
    """The analysis with robustness on ``n`` test images per point as well (computed now, kept on disk)."""
    if a.robustness(n) is not None:
        return a
    config = store.info(a.model_id).config
    return _extend(store, a, data, _robustness_parts(robustness.robustness(model, config, data, n, progress), n))


def add_embedding(
    store: ModelStore, a: Analysis, data: MNIST, layer: str, method: str, n: int, model: nn.Module
) -> Analysis:
    """The analysis with the 2-D map of ``layer`` by ``method`` on ``n`` points as well."""
    if a.embedding(layer, method, n) is not None:
        return a
    config = store.info(a.model_id).config
    return _extend(store, a, data, _embedding_parts(embeddings.embedding(model, config, data, layer, method, n), n))


def stamp(store: ModelStore, model_id: str) -> tuple[int, int]:
    """When the weights and the analysis file last changed (0 if absent): a cache key that moves with them."""

    def mtime(path) -> int:
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            return 0

    return mtime(store.root / f"{model_id}.safetensors"), mtime(store.analysis_path(model_id))
