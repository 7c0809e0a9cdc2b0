"""The in-process runner: a run trains in the thread that hands it over. The CLI trains through it, and the
queue's fast tests use it (no process to start, nothing to wait for but the run itself)."""

from __future__ import annotations

from collections.abc import Callable

from ..execute import analyse_model, run_and_report
from ..runner import Runner
from ..spec import JobSpec
from ..steering import Steering


class InlineRunner(Runner):
    idle_s = None
    start_s = 0.1  # nothing to start: the model is built in this process

    def __init__(self, publish: bool = True, analyse: str = "first"):
        self.publish = publish  # the live pictures (a page watches); the CLI has no use for them
        self.analyse = analyse  # after "done": "none", "first" (what Evaluate paints first) or "all"

    def run(self, spec: JobSpec, data, steering: Steering, emit: Callable) -> None:
        finished = run_and_report(spec, data, steering, emit, self.publish)
        if finished.model_id and self.analyse != "none":
            analyse_model(spec.store, finished.model_id, data, complete=self.analyse == "all")

