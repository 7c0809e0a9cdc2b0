"""Trained models on disk: weights as safetensors, a JSON record beside them.

Nothing here unpickles: safetensors holds only tensors, JSON only data. Every file is written
to a temporary name and renamed into place, weights first and record last, so a crash in the
middle of a save leaves the earlier models intact and no half-written model listed.

A record is anyone's file: ``records.check_record`` checks every field's type and range before anything uses it, and
``check_weights`` checks the weights against it (size, checksum, the architecture's tensors) before it is listed. What fails is reported and
skipped, never raised on a page; nothing is allocated for a record until it has passed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from . import models, settings
from .models import (
    ModelInfo,
    TrainConfig,
    build_model,
    count_parameters,
    nn_layers,  # the layers alone, to check a weights file's shapes against
)
from .records import FORMAT_VERSION, MAX_RECORD_BYTES, StoreError, check_record
from .records import ID_OK as _ID_OK

MAX_HEADER_BYTES = 100_000  # a safetensors header lists a few dozen tensors
MAX_WEIGHTS_BYTES = 512 * 1024 * 1024  # the largest network the stages build (6 x 4096 units) is about 350 MB
STALE_TMP_S = 600.0  # a temporary file this old is a save that never finished (a save takes well under a second)


@dataclass(frozen=True)
class Problem:
    name: str
    reason: str


def default_dir() -> Path:
    return settings.get("DIGITLAB_MODEL_DIR")


def skeleton(config: TrainConfig) -> torch.nn.Module:
    """The model's layers with their shapes: what its weights must look like. The nn form's on PyTorch's meta
    device (no numbers); the from-scratch forms, a few thousand numbers, drawn on the CPU from a throwaway generator
    (random numbers on the meta device go through PyTorch's Python reference kernels, whose first use imports its
    compiler, Dynamo: 1.7 s of CPU in a web server that trains nothing)."""
    if config.form == "scratch" and config.kind == "linear":
        return models.Linear1(config.n_outputs, generator=torch.Generator())
    if config.form == "scratch" and config.kind == "mlp":
        return models.SimpleNetScratch(config.hidden[0] if config.hidden else 50, config.n_outputs,
                                       generator=torch.Generator())
    with torch.device("meta"):
        return nn_layers(config, config.n_outputs)


_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32"}


def open_regular(path: Path, limit: int, what: str):
    """``path`` opened for reading if it is a regular file of at most ``limit`` bytes; anything else (a link to
    /dev/zero, a FIFO, a sparse file of gigabytes) is a StoreError from one fstat, never read. Opened without
    blocking, so a FIFO cannot hang the reader. FileNotFoundError passes through."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StoreError(f"its {what} cannot be opened ({e.strerror})") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise StoreError(f"its {what} is not a regular file (a device, a pipe or a folder): not read")
    if st.st_size > limit:
        f.close()
        raise StoreError(f"its {what} is {st.st_size / 1e6:,.1f} MB, more than one this app writes "
                         f"({limit / 1e6:,.0f} MB): not read")
    return f


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (open_regular), read with that bound."""
    with open_regular(path, limit, what) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(size + 1)  # its size and a byte more (read(limit + 1) set aside 512 MB for any small file)
        data += f.read(limit + 1 - len(data)) if len(data) > size else b""  # it grew after the check: on to the bound
    if len(data) > limit:  # it grew past the bound after the check
        raise StoreError(f"its {what} is more than {limit / 1e6:,.0f} MB: not read")
    return data


def read_header(path: Path) -> tuple[dict, int]:
    """The tensors a safetensors file says it holds (name -> dtype, shape, offsets), and the size that implies. Only
    the header is read (its length is checked first): nothing of the size of the weights is allocated."""
    with open_regular(path, MAX_WEIGHTS_BYTES, "weights file") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StoreError("the weights file is damaged (too short for safetensors)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise StoreError("the weights file is damaged (its safetensors header is too large)")
        try:
            header = json.loads(f.read(n))
            tensors = {k: v for k, v in header.items() if k != "__metadata__"}
            end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise StoreError("the weights file is damaged (not valid safetensors)") from None
    return tensors, 8 + n + end


def check_weights(path: Path, record: dict, config: TrainConfig, digest: Callable[[Path], str]) -> None:
    """StoreError unless the weights file is the one the record describes: its size, its checksum, and the very
    tensors (names, shapes, types) the record's architecture has."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StoreError("its weights file is missing") from None
    if "weights_bytes" in record and size != record["weights_bytes"]:
        raise StoreError(f"the weights file is damaged ({size:,} bytes where its record says "
                         f"{record['weights_bytes']:,})")
    tensors, implied = read_header(path)
    if size != implied:
        raise StoreError(f"the weights file is damaged ({size:,} bytes where its header says {implied:,}; "
                         "perhaps cut short)")
    if record.get("weights_sha256") and digest(path) != record["weights_sha256"]:
        raise StoreError("the weights file is damaged (its checksum does not match)")
    want = {k: (_DTYPES.get(v.dtype, "?"), list(v.shape)) for k, v in skeleton(config).state_dict().items()}
    have = {k: (v.get("dtype"), v.get("shape")) for k, v in tensors.items() if isinstance(v, dict)}
    if have != want:
        wrong = [k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)][:3]
        raise StoreError(f"the weights do not fit its architecture ({', '.join(wrong)} differ)")


