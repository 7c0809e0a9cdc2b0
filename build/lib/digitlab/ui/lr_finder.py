"""The learning-rate finder on the MLP and CNN pages (fastai's lr_find): one sweep per setup for the whole class.

A sweep is about a hundred batches from the setup's untrained model (``lr_find.lr_find``), a few seconds on this
server. It is queued like any run (a job of kind ``lr_find``) and trains in the training process, never in the web
process; the page follows it as it follows a run. Identical sweeps share one job, and the curve is kept for every
session that asks about the same setup: the class pays for it once.
"""

from __future__ import annotations

import dataclasses
import threading

import streamlit as st

from .. import data as data_mod
from .. import viz
from ..lr_find import LRFinding
from ..models import PRESETS, TrainConfig, preset_for
from ..runs.interface import JobRefused, Snapshot
from ..train import ConfigError, check_config, task_size
from .frame import chart
from .resources import get_queue
from .text import refusal_text, status
from .training import LIVE_EVERY_S, lr_key, settings_key, submit_run

KEEP = 64  # sweeps kept per process (a few kB each); the oldest goes first


@st.cache_resource
def _findings() -> tuple[dict[tuple, LRFinding], threading.Lock]:
    return {}, threading.Lock()


def sweep_key(config: TrainConfig, data: data_mod.MNIST) -> tuple:
    """What a sweep depends on: the whole setup but its learning rate, epochs and schedule (the sweep sets the rate
    itself, batch by batch), and the data."""
    return config.with_(lr=1.0, epochs=1, schedule="constant").key(), data.fingerprint()


def sweep_config(config: TrainConfig) -> TrainConfig:
    """The setup as its sweep runs it (sweep_key's config): the same sweep for every rate, epochs and schedule."""
    return config.with_(lr=1.0, epochs=1, schedule="constant")


def start_sweep(config: TrainConfig, data: data_mod.MNIST) -> Snapshot:
    """Queue this setup's sweep (joined, if the class already has it queued or running), for the whole class."""
    return get_queue().submit(sweep_config(config), data, "", kind="lr_find")


def sweep_found(snap: Snapshot, config: TrainConfig, data: data_mod.MNIST) -> LRFinding | None:
    """A finished sweep's curve, kept for every session that asks about this setup; None when it failed."""
    found, lock = _findings()
    key = sweep_key(config, data)
    with lock:
        if key not in found and snap.state == "done" and snap.result:
            if len(found) >= KEEP:
                del found[next(iter(found))]
            found[key] = LRFinding(**snap.result)
        return found.get(key)


def rounded(lr: float) -> float:
    """A rate as the box shows it: two significant digits."""
    return float(f"{lr:.2g}")


