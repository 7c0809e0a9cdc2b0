"""The teacher's key: whether one is set, and whether a given one is it (DIGITLAB_TEACHER_KEY)."""

from __future__ import annotations

import hmac

from . import settings


def teacher_key_set() -> bool:
    return settings.is_set("DIGITLAB_TEACHER_KEY")


def teacher_key_ok(given: str) -> bool:
    """Whether ``given`` is the teacher key set when the server started (DIGITLAB_TEACHER_KEY), compared in
    constant time. No key set: nobody manages the class from a browser (the command line on the machine can)."""
    key = settings.get("DIGITLAB_TEACHER_KEY")
    return bool(key) and hmac.compare_digest(given.encode(), key.encode())
