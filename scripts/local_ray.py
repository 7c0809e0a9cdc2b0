"""A throwaway Ray cluster on this machine (``ray`` from PyPI), for tests, benchmarks and a try-out.

    python scripts/local_ray.py start /tmp/digitlab-ray 6380 --nodes 2   # prints what to export, then returns
    python scripts/local_ray.py stop /tmp/digitlab-ray

A head node (no dashboard) and ``--nodes - 1`` worker nodes, each with ``--cpus`` CPUs (one training at a time
each), their files in the folder given. What listens where, measured with ``ss -ltnp`` on Ray 2.60: the GCS on
the given port and each raylet on two random ports, on every interface (``*``), whatever ``--node-ip-address``
says (Ray has no setting to bind them to 127.0.0.1); the Ray workers on random ports of the node's address. So the
cluster uses Ray's token authentication with a fresh token: a driver without it is refused ("InvalidAuthToken"),
and the printed RAY_AUTH_MODE and RAY_AUTH_TOKEN must be in the environment of whatever joins it (DigitLab's
server, with DIGITLAB_RAY_ADDRESS) before it imports ray. On a network, a firewall should also keep the ports to
the cluster's own machines (README, "What runs where"). A node that cannot start raises with Ray's own words.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path


class RayError(RuntimeError):
    pass


def ray_command() -> str:
    found = Path(sys.executable).with_name("ray")
    if not found.exists():
        raise RayError("Ray is not installed: pip install -r requirements.txt")
    return str(found)


def start(folder: str | Path, port: int, nodes: int = 1, cpus: int = 2) -> dict[str, str]:
    """Start the cluster; returns the environment that joins it (address and token), also set in os.environ."""
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **token}
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--disable-usage-stats"]
    head = [ray_command(), "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={folder}",
            *common]
    commands = [head] + [[ray_command(), "start", f"--address=127.0.0.1:{port}", *common]] * (nodes - 1)
    for cmd in commands:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
        if done.returncode:
            stop(folder)
            raise RayError(f"`{' '.join(cmd[1:3])}` failed on 127.0.0.1:{port}: {done.stderr.strip()[-2000:]}")
    os.environ.update(token)
    return {**token, "DIGITLAB_RAY_ADDRESS": f"127.0.0.1:{port}"}


def stop(folder: str | Path | None = None) -> None:
    """Stop the cluster whose files are in ``folder`` (its processes and theirs), leaving any other Ray cluster on
    this machine alone; with no folder, every Ray node here (``ray stop``)."""
    if folder is None:
        subprocess.run([ray_command(), "stop", "--force"], capture_output=True, timeout=120)
        return
    ours = processes_of(str(Path(folder).resolve()))
    for pid in ours:  # a throwaway cluster: killed at once (its GCS and raylets took 10 s over a SIGTERM)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(p) for p in ours):
        time.sleep(0.1)


def kill_tasks(folder: str | Path, name: str) -> list[int]:
    """Kill (SIGKILL) the Ray workers of the cluster in ``folder`` now running the task ``name`` (their process
    title, "ray::train_task"), not any other cluster's: a test's lost worker, on this cluster only."""
    killed = []
    for pid in processes_of(str(Path(folder).resolve())):
        with contextlib.suppress(OSError):
            if f"ray::{name}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_of(folder: str) -> list[int]:
    """The processes whose command line names ``folder`` (GCS, raylets, monitors) and all their descendants."""
    children: dict[int, list[int]] = {}
    roots = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
            if folder in (entry / "cmdline").read_bytes().decode(errors="replace"):
                roots.append(int(entry.name))
        except (OSError, ValueError):
            continue
    found, todo = [], roots
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    if sys.argv[1] == "stop":
        stop(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        args = sys.argv[2:]
        nodes = int(args[args.index("--nodes") + 1]) if "--nodes" in args else 1
        cpus = int(args[args.index("--cpus") + 1]) if "--cpus" in args else 2
        plain = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or not args[i - 1].startswith("--"))]
        joined = start(plain[0] if plain else "/tmp/digitlab-ray", int(plain[1]) if len(plain) > 1 else 6380,
                       nodes, cpus)
        print("\n".join(f"export {k}={v}" for k, v in joined.items()))
