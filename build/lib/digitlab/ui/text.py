"""A run's numbers in the pages' words: how long, where it is in the line, why it is refused."""

from __future__ import annotations

import time

from ..runs.estimate import OverLimit
from ..runs.interface import JobRefused, Snapshot


def duration_text(seconds: float) -> str:
    """About how long, for a page: to the nearest 5 s under a minute, then minutes and seconds."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes, s = divmod(seconds, 60)
    if minutes >= 120:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes} min {s:02d} s" if minutes < 10 else f"{minutes} min"


def status(snap: Snapshot) -> str:
    """What a run is doing now; a waiting one also when it should start."""
    if snap.position:
        return f"{snap.message}, starts in about {duration_text(snap.eta_start - time.time())}"
    return snap.message


def over_limit_text(over: OverLimit) -> str:
    """Why a student's run is refused for its cost: its estimate, the class's limit, and what to change."""
    return (f"This run would take about {duration_text(over.seconds)} on this server, more than the class's limit of "
            f"{duration_text(over.limit_s)} for one run. Try {' or '.join(over.options)}.")


def refusal_text(refused: JobRefused) -> str:
    """A refused submit, for the page."""
    return over_limit_text(refused.over) if refused.over is not None else refused.message


def cancelled_text(snap: Snapshot, stopped_here: bool) -> str:
    """Who ended a cancelled run and what was kept. A student's Stop cancels a run only when they are the last to wait
    on it, so a run this session did not stop was cancelled by the teacher (Teacher page or command line)."""
    who = "You stopped this run" if stopped_here else "The teacher cancelled this run"
    n = len(snap.history)
    if snap.model_id:
        return f"{who} after {n} epoch{'s' if n != 1 else ''}; the finished epochs are stored as a model."
    if not snap.history and not snap.batch_losses:
        return f"{who} before it started: nothing to keep."
    return f"{who} before its first epoch finished: nothing to keep."
