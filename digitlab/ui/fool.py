"""Fool the model: a round the teacher starts and ends. Students draw digits a person reads at once but the class's
best CNN gets wrong, and save them with their true label (the Sketch Pad's Save); the projector's gallery fills
with the drawings that fooled it. At the end one click fine-tunes that model on the class collection (the Our
Handwriting road), and the gallery shows which drawings fool it no longer, and what the MNIST test set lost.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from .. import finetune, ranking
from .. import preprocess as pp
from ..collection import Collection, CollectionError
from ..models import ModelInfo
from ..room_book import Round, RoundDrawing
from ..runs.interface import JobRefused
from .resources import dataset_models, get_data, get_queue, is_teacher, load_model, needs_book, pseudonym_of
from .text import refusal_text, status

GALLERY_EVERY_S = 2.0
SHOWN = 48  # the newest fooling drawings in the gallery


def round_model() -> ModelInfo | None:
    """The class's best CNN on MNIST (the best ten-digit model when there is no CNN)."""
    infos = [i for i in dataset_models("mnist") if not i.config.pair and not i.broken]
    best = ranking.best_of_each_kind(infos, kinds=("cnn",)) or ranking.ranked(infos)[:1]
    return best[0] if best else None


def on_save(drawing_id: str, image: np.ndarray, label: int, browser: str) -> str:
    """Sketch Pad's Save during a round: the round's model answers the drawing, kept with it; what to tell the
    student ("" when no round is on)."""
    try:
        book = Collection().book
        r = book.round()
    except CollectionError:
        return ""
    if r is None or r.ended or (loaded := load_model(r.model_id)) is None:
        return ""
    a = pp.answer(*loaded, image)
    predicted = int(a.predicted)
    book.round_drawing(r, drawing_id, browser, label, predicted, a.confidence)
    if predicted != label:
        return f" 🎯 It fooled the class's model: it read {predicted} ({a.confidence:.0%} sure)."
    return f" The class's model read it right ({a.confidence:.0%} sure): try one it will get wrong."


def round_note(r: Round) -> None:
    """The class bar's line during a round."""
    if r.ended:
        return
    loaded = load_model(r.model_id)
    title = loaded[1].title if loaded else r.model_id
    st.info(f"🎯 **Fool the model!** On the Sketch Pad, draw a digit a person reads at once but **{title}** gets "
            "wrong, pick its true label and save it.", icon="✏️")


# ---------------------------------------------------------------- the teacher's side


@needs_book()
def fool_round() -> None:
    """The Teacher page's round: start, the live gallery, end, fine-tune."""
    st.header("Fool the model", help="A round: students draw digits a person reads at once but the class's best "
              "CNN gets wrong. The gallery fills as they save.")
    try:
        book = Collection().book
        r = book.round()
    except CollectionError as e:
        return st.error(f"The class collection cannot be opened: {e}")
    if r is None or r.ended:  # the start button is drawn on every run while no round is on (a click always lands)
        start_button(book, again=r is not None)
        if r is None:
            return
    elif st.button("End the round", key="fool_end") and is_teacher():
        book.update_round(ended=time.time())
        st.rerun()
    gallery(r.id)
    if r.ended:
        fine_tune_round(r)


def start_button(book, again: bool) -> None:
    """The model to fool (the class's best CNN now) and the button that starts a round on it."""
    if (best := round_model()) is None:
        return st.info("Train a ten-digit model first (the CNN page): the round needs a model to fool.")
    st.caption(f"The model to fool: **{best.title}** ({best.accuracy:.1%} on the MNIST test set).")
    if st.button("Start a new round" if again else "Start the round", type="primary", key="fool_start") \
            and is_teacher():
        book.start_round(best.id)
        st.rerun()


