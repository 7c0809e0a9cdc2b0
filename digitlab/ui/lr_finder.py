"""The learning-rate finder on the MLP and CNN pages (fastai's lr_find): one sweep per setup for the whole class.

A sweep is about a hundred batches from the setup's untrained model (``lr_find.lr_find``), a few seconds on this
server. It runs in the web process, one at a time (a second student asking waits for it, then reads it), and its
curve is kept for every session that asks about the same setup: the class pays for it once.
"""

from __future__ import annotations

import threading

import streamlit as st

from .. import data as data_mod
from .. import viz
from ..lr_find import LRFinding, lr_find
from ..models import PRESETS, TrainConfig, preset_for
from ..train import ConfigError
from .frame import chart
from .training import lr_key, settings_key, submit_run

KEEP = 64  # sweeps kept per process (a few kB each); the oldest goes first


@st.cache_resource
def _findings() -> tuple[dict[tuple, LRFinding], threading.Lock]:
    return {}, threading.Lock()


def sweep_key(config: TrainConfig, data: data_mod.MNIST) -> tuple:
    """What a sweep depends on: the whole setup but its learning rate, epochs and schedule (the sweep sets the rate
    itself, batch by batch), and the data."""
    return config.with_(lr=1.0, epochs=1, schedule="constant").key(), data.fingerprint()


def shared_sweep(config: TrainConfig, data: data_mod.MNIST) -> LRFinding:
    """The sweep of this setup: computed once per process, one sweep at a time, and kept for every session."""
    found, lock = _findings()
    key = sweep_key(config, data)
    with lock:
        if key not in found:
            if len(found) >= KEEP:
                del found[next(iter(found))]
            found[key] = lr_find(config, data)
        return found[key]


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
        slot = st.empty()  # the button goes once pressed: the curve takes its place in this same run
        if not slot.button("Run the learning-rate finder", key=f"{prefix}_lr_find", disabled=disabled,
                           help="About a hundred batches, a few seconds; every student with this setup shares it."):
            return
        slot.empty()
        try:
            with st.spinner("Sweeping the learning rate over about a hundred batches..."):
                found = shared_sweep(config, data)
        except ConfigError as e:
            st.error(f"Cannot sweep with these settings: {e}")
            return
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


def _use(prefix: str, config: TrainConfig, lr: float, epochs: int | None = None) -> None:
    """Put ``lr`` in the Learning rate box (before the next run draws it: it opens on this rate); with ``epochs``,
    put them in the Epochs box too and have the next run submit the setup (once the page has built it)."""
    st.session_state[lr_key(prefix, config.preset, config.dataset)] = lr
    if epochs is not None:
        st.session_state[f"{settings_key(prefix, config.preset, config.dataset)}_epochs"] = epochs
        st.session_state[f"{prefix}_lr_train"] = lr
