"""The one interface the queue hands a run to. A runner trains one run at a time for one of the queue's slots:
the local training process (``runners.process``, the default), a Ray cluster (``runners.ray_task``), or this very
process (``runners.inline``: the CLI, and the queue's fast tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .spec import JobSpec
from .steering import Steering


class Runner(Protocol):
    """A runner that holds nothing between runs (inline, Ray) keeps these defaults: warm, rest, between_runs and
    close do nothing, alive says True, pids is empty."""

    idle_s: float | None  # with nothing to do this long, the runner is asked to ``rest`` (None: never)

    def run(self, spec: JobSpec, data, steering: Steering, emit: Callable) -> None:
        """Carry out one run: its messages go to ``emit``, the last of them exactly one ``Finished`` (a runner that
        loses its run says so in that Finished). ``steering`` (pause, steps, cancel) is followed while it trains."""

    def warm(self, data) -> None:
        """Get ready for a run on ``data`` ahead of it (a process started, the data read); may do nothing."""

    def alive(self) -> bool:
        """Whether it holds something ready (a warm process); a runner that holds nothing says True."""
        return True

    def rest(self) -> None:
        """Give back what it holds (nobody has trained for ``idle_s``)."""

    def between_runs(self) -> None:
        """After each run: a runner may replace what has grown."""

    def pids(self) -> list[int]:
        """The training processes it has now (tests and benchmarks kill or measure them)."""
        return []

    def close(self) -> None:
        """End what it holds; a running run is cancelled and keeps what it finished."""
