"""Training on a Ray cluster (``ray`` from PyPI), for a class that has outgrown one machine.

One run is one Ray task: it receives the job's spec and the dataset through Ray's object store (no folder shared
between the web server and the Ray nodes), runs the same ``execute.run_job`` the training process runs, streams
the same messages back as the task's streaming results, and sends the model's files as bytes, which the web side
writes into its own store before the run's ``Finished``; the model's analysis follows. The queue's steering
reaches the task through a small actor of flags (``RunFlags``), where it sets the task's own ``Steering``; a lost
worker or node ends the run with a message.

This module is imported only by a Ray training process (``runners.ray_runner``): Ray's driver lives there, never in
the web or queue server's process, because Ray's client ends the process it runs in when its cluster has been gone
for 60 s.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ray

from ... import settings
from ...store import atomic_write
from ..spec import Finished, JobSpec
from ..steering import Steering

POLL_S = 0.5  # how often a running task asks whether it was stopped or paused


@dataclass(frozen=True)
class Files:
    """Files of the store the task wrote (by their place in it), as bytes."""

    files: dict


@ray.remote
class RunFlags:
    """What the web side wants of a running task -- "run", "pause" or "stop", and how many single steps it has asked
    for while paused -- read by the task every POLL_S."""

    def __init__(self):
        self.wanted, self.steps = "run", 0

    def set(self, wanted: str) -> None:
        if self.wanted != "stop":  # a stop is final
            self.wanted = wanted

    def step(self) -> None:
        self.steps += 1

    def get(self) -> tuple[str, int]:
        return self.wanted, self.steps


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``host:port`` or ``ray://host:10001``) once per process."""
    if not ray.is_initialized():
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)  # the server does not print the tasks' output


_data_refs: dict[str, ray.ObjectRef] = {}
_data_lock = threading.Lock()


def data_ref(data) -> ray.ObjectRef:
    """The dataset in Ray's object store, put there once per dataset and process, not once per run (about 55 MB)."""
    key = data.fingerprint()
    with _data_lock:
        if key not in _data_refs:
            _data_refs[key] = ray.put(data)
        return _data_refs[key]


def model_files(store_root: str | Path, model_id: str) -> dict[str, bytes]:
    """A stored model's weights and record, to send to a task that continues it."""
    root = Path(store_root)
    return {f"{model_id}{suffix}": (root / f"{model_id}{suffix}").read_bytes() for suffix in (".safetensors", ".json")}


def _files_of(store: str, model_id: str, sent: set) -> Files:
    found = {str(f.relative_to(store)): f.read_bytes() for f in Path(store).rglob("*")
             if f.is_file() and f.name.startswith(model_id) and str(f.relative_to(store)) not in sent}
    sent.update(found)
    return Files(found)


@ray.remote(num_returns="streaming", max_retries=0)
def train_task(spec: JobSpec, data, parent_files: dict[str, bytes], flags: RunFlags) -> Iterator:
    """Run one job on whichever node Ray picked; yield its messages, its model's files, ``Finished``, then the
    files of the model's analysis."""
    from ..execute import analyse_model, run_job

    # as many threads as the CPUs Ray gave this task: two runs of two threads on two cores spin against each other
    settings.put("DIGITLAB_THREADS", max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    with tempfile.TemporaryDirectory(prefix="digitlab-ray-") as store:
        for name, payload in parent_files.items():  # the model a continued run starts from
            Path(store, name).write_bytes(payload)
        spec = spec.with_store(store)
        messages: queue.Queue = queue.Queue()
        steering, done, outcome = Steering(), threading.Event(), {}
        steps_seen = 0

        def run() -> None:
            try:
                outcome["finished"] = run_job(spec, data, steering, messages.put)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        while not (done.is_set() and messages.empty()):
            try:
                yield messages.get(timeout=POLL_S)
            except queue.Empty:
                pass
            wanted, steps = ray.get(flags.get.remote())
            steering.apply({"stop": "cancel", "pause": "pause"}.get(wanted, "resume"))
            for _ in range(steps - steps_seen if wanted == "pause" else 0):  # single steps asked for since the last look
                steering.apply("step")
            steps_seen = steps
        finished, sent = outcome["finished"], set()
        if finished.model_id:  # its weights and record, by their place in the store
            yield _files_of(store, finished.model_id, sent)
        yield finished
        if finished.model_id:  # after "done": its analysis
            analyse_model(store, finished.model_id, data, complete=settings.get("DIGITLAB_ANALYSE_AHEAD"))
            yield _files_of(store, finished.model_id, sent)


def run_in_worker(address: str, spec: JobSpec, data, steering: Steering, emit: Callable) -> Finished:
    """One run in a Ray training process (``runners.ray_runner``): the cluster joined once per process, the model a
    run continues sent along, the run carried out as a task; its messages to ``emit``, the last its Finished."""
    try:
        connect(address)
    except Exception as e:  # noqa: BLE001 - whatever Ray says, the run says it in a line
        finished = Finished.failed(spec.job, f"the Ray cluster at {address} could not be joined ({type(e).__name__}); "
                                   "nothing was trained. Ask the teacher: a cluster with token authentication "
                                   "refuses a server whose RAY_AUTH_TOKEN is not its own", str(e)[:500])
        emit(finished)
        return finished
    try:
        parent = model_files(spec.store, spec.continue_from) if spec.continue_from else {}
    except OSError as e:
        finished = Finished.failed(spec.job, f"the model this run continues could not be read ({e}); nothing was trained")
        emit(finished)
        return finished
    return run_on_ray(spec, data, emit, steering, parent)


def run_on_ray(spec: JobSpec, data, emit: Callable, steering: Steering,
               parent_files: dict[str, bytes] | None = None) -> Finished:
    """Run ``spec`` as a Ray task, passing its messages to ``emit``, the last exactly one ``Finished`` (emitted once
    the model's files are written into ``spec.store``; its analysis's files are written after, before this
    returns it). A task lost with its worker or node fails the run. The steering reaches the task within POLL_S."""
    flags = RunFlags.remote()
    stream = train_task.remote(spec, data_ref(data), parent_files or {}, flags)
    told = {"wanted": "run"}

    def tell(op: str) -> None:  # the queue's wish, passed on as it changes
        if op == "step":
            flags.step.remote()
            return
        wanted = {"cancel": "stop", "pause": "pause"}.get(op, "run")
        if wanted != told["wanted"]:
            flags.set.remote(wanted)
            told["wanted"] = wanted

    unsubscribe = steering.subscribe(tell)
    finished = None
    try:
        for ref in stream:
            message = ray.get(ref)
            if isinstance(message, Files):
                _write_files(Path(spec.store), message.files)
            elif isinstance(message, Finished):
                finished = message
                emit(finished)  # "done" at once; the analysis's files come after
                emit = _ignore
            else:
                emit(message)
    except (ray.exceptions.RayError, ConnectionError) as e:
        if finished is None:
            finished = Finished.failed(spec.job, f"the Ray worker running this job was lost ({type(e).__name__}); "
                                       "nothing stored was lost: submit it again", str(e)[:500])
            emit(finished)
    finally:
        unsubscribe()
    if finished is None:
        finished = Finished.failed(spec.job, "the Ray task ended without saying how")
        emit(finished)
    return finished


def _ignore(_message) -> None:
    pass


def _write_files(root: Path, files: dict[str, bytes]) -> None:
    """Weights and analysis first, the record last: the store lists a model only once its record exists."""
    for name in sorted(files, key=lambda n: n.endswith(".json")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(root / name, files[name])
