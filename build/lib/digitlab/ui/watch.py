"""Watch it learn, and step it (inside the live panel of a running job): the first layer's weights or filters and the
model's answers on 16 fixed test digits, redrawn as the worker publishes them (about once a second); Pause, Resume
and Step one batch for the student who started the run; what each step changed.

Every figure here is drawn once per change of the job (``Snapshot.watch_version``) and shared by every session that
watches it (``shared_figure``): 60 students watching one run cost one drawing per change.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from .. import viz
from ..live import WATCH_DIGITS, unpack, watch_digits
from ..metrics import task_test_set
from ..runs.interface import STUDENT_PAUSE_S, Snapshot, steerable_by
from .frame import chart
from .resources import get_data, get_queue, owner_id, shared_figure
from .text import duration_text

RIGHT, WRONG = "#1a7f1a", "#c0141e"  # a label's green or red, 4.5:1 and up on white
STEP_UNITS = 4  # first-layer units (or 8 filters) shown before and after a step


def steering(snap: Snapshot, state_key: str) -> None:
    """Pause / Resume / Step one batch, for the student who started the run (the teacher steers any run from the
    Teacher page); the others are told who may."""
    if snap.state != "running":
        return
    me = owner_id()
    if not steerable_by(snap, me):
        if me in snap.watchers:
            st.caption("This run is shared with the student who started it: only they (or the teacher) can pause "
                       "and step it.")
        return
    queue, key = get_queue(), f"{state_key}_{snap.id}"
    cols = st.columns([1, 1, 4])  # callbacks: the queue changes before the panel redraws, so it shows the new state
    if not snap.paused:
        cols[0].button("Pause", key=f"pause_{key}", on_click=queue.pause, args=(snap.id, me),
                       help="Hold the run after its current batch; then Step takes one batch at a time. A pause ends "
                            f"by itself after {duration_text(STUDENT_PAUSE_S)}: others may be waiting to train.")
    elif snap.paused_by == "teacher":
        cols[0].caption("The teacher paused this run.")
    else:
        cols[0].button("Resume", key=f"resume_{key}", on_click=queue.resume, args=(snap.id, me),
                       help="Let the run go on by itself.")
        cols[1].button("Step one batch", key=f"step_{key}", type="primary", on_click=queue.step, args=(snap.id, me),
                       help="Take one batch: forward, loss, backward, one optimizer step; then hold again.")


def watch_it_learn(snap: Snapshot) -> None:
    """The first layer and the 16 test digits as they are now, and what the single steps changed."""
    if snap.watch_version == 0 or snap.finished:
        return
    layer, digits, steps, step_fig, change = shared_figure(("watch", snap.id, snap.watch_version), _watch_figures,
                                                           snap.id, snap.config)
    if layer is None:
        return
    left, right = st.columns([3, 2])
    chart(left, layer, key=f"watch_layer_{snap.id}_{snap.watch_version}")
    chart(right, digits, key=f"watch_digits_{snap.id}_{snap.watch_version}")
    st.caption("Watching it learn, about once a second: each first-layer unit's weights (or filter) on its own colour "
               "scale, red where ink raises what it adds up and blue where ink lowers it, and the model's answer to "
               "each test digit, ✓ right or ✗ wrong. Pause, then Step, to see what one batch changes.")
    if steps is not None:
        st.markdown("**Single steps**: each row is one batch, its loss and accuracy measured just before its step.")
        st.dataframe(steps, hide_index=True, width="stretch")
        a, b = st.columns([3, 2])
        chart(a, step_fig, key=f"watch_step_{snap.id}_{snap.watch_version}")
        b.markdown("How far the last step moved each weight tensor (L2 norms). Left: the first layer before and "
                   "after it, and the change, each on its own colour scale.")
        b.dataframe(change, hide_index=True, width="stretch")


def _watch_figures(job_id: str, config):
    """The figures of one state of a running job's live view (None when it has published nothing yet)."""
    seen = get_queue().watch(job_id)
    if seen is None or seen["watch"] is None:
        return None, None, None, None, None
    now = seen["watch"]
    return (_light(_layer_figure(now)), _light(_digits_figure(now, config)), *_steps_figures(seen["steps"]))


