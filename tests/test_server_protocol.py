"""A real DigitLab server on 127.0.0.1, spoken to as a hostile client would: a crafted clear_cache message, a
websocket handshake with a foreign Host (DNS rebinding), an upload over the app's 10 MB. The server runs with the
project's own .streamlit/config.toml; bench/classroom_client.py speaks Streamlit's protocol."""

import asyncio
import http.client
import os
import secrets
import sys
import tempfile
from pathlib import Path

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from classroom_client import Server, Student  # noqa: E402

pytestmark = pytest.mark.slow  # a real server process


class Watcher(Student):
    """A student who also keeps the session id and every caption and markdown line the page draws."""

    def __post_init__(self):
        super().__post_init__()
        self.session_id, self.texts = "", []

    def _on(self, msg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            if not msg.metadata.run.fragment_ids:
                self.texts = []
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            el = msg.delta.new_element
            if el.WhichOneof("type") == "markdown":
                self.texts.append(el.markdown.body)
        super()._on(msg)


@pytest.fixture(scope="module")
def server(mnist):
    with tempfile.TemporaryDirectory(prefix="digitlab-protocol-") as tmp:
        env = {**os.environ, "DIGITLAB_MODEL_DIR": f"{tmp}/models", "DIGITLAB_COLLECTION_DIR": f"{tmp}/col",
               "DIGITLAB_DATA_DIR": str(Path(mnist.source.path).resolve()), "DIGITLAB_OFFLINE": "1"}
        env.pop("DIGITLAB_TEACHER_KEY", None)
        srv = Server(env, Path(tmp) / "server.log")
        try:
            srv.wait_ready()
            yield srv
        finally:
            srv.stop()


def _handshake(port: int, host: str, origin: str) -> int:
    """The status of a websocket upgrade to /_stcore/stream with these Host and Origin headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", "/_stcore/stream", skip_host=True)
        for name, value in (("Host", host), ("Origin", origin), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
                            ("Sec-WebSocket-Protocol", "streamlit")):
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_foreign_host_is_refused_and_the_laptops_own_accepted(server):
    assert _handshake(server.port, "evil.example", "http://evil.example") != 101  # the DNS-rebinding pattern
    assert _handshake(server.port, f"evil.example:{server.port}", "http://evil.example") != 101
    assert _handshake(server.port, f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}") == 101
    assert _handshake(server.port, f"localhost:{server.port}", f"http://localhost:{server.port}") == 101


def _put(port: int, session_id: str, size: int) -> int:
    """The status of a browser-style upload (multipart, with the XSRF cookie and header) of ``size`` bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/_stcore/health")  # where the browser gets its XSRF cookie
        page = conn.getresponse()
        page.read()
        cookie = next(c.split(";")[0] for c in page.headers.get_all("Set-Cookie") or [] if "_streamlit_xsrf" in c)
        boundary = secrets.token_hex(8)
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
        conn.request("PUT", f"/_stcore/upload_file/{session_id}/{secrets.token_hex(8)}", body=body,
                     headers={"Cookie": cookie, "X-Xsrftoken": cookie.split("=", 1)[1],
                              "Content-Type": f"multipart/form-data; boundary={boundary}"})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_an_upload_over_the_apps_10_mb_is_refused_by_the_server(server):
    async def go():
        student = Watcher(server.url, "uploader")
        await student.connect()
        try:
            await student.open("Home")
            assert student.session_id
            return (_put(server.port, student.session_id, 11 * 1024 * 1024),
                    _put(server.port, student.session_id, 1024 * 1024))
        finally:
            await student.close()

    big, small = asyncio.run(go())
    assert big == 413  # refused before the body is kept
    assert small in (200, 204)


EPOCHS = 12  # the run is stopped with the server at the end of the module


def test_a_crafted_clear_cache_leaves_every_run_visible_and_running_once(server):
    """clear_cache needs no button: any client can send it. The queue lives outside every cache."""

    async def go():
        owner, prankster, other = (Watcher(server.url, n) for n in ("owner", "prankster", "other"))
        for s in (owner, prankster, other):
            await s.connect()
        try:
            await owner.open("CNN")
            owner.set_number("Epochs", EPOCHS)  # long enough that it cannot end before the second click on a slow CI
            owner.set_number("Training images", 20_000)
            await owner.click("Train")
            assert not owner.errors, owner.errors
            await owner.open("Data Explorer")
            before = [t for t in owner.texts if "Training now" in t or t.startswith("· ")]
            for _ in range(600):  # the training process starts beside the server
                if (workers_before := len(server.training_processes())) >= 1:
                    break
                await asyncio.sleep(0.1)

            msg = BackMsg()
            msg.clear_cache = True
            await prankster.open("Home")
            await prankster._ws.send(msg.SerializeToString())
            await asyncio.sleep(2)

            await other.open("CNN")  # the same settings: joins the run, does not start a second
            other.set_number("Epochs", EPOCHS)
            other.set_number("Training images", 20_000)
            await other.click("Train")
            await owner.open("Data Explorer")
            after = [t for t in owner.texts if "Training now" in t or t.startswith("· ")]
            return before, after, workers_before, len(server.training_processes()), owner.errors + other.errors + prankster.errors
        finally:
            for s in (owner, prankster, other):
                await s.close()

    before, after, workers_before, workers_after, errors = asyncio.run(go())
    assert not errors
    assert "**Training now:**" in before and "**Training now:**" in after
    running = [t for t in after if t.startswith("· DigitCNN")]
    assert len(running) == 1 and not any("more waiting" in t for t in after)  # one run, still listed
    assert workers_after == workers_before == 1  # one training process: the run was not started twice


def test_clear_cache_over_and_over_starts_no_thread_and_keeps_the_data(server):
    """Each clear_cache followed by a rerun started one more never-ending collection thread (issue 29): twenty of
    them now leave the server's threads as they were, and the page still shows the data."""

    async def go():
        prankster = Watcher(server.url, "prankster-2")
        await prankster.connect()
        try:
            await prankster.open("Home")
            before = server.threads()
            msg = BackMsg()
            msg.clear_cache = True
            for _ in range(20):
                await prankster._ws.send(msg.SerializeToString())
                await prankster.open("Home")
            return before, server.threads(), prankster.texts, prankster.errors
        finally:
            await prankster.close()

    before, after, texts, errors = asyncio.run(go())
    assert not errors
    assert after <= before + 2, (before, after)  # a thread or two may come and go with the sessions' own work
    assert any("**Data:** full MNIST" in t for t in texts)  # the data, loaded again, still shown


def test_a_decompression_bomb_sent_as_the_pads_drawing_is_refused(server):
    """The pad's value is whatever a client sends: a PNG of about 150 KB declaring 6000x6000 pixels, sent as the
    canvas's drawing, cost the server +747 MB (issue 29). It is refused on its header now, with a message."""
    import base64
    import io
    import json

    from PIL import Image
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    buf = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buf, format="PNG", optimize=True)
    bomb = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    async def go():
        student = Watcher(server.url, "bomber")
        await student.connect()
        try:
            await student.open("Sketch Pad")
            (pad,) = set(student.components)
            before = server.usage()[0].rss_mb
            value = {"drawing": {"raw": {"objects": []}, "data": bomb}}
            student.sticky[pad] = WidgetState(id=pad, json_value=json.dumps(value))
            await student.rerun()
            return before, server.usage()[0].rss_mb, student.alerts, student.errors
        finally:
            await student.close()

    before, after, alerts, errors = asyncio.run(go())
    assert not errors
    assert any("The drawing could not be read" in a and "6000x6000" in a for a in alerts), alerts
    assert after - before < 20, (before, after)  # MB


