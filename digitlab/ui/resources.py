"""What every session shares, once per server process: the dataset, the model store and its listing, the job
queue, loaded models, and the memory keeper that collects garbage outside the reruns.

``st.cache_resource`` keeps one copy per process, so every browser session and every page share it. The figures and
views every rerun asks for (``shared``, ``shared_figure``) live in caches of this module instead (cachetools), for two
reasons: a hit costs microseconds where st.cache_resource's hashing and argument inspection cost 0.1-0.3 ms (20-30
hits a CNN page run), and a client's "Clear cache" (any client can send it) cannot make the class compute them again.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import cachetools
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import streamlit as st
import torch

from .. import data as data_mod
from ..collection import Collection, CollectionError
from ..memory import few_malloc_arenas, give_back_free_memory, without_gpu_code_pages
from ..models import ModelInfo
from ..room_book import RoomError, is_browser_key
from ..runs.interface import TrainingQueue
from ..runs.shared import shared_queue
from ..store import ModelStore, Problem, StoreError

T = TypeVar("T")
GC_EVERY_S = 30.0  # a full collection this often, off the rerun path (runner.postScriptGC is off)


@st.cache_resource(show_spinner="Loading the data...")
def _load_data(dataset: str = "mnist") -> data_mod.MNIST:
    # One entry per dataset, never evicted: switching between MNIST and Fashion-MNIST reloads nothing.
    # The app never blocks on a download at start-up: offline classrooms get the sample at once,
    # and the banner offers the download with a progress bar.
    return data_mod.load_dataset(dataset, allow_download=False)


DATASET_KEY = "dataset"  # the session's choice, and the URL's ?dataset=


def dataset_in_use() -> str:
    """The dataset this session works on: its sidebar choice, first read from the address (?dataset=fashion), else
    MNIST. An unknown value in the address is MNIST."""
    if DATASET_KEY not in st.session_state:
        asked = st.query_params.get(DATASET_KEY, "mnist")
        st.session_state[DATASET_KEY] = asked if asked in data_mod.DATASETS else "mnist"
    return st.session_state[DATASET_KEY]


def get_data(dataset: str | None = None) -> data_mod.MNIST:
    """The dataset in use (or the one named), loaded once per process (each dataset once)."""
    return _load_data(dataset or dataset_in_use())


@st.cache_resource
def get_store() -> ModelStore:
    return ModelStore()


def get_queue() -> TrainingQueue:
    """The server's one training queue. It lives in digitlab.runs.shared, not in a cache: clearing caches cannot lose it."""
    return shared_queue(get_store())


def stored_models() -> tuple[list[ModelInfo], list[Problem]]:
    """Every usable stored model, newest first, and the files skipped; re-read only when the store changes."""
    return get_store().scan()


def dataset_models(dataset: str | None = None) -> list[ModelInfo]:
    """The stored models trained on ``dataset`` (default: the one in use), newest first."""
    dataset = dataset or dataset_in_use()
    return [i for i in stored_models()[0] if i.config.dataset == dataset]


