"""The Teacher page's class sections: lead the class (follow me, hold Train), ask the class before a run and show
the answers against the truth, and the class's pseudonyms (what each holds; erase everything of one).

Every action checks the teacher flag again (``is_teacher``): a client can send any widget's click.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from ..collection import Collection, CollectionError
from ..room_book import QUESTIONS, Question, RoomBook
from ..store import StoreError
from .frame import chart
from .resources import get_queue, get_store, is_teacher, needs_book, stored_models
from .together import answer_text, follow_me_toggle, question_truth

HOLD_S = 60  # one press holds the class's Train buttons this long


def _book() -> RoomBook | None:
    try:
        return Collection().book
    except CollectionError as e:
        st.error(f"The class collection's database cannot be opened, and the class's book is kept there: {e}")
        return None


@needs_book()
def lead_the_class() -> None:
    """Follow me and hold Train."""
    st.header("Lead the class")
    if (book := _book()) is None:
        return
    lead = book.lead()
    c1, c2 = st.columns(2)
    with c1:
        follow_me_toggle("lead_on")
    c1.caption("Open a page (from the sidebar): the class goes there with you. The toggle is in the sidebar of every "
               "page too." if lead["on"] else "Students explore on their own.")
    if held := book.held_for():
        c2.warning(f"The class's Train buttons are held for {held:.0f} s more.", icon="✋")
        if c2.button("Release Train now", key="lead_release") and is_teacher():
            book.set_lead(hold_s=0)
            st.rerun()
    elif c2.button(f"✋ Hold the class's Train buttons for {HOLD_S} s", key="lead_hold",
                   help="For a moment of explanation: students' Train buttons close, their runs go on.") \
            and is_teacher():
        book.set_lead(hold_s=HOLD_S)
        st.rerun()


@needs_book()
def ask_the_class() -> None:
    """Predict, then see: a question about one run; the answers against the truth once it has ended."""
    st.header("Predict, then see")
    if (book := _book()) is None:
        return
    q = book.question()
    if q is not None:
        answers_now(q.id)
        if st.button("Close the question", key="ask_close") and is_teacher():
            book.close_question()
            st.rerun()
        return
    runs = [s for s in get_queue().active() if not s.finished and s.kind == "train"]
    if not runs:
        return st.caption("Start a run (or let a student start one): then ask the class what it will do, before it "
                          "ends.")
    c1, c2 = st.columns(2)
    run = c1.selectbox("The run", runs, format_func=lambda s: f"{s.config.title} ({s.state})", key="ask_run")
    kind = c2.selectbox("The question", list(QUESTIONS), format_func=QUESTIONS.get, key="ask_kind")
    if st.button("Ask the class", type="primary", key="ask_go") and is_teacher() and run is not None:
        book.ask(kind, run.id, run.config.title)
        st.rerun()


@st.fragment(run_every=2.0)
@needs_book()
def answers_now(question_id: str) -> None:
    book = _book()
    q = book.question() if book else None
    if q is None or q.id != question_id:
        return
    answers = list(book.answers(q.id).values())
    truth = question_truth(q)
    st.markdown(f"**{q.text}** ({q.about}) · {len(answers)} answer(s)"
                + (f" · **the truth: {answer_text(q, truth)}**" if truth is not None else " · the run is not over"))
    if answers:
        chart(st, answers_figure(q, answers, truth), key="ask_answers",
              alt=f"{len(answers)} answers" + (f", the truth {answer_text(q, truth)}" if truth is not None else ""))


def answers_figure(q: Question, answers: list[float], truth: float | None) -> go.Figure:
    """The class's answers as a histogram (accuracy) or a bar per digit, the truth marked."""
    if q.kind == "digit":
        counts = [sum(int(a) == d for a in answers) for d in range(10)]
        colours = ["#d62728" if truth is not None and d == int(truth) else "#1f77b4" for d in range(10)]
        fig = go.Figure(go.Bar(x=[str(d) for d in range(10)], y=counts, marker_color=colours, text=counts,
                               textposition="outside"))
        fig.update_layout(xaxis_title="the digit the class guessed", xaxis_type="category")
    else:
        fig = go.Figure(go.Histogram(x=answers, xbins=dict(size=1), marker_color="#1f77b4"))
        fig.update_layout(xaxis_title="guessed test accuracy (%)")
        if truth is not None:
            fig.add_vline(x=truth, line_color="#d62728", line_width=3,
                          annotation_text=f"the truth: {truth:.1f}%", annotation_position="top")
    fig.update_layout(yaxis_title="students", height=320, margin=dict(t=40, b=40), showlegend=False)
    return fig


@needs_book()
def pseudonyms() -> None:
    """The class's pseudonyms, what each holds, and erasing everything of one."""
    st.header("The class's names")
    if note := st.session_state.pop("names_erased", None):
        st.success(note)
    if (book := _book()) is None:
        return
    names = book.names()
    if not names:
        return st.caption("No student has opened a page yet: each browser gets a name (an adjective and an animal) "
                          "the first time.")
    st.caption(f"{len(names)} names. Nothing else about a student is kept: no real name, no address.")
    by_name = {name: key for key, name in names.items()}
    who = st.selectbox("A name", sorted(by_name), index=None, key="names_pick", placeholder="Pick a name...")
    if who is None:
        return
    key = by_name[who]
    held = book.holdings(key)
    st.markdown(f"**{who}** holds " + ", ".join(f"{n} {what}" for what, n in held.items()) + ".")
    sure = st.checkbox(f"Yes, erase everything of {who}", key=f"names_sure_{key}")
    if st.button("Erase", key="names_erase", disabled=not sure) and sure and is_teacher():
        removed, only_theirs = book.erase(key)
        gone = _remove_models(only_theirs)
        st.session_state["names_erased"] = (f"Erased {who}: " + ", ".join(f"{n} {what}" for what, n in removed.items())
                                            + f", {gone} model(s) only they asked for.")
        st.rerun()


def _remove_models(config_keys: set[str]) -> int:
    """Remove the stored models of these configs (those only an erased student asked for)."""
    infos, _ = stored_models()
    gone = 0
    for info in infos:
        if info.config.key() in config_keys and "class_drawings_accuracy" not in info.metrics:  # not a fine-tuning
            try:
                get_store().delete(info.id)
                gone += 1
            except StoreError:
                pass
    return gone