def test_tabs_of_one_browser_hold_one_place_in_the_line(server):
    """Thirty tabs of one browser pressing Train all queued (issue 29): the tabs of one browser (one cookie jar, as a
    browser sends it with every connection) now hold one waiting run between them; another browser still queues."""

    async def go():
        runner = Watcher(server.url, "runner")
        browser = {"Cookie": "_streamlit_xsrf=2|1a2b3c4d|0123456789abcdef0123456789abcdef|1765000000"}
        tabs = [Watcher(server.url, f"tab-{i}", headers=browser) for i in range(4)]
        other = Watcher(server.url, "other-browser", headers={"Cookie": "_streamlit_xsrf=2|99|ffff|1765000001"})
        students = [runner, *tabs, other]
        for s in students:
            await s.connect()
        try:
            await runner.open("CNN")  # a long run first, so that the runs below wait in line
            runner.set_number("Epochs", EPOCHS)
            runner.set_number("Training images", 20_000)
            await runner.rerun()
            await runner.click("Train")
            for i, s in enumerate([*tabs, other]):
                await s.open("MLP")
                s.set_number("Epochs", 2 + i)  # each a different run: none joins another
                await s.rerun()
                await s.click("Train")
            return [s.alerts for s in tabs], other.alerts, [e for s in students for e in s.errors]
        finally:
            for s in students:
                await s.close()

    tab_alerts, other_alerts, errors = asyncio.run(go())
    assert not errors
    refused = [any("Another tab of your browser has a run waiting" in a for a in alerts) for alerts in tab_alerts]
    assert refused == [False, True, True, True], tab_alerts
    assert not any("run waiting" in a for a in other_alerts), other_alerts
