"""AZTP IDs, SPIFFE IDs, trust domains and identity names.

An AZTP ID has the form ``aztp://{trust_domain}/workload/{environment}/{method}/{name}`` and maps
one-to-one to the SPIFFE ID with the same trust domain and path
(``spiffe://{trust_domain}/workload/...``).

Rules (SPIFFE-ID.md, applied as strictly as go-spiffe):

* the scheme is exactly ``spiffe`` (or ``aztp``), lower case, followed by ``://``;
* the trust domain is non-empty, at most 255 bytes of ``[a-z0-9._-]`` (no upper case, port,
  user info, IP-literal brackets or percent-encoding);
* the path is empty or ``/seg/seg...`` with segments of ``[A-Za-z0-9._-]``; no empty, ``.`` or
  ``..`` segments, no trailing ``/``, no query, fragment or percent-encoding;
* the whole SPIFFE ID is at most 2048 bytes (an AZTP ID at most 2046, so that its SPIFFE ID fits).

Identity names follow the AZTP rule: 2-64 characters of ``[A-Za-z0-9-/]``, not starting or ending
with ``-`` or ``/``, and without ``//`` (which would make an empty SPIFFE path segment).

Strings are parsed by hand with full-string matching (``re.fullmatch``), never with ``urllib``,
which normalises. Parsing results are cached, since parsing sits on hot paths.

This module is pure: no I/O, standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from aztp_agents.errors import InvalidIdError, InvalidNameError

__all__ = [
    "AZTP_SCHEME",
    "DEFAULT_ENVIRONMENT",
    "DEFAULT_METHOD",
    "MAX_ID_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_TRUST_DOMAIN_BYTES",
    "MIN_NAME_LENGTH",
    "SPIFFE_SCHEME",
    "AztpId",
    "SpiffeId",
    "TrustDomain",
    "is_valid_aztp_id",
    "parse_aztp_id",
    "parse_spiffe_id",
    "sanitize_name",
    "validate_name",
    "validate_trust_domain",
]

SPIFFE_SCHEME = "spiffe"
AZTP_SCHEME = "aztp"
DEFAULT_ENVIRONMENT = "production"
DEFAULT_METHOD = "node"
WORKLOAD_SEGMENT = "workload"

MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255
MIN_NAME_LENGTH = 2
MAX_NAME_LENGTH = 64

_SPIFFE_PREFIX = "spiffe://"
_AZTP_PREFIX = "aztp://"
# An AZTP ID is two bytes shorter than its SPIFFE ID ("aztp" vs "spiffe").
_MAX_AZTP_ID_BYTES = MAX_ID_BYTES - (len(_SPIFFE_PREFIX) - len(_AZTP_PREFIX))

_TD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/")

_TD_RE = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
_SPIFFE_RE = re.compile(r"spiffe://([a-z0-9._-]{1,255})((?:/[A-Za-z0-9._-]+)*)")
_AZTP_RE = re.compile(
    r"aztp://([a-z0-9._-]{1,255})"
    r"(/workload/([A-Za-z0-9._-]+)/([A-Za-z0-9._-]+)/([A-Za-z0-9/-]+))"
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/-]{0,62}[A-Za-z0-9]")

# Sanitizer helpers.
_NAME_INVALID_RUN_RE = re.compile(r"[^A-Za-z0-9/-]+")
_DASH_RUN_RE = re.compile(r"-{2,}")
_SLASH_RUN_RE = re.compile(r"/{2,}")
_SANITIZE_FALLBACK = "component"

_CACHE_SIZE = 4096

_T = TypeVar("_T")

_TD_CHARSET_MSG = (
    "trust domain contains disallowed characters: trust domain characters are limited to "
    "lowercase letters, numbers, dots, dashes, and underscores"
)
_PATH_CHARSET_MSG = (
    "invalid character in path segment: path segment characters are limited to letters, "
    "numbers, dots, dashes, and underscores"
)


def _new(cls: type[_T], **fields: Any) -> _T:
    """Build a frozen dataclass instance without running its validation (already done)."""
    obj = object.__new__(cls)
    for key, value in fields.items():
        object.__setattr__(obj, key, value)
    return obj


def _excerpt(s: str, limit: int = 80) -> str:
    """A short, printable rendering of (possibly huge or hostile) input for messages."""
    if len(s) > limit:
        return repr(s[:limit]) + f"... ({len(s)} characters)"
    return repr(s)


# --- diagnosis (slow path, only run on invalid input) -----------------------------------


def _type_error(s: object, what: str) -> InvalidIdError:
    return InvalidIdError(
        f"{what} must be a string, not {type(s).__name__}; pass the ID as text",
        rule="type",
    )


def _trust_domain_error(td: str) -> InvalidIdError | None:
    """Why ``td`` is not a valid trust domain name, or None if it is."""
    if not td:
        return InvalidIdError(
            "trust domain is missing; give a name like 'example.org'",
            rule="trust_domain_missing",
        )
    for pos, c in enumerate(td):
        if c not in _TD_CHARS:
            if "A" <= c <= "Z":
                advice = "write the trust domain in lower case"
            elif c in ":@[]?#%":
                advice = (
                    "ports, user info, IP-literal brackets, queries, fragments and "
                    "percent-encoding are not allowed"
                )
            else:
                advice = "remove or replace that character"
            return InvalidIdError(
                f"{_TD_CHARSET_MSG} (found {c!r} at position {pos}); {advice}",
                rule="trust_domain_charset",
            )
    if len(td) > MAX_TRUST_DOMAIN_BYTES:
        return InvalidIdError(
            f"trust domain is too long ({len(td)} bytes): at most "
            f"{MAX_TRUST_DOMAIN_BYTES} bytes are allowed; use a shorter name",
            rule="trust_domain_too_long",
        )
    return None


def _path_error(path: str) -> InvalidIdError | None:
    """Why ``path`` is not a valid SPIFFE path, or None if it is (mirrors go-spiffe order)."""
    if not path:
        return None
    if path[0] != "/":
        return InvalidIdError(
            "path must have a leading slash; write it as '/segment/segment'",
            rule="path_leading_slash",
        )
    seg_start = 0
    for i, c in enumerate(path):
        if c == "/":
            segment = path[seg_start:i]
            if segment == "/":
                return InvalidIdError(
                    "path cannot contain empty segments ('//'); remove the extra '/'",
                    rule="path_empty_segment",
                )
            if segment in ("/.", "/.."):
                return _dot_segment_error()
            seg_start = i
            continue
        if c not in _SEGMENT_CHARS:
            return InvalidIdError(
                f"{_PATH_CHARSET_MSG} (found {c!r} at path position {i}); queries, fragments "
                "and percent-encoding are not allowed, so remove or replace that character",
                rule="path_charset",
            )
    last = path[seg_start:]
    if last == "/":
        return InvalidIdError(
            "path cannot have a trailing slash: the last segment would be empty and the path "
            "cannot contain empty segments; remove the trailing '/'",
            rule="path_trailing_slash",
        )
    if last in ("/.", "/.."):
        return _dot_segment_error()
    return None


def _dot_segment_error() -> InvalidIdError:
    return InvalidIdError(
        "path cannot contain dot segments: path segments '.' and '..' are not allowed; "
        "resolve or remove them",
        rule="path_dot_segment",
    )


def _split_id(s: object, prefix: str, what: str, max_bytes: int) -> tuple[str, str]:
    """Check type, emptiness, scheme, size and trust domain; return (trust_domain, path).

    Raises the first rule violation found, in go-spiffe's order.
    """
    if not isinstance(s, str):
        raise _type_error(s, what)
    if not s:
        raise InvalidIdError(f"{what} cannot be empty", rule="empty")
    if not s.startswith(prefix):
        example = (
            "spiffe://example.org/path"
            if prefix == _SPIFFE_PREFIX
            else "aztp://example.org/workload/production/node/my-agent"
        )
        raise InvalidIdError(
            f"{what} scheme is missing or invalid: the ID does not start with {prefix!r} "
            f"(the scheme is lower case); write it like {example!r}",
            rule="scheme",
        )
    if len(s) > max_bytes or len(s.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidIdError(
            f"{what} is too long ({len(s.encode('utf-8', 'surrogatepass'))} bytes): at most "
            f"{max_bytes} bytes are allowed; use a shorter trust domain or path",
            rule="too_long",
        )
    rest = s[len(prefix) :]
    slash = rest.find("/")
    if slash < 0:
        td, path = rest, ""
    else:
        td, path = rest[:slash], rest[slash:]
    err = _trust_domain_error(td)
    if err is not None:
        raise err
    return td, path


def _segment_error(value: object, field: str) -> InvalidIdError | None:
    """Why ``value`` is not a single valid SPIFFE path segment (for environment/method)."""
    if not isinstance(value, str):
        return InvalidIdError(
            f"{field} must be a string, not {type(value).__name__}", rule=f"aztp_{field}"
        )
    if not value:
        return InvalidIdError(
            f"{field} cannot be empty; use e.g. {DEFAULT_ENVIRONMENT!r} or {DEFAULT_METHOD!r}",
            rule=f"aztp_{field}",
        )
    if _SEGMENT_RE.fullmatch(value) is None:
        return InvalidIdError(
            f"{field} {_excerpt(value)} is not a single path segment: {field} characters are "
            "limited to letters, numbers, dots, dashes, and underscores (no '/')",
            rule=f"aztp_{field}",
        )
    if value in (".", ".."):
        return InvalidIdError(
            f"{field} cannot be '.' or '..' (dot segments are not allowed); choose a real name",
            rule=f"aztp_{field}",
        )
    return None


# --- names ------------------------------------------------------------------------------


def _name_problem(name: str) -> str | None:
    """Why ``name`` breaks the AZTP name rule, or None if it is valid."""
    if _NAME_RE.fullmatch(name) is not None:
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
        if c not in _NAME_CHARS:
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
    problem = _name_problem(name)
    if problem is not None:
        raise InvalidNameError(f"invalid name {_excerpt(name)}: {problem}")
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
    if _NAME_RE.fullmatch(raw) is not None and "//" not in raw and "--" not in raw:
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


# --- value types ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustDomain:
    """A SPIFFE trust domain name such as ``example.org`` (validated on construction)."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise _type_error(self.name, "trust domain")
        err = _trust_domain_error(self.name)
        if err is not None:
            raise err

    @classmethod
    def parse(cls, s: str) -> TrustDomain:
        """Parse a bare name (``example.org``) or a path-less ID (``spiffe://example.org``).

        Like go-spiffe's ``TrustDomainFromString``, input containing ``:/`` is parsed as a
        SPIFFE ID; unlike it, an ID with a path is rejected rather than silently truncated.
        """
        if type(s) is not str:
            if not isinstance(s, str):
                raise _type_error(s, "trust domain")
            s = str(s)
        return _parse_trust_domain(s)

    def id_string(self) -> str:
        """The trust domain's SPIFFE ID, ``spiffe://{name}``."""
        return _SPIFFE_PREFIX + self.name

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.name,))


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A SPIFFE ID: trust domain plus path (``""`` or ``/a/b``), validated on construction."""

    trust_domain: TrustDomain
    path: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise InvalidIdError(
                "trust_domain must be a TrustDomain; use TrustDomain.parse() or SpiffeId.parse()",
                rule="type",
            )
        if not isinstance(self.path, str):
            raise _type_error(self.path, "path")
        err = _path_error(self.path)
        if err is not None:
            raise err
        size = len(_SPIFFE_PREFIX) + len(self.trust_domain.name) + len(self.path)
        if size > MAX_ID_BYTES:
            raise InvalidIdError(
                f"SPIFFE ID is too long ({size} bytes): at most {MAX_ID_BYTES} bytes are "
                "allowed; use a shorter trust domain or path",
                rule="too_long",
            )

    @classmethod
    def parse(cls, s: str) -> SpiffeId:
        """Parse ``spiffe://trust-domain[/path]`` strictly; raises :class:`InvalidIdError`."""
        return parse_spiffe_id(s)

    @property
    def segments(self) -> tuple[str, ...]:
        """The path segments (empty for an ID without path)."""
        return tuple(self.path[1:].split("/")) if self.path else ()

    def __str__(self) -> str:
        return _SPIFFE_PREFIX + self.trust_domain.name + self.path

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.trust_domain, self.path))


