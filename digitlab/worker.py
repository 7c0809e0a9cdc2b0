"""The training worker: a separate process that trains one job at a time for the web server's queue.

Training here, not in the web process, means the class's clicks never wait behind the training loop's
Python, a crash or an out-of-memory kill in training cannot take the server down, and each run's random
numbers depend only on its config (nothing else draws from this process's generators).

It speaks JSON lines: commands on stdin (``run``, ``load``, ``cancel``, ``pause``, ``resume``, ``step``, ``quit``), messages on a
private copy of stdout (``ready``, ``start``, ``progress``, ``epoch``, ``watch``, ``step``, ``finished``); anything else the
process prints goes to stderr. A paused run holds after its current batch; each ``step`` lets one batch through and
answers with what it changed (``live.step_report``); about once a second a run publishes its first layer and its answers
on 16 test digits (``watch``, ``live.Publisher``).
``python -m digitlab.worker`` is started by ``jobs.JobQueue``; ``run_job`` is the whole of one run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

PROGRESS_EVERY_S = 0.25  # how often the live panels' numbers move: often enough to look alive, rarely enough to cost nothing
IDLE_BEFORE_ANALYSIS_S = 0.5  # a model's costly analysis waits until no run has come for this long: runs go first


def env_int(name: str, default: int) -> int:
    """A whole-number setting from the environment; a missing or unreadable one means the default."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def worker_threads() -> int:
    """Intra-op threads for training: every core but one, which stays free for the web server."""
    wanted = env_int("DIGITLAB_WORKER_THREADS", 0)
    return wanted if wanted > 0 else max(1, (os.cpu_count() or 1) - 1)


def cpu_seconds() -> float:
    """CPU time this process has used, all its threads together."""
    return time.process_time()


# ---------------------------------------------------------------- one run


