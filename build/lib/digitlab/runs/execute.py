"""One run, whichever runner carries it out: build (or load) the model, fit it, save it, and say so -- ``Finished``
follows the last epoch at once; a model's analysis is the runner's to make afterwards (``analyse_model``), so it
never holds a run's "done".

Times in the records are the process's own compute time, so a run reads the same however busy the machine is:
CPU seconds divided by the training threads. An epoch's images/s is timed over its training steps (first to
last), its seconds count everything (the test pass and start-up too).
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Callable

from .. import settings
from .spec import CANCELLED, DONE, EpochDone, Finished, JobSpec, Progress, Started
from .steering import BetweenBatches, Steering

PROGRESS_EVERY_S = 0.25  # how often the live panels' numbers move: often enough to look alive, rarely enough to cost nothing


def worker_threads() -> int:
    """Intra-op threads for training: every core but one, which stays free for the web server."""
    wanted = settings.get("DIGITLAB_WORKER_THREADS")
    return wanted if wanted > 0 else max(1, (os.cpu_count() or 1) - 1)


def cpu_seconds() -> float:
    """CPU time this process has used, all its threads together."""
    return time.process_time()


def run_job(spec: JobSpec, data, steering: Steering, emit: Callable, publish: bool = True) -> Finished:
    """Train (or fine-tune) and save one job, emitting its messages; returns its ``Finished`` (never raises for a
    run's own failure). While paused the run waits between batches (a cancel still ends it), each step lets one
    batch through; with ``publish``, the live pictures go out with the progress."""
    import torch

    from ..live import Publisher
    from ..models import TrainConfig, build_model
    from ..store import ModelStore, StoreError
    from ..train import TrainingError, fit, task_size

    job, cancel = spec.job, steering.cancelled
    config = TrainConfig.from_dict(spec.config)
    store = ModelStore(spec.store)
    wall_start, cpu_start = time.perf_counter(), cpu_seconds()

    def compute_since(cpu: float) -> float:  # fit sets the thread count; CPU time is shared out over them
        return (cpu_seconds() - cpu) / max(1, torch.get_num_threads())

    def finished(state: str, message: str, error: str = "", model_id: str = "", result: dict | None = None) -> Finished:
        return Finished(job, state, message, error, model_id, compute_since(cpu_start),
                        time.perf_counter() - wall_start, result)

    if data.fingerprint() != spec.fingerprint:
        return Finished.failed(job, "the data on disk changed since the page loaded it; reload the page and train again")

    if spec.kind == "lr_find":  # the learning-rate finder's sweep: a hundred batches, nothing stored
        from ..lr_find import lr_find
        from ..train import ConfigError

        try:
            found = lr_find(config, data)
        except ConfigError as e:
            return Finished.failed(job, f"cannot sweep with these settings: {e}")
        return finished(DONE, f"swept the learning rate over {len(found.lrs)} batches",
                        result=dataclasses.asdict(found))

    if spec.kind == "finetune":  # the class's drawings: fine-tune the stored model on them (finetune.run_job)
        from .. import finetune

        if cancel.is_set():
            return finished(CANCELLED, "stopped before it started: nothing to keep")
        try:
            info, result = finetune.run_job(store, spec.continue_from, spec.finetune, data)
        except (ValueError, StoreError, OSError) as e:
            return Finished.failed(job, f"fine-tuning did not finish: {e}", str(e))
        return finished(DONE, f"fine-tuned: {result['after']['class drawings']:.1%} of the kept-out drawings right",
                        model_id=info.id, result=result)

    history: list[dict] = []
    base_seconds = 0.0
    try:
        if spec.continue_from:
            model, base = store.load(spec.continue_from)
            history, base_seconds = list(base.history), base.train_seconds
            emit(Started(job, history))  # the epochs it continues from
        else:
            model = build_model(config)
        n_images = task_size(data, config)
        start_epoch, earlier = len(history), len(history)
        last_sent, points, steps_s = 0.0, [], 0.0
        timed_epoch, first_batch, first_batch_cpu = 0, 0, cpu_seconds()
        between = BetweenBatches(model, job, emit, steering,
                                 Publisher(model, config, data, emit, job) if publish else None)
        for ev in fit(model, config, data, cancel=cancel, start_epoch=start_epoch, between_batches=between):
            if ev.kind == "batch":
                if ev.epoch != timed_epoch:  # the epoch's speed is timed from its first report to its last step
                    timed_epoch, first_batch, first_batch_cpu = ev.epoch, ev.batch, cpu_seconds()
                elif ev.batch == ev.n_batches:
                    steps_s = compute_since(first_batch_cpu)
                points.append((ev.epoch - 1 + ev.batch / ev.n_batches, ev.loss, ev.accuracy))
                now = time.perf_counter()
                if now - last_sent >= PROGRESS_EVERY_S:
                    emit(Progress(job, ev, points))
                    last_sent, points = now, []
            elif ev.kind == "epoch":
                timed = n_images * (ev.n_batches - first_batch) / ev.n_batches
                record = ev.record() | {
                    "images_per_s": timed / steps_s if timed > 0 and steps_s > 0 else ev.images_per_s,
                    "seconds": base_seconds + compute_since(cpu_start),
                    "wall_seconds": time.perf_counter() - wall_start,
                }
                history.append(record)
                emit(Progress(job, ev, points))
                emit(EpochDone(job, record))
                points = []
    except TrainingError as e:
        return Finished.failed(job, str(e))
    except StoreError as e:
        return Finished.failed(job, f"cannot continue: {e}")

    new_epochs = len(history) - earlier
    if cancel.is_set() and new_epochs == 0:
        return finished(CANCELLED, "stopped before the first epoch finished: nothing to keep")
    if cancel.is_set() or spec.continue_from:
        config = config.with_(epochs=len(history))
    last = history[-1]
    compute = compute_since(cpu_start)
    try:
        info = store.save(
            model, config,
            metrics={k: last[k] for k in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "images_per_s")},
            history=history, fingerprint=data.fingerprint(), train_seconds=base_seconds + compute,
            extra={"data_source": data.source.kind, "continued_from": spec.continue_from or None,
                   "wall_seconds": round(time.perf_counter() - wall_start, 3), "threads": torch.get_num_threads()},
        )
    except OSError as e:
        return Finished.failed(job, f"trained, but could not save the model: {e}")
    if cancel.is_set():
        return finished(CANCELLED, f"stopped after {new_epochs} epoch(s); saved as {info.id}", model_id=info.id)
    return finished(DONE, f"done: test accuracy {last['test_accuracy']:.2%}", model_id=info.id)


def run_and_report(spec: JobSpec, data, steering: Steering, emit: Callable, publish: bool = True) -> Finished:
    """``run_job`` with its ``Finished`` emitted; a bug (not a bad setting) fails the run with what it was."""
    try:
        result = run_job(spec, data, steering, emit, publish)
    except Exception as e:  # a bug, not a bad setting: report it, keep serving
        traceback.print_exc()
        result = Finished.failed(spec.job, f"training failed unexpectedly: {e}")
    emit(result)
    return result


class GiveWay(Exception):
    """Raised inside a model's deferred analysis when a run arrives: the run goes first."""


def analyse_model(store_root: str, model_id: str, data, model=None, complete: bool = True,
                  give_way: Callable[[], bool] | None = None) -> bool:
    """What Evaluate and Features need for this model (with ``complete``, all of it), computed once now.

    With ``give_way``, checked before each robustness level, a run that arrives stops the analysis (False is
    returned: nothing half-done is kept, and it is done again later)."""
    from .. import analysis
    from ..store import ModelStore

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


def load_data(spec: JobSpec, cache: dict):
    """The dataset a spec names (MNIST or Fashion-MNIST), loaded once per process from the folder the page's came
    from; one of each is kept, so classes switching datasets do not reload."""
    from ..data import load_dataset

    if spec.data_dir not in cache:
        for old in [k for k, v in cache.items() if v.source.dataset == spec.dataset]:
            del cache[old]
        cache[spec.data_dir] = load_dataset(spec.dataset, spec.data_dir, allow_download=False)
    return cache[spec.data_dir]
