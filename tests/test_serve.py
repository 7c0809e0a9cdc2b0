"""Two web processes behind Debian's HAProxy, started by digitlab.serve: one address, websockets through,
each browser kept on its process by a cookie."""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from pathlib import Path

from digitlab.serve import COOKIE, Cluster, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from classroom_client import Student  # noqa: E402


def _get(url: str, cookie: str = "") -> tuple[str, str]:
    """(the process that answered, the proxy's cookie it set)."""
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        set_cookie = r.headers.get("Set-Cookie", "")
        return r.headers["X-DigitLab-Server"], set_cookie.split(";")[0]


def test_two_web_processes_behind_haproxy_keep_each_browser_on_its_process(mnist):
    port = free_port()
    with Cluster(2, port) as cluster:
        assert len(cluster.backends) == 2
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
