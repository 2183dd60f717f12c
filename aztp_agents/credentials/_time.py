"""Time for credentials: aware UTC datetimes and the clock-skew allowance of issued leaves."""

from __future__ import annotations

import datetime as dt

from aztp_agents._util import utcnow

__all__ = ["CLOCK_SKEW_SECONDS", "as_utc", "utcnow"]

#: Clock skew allowance put into every certificate's ``not_before``.
CLOCK_SKEW_SECONDS = 60


def as_utc(when: dt.datetime | None) -> dt.datetime:
    """``when`` as an aware UTC datetime (naive values are taken as UTC); now if ``None``."""
    if when is None:
        return utcnow()
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)