@dataclass(frozen=True, slots=True)
class AztpId:
    """``aztp://{trust_domain}/workload/{environment}/{method}/{name}``, validated.

    ``environment`` and ``method`` are single SPIFFE path segments; ``name`` follows the AZTP
    name rule and may contain ``/`` (several path segments).
    """

    trust_domain: TrustDomain
    environment: str
    method: str
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise InvalidIdError(
                "trust_domain must be a TrustDomain; use AztpId.build() or AztpId.parse()",
                rule="type",
            )
        _check_aztp_parts(self.trust_domain.name, self.environment, self.method, self.name)

    @classmethod
    def parse(cls, s: str) -> AztpId:
        """Parse an AZTP ID strictly; raises :class:`InvalidIdError`."""
        return parse_aztp_id(s)

    @classmethod
    def build(
        cls,
        trust_domain: TrustDomain | str,
        name: str,
        environment: str = DEFAULT_ENVIRONMENT,
        method: str = DEFAULT_METHOD,
    ) -> AztpId:
        """Build and validate an AZTP ID.

        ``trust_domain`` may be a :class:`TrustDomain` or a string accepted by
        :meth:`TrustDomain.parse`. A bad ``name`` raises :class:`InvalidNameError` (use
        :func:`sanitize_name` first for arbitrary input); other parts raise
        :class:`InvalidIdError`.
        """
        td = (
            trust_domain
            if isinstance(trust_domain, TrustDomain)
            else TrustDomain.parse(trust_domain)
        )
        validate_name(name)
        _check_aztp_parts(td.name, environment, method, name)
        return _new(cls, trust_domain=td, environment=environment, method=method, name=name)

    @classmethod
    def from_spiffe(cls, spiffe_id: SpiffeId | str) -> AztpId:
        """The AZTP ID for a SPIFFE ID of the form ``spiffe://td/workload/env/method/name``."""
        sid = spiffe_id if isinstance(spiffe_id, SpiffeId) else parse_spiffe_id(spiffe_id)
        env, method, name = _split_aztp_path(sid.path)
        return _new(cls, trust_domain=sid.trust_domain, environment=env, method=method, name=name)

    @property
    def path(self) -> str:
        """The path shared by the AZTP ID and its SPIFFE ID."""
        return f"/{WORKLOAD_SEGMENT}/{self.environment}/{self.method}/{self.name}"

    @property
    def spiffe_id(self) -> str:
        """The matching SPIFFE ID as a string."""
        return _SPIFFE_PREFIX + self.trust_domain.name + self.path

    def to_spiffe(self) -> SpiffeId:
        """The matching SPIFFE ID (same trust domain and path)."""
        return _new(SpiffeId, trust_domain=self.trust_domain, path=self.path)

    def __str__(self) -> str:
        return _AZTP_PREFIX + self.trust_domain.name + self.path

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.trust_domain, self.environment, self.method, self.name))


