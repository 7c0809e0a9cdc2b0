"""The training widgets the Linear, MLP and CNN stages share: a preset, its settings, what a run will cost, Train
(or train again live), the live panel of the running job (its curves, and ``watch``: the first layer and 16 test
digits as it learns, pause and single steps), one more epoch, and this session's runs on one chart."""

from __future__ import annotations

import time
from collections.abc import Callable
from math import log10

import streamlit as st

from .. import data as data_mod
from .. import viz
from ..config import FIELDS
from ..lessons import LR_OPTIONS
from ..models import PRESET_HELP, PRESETS, TrainConfig, preset_for
from ..runs.interface import JobRefused, Snapshot
from ..train import ConfigError, check_config, compute_dtype, pick_device, task_size
from .frame import chart
from .resources import get_data, get_queue, owner_id, shared_figure, student_place
from .run_words import run_label, run_verdict
from .text import cancelled_text, duration_text, over_limit_text, refusal_text, status
from .together import class_hold, note_asked
from .watch import steering, watch_it_learn

LIVE_EVERY_S = 1.0  # the live panel's redraw: the worker reports every 0.25 s, and its pictures about every second


def preset_picker(kinds: tuple[str, ...], key: str, default: str | None = None) -> TrainConfig:
    names = [n for n, c in PRESETS.items() if c.kind in kinds]
    index = names.index(default) if default in names else 0
    name = st.selectbox(
        "Preset", names, index=index, key=key, format_func=lambda n: f"{n} — {PRESET_HELP[n]}",
        help="Start from a tutorial's own recipe, then change what you like.",
    )
    return preset_for(name, get_data().spec.key)  # the recipe as it runs on the dataset in use


def training_controls(config: TrainConfig, key: str, lr_options: tuple[float, ...] = LR_OPTIONS) -> TrainConfig:
    """Learning rate (log scale), batch size, epochs and training images, each with a help line.

    Widget keys carry the preset, so picking another preset brings back that preset's own values.
    """
    k = settings_key(key, config.preset, config.dataset)
    # The preset's own rate is always a notch (cnn-fast's 0.005 is not on the 3x ladder), so a preset trains as written;
    # so is a rate put in the box by a shared link or the learning-rate finder.
    for rate in (config.lr, st.session_state.get(lr_key(key, config.preset, config.dataset))):
        if isinstance(rate, int | float) and rate > 0 and rate not in lr_options:
            lr_options = tuple(sorted({*lr_options, float(rate)}))
    lr_options = tuple(v for v in lr_options if FIELDS["lr"].problem(v) is None)  # the schema's bounds
    lr_default = min(lr_options, key=lambda v: abs(log10(v) - log10(config.lr)))
    c1, c2, c3, c4 = st.columns(4)
    lr = c1.select_slider(
        "Learning rate", options=list(lr_options), value=lr_default, format_func=lambda v: f"{v:g}", key=f"{k}_lr",
        help="How far each step moves the weights against the gradient. Each notch is about 3x; too high blows up.",
    )
    batch_size = c2.number_input(
        "Batch size", min_value=int(FIELDS["batch_size"].lo), max_value=int(FIELDS["batch_size"].hi),
        value=int(config.batch_size), step=32, key=f"{k}_bs",
        help="Images per gradient step: small batches step more often but noisier.",
    )
    most, why = epochs_allowed(config.with_(batch_size=int(batch_size)), st.session_state.get(f"{k}_limit"))
    if st.session_state.get(f"{k}_epochs", 0) > most:  # a larger batch or a new limit: bring the box within it
        st.session_state[f"{k}_epochs"] = most
    epochs = c3.number_input(
        "Epochs", min_value=int(FIELDS["epochs"].lo), max_value=most, value=min(int(config.epochs), most), key=f"{k}_epochs",
        help="Passes over all the training images." + why,
    )
    limit = c4.number_input(
        "Training images (0 = all)", min_value=int(FIELDS["train_limit"].lo), max_value=int(FIELDS["train_limit"].hi),
        value=int(config.train_limit), step=1000,
        key=f"{k}_limit", help="Train on a random subset for a quicker run; 0 uses every training image.",
    )
    return config.with_(lr=float(lr), batch_size=int(batch_size), epochs=int(epochs), train_limit=int(limit))


