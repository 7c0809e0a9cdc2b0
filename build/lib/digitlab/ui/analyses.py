"""Per-model analyses for Evaluate and Features, and each model's untrained start.

What those pages show for a stored model is computed once and kept beside it (digitlab.analysis); here it is
also kept in memory once per process, keyed on the files' modification times, so a new analysis file (or new
weights) is read again and every session shares one copy.
"""

from __future__ import annotations

import threading

import streamlit as st
import torch

from .. import analysis, untrained
from .. import data as data_mod
from ..models import ModelInfo, TrainConfig
from ..store import ModelStore, StoreError
from .resources import get_store, shared_figure


@st.cache_resource(max_entries=64, show_spinner="Analysing this model on its test images, once for everyone...")
def _model_analysis(root: str, model_id: str, fingerprint: str, stamp: tuple[int, int], _model, _data):
    return analysis.ensure(ModelStore(root), model_id, _data, _model)


def model_analysis(model: torch.nn.Module, info: ModelInfo, data: data_mod.MNIST):
    """The model's analysis (digitlab.analysis.Analysis); None, with a message, if the model has gone."""
    store = get_store()
    try:
        return _model_analysis(str(store.root), info.id, data.fingerprint(), analysis.stamp(store, info.id),
                               model, data)
    except StoreError as e:
        st.error(f"This model cannot be analysed: {e}")
        return None


_LOCKS: dict[tuple, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _one_at_a_time(key: tuple) -> threading.Lock:
    """The lock of one costly addition to a model's analysis: four sessions asking for the same new t-SNE map
    computed it four times (22 s of CPU where once was 8.7 s); now the others wait for the first and read it."""
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


def model_robustness(model: torch.nn.Module, info: ModelInfo, data: data_mod.MNIST, n: int) -> dict | None:
    """Accuracy under each perturbation on ``n`` test images per point: from the analysis, or computed once."""
    found = model_analysis(model, info, data)
    if found is None or found.robustness(n) is not None:
        return None if found is None else found.robustness(n)
    with st.spinner(f"Testing {info.config.title} on {n:,} changed images per point, once for everyone..."):
        with _one_at_a_time(("robustness", info.id, n)):
            found = model_analysis(model, info, data)  # again: it may have been made while this session waited
            if found is not None and found.robustness(n) is None:
                found = analysis.add_robustness(get_store(), found, data, n, model)
    return None if found is None else found.robustness(n)


def model_embedding(model: torch.nn.Module, info: ModelInfo, data: data_mod.MNIST, layer: str, method: str, n: int):
    """The 2-D map of ``n`` test images at ``layer`` (an embeddings.Embedding): from the analysis, or computed once;
    None, with a message, where that map cannot be drawn."""
    found = model_analysis(model, info, data)
    if found is None:
        return None
    if found.embedding(layer, method, n) is None:
        how = "PCA" if method == "pca" else "t-SNE"
        with st.spinner(f"Projecting {n:,} test images with {how}, once for everyone..."):
            with _one_at_a_time(("embedding", info.id, layer, method, n)):
                found = model_analysis(model, info, data)  # again: it may have been made while this session waited
                try:
                    if found is not None and found.embedding(layer, method, n) is None:
                        found = analysis.add_embedding(get_store(), found, data, layer, method, n, model)
                except (ValueError, RuntimeError) as e:
                    st.error(f"This map cannot be drawn for {layer}: {e}")
                    return None
    return None if found is None else found.embedding(layer, method, n)


def initial_model(config: TrainConfig) -> torch.nn.Module:
    """The run's untrained start (untrained.initial_model), built once per config for every session."""
    return shared_figure(("initial model", config.key()), untrained.initial_model, config)
