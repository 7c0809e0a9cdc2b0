"""The code a teaching page shows: the real source of the functions it runs, in a box that draws it once opened."""

from __future__ import annotations

import functools
import hashlib
import inspect
import threading
from collections.abc import Callable

import streamlit as st


def show_code(*funcs: Callable, title: str = "The code that runs") -> None:
    """The real source of the functions the page calls, never a copy that can drift. Drawn once opened: a closed
    box sends nothing (the code boxes of a teaching page were a tenth of its elements on every student's rerun);
    opening one reruns the page, or the fragment around it, with the code in it."""
    box = st.expander(title, key=code_key(*funcs), on_change="rerun")
    if box.open:
        for f in funcs:
            box.code(_source(f), language="python")


@functools.lru_cache(maxsize=256)
def code_key(*funcs: Callable) -> str:
    """The session-state key of show_code's box for these functions ("code_...", True while it is open)."""
    names = ",".join(f"{f.__module__}.{f.__qualname__}" for f in funcs)
    return "code_" + hashlib.sha1(names.encode()).hexdigest()[:12]


def _source(f: Callable) -> str:
    # inspect.getsource reads and tokenizes the whole file: once per function object per process is enough
    # (a module Streamlit reloads after an edit brings new function objects, so the box follows the file).
    # One at a time: inspect's module cache is not thread-safe (60 sessions opening the CNN page on a cold server
    # raised a SystemError in one of them).
    with _SOURCES_LOCK:
        if f not in _SOURCES:
            _SOURCES[f] = inspect.getsource(f)
        return _SOURCES[f]


_SOURCES: dict[Callable, str] = {}
_SOURCES_LOCK = threading.Lock()