def run_job(spec: dict, emit: Callable[[dict], None], cancel: threading.Event, data_cache: dict,
            complete: bool = True, pause: threading.Event | None = None, step: threading.Semaphore | None = None,
            publish: bool = True) -> dict:
    """Train, save and analyse one job; returns the ``finished`` message (never raises for a run's own failure).

    The analysis Evaluate paints first is made before the job is reported done, so no visitor waits for it;
    with ``complete`` the rest too (robustness), which the worker otherwise leaves for when no run is waiting.
    While ``pause`` is set the run waits between batches (a cancel still ends it), and each release of ``step`` lets
    one batch through. With ``publish``, the live pictures go out with the progress (``watch`` messages).

    ``spec``: job, config (TrainConfig.to_dict()), continue_from, data_dir, fingerprint, store.
    Times in the records are this process's own compute time, so a run reads the same however busy the
    machine is: CPU seconds divided by the training threads. An epoch's images/s is timed over its training
    steps (first to last), its seconds count everything (the test pass and start-up too).
    """
    import torch

    from .live import Publisher
    from .models import TrainConfig, build_model
    from .store import ModelStore, StoreError
    from .train import TrainingError, fit, task_size

    job = spec["job"]
    config = TrainConfig.from_dict(spec["config"])
    store = ModelStore(spec["store"])
    wall_start, cpu_start = time.perf_counter(), cpu_seconds()

    def compute_since(cpu: float) -> float:  # fit sets the thread count; CPU time is shared out over them
        return (cpu_seconds() - cpu) / max(1, torch.get_num_threads())

    def finished(state: str, message: str, error: str = "", model_id: str = "") -> dict:
        return {"type": "finished", "job": job, "state": state, "message": message, "error": error,
                "model_id": model_id, "compute_seconds": compute_since(cpu_start),
                "wall_seconds": time.perf_counter() - wall_start}

    try:
        data = _data(spec, data_cache)
    except Exception as e:  # the web process loaded it; if this process cannot, say why
        return finished("failed", f"the training process could not load the data: {e}", str(e))
    if data.fingerprint() != spec["fingerprint"]:
        msg = "the data on disk changed since the page loaded it; reload the page and train again"
        return finished("failed", msg, msg)

    if spec.get("finetune"):  # the class's drawings: fine-tune the stored model on them (finetune.run_job)
        from . import finetune

        if cancel.is_set():
            return finished("cancelled", "stopped before it started: nothing to keep")
        try:
            info, result = finetune.run_job(store, spec["continue_from"], spec["finetune"], data)
        except (ValueError, StoreError, OSError) as e:
            return finished("failed", f"fine-tuning did not finish: {e}", str(e))
        analyse_model(spec["store"], info.id, data, complete=complete)
        return finished("done", f"fine-tuned: {result['after']['class drawings']:.1%} of the kept-out drawings right",
                        model_id=info.id) | {"result": result}

    history: list[dict] = []
    base_seconds = 0.0
    try:
        if spec.get("continue_from"):
            model, base = store.load(spec["continue_from"])
            history, base_seconds = list(base.history), base.train_seconds
            emit({"type": "start", "job": job, "history": history})  # the epochs it continues from
        else:
            model = build_model(config)
        n_images = task_size(data, config)
        start_epoch, earlier = len(history), len(history)
        last_sent, points, steps_s = 0.0, [], 0.0
        timed_epoch, first_batch, first_batch_cpu = 0, 0, cpu_seconds()
        between = BetweenBatches(model, job, emit, cancel, pause, step, Publisher(model, config, data, emit, job)
                                 if publish else None)
        for ev in fit(model, config, data, cancel=cancel, start_epoch=start_epoch, between_batches=between):
            if ev.kind == "batch":
                if ev.epoch != timed_epoch:  # the epoch's speed is timed from its first report to its last step
                    timed_epoch, first_batch, first_batch_cpu = ev.epoch, ev.batch, cpu_seconds()
                elif ev.batch == ev.n_batches:
                    steps_s = compute_since(first_batch_cpu)
                points.append((ev.epoch - 1 + ev.batch / ev.n_batches, ev.loss, ev.accuracy))
                now = time.perf_counter()
                if now - last_sent >= PROGRESS_EVERY_S:
                    emit({"type": "progress", "job": job, "event": dataclasses.asdict(ev), "points": points})
                    last_sent, points = now, []
            elif ev.kind == "epoch":
                timed = n_images * (ev.n_batches - first_batch) / ev.n_batches
                record = ev.record() | {
                    "images_per_s": timed / steps_s if timed > 0 and steps_s > 0 else ev.images_per_s,
                    "seconds": base_seconds + compute_since(cpu_start),
                    "wall_seconds": time.perf_counter() - wall_start,
                }
                history.append(record)
                emit({"type": "progress", "job": job, "event": dataclasses.asdict(ev), "points": points})
                emit({"type": "epoch", "job": job, "record": record})
                points = []
    except TrainingError as e:
        return finished("failed", str(e), str(e))
    except StoreError as e:
        return finished("failed", f"cannot continue: {e}", f"cannot continue: {e}")

    new_epochs = len(history) - earlier
    if cancel.is_set() and new_epochs == 0:
        return finished("cancelled", "stopped before the first epoch finished: nothing to keep")
    if cancel.is_set() or spec.get("continue_from"):
        config = config.with_(epochs=len(history))
    last = history[-1]
    compute = compute_since(cpu_start)
    try:
        info = store.save(
            model, config,
            metrics={k: last[k] for k in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "images_per_s")},
            history=history, fingerprint=data.fingerprint(), train_seconds=base_seconds + compute,
            extra={"data_source": data.source.kind, "continued_from": spec.get("continue_from") or None,
                   "wall_seconds": round(time.perf_counter() - wall_start, 3), "threads": torch.get_num_threads()},
        )
    except OSError as e:
        return finished("failed", f"trained, but could not save the model: {e}", f"trained, but could not save the model: {e}")
    analyse_model(spec["store"], info.id, data, model, complete=complete)
    if cancel.is_set():
        return finished("cancelled", f"stopped after {new_epochs} epoch(s); saved as {info.id}", model_id=info.id)
    return finished("done", f"done: test accuracy {last['test_accuracy']:.2%}", model_id=info.id)