MAX_EPOCHS = int(FIELDS["epochs"].hi)  # the Epochs box's most, less where the class's limit says so


def settings_key(key: str, preset: str, dataset: str = "mnist") -> str:
    """The prefix of a stage's setting widgets: one set per preset (picking another brings back its values) and per
    dataset (a setup on Fashion-MNIST is its own)."""
    return f"{key}_{preset}" + ("" if dataset == "mnist" else f"_{dataset}")


def lr_key(key: str, preset: str, dataset: str = "mnist") -> str:
    """The learning-rate slider's widget key (a shared link and the learning-rate finder set it)."""
    return f"{settings_key(key, preset, dataset)}_lr"


def epochs_allowed(config: TrainConfig, train_limit: int | None) -> tuple[int, str]:
    """The most epochs the Epochs box offers at this batch size (MAX_EPOCHS, or fewer when the class's limit on
    one run's cost says so), and a help line saying why."""
    queue = get_queue()
    if queue.limit_s is None:
        return MAX_EPOCHS, ""
    config = config.with_(epochs=1, train_limit=config.train_limit if train_limit is None else int(train_limit))
    one = queue.estimate(config, task_size(get_data(), config), loaded=False)  # as the limit judges it
    fits = max(1, min(MAX_EPOCHS, int(queue.limit_s // max(one, 1e-9))))
    if fits == MAX_EPOCHS:
        return MAX_EPOCHS, ""
    return fits, (f" At most {fits} at this batch size: about {duration_text(one)} an epoch here, and the class's "
                  f"limit for one run is {duration_text(queue.limit_s)}.")


def estimated_seconds(config: TrainConfig, data: data_mod.MNIST) -> float:
    """How long a run of ``config`` on ``data`` should take on this server: the queue's one estimate."""
    return get_queue().estimate(config, task_size(data, config))


def cost_line(config: TrainConfig, data: data_mod.MNIST) -> bool:
    """A caption with the run's estimated time and the class's limit; over the limit, a warning saying what to
    change, and False."""
    queue, n_images = get_queue(), task_size(data, config)
    if over := queue.over_limit(config, n_images):
        st.warning(over_limit_text(over), icon="⏱️")
        return False
    seconds, limit = queue.estimate(config, n_images), queue.limit_s
    st.caption(f"This run should take about {duration_text(seconds)} on this server"
               + (f" (the class's limit for one run is {duration_text(limit)})." if limit else "."))
    return True


def start_training(
    config: TrainConfig, data: data_mod.MNIST, state_key: str, runs_key: str = "", continue_from: str = "",
    owner: str | None = None, fresh: bool = False,
) -> Snapshot | None:
    """Check the settings, then submit; bad settings, a run over the class's limit and a second waiting run end
    in a message on the page.

    ``owner`` defaults to this session; ``""`` submits for the whole class (a starter set), which takes
    nobody's place in the line. ``fresh`` trains a recipe already in the store again, live, as a new model.
    """
    config = config.with_(dataset=data.spec.key)  # the store records the data it ran on
    try:
        check_config(config, task_size(data, config))
        compute_dtype(config, pick_device())  # a bad DIGITLAB_PRECISION is said here, before the run is queued
    except ConfigError as e:
        st.error(f"Cannot train with these settings: {e}")
        return None
    if owner is None and (held := class_hold()):
        st.info(f"The teacher has asked the class to wait a moment: Train opens again in {duration_text(held)}.",
                icon="✋")
        return None
    try:
        who = owner_id() if owner is None else owner
        snap = get_queue().submit(config, data, who, continue_from=continue_from, fresh=fresh, limited=bool(who),
                                  place=student_place() if who else "")
    except JobRefused as e:
        st.warning(refusal_text(e), icon="⏳")
        return None
    st.session_state[state_key] = snap.id
    if who:
        note_asked(config.key())
    if runs_key:
        runs = st.session_state.setdefault(runs_key, [])
        if snap.id not in runs:
            runs.append(snap.id)
    return snap


def training_panel(state_key: str, on_done: Callable[[Snapshot], None] | None = None) -> Snapshot | None:
    """Live view of this session's job under ``state_key``: progress, stop, pause and step, loss and accuracy, and the
    model as it learns (its first layer, its answers on 16 test digits, what each single step changed).

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

    @st.fragment(run_every=LIVE_EVERY_S)
    def live():
        s = get_queue().snapshot(job_id)
        if s is None or s.finished:
            st.rerun(scope="app")
        _draw_job(s, state_key)

    live()
    return snap


def _draw_job(snap: Snapshot, state_key: str) -> None:
    title = f"**{snap.config.title}** · {snap.config.preset}"
    if snap.notice:  # where it trains, when that is not where the class asked (the Ray cluster not answering)
        st.info(snap.notice)
    if snap.state == "failed":  # the page's words; the record keeps the error itself
        st.error(f"{title}: {snap.message or snap.error}")
    elif snap.state == "cancelled":
        st.warning(f"{title}: {cancelled_text(snap, st.session_state.get(f'{state_key}_stopped') == snap.id)}")
    elif snap.state == "done":
        st.success(f"{title}: {snap.message}")
    else:
        cols = st.columns([5, 1])
        cols[0].progress(snap.progress, text=status(snap))
        if owner_id() in snap.watchers and cols[1].button(
            "Stop", key=f"stop_{state_key}_{snap.id}",
            help="Stop waiting on this run. It is cancelled only if nobody else in the class waits on it.",
        ):
            stop_following(snap, state_key)
        steering(snap, state_key)
    if snap.history or snap.batch_losses:
        # Drawn once for the whole class however many watch: a running job's curves at most once a second (its
        # worker reports four times a second, and 30 watchers would each see a different report), a finished one's once
        moment = ("final", snap.version) if snap.finished else ("live", int(time.monotonic() / LIVE_EVERY_S))
        loss, accuracy = shared_figure(("job", snap.id, moment), _job_figures, snap)
        left, right = st.columns(2)
        loss_alt, accuracy_alt = _curves_alt(snap)
        chart(left, loss, key=f"loss_{state_key}_{snap.id}_{snap.version}", alt=loss_alt)
        chart(right, accuracy, key=f"acc_{state_key}_{snap.id}_{snap.version}", alt=accuracy_alt)
    watch_it_learn(snap)


def stop_following(snap: Snapshot, state_key: str) -> None:
    """A student's Stop: detach from the run; the queue cancels it only when nobody else waits on it."""
    what = get_queue().stop(snap.id, owner_id())
    if what == "cancelled":
        st.session_state[f"{state_key}_stopped"] = snap.id  # this student's Stop ended it, not the teacher
    if what == "detached":
        st.session_state.pop(state_key, None)
        others = len(snap.watchers) - 1
        st.session_state[f"{state_key}_note"] = (
            f"You stopped following {snap.config.title}; it goes on for the {others} other(s) who wait on it.")
        st.rerun(scope="app")


def _curves_alt(snap: Snapshot) -> tuple[str, str]:
    """The loss and accuracy curves in a line each, for a screen reader: where the loss and the accuracy are now."""
    loss = f"Training loss over {len(snap.batch_losses)} batches" + (
        f", now {snap.batch_losses[-1][1]:.3f} at epoch {snap.batch_losses[-1][0]:.2f}" if snap.batch_losses else "")
    last = snap.history[-1].get("test_accuracy", float("nan")) if snap.history else float("nan")
    accuracy = f"Accuracy after {len(snap.history)} of {snap.config.epochs} epochs" + (
        f": {last:.2%} on the test images" if last == last else "")
    return loss, accuracy


def _job_figures(snap: Snapshot):
    """The loss and accuracy curves of one state of a job."""
    return viz.loss_curve(snap), viz.accuracy_curve(snap.history, batch_accuracies=snap.batch_accuracies,
                                                    epochs=snap.config.epochs)


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


def train_again_live(snap: Snapshot | None, data: data_mod.MNIST, state_key: str, runs_key: str = "") -> None:
    """For a recipe answered from the store: train it again, live, queued like any run (saved as a new model)."""
    if snap is None or snap.state != "done" or not snap.reused:  # reused and done: answered from the store
        return
    if st.button(
        "Train again live", key=f"again_{state_key}_{snap.id}",
        help="This recipe is already in the model store. Train it again from the start to watch it learn; "
             "the run is queued like any other and saved as a new model.",
    ):
        if start_training(snap.config, data, state_key, runs_key, fresh=True):
            st.rerun()


def train_section(config: TrainConfig, data: data_mod.MNIST, prefix: str, disabled: bool = False,
                  after_run: Callable[[Snapshot], None] | None = None) -> Snapshot | None:
    """The live-training block the Linear, MLP and CNN stages share: what the run will cost, Train (or train again
    live), the running job, its verdict, one more epoch, ``after_run`` (what the stage adds once a run has
    finished), and this session's runs on one chart. Keys: ``{prefix}_train``, ``{prefix}_job``, ``{prefix}_runs``."""
    stage = prefix
    if not disabled:
        get_queue().warm(data)  # the training process starts while the student picks settings: Train then starts at once
    return _train_block(config, data, stage, dataset_prefix(prefix, config.dataset), disabled, after_run)


# A fragment: Train, Stop and One more epoch rerun this block, not the page (30 students pressing Train on the CNN
# page made 30 reruns of the whole page, which slowed their shared run by a fifth; issue 28).
@st.fragment
def _train_block(config: TrainConfig, data: data_mod.MNIST, stage: str, prefix: str, disabled: bool,
                 after_run: Callable[[Snapshot], None] | None) -> Snapshot | None:
    """train_section's block. The settings above it are the page's widgets, so a change there reruns the page and
    hands this block the new config; a run that ends reruns the page (the stage's later sections show its model)."""
    state_key, runs_key = f"{prefix}_job", f"{prefix}_runs"  # prefix: each dataset's runs apart
    within_limit = disabled or cost_line(config, data)
    if held := class_hold():
        st.caption(f"✋ The teacher holds the class's Train buttons for {duration_text(held)} more.")
    if st.button("Train", type="primary", key=f"{prefix}_train", disabled=disabled or not within_limit or held > 0,
                 help="Start training in the background; it keeps going if you switch page, and this page picks "
                      "it up again when you come back."):
        if (started := submit_run(config, data, stage)) is not None and started.finished:
            st.rerun(scope="app")  # answered from the store at once: the page's later sections show that model
    if note := st.session_state.pop(f"{state_key}_note", None):
        st.info(note)
    snap = training_panel(state_key)
    train_again_live(snap, data, state_key, runs_key)
    if snap is not None and snap.finished and (verdict := run_verdict(snap.config, snap.history)):
        st.warning(verdict)
    one_more_epoch(snap, data, state_key, runs_key=runs_key)
    if after_run and snap is not None and snap.finished and snap.history:
        after_run(snap)
    st.subheader("Compare runs")
    runs_comparison(runs_key, run_label)
    return snap


def submit_run(config: TrainConfig, data: data_mod.MNIST, prefix: str) -> Snapshot | None:
    """What a stage's Train button does (the learning-rate finder's "Train with" too): submit the run as this
    session's run of the stage, so the stage's live panel below shows it."""
    prefix = dataset_prefix(prefix, config.dataset)
    return start_training(config, data, f"{prefix}_job", runs_key=f"{prefix}_runs")


def dataset_prefix(prefix: str, dataset: str) -> str:
    """The keys of a stage's runs on a dataset: "lin" on MNIST (lin_job, lin_train...), "lin_fashion" on Fashion-MNIST."""
    return prefix if dataset == "mnist" else f"{prefix}_{dataset}"


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
        chart(col, fig, key=f"overlay_{runs_key}_{metric}_{len(runs)}")