def lr_finder(config: TrainConfig, data: data_mod.MNIST, prefix: str, disabled: bool = False) -> None:
    """The finder's section: sweep (or read the class's sweep), the curve, the suggestion, one click to train with it
    (through the Train button's own path: the queue, its estimate and the class's limit, a run already stored)."""
    st.subheader("Find a learning rate first")
    st.markdown("Before a long run, try every learning rate at once: train about a hundred batches from this "
                "setup's untrained model while the rate grows from 1e-7 to 10, and watch the loss. Too small, "
                "it barely moves; then it falls fast; too large, it shoots up. A good rate sits in the fall, "
                "before the bottom. The model the sweep trained is thrown away.")
    found = _findings()[0].get(sweep_key(config, data))
    if found is None:
        found = _sweep_section(config, data, prefix, disabled)
        if found is None:
            return
    found = dataclasses.replace(found, schedule=config.schedule)  # the sweep ran at constant rates: the suggestion
    # is read for the schedule this setup trains with (a one-cycle run peaks where the fall ends)
    preset = preset_for(config.preset, config.dataset) if config.preset in PRESETS else config
    suggested, valley, steepest = rounded(found.suggestion), rounded(found.valley), rounded(found.steepest)
    rule = "knee" if found.rule != "valley" else "valley"
    chart(st, viz.lr_finder_curve(found.lrs, found.losses, found.suggestion, found.steepest,
                                  title=f"The learning-rate finder: {config.title}", preset_lr=preset.lr,
                                  y_range=(found.low, found.high),
                                  suggestion_name="suggested (end of the fall)" if rule == "knee" else
                                  "suggested (valley)"), key=f"{prefix}_lr_curve")
    how = (f"where the fall ends: a one-cycle run warms up from a 25th of its peak and passes it once, so its peak can "
           f"sit where the loss stops falling. Two thirds of the way down the fall (*valley*, for a constant rate): "
           f"{valley:g}" if rule == "knee" else
           "by the *valley* rule (two thirds of the way down the fall of the loss, well before its bottom)")
    st.caption(f"{len(found.lrs)} batches in {found.seconds:.1f} s; the curve is each batch's loss averaged with its "
               f"neighbours, and the blow-up at the end runs off the top. Suggested: **{suggested:g}**, {how}. The "
               f"loss fell *steepest* at {steepest:g}. The preset's own rate (dashed): {preset.lr:g}; this setup's "
               f"rate now: {config.lr:g}.")
    c1, c2, c3 = st.columns(3)
    c1.button(f"Train with {suggested:g}", key=f"{prefix}_lr_train_valley", on_click=_use, type="primary",
              args=(prefix, config, suggested, preset.epochs), disabled=disabled,
              help=f"Puts this rate in the Learning rate box above and {preset.epochs} epoch"
                   f"{'s' if preset.epochs != 1 else ''} (the preset's) in the Epochs box, and starts the run, as "
                   "Train does.")
    c2.button(f"Use {suggested:g} ({'end of the fall' if rule == 'knee' else 'valley'})",
              key=f"{prefix}_lr_use_valley", on_click=_use, args=(prefix, config, suggested),
              help="Puts this rate in the Learning rate box above; then press Train.")
    c3.button(f"Use {steepest:g} (steepest)", key=f"{prefix}_lr_use_steepest", on_click=_use,
              args=(prefix, config, steepest), help="Puts this rate in the Learning rate box above; then press Train.")
    if (rate := st.session_state.pop(f"{prefix}_lr_train", None)) is not None and not disabled:
        # The boxes drew this rate and the preset's epochs already (the click set them before this run), so config is
        # the run Train would start.
        if submit_run(config.with_(lr=rate), data, prefix):
            st.success(f"Training at learning rate {rate:g} for {config.epochs} epoch{'s' if config.epochs != 1 else ''}:"
                       " follow the run below.", icon="🚀")


def _sweep_section(config: TrainConfig, data: data_mod.MNIST, prefix: str, disabled: bool) -> LRFinding | None:
    """The button, then the queued sweep followed (redrawn every second) until its curve is back."""
    job_key = f"{prefix}_lr_job"
    key = sweep_key(config, data)
    job = st.session_state.get(job_key)
    if job is None or job[0] != key:
        slot = st.empty()  # the button goes once pressed: the sweep's progress, then its curve, take its place
        if not slot.button("Run the learning-rate finder", key=f"{prefix}_lr_find", disabled=disabled,
                           help="About a hundred batches, a few seconds; every student with this setup shares it."):
            return None
        slot.empty()
        try:
            check_config(sweep_config(config), task_size(data, config))
            job = st.session_state[job_key] = (key, start_sweep(config, data).id)
        except ConfigError as e:
            st.error(f"Cannot sweep with these settings: {e}")
            return None
        except JobRefused as e:
            st.warning(refusal_text(e), icon="⏳")
            return None
    snap = get_queue().snapshot(job[1])
    if snap is not None and snap.finished:
        st.session_state.pop(job_key, None)
        found = sweep_found(snap, config, data)
        if found is None:
            st.error(f"The learning-rate finder did not finish: {snap.message or snap.error}")
        return found
    if snap is None:
        st.session_state.pop(job_key, None)
        return None

    @st.fragment(run_every=LIVE_EVERY_S)
    def following():
        s = get_queue().snapshot(job[1])
        if s is None or s.finished:
            st.rerun(scope="app")
        st.progress(0.0 if s.state == "queued" else 0.5,
                    text=f"The learning-rate finder: {status(s)}" if s.state == "queued"
                    else "Sweeping the learning rate over about a hundred batches, in the training process...")

    following()
    return None


def _use(prefix: str, config: TrainConfig, lr: float, epochs: int | None = None) -> None:
    """Put ``lr`` in the Learning rate box (before the next run draws it: it opens on this rate); with ``epochs``,
    put them in the Epochs box too and have the next run submit the setup (once the page has built it)."""
    st.session_state[lr_key(prefix, config.preset, config.dataset)] = lr
    if epochs is not None:
        st.session_state[f"{settings_key(prefix, config.preset, config.dataset)}_epochs"] = epochs
        st.session_state[f"{prefix}_lr_train"] = lr
