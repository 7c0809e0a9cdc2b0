"""The one module that imports streamlit: cached accessors and the widgets every page shares.

The dataset, the model store, the job queue and loaded models are cached once per process
(``st.cache_resource``), so every browser session and every page share one copy.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from . import data as data_mod
from . import viz
from .jobs import JobQueue, Snapshot
from .lessons import run_label, run_verdict
from .models import PRESET_HELP, PRESETS, ModelInfo, TrainConfig
from .store import ModelStore, StoreError
from .train import device_label

ROOT = Path(__file__).resolve().parent.parent

# The journey: (page file, title, icon, one line). A stage joins by adding its file to pages/.
STAGES = [
    ("pages/1_Data_Explorer.py", "Data Explorer", "🔍", "Pixels, heatmaps, the average digit, class counts."),
    ("pages/2_Linear_3_vs_7.py", "Linear 3 vs 7", "📏", "A pixel-similarity baseline, then a linear model trained by hand."),
    ("pages/3_MLP.py", "MLP", "🧠", "simple_net and deeper MLPs, trained live."),
    ("pages/4_CNN.py", "CNN", "🧩", "The seed's DigitCNN and better recipes; feature maps."),
    ("pages/5_Features.py", "Features", "👁️", "What the weights look for: 784-weight rows as images, filters."),
    ("pages/6_Sketch_Pad.py", "Sketch Pad", "✏️", "Draw a digit and watch every model answer."),
    ("pages/7_Evaluate.py", "Evaluate", "📊", "Confusion matrix, mistakes, confidence, robustness."),
]


def existing_stages() -> list[tuple[str, str, str, str]]:
    """The stages whose page file exists, in journey order; any other file in pages/ joins at the end."""
    known = [s for s in STAGES if (ROOT / s[0]).is_file()]
    listed = {s[0] for s in STAGES}
    for path in sorted((ROOT / "pages").glob("*.py")):
        rel = f"pages/{path.name}"
        if rel not in listed:
            title = path.stem.split("_", 1)[-1].replace("_", " ")
            known.append((rel, title, "📄", ""))
    return known


def navigation(home: Callable[[], None]) -> None:
    """The sidebar: Home first, then every stage; a new stage joins by adding its file to pages/."""
    pages = [st.Page(home, title="Home", icon="🔢", default=True)]
    for path, title, icon, _ in existing_stages():
        pages.append(st.Page(path, title=title, icon=icon, url_path=title.replace(" ", "_")))
    st.navigation(pages).run()


# ---------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner="Loading MNIST...")
def _load_data() -> data_mod.MNIST:
    # The app never blocks on a download at start-up: offline classrooms get the sample at once,
    # and the banner offers the download with a progress bar.
    return data_mod.load_mnist(allow_download=False)


def get_data() -> data_mod.MNIST:
    return _load_data()


@st.cache_resource
def get_store() -> ModelStore:
    return ModelStore()


@st.cache_resource
def get_queue() -> JobQueue:
    return JobQueue(get_store(), max_running=int(os.environ.get("DIGITLAB_MAX_TRAINING", 1)))


def owner_id() -> str:
    """A per-browser-session id: the jobs a session may stop are the ones it started."""
    if "owner_id" not in st.session_state:
        st.session_state.owner_id = uuid.uuid4().hex[:8]
    return st.session_state.owner_id


def _model_mtime(store: ModelStore, model_id: str) -> float:
    try:
        return (store.root / f"{model_id}.safetensors").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(max_entries=32, show_spinner=False)
def _load_model(root: str, model_id: str, _mtime: float):
    return ModelStore(root).load(model_id)


def load_model(model_id: str) -> tuple[torch.nn.Module, ModelInfo] | None:
    """A stored model, cached per process; on a missing or damaged file, an error on the page and None."""
    store = get_store()
    try:
        return _load_model(str(store.root), model_id, _model_mtime(store, model_id))
    except StoreError as e:
        st.error(f"This model cannot be used: {e}")
        return None


# ---------------------------------------------------------------- page frame


def _use_app_navigation() -> None:
    """Run every page through app.py's st.navigation, even a deep link opened first after start-up.

    Until some session has run app.py, Streamlit treats a pages/ folder the old (v1) way: a first visit to
    /CNN runs pages/4_CNN.py alone, with a sidebar that lists "app" and no icons. Switching the flag
    st.navigation itself sets and rerunning once puts that visit on the same footing as every other.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without it has no v1 mode to leave
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_setup(title: str, icon: str = "🔢", intro: str = "") -> data_mod.MNIST:
    """Page config, title, the data banner and the sidebar; returns the dataset."""
    _use_app_navigation()
    st.set_page_config(page_title=f"{title} · DigitLab", page_icon=icon, layout="wide")
    st.title(f"{icon} {title}")
    if intro:
        st.markdown(intro)
    data = get_data()
    data_banner(data)
    sidebar_status(data)
    return data


