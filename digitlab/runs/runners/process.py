"""The default runner: a long-lived training process (``python -m digitlab.runs.worker``, nice 10, every core but
one) per queue slot, spoken to in JSON lines (``spec.to_line``). Training there, not in the web process, means
the class's clicks never wait behind the training loop, and a crash or an out-of-memory kill fails only its run.

Process supervision lives here: started when a page asks (``warm``) or a run comes, ended when idle
(WORKER_IDLE_S) or grown (WORKER_GROWTH_MB), replaced when it dies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from ..runner import Runner
from ..spec import Command, Finished, JobSpec, Ready, from_line, to_line
from ..steering import Steering
from . import zygote

ROOT = Path(__file__).resolve().parents[3]
# Memory comes back: a training process keeps what its runs allocated outside Python (oneDNN's kernels for every
# batch shape it met, the allocator's arenas), about 3-6 MB a run with distinct settings. So it is ended when idle
# this long (the next run starts a fresh one, a few seconds), and replaced between runs once it has grown this much.
WORKER_IDLE_S = 120.0
WORKER_GROWTH_MB = 200.0


class ProcessRunner(Runner):
    start_s = 1.5  # warm 0.4 s, cold 3.2 s (bench_first_step.py); the model built
    worker_args: tuple[str, ...] = ()  # what the training process is told on its command line (RayRunner: --ray ...)

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.baseline_mb: float | None = None  # the process's memory after its first run
        self.has_run = False  # a run came through this runner: processes it starts from now on import all it needs
        self._write = threading.Lock()

    @property
    def idle_s(self) -> float:
        return WORKER_IDLE_S  # read each time: a test or benchmark may change it

    def _start(self, lean: bool = False) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")  # oneDNN keeps 1,024 compiled kernels by default
        argv = [*self.worker_args, *(["--lean"] if lean else [])]
        # forked from the zygote, which has imported torch: ready in milliseconds, not seconds (runners.zygote)
        self.proc = zygote.fork_worker(argv, env, str(ROOT)) or subprocess.Popen(
            [sys.executable, "-m", "digitlab.runs.worker", *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1, env=env, cwd=str(ROOT),
        )
        for line in self.proc.stdout:  # Ready, once torch is imported
            if isinstance(from_line(line), Ready):
                return
        raise OSError(f"exit status {self.proc.wait()} while starting")

    def send(self, command: Command) -> None:
        with self._write:
            try:
                self.proc.stdin.write(to_line(command) + "\n")
                self.proc.stdin.flush()
            except (OSError, ValueError, AttributeError):
                pass  # the process has gone; run() reports it

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def warm(self, data) -> None:
        if self.alive():
            return
        try:
            # Before the class's first run, without torch's compiler stack (70 MB; the first run imports it, 1 s):
            # a class browsing the training pages of a server just started holds less. Once runs have come, the
            # process started ahead (after one ended idle or grown) has it ready, and no later run waits for it.
            self._start(lean=not self.has_run)
        except OSError:
            return  # the next run starts it again, and its page says what stops it
        if data is not None and data.source.path:
            self.send(Command("load", spec=JobSpec("", {}, data.source.path, data.source.dataset, "")))

    def run(self, spec: JobSpec, data, steering: Steering, emit: Callable) -> None:
        self.has_run = True
        try:
            if not self.alive():
                self._start()
        except OSError as e:
            emit(self.lost(spec.job, f"it could not start: {e}"))
            return
        self.send(Command("run", spec.job, spec))
        unsubscribe = steering.subscribe(lambda op: self.send(Command(op, spec.job)))
        try:
            for line in self.proc.stdout:
                message = from_line(line)
                if getattr(message, "job", None) != spec.job:
                    continue
                emit(message)
                if isinstance(message, Finished):
                    return
            code = self.proc.wait()
            why = f"killed by signal {-code}" + (", perhaps out of memory" if code == -9 else "") if code < 0 \
                else f"exit status {code}"
            emit(self.lost(spec.job, why))
        finally:
            unsubscribe()

    def lost(self, job: str, why: str) -> Finished:
        """The Finished of a run whose process stopped (or never started) before it said how the run ended."""
        return lost(job, why)

    def rest(self) -> None:
        self.close()

    def between_runs(self) -> None:
        """End the process between runs once it has grown WORKER_GROWTH_MB since its first run finished."""
        rss = rss_mb(self.proc.pid) if self.alive() else None
        if rss is None:
            self.baseline_mb = None
        elif self.baseline_mb is None:
            self.baseline_mb = rss
        elif rss - self.baseline_mb > WORKER_GROWTH_MB:
            self.close()
            self.baseline_mb = None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.alive() else []

    def close(self) -> None:
        if self.alive():
            self.send(Command("quit"))
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def lost(job: str, why: str) -> Finished:
    return Finished.failed(job, f"the training process stopped ({why}); nothing else was lost, and other runs go on")


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux's /proc); None where that cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