class BetweenBatches:
    """What a run does after each batch's step (fit's ``between_batches``): report the step a student asked for,
    publish the live pictures (at most about once a second), and hold while paused, using no CPU, until resumed,
    cancelled, or asked for one more step."""

    def __init__(self, model, job: str, emit: Callable[[dict], None], cancel: threading.Event,
                 pause: threading.Event | None, step: threading.Semaphore | None, publish: Callable | None):
        self.model, self.job, self.emit, self.publish = model, job, emit, publish
        self.cancel, self.pause, self.step = cancel, pause, step
        self.batches, self.steps, self.before = 0, 0, None  # before: the weights as the asked-for step found them

    def __call__(self, loss, preds, targets) -> None:
        self.batches += 1
        if self.before is not None:  # the batch a step let through has just been taken
            from .live import step_report

            self.emit({"type": "step", "job": self.job, "step": self.steps, "batch_of_run": self.batches,
                       **step_report(self.before, self.model, loss.item(), preds, targets)})
            self.before = None
        if self.publish is not None:
            self.publish(now=self.pause is not None and self.pause.is_set())  # a held run shows its weights at once
        while self.pause is not None and self.pause.is_set() and not self.cancel.is_set():
            if self.step is None:
                time.sleep(0.1)
            elif self.step.acquire(timeout=0.1):  # one more batch, then hold again
                from .live import weights_now

                self.before, self.steps = weights_now(self.model), self.steps + 1
                return


def _data(spec: dict, cache: dict):
    """The dataset the page trained on (MNIST or Fashion-MNIST), loaded once per worker from the folder it came
    from; one of each is kept, so classes switching datasets do not reload."""
    from .data import load_dataset

    key = spec["data_dir"]
    if key not in cache:
        dataset = spec.get("config", {}).get("dataset", "mnist")
        for old in [k for k, v in cache.items() if v.source.dataset == dataset]:
            del cache[old]
        cache[key] = load_dataset(dataset, key, allow_download=False)
    return cache[key]


class GiveWay(Exception):
    """Raised inside a model's deferred analysis when a run arrives: the run goes first."""


def analyse_model(store_root: str, model_id: str, data, model=None, complete: bool = True,
                  give_way: Callable[[], bool] | None = None) -> bool:
    """What Evaluate and Features need for this model (with ``complete``, all of it), computed once now.

    With ``give_way``, checked before each robustness level, a run that arrives stops the analysis (False is
    returned: nothing half-done is kept, and it is done again later)."""
    from . import analysis
    from .store import ModelStore

    def progress(_done: float, _what: str) -> None:
        if give_way is not None and give_way():
            raise GiveWay

    try:
        if complete:
            analysis.complete(ModelStore(store_root), model_id, data, model, progress)
        else:
            analysis.ensure(ModelStore(store_root), model_id, data, model)
    except GiveWay:
        return False
    except Exception:  # the model is saved; its analysis is made again on first view
        traceback.print_exc()
    return True


