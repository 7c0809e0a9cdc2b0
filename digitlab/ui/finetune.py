"""Teach it our handwriting: the page's sections around ``finetune.fine_tune`` (Teachable Machine).

Fine-tuning is small (a copy of one stored model, a few epochs over the class's drawings, the newest 1,000 at most,
then both scores before and after), but it runs where every run does: in the class's training queue, so a class
fine-tuning at once waits in line instead of blocking the web server. The result is stored as a new model.
"""

from __future__ import annotations

import streamlit as st
import torch

from .. import data as data_mod
from .. import finetune, viz
from ..collection import Collection, CollectionError
from ..models import ModelInfo
from ..runs.interface import JobRefused
from ..train import predict_proba
from .code_box import show_code
from .frame import chart
from .pickers import model_picker
from .resources import dataset_models, get_queue, load_model, owner_id
from .text import refusal_text, status

MAX_DRAWINGS = 1000  # the newest this many: fine-tuning stays a matter of seconds however large the collection grows
FORGETTING = 0.05  # an MNIST drop larger than this is pointed out
RESULT = "ft_result"  # this session's last fine-tuning: plain numbers and the new model's id
JOB = "ft_job"  # this session's fine-tuning in the queue, while it waits or runs


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
    if not len(entries):  # no bars to draw: say so, rather than an empty chart
        st.info(f"The class collection is empty: nobody has saved a drawing yet. Each digit needs at least "
                f"{finetune.MIN_PER_DIGIT} drawings: draw them on the Sketch Pad and press \"Save to the class "
                "collection\".", icon="✍️")
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


def fine_tune_section(info: ModelInfo | None, drawings, data: data_mod.MNIST) -> None:
    """3. The button: queue the fine-tuning of a copy; follow it; once done, keep the numbers for section 4. Until
    there is a model and enough drawings (sections 1 and 2 say what is missing), a line that says so."""
    st.header("3. Teach it")
    if info is None or drawings is None:
        st.caption("The fine-tuning opens here once there is a model to teach and enough drawings (see above).")
        return
    st.markdown(f"Start from the stored weights and train {finetune.EPOCHS} short epochs on our drawings, at a third "
                "of the model's own learning rate: enough to learn our hand, not to wipe out MNIST. BatchNorm keeps "
                "MNIST's statistics (a few dozen drawings are too few to redo them).")
    if st.button("Fine-tune on our drawings", type="primary", key="ft_go", disabled=bool(st.session_state.get(JOB)),
                 help="Queued like any run, a few seconds once it starts; the result is stored as a new model."):
        try:
            snap = get_queue().submit(info.config.with_(epochs=finetune.EPOCHS), data, owner_id(),
                                      continue_from=info.id, finetune=finetune.pack(*drawings), limited=True)
        except JobRefused as e:
            st.warning(refusal_text(e), icon="⏳")
            return
        st.session_state[JOB] = snap.id
        st.session_state.pop(RESULT, None)
    if st.session_state.get(JOB):
        following()


@st.fragment(run_every=1.0)
def following() -> None:
    """The queued fine-tuning: its place in line or what it is doing, redrawn every second; once it has ended, its
    numbers for section 4 (or why it failed)."""
    snap = get_queue().snapshot(st.session_state.get(JOB, ""))
    if snap is None:
        st.session_state.pop(JOB, None)
        return
    if not snap.finished:
        st.info(f"Fine-tuning {snap.config.title}: {status(snap)}", icon="⏳")
        return
    st.session_state.pop(JOB, None)
    if snap.state == "done" and snap.result:
        st.session_state[RESULT] = snap.result
    else:
        st.session_state["ft_failed"] = snap.message or snap.error
    st.rerun(scope="app")


def before_and_after() -> None:
    """4. Before and after, on the kept-out drawings and on the MNIST test set: the gain and any forgetting."""
    st.header("4. Before and after")
    if failed := st.session_state.pop("ft_failed", None):
        st.error(f"Fine-tuning did not finish: {failed}")
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


def my_handwriting(info: ModelInfo | None) -> None:
    """5. This student's own drawings, digit by digit: read by the MNIST model above and by the class's newest
    fine-tuned model (the one made from it, if any)."""
    st.header("5. My handwriting")
    if info is None:
        return st.caption("Pick a model above: your drawings are scored by it here.")
    try:
        images, labels, entries = Collection().load()
    except CollectionError as e:
        return st.error(f"The class collection cannot be opened: {e}")
    mine = [n for n, e in enumerate(entries) if e.saved_by == owner_id()]
    if not mine:
        return st.info("You have not saved a drawing yet: draw digits on the Sketch Pad and save them with their true "
                       "label. They are scored here, digit by digit.", icon="✍️")
    images, labels = images[mine], labels[mine]
    scorers = [("the MNIST model", info), *(("the class's fine-tuned model", t) for t in [class_tuned(info)] if t)]
    answers = {}
    for name, scorer in scorers:
        if (loaded := load_model(scorer.id)) is not None:
            answers[name] = predict_proba(loaded[0], scorer.config, images).argmax(1)
    rows = []
    for d in range(10):
        at = (labels == d).nonzero().squeeze(1)
        if len(at):
            rows.append({"digit": d, "my drawings": len(at),
                         **{f"{name}: right": f"{int((a[at] == d).sum())} of {len(at)}" for name, a in answers.items()}})
    st.dataframe(rows, hide_index=True)
    for column, (name, a) in zip(st.columns(2), answers.items()):
        right = float((a == labels).float().mean())
        column.metric(f"Read right by {name}", f"{right:.0%}", help=next(s.title for n, s in scorers if n == name))
    if "the class's fine-tuned model" not in answers:
        st.caption("No fine-tuned model of it yet: fine-tune it above (or at the end of a fool-the-model round).")
    shown = min(len(mine), 60)
    st.image([img.numpy() for img in images[-shown:]], width=56, clamp=True,
             caption=[f"a {int(y)}: " + " / ".join(str(int(a[n])) for a in answers.values())
                      for n, y in zip(range(len(mine) - shown, len(mine)), labels[-shown:])])
    st.caption("Under each drawing: its true digit, then what " + " and ".join(answers) + " read.")


def class_tuned(info: ModelInfo) -> ModelInfo | None:
    """The class's newest model fine-tuned from ``info`` (from any model, when none was made from it)."""
    tuned = [i for i in dataset_models("mnist") if "class_drawings_accuracy" in i.metrics and i.id != info.id]
    own = [i for i in tuned if i.continued_from == info.id]
    pick = own or tuned
    return max(pick, key=lambda i: i.created) if pick else None
