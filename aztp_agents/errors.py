"""Error types.

Every error raised by aztp-agents derives from :class:`AztpError`. Each subclass names one
kind of failure; its message says what was wrong and, where it helps, what to do about it.
Messages never contain secrets (API keys, private keys, tokens).
"""

from __future__ import annotations


class AztpError(Exception):
    """Base class of every aztp-agents error."""

    #: HTTP status the server answers with for this error.
    status_code: int = 400
    #: Short machine-readable code, stable across versions.
    code: str = "aztp_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- identifiers -----------------------------------------------------------------------


class InvalidIdError(AztpError, ValueError):
    """An AZTP ID, SPIFFE ID, trust domain or path broke a rule.

    ``rule`` names the rule that failed (for example ``"trust_domain_charset"``).
    """

    code = "invalid_id"

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


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

    def __init__(self, message: str, *, decision: object) -> None:
        super().__init__(message)
        self.decision = decision