def atomic_write(path: Path, payload: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_new(path: Path, payload: bytes) -> bool:
    """Write ``payload`` to ``path`` only if no file has that name (created exclusively); False when one has."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return True


class ModelStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_dir()
        self._listing: tuple[tuple, list[ModelInfo], list[Problem]] | None = None
        self._listing_lock = threading.Lock()
        self._digests: dict[tuple, str] = {}  # (path, size, mtime, inode) -> sha256: each file hashed once
        self._checked: dict[tuple, ModelInfo | Problem] = {}  # a model's files' stats -> what checking them said

    # ------------------------------------------------------------ writing

    def save(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        metrics: dict,
        history: list[dict],
        fingerprint: str,
        train_seconds: float,
        extra: dict | None = None,
    ) -> ModelInfo:
        self.root.mkdir(parents=True, exist_ok=True)
        created = dt.datetime.now().astimezone()
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        base, n = f"{config.preset}-{created:%Y%m%d-%H%M%S}-{config.key()[:6]}", 1
        # The id is taken by creating its weights file exclusively: two identical runs saving in the same second
        while True:  # (two command lines) printed one id and stored one model.
            model_id = base if n == 1 else f"{base}-{n}"
            weights = st_save(state, metadata={"digitlab_id": model_id})
            if not (self.root / f"{model_id}.json").exists() and write_new(self.root / f"{model_id}.safetensors",
                                                                          weights):
                break
            n += 1
        record = {
            "format_version": FORMAT_VERSION,
            "id": model_id,
            "title": config.title,
            "config": config.to_dict(),
            "config_key": config.key(),
            "metrics": metrics,
            "history": history,
            "fingerprint": fingerprint,
            "train_seconds": round(train_seconds, 3),
            "created": created.isoformat(timespec="seconds"),
            "parameters": count_parameters(model),
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "weights_bytes": len(weights),
            **(extra or {}),
        }
        try:
            atomic_write(self.root / f"{model_id}.json", json.dumps(record, indent=1).encode())
        except BaseException:  # no record, no model: its weights would only be litter
            (self.root / f"{model_id}.safetensors").unlink(missing_ok=True)
            raise
        return self._info(record, config)

    def check_writable(self) -> None:
        """StoreError, with a message fit for a page, unless a model can be saved here: asked before a run starts,
        so no one trains for minutes to learn the folder was read-only."""
        check_writable(self.root, "the model folder")

    def name(self, model_id: str) -> str:
        """The name the teacher gave the model (rename), or "" when none."""
        try:
            record, _ = self._read_record(self.root / f"{model_id}.json")
        except StoreError:
            return ""
        return record.get("name", "")

    def rename(self, model_id: str, name: str) -> None:
        """Give a model a name of the teacher's choosing (kept in its record as ``name``; the id stays)."""
        name = " ".join(name.split())
        if not 1 <= len(name) <= 80:
            raise StoreError("a model's name is 1 to 80 characters")
        self._check_id(model_id)
        path = self.root / f"{model_id}.json"
        record, _ = self._read_record(path)
        atomic_write(path, json.dumps({**record, "name": name}, indent=1).encode())

    def delete(self, model_id: str) -> None:
        self._check_id(model_id)
        # Record first: once it is gone the model is no longer listed, whatever happens next.
        (self.root / f"{model_id}.json").unlink(missing_ok=True)
        for path in (self.root / f"{model_id}.safetensors", self.analysis_path(model_id),
                     self.root / "exports" / f"digitlab-{model_id}.zip"):  # its zip (export.py), if one was made
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------ reading

    def scan(self) -> tuple[list[ModelInfo], list[Problem]]:
        """Every usable model, newest first, and a reason for each file that was skipped.

        Records are read again only when the folder's listing (names, sizes, modification times) changed:
        pages ask on every rerun, and then it costs one directory read.
        """
        self.tidy_once()
        key = self._listing_key()
        with self._listing_lock:
            if self._listing is not None and self._listing[0] == key:
                return list(self._listing[1]), list(self._listing[2])
        infos, problems = self._read_all()
        with self._listing_lock:
            self._listing = (key, infos, problems)
        return list(infos), list(problems)

    def _listing_key(self) -> tuple:
        try:
            with os.scandir(self.root) as entries:
                return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries
                                    if e.name.endswith((".json", ".safetensors"))))
        except OSError:  # no folder yet (or gone): nothing stored
            return ()

    def _read_all(self) -> tuple[list[ModelInfo], list[Problem]]:
        infos, problems = [], []
        if not self.root.is_dir():
            return infos, problems
        checked = {}
        for path in sorted(self.root.glob("*.json")):
            if path.name.startswith("."):
                continue
            key = (path.name, _stat_key(path), _stat_key(self.root / f"{path.stem}.safetensors"))
            if key not in self._checked:  # a model's files unchanged since the last scan are not read again
                try:
                    record, config = self._read_record(path)
                    check_weights(self.root / f"{path.stem}.safetensors", record, config, self._digest)
                    self._checked[key] = self._info(record, config)
                except StoreError as e:
                    self._checked[key] = Problem(path.stem, str(e))
            checked[key] = self._checked[key]
            (infos if isinstance(checked[key], ModelInfo) else problems).append(checked[key])
        self._checked = checked  # forget files that are gone
        for path in sorted(self.root.glob("*.safetensors")):
            if not path.name.startswith(".") and not path.with_suffix(".json").exists():
                problems.append(Problem(path.stem, "weights with no record (a save that was interrupted); "
                                                   "nothing can use them"))
        infos.sort(key=lambda i: i.created, reverse=True)
        return infos, problems

    def list(self) -> list[ModelInfo]:
        return self.scan()[0]

    def find(self, config: TrainConfig, fingerprint: str) -> ModelInfo | None:
        """A stored model trained with exactly this config on exactly this data, if any."""
        key = config.key()
        for info in self.list():
            if info.config.key() == key and info.fingerprint == fingerprint:
                return info
        return None

    def info(self, model_id: str) -> ModelInfo:
        self._check_id(model_id)
        return self._info(*self._read_record(self.root / f"{model_id}.json"))

    def load(self, model_id: str) -> tuple[nn.Module, ModelInfo]:
        """The model, ready for inference, or StoreError saying why not. The record and the weights file are
        checked (size, checksum, tensor shapes from the header) before the weights are read."""
        self._check_id(model_id)
        record, config = self._read_record(self.root / f"{model_id}.json")
        path = self.root / f"{model_id}.safetensors"
        try:
            check_weights(path, record, config, self._digest)
            payload = read_regular(path, MAX_WEIGHTS_BYTES, "weights file")
        except StoreError as e:
            raise StoreError(f"model {model_id}: {e}") from None
        except FileNotFoundError:
            raise StoreError(f"model {model_id}: its weights file is missing") from None
        if record.get("weights_sha256") and hashlib.sha256(payload).hexdigest() != record["weights_sha256"]:
            raise StoreError(f"model {model_id}: the weights file is damaged (its checksum does not match)")
        try:
            state = st_load(payload)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise StoreError(f"model {model_id}: the weights file is not valid safetensors ({e})") from None
        try:
            model = build_model(config)
            model.load_state_dict(state, strict=True)
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise StoreError(f"model {model_id}: the weights do not fit its architecture ({first})") from None
        model.eval()
        return model, self._info(record, config)

    # ------------------------------------------------------------ helpers

    def _check_id(self, model_id: str) -> None:
        if not _ID_OK.match(model_id or ""):
            raise StoreError(f"{model_id!r} is not a model id")

    def _read_record(self, path: Path) -> tuple[dict, TrainConfig]:
        """The record, checked field by field (check_record), and its config. Its size is checked before it
        is read: a huge file costs one stat, not a parse."""
        try:
            record = json.loads(read_regular(path, MAX_RECORD_BYTES, "record"))
        except FileNotFoundError:
            raise StoreError(f"model {path.stem} does not exist (it may have been deleted)") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise StoreError(f"its record is not readable JSON ({e})") from None
        return check_record(record, path.stem)

    def _digest(self, path: Path) -> str:
        """The file's sha256, hashed again only when the file changed."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in self._digests:
            if len(self._digests) > 4096:
                self._digests.clear()
            self._digests[key] = hashlib.sha256(read_regular(path, MAX_WEIGHTS_BYTES, "weights file")).hexdigest()
        return self._digests[key]

    @staticmethod
    def _info(record: dict, config: TrainConfig) -> ModelInfo:
        """A ModelInfo from a record that passed check_record."""
        return ModelInfo(
            id=record["id"],
            config=config,
            metrics=record["metrics"],
            history=record["history"],
            created=record["created"],
            train_seconds=record["train_seconds"],
            fingerprint=record.get("fingerprint", ""),
            parameters=record["parameters"],
            name=record.get("name", ""),
            continued_from=record.get("continued_from") or "",
        )

    # ------------------------------------------------------------ leftovers of interrupted saves

    def leftovers(self) -> list[Path]:
        """Temporary files of saves that never finished (older than STALE_TMP_S: a save in progress is younger)."""
        return stale_temporaries(self.root) + stale_temporaries(self.root / "analyses")

    def tidy(self) -> list[str]:
        """Remove the leftovers of interrupted saves; what was removed, one line each. Weights without a record
        are kept (and listed among the problems): they are a user's, and a person decides."""
        return remove_all(self.leftovers())

    def tidy_once(self) -> None:
        """tidy() the first time this process reads this folder: at start-up, in effect."""
        key = str(self.root.resolve())
        with _tidied_lock:
            if key in _tidied:
                return
            _tidied.add(key)
        self.tidy()

    # ------------------------------------------------------------ analysis sidecars (digitlab.analysis)
    # A model's analysis (what Evaluate and Features show, computed once) lives in a subfolder, so scan(),
    # which reads only *.json in the root, never lists it, and no model id can collide with it.

    def analysis_path(self, model_id: str) -> Path:
        self._check_id(model_id)
        return self.root / "analyses" / f"{model_id}.safetensors"

    def write_analysis(self, model_id: str, payload: bytes) -> None:
        """Write a model's analysis file atomically (temporary file, then rename)."""
        path = self.analysis_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, payload)

    def weights_sha256(self, model_id: str) -> str:
        """The checksum of the model's weights, as its record keeps it (hashed from the file for older records)."""
        record, _ = self._read_record(self.root / f"{model_id}.json")
        if record.get("weights_sha256"):
            return str(record["weights_sha256"])
        try:
            weights = read_regular(self.root / f"{model_id}.safetensors", MAX_WEIGHTS_BYTES, "weights file")
            return hashlib.sha256(weights).hexdigest()
        except OSError:
            raise StoreError(f"model {model_id}: its weights file is missing") from None


