"""Who is where in the room (digitlab.presence): each browser counted once, on its last page, while it is recent;
never more browsers kept than MAX_BROWSERS, however many a client invents."""

from digitlab import presence
from digitlab.presence import Presence


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_browser_counts_once_on_the_last_page_it_opened():
    clock = Clock()
    room = Presence(clock)
    for browser, page in [("a", "MLP"), ("b", "MLP"), ("c", "CNN"), ("a", "CNN"), ("a", "CNN")]:
        room.seen(browser, page)
    assert room.counts() == {"MLP": 1, "CNN": 2}


def test_a_browser_quiet_for_the_window_has_left():
    clock = Clock()
    room = Presence(clock)
    room.seen("a", "MLP")
    clock.now = 100
    room.seen("b", "CNN")
    clock.now = 100 + presence.WINDOW_S - 1
    assert room.counts() == {"CNN": 1}  # a was last seen WINDOW_S + 99 s ago
    clock.now += 2
    assert room.counts() == {}


def test_a_client_inventing_browsers_fills_nothing(monkeypatch):
    monkeypatch.setattr(presence, "MAX_BROWSERS", 50)
    room = Presence(Clock())
    for i in range(10_000):
        room.seen(f"browser {i}", "Home")
    room.seen("the teacher", "Teacher")
    assert room.counts() == {"Home": 49, "Teacher": 1}  # the newest kept, the oldest dropped
