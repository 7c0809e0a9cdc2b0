"""Training processes started in milliseconds: a zygote that imports torch once and forks each one from itself.

A training process begins by importing torch and the training code: about 4 CPU-seconds and 3 s of waiting, paid
again by every process (one ended idle or grown is replaced by a fresh one). The zygote
(``python -m digitlab.runs.runners.zygote FD``), started by a server process when it needs its first training
process, makes those imports once; each training process is then a fork of it (``os.fork``), which shares the
imported pages and is ready at once. Standard library only: a Unix socket pair carries the requests, with the new
process's stdin and stdout as file descriptors (``socket.send_fds``).

The zygote stays single-threaded and never runs a torch computation (torch's thread pools start at the first), so a
fork copies no lock held by another thread. Where there is no fork (Windows) or the zygote cannot start, a
training process is started as its own ``python -m digitlab.runs.worker`` (``runners.process``).

Parent to zygote: one datagram per training process, ``{"argv", "env", "cwd"}`` with two descriptors attached
(its stdin's read end, its stdout's write end). Zygote to parent: ``{"ready": pid}`` once, ``{"pid": pid}`` for
each fork, ``{"exit": pid, "code": code}`` when one ends (a negative code: the signal that ended it).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

START_TIMEOUT_S = 300.0  # a loaded machine can take minutes to import torch
MESSAGE_BYTES = 1 << 20  # a request carries the environment: a few kilobytes
IDLE_S = 120.0  # with no training process of its own and no request this long, the zygote ends: its memory comes back
WORKER_NAME = "digitlab-worker"  # a forked training process's name in ``top`` (its command line is its zygote's)


class Forked:
    """A training process forked by the zygote, with the part of ``subprocess.Popen`` that ``runners.process``
    uses: pid, stdin, stdout, poll, wait, kill."""

    def __init__(self, zygote: Zygote, pid: int, stdin, stdout):
        self.zygote, self.pid, self.stdin, self.stdout = zygote, pid, stdin, stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.wait_exit(self.pid, timeout)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass


class Zygote:
    """The parent's side: starts the zygote, asks it for forks, and hears when they end."""

    def __init__(self, env: dict, cwd: str):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "digitlab.runs.runners.zygote", str(theirs.fileno()), str(IDLE_S)],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env, cwd=cwd,
            )
        finally:
            theirs.close()
        self.sock = ours
        self._ask = threading.Lock()  # one fork asked for at a time: its answer is the next "pid" message
        self._cond = threading.Condition()
        self._forked: list[int] = []
        self._codes: dict[int, int] = {}
        self._gone = False
        ready = self._receive(START_TIMEOUT_S)
        if not ready or "ready" not in ready:
            self.close()
            raise OSError(f"the zygote stopped while importing (exit status {self.proc.wait()})")
        threading.Thread(target=self._listen, daemon=True, name="zygote").start()

    def _receive(self, timeout: float | None = None) -> dict | None:
        if timeout is not None and not select.select([self.sock], [], [], timeout)[0]:
            return None
        try:
            data = self.sock.recv(MESSAGE_BYTES)
        except OSError:
            return None
        return json.loads(data) if data else None

    def _listen(self) -> None:
        while (message := self._receive()) is not None:
            with self._cond:
                if "pid" in message:
                    self._codes.pop(message["pid"], None)  # a pid used before: its old ending is not this process's
                    self._forked.append(message["pid"])
                elif "exit" in message:
                    self._codes[message["exit"]] = message["code"]
                self._cond.notify_all()
        with self._cond:
            self._gone = True
            self._cond.notify_all()
        try:
            self.proc.wait(timeout=30)  # it ended (idle, or killed): reaped, not left a zombie
        except subprocess.TimeoutExpired:
            pass

    def alive(self) -> bool:
        return not self._gone and self.proc.poll() is None

    def fork(self, argv: list[str], env: dict, cwd: str) -> Forked:
        """A new training process running ``worker.main(argv)`` with this environment and working directory."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            with self._ask:
                request = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
                socket.send_fds(self.sock, [request], [stdin_r, stdout_w])
                with self._cond:
                    if not self._cond.wait_for(lambda: self._forked or self._gone, START_TIMEOUT_S) or not self._forked:
                        raise OSError("the zygote did not fork a training process")
                    pid = self._forked.pop(0)
        except BaseException:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        return Forked(self, pid, os.fdopen(stdin_w, "w", buffering=1), os.fdopen(stdout_r))

    def exit_code(self, pid: int) -> int | None:
        with self._cond:
            if pid in self._codes:
                return self._codes[pid]
            if self._gone and not _exists(pid):
                return -9  # ended after its zygote did (killed with it): nobody is left to say how
            return None

    def wait_exit(self, pid: int, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.wait_for(lambda: pid in self._codes or self._gone, timeout)
        while (code := self.exit_code(pid)) is None:  # the zygote went first: nobody is left to say when it ends
            if not self._gone or (deadline is not None and time.monotonic() >= deadline):
                raise subprocess.TimeoutExpired(f"training process {pid}", timeout)
            time.sleep(0.05)
        return code

    def close(self) -> None:
        self.sock.close()  # the zygote ends when its socket closes; the processes it forked end with their stdin
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def is_training_process(pid: int) -> bool:
    """Whether ``pid`` is a training process (Linux /proc): forked by a zygote (named WORKER_NAME) or started as
    ``python -m digitlab.runs.worker``; a zygote itself is not one. False for one that has ended."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == WORKER_NAME or \
            b"digitlab.runs.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _exists(pid: int) -> bool:
    """Whether the process still runs. One whose zygote died is an orphan, reaped by the machine's first process,
    which in a container may never do it: a zombie (state Z in /proc) has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:][:1] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        pass  # no /proc (macOS): ask the kernel
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


_lock = threading.Lock()
_zygote: Zygote | None = None


def fork_worker(argv: list[str], env: dict, cwd: str) -> Forked | None:
    """A training process forked from this process's zygote (started when there is none: the first call, or after
    it ended idle), or None where forking is not available here: the caller then starts the process on its own."""
    global _zygote
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return None
    for _ in range(2):  # a zygote that ended idle just as it was asked: a fresh one is asked once more
        with _lock:
            if _zygote is None or not _zygote.alive():
                try:
                    _zygote = Zygote(env, cwd)
                except OSError:
                    traceback.print_exc()
                    return None
            zygote = _zygote
        try:
            return zygote.fork(argv, env, cwd)
        except OSError:
            if zygote.alive():
                raise
    return None


def stop() -> None:
    """End this process's zygote (tests; a server ends it by ending)."""
    global _zygote
    with _lock:
        if _zygote is not None:
            _zygote.close()
            _zygote = None