def key_part(x: Any) -> Any:
    """A shared result's key, by value: a dataset by its content hash, a tensor or an array by its bytes, lists,
    tuples and dicts by their items; anything else as it is (it must be hashable: a TypeError names the mistake)."""
    if isinstance(x, data_mod.MNIST):
        return ("dataset", x.fingerprint())
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return ("array", x.shape, str(x.dtype), hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest())
    if isinstance(x, list | tuple):
        return tuple(key_part(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((k, key_part(v)) for k, v in x.items()))
    hash(x)
    return x


# At most a few hundred kB each (a figure, a table): 128 of them bound the memory, and the dataset-wide ones
# everybody asks for stay in (least recently used goes first). The condition makes the sessions that ask for a
# result being computed wait for it instead of computing it again (60 students arriving on one page).
@cachetools.cached(cachetools.LRUCache(maxsize=128), condition=threading.Condition(),
                   key=lambda func, name, code, args: (name, code, key_part(args)))
def _shared(func: Callable, name: str, code: int, args: tuple) -> Any:
    return frozen(func(*args))


class SharedFigure(go.Figure):
    """A figure the class shares and nobody changes: st.plotly_chart asks for its ``to_dict()`` on every rerun of
    every student (a deep copy, every array re-encoded), so it is worked out once and handed out again."""

    def to_dict(self) -> dict:
        if getattr(self, "_as_dict", None) is None:
            self._as_dict = super().to_dict()
        return self._as_dict


def frozen(result: Any) -> Any:
    """A shared result with each of its figures (alone, in a tuple, a list or a dict) made a SharedFigure."""
    if isinstance(result, go.Figure) and not isinstance(result, SharedFigure):
        result.__class__ = SharedFigure  # the same figure, not a copy: Figure(fig) validates every property again
        return result
    if isinstance(result, tuple):
        return tuple(frozen(r) for r in result)
    if isinstance(result, list):  # the Linear page's four starts come as a list of pairs
        return [frozen(r) for r in result]
    if isinstance(result, dict):
        return {k: frozen(v) for k, v in result.items()}
    return result


def shared(func: Callable[..., T], *args) -> T:
    """``func(*args)`` computed once per process for these arguments and handed to every session.

    For what does not depend on who asks (figures, tables, the baseline of a dataset): one visitor pays, the
    class reuses it. The arguments are the dataset (known by its content hash) and plain values; the result is
    shared, so callers read it and never change it.
    """
    return _shared(func, f"{func.__module__}.{func.__qualname__}", hash(func.__code__), args)


@cachetools.cached(cachetools.LRUCache(maxsize=64), condition=threading.Condition(),  # at most ~1 MB each
                   key=lambda key, build: key_part(key))
def _shared_figure(key: tuple, build: Callable) -> Any:
    return frozen(build())


def shared_figure(key: tuple, build: Callable[..., T], *args, **kwargs) -> T:
    """``build(*args, **kwargs)``, a figure that depends only on ``key`` (what it shows, e.g. a model's weights
    checksum and a setting) and never on the session: built once per process and shared by every session.
    Safe to share: st.plotly_chart copies a figure (to_dict) before sending it and never changes it."""
    return _shared_figure(key, partial(build, *args, **kwargs))


def shared_table(key: tuple, build: Callable[[], list[dict]]) -> pa.Table:
    """The rows ``build()`` makes, as an Arrow table built once per process for ``key`` and handed to st.dataframe by
    every session: Streamlit turns a pandas frame into Arrow on every rerun (a few ms for a small table), an Arrow
    table it only writes out."""
    return shared_figure(("arrow table", *key), lambda: pa.Table.from_pandas(pd.DataFrame(build()), preserve_index=False))


def per_model(func: Callable[..., T], model_id: str) -> T:
    """``func(model, info)`` for a stored model, computed once per process (again if its file changes) and
    handed to every session. Call load_model first: it says on the page why a model cannot be used."""
    store = get_store()
    root, mtime = str(store.root), _model_mtime(store, model_id)
    key = (f"{func.__module__}.{func.__qualname__}", hash(func.__code__), root, model_id, mtime)
    return shared_figure(key, lambda: func(*_load_model(root, model_id, mtime)))


_PAGE_FRAGMENTS: dict[tuple[str, str], Callable[[], None]] = {}


def page_fragment(name: str, title: str, draw: Callable[[], None], run_every: float) -> Callable[[], None]:
    """``draw`` as a fragment redrawn every ``run_every`` s, one of its own on each page ``title``. Streamlit names a
    fragment by its function and its place on the page, the same on every page here (the class bar's poll, the
    sidebar's training line), so a redraw the browser asked for just before a move to another page ran into the new
    page before the browser had drawn it (the browser's "Bad delta path", a dead tab)."""
    if (fragment := _PAGE_FRAGMENTS.get((name, title))) is None:
        def fragment() -> None:
            draw()

        fragment.__qualname__ = f"{name}[{title}]"
        fragment = _PAGE_FRAGMENTS.setdefault((name, title), st.fragment(fragment, run_every=run_every))
    return fragment


PAGES: dict[str, st.Page] = {}  # page_setup's title -> the page as st.navigation knows it (ui.together's follow me)
BROWSER = "browser"  # session state: this browser's key (ui.together, from a token in the browser's own storage)
TEACHER = "teacher_unlocked"  # session state: this session gave the teacher key (ui.teacher)


def is_teacher() -> bool:
    return bool(st.session_state.get(TEACHER))


class Throttle:
    """A value that changes many times a second (the class collection's version while 60 students save), taken
    again only when the work it keys has had its share: at most ``share`` of the time goes to recomputing it (the
    work's last duration, ``spent``, sets the wait). Cheap work follows every change at once."""

    def __init__(self, share: float = 0.1):
        self.share, self.cost, self.taken, self.value = share, 0.0, 0.0, None
        self.lock = threading.Lock()

    def take(self, value: Any) -> Any:
        now = time.monotonic()
        with self.lock:
            if self.value is None or (value != self.value and now - self.taken >= self.cost / self.share):
                self.value, self.taken = value, now
            return self.value

    def spent(self, seconds: float) -> None:
        self.cost = seconds


def owner_id() -> str:
    """Whose this session's runs and drawings are: this browser's key (the same across its reloads and tabs), or,
    until the browser has said it (the first moment of a session), an id of this session."""
    return st.session_state.get(BROWSER) or session_id()


def session_id() -> str:
    """An id of this browser tab's session (new at each reload)."""
    if "owner_id" not in st.session_state:
        st.session_state.owner_id = uuid.uuid4().hex[:8]
    return st.session_state.owner_id


XSRF_COOKIE = "_streamlit_xsrf"  # Streamlit sets it once per browser (server.enableXsrfProtection): its tabs share it


def student_place() -> str:
    """Where this session's student is, for the queue's one-waiting-run rule (JobQueue.submit's ``place``): another
    machine's address, or, on this laptop, the browser (its XSRF cookie, one per browser, shared by its tabs); ""
    when neither is known. Thirty tabs of one browser each pressing Train held thirty places in the line."""
    address = st.context.ip_address
    if isinstance(address, str) and address:
        return f"address {address}"
    cookies = st.context.cookies
    cookie = cookies.get(XSRF_COOKIE) if hasattr(cookies, "get") else None
    if isinstance(cookie, str) and cookie:
        return "browser " + hashlib.sha256(cookie.encode()).hexdigest()[:16]  # never the cookie itself
    return ""


def whose(snap) -> str:
    """Whose run a queue snapshot is, as the viewing session sees it: "yours", a student's, or the class's."""
    if not snap.owner:
        return "started for the class"
    if snap.owner == owner_id():
        return "yours"
    return f"started by {pseudonym_of(snap.owner) or 'a student'}"


def needs_book(quiet: bool = False) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A section that reads the class's book (``room_book``, in the collection's database): when the database stops
    answering (PostgreSQL restarted on a school server), the section says so in one line (``quiet``: shows nothing,
    for the class bar on every page) instead of a traceback; the page around it goes on."""
    def wrap(section: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(section)
        def guarded(*args, **kwargs) -> None:
            try:
                section(*args, **kwargs)
            except CollectionError as e:
                if not quiet:
                    st.error(f"The class's book (names, the lead, questions, the round) is kept in the collection's "
                             f"database, which does not answer now: {e}")
        return guarded
    return wrap


def pseudonym_of(key: str) -> str:
    """The pseudonym of a browser key in the class's book; "" when it has none or the book cannot be opened."""
    try:
        return Collection().book.pseudonym(key) if is_browser_key(key) else ""
    except (CollectionError, RoomError):
        return ""