def _check_aztp_parts(td: str, environment: object, method: object, name: object) -> None:
    """Validate the parts of an AZTP ID (trust domain already a valid name)."""
    for value, field in ((environment, "environment"), (method, "method")):
        err = _segment_error(value, field)
        if err is not None:
            raise err
    if not isinstance(name, str):
        raise InvalidNameError(f"name must be a string, not {type(name).__name__}")
    problem = _name_problem(name)
    if problem is not None:
        raise InvalidNameError(f"invalid name {_excerpt(name)}: {problem}")
    assert isinstance(environment, str) and isinstance(method, str)
    size = (
        len(_SPIFFE_PREFIX)
        + len(td)
        + len(WORKLOAD_SEGMENT)
        + len(environment)
        + len(method)
        + len(name)
        + 4
    )
    if size > MAX_ID_BYTES:
        raise InvalidIdError(
            f"AZTP ID is too long: its SPIFFE ID would be {size} bytes, more than "
            f"{MAX_ID_BYTES}; use a shorter trust domain, environment or method",
            rule="too_long",
        )


def _split_aztp_path(path: str) -> tuple[str, str, str]:
    """Split a valid SPIFFE path into (environment, method, name) or raise InvalidIdError."""
    parts = path.split("/", 4)  # ["", "workload", env, method, name...]
    if len(parts) < 5 or parts[0] != "" or parts[1] != WORKLOAD_SEGMENT:
        raise InvalidIdError(
            f"AZTP ID path must be /{WORKLOAD_SEGMENT}/{{environment}}/{{method}}/{{name}} "
            f"(got {_excerpt(path) if path else 'no path'}); e.g. "
            "'/workload/production/node/my-agent'",
            rule="aztp_path",
        )
    _, _, env, method, name = parts
    problem = _name_problem(name)
    if problem is not None:
        raise InvalidIdError(f"AZTP ID has an invalid name part: {problem}", rule="aztp_name")
    return env, method, name


