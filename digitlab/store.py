"""Trained models on disk: weights as safetensors, a JSON record beside them.

Nothing here unpickles: safetensors holds only tensors, JSON only data. Every file is written
to a temporary name and renamed into place, weights first and record last, so a crash in the
middle of a save leaves the earlier models intact and no half-written model listed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .models import ModelInfo, TrainConfig, build_model, count_parameters

FORMAT_VERSION = 1
_ID_OK = re.compile(r"^[A-Za-z0-9_.-]+$")


class StoreError(Exception):
    """A model that cannot be used, with a message fit for a page."""


@dataclass(frozen=True)
class Problem:
    name: str
    reason: str


def default_dir() -> Path:
    return Path(os.environ.get("DIGITLAB_MODEL_DIR", "models"))


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


class ModelStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_dir()
        self._listing: tuple[tuple, list[ModelInfo], list[Problem]] | None = None
        self._listing_lock = threading.Lock()

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
        model_id = f"{config.preset}-{created:%Y%m%d-%H%M%S}-{config.key()[:6]}"
        n = 1
        while (self.root / f"{model_id}.json").exists():
            n += 1
            model_id = f"{config.preset}-{created:%Y%m%d-%H%M%S}-{config.key()[:6]}-{n}"
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        weights = st_save(state, metadata={"digitlab_id": model_id})
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
            **(extra or {}),
        }
        atomic_write(self.root / f"{model_id}.safetensors", weights)
        atomic_write(self.root / f"{model_id}.json", json.dumps(record, indent=1).encode())
        return self._info(record)

    def delete(self, model_id: str) -> None:
        self._check_id(model_id)
        # Record first: once it is gone the model is no longer listed, whatever happens next.
        (self.root / f"{model_id}.json").unlink(missing_ok=True)
        (self.root / f"{model_id}.safetensors").unlink(missing_ok=True)
        self.analysis_path(model_id).unlink(missing_ok=True)

    # ------------------------------------------------------------ reading

    def scan(self) -> tuple[list[ModelInfo], list[Problem]]:
        """Every usable model, newest first, and a reason for each file that was skipped.

        Records are read again only when the folder's listing (names, sizes, modification times) changed:
        pages ask on every rerun, and then it costs one directory read.
        """
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
        for path in sorted(self.root.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                record = self._read_record(path)
                if not (self.root / f"{record['id']}.safetensors").is_file():
                    raise StoreError("its weights file is missing")
                infos.append(self._info(record))
            except StoreError as e:
                problems.append(Problem(path.stem, str(e)))
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
        return self._info(self._read_record(self.root / f"{model_id}.json"))

    def load(self, model_id: str) -> tuple[nn.Module, ModelInfo]:
        """The model, ready for inference, or StoreError saying why not."""
        info = self.info(model_id)
        path = self.root / f"{model_id}.safetensors"
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"model {model_id}: its weights file is missing") from None
        record = json.loads((self.root / f"{model_id}.json").read_text())
        if record.get("weights_sha256") and hashlib.sha256(payload).hexdigest() != record["weights_sha256"]:
            raise StoreError(f"model {model_id}: the weights file is damaged (its checksum does not match)")
        try:
            state = st_load(payload)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise StoreError(f"model {model_id}: the weights file is not valid safetensors ({e})") from None
        try:
            model = build_model(info.config)
            model.load_state_dict(state, strict=True)
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise StoreError(f"model {model_id}: the weights do not fit its architecture ({first})") from None
        model.eval()
        return model, info

    # ------------------------------------------------------------ helpers

    def _check_id(self, model_id: str) -> None:
        if not _ID_OK.match(model_id or ""):
            raise StoreError(f"{model_id!r} is not a model id")

    def _read_record(self, path: Path) -> dict:
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"model {path.stem} does not exist (it may have been deleted)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"its record is not readable JSON ({e})") from None
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise StoreError("its record has no training config")
        if record.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"its record has format version {record.get('format_version')!r}, not {FORMAT_VERSION}")
        if record.get("id") != path.stem:
            raise StoreError(f"its record names a different model ({record.get('id')!r})")
        try:
            TrainConfig.from_dict(record["config"])
        except (TypeError, ValueError) as e:
            raise StoreError(f"its training config is not valid ({e})") from None
        return record

    @staticmethod
    def _info(record: dict) -> ModelInfo:
        return ModelInfo(
            id=record["id"],
            config=TrainConfig.from_dict(record["config"]),
            metrics=record.get("metrics", {}),
            history=record.get("history", []),
            created=record.get("created", ""),
            train_seconds=float(record.get("train_seconds", 0.0)),
            fingerprint=record.get("fingerprint", ""),
            parameters=int(record.get("parameters", 0)),
        )

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
        record = self._read_record(self.root / f"{model_id}.json")
        if record.get("weights_sha256"):
            return str(record["weights_sha256"])
        try:
            return hashlib.sha256((self.root / f"{model_id}.safetensors").read_bytes()).hexdigest()
        except OSError:
            raise StoreError(f"model {model_id}: its weights file is missing") from None