def _light(fig):
    """Without the per-pixel hover data: these two go to every watcher every second, at a third of the size."""
    return fig.update_traces(customdata=None, hoverinfo="skip", hovertemplate=None)


def _layer_figure(now: dict):
    maps = unpack(now["maps"])
    if now["maps_kind"] == "filters":
        title = f"First layer now: {len(maps)} filters, {maps.shape[-1]}x{maps.shape[-1]}"
        return viz.map_sheet(maps, title, cols=16, max_tile=70, height=260)
    title = ("First layer now: its 784 weights" if len(maps) == 1 else
             f"First layer now: units 0-{len(maps) - 1}, 784 weights each")
    return viz.map_sheet(maps, title, cols=8, labels=[f"unit {i}" for i in range(len(maps))], height=380)


def _digits_figure(now: dict, config):
    """The 16 test digits, each labelled with the model's answer: green when right, red when wrong."""
    data = get_data()
    where, targets = watch_digits(data, config)
    names = task_test_set(data, config)[2]
    answers = now["answers"]
    right = [int(a) == int(t) for a, t in zip(answers, targets)]
    labels = [f"✓ {names[a]}" if ok else f"✗ {names[a]} (is {names[int(t)]})"
              for a, t, ok in zip(answers, targets, right)]
    fig = viz.map_sheet(data.test_images[where].float(), f"{WATCH_DIGITS} test digits: {sum(right)} right, "
                        f"{len(right) - sum(right)} wrong", cols=4, diverging=False, labels=labels, height=380,
                        value_name="pixel")
    fig.update_traces(showscale=False)
    for annotation, ok in zip(fig.layout.annotations, right):
        annotation.font.color = RIGHT if ok else WRONG
    return fig


def _steps_figures(steps: list[dict]):
    """The steps taken so far as a table, the last one's first layer before and after (and the change), and how
    far it moved each weight tensor."""
    if not steps:
        return None, None, None
    table = pd.DataFrame([{
        "step": s["step"], "batch of the run": s["batch_of_run"], "batch loss": f"{s['loss']:.4g}",
        "batch accuracy": f"{s['accuracy']:.1%}",
        "first layer moved": _share(s["layers"][0]["moved_share"]) if s["layers"] else "—"} for s in steps])
    last = steps[-1]
    n = STEP_UNITS * (2 if last["maps_kind"] == "filters" else 1)
    before, after, moved = (unpack(last[k])[:n] for k in ("before", "after", "change"))
    what = "filter" if last["maps_kind"] == "filters" else "unit"
    labels = ([f"{what} {i} before" for i in range(len(before))] + [f"{what} {i} after" for i in range(len(after))]
              + [f"{what} {i}: the change" for i in range(len(after))])
    if len(before) == 1:  # the linear model's one unit: before, after and the change side by side
        labels = [f"before step {last['step']}", f"after step {last['step']}", "the change"]
    sheet = viz.map_sheet(torch.cat([before, after, moved]), f"Step {last['step']}: first layer before, after", cols=len(before) if len(before) > 1 else 3,
                          labels=labels, height=420 if len(before) > 1 else 260, max_tile=110)
    change = pd.DataFrame([{"weights": r["weights"], "size": f"{r['norm']:.4g}", "moved": f"{r['moved']:.3g}",
                            "moved ÷ size": _share(r["moved_share"])} for r in last["layers"]])
    return table, sheet, change


def _share(moved_share: float | None) -> str:
    """How far a step moved a tensor, as a share of its size; a tensor that was all zeros has no size to divide by."""
    return "— (was 0)" if moved_share is None else f"{moved_share * 100:.3g}%"
