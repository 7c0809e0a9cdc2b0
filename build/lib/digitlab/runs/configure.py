"""The class's queue as the settings ask for it: how many runs at once (DIGITLAB_MAX_TRAINING), the class's limit
on one run (DIGITLAB_RUN_LIMIT_S, 0: none), and where runs train (DIGITLAB_RAY_ADDRESS: a Ray cluster; unset: a
local training process)."""

from __future__ import annotations

import functools

from .. import settings
from ..store import ModelStore
from .queue import JobQueue


def local_queue(store: ModelStore, max_running: int | None = None) -> JobQueue:
    ray_address = settings.get("DIGITLAB_RAY_ADDRESS")
    n = max_running if max_running is not None else settings.get("DIGITLAB_MAX_TRAINING")
    n = n if n > 0 else 2 if ray_address else 1  # a cluster runs several at once
    limit = settings.get("DIGITLAB_RUN_LIMIT_S")
    runner = None
    if ray_address:
        from .runners.ray_runner import RayRunner

        runner = functools.partial(RayRunner, ray_address)
    return JobQueue(store, max_running=n, limit_s=float(limit) if limit > 0 else None, runner=runner)