def _model_mtime(store: ModelStore, model_id: str) -> float:
    try:
        return (store.root / f"{model_id}.safetensors").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(max_entries=32, show_spinner=False)
def _load_model(root: str, model_id: str, _mtime: float):
    return ModelStore(root).load(model_id)


def load_model(model_id: str) -> tuple[torch.nn.Module, ModelInfo] | None:
    """A stored model, cached per process; on a missing or damaged file, an error on the page and None."""
    store = get_store()
    try:
        return _load_model(str(store.root), model_id, _model_mtime(store, model_id))
    except StoreError as e:
        st.error(f"This model cannot be used: {e}")
        return None


def _collect_garbage_forever(every: float) -> None:
    while True:
        time.sleep(every)
        gc.collect()
        give_back_free_memory()


few_malloc_arenas()  # once a process, as the first page imports this module: the arenas made before stay
without_gpu_code_pages()  # (torch is imported by now): about 125 MB less in the web server on a machine with no GPU

_keeper: list[threading.Thread] = []
_keeper_lock = threading.Lock()


def memory_keeper() -> threading.Thread:
    """One daemon thread per process that runs a full garbage collection every GC_EVERY_S seconds.

    Streamlit's default (runner.postScriptGC) walks the whole heap after every rerun, about half the server's
    CPU under a class; .streamlit/config.toml turns that off and this keeps memory bounded instead. Kept in this
    module, not in st.cache_resource: any client can send clear_cache, and each one started another thread.
    """
    with _keeper_lock:
        if not _keeper:
            thread = threading.Thread(target=_collect_garbage_forever, args=(GC_EVERY_S,), name="digitlab-gc",
                                      daemon=True)
            thread.start()
            _keeper.append(thread)
        return _keeper[0]
