"""Training on a Ray cluster (``ray`` from PyPI), for a class that has outgrown one machine.

One run is one Ray task: it receives the job's spec and the dataset through Ray's object store (no folder
shared between the web server and the Ray nodes), runs the same ``worker.run_job`` the embedded worker runs,
streams the same messages back (``start``, ``progress``, ``epoch``) as the task's streaming results, and ends
with the trained model's files as bytes, which the web side writes into its own model store. A stop from the
page, a pause, a resume or a single step reaches the task through a small actor of flags; a lost worker or node ends the run with
a message. ``jobs.JobQueue`` uses it when ``DIGITLAB_RAY_ADDRESS`` is set: a ``_RaySlot`` instead of a worker process.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import ray

from .store import atomic_write

POLL_S = 0.5  # how often a running task asks whether it was stopped or paused


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


@ray.remote(num_returns="streaming", max_retries=0)
def train_task(spec: dict, data, parent_files: dict[str, bytes], flags: RunFlags) -> Iterator[dict]:
    """Run one job on whichever node Ray picked; yield its messages, then its files, then ``finished``."""
    from .worker import run_job

    # as many threads as the CPUs Ray gave this task: two runs of two threads on two cores spin against each other
    os.environ["DIGITLAB_THREADS"] = str(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    with tempfile.TemporaryDirectory(prefix="digitlab-ray-") as store:
        for name, payload in parent_files.items():  # the model a continued run starts from
            Path(store, name).write_bytes(payload)
        spec = {**spec, "store": store}
        messages: queue.Queue = queue.Queue()
        cancel, pause, done, outcome = threading.Event(), threading.Event(), threading.Event(), {}
        step, steps_seen = threading.Semaphore(0), 0

        def run() -> None:
            try:
                outcome["finished"] = run_job(spec, messages.put, cancel, {spec["data_dir"]: data}, complete=True,
                                              pause=pause, step=step)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        while not (done.is_set() and messages.empty()):
            try:
                yield messages.get(timeout=POLL_S)
            except queue.Empty:
                pass
            wanted, steps = ray.get(flags.get.remote())
            if wanted == "stop":
                cancel.set()
            (pause.set if wanted == "pause" else pause.clear)()
            for _ in range(steps - steps_seen if wanted == "pause" else 0):  # single steps asked for since the last look
                step.release()
            steps_seen = steps
        finished = outcome["finished"]
        if finished.get("model_id"):  # its weights, record and analysis, by their place in the store
            yield {"type": "files", "job": spec["job"],
                   "files": {str(f.relative_to(store)): f.read_bytes() for f in Path(store).rglob("*")
                             if f.is_file() and f.name.startswith(finished["model_id"])}}
        yield finished


def run_on_ray(spec: dict, data, emit: Callable[[dict], None], cancel: threading.Event,
               store_root: str | Path, parent_files: dict[str, bytes] | None = None,
               pause: threading.Event | None = None, step: threading.Semaphore | None = None) -> dict:
    """Run ``spec`` as a Ray task, passing its messages to ``emit``; write the model it made into
    ``store_root``; return the ``finished`` message. A task lost with its worker or node fails the run.
    ``cancel``, ``pause`` and each release of ``step``, set by the queue, reach the task within about POLL_S."""
    flags = RunFlags.remote()
    stream = train_task.remote(spec, data_ref(data), parent_files or {}, flags)
    finished, told = None, "run"

    def tell() -> None:  # the queue's wish, passed on only when it changes
        nonlocal told
        wanted = "stop" if cancel.is_set() else "pause" if pause is not None and pause.is_set() else "run"
        if wanted != told:
            flags.set.remote(wanted)
            told = wanted
        while step is not None and step.acquire(blocking=False):
            flags.step.remote()

    watcher_done = threading.Event()

    def watch() -> None:  # a paused task sends nothing: the wish must travel without waiting for a message
        while not watcher_done.wait(POLL_S / 2):
            tell()

    threading.Thread(target=watch, daemon=True).start()
    try:
        for ref in stream:
            message = ray.get(ref)
            if message["type"] == "files":
                _write_files(Path(store_root), message["files"])
            elif message["type"] == "finished":
                finished = message
            else:
                emit(message)
    except (ray.exceptions.RayError, ConnectionError) as e:
        reason = type(e).__name__
        watcher_done.set()
        return {"type": "finished", "job": spec["job"], "state": "failed", "model_id": "",
                "message": f"the Ray worker running this job was lost ({reason}); nothing stored was lost: submit it again",
                "error": str(e)[:500], "compute_seconds": 0.0, "wall_seconds": 0.0}
    watcher_done.set()
    return finished


def _write_files(root: Path, files: dict[str, bytes]) -> None:
    """Weights and analysis first, the record last: the store lists a model only once its record exists."""
    for name in sorted(files, key=lambda n: n.endswith(".json")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(root / name, files[name])
