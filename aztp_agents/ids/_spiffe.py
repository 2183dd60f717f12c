"""Trust domains and SPIFFE IDs: the value types and their strict, cached parsers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aztp_agents.errors import InvalidIdError

from ._diagnosis import path_error, split_id, trust_domain_error, type_error
from ._rules import CACHE_SIZE, MAX_ID_BYTES, SPIFFE_PREFIX, SPIFFE_RE, TD_RE, unchecked


@dataclass(frozen=True, slots=True)
class TrustDomain:
    """A SPIFFE trust domain name such as ``example.org`` (validated on construction)."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise type_error(self.name, "trust domain")
        err = trust_domain_error(self.name)
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
                raise type_error(s, "trust domain")
            s = str(s)
        return _parse_trust_domain(s)

    def id_string(self) -> str:
        """The trust domain's SPIFFE ID, ``spiffe://{name}``."""
        return SPIFFE_PREFIX + self.name

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
            raise type_error(self.path, "path")
        err = path_error(self.path)
        if err is not None:
            raise err
        size = len(SPIFFE_PREFIX) + len(self.trust_domain.name) + len(self.path)
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
        return SPIFFE_PREFIX + self.trust_domain.name + self.path

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.trust_domain, self.path))


@lru_cache(maxsize=CACHE_SIZE)
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
    if TD_RE.fullmatch(s) is not None:
        return unchecked(TrustDomain, name=s)
    err = trust_domain_error(s)
    assert err is not None
    raise err


@lru_cache(maxsize=CACHE_SIZE)
def _parse_spiffe(s: str) -> SpiffeId:
    m = SPIFFE_RE.fullmatch(s)
    if m is not None and len(s) <= MAX_ID_BYTES:
        path = m.group(2)
        if "/." not in path or path_error(path) is None:
            return unchecked(
                SpiffeId, trust_domain=unchecked(TrustDomain, name=m.group(1)), path=path
            )
    # Slow path: find the first rule broken, for a helpful message.
    _td, path = split_id(s, SPIFFE_PREFIX, "SPIFFE ID", MAX_ID_BYTES)
    err = path_error(path)
    if err is not None:
        raise err
    raise AssertionError(f"unreachable: {s!r} rejected without a diagnosed rule")


def parse_spiffe_id(s: str) -> SpiffeId:
    """Parse ``spiffe://trust-domain[/path]`` strictly; raises :class:`InvalidIdError`."""
    if type(s) is not str:
        if not isinstance(s, str):
            raise type_error(s, "SPIFFE ID")
        s = str(s)
    return _parse_spiffe(s)


def validate_trust_domain(s: str) -> str:
    """Validate a trust domain and return its bare name.

    Accepts what :meth:`TrustDomain.parse` accepts (``example.org`` or
    ``spiffe://example.org``); raises :class:`InvalidIdError`.
    """
    return TrustDomain.parse(s).name
