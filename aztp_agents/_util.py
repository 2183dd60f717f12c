"""Small shared helpers (time stamps, ids). Internal."""

from __future__ import annotations

import functools
import secrets
import time
from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """``2025-09-10T03:36:05.794Z`` (milliseconds, UTC, Z suffix), as the AZTP API writes time."""
    return (
        dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{dt.microsecond // 1000:03d}Z"
    )


def now_iso() -> str:
    return iso(utcnow())


def object_id() -> str:
    """24 lower-case hex characters, the form the AZTP API uses for ``_id``."""
    return secrets.token_hex(12)


def epoch_iso(ts: float) -> str:
    """:func:`iso` of an epoch time stamp, without building a datetime (hot audit path)."""
    whole = int(ts)
    return f"{_second_iso(whole)}.{int((ts - whole) * 1000):03d}Z"


@functools.lru_cache(maxsize=64)
def _second_iso(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
