"""The class together, kept in the collection's database: who is who (pseudonyms), which runs each asked for, the
teacher's lead (follow me, Train held), the question put to the class and its answers, the fool-the-model round and
the drawings saved in it.

A browser is known by ``browser_key``: a hash of a random token its own storage keeps (never its address, never a
name). Each gets a pseudonym, an adjective and an animal, unique in the class and changeable to another pair from
the same two lists: no one is ever asked for a real name. Erasing a pseudonym removes, in one transaction, the
pseudonym, its drawings, its answers, its round drawings and what it asked for; ``erase`` returns the runs only it
asked for, whose models the caller removes from the store. Nothing else about a student is kept.

The shared state (lead, question, round) is a JSON value per key, read through a short per-process cache, so 60
students polling every second cost the database a few reads a second, whichever database it is.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from .drawings_db import Drawings, DrawingsError

ADJECTIVES = ("Amber", "Brave", "Bright", "Calm", "Clever", "Cosy", "Curious", "Daring", "Eager", "Fluffy", "Gentle",
              "Golden", "Happy", "Jolly", "Keen", "Kind", "Lively", "Lucky", "Merry", "Mighty", "Nimble", "Patient",
              "Plucky", "Quick", "Quiet", "Sunny", "Swift", "Tidy", "Witty", "Wise", "Zany", "Zesty")
ANIMALS = ("Badger", "Beaver", "Bison", "Crane", "Dolphin", "Eagle", "Falcon", "Ferret", "Fox", "Gecko", "Heron",
           "Hedgehog", "Koala", "Lemur", "Lynx", "Marmot", "Moose", "Narwhal", "Newt", "Otter", "Owl", "Panda",
           "Puffin", "Quokka", "Raven", "Robin", "Salmon", "Seal", "Tapir", "Turtle", "Walrus", "Wombat")
TOKEN = re.compile(r"[0-9a-f]{32}")  # what a browser's storage holds: 128 random bits as hex
KEY = re.compile(r"[0-9a-f]{16}")  # browser_key's hash
CACHE_S = 0.5  # the shared state read from the database at most twice a second per process
TRIES = 12  # pairs tried for a new browser before a pair with a number, and as many of those
MAX_CACHED = 5000  # names cached per process at most
NAMES_S = 10.0  # a pseudonym read from the database at most this often per process (a rename here: at once)
QUESTIONS = {
    "accuracy": "What test accuracy will it reach?",
    "digit": "Which digit will it get wrong most often?",
}
MAX_ROUND_DRAWINGS = 5000  # a round's drawings shown in its gallery at most (the newest)


class RoomError(ValueError):
    """A change the class's book refuses, with a message fit for a page."""


def browser_key(token: object) -> str:
    """The browser's key from the token its storage sent: a hash (the token itself is never kept). Anything but 32
    hex digits (a client can send anything) is refused."""
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise RoomError("not a browser token")
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def is_browser_key(key: object) -> bool:
    """Whether ``key`` is a browser's key (a session that never said its browser's token has another kind of id)."""
    return isinstance(key, str) and KEY.fullmatch(key) is not None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Question:
    id: str
    kind: str  # a key of QUESTIONS
    job: str  # the run it is about
    about: str  # that run's title, as the students read it
    opened: float  # time.time()

    @property
    def text(self) -> str:
        return QUESTIONS[self.kind]


@dataclass(frozen=True)
class Round:
    id: str
    model_id: str  # the model to fool
    started: float
    ended: float = 0.0  # 0 while it runs
    finetune_job: str = ""  # the fine-tuning started at its end, if any
    tuned_id: str = ""  # the fine-tuned model, once stored


@dataclass(frozen=True)
class RoundDrawing:
    drawing: str
    browser: str
    label: int
    predicted: int
    confidence: float
    png: bytes = b""  # the drawing, as stored

    @property
    def fooled(self) -> bool:
        return self.predicted != self.label


