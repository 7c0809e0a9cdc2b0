"""What bench_classroom.py drives: a Streamlit server it starts, and students speaking Streamlit's websocket protocol.

``Server`` starts ``streamlit run app.py`` on 127.0.0.1 at a free port in its own process group, waits for
``/_stcore/health``, reads the server's and its descendants' CPU and RSS from /proc, and stops the whole group.

``Student`` is one browser tab: a websocket to ``/_stcore/stream`` sending ``BackMsg.rerun_script``
(a ``ClientState``: page hash, widget states, fragment id) and reading ``ForwardMsg``s: ``new_session`` and
``navigation`` (the app's pages), ``delta`` (the page's elements: widgets found by label, exceptions counted
as errors), ``auto_rerun``/``stop_auto_rerun`` (fragments with ``run_every``, re-sent as the browser does) and
``script_finished`` (the end of a rerun). Widget values are sent as the frontend sends them: ``trigger_value``
for a button, ``int_value``/``double_value`` for a number input (by its data type), the shown option
string (``string_value``) for a selectbox or radio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

FULL_DONE = ForwardMsg.FINISHED_SUCCESSFULLY
COMPILE_ERROR = ForwardMsg.FINISHED_WITH_COMPILE_ERROR
FRAGMENT_DONE = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
WIDGETS = ("button", "number_input", "selectbox", "radio", "text_input", "slider", "checkbox")
STORAGE = "digitlab_browser"  # the component that reads a browser's token from its own storage (ui.together)


class BenchError(Exception):
    """Something the benchmark cannot go on without (a page or widget that is not there, a dead server)."""


def norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


# ---------------------------------------------------------------- the server


@dataclass
class Usage:
    cpu_s: float  # utime + stime, seconds
    rss_mb: float
    pss_mb: float = 0.0  # proportional set size: a page shared by n processes counts 1/n in each


def _proc_usage(pid: int) -> Usage | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        cpu = (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)
        rss = int(fields[21]) * PAGE_SIZE / 1e6  # field 24
        return Usage(cpu, rss, _pss_mb(pid))
    except (OSError, ValueError, IndexError):
        return None


def _pss_mb(pid: int) -> float:
    """The process's PSS (smaps_rollup, Linux 4.14+): summed over the server and its training process it is the memory
    they hold together, where RSS counts the torch libraries both map (about 300 MB of file pages) twice."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (training workers, whatever they start)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Server:
    """``streamlit run app.py`` on 127.0.0.1, its log in ``log_path``; stop() ends its whole process group."""

    def __init__(self, env: dict[str, str], log_path: Path, extra_args: tuple[str, ...] = ()):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log_path = log_path
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(self.port),
               "--browser.gatherUsageStats", "false", *extra_args]
        self._log = open(log_path, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.url = f"ws://127.0.0.1:{self.port}/_stcore/stream"

    def wait_ready(self, timeout: float = 90.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"the server exited with code {self.proc.returncode}; its log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.3)
        raise BenchError(f"the server did not answer /_stcore/health within {timeout:.0f} s; log: {self.log_path}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def threads(self) -> int:
        """The server process's thread count (/proc)."""
        return int(Path(f"/proc/{self.pid}/status").read_text().split("Threads:")[1].split()[0])

    def usage(self) -> tuple[Usage, Usage, int]:
        """(server process, all its descendants together, how many descendants)."""
        own = _proc_usage(self.pid) or Usage(0.0, 0.0)
        kids = [u for u in (_proc_usage(c) for c in descendants(self.pid)) if u is not None]
        return own, Usage(sum(u.cpu_s for u in kids), sum(u.rss_mb for u in kids), sum(u.pss_mb for u in kids)), len(kids)

    def training_processes(self) -> list[int]:
        """The server's training processes (``runners.zygote.is_training_process``); the zygote itself is not one."""
        from digitlab.runs.runners.zygote import is_training_process

        return [pid for pid in descendants(self.pid) if is_training_process(pid)]

    def stop(self) -> None:
        """End the server's process group, then any descendant that left the group (a worker in its own session)."""
        kids = descendants(self.pid) if self.proc.poll() is None else []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(10)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [k for k in kids if Path(f"/proc/{k}").exists()]
            for k in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(k, sig)
            t_end = time.monotonic() + 5
            while alive and time.monotonic() < t_end:
                time.sleep(0.1)
                alive = [k for k in alive if Path(f"/proc/{k}").exists()]
        self._log.close()


# ---------------------------------------------------------------- a student


@dataclass
class Page:
    hash: str
    name: str
    url: str
    default: bool


@dataclass
class Rerun:
    kind: str  # "click" or "auto"
    page: str
    sent: float
    latency: float | None  # None: no answer within the timeout
    phase: str


@dataclass
class Widget:
    kind: str
    label: str
    proto: object
    fragment: str


@dataclass
class Student:
    url: str
    name: str
    log: list[Rerun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phase: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # e.g. the proxy's cookie that keeps a tab on one process
    tls: object = None  # an ssl.SSLContext for a wss:// address (serve --tls-cert)

    def __post_init__(self):
        self.pages: dict[str, Page] = {}
        self.page = ""  # name of the page this tab shows
        self.page_hash = ""
        self.widgets: dict[str, Widget] = {}  # widget id -> the widget, as drawn by this page's runs
        self.sticky: dict[str, WidgetState] = {}  # values this student set on the current page
        self.changed: set[str] = set()  # fragment ids ("" = none) of the widgets changed since the last rerun
        self.auto: dict[str, list[float]] = {}  # fragment id -> [interval, next due]
        self.alerts: list[str] = []
        self.components: list[str] = []  # ids of the page's custom components (the drawing pad), newest last
        self.storage = ""  # the id of the component that hands over the browser's token (has_browser sets it)
        self.token = ""  # this tab's browser token, once it has one
        self.arrivals: list[tuple[float, str]] = []  # (monotonic time, page) each time the server moved this tab
        self.finished: list[float] = []  # monotonic times of this tab's full runs' ends
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._wait: tuple[str, asyncio.Future] | None = None

    def error(self, text: str) -> None:
        """Errors carry the phase they happened in: ``[phase] name: what``."""
        self.errors.append(f"[{self.phase}] {self.name}: {text}")

    # ------------------------------------------------------------ connection

    async def connect(self, timeout: float = 30.0) -> None:
        try:
            self._ws = await connect(self.url, subprotocols=[Subprotocol("streamlit")], max_size=None, proxy=None,
                                     open_timeout=timeout, ping_interval=None, additional_headers=self.headers,
                                     **({"ssl": self.tls} if self.tls is not None else {}))
        except Exception as e:  # refused, timed out, a bad handshake: all the same to a student
            raise BenchError(f"cannot connect to {self.url}: {type(e).__name__}: {e}") from e
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        self._ws = self._reader = None

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                self._on(ForwardMsg.FromString(raw))
        except ConnectionClosed as e:
            if self._wait is not None:
                self.error(f"connection closed ({e})")
                self._resolve(False)
        except Exception as e:  # a message we cannot read is an error, not a crash of the whole class
            self.error(f"{type(e).__name__}: {e}")
            self._resolve(False)

    def _resolve(self, ok: bool) -> None:
        if self._wait is not None and not self._wait[1].done():
            self._wait[1].set_result(ok)

    def _on(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":  # a run starts; a full run (no fragment ids) draws the page afresh
            self._pages(msg.new_session.app_pages)
            moved = msg.new_session.page_script_hash
            if moved and moved != self.page_hash and self.page_hash:  # the server took it to another page
                name = next((p.name for p in self.pages.values() if p.hash == moved), moved)
                self.arrivals.append((time.monotonic(), name))
                self.page, self.sticky = name, {}
            self.page_hash = moved or self.page_hash
            if msg.metadata.run.fragment_ids:  # the fragments draw their widgets again
                rerun = set(msg.metadata.run.fragment_ids)
                self.widgets = {k: w for k, w in self.widgets.items() if w.fragment not in rerun}
                return
            self.widgets.clear()
            self.alerts.clear()
            self.components.clear()
            self.auto.clear()
        elif kind == "navigation":
            self._pages(msg.navigation.app_pages)
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "delta":
            self._delta(msg.delta)
        elif kind == "auto_rerun":
            interval = float(msg.auto_rerun.interval)
            self.auto[msg.auto_rerun.fragment_id] = [interval, time.monotonic() + interval]
        elif kind == "stop_auto_rerun":
            for fid in msg.stop_auto_rerun.fragment_ids:
                self.auto.pop(fid, None)
        elif kind == "page_not_found":
            self.error(f"page not found: {msg.page_not_found.page_name!r}")
        elif kind == "script_finished":
            status = msg.script_finished
            if status == FULL_DONE:
                self.finished.append(time.monotonic())
            if self._wait is None:
                return
            want = self._wait[0]
            if status == COMPILE_ERROR:
                self.error(f"the script of {self.page!r} did not compile")
                self._resolve(False)
            elif status == FULL_DONE or (want == "fragment" and status == FRAGMENT_DONE):
                self._resolve(True)

    def _pages(self, app_pages) -> None:
        for p in app_pages:
            page = Page(p.page_script_hash, p.page_name, p.url_pathname, p.is_default)
            for alias in {p.page_name, p.url_pathname, "home" if p.is_default else ""} - {""}:
                self.pages[norm(alias)] = page

    def _delta(self, delta) -> None:
        if delta.WhichOneof("type") != "new_element":
            return
        el = delta.new_element
        which = el.WhichOneof("type")
        if which == "exception":
            e = el.exception
            if not e.is_warning:
                self.error(f"on {self.page}: {e.type}: {e.message[:200]}")
        elif which == "alert":
            self.alerts.append(el.alert.body)
        elif which == "bidi_component" and el.bidi_component.component_name == STORAGE:
            self.storage = el.bidi_component.id  # reads the browser's token from its storage (ui.together)
        elif which == "bidi_component":
            self.components.append(el.bidi_component.id)
        elif which in WIDGETS:
            w = getattr(el, which)
            if w.id:
                self.widgets[w.id] = Widget(which, w.label, w, delta.fragment_id)

    # ------------------------------------------------------------ pages and widgets

    def find_page(self, title: str) -> Page:
        page = self.pages.get(norm(title))
        if page is None:
            shown = sorted({p.name for p in self.pages.values()})
            raise BenchError(f"no page {title!r} in the app (it lists {shown or 'no pages yet'})")
        return page

    def widget(self, kind: str, label: str) -> Widget:
        """The widget of this kind whose label is ``label`` (exact, else case-insensitive prefix)."""
        same = [w for w in self.widgets.values() if w.kind == kind]
        for match in (lambda w: w.label == label, lambda w: norm(w.label).startswith(norm(label))):
            found = [w for w in same if match(w)]
            if found:
                return found[0]
        labels = sorted({f"{w.kind} {w.label!r}" for w in self.widgets.values()})
        raise BenchError(f"no {kind} labelled {label!r} on page {self.page!r}; it shows {labels}")

    def has_widget(self, kind: str, label: str) -> bool:
        try:
            self.widget(kind, label)
            return True
        except BenchError:
            return False

    def set_number(self, label: str, value: float) -> None:
        w = self.widget("number_input", label)
        state = WidgetState(id=w.proto.id)
        if w.proto.data_type == NumberInput.INT:
            state.int_value = int(value)
        else:
            state.double_value = float(value)
        self.sticky[w.proto.id] = state
        self.changed.add(w.fragment)

    def set_option(self, label: str, pick, kind: str = "selectbox") -> str:
        """Choose an option by its shown text: ``pick`` is a string (exact, else prefix) or a function of the options."""
        w = self.widget(kind, label)
        options = list(w.proto.options)
        if callable(pick):
            chosen = pick(options)
        else:
            chosen = next((o for o in options if o == pick), None) or next(
                (o for o in options if o.startswith(str(pick))), None)
        if chosen is None:
            raise BenchError(f"{kind} {label!r} on {self.page!r} has no option {pick!r}; options: {options}")
        self.sticky[w.proto.id] = WidgetState(id=w.proto.id, string_value=chosen)
        self.changed.add(w.fragment)
        return chosen

    def has_browser(self, token: str) -> None:
        """Hand the page the token a browser's storage would (as the storage component does once a session)."""
        if not self.storage:
            raise BenchError(f"page {self.page!r} drew no browser-storage component")
        self.token = token
        self.sticky[self.storage] = WidgetState(id=self.storage, json_value=json.dumps({"token": token}))
        self.changed.add("")

    # ------------------------------------------------------------ reruns

    async def open(self, title: str, timeout: float = 120.0) -> float | None:
        """Load a page (as a click in the sidebar does): its widget values start afresh."""
        if not self.pages and self.page_hash == "":  # first load: the default page tells us the others
            self.page = "Home"
            lat = await self.rerun(timeout=timeout, page_hash="")
            if norm(title) in ("home", ""):
                return lat
        page = self.find_page(title)
        self.page, self.sticky, self.changed = page.name, {}, set()
        return await self.rerun(timeout=timeout, page_hash=page.hash, fragment="")

    async def rerun(self, *, timeout: float = 120.0, page_hash: str | None = None, trigger: str = "",
                    fragment: str | None = None, auto: bool = False) -> float | None:
        """Send rerun_script with this tab's widget values; the seconds until script_finished, None on timeout.

        As the browser does, a change to widgets inside one fragment reruns only that fragment
        (``fragment=None`` works that out from the widgets changed since the last rerun).
        """
        if self._ws is None:
            raise BenchError(f"{self.name} is not connected")
        if fragment is None:
            fragment = next(iter(self.changed)) if len(self.changed) == 1 else ""
        self.changed = set()
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = ""
        cs.page_script_hash = self.page_hash if page_hash is None else page_hash
        states = dict(self.sticky)
        if trigger:
            states[trigger] = WidgetState(id=trigger, trigger_value=True)
        cs.widget_states.widgets.extend(states.values())
        if fragment:
            cs.fragment_id, cs.is_auto_rerun = fragment, auto
        fut = asyncio.get_running_loop().create_future()
        self._wait = ("fragment" if fragment else "full", fut)
        sent = time.monotonic()
        try:
            await self._ws.send(msg.SerializeToString())
            ok = await asyncio.wait_for(fut, timeout)
            latency = time.monotonic() - sent if ok else None
        except TimeoutError:
            latency = None
            if not auto:
                self.error(f"no script_finished within {timeout:.0f} s on {self.page!r}")
        except ConnectionClosed as e:
            latency = None
            self.error(f"connection closed ({e})")
        finally:
            self._wait = None
        self.log.append(Rerun("auto" if auto else "click", self.page, sent, latency, self.phase))
        return latency

    async def click(self, label: str, timeout: float = 120.0) -> float | None:
        """Press a button: a trigger for one rerun (of the button's fragment, when it sits in one)."""
        w = self.widget("button", label)
        if w.proto.disabled:
            raise BenchError(f"button {label!r} on {self.page!r} is disabled (the page says: {self.alerts})")
        self.changed.add(w.fragment)
        return await self.rerun(trigger=w.proto.id, timeout=timeout)

    def due_fragment(self) -> tuple[str, float] | None:
        """The live fragment whose auto-rerun is due next, and when."""
        if not self.auto:
            return None
        fid, (_, due) = min(self.auto.items(), key=lambda kv: kv[1][1])
        return fid, due

    async def follow_fragment(self, fid: str, timeout: float = 60.0) -> None:
        """Re-send a fragment's rerun as the browser's timer does (skipped while a click is in flight)."""
        entry = self.auto.get(fid)
        if entry is None:
            return
        entry[1] = time.monotonic() + entry[0]
        await self.rerun(fragment=fid, auto=True, timeout=timeout)
        if fid in self.auto:  # the browser's timer keeps its rhythm; one that fell behind fires next tick
            self.auto[fid][1] = max(self.auto[fid][1], time.monotonic() + 0.05)

    async def idle(self, until: float, stop: asyncio.Event | None = None) -> None:
        """Wait until ``until`` (monotonic) or ``stop``, following live fragments meanwhile."""
        while (now := time.monotonic()) < until and self._ws is not None and not (stop and stop.is_set()):
            nxt = self.due_fragment()
            if nxt is not None and nxt[1] <= now:
                await self.follow_fragment(nxt[0])
                continue
            wake = min(until, nxt[1]) if nxt else until
            await asyncio.sleep(max(0.0, min(wake - now, 0.5)))
