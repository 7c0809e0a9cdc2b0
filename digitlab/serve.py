"""Several web processes behind one address, for a school's server: N Streamlit servers and HAProxy in front.

    python -m digitlab serve --web 2 --port 8501                          # this machine only
    python -m digitlab serve --web 4 --port 443 --room --tls-cert FILE    # the school's network, over HTTPS

One Streamlit process runs the pages' Python on about one core; N of them use N. HAProxy (Debian's package,
configured here) listens on the one address, passes websockets through, and keeps each browser on the process
it first reached (a cookie), because a Streamlit session lives in one process. The web processes listen on
127.0.0.1 only; the models folder is shared by all of them, and so is the training queue: a queue server
(``digitlab.queue_server``) started first holds the class's one line, so identical settings still share one run
and each student still has one run waiting, whichever process their browser reached.

``serve`` supervises what it started: a process that stops is started again (a web process on its own port:
HAProxy's health checks send its students to the others meanwhile, and a run goes on in the queue server's
training process). Every log goes to a folder of its own under DIGITLAB_LOG_DIR, kept after the server stops.
Ctrl+C or a SIGTERM stops every process it started and nothing else; a second ``serve`` on a port in use refuses
and names the one running. HAProxy also answers ``/healthz`` (200 while a web process is up) and shows its
statistics page on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from . import settings

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "DIGITLAB_SERVER"
STOP_S = 3.0  # how long a Ctrl+C waits, in all, for the processes to stop before it kills them (each needs 1-2 s
# quiet; on a loaded machine the kill, the reaping and serve's own exit took 1.3 s more, and the whole stays within 5 s)
LOOK_EVERY_S = 0.5  # how often serve looks whether each of its processes still runs
RESTART_AFTER_S = 1.0  # a process that stopped again this soon after its restart waits this long before the next


class ServeError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haproxy_config(bind: str, port: int, backends: list[int], stats_port: int, tls_cert: str = "") -> str:
    """HAProxy in front of the web processes: websockets pass through, each browser sticks to one process. A browser
    whose process refuses the connection (it stopped) goes to another at once (redispatch), which sets its cookie;
    the health checks take a process out of the rotation after three failures 2 s apart, each given 5 s, so a
    process busy with a heavy page for a second or two is not taken for a dead one (its students would lose their
    sessions)."""
    servers = "\n".join(f"    server web{i} 127.0.0.1:{p} cookie web{i} check inter 2s fall 3 rise 2"
                        for i, p in enumerate(backends, start=1))
    tls = f" ssl crt {tls_cert}" if tls_cert else ""
    return f"""global
    maxconn 4096
    noreuseport  # a second HAProxy on this port fails to start instead of sharing it

defaults
    mode http
    option redispatch  # a browser pinned to a process that is down goes to another
    retries 2
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 8h  # a websocket stays open for the whole lesson
    timeout check 5s

frontend digitlab
    bind {bind}:{port}{tls}
    monitor-uri /healthz
    monitor fail if {{ nbsrv(web) lt 1 }}
    default_backend web

backend web
    balance leastconn
    cookie {COOKIE} insert indirect nocache httponly{" secure" if tls_cert else ""}
    option httpchk GET /_stcore/health
    http-response set-header X-DigitLab-Server %s
{servers}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /
    stats refresh 5s
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
    context = None
    if url.startswith("https"):  # our own certificate, perhaps self-signed: only whether it answers is asked
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise ServeError(f"{url} did not answer within {timeout:.0f} s")


def running_file(port: int) -> Path:
    """Where a running serve says who it is, for a second one on its port to name it."""
    return Path(tempfile.gettempdir()) / f"digitlab-serve-{port}.json"


