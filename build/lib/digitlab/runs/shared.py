"""The server's one queue per model store, kept in this module, outside any cache a client's message can clear.

With DIGITLAB_QUEUE_ADDRESS set (``python -m digitlab.serve --web N``), it is the one the class's queue server
holds for every web process, seen through a ``queue_server.RemoteQueue``; otherwise a ``JobQueue`` made here from
the settings (``configure.local_queue``)."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from .. import settings
from ..store import ModelStore
from .interface import TrainingQueue

_shared: dict[str, TrainingQueue] = {}
_shared_lock = threading.Lock()


@functools.lru_cache(maxsize=16)
def _queue_key(root: str, cwd: str) -> str:
    """The store folder as one absolute path (the pages ask for the queue on every rerun: resolved once)."""
    return str((Path(cwd) / root).resolve())


def shared_queue(store: ModelStore, max_running: int | None = None) -> TrainingQueue:
    """The server's one queue for this model store."""
    key = _queue_key(str(store.root), "" if store.root.is_absolute() else os.getcwd())
    with _shared_lock:
        if getattr(_shared.get(key), "closed", False):  # a closed queue is never handed out again
            del _shared[key]
        if key not in _shared:
            if settings.is_set("DIGITLAB_QUEUE_ADDRESS"):
                from ..queue_server import RemoteQueue

                _shared[key] = RemoteQueue(settings.get("DIGITLAB_QUEUE_ADDRESS"), settings.get("DIGITLAB_QUEUE_KEY"))
            else:
                from .configure import local_queue

                _shared[key] = local_queue(store, max_running)
        return _shared[key]

