"""The teacher's key: whether one is set, whether a given one is it (DIGITLAB_TEACHER_KEY), and how many tries the
server answers.

Tries are counted per server, not per session (50 sessions of one student guessed 41 keys a second, issue 29): each
network address may try TRIES_PER_MINUTE wrong keys, then waits a minute, then two, four... (at most an hour);
all the addresses that are not this machine together may try ROOM_TRIES_PER_MINUTE a minute; a try over that is
not checked at all, only told when to try again. The laptop itself
(a loopback address) has its own count, so students guessing from their machines never lock the teacher out.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import settings

TRIES_PER_MINUTE = 5  # wrong keys one address may try in any 60 s
ROOM_TRIES_PER_MINUTE = 20  # wrong keys every address but this machine's may try together in any 60 s
WINDOW_S = 60.0
LOCAL = "this machine"  # how a loopback address (the laptop's own browser, or a proxy on it) is counted


def teacher_key_set() -> bool:
    return settings.is_set("DIGITLAB_TEACHER_KEY")


def teacher_key_ok(given: str) -> bool:
    """Whether ``given`` is the teacher key set when the server started (DIGITLAB_TEACHER_KEY), compared in
    constant time. No key set: nobody manages the class from a browser (the command line on the machine can)."""
    key = settings.get("DIGITLAB_TEACHER_KEY")
    return bool(key) and hmac.compare_digest(given.encode(), key.encode())


@dataclass(frozen=True)
class Answer:
    ok: bool  # the key was checked and is right
    wait_s: float = 0.0  # > 0: not checked; try again after this many seconds


@dataclass(frozen=True)
class Wrong:
    address: str
    at: float  # time.time()


class KeyGuard:
    """The server's one count of key tries (``guard()``); ``check`` answers a try or says when to try again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, per_address: int = TRIES_PER_MINUTE,
                 room: int = ROOM_TRIES_PER_MINUTE):
        self._clock, self._per_address, self._room = clock, per_address, room
        self._lock = threading.Lock()
        self._tries: dict[str, deque[float]] = {}
        self._room_tries: deque[float] = deque()
        self._locked: dict[str, tuple[float, int]] = {}  # address -> (locked until, how many times it was locked)
        self.wrong: deque[Wrong] = deque(maxlen=1000)  # for the teacher's note: who guessed, and when

    def check(self, given: str, address: str | None) -> Answer:
        """``address``: the client's (st.context.ip_address; None for this machine)."""
        who = address or LOCAL
        with self._lock:
            now = self._clock()
            mine = self._tries.setdefault(who, deque())
            counts = [(mine, self._per_address)] + ([(self._room_tries, self._room)] if who != LOCAL else [])
            for tries, _ in counts:
                while tries and now - tries[0] >= WINDOW_S:
                    tries.popleft()
            until, times = self._locked.get(who, (0.0, 0))
            if now < until:
                return Answer(False, until - now)
            if len(mine) >= self._per_address:  # locked: a minute, then two, four... at most an hour
                times = times + 1 if now - until < 3600 else 1
                self._locked[who] = (now + min(3600.0, WINDOW_S * 2 ** (times - 1)), times)
                mine.clear()
                return Answer(False, self._locked[who][0] - now)
            if who != LOCAL and len(self._room_tries) >= self._room:
                return Answer(False, max(1.0, WINDOW_S - (now - self._room_tries[0])))
            ok = teacher_key_ok(given)  # checked under the lock: parallel tries cannot slip past the count
            if not ok:  # only wrong keys use up tries: the teacher unlocking tab after tab never waits
                for tries, _ in counts:
                    tries.append(now)
                self.wrong.append(Wrong(who, time.time()))
            if len(self._tries) > 10_000:  # addresses that have not tried for a minute go
                for k in [k for k, v in self._tries.items() if not v]:
                    del self._tries[k]
        return Answer(ok)

    def wrong_since(self, seconds: float) -> list[Wrong]:
        cutoff = time.time() - seconds
        return [w for w in list(self.wrong) if w.at >= cutoff]


_guard = KeyGuard()


def guard() -> KeyGuard:
    return _guard