class RoomBook:
    """The class's tables beside the drawings, in the same database (SQLite or PostgreSQL)."""

    def __init__(self, drawings: Drawings):
        self.db = drawings
        self._cache: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()
        m = drawings.mark
        self._m = m
        with drawings.transaction() as db:
            if drawings.postgres:
                db.execute("SELECT pg_advisory_xact_lock(20261207)")
            db.execute("CREATE TABLE IF NOT EXISTS pseudonyms (browser TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                       "created TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS asked (browser TEXT NOT NULL, config_key TEXT NOT NULL, "
                       "PRIMARY KEY (browser, config_key))")
            db.execute("CREATE TABLE IF NOT EXISTS answers (question TEXT NOT NULL, browser TEXT NOT NULL, "
                       "value REAL NOT NULL, created TEXT NOT NULL, PRIMARY KEY (question, browser))")
            db.execute("CREATE TABLE IF NOT EXISTS round_drawings (drawing TEXT PRIMARY KEY, round TEXT NOT NULL, "
                       "browser TEXT NOT NULL, label INTEGER NOT NULL, predicted INTEGER NOT NULL, "
                       "confidence REAL NOT NULL, created TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS room_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    # ------------------------------------------------------------ pseudonyms

    def pseudonym(self, browser: str) -> str:
        """This browser's pseudonym; the first time, the first free pair in an order drawn from its key. Read through
        the per-process cache (every page run shows it): a rename elsewhere shows within NAMES_S."""
        with self._lock:
            hit = self._cache.get(f"name {browser}")
            if hit and time.monotonic() - hit[0] < NAMES_S:
                return hit[1]  # type: ignore[return-value]
        name = self._pseudonym(browser)
        with self._lock:
            if len(self._cache) > MAX_CACHED:  # a client inventing browsers fills nothing: the cache starts again
                self._cache.clear()
            self._cache[f"name {browser}"] = (time.monotonic(), name)
        return name

    def _pseudonym(self, browser: str) -> str:
        q = f"SELECT name FROM pseudonyms WHERE browser = {self._m}"
        with self.db.transaction() as db:
            if row := db.execute(q, (browser,)).fetchone():
                return row[0]
        n, start = len(ADJECTIVES) * len(ANIMALS), int(hashlib.sha256(browser.encode()).hexdigest()[:8], 16)
        rng = random.Random(start)
        for i in range(2 * TRIES):  # a bounded number of tries, however many names are taken (a client inventing
            k = (start + i * 7) % n  # browsers cannot make every new page run try thousands): first plain pairs,
            name = f"{ADJECTIVES[k // len(ANIMALS)]} {ANIMALS[k % len(ANIMALS)]}"  # then a pair and a number
            if i >= TRIES:
                name += f" {rng.randrange(2, 10_000)}"
            with self.db.transaction() as db:
                db.execute(f"INSERT INTO pseudonyms (browser, name, created) VALUES ({self._m}, {self._m}, {self._m}) "
                           "ON CONFLICT DO NOTHING", (browser, name, _now()))
                if row := db.execute(q, (browser,)).fetchone():
                    return row[0]
        raise RoomError("every pseudonym is taken")

    def rename(self, browser: str, adjective: str, animal: str) -> str:
        """Another pair from the two lists (never free text: no real name can be typed); refused when taken."""
        if adjective not in ADJECTIVES or animal not in ANIMALS:
            raise RoomError("a pseudonym is one of the listed adjectives and one of the listed animals")
        name = f"{adjective} {animal}"
        self.pseudonym(browser)
        with self.db.transaction() as db:
            taken = db.execute(f"SELECT browser FROM pseudonyms WHERE name = {self._m}", (name,)).fetchone()
            if taken and taken[0] != browser:
                raise RoomError(f"{name} is taken by someone else in the class: pick another pair")
            db.execute(f"UPDATE pseudonyms SET name = {self._m} WHERE browser = {self._m}", (name, browser))
        self._forget()
        return name

    def names(self) -> dict[str, str]:
        """Every browser's pseudonym."""
        with self.db.transaction() as db:
            return dict(db.execute("SELECT browser, name FROM pseudonyms ORDER BY name").fetchall())

    def asked(self, browser: str, config_key: str) -> None:
        """``browser`` asked for a run of this config (its model is theirs, shared with whoever asked the same)."""
        with self.db.transaction() as db:
            db.execute(f"INSERT INTO asked (browser, config_key) VALUES ({self._m}, {self._m}) ON CONFLICT DO NOTHING",
                       (browser, config_key))

    def asked_by(self) -> dict[str, set[str]]:
        """config key -> the browsers that asked for it."""
        out: dict[str, set[str]] = {}
        with self.db.transaction() as db:
            for browser, key in db.execute("SELECT browser, config_key FROM asked").fetchall():
                out.setdefault(key, set()).add(browser)
        return out

    def holdings(self, browser: str) -> dict[str, int]:
        """How much the class's book holds of one browser, by kind."""
        m = self._m
        with self.db.transaction() as db:
            return {what: int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} = {m}", (browser,)).fetchone()[0])
                    for what, table, col in (("drawings", "drawings", "saved_by"), ("answers", "answers", "browser"),
                                             ("runs asked for", "asked", "browser"),
                                             ("round drawings", "round_drawings", "browser"))}

    def erase(self, browser: str) -> tuple[dict[str, int], set[str]]:
        """Everything of one browser, in one transaction: its drawings, answers, round drawings, what it asked for
        and its pseudonym. Returns what was removed and the config keys nobody else asked for (their models are
        the caller's to remove)."""
        m, removed = self._m, {}
        with self.db.transaction() as db:
            keys = {k for (k,) in db.execute(f"SELECT config_key FROM asked WHERE browser = {m}", (browser,))}
            others = {k for (k,) in db.execute(f"SELECT config_key FROM asked WHERE browser <> {m}", (browser,))}
            for what, table, col in (("drawings", "drawings", "saved_by"), ("answers", "answers", "browser"),
                                     ("round drawings", "round_drawings", "browser"),
                                     ("runs asked for", "asked", "browser"), ("pseudonym", "pseudonyms", "browser")):
                removed[what] = db.execute(f"DELETE FROM {table} WHERE {col} = {m}", (browser,)).rowcount
            if removed["drawings"]:
                db.execute("UPDATE changes SET n = n + 1 WHERE one = 1")
        self._forget()
        return removed, keys - others

    # ------------------------------------------------------------ the shared state: lead, question, round

    def _get(self, key: str) -> dict | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit and time.monotonic() - hit[0] < CACHE_S:
                return hit[1]  # type: ignore[return-value]
        with self.db.transaction() as db:
            row = db.execute(f"SELECT value FROM room_state WHERE key = {self._m}", (key,)).fetchone()
        value = json.loads(row[0]) if row else None
        with self._lock:
            self._cache[key] = (time.monotonic(), value)
        return value

    def _set(self, key: str, value: dict | None) -> None:
        m = self._m
        with self.db.transaction() as db:
            if value is None:
                db.execute(f"DELETE FROM room_state WHERE key = {m}", (key,))
            else:
                db.execute(f"INSERT INTO room_state (key, value) VALUES ({m}, {m}) ON CONFLICT (key) DO UPDATE "
                           "SET value = excluded.value", (key, json.dumps(value)))
        self._forget()

    def _forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def lead(self) -> dict:
        """The teacher's lead: {"on", "page", "query", "n" (one more per move), "hold_until" (Train held)}."""
        return self._get("lead") or {"on": False, "page": "", "query": {}, "n": 0, "hold_until": 0.0}

    def set_lead(self, on: bool | None = None, page: str | None = None, query: dict | None = None,
                 hold_s: float | None = None) -> dict:
        lead = dict(self.lead())
        moved = (page is not None and page != lead["page"]) or (query is not None and query != lead["query"])
        if on is not None:
            moved = moved or (on and not lead["on"])
            lead["on"] = on
        lead["page"] = lead["page"] if page is None else page
        lead["query"] = lead["query"] if query is None else {str(k): str(v) for k, v in query.items()}
        if hold_s is not None:
            lead["hold_until"] = time.time() + hold_s if hold_s > 0 else 0.0
        lead["n"] += moved
        self._set("lead", lead)
        return lead

    def held_for(self) -> float:
        """Seconds left of the teacher's hold on the class's Train buttons (0: none)."""
        return max(0.0, float(self.lead().get("hold_until") or 0.0) - time.time())

    def question(self) -> Question | None:
        value = self._get("question")
        return Question(**value) if value else None

    def ask(self, kind: str, job: str, about: str) -> Question:
        if kind not in QUESTIONS:
            raise RoomError(f"no such question: {kind!r}")
        q = Question(uuid.uuid4().hex[:12], kind, job, about[:200], time.time())
        self._set("question", q.__dict__)
        return q

    def close_question(self) -> None:
        self._set("question", None)

    def answer(self, question: Question, browser: str, value: object) -> float:
        """One answer per browser (a second replaces the first), checked: a client can send anything."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RoomError("an answer is a number")
        lo, hi = (0.0, 100.0) if question.kind == "accuracy" else (0.0, 9.0)
        if not lo <= value <= hi or (question.kind == "digit" and value != int(value)):
            raise RoomError(f"an answer to this question is {'a percentage 0-100' if hi == 100 else 'a digit 0-9'}")
        m = self._m
        with self.db.transaction() as db:
            db.execute(f"INSERT INTO answers (question, browser, value, created) VALUES ({m}, {m}, {m}, {m}) "
                       "ON CONFLICT (question, browser) DO UPDATE SET value = excluded.value",
                       (question.id, browser, float(value), _now()))
        self._forget()
        return float(value)

    def answers(self, question_id: str) -> dict[str, float]:
        """browser -> answer, through the per-process cache (every student's class bar reads it while the question
        is open; an answer given here shows at once, one given in another web process within CACHE_S)."""
        key = f"answers {question_id}"
        with self._lock:
            hit = self._cache.get(key)
            if hit and time.monotonic() - hit[0] < CACHE_S:
                return hit[1]  # type: ignore[return-value]
        with self.db.transaction() as db:
            value = dict(db.execute(f"SELECT browser, value FROM answers WHERE question = {self._m}",
                                    (question_id,)).fetchall())
        with self._lock:
            self._cache[key] = (time.monotonic(), value)
        return value

    def round(self) -> Round | None:
        value = self._get("round")
        return Round(**value) if value else None

    def start_round(self, model_id: str) -> Round:
        r = Round(uuid.uuid4().hex[:12], model_id, time.time())
        self._set("round", r.__dict__)
        return r

    def update_round(self, **changes) -> Round:
        r = self.round()
        if r is None:
            raise RoomError("no round has been started")
        r = Round(**{**r.__dict__, **changes})
        self._set("round", r.__dict__)
        return r

    def round_drawing(self, r: Round, drawing: str, browser: str, label: int, predicted: int, confidence: float) -> None:
        """A drawing saved during round ``r`` with what the round's model answered; the same drawing once."""
        m = self._m
        with self.db.transaction() as db:
            db.execute(f"INSERT INTO round_drawings (drawing, round, browser, label, predicted, confidence, created) "
                       f"VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}) ON CONFLICT DO NOTHING",
                       (drawing, r.id, browser, int(label), int(predicted), float(confidence), _now()))

    def round_counts(self, round_id: str) -> tuple[int, int, int]:
        """The round's drawings, those that fooled the model, and the students who fooled it (one query)."""
        with self.db.transaction() as db:
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(CASE WHEN r.predicted <> r.label THEN 1 ELSE 0 END), 0), "
                             "COUNT(DISTINCT CASE WHEN r.predicted <> r.label THEN r.browser END) FROM round_drawings r "
                             f"JOIN drawings d ON d.id = r.drawing WHERE r.round = {self._m}", (round_id,)).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def round_drawings(self, round_id: str, fooled_only: bool = False, limit: int = MAX_ROUND_DRAWINGS) -> list[RoundDrawing]:
        """The round's drawings (or those that fooled the model), newest first, at most ``limit`` (those since removed
        from the collection left out)."""
        m = self._m
        only = " AND r.predicted <> r.label" if fooled_only else ""
        with self.db.transaction() as db:
            rows = db.execute("SELECT r.drawing, r.browser, r.label, r.predicted, r.confidence, d.png "
                              "FROM round_drawings r "
                              f"JOIN drawings d ON d.id = r.drawing WHERE r.round = {m}{only} "
                              f"ORDER BY r.created DESC, r.drawing LIMIT {int(limit)}", (round_id,)).fetchall()
        return [RoundDrawing(d, b, int(lab), int(p), float(c), bytes(png)) for d, b, lab, p, c, png in rows]


_books: dict[str, RoomBook] = {}
_books_lock = threading.Lock()


def room_book(drawings: Drawings) -> RoomBook:
    """One book per database and process (its tables made once)."""
    with _books_lock:
        if drawings.url not in _books:
            _books[drawings.url] = RoomBook(drawings)
        return _books[drawings.url]


__all__ = ["ADJECTIVES", "ANIMALS", "QUESTIONS", "DrawingsError", "Question", "RoomBook", "RoomError", "Round",
           "RoundDrawing", "browser_key", "is_browser_key", "room_book"]
