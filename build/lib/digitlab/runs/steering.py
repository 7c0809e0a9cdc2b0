"""Pause, single steps, cancel and the live view, written once for every runner.

A ``Steering`` is what the queue wants of one run: cancelled, paused, and how many single steps it has asked for
while paused. The queue changes it; a runner passes each change on (``subscribe``) to wherever the run trains --
the training process (a command line), a Ray task (a flags actor), or nowhere, when the run trains in this
process -- where another ``Steering`` is set the same way (``apply``) and consulted by fit's between-batches hook
(``BetweenBatches``): hold while paused using no CPU, one batch per step (answered by a ``StepReport``), the live
pictures about once a second (``Watch``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

OPS = ("cancel", "pause", "resume", "step")


class Steering:
    def __init__(self):
        self.cancelled = threading.Event()  # fit's cancel
        self.paused = threading.Event()
        self._steps = threading.Semaphore(0)
        self._listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    def apply(self, op: str) -> None:
        """cancel (final), pause, resume (steps asked for and not taken are forgotten) or step (only while paused)."""
        if op == "cancel":
            self.cancelled.set()
        elif op == "pause":
            self.paused.set()
        elif op == "resume":
            self.paused.clear()
            while self._steps.acquire(blocking=False):
                pass
        elif op == "step":
            if not self.paused.is_set():
                return
            self._steps.release()
        else:
            return
        with self._lock:
            listeners = list(self._listeners)
        for tell in listeners:
            tell(op)

    def subscribe(self, tell: Callable[[str], None]) -> Callable[[], None]:
        """Call ``tell(op)`` after every change from now on (it is first told the state so far); returns the
        unsubscribe."""
        with self._lock:
            self._listeners.append(tell)
        if self.cancelled.is_set():
            tell("cancel")
        elif self.paused.is_set():
            tell("pause")

        def unsubscribe() -> None:
            with self._lock:
                if tell in self._listeners:
                    self._listeners.remove(tell)
        return unsubscribe

    def hold(self, timeout: float = 0.1) -> bool:
        """While paused: wait up to ``timeout`` for a step; True when one was taken."""
        return self._steps.acquire(timeout=timeout)

    def holding(self) -> bool:
        return self.paused.is_set() and not self.cancelled.is_set()


class BetweenBatches:
    """fit's ``between_batches`` hook: report the step a student asked for, publish the live pictures (at most
    about once a second, at once when held), and hold while paused until resumed, cancelled, or asked for one step."""

    def __init__(self, model, job: str, emit: Callable, steering: Steering, publish: Callable | None):
        self.model, self.job, self.emit, self.publish, self.steering = model, job, emit, publish, steering
        self.batches, self.steps, self.before = 0, 0, None  # before: the weights as the asked-for step found them

    def __call__(self, loss, preds, targets) -> None:
        from ..live import step_report, weights_now
        from .spec import StepReport

        self.batches += 1
        if self.before is not None:  # the batch a step let through has just been taken
            self.emit(StepReport(self.job, self.steps, self.batches,
                                 **step_report(self.before, self.model, loss.item(), preds, targets)))
            self.before = None
        if self.publish is not None:
            self.publish(now=self.steering.paused.is_set())  # a held run shows its weights at once
        while self.steering.holding():
            if self.steering.hold(0.1):  # one more batch, then hold again
                self.before, self.steps = weights_now(self.model), self.steps + 1
                return
