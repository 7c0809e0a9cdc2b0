"""Who is where in the room: each browser's last page and when it opened it, for the Teacher page's "The room now".

A browser is its key (``room_book.browser_key``: a hash of a token its own storage keeps, never its address), or the
session until the browser has said it. Only the last page of each is kept, for WINDOW_S; at most
MAX_BROWSERS of them (the oldest go first), so no client can fill the server's memory by inventing browsers.
One web process's room: under ``serve --web N`` each process counts the browsers it serves.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

WINDOW_S = 600.0  # a browser that opened no page for this long has left (or is reading: a page stays open quietly)
MAX_BROWSERS = 2000


class Presence:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._last: dict[str, tuple[str, float]] = {}  # browser -> (page, when), oldest first
        self._lock = threading.Lock()

    def seen(self, browser: str, page: str) -> None:
        """``browser`` has just opened (or rerun) ``page``."""
        with self._lock:
            self._last.pop(browser, None)  # to the end: the dict stays in order of last visit
            self._last[browser] = (page, self._clock())
            while len(self._last) > MAX_BROWSERS:
                del self._last[next(iter(self._last))]

    def forget(self, browser: str) -> None:
        """``browser`` is known by another name now (a session whose browser has said its key)."""
        with self._lock:
            self._last.pop(browser, None)

    def counts(self, window: float = WINDOW_S) -> Counter:
        """How many browsers are on each page: those seen within ``window`` seconds, by the last page they opened."""
        with self._lock:
            since = self._clock() - window
            for browser in [b for b, (_, when) in self._last.items() if when < since]:
                del self._last[browser]
            return Counter(page for page, _ in self._last.values())
