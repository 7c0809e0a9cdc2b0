"""The room at a glance: every page notes which browser opened it (``presence``); the Teacher page shows how many
browsers are on each stage, refreshed every few seconds."""

from __future__ import annotations

import streamlit as st

from ..presence import WINDOW_S, Presence
from .resources import owner_id, student_place

REFRESH_S = 5
COLUMNS = 6  # the stages' counts, six to a row


@st.cache_resource
def _presence() -> Presence:
    return Presence()


def seen(page: str) -> None:
    """This browser is on ``page`` now (called by page_setup on every run of a page)."""
    _presence().seen(student_place() or f"session {owner_id()}", page)


@st.fragment(run_every=REFRESH_S)
def room_now(stages: list[str]) -> None:
    """How many browsers are on Home, each of ``stages`` (their titles, in journey order) and the Teacher page."""
    counts = _presence().counts()
    st.header("The room now", help=f"Browsers that opened a page in the last {WINDOW_S / 60:.0f} minutes, by the last "
              "page each opened (another machine counts once, however many tabs). Under serve --web N: this web "
              "process's browsers.")
    pages = ["DigitLab", *stages, "Teacher"]
    st.caption(f"{sum(counts.values())} browsers in all.")
    # big numbers, six to a row: read from the back of the room on a projector
    for start in range(0, len(pages), COLUMNS):
        for column, page in zip(st.columns(COLUMNS), pages[start:start + COLUMNS]):
            column.metric("Home" if page == "DigitLab" else page, counts.get(page, 0))