# ------------------------------------------------------------------ the zygote itself


def _name_process(name: str) -> None:
    """The name ``top`` and ``ps -o comm`` show (Linux): a fork would otherwise show as its zygote."""
    try:
        Path("/proc/self/comm").write_text(name)
    except OSError:
        pass


def _serve(sock: socket.socket, idle_s: float) -> int:
    _name_process("digitlab-zygote")
    gc.disable()  # Python's advice for a process that forks without exec: no collection leaves holes in the pages
    from ...memory import without_gpu_code_pages, without_gpu_compiler

    without_gpu_compiler()  # as in every training process: torch reads Triton as not installed
    import torch  # noqa: F401

    from ... import live, store, train  # noqa: F401  (what a run imports, imported once for every fork)
    from .. import worker

    without_gpu_code_pages()  # before any fork: no training process holds the CUDA code it never runs
    gc.freeze()  # Python's advice for fork without exec (with gc.disable above, gc.enable in each fork): the objects
    # made so far are left out of every collection, so a training process's collector does not write into (and copy)
    # the pages it shares with the zygote

    # torch's compiler stack (70 MB, imported by the first optimiser) is left to the training processes that want
    # it (``worker --lean``): a class only browsing a server just started holds less
    wake_r, wake_w = os.pipe()  # a child's end wakes the loop (SIGCHLD), so its parent hears of it at once
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock.send(json.dumps({"ready": os.getpid()}).encode())
    children: set[int] = set()
    last = time.monotonic()  # the last request, or the end of the last training process
    while True:
        readable = select.select([sock, wake_r], [], [], 5.0)[0]
        if wake_r in readable:
            os.read(wake_r, 4096)
        if _reap(children, sock):
            last = time.monotonic()
        if sock not in readable:
            if not children and time.monotonic() - last > idle_s:
                return 0  # nothing to do for a while: the memory its imports hold goes back
            continue
        last = time.monotonic()
        try:
            data, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 2)
        except OSError:
            return 0
        if not data:
            return 0  # the parent has gone: the processes forked end when their stdin closes
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:  # the training process
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                for fd in (wake_r, wake_w):
                    os.close(fd)
                sock.close()
                os.dup2(fds[0], 0)
                os.dup2(fds[1], 1)
                for fd in fds:
                    os.close(fd)
                os.environ.clear()
                os.environ.update(request["env"])
                os.chdir(request["cwd"])
                _name_process(WORKER_NAME)
                gc.enable()
                code = worker.main(request["argv"], forked=True)
            except BaseException:
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (OSError, ValueError):
                        pass
                os._exit(code if isinstance(code, int) else 1)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        sock.send(json.dumps({"pid": pid}).encode())


def _reap(children: set[int], sock: socket.socket) -> bool:
    """Tell the parent of each training process that has ended; whether one had."""
    ended = False
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            ended = True
            children.discard(pid)
            try:
                sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())
            except OSError:
                pass
    return ended


if __name__ == "__main__":
    sys.exit(_serve(socket.socket(fileno=int(sys.argv[1])), float(sys.argv[2])))
