"""The validation language: small checks that take a value and return it (as the app uses it) or raise ValueError
saying what is wrong, phrased to follow a field's name ("is 7.5, outside 0..1").

The config's schema (``config.FIELDS``) builds each field's check from these; the store's record check
(``records``) builds the rest of a record's. A check of a table or a list puts the field's name or index in front
("metrics.test_accuracy is 7.5, outside 0..1", "config.hidden[0] is 20,000, outside 1..4,096").
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable

Check = Callable[[object], object]


def inside(where: str, error: ValueError) -> ValueError:
    """``error`` said of a part of something: ``where`` (".key", "[3]") put in front."""
    said = str(error)
    joint = "" if said.startswith((".", "[")) else " " if said.startswith(("is ", "has ")) else ": "
    return ValueError(f"{where}{joint}{said}")


def whole(lo: int, hi: int) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"is {v!r}, not a whole number")
        if not lo <= v <= hi:
            raise ValueError(f"is {v:,}, outside {lo:,}..{hi:,}")
        return v
    return check


def number(lo: float, hi: float, nan: bool = False) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"is {v!r}, not a number")
        try:
            v = float(v)
        except OverflowError:  # a whole number JSON may hold, too large for any float
            raise ValueError("is a number too large to be real") from None
        if math.isnan(v) and nan:  # a diverged run's loss
            return v
        if not lo <= v <= hi:
            raise ValueError(f"is {v!r}, outside {lo:g}..{hi:g}")
        return v
    return check


def text(max_len: int, pattern: re.Pattern | None = None) -> Check:
    def check(v):
        if not isinstance(v, str):
            raise ValueError(f"is {v!r}, not text")
        if len(v) > max_len or (pattern is not None and not pattern.match(v)):
            raise ValueError(f"is {v[:40]!r}{'...' if len(v) > 40 else ''}, not a valid value")
        return v
    return check


def choice(*options, label: str = "") -> Check:
    """One of ``options``; ``label`` names what is chosen ("unknown optimizer 'lion': pick one of sgd, ...")."""
    def check(v):
        if v not in options or isinstance(v, bool) != isinstance(options[0], bool):
            if label:
                raise ValueError(f"unknown {label} {v!r}: pick one of {', '.join(map(str, options))}")
            raise ValueError(f"is {v!r}, not one of {', '.join(map(str, options))}")
        return v
    return check


def optional(inner: Check) -> Check:
    return lambda v: None if v is None else inner(v)


def list_of(item: Check, lo: int, hi: int) -> Check:
    """A list (a tuple too: a config's own) of ``lo`` to ``hi`` items, each passing ``item``."""
    def check(v):
        if not isinstance(v, list | tuple):
            raise ValueError(f"is {type(v).__name__}, not a list")
        if not lo <= len(v) <= hi:
            raise ValueError(f"has {len(v)} items, not {lo}..{hi}")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except ValueError as e:
                raise inside(f"[{i}]", e) from None
        return out
    return check


def moment(v):
    """A time as the store writes it: ISO 8601 text."""
    text(40)(v)
    try:
        dt.datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"is {v!r}, not a date and time") from None
    return v


def fields(spec: dict[str, Check], required: tuple[str, ...]) -> Check:
    """A dict whose known fields each pass their check; the required ones must be there. Unknown fields are
    left alone (the app never reads them); the record's size limit bounds them."""
    def check(v):
        if not isinstance(v, dict):
            raise ValueError(f"is {type(v).__name__}, not a table of fields")
        missing = [k for k in required if k not in v]
        if missing:
            raise ValueError(f"has no {', '.join(missing)}")
        out = dict(v)
        for key, field_check in spec.items():
            if key in v:
                try:
                    out[key] = field_check(v[key])
                except ValueError as e:
                    raise inside(f".{key}", e) from None
        return out
    return check


def scores(max_keys: int, max_epochs: int) -> Check:
    """A table of named numbers (metrics, an epoch's row): accuracies are shares, 0..1; nothing else is text."""
    def check(v):
        if not isinstance(v, dict) or len(v) > max_keys:
            raise ValueError(f"is not a table of at most {max_keys} numbers")
        out = {}
        for key, value in v.items():
            try:
                if key == "epoch":
                    out[key] = whole(1, max_epochs)(value)
                elif "accuracy" in key:
                    out[key] = number(0.0, 1.0, nan=True)(value)
                else:
                    out[key] = number(-math.inf, math.inf, nan=True)(value)
            except ValueError as e:
                raise inside(f".{key}", e) from None
        return out
    return check
