"""Choosing what to look at: a stored model (picker, label, the one models table, the store's skipped files)
and a test image."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
import torch

from .. import data as data_mod
from ..explore import first_index_of
from ..models import ModelInfo
from .resources import stored_models


def store_problems() -> None:
    _, problems = stored_models()
    if problems:
        with st.expander(f"⚠️ {len(problems)} file(s) in the model store were skipped"):
            for p in problems:
                st.markdown(f"- `{p.name}`: {p.reason}")


def model_label(info: ModelInfo) -> str:
    acc = info.metrics.get("test_accuracy")
    acc_txt = f"{acc:.2%}" if isinstance(acc, (int, float)) else "?"
    return f"{info.config.title} · {info.config.preset} · {acc_txt} · {info.created[:16].replace('T', ' ')}"


def model_picker(
    label: str, key: str, where: Callable[[ModelInfo], bool] = lambda i: True, help: str | None = None
) -> ModelInfo | None:
    """A selectbox over the stored models that pass ``where``; None (with a message) when there are none."""
    infos = [i for i in stored_models()[0] if where(i)]
    if not infos:
        return None
    by_id = {i.id: i for i in infos}
    chosen = st.selectbox(label, list(by_id), key=key, format_func=lambda i: model_label(by_id[i]), help=help)
    return by_id.get(chosen)


def models_table(infos: list[ModelInfo]) -> pd.DataFrame:
    """The one table of stored models: what each is, how well it does, how long it took, its id."""
    return pd.DataFrame(
        [
            {
                "model": i.config.title,
                "kind": {"linear": "linear", "mlp": "MLP", "cnn": "CNN"}.get(i.config.kind, i.config.kind),
                "scored on": "test 3s and 7s only (3 or 7?)" if i.config.task == "3v7" else "all 10 digits",
                "preset": i.config.preset,
                "task": i.config.task,
                "test accuracy": i.metrics.get("test_accuracy"),
                "parameters": i.parameters,
                "epochs": len(i.history),
                "training time (s)": round(i.train_seconds, 1),
                "trained": i.created[:16].replace("T", " "),
                "id": i.id,
            }
            for i in infos
        ]
    )


def test_image_picker(data: data_mod.MNIST, key: str, default_digit: int = 7) -> tuple[int, torch.Tensor, int]:
    """A digit and which one of that digit in the test set; returns (test index, uint8 image, label)."""
    c1, c2 = st.columns(2)
    digit = c1.selectbox("Digit", list(range(10)), index=default_digit, key=f"{key}_digit",
                         help="Which digit to send through the model.")
    nth = c2.number_input("Which one of them", min_value=0, max_value=9_999, value=0, step=1, key=f"{key}_nth",
                          help="0 is the first test image of that digit, 1 the next, and so on.")
    index = first_index_of(data.test_labels, int(digit), int(nth))
    return index, data.test_images[index], int(data.test_labels[index])
