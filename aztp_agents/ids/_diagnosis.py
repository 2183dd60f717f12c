"""Why an ID is invalid: the slow path, run only on input the fast-path regexes rejected.

Each check returns (or raises) an :class:`~aztp_agents.errors.InvalidIdError` naming the first
rule broken, in go-spiffe's order, with a message that says what to do about it.
"""

from __future__ import annotations

from aztp_agents.errors import InvalidIdError

from ._rules import (
    DEFAULT_ENVIRONMENT,
    DEFAULT_METHOD,
    MAX_TRUST_DOMAIN_BYTES,
    SEGMENT_CHARS,
    SEGMENT_RE,
    SPIFFE_PREFIX,
    TD_CHARS,
)

_TD_CHARSET_MSG = (
    "trust domain contains disallowed characters: trust domain characters are limited to "
    "lowercase letters, numbers, dots, dashes, and underscores"
)
_PATH_CHARSET_MSG = (
    "invalid character in path segment: path segment characters are limited to letters, "
    "numbers, dots, dashes, and underscores"
)


def excerpt(s: str, limit: int = 80) -> str:
    """A short, printable rendering of (possibly huge or hostile) input for messages."""
    if len(s) > limit:
        return repr(s[:limit]) + f"... ({len(s)} characters)"
    return repr(s)


def type_error(s: object, what: str) -> InvalidIdError:
    return InvalidIdError(
        f"{what} must be a string, not {type(s).__name__}; pass the ID as text",
        rule="type",
    )


def trust_domain_error(td: str) -> InvalidIdError | None:
    """Why ``td`` is not a valid trust domain name, or None if it is."""
    if not td:
        return InvalidIdError(
            "trust domain is missing; give a name like 'example.org'",
            rule="trust_domain_missing",
        )
    for pos, c in enumerate(td):
        if c not in TD_CHARS:
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


def path_error(path: str) -> InvalidIdError | None:
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
        if c not in SEGMENT_CHARS:
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


def split_id(s: object, prefix: str, what: str, max_bytes: int) -> tuple[str, str]:
    """Check type, emptiness, scheme, size and trust domain; return (trust_domain, path).

    Raises the first rule violation found, in go-spiffe's order.
    """
    if not isinstance(s, str):
        raise type_error(s, what)
    if not s:
        raise InvalidIdError(f"{what} cannot be empty", rule="empty")
    if not s.startswith(prefix):
        example = (
            "spiffe://example.org/path"
            if prefix == SPIFFE_PREFIX
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
    err = trust_domain_error(td)
    if err is not None:
        raise err
    return td, path


def segment_error(value: object, field: str) -> InvalidIdError | None:
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
    if SEGMENT_RE.fullmatch(value) is None:
        return InvalidIdError(
            f"{field} {excerpt(value)} is not a single path segment: {field} characters are "
            "limited to letters, numbers, dots, dashes, and underscores (no '/')",
            rule=f"aztp_{field}",
        )
    if value in (".", ".."):
        return InvalidIdError(
            f"{field} cannot be '.' or '..' (dot segments are not allowed); choose a real name",
            rule=f"aztp_{field}",
        )
    return None
