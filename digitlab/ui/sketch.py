"""The Sketch Pad's pad controls and its save: the true digit, Save and the confirmation, right under the pad.

The pad (streamlit-drawable-canvas, drawn by the page) loses every stroke it holds when it remounts: when its key
changes, or when an element before it appears or goes. So the pad gets a new key only from a click's callback (Save,
Clear), which runs before the script draws anything, so the fresh pad is there in the click's own run; and nothing
before the pad or around it comes and goes: the confirmation has a slot of its own below Save that is always drawn.
Strokes made while a rerun is in flight then stay on the pad, however slowly a digit is drawn.
"""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from .. import preprocess as pp
from ..collection import Collection, CollectionError
from .fool import on_save
from .frame import on_touch_screen, px
from .resources import owner_id

PAD_N = "sketch_canvas_n"  # the pad's generation: part of its key, one more per Save or Clear
STROKE = "sketch_stroke"  # the stroke-width slider's key, read before the pad draws (the slider sits below it)
def toolbar_room() -> int:
    """Pixels above the pad for its own toolbar (undo, redo, clear), which pops up 2.65rem above it on hover (66 px in
    presenter mode, whose root font is 24 px): then the shown toolbar covers nothing of the page."""
    return px(44)


def drawn(canvas) -> pp.Processed:
    """What the pad holds, decoded through the one image door with the pad's limits (preprocess.from_canvas_png):
    the value can be anything a client sends over the websocket. What cannot be read is said under the pad and read
    as an empty pad."""
    try:
        return pp.from_canvas_png(canvas.image_bytes)
    except pp.PreprocessError as e:
        st.error(f"The drawing could not be read: {e}")
    except (ValueError, TypeError, AttributeError):  # not a base64 PNG data URL at all
        st.error("The drawing could not be read: the pad sent something that is not a PNG image.")
    return pp.Processed()


def pad_key() -> str:
    return f"sketch_canvas_{st.session_state.get(PAD_N, 0)}"


def stroke_width(default: int = 18) -> int:
    """The stroke width the slider below the pad holds (the pad is drawn first, with it)."""
    st.session_state.setdefault(STROKE, default)
    return int(st.session_state[STROKE])


def _new_pad() -> None:
    st.session_state[PAD_N] = st.session_state.get(PAD_N, 0) + 1


def pad_caption() -> str:
    if on_touch_screen():
        return "White ink on black, like MNIST. Draw with a finger or a pen; **Clear** below starts again."
    return "Hover the pad: undo, redo, clear."  # one line: the true digit and Save stay in a laptop's view


def pad_controls() -> None:
    """Under the pad's save: the stroke width and Clear."""
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.slider("Stroke width", 5, 40, key=STROKE, help="MNIST strokes are about a tenth of the digit's height.")
    c2.button("Clear", key="sketch_clear", on_click=_new_pad)


def _digest(image: np.ndarray | None) -> str:
    return "" if image is None else hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def save_form(image: np.ndarray | None, source: str, key: str, caption: str = "") -> None:
    """A slot that says what the last Save did (until the next drawing or photo; ``caption`` otherwise), then the
    true digit and Save. ``image`` is the 28x28 digit the models answered on in this run (None: nothing drawn): Save
    keeps exactly that one. The slot is always drawn, so what comes and goes in it moves nothing before it."""
    st.session_state[f"{key}_shown"] = image
    with st.container(key=f"{key}_saved"):
        note = st.session_state.get(f"sketch_saved_{key}")
        if note and note[1] == _digest(image):
            (st.success if note[2] == "ok" else st.error)(note[0], icon="💾" if note[2] == "ok" else "⚠️")
        else:
            st.session_state.pop(f"sketch_saved_{key}", None)
            if caption:
                st.caption(caption)
    label = st.selectbox("The true digit", list(range(10)), index=None, key=f"{key}_label",
                         placeholder="What did you mean?", disabled=image is None)
    # No tooltip: on a touch screen one stays after the tap, over the label and the confirmation.
    st.button("Save to the class collection", key=f"{key}_save", disabled=label is None or image is None,
              on_click=_save, args=(source, key), type="primary")
    if st.session_state.pop(f"{key}_just_saved", False):
        st.rerun(scope="app")  # the collection below shows the new drawing; the fresh pad is already drawn


def _save(source: str, key: str) -> None:
    """Save's callback, before the script runs: the drawing the models answered on, with its label; then a fresh pad
    and an empty label for the next digit."""
    image, label = st.session_state.get(f"{key}_shown"), st.session_state.get(f"{key}_label")
    if image is None or label is None:
        return
    try:
        entry = Collection().add(image, int(label), source, saved_by=owner_id())
        total = sum(Collection().counts())
        round_said = on_save(entry.id, image, entry.label, owner_id())  # during a fool-the-model round
    except (CollectionError, OSError) as e:
        st.session_state[f"sketch_saved_{key}"] = (f"Could not save the drawing: {e}", _digest(image), "error")
        return
    n = f"{total} drawing{'s' if total != 1 else ''}"
    next_one = " Draw the next one." if key == "draw" else ""
    st.session_state[f"sketch_saved_{key}"] = (f"Saved as a {entry.label}, kept as a 28x28 PNG. The collection now "
                                               f"holds {n}.{round_said}{next_one}",
                                               _digest(None if key == "draw" else image), "ok")
    st.session_state[f"{key}_label"] = None  # the next digit gets its own label
    st.session_state[f"{key}_just_saved"] = True
    if key == "draw":
        _new_pad()
