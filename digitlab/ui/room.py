"""The room at a glance: every page notes which browser opened it (``presence``, by the browser's key); the Teacher
page shows how many browsers are on each stage, refreshed every few seconds."""

from __future__ import annotations

import streamlit as st

from ..presence import WINDOW_S, Presence
from .resources import owner_id, session_id

REFRESH_S = 5
COLUMNS = 6  # the stages' counts, six to a row


@st.cache_resource
def _presence() -> Presence:
    return Presence()


def seen(page: str) -> None:
    """This browser is on ``page`` now (called by page_setup on every run of a page): by its key once it has said it
    (ui.together), never by its address; until then (a session's first moment) by the session, forgotten once the
    key is known, so no browser counts twice."""
    key = owner_id()
    if key != (session := session_id()):
        _presence().forget(f"session {session}")
    _presence().seen(key if key != session else f"session {session}", page)


@st.fragment(run_every=REFRESH_S)
def room_now(stages: list[str]) -> None:
    """How many browsers are on Home, each of ``stages`` (their titles, in journey order) and the Teacher page."""
    counts = _presence().counts()
    st.header("The room now", help=f"Browsers that opened a page in the last {WINDOW_S / 60:.0f} minutes, by the last "
              "page each opened (a browser counts once, however many tabs). Under serve --web N: this web "
              "process's browsers.")
    pages = ["DigitLab", *stages, "Teacher"]
    st.caption(f"{sum(counts.values())} browsers in all.")
    # big numbers, six to a row: read from the back of the room on a projector
    for start in range(0, len(pages), COLUMNS):
        for column, page in zip(st.columns(COLUMNS), pages[start:start + COLUMNS]):
            column.metric("Home" if page == "DigitLab" else page, counts.get(page, 0))