# --- parsing ----------------------------------------------------------------------------


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_trust_domain(s: str) -> TrustDomain:
    if ":/" in s:
        sid = _parse_spiffe(s)
        if sid.path:
            raise InvalidIdError(
                "trust domain cannot have a path: give a bare name like 'example.org' or a "
                "path-less ID like 'spiffe://example.org'",
                rule="trust_domain_has_path",
            )
        return sid.trust_domain
    if _TD_RE.fullmatch(s) is not None:
        return _new(TrustDomain, name=s)
    err = _trust_domain_error(s)
    assert err is not None
    raise err


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_spiffe(s: str) -> SpiffeId:
    m = _SPIFFE_RE.fullmatch(s)
    if m is not None and len(s) <= MAX_ID_BYTES:
        path = m.group(2)
        if "/." not in path or _path_error(path) is None:
            return _new(SpiffeId, trust_domain=_new(TrustDomain, name=m.group(1)), path=path)
    # Slow path: find the first rule broken, for a helpful message.
    _td, path = _split_id(s, _SPIFFE_PREFIX, "SPIFFE ID", MAX_ID_BYTES)
    err = _path_error(path)
    if err is not None:
        raise err
    raise AssertionError(f"unreachable: {s!r} rejected without a diagnosed rule")


def parse_spiffe_id(s: str) -> SpiffeId:
    """Parse ``spiffe://trust-domain[/path]`` strictly; raises :class:`InvalidIdError`."""
    if type(s) is not str:
        if not isinstance(s, str):
            raise _type_error(s, "SPIFFE ID")
        s = str(s)
    return _parse_spiffe(s)


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_aztp(s: str) -> AztpId:
    m = _AZTP_RE.fullmatch(s)
    if m is not None and len(s) <= _MAX_AZTP_ID_BYTES:
        td, _path, env, method, name = m.groups()
        if (
            env not in (".", "..")
            and method not in (".", "..")
            and _NAME_RE.fullmatch(name) is not None
            and "//" not in name
        ):
            return _new(
                AztpId,
                trust_domain=_new(TrustDomain, name=td),
                environment=env,
                method=method,
                name=name,
            )
    # Slow path: find the first rule broken, for a helpful message.
    _td, path = _split_id(s, _AZTP_PREFIX, "AZTP ID", _MAX_AZTP_ID_BYTES)
    err = _path_error(path)
    if err is not None:
        raise err
    _split_aztp_path(path)
    raise AssertionError(f"unreachable: {s!r} rejected without a diagnosed rule")


def parse_aztp_id(s: str) -> AztpId:
    """Parse ``aztp://td/workload/env/method/name`` strictly; raises :class:`InvalidIdError`."""
    if type(s) is not str:
        if not isinstance(s, str):
            raise _type_error(s, "AZTP ID")
        s = str(s)
    return _parse_aztp(s)


def is_valid_aztp_id(s: object) -> bool:
    """True if ``s`` is a string holding a valid AZTP ID."""
    if not isinstance(s, str):
        return False
    try:
        parse_aztp_id(s)
    except InvalidIdError:
        return False
    return True


def validate_trust_domain(s: str) -> str:
    """Validate a trust domain and return its bare name.

    Accepts what :meth:`TrustDomain.parse` accepts (``example.org`` or
    ``spiffe://example.org``); raises :class:`InvalidIdError`.
    """
    return TrustDomain.parse(s).name
