"""Two web processes behind Debian's HAProxy, started as the README says (`python -m digitlab serve --web 2`):
one address, websockets through, each browser kept on its process by a cookie; Ctrl+C stops it all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from digitlab.serve import COOKIE, free_port, wait_healthy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from classroom_client import Student  # noqa: E402


def _get(url: str, cookie: str = "") -> tuple[str, str]:
    """(the process that answered, the proxy's cookie it set)."""
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        set_cookie = r.headers.get("Set-Cookie", "")
        return r.headers["X-DigitLab-Server"], set_cookie.split(";")[0]


ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return state not in ("Z", "X")  # a zombie is gone, only not yet reaped


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl+C", "SIGTERM"])
def test_two_web_processes_behind_haproxy_keep_each_browser_on_its_process(mnist, stop):
    """... and Ctrl+C, or a SIGTERM from a service manager, stops every process serve started."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--web", "2", "--port", str(port)],
                              cwd=ROOT, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", timeout=150)
        except Exception:
            server.kill()
            pytest.fail(f"`python -m digitlab serve --web 2` did not come up: {server.communicate()[0][-2000:]}")
        first, cookie = _get(f"http://127.0.0.1:{port}/")
        assert cookie == f"{COOKIE}={first}"  # a first visit is pinned to the process that answered
        assert all(_get(f"http://127.0.0.1:{port}/", cookie)[0] == first for _ in range(4))  # reloads stay there
        seen = {_get(f"http://127.0.0.1:{port}/")[0] for _ in range(6)}
        assert seen == {"web1", "web2"}  # new browsers are spread over both

        async def browse(server: str) -> Student:
            s = Student(f"ws://127.0.0.1:{port}/_stcore/stream", server, headers={"Cookie": f"{COOKIE}={server}"})
            await s.connect()
            try:
                assert await s.open("Home") is not None
                assert await s.open("MLP") is not None
            finally:
                await s.close()
            return s

        async def both() -> list[Student]:
            return await asyncio.gather(browse("web1"), browse("web2"))

        for student in asyncio.run(both()):  # the pages run through the proxy's websockets on each process
            assert not student.errors, student.errors
            assert student.has_widget("number_input", "Epochs")
        children = [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.pid)],
                                                   capture_output=True, text=True).stdout.split()]
        assert len(children) == 4  # the queue server, two web processes, HAProxy
    finally:
        server.send_signal(stop)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            tree = subprocess.run(["ps", "-eo", "pid,ppid,pgid,stat,etime,args"], capture_output=True, text=True).stdout
            handler = Path(f"/proc/{server.pid}/status").read_text()
            server.kill()
            pytest.fail(f"`serve` still running 60 s after Ctrl+C (SIGINT here: {signal.getsignal(signal.SIGINT)}); "
                        f"its signal masks:\n"
                        f"{[ln for ln in handler.splitlines() if ln.startswith('Sig')]}\nprocesses:\n"
                        + "\n".join(ln for ln in tree.splitlines() if "digitlab" in ln or "haproxy" in ln
                                     or "streamlit" in ln) + f"\noutput: {server.communicate(timeout=30)[0][-2000:]}")
        out = server.communicate(timeout=30)[0]
    assert server.returncode == 0, out
    assert not [pid for pid in children if _alive(pid)], out  # nothing left running
    assert "2 web processes behind HAProxy" in out
    with pytest.raises(OSError):  # the proxy went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5)
