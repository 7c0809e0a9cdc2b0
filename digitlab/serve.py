"""Several web processes behind one address, for a school's server: N Streamlit servers and HAProxy in front.

    python -m digitlab.serve --web 2 --port 8501            # this machine only
    python -m digitlab.serve --web 4 --port 8501 --room     # the room's (or school's) network

One Streamlit process runs the pages' Python on about one core; N of them use N. HAProxy (Debian's package,
configured here) listens on the one address, passes websockets through, and keeps each browser on the process
it first reached (a cookie), because a Streamlit session lives in one process. The web processes listen on
127.0.0.1 only; the models folder is shared by all of them, and so is the training queue: a queue server
(``digitlab.queue_server``) started first holds the class's one line, so identical settings still share one run
and each student still has one run waiting, whichever process their browser reached. Ctrl+C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from . import settings

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "DIGITLAB_SERVER"
STOP_S = 20.0  # how long a Ctrl+C waits, in all, for the processes to stop before it kills them


class ServeError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haproxy_config(bind: str, port: int, backends: list[int]) -> str:
    """HAProxy in front of the web processes: websockets pass through, each browser sticks to one process."""
    servers = "\n".join(f"    server web{i} 127.0.0.1:{p} cookie web{i} check inter 2s"
                        for i, p in enumerate(backends, start=1))
    return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 8h  # a websocket stays open for the whole lesson

frontend digitlab
    bind {bind}:{port}
    default_backend web

backend web
    balance leastconn
    cookie {COOKIE} insert indirect nocache httponly
    option httpchk GET /_stcore/health
    http-response set-header X-DigitLab-Server %s
{servers}
"""


def web_command(port: int, allowed_hosts: list[str] | tuple[str, ...] = ()) -> list[str]:
    """One web process, on 127.0.0.1 only (the proxy is the way in). The proxy passes the browser's Host header
    through, so on the room's network the laptop's names must be allowed here too."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true"]
    for name in allowed_hosts:
        cmd += ["--server.allowedHosts", name]
    return cmd


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise ServeError(f"{url} did not answer within {timeout:.0f} s")


class Cluster:
    """The web processes and the proxy, started together and stopped together."""

    def __init__(self, web: int, port: int, bind: str = "127.0.0.1", env: dict | None = None,
                 allowed_hosts: list[str] | tuple[str, ...] = ()):
        if web < 1:
            raise ServeError("--web must be at least 1")
        self.haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(self.haproxy).exists():
            raise ServeError("HAProxy is not installed: apt-get install -y haproxy (Debian's package)")
        self.port, self.bind, self.env = port, bind, {**os.environ, **(env or {})}
        # One secret for every web process: Streamlit signs its XSRF cookie with it, so an upload still passes the
        # check if the proxy ever moves a browser to another process (one per process would refuse it).
        self.env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
        self.allowed_hosts = list(allowed_hosts)
        self.backends = [free_port() for _ in range(web)]
        self.folder = Path(tempfile.mkdtemp(prefix="digitlab-serve-"))
        self.processes: list[subprocess.Popen] = []

    def start(self) -> Cluster:
        try:
            self._start_queue_server()
            for p in self.backends:
                log = open(self.folder / f"web-{p}.log", "wb")  # noqa: SIM115 - kept open for the process's life
                self.processes.append(subprocess.Popen(web_command(p, self.allowed_hosts), cwd=ROOT, env=self.env, stdout=log,
                                                       stderr=subprocess.STDOUT, start_new_session=True))
            for p in self.backends:
                wait_healthy(f"http://127.0.0.1:{p}/_stcore/health")
            config = self.folder / "haproxy.cfg"
            config.write_text(haproxy_config(self.bind, self.port, self.backends))
            checked = subprocess.run([self.haproxy, "-c", "-q", "-f", str(config)], capture_output=True, text=True)
            if checked.returncode:
                raise ServeError(f"HAProxy refused its configuration: {checked.stderr.strip()}")
            self.processes.append(subprocess.Popen([self.haproxy, "-db", "-f", str(config)],
                                                   stdout=subprocess.DEVNULL, stderr=open(self.folder / "haproxy.log", "wb"),
                                                   start_new_session=True))
            wait_healthy(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=20)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_queue_server(self) -> None:
        from . import queue_server

        address, key = f"127.0.0.1:{free_port()}", secrets.token_hex(16)
        self.env.update({queue_server.ADDRESS_ENV: address, queue_server.KEY_ENV: key})
        try:
            self.processes.append(queue_server.start(self.env, self.folder / "queue.log"))
        except OSError as e:
            raise ServeError(str(e)) from None

    def stop(self) -> None:
        """Every process asked to stop at once, then 20 s in all (not each) before what is left is killed: four
        processes waited for one after another could hold a Ctrl+C for 80 s on a busy machine."""
        for p in reversed(self.processes):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for p in self.processes:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.processes = []
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run(web: int, port: int, room: bool, allowed_hosts: list[str] | tuple[str, ...] = ()) -> int:
    """Start the cluster, say where it is, and keep it up until Ctrl+C (or a SIGTERM) or until one of its processes
    stops; then stop every process it started."""
    def stop_now(signum, frame):
        raise KeyboardInterrupt
    # Both stop it the same way, and on purpose: a SIGTERM (kill, a service manager) killed this process alone and
    # left the web processes, the queue server and HAProxy running; and a shell that starts a command in the
    # background without job control starts it with Ctrl+C ignored, which Python keeps.
    signal.signal(signal.SIGINT, stop_now)
    signal.signal(signal.SIGTERM, stop_now)
    cluster = Cluster(web, port, "0.0.0.0" if room else "127.0.0.1", allowed_hosts=allowed_hosts)
    try:
        cluster.start()
    except ServeError as e:
        print(f"could not start: {e}", file=sys.stderr)
        return 1
    where = "every interface (the room's or school's network)" if room else "this machine only"
    print(f"DigitLab on http://{socket.gethostname() if room else '127.0.0.1'}:{port} ({where}): "
          f"{web} web processes behind HAProxy. Ctrl+C stops it.", flush=True)
    try:
        while all(p.poll() is None for p in cluster.processes):
            time.sleep(1)
        print("a process stopped; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()


def laptop_names() -> list[str]:
    """The names this laptop answers to: loopback, its host name (and .local, as phones and Macs look it up), its
    addresses on the room's network, and any the teacher adds in DIGITLAB_ALLOWED_HOSTS (comma-separated)."""
    host = socket.gethostname()
    names = ["localhost", "127.0.0.1", "::1", host, f"{host}.local", socket.getfqdn()]
    try:
        names += [info[4][0] for info in socket.getaddrinfo(host, None)]
    except OSError:  # no name service: the names above will do
        pass
    try:  # the address the laptop would use to reach the network (no packet is sent: UDP connect only picks a route)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            names.append(s.getsockname()[0])
    except OSError:
        pass
    names += settings.get("DIGITLAB_ALLOWED_HOSTS")
    return [n for n in dict.fromkeys(names) if n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--web", type=int, default=2, help="how many Streamlit processes")
    ap.add_argument("--port", type=int, default=8501)
    ap.add_argument("--room", action="store_true", help="listen on every interface (the room's network)")
    args = ap.parse_args()
    return run(args.web, args.port, args.room, laptop_names() if args.room else ())


if __name__ == "__main__":
    sys.exit(main())
