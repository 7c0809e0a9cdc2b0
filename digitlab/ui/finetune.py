"""Teach it our handwriting: the page's sections around ``finetune.fine_tune`` (Teachable Machine).

Fine-tuning runs here, in the web process, bounded and small: a copy of one stored model, a few epochs over the
class's drawings (a few dozen to a few hundred), then both scores before and after. One at a time per server
process: a second student asking meanwhile is told to try again in a moment. The result is stored as a new model.
"""

from __future__ import annotations

import threading
import time

import streamlit as st
import torch

from .. import data as data_mod
from .. import finetune, viz
from ..collection import Collection, CollectionError
from ..models import ModelInfo
from ..store import StoreError
from .frame import chart, show_code
from .pickers import model_picker
from .resources import get_store, load_model

_one_at_a_time = threading.Lock()
MAX_DRAWINGS = 1000  # the newest this many: fine-tuning stays a matter of seconds however large the collection grows
FORGETTING = 0.05  # an MNIST drop larger than this is pointed out
RESULT = "ft_result"  # this session's last fine-tuning: plain numbers and the new model's id


def ten_digit_model() -> ModelInfo | None:
    st.header("1. A model that knows MNIST")
    info = model_picker("Model to teach", key="ft_model", where=lambda i: not i.config.pair,
                        help="Any stored ten-digit model; the best of each kind first. It is not changed: the "
                             "fine-tuned copy is stored as a new model.")
    if info is None:
        st.info("No ten-digit model is stored yet. Train one on the MLP or CNN page first.")
    return info


def class_drawings() -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """2. The class collection, per digit; None (with what is missing) when it is too small to learn from."""
    st.header("2. Our drawings")
    try:
        images, labels, entries = Collection().load()
    except CollectionError as e:
        st.error(f"The class collection cannot be opened: {e}")
        return None
    counts = torch.bincount(labels, minlength=10).tolist()
    c1, c2 = st.columns([2, 1])
    chart(c1, viz.class_counts(counts, names=("drawings",), height=260), key="ft_counts")
    c2.metric("Drawings in the class collection", f"{len(entries):,}")
    c2.caption(f"About {finetune.HELD_OUT:.0%} of each digit's drawings (at least one) are kept out of training, "
               "to check on afterwards.")
    if missing := finetune.missing_drawings(labels):
        st.warning(f"Each digit needs at least {finetune.MIN_PER_DIGIT} drawings: one to learn from, one to check "
                   "on. Still needed: " + ", ".join(f"**{n} more {d}**" for d, n in missing.items())
                   + ". Draw them on the Sketch Pad and save them to the class collection.", icon="✍️")
        return None
    if len(entries) > MAX_DRAWINGS:
        st.caption(f"It learns from the newest {MAX_DRAWINGS:,} drawings, so fine-tuning takes seconds.")
        images, labels, entries = images[-MAX_DRAWINGS:], labels[-MAX_DRAWINGS:], entries[-MAX_DRAWINGS:]
        if missing := finetune.missing_drawings(labels):
            st.warning("The newest drawings lack some digits: " + ", ".join(f"{n} more {d}" for d, n in
                                                                          missing.items()) + ".")
            return None
    return images, labels, [e.id for e in entries]


def fine_tune_section(info: ModelInfo, drawings, data: data_mod.MNIST) -> None:
    """3. The button: fine-tune a copy, store it, keep the numbers for section 4."""
    st.header("3. Teach it")
    st.markdown(f"Start from the stored weights and train {finetune.EPOCHS} short epochs on our drawings, at a third "
                "of the model's own learning rate: enough to learn our hand, not to wipe out MNIST. BatchNorm keeps "
                "MNIST's statistics (a few dozen drawings are too few to redo them).")
    if not st.button("Fine-tune on our drawings", type="primary", key="ft_go",
                     help="A few seconds on this server; the result is stored as a new model."):
        return
    loaded = load_model(info.id)
    if loaded is None:
        return
    if not _one_at_a_time.acquire(blocking=False):
        st.info("Another student's fine-tuning is running on this server; try again in a few seconds.")
        return
    try:
        with st.spinner("Fine-tuning a copy of the model on the class's drawings..."):
            started = time.perf_counter()
            model, parent = loaded
            result = finetune.fine_tune(model, parent.config, *drawings, data)
            seconds = time.perf_counter() - started
            new = finetune.save(get_store(), parent, result, data, seconds)
    except (ValueError, StoreError, OSError) as e:
        st.error(f"Fine-tuning did not finish: {e}")
        return
    finally:
        _one_at_a_time.release()
    st.session_state[RESULT] = {"parent": info.id, "model": new.id, "before": result.before, "after": result.after,
                                "losses": result.losses, "trained_on": len(result.trained_on),
                                "held_out": len(result.held_out), "seconds": seconds}


def before_and_after() -> None:
    """4. Before and after, on the kept-out drawings and on the MNIST test set: the gain and any forgetting."""
    st.header("4. Before and after")
    done = st.session_state.get(RESULT)
    if done is None:
        st.info("Fine-tune a model above: its scores before and after appear here.")
        return
    cols = st.columns(2)
    for col, (name, what) in zip(cols, (("class drawings", f"Kept-out class drawings ({done['held_out']})"),
                                        ("MNIST test", "MNIST test set (10,000)"))):
        before, after = done["before"][name], done["after"][name]
        col.metric(f"{what}: after", f"{after:.1%}", delta=f"{after - before:+.1%} (before: {before:.1%})")
    st.caption("Training loss on our drawings, epoch by epoch: " + " → ".join(f"{v:.3f}" for v in done["losses"]))
    forgot = done["before"]["MNIST test"] - done["after"]["MNIST test"]
    if forgot > FORGETTING:
        st.warning(f"It forgot some MNIST ({forgot:.1%} fewer test digits right): our few drawings pulled the weights "
                   "their way. Fewer epochs, or MNIST images mixed into the fine-tuning, would usually keep more "
                   "of it.", icon="🧠")
    st.success(f"Stored as `{done['model']}`, fine-tuned from `{done['parent']}` on {done['trained_on']} drawings "
               f"in {done['seconds']:.1f} s. It is on every page now, beside its parent.", icon="💾")
    st.caption("The kept-out drawings show whether it learned our hand; the MNIST test set whether it forgot "
               "MNIST while doing so.")
    show_code(finetune.fine_tune, finetune.split, title="The fine-tuning's code")
