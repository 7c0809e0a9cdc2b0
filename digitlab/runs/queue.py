"""The class's one training queue: its books and its rules, and nothing else.

A page submits a config and gets a Snapshot back at once. The rules: the line is fair (one waiting run per student,
each knowing its place and when it should start); identical configs share one run (or the model already stored);
a student's run estimated over the class's limit is refused before it is queued (``estimate``); a student's Stop
detaches them, and the run is cancelled only when nobody else waits on it; the teacher (and the CLI) steer any run,
its starter (``steerable_by``) their own, for STUDENT_PAUSE_S in all. Each run goes as a ``JobSpec`` to a slot's
``Runner`` (a training process, Ray, or this process); its ``Steering`` carries pause, steps and cancel there.

The books: one lock (``_cond``) guards every job; a job's state changes only in ``_transition``; nothing slow (the
store, a process) is touched while holding it. Job ids (a random part per queue and a counter) are never reused.

``TrainingQueue`` is the interface the pages use; ``JobQueue`` here and ``queue_server.RemoteQueue`` (the same
queue seen from another web process) both implement it.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from datetime import datetime

from ..data import MNIST
from ..lr_find import STEPS as SWEEP_STEPS
from ..models import TrainConfig
from ..store import ModelStore, StoreError
from ..train import task_size
from .estimate import START_S, Estimates, OverLimit
from .interface import FINISHED, QUEUED, RUNNING, STUDENT_PAUSE_S, JobRefused, Snapshot, TrainingQueue, steerable_by
from .job import Job
from .runner import Runner
from .spec import CANCELLED, DONE, FAILED, EpochDone, Finished, JobSpec, Notice, Progress, Started, StepReport, Watch

KEEP_FINISHED = 200  # finished jobs remembered for the pages; older ones are pruned
DEFAULT_LIMIT_S = 300.0  # the class's limit on one student's run: a few minutes
IDLE = object()  # what _next_job returns when no run came within the runner's idle time
WARM = object()  # what _next_job returns when a page has asked for a runner to get ready ahead of its first run
CLOSE_S = 30.0  # how long close() waits for a cancelled run to end: an in-process run left mid-batch as the interpreter
# exits aborts it (a torch call cannot end its thread), and what it finished would not be kept


class _Slot:
    """One of the queue's places to train: a runner and the thread that hands it jobs, one at a time."""

    def __init__(self, runner: Runner):
        self.runner, self.job, self.thread = runner, None, None
        self.warmed = 0  # the queue's count of warm() calls when this slot last readied its runner for one


