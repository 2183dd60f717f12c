"""What the authority's components share: the store, the audit paths, the decision cache, and
each other (through one small context object instead of one class); plus the shared input
checks and constants."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from ..audit import canonical_json
from ..decisions import LocalDecisions
from ..decisions.changes import StateChange, involved
from ..errors import ValidationError
from ..ids import AztpId, parse_aztp_id
from ..ratelimit import TokenBuckets
from ..store import Store, change_log, schema
from .decision_state import SYMMETRIC, Touched, read_changes

if TYPE_CHECKING:
    from .audit_log import AuditLog
    from .federation import Federation
    from .flows import Flows
    from .identities import Identities
    from .links import Links
    from .policies import Policies
    from .svids import Svids
    from .tenants import Tenants
    from .trust import Trust
    from .verification import Verification

__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "LOCAL_ORG",
    "SYMMETRIC",
    "AuthorityContext",
    "Component",
    "Principal",
    "Touched",
]

#: Actions of writes that change decision state. Their audit rows carry ``revision``: the state
#: revision the write makes (decisions record the revision they were taken on, so the log
#: alone shows whether a decision could have seen a revocation: ``aztp-agents audit check``).
STATE_ACTIONS = frozenset(
    {
        "identity.issue",
        "identity.import",
        "identity.revoke",
        "identity.reissue",
        "flow.delete",
        "flow.add_identity",
        "flow.remove_identity",
        "flow.revoke_identity",
        "flow.reinstate_identity",
        "link.create",
        "link.delete",
        "policy.attach",
        "policy.detach",
    }
)

DEFAULT_TRUST_DOMAIN = "aztp.local"
LOCAL_ORG = "local"
DISCOVERABLE = ("public", "private")
#: Longest lifetimes a caller may ask for (SPIFFE's model relies on short-lived SVIDs).
MAX_X509_TTL = 24 * 3600
MAX_JWT_TTL = 3600


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: an organization and one of its users."""

    org_id: str
    user_id: str
    org_name: str = ""
    user_name: str = ""
    default_trust_domain: str = DEFAULT_TRUST_DOMAIN


class AuthorityContext:
    """The store, the audit paths and the decision cache, and the components (set by
    :class:`~aztp_agents.authority.Authority` when it composes them)."""

    tenants: Tenants
    trust: Trust
    identities: Identities
    svids: Svids
    links: Links
    verification: Verification
    flows: Flows
    policies: Policies
    federation: Federation
    audit_log: AuditLog

    def __init__(
        self,
        store: Store,
        *,
        default_trust_domain: str,
        issuance: TokenBuckets | None,
        decisions: LocalDecisions,
    ) -> None:
        self.store = store
        self.default_trust_domain = default_trust_domain
        self.issuance = issuance
        self.decisions = decisions

    def invalidate(self) -> None:
        """A write here changed decision state (the next decision confirms first)."""
        self.decisions.invalidate()

    def audit(
        self,
        conn: Connection,
        org_id: str,
        actor: str | None,
        action: str,
        subject: str | None,
        data: Mapping[str, Any],
    ) -> None:
        """Append to the organization's chain inside the write transaction ``conn``."""
        if action in STATE_ACTIONS:
            data = {**data, "revision": self._next_revision(conn)}
        self.store.append_audit(
            conn,
            org_id,
            [{"action": action, "actor": actor, "subject": subject, "data": dict(data)}],
        )

    def state_changed(self, conn: Connection, org_id: str, touched: Touched) -> None:
        """This write (transaction ``conn``) changed ``touched`` in the organization's decision
        state: append the resulting values to the change log in the same transaction, and
        once it commits apply them to this process's state at once (the very next decision
        here sees them without reading the store)."""
        if touched:
            self.append_changes(conn, org_id, read_changes(conn, org_id, touched))

    def append_changes(self, conn: Connection, org_id: str, changes: Sequence[StateChange]) -> None:
        """:meth:`state_changed` for a write that knows its records' resulting values itself
        (a bulk import: every row it inserted, as inserted)."""
        revision = self._next_revision(conn)
        position = change_log.append(
            conn,
            org_id,
            revision,
            changes,
            lock=not self.store.is_sqlite,
            keep=self.store.change_log_keep,
        )
        self.store.signal_change(conn, org_id, involved(changes))
        self.store.after_commit(
            conn, lambda: self.decisions.applied(org_id, position, revision, changes)
        )

    def _next_revision(self, conn: Connection) -> int:
        """The revision this write transaction makes (every write of a STATE_ACTIONS action
        bumps the revision once, when it commits). The row is locked first (PostgreSQL), so
        no other writer can bump it between this read and our bump; SQLite writers already
        hold the database's one write lock."""
        stmt = select(schema.meta.c.value).where(schema.meta.c.key == "revision")
        if not self.store.is_sqlite:
            stmt = stmt.with_for_update()
        return int(conn.execute(stmt).scalar_one()) + 1

    def audit_later(
        self, p: Principal, action: str, subject: str | None, data: Mapping[str, Any]
    ) -> None:
        """Audit a frequent read (verification) through the group-commit path."""
        self.store.submit_audit(
            p.org_id, (time.time(), action, p.user_id, subject, canonical_json(data))
        )


class Component:
    """One part of the authority; reaches the store and its siblings through ``ctx``."""

    def __init__(self, ctx: AuthorityContext) -> None:
        self.ctx = ctx


# --- input checks shared by the components ---------------------------------------------


def json_value(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        raise ValidationError(
            f"{what} must be JSON-serializable (dicts, lists, strings, numbers, booleans, null)"
        ) from None


def need_str(value: Any, what: str, *, max_len: int = 2048) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string")
    if len(value) > max_len:
        raise ValidationError(f"{what} is longer than {max_len} characters")
    return value


def opt_text(value: Any, what: str, *, max_len: int = 1024) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(f"{what} is longer than {max_len} characters")
    return value


def ttl_seconds(value: Any, *, maximum: int, what: str = "ttl") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(f"{what} must be a whole number of seconds from 1 to {maximum}")
    return value


def need_aztp_id(value: Any, what: str = "aztp_id") -> AztpId:
    if not isinstance(value, str):
        raise ValidationError(
            f"{what} must be a string like 'aztp://example.org/workload/production/node/my-agent'"
        )
    return parse_aztp_id(value)
