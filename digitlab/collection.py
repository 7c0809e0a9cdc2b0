"""The class collection: drawings saved with their true label, so models can be tested on the class's own hand.

The drawings live in a database (``drawings_db``): by default a SQLite file in ./collection (or
DIGITLAB_COLLECTION_DIR), safe for several web processes; PostgreSQL when DIGITLAB_DATABASE_URL names one. Each
drawing is one row (its 28x28 PNG, label, source, time, and who saved it) written in one transaction, so a crash
never leaves half a drawing. Drawings kept the old way in that folder (``<label>_<id>.png`` and index.json) are
imported once, nothing lost. Nothing is unpickled: PNG bytes and text only.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import settings
from .drawings_db import Drawing, Drawings, DrawingsError, database_url
from .models import ModelInfo
from .room_book import RoomBook, room_book
from .store import StoreError, check_writable, remove_all, stale_temporaries
from .train import predict_proba

_lock = threading.Lock()
_databases: dict[str, Drawings] = {}  # one per URL and process: the tables are made, the old folder imported, once
_tidied: set[str] = set()  # folders whose leftovers this process has removed (once, at its first listing)


# The collection's one error type, which every page catches: a bad drawing, and the database that cannot be used
# (drawings_db wraps every driver's error in it; a DrawingsError with PostgreSQL stopped showed a traceback).
CollectionError = DrawingsError


def default_dir() -> Path:
    return settings.get("DIGITLAB_COLLECTION_DIR")


@dataclass(frozen=True)
class Entry:
    id: str
    label: int
    source: str = "canvas"  # "canvas" | "upload" | "imported"
    created: str = ""
    saved_by: str = ""


def _entry(d: Drawing) -> Entry:
    return Entry(d.id, d.label, d.source, d.created, d.saved_by)


class Collection:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_dir()
        self.url = database_url(self.root)

    @property
    def db(self) -> Drawings:
        with _lock:
            if self.url in _databases:
                return _databases[self.url]
        # Opened outside the lock: a database that does not answer makes this session wait (a few seconds, its
        # connect timeout), not every session one after another.
        db = Drawings(self.url)
        db.import_folder(self.root)  # drawings saved before the database: once
        with _lock:
            return _databases.setdefault(self.url, db)

    @property
    def book(self) -> RoomBook:
        """The class's book in the same database: pseudonyms, the teacher's lead, questions, the round."""
        return room_book(self.db)

    def add(self, image: np.ndarray, label: int, source: str = "canvas", saved_by: str = "") -> Entry:
        """Save one 28x28 uint8 digit with its true label. The same digit, label and student saved again (an upload
        saved twice) is kept once: its id comes from them."""
        img = np.asarray(image)
        if img.shape != (28, 28):
            raise CollectionError(f"A collection image must be 28x28, not {img.shape}.")
        if not 0 <= int(label) <= 9:
            raise CollectionError(f"The label must be a digit 0-9, not {label!r}.")
        pixels = img.astype(np.uint8)
        same = hashlib.sha256(f"{saved_by}|{int(label)}|".encode() + pixels.tobytes()).hexdigest()[:12]
        return _entry(self.db.add(pixels, int(label), source, saved_by, drawing_id=same if saved_by else None))

    def delete(self, entry_id: str) -> None:
        self.db.delete(entry_id)

    def check_writable(self) -> None:
        """StoreError, with a message fit for a page, unless a drawing can be saved."""
        if self.url.startswith("sqlite:///"):
            check_writable(self.root, "the collection folder")
        try:
            self.db.version()  # the database answers
        except CollectionError as e:
            raise StoreError(str(e)) from None

    def tidy(self) -> list[str]:
        """Remove the temporary files of saves that never finished; what was removed, one line each."""
        return remove_all(stale_temporaries(self.root))

    def version(self) -> tuple:
        """Changes whenever a drawing is added or removed: what a cached score of the collection is keyed on."""
        return self.url, self.db.version()

    def list(self) -> list[Entry]:
        """Every drawing, oldest first."""
        if str(self.root) not in _tidied and self.root.is_dir():
            _tidied.add(str(self.root))
            self.tidy()
        return [_entry(d) for d in self.db.list()]

    def counts(self) -> list[int]:
        return self.db.counts()

    def png(self, entry_id: str) -> bytes | None:
        """One drawing as a PNG, for a page to show."""
        return self.db.png(entry_id)

    def load(self) -> tuple[torch.Tensor, torch.Tensor, list[Entry]]:
        """All drawings as uint8 [N, 28, 28] with int64 labels; unreadable ones are skipped."""
        images, labels, rows = self.db.load()
        return images, labels, [_entry(d) for d in rows]


def accuracy_on(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of the collection a ten-class model gets right."""
    if len(labels) == 0:
        return float("nan")
    return float((probs.argmax(1) == labels).float().mean())


@dataclass(frozen=True)
class Summary:
    size: int
    counts: list[int]  # drawings per digit, of those that could be read
    scores: list[dict]  # one row per ten-class model: title, preset, accuracy here and on MNIST


def summarize(collection: Collection, models: list[tuple[torch.nn.Module, ModelInfo]]) -> Summary:
    """How the class's own handwriting is spread over the digits, and how each ten-class model does on it."""
    images, labels, entries = collection.load()
    scores = [
        {
            "model": info.config.title,
            "accuracy on the collection": accuracy_on(predict_proba(model, info.config, images), labels),
            "MNIST test accuracy": info.metrics.get("test_accuracy"),
            "preset": info.config.preset,
        }
        for model, info in models
        if not info.config.pair and entries
    ]
    return Summary(len(entries), torch.bincount(labels, minlength=10).tolist(), scores)