class JobQueue(TrainingQueue):
    def __init__(self, store: ModelStore, max_running: int = 1, limit_s: float | None = None,
                 runner: Callable[[], Runner] | None = None, timer: Callable = threading.Timer,
                 clock: Callable[[], float] = time.monotonic):
        """``runner`` makes each slot's runner (default: a local training process, ``runners.process``);
        ``timer(seconds, function, args)`` makes the timer that ends a student's pause and ``clock`` times the
        pauses (a test passes its own)."""
        if runner is None:
            from .runners.process import ProcessRunner as runner
        self.store = store
        self.make_runner, self.timer, self.clock = runner, timer, clock
        self.max_running = max(1, max_running)
        self.limit_s = limit_s  # the most one student's run may cost, in seconds; None: no limit (the CLI, tests)
        self.estimates = Estimates(getattr(runner, "start_s", START_S))
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._ids = (f"job-{secrets.token_hex(3)}-{n}" for n in itertools.count(1))  # never reused
        self._slots: list[_Slot] = []
        self._closed = False
        self._warm_asked = 0  # how many times pages have asked for a warm runner (see warm)
        self._warm_data: MNIST | None = None  # the dataset the last page to ask trains on: read as the runner readies
        self._warm_time = float("-inf")  # when a page last asked (time.monotonic)

    # ------------------------------------------------------------ the API pages use

    def submit(self, config: TrainConfig, data: MNIST, owner: str = "", *, continue_from: str = "",
               fresh: bool = False, limited: bool = False, finetune: dict | None = None, kind: str = "train",
               place: str = "") -> Snapshot:
        """Queue a run; an identical run already queued or running is joined, one already stored is answered
        from the store (unless ``fresh``: train it again, live, as a new model).

        With ``finetune`` (the class's drawings, finetune.pack), the stored ``continue_from`` is fine-tuned on them
        instead (``config``: its recipe, epochs as fine-tuning runs them), queued like any run. ``kind="lr_find"``:
        the learning-rate finder's sweep of ``config`` (its curve in the snapshot's ``result``; nothing stored).

        Raises JobRefused, with a message for the page, when the model folder cannot be written, when a
        ``limited`` run (a student's, from a page) is estimated to cost more than the class's limit, or when
        ``owner`` already has a run waiting: one place in the line per student. ``place`` (the student's browser, or
        their machine's address) is held to the same rule, so 30 tabs of one browser hold one place, not 30.
        """
        try:
            self.store.check_writable()  # before anyone waits minutes for a run that cannot be saved
        except StoreError as e:
            raise JobRefused(f"Training is off for now: {e}") from None
        kind = "finetune" if finetune else kind
        stored = None if continue_from or fresh or kind != "train" else self.store.find(config, data.fingerprint())
        n_images = (len(finetune["labels"]) if finetune  # from the labels: no image copied
                    else SWEEP_STEPS * config.batch_size if kind == "lr_find" else task_size(data, config))
        self.estimates.learn_from_store(self.store)
        with self._cond:
            if not continue_from:
                for job in self._jobs.values():
                    if (job.state in (QUEUED, RUNNING) and not job.continue_from and job.config.key() == config.key()
                            and job.kind == kind and job.data.fingerprint() == data.fingerprint()):
                        if owner:
                            job.watchers.add(owner)
                            job.version += 1
                        return self._snapshot(job, reused=True)
                if stored is not None:
                    job = Job(next(self._ids), config, owner, data, n_images, model_id=stored.id,
                              history=list(stored.history), reused=True, compute_seconds=stored.train_seconds)
                    self._jobs[job.id] = job
                    self._transition(job, DONE, "already trained: loaded from the model store")
                    return self._snapshot(job)
            if limited and (over := self.estimates.over_limit(config, n_images, self.limit_s)):
                raise JobRefused(over=over)
            mine = [j for j in self._waiting if (owner and j.owner == owner) or (place and j.place == place)]
            if mine:
                ahead = self._waiting.index(mine[0]) + 1
                where = "You already have" if mine[0].owner == owner else "Another tab of your browser has"
                raise JobRefused(f"{where} a run waiting ({mine[0].config.title}, number {ahead} in line). "
                                 "Stop it, or wait until it starts, before you queue another.")
            job = Job(next(self._ids), config, owner, data, n_images, continue_from=continue_from, finetune=finetune,
                      kind=kind, place=place)
            if owner:
                job.watchers.add(owner)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._ensure_slots()
            self._cond.notify_all()
            return self._snapshot(job)

    def warm(self, data: MNIST | None = None) -> None:
        """Have the runner get ready now (the training process started, ``data`` read), so the next run starts at
        once: from cold a run's first step comes about 3 s after Train, warmed 0.4 s (bench_first_step.py). The
        training pages ask as they open; a process nobody uses still goes after its idle time."""
        with self._cond:
            if self._closed:
                return
            self._warm_asked += 1
            self._warm_data, self._warm_time = data, time.monotonic()
            self._ensure_slots()
            self._cond.notify_all()

    def estimate(self, config: TrainConfig, n_images: int, loaded: bool = True) -> float:
        """Seconds from Train to "done" for ``config`` on ``n_images`` images here (``loaded`` False: nothing else ran)."""
        self.estimates.learn_from_store(self.store)
        return self.estimates.seconds(config, n_images, loaded)

    def over_limit(self, config: TrainConfig, n_images: int) -> OverLimit | None:
        """Why a student's run of ``config`` would be refused for its cost, or None within the class's limit."""
        self.estimates.learn_from_store(self.store)
        return self.estimates.over_limit(config, n_images, self.limit_s)

    def snapshot(self, job_id: str) -> Snapshot | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return self._snapshot(job) if job else None

    def jobs(self, owner: str | None = None) -> list[Snapshot]:
        with self._cond:
            return [self._snapshot(j) for j in self._jobs.values() if owner is None or j.owner == owner]

    def active(self) -> list[Snapshot]:
        """The running jobs, then the waiting ones in line order."""
        with self._cond:
            running = [j for j in self._jobs.values() if j.state == RUNNING]
            return [self._snapshot(j) for j in (*running, *self._waiting)]

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Stop a job between batches (or drop it from the line), for everyone who waits on it.

        With ``owner``, only its owner may (a run started for the class, owner "", is no student's); without,
        anyone who manages the class (the teacher, the CLI)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED or (owner is not None and job.owner != owner):
                return False
            self._student_pause_ends(job)
            job.paused_by = ""
            job.steering.apply("resume")
            job.steering.apply("cancel")
            if job.state == QUEUED:
                self._waiting.remove(job)
                self._transition(job, CANCELLED, "cancelled before it started")
            return True

    def stop(self, job_id: str, who: str) -> str:
        """A student's Stop: ``who`` no longer waits on the run, which is cancelled only when nobody else does, and
        never when it was started for the whole class (owner ""): only the teacher cancels those.

        Returns what happened: "cancelled", "detached" (others still wait on it) or "" (nothing to stop)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED or who not in job.watchers:
                return ""
            job.watchers.discard(who)
            job.version += 1
            if job.watchers or not job.owner:
                self._cond.notify_all()
                return "detached"
        return "cancelled" if self.cancel(job_id) else ""

    def pause(self, job_id: str, who: str | None = None) -> bool:
        """Hold a running job after its current batch until resume; its runner keeps what it has.

        ``who`` None: the teacher (or the command line), any run. A student's id: only the run they started and
        still follow (``steerable_by``); their pauses of one run last STUDENT_PAUSE_S in all (a pause that was
        renewed again and again held the class's queue without end): each ends by itself when that is used up."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state != RUNNING or job.paused or job.cancelled or not self._may_steer(job, who):
                return False
            left = STUDENT_PAUSE_S - job.student_paused_s
            if who is not None and left <= 0:
                job.message, job.version = (f"no pause left: a student may hold a run for {STUDENT_PAUSE_S / 60:g} "
                                            "minutes in all, and the others waiting go first"), job.version + 1
                return False
            job.paused_by, job.pauses = "teacher" if who is None else "starter", job.pauses + 1
            job.message = ("paused by the teacher" if who is None else
                           "paused by the student who started it: Step takes one batch at a time")
            if who is not None:
                job.paused_since = self.clock()
                lapse = self.timer(left, self._pause_lapsed, (job_id, job.pauses))
                lapse.daemon = True
                lapse.start()
            return self._steer(job, "pause")

    def resume(self, job_id: str, who: str | None = None) -> bool:
        """Let a paused job go on: the teacher any (``who`` None), a student only their own pause."""
        with self._cond:
            job = self._jobs.get(job_id)
            if (job is None or job.state != RUNNING or not job.paused or not self._may_steer(job, who)
                    or (who is not None and job.paused_by != "starter")):
                return False
            self._student_pause_ends(job)
            job.paused_by, job.message = "", "resuming"
            return self._steer(job, "resume")

    def step(self, job_id: str, who: str | None = None) -> bool:
        """Let a paused job take one batch, then hold again; the run answers with what it changed (``watch``).
        Who may: as for ``resume``."""
        with self._cond:
            job = self._jobs.get(job_id)
            if (job is None or job.state != RUNNING or not job.paused or not self._may_steer(job, who)
                    or (who is not None and job.paused_by != "starter")):
                return False
            job.message = f"{'paused by the teacher' if job.paused_by == 'teacher' else 'paused'}: taking one step"
            return self._steer(job, "step")

    def watch(self, job_id: str) -> dict | None:
        """What a running (or just finished) job last showed of itself: {"version", "watch" (Watch.picture(): its
        first layer and its answers on the 16 test digits), "steps" (StepReport.report() of its last single steps)}."""
        with self._cond:
            job = self._jobs.get(job_id)
            return None if job is None else {"version": job.watch_version, "watch": job.watch, "steps": list(job.steps)}

    @staticmethod
    def _may_steer(job: Job, who: str | None) -> bool:
        return who is None or steerable_by(job, who)

    def _pause_lapsed(self, job_id: str, pause_no: int) -> None:
        """A student's pause has lasted STUDENT_PAUSE_S: the run goes on (unless a newer pause, or the teacher's)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or not job.paused or job.paused_by != "starter" or job.pauses != pause_no:
                return
            self._student_pause_ends(job)
            job.paused_by = ""
            job.message = f"resumed: a student may pause a run for at most {STUDENT_PAUSE_S / 60:g} minutes in all"
            self._steer(job, "resume")

    def _student_pause_ends(self, job: Job) -> None:
        """Count the student's pause that ends now towards the run's STUDENT_PAUSE_S (with the lock held)."""
        if job.paused_by == "starter":
            job.student_paused_s += max(0.0, self.clock() - job.paused_since)

    def _steer(self, job: Job, op: str) -> bool:
        """Pass pause, resume or step to the job's steering (with the lock held; its runner passes it on)."""
        job.version += 1
        job.steering.apply(op)
        self._cond.notify_all()
        return True

    def wait(self, job_id: str, timeout: float | None = None) -> Snapshot | None:
        """Block until the job finishes (for the CLI and tests; pages poll snapshots instead)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                if job is None or job.state in FINISHED:
                    return self._snapshot(job) if job else None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self._snapshot(job)
                self._cond.wait(left)

    def wait_for(self, check: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until ``check()`` (called with the lock held, after every change to any job) is true; False on
        timeout. Tests wait on the books this way, with no sleeps."""
        with self._cond:
            return self._cond.wait_for(check, timeout)

    def worker_pids(self) -> list[int]:
        """The training processes now alive (for the benchmark, and for tests that kill one)."""
        return [pid for s in list(self._slots) for pid in s.runner.pids()]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the runners; a running job is cancelled and keeps what it finished (its thread waited for, CLOSE_S)."""
        with self._cond:
            self._closed = True
            running = [s.job for s in self._slots if s.job is not None]
            self._cond.notify_all()
            slots = list(self._slots)
        for job in running:
            job.steering.apply("cancel")
        for s in slots:
            s.runner.close()
        for s in (s for s in slots if s.thread not in (None, threading.current_thread())):
            s.thread.join(CLOSE_S)

    # ------------------------------------------------------------ the books

    def _transition(self, job: Job, state: str, message: str, *, error: str = "", model_id: str = "") -> None:
        """The one place a job's state changes (called with the lock held)."""
        job.state, job.message = state, message
        job.version += 1
        if error:
            job.error = error
        if model_id:
            job.model_id = model_id
        if state == RUNNING:
            job.started, job.began = time.time(), time.monotonic()  # began: a wall time no sleep lengthens
        if state in FINISHED:
            job.ended, job.finetune = time.time(), None  # the drawings it was sent are not kept
            self._prune()
        self._cond.notify_all()

    def _prune(self) -> None:
        done = sorted((j for j in self._jobs.values() if j.state in FINISHED), key=lambda j: j.ended)
        for job in done[: max(0, len(done) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def _remaining(self, job: Job) -> float:
        pausing = job.paused_by == "starter"  # a student's pause: what is left of it is waited for too
        now_held = self.clock() - job.paused_since if pausing else 0.0
        held = max(0.0, STUDENT_PAUSE_S - job.student_paused_s - now_held) if pausing else 0.0
        if job.state == RUNNING and job.last is not None and job.last.fraction > 0.05:
            so_far = max(1e-3, time.time() - job.started - job.student_paused_s - now_held)  # paused: no progress
            return held + so_far * (1 - job.last.fraction) / job.last.fraction
        if job.state == RUNNING:
            return held + max(0.0, self.estimates.seconds(job.config, job.n_images) - (time.time() - job.started))
        return self.estimates.seconds(job.config, job.n_images)

    def _eta_start(self, job: Job) -> float:
        """When a waiting job should start: the running jobs' remaining time and every job ahead of it, per slot."""
        ahead = [self._remaining(j) for j in self._jobs.values() if j.state == RUNNING]
        ahead += [self._remaining(j) for j in itertools.takewhile(lambda j: j is not job, self._waiting)]
        return time.time() + sum(ahead) / self.max_running

    def _snapshot(self, job: Job, reused: bool | None = None) -> Snapshot:
        position, eta, message = 0, 0.0, job.message
        if job.state == QUEUED and job in self._waiting:
            position = self._waiting.index(job) + 1
            eta = self._eta_start(job)
            message = f"queued: number {position} in line"
        progress = 1.0 if job.state == DONE else (job.last.fraction if job.last else 0.0)
        return Snapshot(
            id=job.id, config=job.config, owner=job.owner, state=job.state, position=position, progress=progress,
            last=job.last, history=tuple(job.history), batch_losses=tuple(job.batch_losses),
            batch_accuracies=tuple(job.batch_accuracies), error=job.error, model_id=job.model_id, message=message,
            submitted=job.submitted, reused=job.reused if reused is None else reused, eta_start=eta,
            compute_seconds=job.compute_seconds, version=job.version, watchers=tuple(sorted(job.watchers)),
            paused=job.paused and job.state == RUNNING, paused_by=job.paused_by, watch_version=job.watch_version,
            result=job.result, notice=job.notice, kind=job.kind)

    # ------------------------------------------------------------ handing jobs to runners

    def _ensure_slots(self) -> None:
        while len(self._slots) < self.max_running:
            slot = _Slot(self.make_runner())
            self._slots.append(slot)
            slot.thread = threading.Thread(target=self._serve, args=(slot,), daemon=True,
                                           name=f"digitlab-trainer-{len(self._slots)}")
            slot.thread.start()

    def _serve(self, slot: _Slot) -> None:
        """A slot's thread: the next job to its runner, one at a time; a runner's lifecycle between them."""
        runner = slot.runner
        while (job := self._next_job(slot, runner.idle_s if runner.alive() else None)) is not None:
            if job is IDLE:  # nobody trains: what it holds goes back to the system
                runner.rest()
                continue
            if job is WARM:
                runner.warm(self._warm_data)
                continue
            spec = JobSpec.of(job.id, job.config, job.data, self.store, job.continue_from, job.finetune, job.kind)
            try:
                runner.run(spec, job.data, job.steering, lambda message, job=job: self._on_message(job, message))
            except Exception as e:  # a bug in a runner: the job says so, the slot goes on
                traceback.print_exc()
                self._on_message(job, Finished.failed(job.id, f"training failed unexpectedly: {e}"))
            with self._cond:
                if job.state not in FINISHED:
                    self._transition(job, FAILED, "the run ended without a word", error="the run ended without a word")
                slot.job = None
            runner.between_runs()

    def _next_job(self, slot: _Slot, idle_s: float | None = None) -> Job | object | None:
        """The next waiting job for ``slot``; None once closed; IDLE when neither a run nor a page's warm() came within
        ``idle_s``; WARM when a page has asked for a warm runner since this slot last readied one, and it has none."""
        deadline = None if idle_s is None else time.monotonic() + idle_s
        with self._cond:
            while not self._waiting and not self._closed:
                if self._warm_asked > slot.warmed and not slot.runner.alive():
                    slot.warmed = self._warm_asked
                    return WARM
                if deadline is not None:
                    deadline = max(deadline, self._warm_time + idle_s)  # a page still asking keeps the process
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    slot.warmed = self._warm_asked  # asks older than the idle time start nothing
                    return IDLE
                self._cond.wait(left)
            if self._closed:
                return None
            job = self._waiting.popleft()
            slot.job = job
            self._transition(job, RUNNING, "starting")
            return job

    def _saved_before_it_died(self, job: Job):
        """The model of a run whose process died once it was saved (no Finished sent): of its config and data, stored
        since it started, with every epoch in. Such runs said "failed". Read before the lock is taken."""
        if job.kind != "train" or job.continue_from or len(job.history) < job.config.epochs:
            return None
        found = self.store.find(job.config, job.data.fingerprint())
        try:
            return found if found and datetime.fromisoformat(found.created).timestamp() >= job.started - 1 else None
        except ValueError:
            return None

    def _on_message(self, job: Job, msg) -> None:
        """What a run says about ``job`` (its runner passes on every message, the last its Finished)."""
        if isinstance(msg, Finished) and msg.state == FAILED and (saved := self._saved_before_it_died(job)):
            msg = dataclasses.replace(msg, state=DONE, model_id=saved.id, error="", message=(
                f"done: test accuracy {saved.accuracy:.2%} (saved just before its training process stopped)"))
        with self._cond:
            if job.state in FINISHED:
                return  # a run's one Finished is the last word
            job.version += 1
            if isinstance(msg, Progress):
                ev = job.last = msg.event
                for at, loss, acc in msg.points:
                    job.batch_losses.append((at, loss))
                    job.batch_accuracies.append((at, acc))
                if job.paused:
                    pass  # "paused by ..." stays until resume
                elif ev.kind == "batch":
                    job.message = (f"epoch {ev.epoch}/{ev.epochs}, batch {ev.batch}/{ev.n_batches}, "
                                   f"{ev.images_per_s:,.0f} images/s")
                else:
                    job.message = f"epoch {ev.epoch}/{ev.epochs}: test accuracy {ev.test_accuracy:.2%}"
            elif isinstance(msg, Watch):
                job.watch, job.watch_version = msg.picture(), job.watch_version + 1
            elif isinstance(msg, StepReport):
                for older in job.steps:  # the pictures only of the last step; the numbers of every one
                    for key in ("before", "after", "change"):
                        older.pop(key, None)
                job.steps.append(msg.report())
                job.watch_version += 1
                who = "paused by the teacher" if job.paused_by == "teacher" else "paused"
                job.message = f"{who}: step {msg.step} took one batch of {msg.batch_size}, its loss {msg.loss:.4f}"
            elif isinstance(msg, Notice):
                job.notice = msg.text
            elif isinstance(msg, Started):
                job.history = list(msg.history)
            elif isinstance(msg, EpochDone):
                job.history.append(msg.record)
            self._cond.notify_all()  # wait_for's checks look again
            if isinstance(msg, Finished):
                job.compute_seconds, job.paused_by = msg.compute_seconds, ""
                job.result = msg.result
                job.watch, job.watch_version = None, job.watch_version + 1  # a finished run shows its model instead
                job.steps.clear()
                if msg.state in (DONE, CANCELLED) and job.history and job.kind == "train":
                    ran_out = msg.state == DONE and not job.continue_from and job.pauses == 0
                    self.estimates.measured(job.config, job.history[-1]["images_per_s"],
                                            time.monotonic() - job.began if ran_out else None, job.n_images)
                self._transition(job, msg.state, msg.message, error=msg.error, model_id=msg.model_id)