@st.fragment(run_every=GALLERY_EVERY_S)
@needs_book()
def gallery(round_id: str) -> None:
    try:
        book = Collection().book
        r, (n, n_fooled, fooling) = book.round(), book.round_counts(round_id)
    except CollectionError as e:
        return st.error(f"The class collection cannot be opened: {e}")
    if r is None or r.id != round_id:
        return
    loaded = load_model(r.model_id)
    title = loaded[1].title if loaded else r.model_id
    c1, c2, c3 = st.columns(3)
    c1.metric("Drawings this round", n)
    c2.metric("Fooled the model", n_fooled)
    c3.metric("Students who fooled it", fooling)
    st.caption(f"The model: {title}. " + ("The round is over." if r.ended else "The round is on.")
               + (f" The newest {SHOWN} that fooled it:" if n_fooled > SHOWN else ""))
    if not n_fooled:
        return st.caption("No drawing has fooled it yet.")
    after = _after(round_id, r.tuned_id, n_fooled) if r.tuned_id else {}
    shown = book.round_drawings(round_id, fooled_only=True, limit=SHOWN)
    st.image([d.png for d in shown], width=84, caption=[_caption(d, after) for d in shown])
    if after:
        still = sum(a != label for a, label in after.values())
        st.success(f"After fine-tuning: {len(after) - still} of the {len(after)} fooling drawings no longer fool "
                   f"it; {still} still do.", icon="🧠")


@st.cache_resource(max_entries=4, show_spinner=False)
def _after(round_id: str, tuned_id: str, _n: int) -> dict[str, tuple[int, int]]:
    """The fine-tuned model's answer on every drawing that fooled the round's model: drawing -> (answer, label);
    once per round, model and count, in one batch."""
    import torch

    from ..drawings_db import decode
    from ..train import predict_proba

    tuned = load_model(tuned_id)
    fooled = Collection().book.round_drawings(round_id, fooled_only=True)
    if tuned is None or not fooled:
        return {}
    images = torch.from_numpy(np.stack([decode(d.png) for d in fooled]))
    answers = predict_proba(tuned[0], tuned[1].config, images).argmax(1).tolist()
    return {d.drawing: (a, d.label) for d, a in zip(fooled, answers)}


def _caption(d: RoundDrawing, after: dict) -> str:
    text = f"{pseudonym_of(d.browser) or 'a student'}: a {d.label}, read {d.predicted} ({d.confidence:.0%})"
    if d.drawing in after:
        now = after[d.drawing][0]
        text += " · now right" if now == d.label else f" · still {now}"
    return text


@st.fragment(run_every=1.0)
@needs_book()
def fine_tuning(job: str) -> None:
    """The round's fine-tuning in the queue, redrawn every second; once stored, the round names the new model."""
    snap = get_queue().snapshot(job)
    if snap is None or not snap.finished:
        return st.info(f"Fine-tuning on the class collection: {status(snap) if snap else 'lost'}", icon="⏳")
    if snap.state == "done" and snap.model_id:
        Collection().book.update_round(tuned_id=snap.model_id)
    st.rerun(scope="app")


def fine_tune_round(r: Round) -> None:
    """After the round: fine-tune its model on the class collection (the round's drawings are in it), once."""
    queue = get_queue()
    if r.finetune_job and not r.tuned_id:
        snap = queue.snapshot(r.finetune_job)
        if snap is None or (snap.finished and snap.state != "done"):
            st.error(f"The fine-tuning did not finish: {snap.message or snap.error if snap else 'it was lost'}")
        else:
            return fine_tuning(r.finetune_job)
    if r.tuned_id:
        tuned = load_model(r.tuned_id)
        parent = load_model(r.model_id)
        if tuned and parent:
            before, after = parent[1].accuracy or 0.0, tuned[1].accuracy or 0.0
            st.metric("MNIST test accuracy after fine-tuning", f"{after:.2%}", f"{after - before:+.2%} (before "
                      f"{before:.2%})")
        return
    if st.button("Fine-tune it on the class collection", type="primary", key="fool_finetune") and is_teacher():
        try:
            images, labels, entries = Collection().load()
        except CollectionError as e:
            return st.error(f"The class collection cannot be opened: {e}")
        if missing := finetune.missing_drawings(labels):
            return st.warning("Fine-tuning needs at least two drawings of every digit. Still needed: "
                              + ", ".join(f"{n} more {d}" for d, n in missing.items()) + ".")
        loaded = load_model(r.model_id)
        if loaded is None:
            return st.error("The round's model is no longer in the store.")
        info = loaded[1]
        try:
            snap = queue.submit(info.config.with_(epochs=finetune.EPOCHS), get_data("mnist"), "",
                                continue_from=info.id, finetune=finetune.pack(images, labels, [e.id for e in entries]),
                                limited=False)
        except JobRefused as e:
            return st.warning(refusal_text(e), icon="⏳")
        Collection().book.update_round(finetune_job=snap.id)
        st.rerun()