def _stat_key(path: Path) -> tuple:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns, st.st_ino
    except OSError:
        return ()


# ---------------------------------------------------------------- folders: writable, tidy

_tidied: set[str] = set()
_tidied_lock = threading.Lock()


def check_writable(folder: Path, what: str) -> None:
    """StoreError unless a file can be created in ``folder`` (made if missing): tried with a real file, since
    permissions alone do not say (a read-only disk, a full one, a path through a file)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StoreError(f"{what} {folder} cannot be written ({e.strerror or e}): nothing could be saved there. "
                         "Ask the teacher to fix the folder (or set DIGITLAB_MODEL_DIR / DIGITLAB_COLLECTION_DIR "
                         "to one that can be written).") from None


def stale_temporaries(folder: Path, age_s: float = STALE_TMP_S) -> list[Path]:
    """atomic_write's temporary files (``.<name>.<random>.tmp``) older than ``age_s``: saves that never finished."""
    now = time.time()
    try:
        found = [p for p in folder.glob(".*.tmp") if p.is_file()]
        return sorted(p for p in found if now - p.stat().st_mtime > age_s)
    except OSError:
        return []


def remove_all(paths: list[Path]) -> list[str]:
    done = []
    for p in paths:
        try:
            p.unlink()
            done.append(f"removed {p} (left by a save that was interrupted)")
        except OSError as e:
            done.append(f"could not remove {p}: {e.strerror or e}")
    return done
