"""The class collection in a real database: drawings, labels, source, time and who saved each.

SQLite by default -- one file beside the collection, in WAL mode, safe for several web processes at once --
or PostgreSQL when ``DIGITLAB_DATABASE_URL`` names one (``postgresql://user@host:port/db``, through psycopg 3).
Each drawing is one row holding its 28x28 PNG, written in one transaction: a process killed mid-save leaves
the database whole, and a save retried with the same id is stored once. A collection kept the old way (a
folder of PNGs with a JSON index) is imported once, nothing lost. Nothing is unpickled: PNG bytes and text.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import settings
from .images import ImageError, open_image

if TYPE_CHECKING:
    import torch

SQLITE_FILE = "collection.sqlite3"
BUSY_TIMEOUT_S = 30  # how long a SQLite save waits for another process's save to finish before giving up
CONNECT_TIMEOUT_S = 3  # PostgreSQL: a server that does not answer is said so in seconds, not half a minute
STATEMENT_TIMEOUT_MS = 5000  # ...and a statement it does not finish


@dataclass(frozen=True)
class Drawing:
    id: str
    label: int
    source: str  # "canvas" | "upload" | "imported"
    created: str  # ISO time, UTC
    saved_by: str = ""  # the browser session that saved it, or the folder it was imported from


class DrawingsError(Exception):
    """The database cannot be used, with a message fit for a page."""


def database_url(collection_dir: str | Path) -> str:
    """DIGITLAB_DATABASE_URL if set, else the SQLite file inside the collection folder."""
    return settings.get("DIGITLAB_DATABASE_URL") or f"sqlite:///{Path(collection_dir) / SQLITE_FILE}"


def png_bytes(image: np.ndarray) -> bytes:
    if image.shape != (28, 28) or image.dtype != np.uint8:
        raise DrawingsError(f"a drawing is a 28x28 uint8 image, not {image.shape} {image.dtype}")
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def decode(png: bytes) -> np.ndarray:
    """A stored drawing's PNG -> 28x28 uint8, through the one image door with a drawing's limits (a row written by
    anything else than DigitLab could hold anything)."""
    try:
        im, _ = open_image(png, formats=("PNG",), max_bytes=64 * 1024, max_pixels=28 * 28, what="stored drawing")
    except ImageError as e:
        raise DrawingsError(f"a stored drawing is not a 28x28 PNG: {e}") from None
    return np.asarray(im.convert("L"))


def _write_ahead(conn: sqlite3.Connection) -> None:
    """SQLite's write-ahead log (readers never wait for a writer; several processes share it), set once: it stays in
    the file. Setting it fails at once with "database is locked", whatever the busy timeout, while another connection
    works: set on every connection, a listing beside saves said the database would not open, and two sessions opening
    a new collection together raced to set it. Another connection setting it meanwhile is as good."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Drawings:
    """The collection's table, in SQLite or PostgreSQL; every method opens its own short connection."""

    def __init__(self, url: str):
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if not self.postgres and not url.startswith("sqlite:///"):
            raise DrawingsError(f"DIGITLAB_DATABASE_URL must start with postgresql:// or sqlite:///, not {url[:20]!r}")
        self.mark = "%s" if self.postgres else "?"  # the two drivers' placeholders
        blob = "BYTEA" if self.postgres else "BLOB"
        with self._connect() as db:
            if self.postgres:  # several processes may start at once: one creates the tables, the others wait
                db.execute("SELECT pg_advisory_xact_lock(20261125)")
            db.execute(f"""CREATE TABLE IF NOT EXISTS drawings (
                id TEXT PRIMARY KEY,
                label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
                png {blob} NOT NULL,
                source TEXT NOT NULL,
                created TEXT NOT NULL,
                saved_by TEXT NOT NULL DEFAULT '')""")
            db.execute("CREATE TABLE IF NOT EXISTS imports (folder TEXT PRIMARY KEY, imported TEXT, drawings INTEGER)")
            # one row counting every change, bumped in the same transaction as the change: what caches key on
            db.execute("CREATE TABLE IF NOT EXISTS changes (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER NOT NULL)")
            db.execute("INSERT INTO changes (one, n) VALUES (1, 0) ON CONFLICT (one) DO NOTHING")

    @contextmanager
    def _connect(self):
        """A connection whose work is one transaction: committed on success, rolled back on any error."""
        try:
            if self.postgres:
                import psycopg

                conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S,
                                       options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")
            else:
                path = Path(self.url.removeprefix("sqlite:///"))
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
                _write_ahead(conn)
        except Exception as e:  # noqa: BLE001 - any driver's connection error becomes one plain message
            raise DrawingsError(f"cannot open the collection's database ({self.safe_url}): {e}") from None
        try:
            with conn:  # both drivers: commit on success, roll back on error
                yield conn
        except DrawingsError:
            raise
        except Exception as e:  # noqa: BLE001 - a driver's error mid-work (the server shut down, a timeout): one type
            if type(e).__module__.split(".")[0] not in ("sqlite3", "psycopg"):
                raise
            raise DrawingsError(f"the collection's database stopped answering ({self.safe_url}): "
                                f"{type(e).__name__}") from None
        finally:
            conn.close()

    transaction = _connect  # public: the class's book (room_book) keeps its tables in the same database

    @property
    def safe_url(self) -> str:
        """The URL without a password, for messages."""
        if "@" in self.url and self.postgres:
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://…@{rest.split('@', 1)[1]}"
        return self.url

    def add(self, image: np.ndarray, label: int, source: str = "canvas", saved_by: str = "",
            drawing_id: str | None = None) -> Drawing:
        """Store one drawing. The same ``drawing_id`` saved twice (a retried click) is stored once."""
        if not 0 <= int(label) <= 9:
            raise DrawingsError(f"a label is a digit 0-9, not {label!r}")
        drawing = Drawing(drawing_id or uuid.uuid4().hex[:12], int(label), source,
                          datetime.now(UTC).isoformat(timespec="seconds"), saved_by)
        self._insert(drawing, png_bytes(image))
        return drawing

    def _insert(self, d: Drawing, png: bytes, db=None) -> bool:
        q = (f"INSERT INTO drawings (id, label, png, source, created, saved_by) VALUES ({', '.join([self.mark] * 6)}) "
             "ON CONFLICT (id) DO NOTHING")
        if db is not None:
            return self._changed(db, db.execute(q, (d.id, d.label, png, d.source, d.created, d.saved_by)).rowcount)
        with self._connect() as conn:
            return self._changed(conn, conn.execute(q, (d.id, d.label, png, d.source, d.created, d.saved_by)).rowcount)

    @staticmethod
    def _changed(db, rows: int) -> bool:
        if rows:
            db.execute("UPDATE changes SET n = n + 1 WHERE one = 1")
        return rows == 1

    def delete(self, drawing_id: str) -> bool:
        with self._connect() as db:
            return self._changed(db, db.execute(f"DELETE FROM drawings WHERE id = {self.mark}", (drawing_id,)).rowcount)

    def version(self) -> int:
        """How many changes the collection has seen: it moves with every drawing added or removed."""
        with self._connect() as db:
            return int(db.execute("SELECT n FROM changes WHERE one = 1").fetchone()[0])

    def png(self, drawing_id: str) -> bytes | None:
        """One drawing's 28x28 PNG, as stored."""
        with self._connect() as db:
            row = db.execute(f"SELECT png FROM drawings WHERE id = {self.mark}", (drawing_id,)).fetchone()
        return bytes(row[0]) if row else None

    def list(self) -> list[Drawing]:
        with self._connect() as db:
            rows = db.execute("SELECT id, label, source, created, saved_by FROM drawings ORDER BY created, id").fetchall()
        return [Drawing(*row) for row in rows]

    def counts(self) -> list[int]:
        out = [0] * 10
        with self._connect() as db:
            for label, n in db.execute("SELECT label, COUNT(*) FROM drawings GROUP BY label").fetchall():
                out[int(label)] = int(n)
        return out

    def load(self) -> tuple[torch.Tensor, torch.Tensor, list[Drawing]]:
        """Every drawing as uint8 [N, 28, 28] with int64 labels; a row whose PNG cannot be read is skipped."""
        import torch  # here, not at the top: saving a drawing needs no torch, and a saving process starts fast

        with self._connect() as db:
            rows = db.execute("SELECT id, label, source, created, saved_by, png FROM drawings "
                              "ORDER BY created, id").fetchall()
        images, kept = [], []
        for *fields, png in rows:
            try:
                image = decode(bytes(png))
            except Exception:  # noqa: BLE001 - one damaged row must not hide the rest
                continue
            if image.shape == (28, 28):
                images.append(image)
                kept.append(Drawing(*fields))
        if not images:
            return torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), []
        labels = torch.tensor([d.label for d in kept], dtype=torch.int64)
        return torch.from_numpy(np.stack(images)), labels, kept

    def import_folder(self, folder: str | Path) -> int:
        """Bring in a collection kept the old way (``<label>_<id>.png`` and index.json), once; returns how many
        drawings were added. Ids are kept, so running it again, or from two processes at once, adds nothing."""
        folder = Path(folder).resolve()
        if not folder.is_dir():
            return 0
        index = {}
        try:
            index = {e["id"]: e for e in json.loads((folder / "index.json").read_text()).get("entries", [])}
        except (OSError, ValueError, AttributeError, TypeError, KeyError):
            pass  # the file names alone carry id and label
        added = 0
        with self._connect() as db:
            if db.execute(f"SELECT 1 FROM imports WHERE folder = {self.mark}", (str(folder),)).fetchone():
                return 0
            for path in sorted(folder.glob("[0-9]_*.png")):
                label, _, drawing_id = path.stem.partition("_")
                try:
                    png = png_bytes(decode(path.read_bytes()))
                except Exception:  # noqa: BLE001 - a damaged file is left where it is, not imported
                    continue
                meta = index.get(drawing_id, {})
                created = str(meta.get("created") or datetime.fromtimestamp(path.stat().st_mtime, UTC)
                              .isoformat(timespec="seconds"))
                d = Drawing(drawing_id, int(label), str(meta.get("source") or "imported"), created, str(folder))
                added += self._insert(d, png, db)
            db.execute(f"INSERT INTO imports (folder, imported, drawings) VALUES ({self.mark}, {self.mark}, {self.mark})"
                       " ON CONFLICT (folder) DO NOTHING",
                       (str(folder), datetime.now(UTC).isoformat(timespec="seconds"), added))
        return added
