"""One training queue for several web processes: a small server that holds the class's ``runs.queue.JobQueue``.

With one web process (``streamlit run app.py``) the queue lives inside it, as always. With several
(``python -m digitlab.serve --web N``) each would otherwise keep a line of its own: two students on two
processes would train the same settings twice and the "one run waiting per student" rule would not hold. So
``serve`` starts this server first, and every web process finds it through ``DIGITLAB_QUEUE_ADDRESS``
(host:port on 127.0.0.1) and ``DIGITLAB_QUEUE_KEY`` (the shared secret that authenticates each connection):
``runs.shared.shared_queue`` then hands the pages a ``RemoteQueue``: the same ``TrainingQueue`` interface as the
``JobQueue`` it serves, method by method.

It is Python's own ``multiprocessing.managers`` server. Only plain values cross it -- a config as a dict, the
dataset's name, folder and fingerprint, snapshots -- never a dataset: the server loads the data itself, once,
and refuses a run whose data has a different fingerprint than the page's.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from multiprocessing.managers import BaseManager
from pathlib import Path

from . import settings
from .data import DataError, load_dataset
from .models import TrainConfig
from .runs.configure import local_queue
from .runs.estimate import OverLimit
from .runs.interface import Snapshot, TrainingQueue
from .store import ModelStore

ADDRESS_ENV, KEY_ENV = "DIGITLAB_QUEUE_ADDRESS", "DIGITLAB_QUEUE_KEY"
WARM_EVERY_S = 10.0  # how often a web process passes its pages' warm() on to the queue server


class QueueService:
    """The class's queue served to the web processes, method by method, in plain values (a config as a dict, the
    dataset by name, folder and fingerprint; snapshots and the like are frozen dataclasses)."""

    def __init__(self, store: ModelStore):
        self.queue = local_queue(store)
        self._data: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def data(self, dataset: str, data_dir: str, fingerprint: str):
        with self._lock:
            key = (dataset, data_dir)
            if key not in self._data:
                self._data[key] = load_dataset(dataset, data_dir, allow_download=False)
            data = self._data[key]
        if data.fingerprint() != fingerprint:
            raise DataError("the data on disk changed since the page loaded it; reload the page and train again")
        return data

    def submit(self, config: dict, dataset: str, data_dir: str, fingerprint: str, owner: str = "", **options):
        return self.queue.submit(TrainConfig.from_dict(config), self.data(dataset, data_dir, fingerprint), owner,
                                 **options)

    def warm(self, dataset: str, data_dir: str, fingerprint: str) -> None:
        try:
            self.queue.warm(self.data(dataset, data_dir, fingerprint))
        except DataError:
            pass  # only a head start: the run itself, if one comes, says what is wrong with the data

    def estimate(self, config: dict, n_images: int, loaded: bool = True) -> float:
        return self.queue.estimate(TrainConfig.from_dict(config), n_images, loaded)

    def over_limit(self, config: dict, n_images: int) -> OverLimit | None:
        return self.queue.over_limit(TrainConfig.from_dict(config), n_images)

    def get_limit(self) -> float | None:
        return self.queue.limit_s

    def set_limit(self, seconds: float | None) -> None:
        self.queue.limit_s = seconds

    def snapshot(self, job_id: str) -> Snapshot | None:
        return self.queue.snapshot(job_id)

    def jobs(self, owner: str | None = None) -> list[Snapshot]:
        return self.queue.jobs(owner)

    def active(self) -> list[Snapshot]:
        return self.queue.active()

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        return self.queue.cancel(job_id, owner)

    def stop(self, job_id: str, who: str) -> str:
        return self.queue.stop(job_id, who)

    def pause(self, job_id: str, who: str | None = None) -> bool:
        return self.queue.pause(job_id, who)

    def resume(self, job_id: str, who: str | None = None) -> bool:
        return self.queue.resume(job_id, who)

    def step(self, job_id: str, who: str | None = None) -> bool:
        return self.queue.step(job_id, who)

    def watch(self, job_id: str) -> dict | None:
        return self.queue.watch(job_id)


class _Manager(BaseManager):
    pass


class RemoteQueue(TrainingQueue):
    """The class's queue as seen from a web process: the same interface as JobQueue, over the queue server."""

    def __init__(self, address: str, key: str):
        self._address, self._key = address, key
        self._service = self._connect()
        self._warmed_at = float("-inf")

    def _connect(self):
        host, _, port = self._address.rpartition(":")
        manager = _Manager(address=(host, int(port)), authkey=self._key.encode())
        manager.connect()
        return manager.service()

    def _call(self, method: str, *args, **kwargs):
        """The service's ``method``; once more on a fresh connection if the connection broke (``serve`` restarts a
        queue server that stopped, on the same address)."""
        try:
            return getattr(self._service, method)(*args, **kwargs)
        except (EOFError, ConnectionError, BrokenPipeError):
            self._service = self._connect()
            return getattr(self._service, method)(*args, **kwargs)

    def submit(self, config: TrainConfig, data, owner: str = "", *, continue_from: str = "", fresh: bool = False,
               limited: bool = False, finetune: dict | None = None, kind: str = "train", place: str = "") -> Snapshot:
        return self._call("submit", config.to_dict(), data.source.dataset, data.source.path, data.fingerprint(), owner,
                                    continue_from=continue_from, fresh=fresh, limited=limited, finetune=finetune,
                                    kind=kind, place=place)

    def warm(self, data=None) -> None:
        """JobQueue.warm, asked at most every WARM_EVERY_S from this web process: one call serves many reruns."""
        if data is not None and time.monotonic() - self._warmed_at >= WARM_EVERY_S:
            self._warmed_at = time.monotonic()
            self._call("warm", data.source.dataset, data.source.path, data.fingerprint())

    def estimate(self, config: TrainConfig, n_images: int, loaded: bool = True) -> float:
        return self._call("estimate", config.to_dict(), n_images, loaded)

    def over_limit(self, config: TrainConfig, n_images: int) -> OverLimit | None:
        return self._call("over_limit", config.to_dict(), n_images)

    @property
    def limit_s(self) -> float | None:
        return self._call("get_limit")

    @limit_s.setter
    def limit_s(self, seconds: float | None) -> None:
        self._call("set_limit", seconds)

    def snapshot(self, job_id: str) -> Snapshot | None:
        return self._call("snapshot", job_id)

    def jobs(self, owner: str | None = None) -> list[Snapshot]:
        return self._call("jobs", owner)

    def active(self) -> list[Snapshot]:
        return self._call("active")

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        return self._call("cancel", job_id, owner)

    def stop(self, job_id: str, who: str) -> str:
        return self._call("stop", job_id, who)

    def pause(self, job_id: str, who: str | None = None) -> bool:
        return self._call("pause", job_id, who)

    def resume(self, job_id: str, who: str | None = None) -> bool:
        return self._call("resume", job_id, who)

    def step(self, job_id: str, who: str | None = None) -> bool:
        return self._call("step", job_id, who)

    def watch(self, job_id: str) -> dict | None:
        return self._call("watch", job_id)


def start(env: dict, log_path: Path, timeout: float = 60) -> subprocess.Popen:
    """Start ``python -m digitlab.queue_server`` with ``env`` (which names its address and key), its output in
    ``log_path``; return once it answers. A server that does not start raises OSError with the end of its log."""
    root = Path(__file__).resolve().parent.parent
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "digitlab.queue_server"], cwd=root, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            RemoteQueue(env[ADDRESS_ENV], env[KEY_ENV])
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise OSError(f"the queue server did not start: {log_path.read_text()[-800:]}") from None
            time.sleep(0.2)


def serve_forever(address: str, key: str) -> None:
    host, _, port = address.rpartition(":")
    settings.put(ADDRESS_ENV, None)  # this process holds the queue itself
    service = QueueService(ModelStore())
    _Manager.register("service", callable=lambda: service)
    _Manager(address=(host, int(port)), authkey=key.encode()).get_server().serve_forever()


_Manager.register("service")  # the client's side of the registration

if __name__ == "__main__":
    address, key = settings.get(ADDRESS_ENV), settings.get(KEY_ENV)
    if not address or not key:
        sys.exit(f"set {ADDRESS_ENV} (127.0.0.1:port) and {KEY_ENV} (a shared secret)")
    serve_forever(address, key)