def port_taken(bind: str, port: int) -> str:
    """Why ``port`` cannot be served ("" when it is free): the serve already on it, by its pid and logs, or the
    program ``ss`` names."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT by the last serve is free
        try:
            s.bind((bind, port))
            return ""
        except OSError:
            pass
    try:
        running = json.loads(running_file(port).read_text())
        os.kill(int(running["pid"]), 0)
        return (f"port {port} is in use by DigitLab's serve already running (pid {running['pid']}, since "
                f"{running['since']}, logs in {running['logs']}): stop it first (kill {running['pid']}), or choose "
                "another --port")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        who = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        who = ""
    users = who.split("users:", 1)[1].strip() if "users:" in who else "a program ss could not name"
    return f"port {port} is in use by another program ({users}): stop it, or choose another --port"


class Part:
    """One process serve started and keeps running: how it starts, its log, how often it was started again."""

    def __init__(self, name: str, start: Callable[[], subprocess.Popen]):
        self.name, self.start = name, start
        self.proc: subprocess.Popen | None = None
        self.restarts, self.started = 0, 0.0

    def run(self) -> None:
        self.proc, self.started = self.start(), time.monotonic()


class Cluster:
    """The queue server, the web processes and the proxy, started together, kept running, stopped together."""

    def __init__(self, web: int, port: int, bind: str = "127.0.0.1", env: dict | None = None,
                 allowed_hosts: list[str] | tuple[str, ...] = (), stats_port: int = 8404, tls_cert: str = "",
                 logs: Path | None = None, say: Callable[[str], None] = print):
        if web < 1:
            raise ServeError("--web must be at least 1")
        self.haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(self.haproxy).exists():
            raise ServeError("HAProxy is not installed: apt-get install -y haproxy (Debian's package)")
        if tls_cert and not Path(tls_cert).is_file():
            raise ServeError(f"--tls-cert {tls_cert}: no such file (a PEM with the certificate and its key)")
        self.port, self.bind, self.env = port, bind, {**os.environ, **(env or {})}
        self.stats_port, self.tls_cert = stats_port, str(Path(tls_cert).resolve()) if tls_cert else ""
        # One secret for every web process: Streamlit signs its XSRF cookie with it, so an upload still passes the
        # check if the proxy ever moves a browser to another process (one per process would refuse it).
        self.env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
        self.allowed_hosts = list(allowed_hosts)
        self.backends = [free_port() for _ in range(web)]
        self.logs = (logs or settings.get("DIGITLAB_LOG_DIR")).resolve() / datetime.now().strftime("serve-%Y%m%d-%H%M%S")
        self.say = say
        self.parts: list[Part] = []
        from . import queue_server  # its address and key, kept when it is started again: the web processes reconnect

        self.env.update({queue_server.ADDRESS_ENV: f"127.0.0.1:{free_port()}", queue_server.KEY_ENV: secrets.token_hex(16)})

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://127.0.0.1:{self.port}"

    def _log(self, name: str):
        return open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps its own copy

    def _popen(self, cmd: list[str], name: str) -> subprocess.Popen:
        with self._log(name) as log:  # each in its own process group: a stop reaches its children too
            return subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def start(self) -> Cluster:
        for p in (self.port, self.stats_port):
            if why := port_taken(self.bind if p == self.port else "127.0.0.1", p):
                raise ServeError(why)
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self._add(Part("queue", self._start_queue_server))
            for i, p in enumerate(self.backends, start=1):
                self._add(Part(f"web{i}", lambda p=p, i=i: self._popen(web_command(p, self.allowed_hosts), f"web{i}")))
            for p in self.backends:
                wait_healthy(f"http://127.0.0.1:{p}/_stcore/health")
            config = self.logs / "haproxy.cfg"
            config.write_text(haproxy_config(self.bind, self.port, self.backends, self.stats_port, self.tls_cert))
            checked = subprocess.run([self.haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
            if checked.returncode:  # its first [ALERT] says why (a certificate it cannot load, a port it cannot bind)
                alerts = [ln.split(" : ", 2)[-1] for ln in (checked.stdout + checked.stderr).splitlines() if "[ALERT]" in ln]
                raise ServeError(f"HAProxy refused its configuration: {alerts[0] if alerts else checked.returncode}")
            self._add(Part("haproxy", lambda: self._popen([self.haproxy, "-db", "-f", str(config)], "haproxy")))
            wait_healthy(f"{self.url}/healthz", timeout=20)
            running_file(self.port).write_text(json.dumps(
                {"pid": os.getpid(), "since": datetime.now().isoformat(timespec="seconds"), "logs": str(self.logs)}))
        except BaseException:
            self.stop()
            raise
        return self

    def _add(self, part: Part) -> None:
        part.run()
        self.parts.append(part)

    def _start_queue_server(self) -> subprocess.Popen:
        from . import queue_server

        try:
            return queue_server.start(self.env, self.logs / "queue.log")
        except OSError as e:
            raise ServeError(str(e)) from None

    def look(self) -> None:
        """Start again each process that stopped (one that keeps stopping, at most once every RESTART_AFTER_S)."""
        for part in self.parts:
            code = part.proc.poll()
            if code is None or time.monotonic() - part.started < RESTART_AFTER_S:
                continue
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            part.restarts += 1
            self.say(f"{datetime.now():%H:%M:%S} {part.name} (pid {part.proc.pid}) stopped ({how}); starting it "
                     f"again, restart {part.restarts} (logs: {self.logs / part.name}.log)")
            try:
                part.run()
            except ServeError as e:
                self.say(f"{part.name} could not start again: {e}")

    def pids(self) -> dict[str, int]:
        return {part.name: part.proc.pid for part in self.parts if part.proc is not None}

    def stop(self) -> None:
        """Every process asked to stop at once (its process group), then STOP_S in all before what is left is killed."""
        for part in reversed(self.parts):
            if part.proc is not None and part.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(part.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for part in self.parts:
            if part.proc is None:
                continue
            try:
                part.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                part.proc.kill()
                part.proc.wait()
            with contextlib.suppress(ProcessLookupError):  # what the process started (its training process) too
                os.killpg(part.proc.pid, signal.SIGKILL)
        self.parts = []
        with contextlib.suppress(OSError, ValueError):
            if json.loads(running_file(self.port).read_text()).get("pid") == os.getpid():
                running_file(self.port).unlink()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run(web: int, port: int, room: bool, allowed_hosts: list[str] | tuple[str, ...] = (), stats_port: int = 8404,
        tls_cert: str = "", logs: Path | None = None) -> int:
    """Start the cluster, say where it is, and keep each of its processes running until Ctrl+C or a SIGTERM; then
    stop every process it started."""
    def stop_now(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C (or a service manager's SIGTERM after a
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # first) must not cut the stopping short
        raise KeyboardInterrupt
    # Both stop it the same way, and on purpose: a SIGTERM (kill, a service manager) killed this process alone and
    # left the web processes, the queue server and HAProxy running; and a shell that starts a command in the
    # background without job control starts it with Ctrl+C ignored, which Python keeps.
    signal.signal(signal.SIGINT, stop_now)
    signal.signal(signal.SIGTERM, stop_now)
    try:
        cluster = Cluster(web, port, "0.0.0.0" if room else "127.0.0.1", allowed_hosts=allowed_hosts,
                          stats_port=stats_port, tls_cert=tls_cert, logs=logs,
                          say=lambda line: print(line, file=sys.stderr, flush=True))
        cluster.start()
    except ServeError as e:
        print(f"could not start: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    where = "every interface (the room's or school's network)" if room else "this machine only"
    scheme = "https" if tls_cert else "http"
    print(f"DigitLab on {scheme}://{socket.gethostname() if room else '127.0.0.1'}:{port} ({where}): "
          f"{web} web processes behind HAProxy. Health: /healthz; HAProxy's statistics: "
          f"http://127.0.0.1:{stats_port}/ (this machine only); logs in {cluster.logs}. Ctrl+C stops it.", flush=True)
    if address := settings.get("DIGITLAB_RAY_ADDRESS"):  # said at start-up; each run asks again (runs.runners.ray_runner)
        from .runs.runners.ray_runner import not_answering

        why = not_answering(address)
        instead = "runs train here instead" if settings.get("DIGITLAB_RAY_FALLBACK") == "local" else "runs are refused"
        print(f"the Ray cluster at {address} " + (f"is not answering ({why}): {instead} until it does" if why
                                                  else "answers: runs train there"), flush=True)
    try:
        while True:
            time.sleep(LOOK_EVERY_S)
            cluster.look()
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


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The school server's options (``python -m digitlab serve --web N``, or this module run directly)."""
    ap.add_argument("--stats-port", type=int, default=8404,
                    help="HAProxy's statistics page, on 127.0.0.1 only (default 8404)")
    ap.add_argument("--tls-cert", default="", metavar="FILE",
                    help="serve HTTPS with this PEM file (the certificate, its chain and its private key)")
    ap.add_argument("--logs", type=Path, default=None, metavar="FOLDER",
                    help="where each start's log folder goes (default DIGITLAB_LOG_DIR, ./logs)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--web", type=int, default=2, help="how many Streamlit processes")
    ap.add_argument("--port", type=int, default=8501)
    ap.add_argument("--room", action="store_true", help="listen on every interface (the room's network)")
    add_arguments(ap)
    args = ap.parse_args()
    return run(args.web, args.port, args.room, laptop_names() if args.room else (), args.stats_port, args.tls_cert,
               args.logs)


if __name__ == "__main__":
    sys.exit(main())
