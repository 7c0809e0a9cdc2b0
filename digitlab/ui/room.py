"""The room at a glance: every page notes which browser opened it (``presence``); the Teacher page shows how many
browsers are on each stage, refreshed every few seconds."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..presence import WINDOW_S, Presence
from .resources import owner_id, student_place

REFRESH_S = 5


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
    rows = [{"page": "Home" if p == "DigitLab" else p, "browsers": counts.get(p, 0)} for p in pages]
    st.caption(f"{sum(counts.values())} browsers in all.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="room_now", column_config={
        "browsers": st.column_config.ProgressColumn(format="%d", min_value=0, max_value=max(1, *counts.values()))})
