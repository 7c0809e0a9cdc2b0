"""Training on a Ray cluster: the queue's slots use a ``RayRunner`` when DIGITLAB_RAY_ADDRESS is set.

A RayRunner is a training process (``runners.process``) started with ``--ray ADDRESS``: that process joins the
cluster and hands each run to it as a task (``runners.ray_task``), passing the run's messages and steering on as
the local one does. Ray's driver lives in that process and nowhere else: Ray's client ends the process it runs in
once its cluster has been gone for 60 s, and it is the training process that goes then, not the class's server.

Before each run the cluster's address is given REACH_S to accept a connection, outside the queue's lock: a cluster
that is not answering (down, or a wrong address) either trains the run in a local training process with a notice
on its page, or fails it with a message, as DIGITLAB_RAY_FALLBACK says; the next run asks again, so runs go back to
the cluster once it is back. A run lost with its cluster says so.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ... import settings
from ..spec import FAILED, Finished, JobSpec, Notice
from ..steering import Steering
from .process import ProcessRunner

REACH_S = 3.0  # how long the cluster's address gets to accept a connection before a run is told it is not answering


def not_answering(address: str) -> str:
    """Why the cluster at ``address`` cannot be reached ("" when its port accepts a connection within REACH_S, or
    for "auto"): ray.init itself retries for minutes before it gives up."""
    if address == "auto":
        return ""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=REACH_S).close()
        return ""
    except (OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"


class RayRunner(ProcessRunner):
    """One run at a time as a task on the Ray cluster at ``address``, through a training process of its own."""

    start_s = 3.0  # a task placed, the dataset fetched from the object store, the model's files sent back

    def __init__(self, address: str):
        super().__init__()
        self.address = address
        self.worker_args = ("--ray", address)
        self.here: ProcessRunner | None = None  # a local training process, while the cluster is not answering

    def run(self, spec: JobSpec, data, steering: Steering, emit: Callable) -> None:
        if why := not_answering(self.address):
            if settings.get("DIGITLAB_RAY_FALLBACK") == "refuse":
                emit(Finished.failed(spec.job, f"the Ray cluster at {self.address} is not answering; nothing was "
                                     "trained. Ask the teacher: the cluster may be down, or DIGITLAB_RAY_ADDRESS "
                                     "wrong", why))
                return
            emit(Notice(spec.job, f"the Ray cluster at {self.address} is not answering; training here instead"))
            self.here = self.here or ProcessRunner()
            self.here.run(spec, data, steering, emit)
            return
        if self.here is not None:  # the cluster is back: the local process is given back
            self.here.close()
            self.here = None

        gone = []

        def said(message) -> None:  # a run that failed because its cluster went away says so
            if isinstance(message, Finished) and message.state == FAILED and not_answering(self.address):
                gone.append(True)
                message = Finished.failed(spec.job, f"the Ray cluster at {self.address} went away during this run; "
                                          "nothing stored was lost. Train again: the run trains here, or on the "
                                          "cluster once it is back", message.error)
            emit(message)

        super().run(spec, data, steering, said)
        if gone and self.alive():  # its driver's cluster is gone: the next run starts a fresh process
            self.proc.kill()
            self.proc.wait()

    def lost(self, job: str, why: str) -> Finished:
        return Finished.failed(job, f"the Ray training process stopped ({why}); nothing stored was lost, and other "
                               "runs go on", why)

    def pids(self) -> list[int]:
        return super().pids() + (self.here.pids() if self.here else [])

    def close(self) -> None:  # rest() too: both processes are given back
        super().close()
        if self.here is not None:
            self.here.close()
            self.here = None
