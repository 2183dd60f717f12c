"""Error types.

Every error raised by aztp-agents derives from :class:`AztpError`. Each subclass names one
kind of failure; its message says what was wrong and, where it helps, what to do about it.
Messages never contain secrets (API keys, private keys, tokens).

Each class also declares how it travels: its ``code`` and ``status_code`` go into the server's
error answer with :meth:`AztpError.wire_fields`, and :func:`error_from_wire` turns such an
answer back into the same class on the client (one table, :data:`ERRORS_BY_CODE`, derived from
the classes themselves, so a new error type needs no second mapping).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class AztpError(Exception):
    """Base class of every aztp-agents error."""

    #: HTTP status the server answers with for this error.
    status_code: int = 400
    #: Short machine-readable code, stable across versions.
    code: str = "aztp_error"

    #: Whether a server may answer with this error (False: raised only in-process).
    on_wire: ClassVar[bool] = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def wire_fields(self) -> dict[str, Any]:
        """What the server's error answer carries beside ``code`` (read back by
        :meth:`from_wire`)."""
        return {}

    @classmethod
    def from_wire(cls, message: str, data: Mapping[str, Any]) -> AztpError:
        """This error as a client raises it for a server's answer (``data`` is the answer's
        ``data`` object: ``code`` and the :meth:`wire_fields`)."""
        return cls(message)


# --- identifiers -----------------------------------------------------------------------


class InvalidIdError(AztpError, ValueError):
    """An AZTP ID, SPIFFE ID, trust domain or path broke a rule.

    ``rule`` names the rule that failed (for example ``"trust_domain_charset"``).
    """

    code = "invalid_id"

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule

    def wire_fields(self) -> dict[str, Any]:
        return {"rule": self.rule}

    @classmethod
    def from_wire(cls, message: str, data: Mapping[str, Any]) -> AztpError:
        return cls(message, rule=str(data.get("rule", "unknown")))


class InvalidNameError(AztpError, ValueError):
    """An identity name broke the AZTP name rule (2-64 of ``[A-Za-z0-9-/]``)."""

    code = "invalid_name"


# --- credentials -----------------------------------------------------------------------


class CredentialError(AztpError):
    """A credential (X.509-SVID, JWT-SVID, CSR, key) could not be made or did not validate."""

    code = "invalid_credential"
    status_code = 400


class SvidValidationError(CredentialError):
    """An SVID failed validation; ``reason`` says why (expired, bad signature, ...)."""

    code = "svid_invalid"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def wire_fields(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def from_wire(cls, message: str, data: Mapping[str, Any]) -> AztpError:
        return cls(message, reason=str(data.get("reason", "invalid")))


# --- authority -------------------------------------------------------------------------


class ValidationError(AztpError, ValueError):
    """A request argument had the wrong type or value."""

    code = "invalid_request"


class NotFoundError(AztpError, LookupError):
    """The identity, flow, policy or organization does not exist (or is not visible to you)."""

    code = "not_found"
    status_code = 404


class ConflictError(AztpError):
    """The operation conflicts with existing state (duplicate flow name, taken trust domain)."""

    code = "conflict"
    status_code = 409


class AlreadyRevokedError(ConflictError):
    """The identity is already revoked in that scope."""

    code = "already_revoked"


class PermissionDeniedError(AztpError):
    """The caller may not do this (another user's private flow, another organization)."""

    code = "forbidden"
    status_code = 403


class AuthenticationError(AztpError):
    """No API key, or an unknown, revoked or rotated one."""

    code = "unauthenticated"
    status_code = 401


class RateLimitedError(AztpError):
    """Too many requests of this kind for the organization; retry after ``retry_after`` s."""

    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def wire_fields(self) -> dict[str, Any]:
        return {"retryAfter": self.retry_after}

    @classmethod
    def from_wire(cls, message: str, data: Mapping[str, Any]) -> AztpError:
        try:
            seconds = float(data.get("retryAfter") or 1.0)
        except (TypeError, ValueError):
            seconds = 1.0
        return cls(message, retry_after=seconds)


class StoreError(AztpError):
    """The persistent store failed (locked, corrupt, unreachable, newer schema)."""

    code = "store_error"
    status_code = 503


class AuthorityUnavailableError(AztpError):
    """The identity authority could not be reached or gave an unusable answer."""

    code = "authority_unavailable"
    status_code = 503


class AuditChainError(AztpError):
    """The audit log's hash chain is broken (an entry edited, dropped or reordered)."""

    code = "audit_chain_broken"
    status_code = 500


# --- enforcement -----------------------------------------------------------------------


class ToolCallDenied(AztpError):
    """A tool call was denied by the guard. ``decision`` holds the full decision."""

    code = "tool_call_denied"
    status_code = 403
    #: A denial is a decision the server answers with, never an error answer.
    on_wire = False

    def __init__(self, message: str, *, decision: object) -> None:
        super().__init__(message)
        self.decision = decision


# --- the wire map ----------------------------------------------------------------------


def _subclasses(cls: type[AztpError]) -> list[type[AztpError]]:
    out: list[type[AztpError]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


_WIRE_ERRORS = [c for c in _subclasses(AztpError) if c.on_wire]
#: Every error a server may answer with, by its ``code`` (built from the classes above).
ERRORS_BY_CODE: dict[str, type[AztpError]] = {c.code: c for c in _WIRE_ERRORS}
if len(ERRORS_BY_CODE) != len(_WIRE_ERRORS):
    raise RuntimeError("two error classes declare the same code")

#: The error of each status when an answer's code is unknown or belongs to another status.
ERRORS_BY_STATUS: dict[int, type[AztpError]] = {
    c.status_code: c
    for c in (
        ValidationError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RateLimitedError,
    )
}

#: Statuses that, like 400, say the request itself was refused (too large, unprocessable).
_BAD_REQUEST = frozenset({400, 413, 422})


def error_from_wire(status: int, code: object, message: str, data: Mapping[str, Any]) -> AztpError:
    """The error for a server's 4xx answer: the class of ``code`` if that class answers with
    ``status``, else the status's general error, else a plain :class:`AztpError` carrying the
    status. (5xx answers are the client's to interpret: the authority is unavailable.)"""
    status_class = 400 if status in _BAD_REQUEST else status
    cls = ERRORS_BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None or cls.status_code != status_class:
        cls = ERRORS_BY_STATUS.get(status_class)
    if cls is None:
        err = AztpError(message)
        err.status_code = status
        return err
    return cls.from_wire(message, data)
