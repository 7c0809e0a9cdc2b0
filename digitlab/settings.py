"""Every DIGITLAB_* setting, in one place: its name, type, default and a one-line meaning.

This is the only module that reads a ``DIGITLAB_*`` environment variable. The others ask it by name::

    from . import settings
    settings.get("DIGITLAB_MODEL_DIR")      # a Path, "models" when unset

Values are read from the environment each time they are asked for (a test or ``serve`` may change the
environment between calls), and parsed by the setting's kind: a number that does not parse is the default, a
choice outside its list raises ``SettingError`` with a message fit for a page. The README's "Settings" table lists
the same names, defaults and meanings (``tests/test_settings.py`` checks the two agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SettingError(ValueError):
    """A setting whose value cannot be used, with a message that names it."""


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "path", "text", "secret", "int", "flag", "list", "choice"
    default: object
    meaning: str
    choices: tuple[str, ...] = ()
    group: str = "laptop"  # "laptop": any teacher may want it; "server": a school server's parts


SETTINGS: tuple[Setting, ...] = (
    # where the data comes from
    Setting("DIGITLAB_DATA_DIR", "path", None, "a folder holding MNIST's four IDX files (.gz or not); tried first"),
    Setting("DIGITLAB_FASHION_DIR", "path", None, "the same for Fashion-MNIST"),
    Setting("DIGITLAB_CACHE_DIR", "path", Path("data"), "the local data folder: downloads land here, and "
            "the uncompressed copies the processes share"),
    Setting("DIGITLAB_MNIST_MIRRORS", "list", (), "comma-separated URLs to download MNIST from, instead of torchvision's"),
    Setting("DIGITLAB_FASHION_MIRRORS", "list", (), "the same for Fashion-MNIST"),
    Setting("DIGITLAB_OFFLINE", "flag", False, "1 (or true, yes): never try a download; the bundled sample instead"),
    # where the class's work is kept
    Setting("DIGITLAB_MODEL_DIR", "path", Path("models"), "the model store: every trained model, its record and analysis"),
    Setting("DIGITLAB_COLLECTION_DIR", "path", Path("collection"), "the class's saved drawings (and their SQLite file)"),
    Setting("DIGITLAB_DATABASE_URL", "secret", "",
            "postgresql://... to keep the drawings in PostgreSQL instead of SQLite", group="server"),
    # training
    Setting("DIGITLAB_PRECISION", "choice", "auto",
            "auto, fp32 or bf16: the dtype of a CNN's multiplications while training", choices=("auto", "fp32", "bf16")),
    Setting("DIGITLAB_THREADS", "int", 0, "threads for a training run's matrix multiplications (0: every core)"),
    Setting("DIGITLAB_WORKER_THREADS", "int", 0, "threads of the training process (0: every core but one)"),
    Setting("DIGITLAB_WORKER_NICE", "int", 10, "how far below the web server the training process runs (os.nice)"),
    Setting("DIGITLAB_MAX_TRAINING", "int", 0, "runs trained at once (0: one, or two on a Ray cluster)"),
    Setting("DIGITLAB_ANALYSE_AHEAD", "flag", True,
            "1: a trained model's robustness curves are worked out when the trainer is idle (0: when Evaluate asks)"),
    Setting("DIGITLAB_RUN_LIMIT_S", "int", 300, "the class's limit on one student's run, in estimated seconds (0: none)"),
    # the teacher and the room
    Setting("DIGITLAB_TEACHER_KEY", "secret", "", "the key that unlocks the Teacher page (unset: nobody can manage the class)"),
    Setting("DIGITLAB_ALLOWED_HOSTS", "list", (), "more host names the room's server answers to, comma-separated"),
    # a school server's parts
    Setting("DIGITLAB_LOG_DIR", "path", Path("logs"),
            "where serve --web N keeps its processes' logs (a folder per start, kept after it stops)", group="server"),
    Setting("DIGITLAB_QUEUE_ADDRESS", "text", "",
            "host:port of the class's queue server (set by serve --web N for its web processes)", group="server"),
    Setting("DIGITLAB_QUEUE_KEY", "secret", "", "the queue server's shared secret (set by serve --web N)", group="server"),
    Setting("DIGITLAB_RAY_ADDRESS", "text", "", "a Ray cluster's address: runs train there instead of in a local process",
            group="server"),
    Setting("DIGITLAB_RAY_FALLBACK", "choice", "local",
            "when the Ray cluster is not answering: local (train here instead, and say so) or refuse (the run fails)",
            choices=("local", "refuse"), group="server"),
)
BY_NAME = {s.name: s for s in SETTINGS}
TRUE = ("1", "true", "yes", "on")


def get(name: str):
    """The setting's value now, parsed by its kind (see the module's docstring)."""
    s = BY_NAME[name]
    raw = os.environ.get(name, "").strip()
    if not raw:
        return s.default
    if s.kind == "path":
        return Path(raw)
    if s.kind == "int":
        try:
            return int(raw)
        except ValueError:
            return s.default
    if s.kind == "flag":
        return raw.lower() in TRUE
    if s.kind == "list":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if s.kind == "choice":
        value = raw.lower()
        if value not in s.choices:
            raise SettingError(f"{name} must be one of {', '.join(s.choices)}, not {raw!r}.")
        return value
    return raw


def is_set(name: str) -> bool:
    """Whether the variable holds a value (an empty one counts as unset)."""
    BY_NAME[name]  # a name not declared here is a mistake, not an unset setting
    return bool(os.environ.get(name, "").strip())


def put(name: str, value) -> None:
    """Set a setting for this process and the processes it starts (None or "" unsets it)."""
    BY_NAME[name]
    if value is None or value == "":
        os.environ.pop(name, None)
    else:
        os.environ[name] = str(value)


def set_for_children(env: dict, name: str, value) -> dict:
    """``env`` with one setting written for a child process (serve, the training process)."""
    BY_NAME[name]
    env = dict(env)
    if value is None or value == "":
        env.pop(name, None)
    else:
        env[name] = str(value)
    return env


def table() -> list[tuple[str, str, str]]:
    """(name, default as the README writes it, meaning) for every setting, in order."""
    def shown(s: Setting) -> str:
        if s.default in (None, "", ()):
            return "unset"
        if s.default is False:
            return "off"
        if s.default is True:
            return "on"
        return str(s.default)
    return [(s.name, shown(s), s.meaning) for s in SETTINGS]