# ---------------------------------------------------------------- the process


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol's own copy of stdout...
    os.dup2(2, 1)  # ...and everything else anyone prints goes to stderr
    sys.stdout = sys.stderr
    try:
        os.nice(env_int("DIGITLAB_WORKER_NICE", 10))  # below the web server: clicks first
    except (AttributeError, OSError):
        pass
    os.environ["DIGITLAB_THREADS"] = str(worker_threads())
    write_lock = threading.Lock()

    def emit(message: dict) -> None:
        with write_lock:
            try:
                out.write(json.dumps(message) + "\n")
            except (BrokenPipeError, ValueError):
                pass  # the server has gone: a run still ends and is saved; closed stdin then ends this process

    import torch  # imported before "ready": a job's start then costs no import

    from . import live, store, train  # noqa: F401  (run_job's own imports, made here for the same reason)

    # the first optimiser a process makes imports torch's compiler stack (about 1 s): made before "ready" too
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    # its threads from the start, not only once fit begins: work before it (the live pictures' first look) would
    # otherwise run on every core, and the idle threads' spinning would be counted as the run's compute time
    torch.set_num_threads(worker_threads())

    runs: list[dict] = []
    cancel, pause, current, have_run = threading.Event(), threading.Event(), {"job": None}, threading.Condition()
    step = threading.Semaphore(0)  # single steps asked for while paused, one batch each
    cancelled: set[str] = set()  # a cancel can arrive before its run starts: remembered, then applied
    paused: set[str] = set()  # so can a pause

    def read_commands() -> None:
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError:
                continue
            if cmd.get("op") == "cancel":
                cancelled.add(cmd.get("job"))
                if cmd.get("job") == current["job"]:
                    cancel.set()
            elif cmd.get("op") in ("pause", "resume"):
                (paused.add if cmd["op"] == "pause" else paused.discard)(cmd.get("job"))
                if cmd.get("job") == current["job"]:
                    (pause.set if cmd["op"] == "pause" else pause.clear)()
                    while cmd["op"] == "resume" and step.acquire(blocking=False):
                        pass  # steps asked for and not taken are forgotten: the run goes on by itself
            elif cmd.get("op") == "step" and cmd.get("job") == current["job"] and pause.is_set():
                step.release()
            elif cmd.get("op") in ("run", "load"):
                with have_run:
                    runs.append(cmd)
                    have_run.notify()
            elif cmd.get("op") == "quit":
                break
        with have_run:  # stdin closed: the server has gone, so this process goes too
            runs.append({"op": "quit"})
            have_run.notify()

    threading.Thread(target=read_commands, daemon=True).start()
    emit({"type": "ready", "pid": os.getpid(), "threads": worker_threads()})
    data_cache: dict = {}
    to_analyse: list[dict] = []  # models whose robustness curves wait until no run does
    while True:
        with have_run:
            if not runs and to_analyse:
                have_run.wait(IDLE_BEFORE_ANALYSIS_S)  # the queue hands over its next run within milliseconds
            while not runs and not to_analyse:
                have_run.wait()
            cmd = runs.pop(0) if runs else None
        if cmd is None:
            done = to_analyse.pop(0)
            if not analyse_model(done["store"], done["model_id"], _data(done, data_cache), give_way=lambda: bool(runs)):
                to_analyse.insert(0, done)  # a run came in: it trains first, this analysis waits for the next lull
            continue
        if cmd.get("op") == "quit":
            return 0
        if cmd.get("op") == "load":  # a page expects a run soon: its dataset is read now, not after Train
            try:
                _data(cmd, data_cache)
            except Exception:  # the run that follows reports what is wrong with the data
                traceback.print_exc()
            continue
        cancel.clear()
        pause.clear()
        current["job"] = cmd["job"]
        if cmd["job"] in cancelled:
            cancel.set()
        if cmd["job"] in paused:
            pause.set()
        try:
            while step.acquire(blocking=False):
                pass
            result = run_job(cmd, emit, cancel, data_cache, complete=False, pause=pause, step=step)
            if result["model_id"]:
                to_analyse.append({**cmd, "model_id": result["model_id"]})
        except Exception as e:  # a bug, not a bad setting: report it, keep serving
            traceback.print_exc()
            result = {"type": "finished", "job": cmd["job"], "state": "failed",
                      "message": f"training failed unexpectedly: {e}", "error": f"training failed unexpectedly: {e}",
                      "model_id": "", "compute_seconds": 0.0, "wall_seconds": 0.0}
        current["job"] = None
        emit(result)


if __name__ == "__main__":
    sys.exit(main())
