"""A stored model's JSON record checked field by field before anything uses it (``check_record``).

A record is anyone's file. Its fields are checked in the validation language of ``checks``; its config's fields
by the config's own schema (``config.FIELDS``) at the ranges a record may hold (``stored``: every record the store
ever wrote still reads), then by ``check_config``'s rules between fields. What fails says which field and why;
nothing is allocated for a record until it has passed.
"""

from __future__ import annotations

import re

from . import checks
from .config import FIELDS, ConfigError, TrainConfig, check_config

FORMAT_VERSION = 1
ID_OK = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
MAX_RECORD_BYTES = 1_000_000  # a record of 1,000 epochs is about 300 kB; larger is not one this app wrote
MAX_EPOCHS = FIELDS["epochs"].stored[1]  # 100 from the widgets, then "one more epoch" as often as a class likes


class StoreError(Exception):
    """A model that cannot be used, with a message fit for a page."""


CONFIG_FIELDS: dict[str, checks.Check] = {name: f.check(stored=True) for name, f in FIELDS.items()}

RECORD_FIELDS: dict[str, checks.Check] = {
    "format_version": checks.choice(FORMAT_VERSION),
    "id": checks.text(120, ID_OK),
    "title": checks.text(200),
    "config": checks.fields(CONFIG_FIELDS, ()),
    "config_key": checks.text(64),
    "metrics": checks.scores(32, MAX_EPOCHS),
    "history": checks.list_of(checks.scores(32, MAX_EPOCHS), 0, MAX_EPOCHS),
    "fingerprint": checks.text(128),
    "train_seconds": checks.number(0.0, 1e9),
    "created": checks.moment,
    "parameters": checks.whole(0, 10**10),
    "weights_sha256": checks.optional(checks.text(64, re.compile(r"^[0-9a-f]{64}$"))),
    "weights_bytes": checks.whole(0, 10**11),
    "data_source": checks.text(32),
    "continued_from": checks.optional(checks.text(120, ID_OK)),
    "wall_seconds": checks.number(0.0, 1e9),
    "threads": checks.whole(1, 4096),
    "name": checks.text(80),
}
REQUIRED = ("format_version", "id", "config", "metrics", "history", "created", "train_seconds", "parameters")


def check_record(record: object, name: str) -> tuple[dict, TrainConfig]:
    """The record, every field type- and range-checked, and its config; StoreError saying which field is wrong.

    ``name`` is the file's stem: the record must say it is that model. Nothing is allocated here: the network's
    size is checked on the numbers (at most MAX_HIDDEN_LAYERS layers of MAX_LAYER_UNITS units, as the app builds).
    """
    if isinstance(record, dict) and record.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"its record has format version {record.get('format_version')!r}, not {FORMAT_VERSION}")
    try:
        record = checks.fields(RECORD_FIELDS, REQUIRED)(record)
    except ValueError as e:
        said = str(e)
        raise StoreError(f"its record is not valid: {said[1:] if said.startswith('.') else 'it ' + said}") from None
    if record["id"] != name:
        raise StoreError(f"its record names a different model ({record['id']!r})")
    try:
        config = TrainConfig.from_dict(record["config"])
        check_config(config, stored=True)
    except (TypeError, ValueError, ConfigError) as e:
        raise StoreError(f"its training config is not valid ({e})") from None
    return record, config
