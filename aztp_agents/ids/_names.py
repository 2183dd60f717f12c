"""Identity names: the AZTP name rule and the sanitizer that makes any string a valid name."""

from __future__ import annotations

import re
import unicodedata

from aztp_agents.errors import InvalidNameError

from ._diagnosis import excerpt
from ._rules import MAX_NAME_LENGTH, MIN_NAME_LENGTH, NAME_CHARS, NAME_RE

# Sanitizer helpers.
_NAME_INVALID_RUN_RE = re.compile(r"[^A-Za-z0-9/-]+")
_DASH_RUN_RE = re.compile(r"-{2,}")
_SLASH_RUN_RE = re.compile(r"/{2,}")
_SANITIZE_FALLBACK = "component"


def name_problem(name: str) -> str | None:
    """Why ``name`` breaks the AZTP name rule, or None if it is valid."""
    if NAME_RE.fullmatch(name) is not None:
        if "//" in name:
            return (
                "name cannot contain '//': it would make an empty SPIFFE path segment; "
                "use a single '/' between parts"
            )
        return None
    n = len(name)
    if n < MIN_NAME_LENGTH or n > MAX_NAME_LENGTH:
        return (
            f"name must be {MIN_NAME_LENGTH}-{MAX_NAME_LENGTH} characters long (got {n}); "
            "use sanitize_name() to derive a valid name"
        )
    for pos, c in enumerate(name):
        if c not in NAME_CHARS:
            return (
                f"name characters are limited to letters, numbers, '-' and '/' (found {c!r} at "
                f"position {pos}); use sanitize_name() to derive a valid name"
            )
    return "name cannot start or end with '-' or '/'; remove the leading or trailing '-' or '/'"


def validate_name(name: str) -> str:
    """Check ``name`` against the AZTP name rule and return it unchanged.

    The rule: 2-64 characters of ``[A-Za-z0-9-/]``, not starting or ending with ``-`` or
    ``/``, and no ``//`` (an empty SPIFFE path segment). Raises :class:`InvalidNameError`.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"name must be a string, not {type(name).__name__}")
    problem = name_problem(name)
    if problem is not None:
        raise InvalidNameError(f"invalid name {excerpt(name)}: {problem}")
    return name


def sanitize_name(raw: str) -> str:
    """Turn any string into a valid AZTP name (always; raises only for non-``str`` input).

    Based on the sanitizer of the official integrations (seed 001), with these deliberate
    differences:

    * The whole input is kept. The seed first keeps only the part before the first ``-``,
      which maps ``langflow-chat-component`` and ``langflow-router`` to the same name
      ``langflow``; distinct inputs should stay distinct where possible.
    * Unicode is folded to ASCII first (NFKD, combining marks dropped), so ``Café`` becomes
      ``Cafe`` rather than ``Caf``.
    * Runs of ``/`` are collapsed too (``//`` would make an empty SPIFFE path segment), and the
      ends are stripped again after truncating to 64 characters, so truncation can never leave
      a trailing ``-`` or ``/``.

    Steps: fold unicode; replace each run of characters outside ``[A-Za-z0-9-/]`` by ``-``;
    collapse ``--`` runs to ``-`` and ``//`` runs to ``/``; strip ``-``/``/`` from both ends;
    truncate to 64 and strip the end again; if fewer than 2 characters remain, use
    ``component-{rest}`` (or ``component`` when nothing is left).

    A valid name without ``--`` comes back unchanged, and ``sanitize_name`` is idempotent.
    """
    if not isinstance(raw, str):
        raise InvalidNameError(f"name must be a string, not {type(raw).__name__}")
    if NAME_RE.fullmatch(raw) is not None and "//" not in raw and "--" not in raw:
        return raw
    if not raw.isascii():
        decomposed = unicodedata.normalize("NFKD", raw)
        raw = "".join(c for c in decomposed if not unicodedata.combining(c))
    s = _NAME_INVALID_RUN_RE.sub("-", raw)
    s = _DASH_RUN_RE.sub("-", s)
    s = _SLASH_RUN_RE.sub("/", s)
    s = s.strip("-/")
    if len(s) > MAX_NAME_LENGTH:
        s = s[:MAX_NAME_LENGTH].rstrip("-/")
    if len(s) < MIN_NAME_LENGTH:
        s = f"{_SANITIZE_FALLBACK}-{s}" if s else _SANITIZE_FALLBACK
    return s
