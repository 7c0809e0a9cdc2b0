"""Choosing what to look at: a stored model (picker, label, loaded or with its analysis, the one models table, the
store's skipped files) and a test image."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
import torch

from .. import data as data_mod
from .. import ranking
from ..explore import first_index_of
from ..models import BROKEN_BELOW, ModelInfo, trained_when
from .analyses import model_analysis
from .frame import train_links
from .resources import dataset_models, get_data, load_model, shared_figure, stored_models


def store_problems() -> None:
    _, problems = stored_models()
    if problems:
        with st.expander(f"⚠️ {len(problems)} file(s) in the model store were skipped"):
            for p in problems:
                st.markdown(f"- `{p.name}`: {p.reason}")


def model_label(info: ModelInfo) -> str:
    """Its title and accuracy; a model below 50% carries a warning sign wherever it is listed."""
    acc = f"{info.accuracy:.2%}" if info.accuracy is not None else "not scored"
    return f"{'⚠️ ' if info.broken else ''}{info.title} · {acc}"


def model_picker(
    label: str, key: str, where: Callable[[ModelInfo], bool] = lambda i: True, help: str | None = None
) -> ModelInfo | None:
    """A selectbox over the stored models that pass ``where``, the best of each kind first (it starts on the best;
    below-50% models last, marked); None when there are none."""
    infos = ranking.picker_order([i for i in dataset_models() if where(i)])
    if not infos:
        return None
    by_id = {i.id: i for i in infos}
    shown = st.session_state.get(key)
    if shown not in by_id or shown == st.session_state.get(f"{key}_auto"):  # first visit, a model deleted, or still
        st.session_state[key] = st.session_state[f"{key}_auto"] = infos[0].id  # the page's own start: follow the store
    chosen = st.selectbox(label, list(by_id), key=key, format_func=lambda i: model_label(by_id[i]), help=help)
    return by_id.get(chosen)


def loaded_model(key: str) -> tuple[torch.nn.Module, ModelInfo]:
    """The stored model to look inside (the class's best of each kind first), as (model, info); without one that
    loads, where to train one, and the page stops there."""
    info = model_picker("Model", key=key, help="The class's best model of each kind first, then the rest best first; "
                        "⚠️ marks models below 50%.")
    if (loaded := load_model(info.id) if info is not None else None) is None:  # a damaged file: st.error too
        st.info("Pick another model above, or train this one again on its stage page.")
        train_links((info.config.kind,) if info is not None else ())
        st.stop()
    return loaded


def models_with_analyses(one_key: str, compare_key: str, many_key: str, data: data_mod.MNIST) -> list[tuple]:
    """The models to evaluate (``compare_picker``: the class's best one, or up to four side by side), each as
    (model, info, analysis); one that cannot be loaded or analysed is left out, with its message."""
    chosen = []
    for info in compare_picker(one_key, compare_key, many_key):
        loaded = load_model(info.id)  # damaged: st.error
        if loaded is not None and (found := model_analysis(*loaded, data)) is not None:
            chosen.append((*loaded, found))
    return chosen


def choose_models(label: str, key: str, where: Callable[[ModelInfo], bool] = lambda i: True, limit: int = 4,
                  kinds: tuple[str, ...] = tuple(ranking.KINDS), dataset: str | None = None) -> list[ModelInfo]:
    """Up to ``limit`` models side by side (of the dataset in use, or the one named): the class's best of each kind
    until the student adds or removes any stored model; the others in a compact sortable table below the picker."""
    infos = ranking.picker_order([i for i in dataset_models(dataset) if where(i)])
    by_id = {i.id: i for i in infos}
    if key in st.session_state and st.session_state[key] != st.session_state.get(f"{key}_auto"):
        st.session_state[key] = [i for i in st.session_state[key] if i in by_id][:limit]  # the student's, less the gone
    else:  # the page's own start, again on every run: a model that finishes (or goes) shows at once
        st.session_state[key] = st.session_state[f"{key}_auto"] = [i.id for i in ranking.best_of_each_kind(infos, limit,
                                                                                                      kinds)]
    picked = st.multiselect(
        label, list(by_id), key=key, max_selections=limit, format_func=lambda i: model_label(by_id[i]),
        placeholder="Add a model", help=f"It starts on the class's best model of each kind; add or remove any stored "
        f"model, up to {limit}. ⚠️ marks models below {BROKEN_BELOW:.0%} test accuracy: never shown unless picked.")
    rest = [i for i in infos if i.id not in picked]
    if rest:
        with st.expander(f"The other {len(rest)} stored model{'s' if len(rest) != 1 else ''}"):
            st.dataframe(models_table(rest, compact=True), hide_index=True, key=f"{key}_rest",
                         column_config=ACCURACY_COLUMN)
            st.caption("Click a column's name to sort by it. Add a model with the picker above.")
    return [by_id[i] for i in picked]


def compare_picker(one_key: str, compare_key: str, many_key: str) -> list[ModelInfo]:
    """One model (the class's best to start with), or, with the toggle on, up to four side by side (the first
    beside the best of each other kind to start with)."""
    first = model_picker("Model", key=one_key, help="The class's best model of each kind first, then the rest best "
                         "first; ⚠️ marks models below 50%.")
    if first is None or not st.toggle("Compare with other models", key=compare_key):
        return [first] if first is not None else []
    best = [i.id for i in ranking.best_of_each_kind(dataset_models()) if i.id != first.id]
    st.session_state.setdefault(many_key, [first.id, *best][:4])
    return choose_models("Models side by side", key=many_key)


ACCURACY_COLUMN = {"test accuracy": st.column_config.NumberColumn(format="percent")}


def models_table(infos: list[ModelInfo], compact: bool = False, ranks: bool = False) -> pd.DataFrame:
    """The one table of stored models: what each is, how it was trained, how well it does, how long it took
    (``compact``: what tells them apart; ``ranks``: numbered in the order given). Built once per process for a list
    of models (a stored model never changes) and shared by every session, which only reads it: on Home it was a
    third of each rerun."""
    return shared_figure(("models_table", tuple(i.id for i in infos), compact, ranks), _models_table, infos, compact,
                         ranks)


def _models_table(infos: list[ModelInfo], compact: bool, ranks: bool) -> pd.DataFrame:
    rows = [
        {
            "model": i.title,  # what matters first, at every width: which model and how well it does
            "test accuracy": i.accuracy,
            "": "⚠️ below 50%" if i.broken else "",
            "kind": {"linear": "linear", "mlp": "MLP", "cnn": "CNN"}.get(i.config.kind, i.config.kind),
            "dataset": data_mod.DATASETS[i.config.dataset].title,
            "scored on": scored_on(i.config),
            "preset": i.config.preset,
            "question": i.config.question,  # "which digit?", "which item?", "3 or 7?"
            "learning rate": i.config.lr,
            "batch size": i.config.batch_size,
            "epochs": len(i.history) or i.config.epochs,
            "parameters": i.parameters,
            "training time (s)": round(i.train_seconds, 1),
            "trained": trained_when(i.created),
            "id": i.id,
        }
        for i in infos
    ]
    table = pd.DataFrame(rows)
    if compact and not table.empty:
        table = table[["model", "test accuracy", "", "kind", "learning rate", "batch size", "epochs"]]
    if not table.empty and not table[""].any():
        table = table.drop(columns=[""])
    if ranks:
        table.insert(0, "rank", range(1, len(table) + 1))
    return table


def scored_on(config) -> str:
    """What a model's test accuracy counts: 'test 3s and 7s only (3 or 7?)', 'all 10 digits', 'all 10 classes'."""
    if config.pair:
        no, yes = config.classes
        return f"test {data_mod.plural(yes)} and {data_mod.plural(no)} only ({config.question})"
    return "all 10 digits" if config.dataset == "mnist" else "all 10 classes"


def test_image_picker(data: data_mod.MNIST, key: str, default_digit: int = 7) -> tuple[int, torch.Tensor, int]:
    """A class (a digit, or a Fashion-MNIST item) and which one of it in the test set; returns (test index, uint8
    image, label)."""
    c1, c2 = st.columns(2)
    noun = data.spec.noun
    digit = c1.selectbox(noun.capitalize(), list(range(10)), index=default_digit, key=f"{key}_digit",
                         format_func=lambda d: data.classes[d], help=f"Which {noun} to send through the model.")
    nth = c2.number_input("Which one of them", min_value=0, max_value=9_999, value=0, step=1, key=f"{key}_nth",
                          help=f"0 is the first test image of that {noun}, 1 the next, and so on.")
    index = first_index_of(data.test_labels, int(digit), int(nth))
    return index, data.test_images[index], int(data.test_labels[index])


DEFAULT_PAIRS = {"mnist": (3, 7), "fashion": (6, 0)}  # 3 vs 7, the lesson's; Shirt vs T-shirt/top, the hard pair


def class_pair_picker(data: data_mod.MNIST, key: str) -> tuple[int, int]:
    """Two different classes of the dataset in use, the "yes" class first (3 vs 7 to start with on MNIST, Shirt vs
    T-shirt/top on Fashion-MNIST); kept per dataset, so switching back finds the pair picked before."""
    k = f"{key}_{data.spec.key}"
    yes_default, no_default = DEFAULT_PAIRS.get(data.spec.key, (3, 7))
    c1, c2 = st.columns(2)
    yes = c1.selectbox("Is it a...", range(10), index=yes_default, key=f"{k}_yes", format_func=lambda d: data.classes[d],
                       help="The class the model answers 'yes' (1) for.")
    no = c2.selectbox("...or a", range(10), index=no_default, key=f"{k}_no", format_func=lambda d: data.classes[d],
                      help="The class it answers 'no' (0) for.")
    if yes == no:
        st.warning(f"Pick two different classes: both are {data.classes[yes]}. Showing "
                   f"{data.classes[yes_default]} vs {data.classes[no_default]} meanwhile.")
        return yes_default, no_default
    return int(yes), int(no)


def mnist_only(data: data_mod.MNIST) -> data_mod.MNIST:
    """For the Sketch Pad, which reads handwritten digits: MNIST (its models only), whatever dataset the sidebar has
    chosen, saying why when another is chosen."""
    if data.spec.key != "mnist":
        st.info(f"{data.spec.title} is chosen in the sidebar, but a drawing is a handwritten digit: only models "
                "trained on MNIST can read it, so the Sketch Pad offers MNIST models only.", icon="🔢")
    return get_data("mnist")


def dataset_comparison() -> None:
    """Each kind's best accuracy on MNIST beside Fashion-MNIST, once both have models of that kind: the gap opens."""
    rows = ranking.dataset_comparison(stored_models()[0])
    if not rows:
        return
    st.markdown("**MNIST beside Fashion-MNIST:** the best model of each kind on each dataset.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="dataset_comparison",
                 column_config={t: st.column_config.NumberColumn(format="percent") for t in ("MNIST", "Fashion-MNIST")})
    st.caption("On digits every kind lands close to the top; on clothing the linear model, the MLP and the CNN "
               "spread apart, and the gap shows what depth and convolutions buy.")
