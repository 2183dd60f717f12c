"""The SPIFFE and AZTP ID rules as data: schemes, limits, character sets and fast-path regexes.

Shared by the parsers (``_spiffe``, ``_aztp``), the name rule (``_names``) and the slow-path
diagnosis (``_diagnosis``), so that each limit is written once.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

SPIFFE_SCHEME = "spiffe"
AZTP_SCHEME = "aztp"
DEFAULT_ENVIRONMENT = "production"
DEFAULT_METHOD = "node"
WORKLOAD_SEGMENT = "workload"

MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255
MIN_NAME_LENGTH = 2
MAX_NAME_LENGTH = 64

SPIFFE_PREFIX = "spiffe://"
AZTP_PREFIX = "aztp://"
# An AZTP ID is two bytes shorter than its SPIFFE ID ("aztp" vs "spiffe").
MAX_AZTP_ID_BYTES = MAX_ID_BYTES - (len(SPIFFE_PREFIX) - len(AZTP_PREFIX))

TD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/")

TD_RE = re.compile(r"[a-z0-9._-]{1,255}")
SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
SPIFFE_RE = re.compile(r"spiffe://([a-z0-9._-]{1,255})((?:/[A-Za-z0-9._-]+)*)")
AZTP_RE = re.compile(
    r"aztp://([a-z0-9._-]{1,255})"
    r"(/workload/([A-Za-z0-9._-]+)/([A-Za-z0-9._-]+)/([A-Za-z0-9/-]+))"
)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/-]{0,62}[A-Za-z0-9]")


CACHE_SIZE = 4096

_T = TypeVar("_T")


def unchecked(cls: type[_T], **fields: Any) -> _T:
    """Build a frozen dataclass instance without running its validation (already done)."""
    obj = object.__new__(cls)
    for key, value in fields.items():
        object.__setattr__(obj, key, value)
    return obj
