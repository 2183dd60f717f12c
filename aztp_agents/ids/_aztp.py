"""AZTP IDs (``aztp://{trust_domain}/workload/{environment}/{method}/{name}``): the value type
and its strict, cached parser; each maps one-to-one to the SPIFFE ID with the same path."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aztp_agents.errors import InvalidIdError, ValidationError

from ._diagnosis import excerpt, path_error, segment_error, split_id, type_error
from ._names import name_problem, validate_name
from ._rules import (
    AZTP_PREFIX,
    AZTP_RE,
    CACHE_SIZE,
    DEFAULT_ENVIRONMENT,
    DEFAULT_METHOD,
    MAX_AZTP_ID_BYTES,
    MAX_ID_BYTES,
    NAME_RE,
    SPIFFE_PREFIX,
    WORKLOAD_SEGMENT,
    unchecked,
)
from ._spiffe import SpiffeId, TrustDomain, parse_spiffe_id


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
        validate_name(name)  # the name first: its error is the one callers most need
        _check_aztp_parts(td.name, environment, method, name)
        return unchecked(cls, trust_domain=td, environment=environment, method=method, name=name)

    @classmethod
    def from_spiffe(cls, spiffe_id: SpiffeId | str) -> AztpId:
        """The AZTP ID for a SPIFFE ID of the form ``spiffe://td/workload/env/method/name``."""
        sid = spiffe_id if isinstance(spiffe_id, SpiffeId) else parse_spiffe_id(spiffe_id)
        env, method, name = _split_aztp_path(sid.path)
        return unchecked(
            cls, trust_domain=sid.trust_domain, environment=env, method=method, name=name
        )

    @property
    def path(self) -> str:
        """The path shared by the AZTP ID and its SPIFFE ID."""
        return f"/{WORKLOAD_SEGMENT}/{self.environment}/{self.method}/{self.name}"

    @property
    def spiffe_id(self) -> str:
        """The matching SPIFFE ID as a string."""
        return SPIFFE_PREFIX + self.trust_domain.name + self.path

    def to_spiffe(self) -> SpiffeId:
        """The matching SPIFFE ID (same trust domain and path)."""
        return unchecked(SpiffeId, trust_domain=self.trust_domain, path=self.path)

    def __str__(self) -> str:
        return AZTP_PREFIX + self.trust_domain.name + self.path

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.trust_domain, self.environment, self.method, self.name))


def _check_aztp_parts(td: str, environment: object, method: object, name: object) -> None:
    """Validate the parts of an AZTP ID (trust domain already a valid name)."""
    for value, field in ((environment, "environment"), (method, "method")):
        err = segment_error(value, field)
        if err is not None:
            raise err
    validate_name(name)  # type: ignore[arg-type]  # raises InvalidNameError for non-strings
    assert isinstance(name, str) and isinstance(environment, str) and isinstance(method, str)
    size = (
        len(SPIFFE_PREFIX)
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
            f"(got {excerpt(path) if path else 'no path'}); e.g. "
            "'/workload/production/node/my-agent'",
            rule="aztp_path",
        )
    _, _, env, method, name = parts
    problem = name_problem(name)
    if problem is not None:
        raise InvalidIdError(f"AZTP ID has an invalid name part: {problem}", rule="aztp_name")
    return env, method, name


@lru_cache(maxsize=CACHE_SIZE)
def _parse_aztp(s: str) -> AztpId:
    m = AZTP_RE.fullmatch(s)
    if m is not None and len(s) <= MAX_AZTP_ID_BYTES:
        td, _path, env, method, name = m.groups()
        if (
            env not in (".", "..")
            and method not in (".", "..")
            and NAME_RE.fullmatch(name) is not None
            and "//" not in name
        ):
            return unchecked(
                AztpId,
                trust_domain=unchecked(TrustDomain, name=td),
                environment=env,
                method=method,
                name=name,
            )
    # Slow path: find the first rule broken, for a helpful message.
    _td, path = split_id(s, AZTP_PREFIX, "AZTP ID", MAX_AZTP_ID_BYTES)
    err = path_error(path)
    if err is not None:
        raise err
    _split_aztp_path(path)
    raise AssertionError(f"unreachable: {s!r} rejected without a diagnosed rule")


def parse_aztp_id(s: str) -> AztpId:
    """Parse ``aztp://td/workload/env/method/name`` strictly; raises :class:`InvalidIdError`."""
    if type(s) is not str:
        if not isinstance(s, str):
            raise type_error(s, "AZTP ID")
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


def require_aztp_id(value: object, what: str = "aztp_id") -> AztpId:
    """An argument that must be an AZTP ID, as an :class:`AztpId`.

    An :class:`AztpId` passes as is and a string is parsed strictly (:class:`InvalidIdError`);
    anything else raises :class:`~aztp_agents.errors.ValidationError` naming the argument
    ``what``. The one check for AZTP ID arguments at API boundaries.
    """
    if isinstance(value, AztpId):
        return value
    if not isinstance(value, str):
        raise ValidationError(
            f"{what} must be a string like 'aztp://example.org/workload/production/node/my-agent'"
        )
    return parse_aztp_id(value)