def data_banner(data: data_mod.MNIST) -> None:
    src = data.source
    if data.is_sample:
        st.warning(
            f"Using **{src.label}**: {len(data.train_images):,} training and {len(data.test_images):,} test images. "
            "Results will be a little lower than on the full MNIST.",
            icon="📦",
        )
        with st.expander("Fetch the full MNIST (70,000 images, about 11 MB)"):
            st.caption(
                "Downloads from torchvision's MNIST mirrors into the local data folder "
                f"`{data_mod.cache_dir()}`. Nothing is kept unless all four files arrive whole."
            )
            if st.button("Fetch full MNIST", key="fetch_full_mnist"):
                fetch_full_mnist()
    else:
        st.caption(f"Data: {src.label} · {len(data.train_images):,} train / {len(data.test_images):,} test images")
    if src.skipped:
        with st.expander("Why not the other data sources"):
            for reason in src.skipped:
                st.markdown(f"- {reason}")


def fetch_full_mnist() -> None:
    bar = st.progress(0.0, text="Connecting...")

    def progress(name: str, done: int, total: int | None) -> None:
        frac = done / total if total else 0.0
        bar.progress(min(1.0, frac), text=f"{name}: {done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else ""))

    try:
        data_mod.download(data_mod.cache_dir(), progress)
    except data_mod.DataError as e:
        bar.empty()
        st.error(f"Could not fetch MNIST, so DigitLab stays on the sample. {e}")
        return
    _load_data.clear()
    st.success("Full MNIST downloaded. Reloading...")
    st.rerun()


def sidebar_status(data: data_mod.MNIST) -> None:
    with st.sidebar:
        where = "the bundled sample" if data.is_sample else f"full MNIST ({data.source.kind})"
        st.caption(f"**Data:** {where}")
        st.caption(f"**Device:** {device_label()}")
        running = [j for j in get_queue().jobs() if not j.finished]
        if running:
            st.caption("**Training now:**")
            for j in running:
                st.caption(f"· {j.config.title} — {j.message}")


def show_code(*funcs: Callable, title: str = "The code that runs") -> None:
    """The real source of the functions the page calls, never a copy that can drift."""
    with st.expander(title):
        for f in funcs:
            st.code(inspect.getsource(f), language="python")


# ---------------------------------------------------------------- training


def preset_picker(kinds: tuple[str, ...], key: str, default: str | None = None) -> TrainConfig:
    names = [n for n, c in PRESETS.items() if c.kind in kinds]
    index = names.index(default) if default in names else 0
    name = st.selectbox(
        "Preset", names, index=index, key=key, format_func=lambda n: f"{n} — {PRESET_HELP[n]}",
        help="Start from a tutorial's own recipe, then change what you like.",
    )
    return PRESETS[name]


def submit_training(config: TrainConfig, data: data_mod.MNIST, state_key: str, continue_from: str = "") -> Snapshot:
    snap = get_queue().submit(config, data, owner_id(), continue_from=continue_from)
    st.session_state[state_key] = snap.id
    return snap


def training_panel(state_key: str, on_done: Callable[[Snapshot], None] | None = None) -> Snapshot | None:
    """Live view of this session's job under ``state_key``: progress, loss and accuracy, stop.

    Redraws itself every second while the job runs (a fragment), so the rest of the page
    stays still, and picks the job up again when the student comes back to the page.
    """
    job_id = st.session_state.get(state_key)
    if not job_id:
        return None
    snap = get_queue().snapshot(job_id)
    if snap is None:
        return None
    if snap.finished:
        _draw_job(snap, state_key)
        if on_done:
            on_done(snap)
        return snap

    @st.fragment(run_every=1.0)
    def live():
        s = get_queue().snapshot(job_id)
        _draw_job(s, state_key)
        if s.finished:
            st.rerun(scope="app")

    live()
    return snap


def _draw_job(snap: Snapshot, state_key: str) -> None:
    title = f"**{snap.config.title}** · {snap.config.preset}"
    if snap.state == "failed":
        st.error(f"{title}: {snap.error}")
    elif snap.state == "cancelled":
        st.warning(f"{title}: {snap.message}")
    elif snap.state == "done":
        st.success(f"{title}: {snap.message}")
    else:
        cols = st.columns([5, 1])
        cols[0].progress(snap.progress, text=snap.message)
        if snap.owner == owner_id() and cols[1].button("Stop", key=f"stop_{state_key}_{snap.id}"):
            get_queue().cancel(snap.id, owner_id())
    if snap.history or snap.batch_losses:
        left, right = st.columns(2)
        left.plotly_chart(viz.loss_curve(snap), key=f"loss_{state_key}_{snap.id}_{len(snap.batch_losses)}")
        right.plotly_chart(viz.accuracy_curve(snap.history, batch_accuracies=snap.batch_accuracies,
                                              epochs=snap.config.epochs),
                           key=f"acc_{state_key}_{snap.id}_{len(snap.batch_accuracies)}")


# ---------------------------------------------------------------- choosing stored models


def store_problems() -> None:
    _, problems = get_store().scan()
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
    infos = [i for i in get_store().list() if where(i)]
    if not infos:
        return None
    by_id = {i.id: i for i in infos}
    chosen = st.selectbox(label, list(by_id), key=key, format_func=lambda i: model_label(by_id[i]), help=help)
    return by_id.get(chosen)


def models_table(infos: list[ModelInfo]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": i.config.title,
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


# ---------------------------------------------------------------- training controls and run comparison (stages 2-4)

LR_OPTIONS = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def training_controls(config: TrainConfig, key: str, lr_options: tuple[float, ...] = LR_OPTIONS) -> TrainConfig:
    """Learning rate (log scale), batch size, epochs and training images, each with a help line.

    Widget keys carry the preset, so picking another preset brings back that preset's own values.
    """
    from math import log10

    k = f"{key}_{config.preset}"
    # The preset's own rate is always a notch (cnn-fast's 0.005 is not on the 3x ladder), so a preset trains as written.
    if config.lr > 0 and config.lr not in lr_options:
        lr_options = tuple(sorted({*lr_options, float(config.lr)}))
    lr_default = min(lr_options, key=lambda v: abs(log10(v) - log10(config.lr)))
    c1, c2, c3, c4 = st.columns(4)
    lr = c1.select_slider(
        "Learning rate", options=list(lr_options), value=lr_default, format_func=lambda v: f"{v:g}", key=f"{k}_lr",
        help="How far each step moves the weights against the gradient. Each notch is about 3x; too high blows up.",
    )
    batch_size = c2.number_input(
        "Batch size", min_value=1, max_value=100_000, value=int(config.batch_size), step=32, key=f"{k}_bs",
        help="Images per gradient step: small batches step more often but noisier.",
    )
    epochs = c3.number_input(
        "Epochs", min_value=1, max_value=100, value=int(config.epochs), key=f"{k}_epochs",
        help="Passes over all the training images.",
    )
    limit = c4.number_input(
        "Training images (0 = all)", min_value=0, max_value=60_000, value=int(config.train_limit), step=1000,
        key=f"{k}_limit", help="Train on a random subset for a quicker run; 0 uses every training image.",
    )
    return config.with_(lr=float(lr), batch_size=int(batch_size), epochs=int(epochs), train_limit=int(limit))


def start_training(
    config: TrainConfig, data: data_mod.MNIST, state_key: str, runs_key: str = "", continue_from: str = ""
) -> Snapshot | None:
    """Check the settings, then submit; bad settings end in a message on the page, not in the queue."""
    from .train import ConfigError, check_config, task_data

    try:
        check_config(config, len(task_data(data, config, "train")[0]))
    except ConfigError as e:
        st.error(f"Cannot train with these settings: {e}")
        return None
    snap = submit_training(config, data, state_key, continue_from=continue_from)
    if runs_key:
        runs = st.session_state.setdefault(runs_key, [])
        if snap.id not in runs:
            runs.append(snap.id)
    return snap


def one_more_epoch(snap: Snapshot | None, data: data_mod.MNIST, state_key: str, runs_key: str = "") -> None:
    """Continue the stored model of a finished run for one epoch at a constant rate (saved as a new model)."""
    if snap is None or not snap.finished or not snap.model_id:
        return
    if st.button(
        "One more epoch", key=f"more_{state_key}_{snap.id}",
        help="Train the model this run saved for one more epoch; the result is stored as a new model.",
    ):
        if start_training(snap.config.with_(epochs=1, schedule="constant"), data, state_key, runs_key,
                          continue_from=snap.model_id):
            st.rerun()


def train_section(config: TrainConfig, data: data_mod.MNIST, prefix: str, disabled: bool = False) -> Snapshot | None:
    """The live-training block the MLP and CNN stages share: Train, the running job, its verdict, one more
    epoch, and this session's runs on one chart. Keys: ``{prefix}_train``, ``{prefix}_job``, ``{prefix}_runs``."""
    state_key, runs_key = f"{prefix}_job", f"{prefix}_runs"
    if st.button("Train", type="primary", key=f"{prefix}_train", disabled=disabled,
                 help="Start training in the background; it keeps going if you switch page."):
        start_training(config, data, state_key, runs_key=runs_key)
    snap = training_panel(state_key)
    if snap is not None and snap.finished and (verdict := run_verdict(snap.config, snap.history)):
        st.warning(verdict)
    one_more_epoch(snap, data, state_key, runs_key=runs_key)
    st.subheader("Compare runs")
    runs_comparison(runs_key, run_label)
    return snap


def session_runs(runs_key: str) -> list[Snapshot]:
    """This session's runs under ``runs_key`` that have at least one finished epoch, oldest first."""
    snaps = [get_queue().snapshot(i) for i in st.session_state.get(runs_key, [])]
    return [s for s in snaps if s is not None and s.history]


def runs_comparison(runs_key: str, label: Callable[[TrainConfig], str],
                    metrics: tuple[str, ...] = ("test_accuracy", "test_loss")) -> None:
    """This session's runs overlaid, to compare settings (e.g. learning rate 0.01, 0.1, 1.0)."""
    snaps = session_runs(runs_key)
    if len(snaps) < 2:
        st.caption("Train again with other settings (for example learning rate 0.01, 0.1 and 1.0): "
                   "every run of this session is drawn here on one chart.")
        if not snaps:
            return
    runs: dict[str, list[dict]] = {}
    for n, s in enumerate(snaps, start=1):
        name = f"{n}. {label(s.config)}" + (" (failed)" if s.state == "failed" else "")
        runs[name] = list(s.history)
    cols = st.columns(len(metrics))
    for col, metric in zip(cols, metrics):
        fig = viz.runs_overlay(runs, metric)
        fig.update_layout(legend=dict(orientation="h", y=-0.25, yanchor="top"), height=360 + 22 * len(runs))
        col.plotly_chart(fig, key=f"overlay_{runs_key}_{metric}_{len(runs)}")


# ---------------------------------------------------------------- pointing to where a model is trained

TRAIN_PAGES = {"linear": "pages/2_Linear_3_vs_7.py", "mlp": "pages/3_MLP.py", "cnn": "pages/4_CNN.py"}


def link(path: str, label: str, icon: str = "") -> None:
    """st.page_link; a page run on its own (no navigation, as under AppTest) names the page instead."""
    from streamlit.errors import StreamlitAPIException

    try:
        st.page_link(path, label=label, icon=icon or None)
    except StreamlitAPIException:
        st.markdown(f"- {icon} {label}")


def train_links(kinds: tuple[str, ...] = ("linear", "mlp", "cnn")) -> None:
    """A link to each stage page that trains these kinds of model."""
    wanted = [TRAIN_PAGES[k] for k in kinds if k in TRAIN_PAGES]
    for path, title, icon, _ in existing_stages():
        if path in wanted:
            link(path, f"Train one on the {title} page", icon)


def test_image_picker(data: data_mod.MNIST, key: str, default_digit: int = 7) -> tuple[int, torch.Tensor, int]:
    """A digit and which one of that digit in the test set; returns (test index, uint8 image, label)."""
    from .explore import first_index_of

    c1, c2 = st.columns(2)
    digit = c1.selectbox("Digit", list(range(10)), index=default_digit, key=f"{key}_digit",
                         help="Which digit to send through the model.")
    nth = c2.number_input("Which one of them", min_value=0, max_value=9_999, value=0, step=1, key=f"{key}_nth",
                          help="0 is the first test image of that digit, 1 the next, and so on.")
    index = first_index_of(data.test_labels, int(digit), int(nth))
    return index, data.test_images[index], int(data.test_labels[index])


# ---- per-model analyses (Evaluate, Features)
# Added by the Evaluate/Features change; the lead moves this block into the ui package at merge.
# What those pages show for a stored model is computed once and kept beside it (digitlab.analysis); here it
# is also kept in memory once per process, keyed on the files' modification times, so a new analysis file
# (or new weights) is read again and every session shares one copy.


@st.cache_resource(max_entries=64, show_spinner="Analysing this model on its test images, once for everyone...")
def _model_analysis(root: str, model_id: str, fingerprint: str, stamp: tuple[int, int], _model, _data):
    from . import analysis

    return analysis.ensure(ModelStore(root), model_id, _data, _model)


def model_analysis(model: torch.nn.Module, info: ModelInfo, data: data_mod.MNIST):
    """The model's analysis (digitlab.analysis.Analysis); None, with a message, if the model has gone."""
    from . import analysis

    store = get_store()
    try:
        return _model_analysis(str(store.root), info.id, data.fingerprint(), analysis.stamp(store, info.id),
                               model, data)
    except StoreError as e:
        st.error(f"This model cannot be analysed: {e}")
        return None


def model_robustness(model: torch.nn.Module, info: ModelInfo, data: data_mod.MNIST, n: int) -> dict | None:
    """Accuracy under each perturbation on ``n`` test images per point: from the analysis, or computed once."""
    from . import analysis

    found = model_analysis(model, info, data)
    if found is None:
        return None
    if found.robustness(n) is None:
        with st.spinner(f"Testing {info.config.title} on {n:,} changed images per point, once for everyone..."):
            found = analysis.add_robustness(get_store(), found, data, n, model)
    return found.robustness(n)


def model_embedding(model: torch.nn.Module, info: ModelInfo, data: data_mod.MNIST, layer: str, method: str, n: int):
    """The 2-D map of ``n`` test images at ``layer`` (an evaluate.Embedding): from the analysis, or computed once;
    None, with a message, where that map cannot be drawn."""
    from . import analysis

    found = model_analysis(model, info, data)
    if found is None:
        return None
    if found.embedding(layer, method, n) is None:
        how = "PCA" if method == "pca" else "t-SNE"
        with st.spinner(f"Projecting {n:,} test images with {how}, once for everyone..."):
            try:
                found = analysis.add_embedding(get_store(), found, data, layer, method, n, model)
            except (ValueError, RuntimeError) as e:
                st.error(f"This map cannot be drawn for {layer}: {e}")
                return None
    return found.embedding(layer, method, n)


@st.cache_resource(max_entries=16, show_spinner=False)
def _initial_model(config_key: str, _config: TrainConfig) -> torch.nn.Module:
    from .features import initial_model

    return initial_model(_config)


def initial_model(config: TrainConfig) -> torch.nn.Module:
    """The run's untrained start (features.initial_model), built once per config for every session."""
    return _initial_model(config.key(), config)


@st.cache_resource(max_entries=64, show_spinner=False)  # at most ~1 MB each: memory stays bounded
def _shared_figure(key: tuple, _build: Callable):
    return _build()


def shared_figure(key: tuple, build: Callable, *args, **kwargs):
    """``build(*args, **kwargs)``, a figure that depends only on ``key`` (what it shows, e.g. a model's weights
    checksum and a setting) and never on the session: built once per process and shared by every session.
    Safe to share: st.plotly_chart copies a figure (to_dict) before sending it and never changes it."""
    from functools import partial

    return _shared_figure(key, partial(build, *args, **kwargs))
