"""The class collection: drawings saved with their true label, so models can be tested on the class's own hand.

Each drawing is a 28x28 PNG named ``<label>_<id>.png`` under ./collection (or DIGITLAB_COLLECTION_DIR),
plus a JSON index with when and how it was made. Both are written atomically (temp file, then rename).
The label lives in the file name too, so if the index is ever lost or damaged it is rebuilt from the
PNGs: a crash never loses a drawing. Nothing is unpickled: PNG and JSON only.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .models import ModelInfo
from .store import atomic_write, check_writable, remove_all, stale_temporaries
from .train import predict_proba

NAME = re.compile(r"^([0-9])_([0-9a-f]{12})\.png$")
_lock = threading.Lock()
_tidied: set[str] = set()  # folders whose leftovers this process has removed (once, at its first listing)


class CollectionError(Exception):
    pass


def default_dir() -> Path:
    return Path(os.environ.get("DIGITLAB_COLLECTION_DIR", "collection"))


@dataclass
class Entry:
    id: str
    label: int
    source: str = "canvas"  # "canvas" | "upload"
    created: str = ""

    @property
    def file(self) -> str:
        return f"{self.label}_{self.id}.png"


class Collection:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_dir()

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def add(self, image: np.ndarray, label: int, source: str = "canvas") -> Entry:
        """Save one 28x28 uint8 digit with its true label."""
        img = np.asarray(image)
        if img.shape != (28, 28):
            raise CollectionError(f"A collection image must be 28x28, not {img.shape}.")
        if not 0 <= int(label) <= 9:
            raise CollectionError(f"The label must be a digit 0-9, not {label!r}.")
        entry = Entry(uuid.uuid4().hex[:12], int(label), source, datetime.now(UTC).isoformat(timespec="seconds"))
        self.root.mkdir(parents=True, exist_ok=True)
        buf = _png_bytes(img.astype(np.uint8))
        with _lock:
            # The index entry first, then the drawing: a listing made between the two never sees the drawing
            # without its source and time (the listing goes by the PNGs, so the entry alone shows nothing).
            # A crash in between leaves an entry with no drawing, which the listing ignores.
            self._write_index([*self.list(), entry])
            atomic_write(self.root / entry.file, buf)
        return entry

    def delete(self, entry_id: str) -> None:
        with _lock:
            entries = self.list()
            keep = [e for e in entries if e.id != entry_id]
            for e in entries:
                if e.id == entry_id:
                    (self.root / e.file).unlink(missing_ok=True)
            self._write_index(keep)

    def check_writable(self) -> None:
        """StoreError, with a message fit for a page, unless a drawing can be saved here."""
        check_writable(self.root, "the collection folder")

    def tidy(self) -> list[str]:
        """Remove the temporary files of saves that never finished; what was removed, one line each."""
        return remove_all(stale_temporaries(self.root))

    def version(self) -> tuple:
        """Changes whenever a drawing is added, deleted or replaced: every write renames a file into the folder,
        which moves the folder's modification time (and two saves within one clock tick change the count of files).
        What a cached score of the collection is keyed on."""
        try:
            st = self.root.stat()
            n = len(os.listdir(self.root))
        except OSError:  # no folder yet: nothing saved
            return (str(self.root),)
        return str(self.root.resolve()), st.st_ino, st.st_mtime_ns, n

    def list(self) -> list[Entry]:
        """Entries for every PNG on disk; details from the index where it has them."""
        if not self.root.is_dir():
            return []
        if str(self.root) not in _tidied:
            _tidied.add(str(self.root))
            self.tidy()
        known: dict[str, Entry] = {}
        try:
            for d in json.loads(self.index_path.read_text()).get("entries", []):
                e = Entry(str(d["id"]), int(d["label"]), str(d.get("source", "canvas")), str(d.get("created", "")))
                known[e.id] = e
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            known = {}  # missing or damaged index: the files still say everything that matters
        out = []
        for p in sorted(self.root.glob("*.png")):
            m = NAME.match(p.name)
            if not m:
                continue
            label, eid = int(m.group(1)), m.group(2)
            e = known.get(eid)
            out.append(e if e is not None and e.label == label else Entry(eid, label, "unknown", ""))
        return sorted(out, key=lambda e: (e.created, e.id))

    def counts(self) -> list[int]:
        c = [0] * 10
        for e in self.list():
            c[e.label] += 1
        return c

    def load(self) -> tuple[torch.Tensor, torch.Tensor, list[Entry]]:
        """All drawings as uint8 [N, 28, 28] with int64 labels; unreadable files are skipped."""
        images, labels, kept = [], [], []
        for e in self.list():
            try:
                with Image.open(self.root / e.file, formats=["PNG"]) as im:
                    a = np.asarray(im.convert("L"))
            except Exception:  # noqa: BLE001 - a damaged file should not hide the rest
                continue
            if a.shape != (28, 28):
                continue
            images.append(a)
            labels.append(e.label)
            kept.append(e)
        if not images:
            return torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), []
        return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64), kept

    def _write_index(self, entries: list[Entry]) -> None:
        blob = json.dumps({"version": 1, "entries": [asdict(e) for e in entries]}, indent=1)
        atomic_write(self.index_path, blob.encode())


def _png_bytes(img: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


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
            "preset": info.config.preset,
            "accuracy on the collection": accuracy_on(predict_proba(model, info.config, images), labels),
            "MNIST test accuracy": info.metrics.get("test_accuracy"),
        }
        for model, info in models
        if info.config.task != "3v7" and entries
    ]
    return Summary(len(entries), torch.bincount(labels, minlength=10).tolist(), scores)
