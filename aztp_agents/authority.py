"""The identity authority: every AZTP operation, for any number of organizations.

The authority is synchronous and thread-safe; it runs in-process behind the embedded
:class:`~aztp_agents.Aztp` client and behind the HTTP server. Each operation is one store
transaction (nothing is half-written) and appends to the organization's audit chain.

Answers are plain dicts shaped as the AZTP API shows them (camelCase, ``_id``), so the
server can send them as they are and the client can return them as the seeds expect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import credentials as cred
from ._util import iso, now_iso, object_id, utcnow
from .audit import (
    BATCH_ACTION,
    AuditEntry,
    CallContext,
    ChainReport,
    FieldData,
    FieldParts,
    QueuedRecord,
    canonical_json,
    flatten_context,
    register_layout,
    verify_chain,
)
from .decisions import (
    Decision,
    Reason,
    Snapshot,
    authorize_connection,
    decide_tool_call,
    verify_in_snapshot,
)
from .errors import (
    AlreadyRevokedError,
    AuthenticationError,
    ConflictError,
    CredentialError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from .ids import AztpId, TrustDomain, parse_aztp_id, validate_name
from .policy import Statement, evaluate, parse_document
from .ratelimit import TokenBuckets
from .store import Store
from .store import schema as t

__all__ = ["DEFAULT_TRUST_DOMAIN", "LOCAL_ORG", "Authority", "Principal"]

log = logging.getLogger(__name__)

DEFAULT_TRUST_DOMAIN = "aztp.local"
LOCAL_ORG = "local"
_RELATIONSHIP = re.compile(r"[a-z_]{1,64}")
_SYMMETRIC = frozenset({"linked"})
_DISCOVERABLE = ("public", "private")
_KEY_PREFIX = "aztp_"
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


def _hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _json_value(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        raise ValidationError(f"{what} must be JSON-serializable (dicts, lists, strings, numbers, booleans, null)") from None


def _need_str(value: Any, what: str, *, max_len: int = 2048) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string")
    if len(value) > max_len:
        raise ValidationError(f"{what} is longer than {max_len} characters")
    return value


def _opt_text(value: Any, what: str, *, max_len: int = 1024) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(f"{what} is longer than {max_len} characters")
    return value


def _ttl(value: Any, *, maximum: int, what: str = "ttl") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(f"{what} must be a whole number of seconds from 1 to {maximum}")
    return value


def _need_aztp_id(value: Any, what: str = "aztp_id") -> AztpId:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string like 'aztp://example.org/workload/production/node/my-agent'")
    return parse_aztp_id(value)


class Authority:
    """AZTP operations over a :class:`Store`. One instance per process is enough."""

    def __init__(
        self,
        store: Store,
        *,
        default_trust_domain: str = DEFAULT_TRUST_DOMAIN,
        issuance_rate: tuple[float, int] | None = (200.0, 1000),
    ) -> None:
        """``issuance_rate``: (identities per second, burst) per organization, or None."""
        self.store = store
        self._issuance = TokenBuckets(*issuance_rate) if issuance_rate else None
        self.default_trust_domain = TrustDomain.parse(default_trust_domain).name
        self._cas: dict[str, cred.CertificateAuthority] = {}
        self._snap_lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._revision = -1
        self._stale = True
        self._check_lock = threading.Lock()
        self._validated_token: int | None = None
        self._watcher: threading.Thread | None = None
        self._closed = False
        store.audit_commit_listeners.append(self._audit_committed)
        #: Queues ``(org_id, record)`` for the audit writer (started on the first record).
        self._audit_put: Callable[[tuple[str, QueuedRecord]], None] = self._first_audit_put

    def _first_audit_put(self, item: tuple[str, QueuedRecord]) -> None:
        self._audit_put = self.store.audit_queue()
        self._audit_put(item)

    # ================================================================= organizations

    def local_principal(self) -> Principal:
        """The embedded default: organization ``local`` with user ``local`` (made on first use)."""
        with self.store.read() as conn:
            row = conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == LOCAL_ORG)).first()
        if row is None:
            with contextlib.suppress(ConflictError):  # another process may make it first
                self.create_org(LOCAL_ORG, self.default_trust_domain, user_name=LOCAL_ORG, with_key=False)
        with self.store.read() as conn:
            org = conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == LOCAL_ORG)).one()
            user = conn.execute(select(t.users.c.id, t.users.c.name).where(t.users.c.org_id == org.id).order_by(t.users.c.created_at)).first()
            return self._principal(conn, org.id, user.id)

    def _principal(self, conn: Connection, org_id: str, user_id: str) -> Principal:
        org = conn.execute(select(t.orgs.c.name).where(t.orgs.c.id == org_id)).one()
        user = conn.execute(select(t.users.c.name).where(t.users.c.id == user_id)).one()
        td = conn.execute(
            select(t.trust_domains.c.name).where(t.trust_domains.c.org_id == org_id).order_by(t.trust_domains.c.created_at)
        ).first()
        return Principal(org_id, user_id, org.name, user.name, td.name if td else self.default_trust_domain)

    def create_org(
        self, name: str, trust_domain: str, *, user_name: str = "admin", with_key: bool = True
    ) -> tuple[Principal, str | None]:
        """Create an organization owning ``trust_domain`` with a first user (and an API key)."""
        name = _need_str(name, "organization name", max_len=128)
        td = TrustDomain.parse(trust_domain).name
        org_id, user_id = object_id(), object_id()
        key = None
        try:
            with self.store.write() as conn:
                if conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == name)).first():
                    raise ConflictError(f"an organization named {name!r} already exists")
                now = now_iso()
                conn.execute(insert(t.orgs).values(id=org_id, name=name, created_at=now))
                conn.execute(insert(t.users).values(id=user_id, org_id=org_id, name=user_name, created_at=now))
                self._claim_trust_domain(conn, org_id, td)
                if with_key:
                    key = self._new_key(conn, org_id, user_id)
                self._audit(conn, org_id, user_id, "org.create", None, {"name": name, "trustDomain": td})
                principal = Principal(org_id, user_id, name, user_name, td)
        except IntegrityError:
            raise ConflictError(f"an organization named {name!r} or trust domain {td!r} already exists") from None
        self._invalidate()
        return principal, key

    def create_user(self, org_id: str, name: str) -> Principal:
        name = _need_str(name, "user name", max_len=128)
        user_id = object_id()
        try:
            with self.store.write() as conn:
                conn.execute(insert(t.users).values(id=user_id, org_id=org_id, name=name, created_at=now_iso()))
                self._audit(conn, org_id, user_id, "user.create", None, {"name": name})
                return self._principal(conn, org_id, user_id)
        except IntegrityError:
            raise ConflictError(f"a user named {name!r} already exists in this organization") from None

    def org_by_name(self, name: str) -> str:
        with self.store.read() as conn:
            row = conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no organization named {name!r}; create it with 'aztp-agents org create'")
        return str(row.id)

    def principal_for(self, org_id: str, user_name: str | None = None) -> Principal:
        with self.store.read() as conn:
            stmt = select(t.users.c.id).where(t.users.c.org_id == org_id)
            if user_name:
                stmt = stmt.where(t.users.c.name == user_name)
            row = conn.execute(stmt.order_by(t.users.c.created_at)).first()
            if row is None:
                raise NotFoundError(f"no user {user_name!r} in that organization")
            return self._principal(conn, org_id, row.id)

    # ----------------------------------------------------------------- API keys

    def _new_key(self, conn: Connection, org_id: str, user_id: str) -> str:
        key = _KEY_PREFIX + secrets.token_urlsafe(32)  # 256 bits of entropy
        conn.execute(
            insert(t.api_keys).values(
                id=object_id(), org_id=org_id, user_id=user_id, key_hash=_hash_key(key),
                prefix=key[: len(_KEY_PREFIX) + 4], created_at=now_iso(),
            )
        )
        return key

    def create_api_key(self, org_id: str, user_id: str) -> tuple[str, str]:
        """A new key for the user, returned once as ``(key_id, key)``; only its hash is stored."""
        with self.store.write(bump=False) as conn:
            key = self._new_key(conn, org_id, user_id)
            key_id = conn.execute(select(t.api_keys.c.id).where(t.api_keys.c.key_hash == _hash_key(key))).scalar_one()
            self._audit(conn, org_id, user_id, "key.create", key_id, {})
        return key_id, key

    def list_api_keys(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.api_keys).where(t.api_keys.c.org_id == org_id).order_by(t.api_keys.c.created_at)).all()
        return [
            {"id": r.id, "userId": r.user_id, "prefix": r.prefix + "…", "createdAt": r.created_at, "revokedAt": r.revoked_at}
            for r in rows
        ]

    def revoke_api_key(self, org_id: str, key_id: str) -> None:
        with self.store.write(bump=False) as conn:
            n = conn.execute(
                update(t.api_keys)
                .where(t.api_keys.c.id == key_id, t.api_keys.c.org_id == org_id, t.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now_iso())
            ).rowcount
            if not n:
                raise NotFoundError(f"no active API key {key_id!r} in this organization")
            self._audit(conn, org_id, None, "key.revoke", key_id, {})

    def rotate_api_key(self, org_id: str, key_id: str) -> tuple[str, str]:
        """Revoke key ``key_id`` and make its user a new one, in one transaction."""
        with self.store.write(bump=False) as conn:
            row = conn.execute(select(t.api_keys).where(
                t.api_keys.c.id == key_id, t.api_keys.c.org_id == org_id, t.api_keys.c.revoked_at.is_(None))).first()
            if row is None:
                raise NotFoundError(f"no active API key {key_id!r} in this organization")
            conn.execute(update(t.api_keys).where(t.api_keys.c.id == key_id).values(revoked_at=now_iso()))
            key = self._new_key(conn, org_id, row.user_id)
            new_id = conn.execute(select(t.api_keys.c.id).where(t.api_keys.c.key_hash == _hash_key(key))).scalar_one()
            self._audit(conn, org_id, row.user_id, "key.rotate", key_id, {"newKeyId": new_id})
        return new_id, key

    def authenticate(self, api_key: str | None) -> Principal:
        """The principal an API key belongs to; :class:`AuthenticationError` otherwise."""
        if not api_key or not isinstance(api_key, str) or len(api_key) > 256:
            raise AuthenticationError("missing or malformed API key: send it in the 'api_access_key' header or as 'Authorization: Bearer <key>'")
        digest = _hash_key(api_key)
        with self.store.read() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_hash == digest)).first()
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                raise AuthenticationError("unknown API key")
            if row.revoked_at is not None:
                raise AuthenticationError("this API key was revoked or rotated")
            return self._principal(conn, row.org_id, row.user_id)

    # ================================================================= CAs and bundles

    def _claim_trust_domain(self, conn: Connection, org_id: str, td: str) -> None:
        row = conn.execute(select(t.trust_domains.c.org_id).where(t.trust_domains.c.name == td)).first()
        if row is not None:
            if row.org_id != org_id:
                raise PermissionDeniedError(f"trust domain {td!r} belongs to another organization; use one of your own")
            return
        ca = cred.CertificateAuthority.generate(td)
        cert_pem, key_pem = ca.to_pem()
        conn.execute(
            insert(t.trust_domains).values(
                name=td, org_id=org_id, cert_pem=cert_pem, key_pem=self.store.seal(key_pem, context=f"ca:{td}"),
                kid=ca.kid, sequence=1, created_at=now_iso()
            )
        )

    def _ca(self, conn: Connection, org_id: str, td: str) -> cred.CertificateAuthority:
        """The trust domain's CA as stored in this transaction. The parsed CA is cached by its
        key id, so a CA from a rolled-back claim is never used."""
        row = conn.execute(select(t.trust_domains.c.org_id, t.trust_domains.c.kid).where(t.trust_domains.c.name == td)).first()
        if row is None:
            raise NotFoundError(f"trust domain {td!r} is not set up")
        if row.org_id != org_id:
            raise PermissionDeniedError(f"trust domain {td!r} belongs to another organization")
        ca = self._cas.get(td)
        if ca is None or ca.kid != row.kid:
            pem = conn.execute(select(t.trust_domains.c.cert_pem, t.trust_domains.c.key_pem).where(t.trust_domains.c.name == td)).one()
            ca = cred.CertificateAuthority.from_pem(pem.cert_pem, self.store.unseal(pem.key_pem, context=f"ca:{td}"))
            self._cas[td] = ca
        return ca

    def trust_domains(self, p: Principal) -> list[str]:
        with self.store.read() as conn:
            return list(conn.execute(select(t.trust_domains.c.name).where(t.trust_domains.c.org_id == p.org_id)).scalars())

    def trust_bundle(self, p: Principal, trust_domain: str | None = None) -> dict[str, Any]:
        """SPIFFE bundles (JWKS) of the organization's trust domains, keyed by trust domain."""
        out: dict[str, Any] = {}
        with self.store.read() as conn:
            rows = conn.execute(select(t.trust_domains).where(t.trust_domains.c.org_id == p.org_id)).all()
            for row in rows:
                if trust_domain and row.name != trust_domain:
                    continue
                ca = self._ca(conn, p.org_id, row.name)
                out[row.name] = cred.TrustBundle.from_authorities(row.name, [ca], sequence=row.sequence).to_jwks()
        if trust_domain and trust_domain not in out:
            raise NotFoundError(f"trust domain {trust_domain!r} is not one of this organization's")
        return out

    # ================================================================= identities

    def secure_connect(
        self,
        p: Principal,
        name: str,
        *,
        is_global: bool = False,
        trust_domain: str | None = None,
        parent_identity: str | None = None,
        environment: str = "production",
        method: str = "node",
        hostname: str | None = None,
        extra: Mapping[str, Any] | None = None,
        csr_pem: str | None = None,
        make_key: bool = True,
        ttl: int = 3600,
    ) -> dict[str, Any]:
        """Issue (or re-issue, idempotent by name) an identity and, if asked, an X.509-SVID.

        Answer: ``{"identity": doc, "certificate", "privateKey", "caCertificate", "valid"}``.
        With ``csr_pem`` the key stays with the caller; with ``make_key`` a key pair is made
        here; with neither no credential is issued (the official client asks for none).
        """
        name = validate_name(name)
        if self._issuance is not None:
            self._issuance.take(p.org_id, "identity issuances")
        if not isinstance(is_global, bool):
            raise ValidationError("isGlobalIdentity must be true or false")
        environment = _need_str(environment or "production", "environment", max_len=64)
        if extra is not None and not isinstance(extra, Mapping):
            raise ValidationError("metadata.extra must be an object")
        hostname = hostname or socket.gethostname()
        now = now_iso()
        with self.store.write() as conn:
            row = conn.execute(select(t.identities).where(t.identities.c.org_id == p.org_id, t.identities.c.name == name)).first()
            if row is None:
                td = TrustDomain.parse(trust_domain).name if trust_domain else p.default_trust_domain
                self._claim_trust_domain(conn, p.org_id, td)
                aztp = AztpId.build(td, name, environment=environment, method=method or "node")
                if parent_identity is not None:
                    parent_identity = str(_need_aztp_id(parent_identity, "parentIdentity"))
                    self._identity_row(conn, p, parent_identity)
                if conn.execute(select(t.identities.c.id).where(t.identities.c.aztp_id == str(aztp))).first():
                    raise ConflictError(f"{aztp} is already issued by another organization")
                workload_info = {
                    "workloadId": name, "agentId": "aztp", "trustDomain": td, "method": aztp.method,
                    "timestamp": now, "hostname": hostname, "environment": environment,
                }
                selectors = [
                    f"workload:id:{name}", "agent:id:aztp", f"method:{aztp.method}",
                    f"metadata:hostname:{hostname}", f"metadata:environment:{environment}",
                    f"metadata:trustDomain:{td}", f"metadata:parentIdentity:{parent_identity or 'null'}",
                    f"metadata:isGlobal:{str(is_global).lower()}",
                ]
                if extra:
                    _json_value(extra, "metadata.extra")
                    selectors += [f"metadata:extra:{k}:{v}" for k, v in sorted(extra.items())][:32]
                conn.execute(
                    insert(t.identities).values(
                        id=object_id(), org_id=p.org_id, user_id=p.user_id, aztp_id=str(aztp), name=name,
                        trust_domain=td, environment=environment, method=aztp.method, is_global=is_global,
                        parent_identity=parent_identity, status="active", selectors=selectors,
                        workload_info=workload_info, created_at=now, updated_at=now,
                    )
                )
                action = "identity.issue"
            else:
                conn.execute(
                    update(t.identities).where(t.identities.c.id == row.id).values(
                        updated_at=now, workload_info={**row.workload_info, "timestamp": now, "hostname": hostname}
                    )
                )
                action = "identity.reconnect"
            row = conn.execute(select(t.identities).where(t.identities.c.org_id == p.org_id, t.identities.c.name == name)).one()
            answer: dict[str, Any] = {"valid": row.status == "active", "certificate": "", "privateKey": "", "caCertificate": ""}
            if row.status == "active" and (csr_pem or make_key):
                answer.update(self._issue_x509(conn, p, row, csr_pem=csr_pem, ttl=ttl))
            elif row.status != "active":
                answer["error"] = f"{row.aztp_id} is revoked; reissue it with reissue_identity()"
            self._audit(conn, p.org_id, p.user_id, action, row.aztp_id, {"credential": bool(answer["certificate"])})
            answer["identity"] = self._identity_doc(row)
        self._invalidate()
        return answer

    def _issue_x509(self, conn: Connection, p: Principal, row: Any, *, csr_pem: str | None, ttl: int) -> dict[str, str]:
        ttl = _ttl(ttl, maximum=MAX_X509_TTL)
        ca = self._ca(conn, p.org_id, row.trust_domain)
        spiffe_id = AztpId.parse(row.aztp_id).spiffe_id
        key_pem = ""
        if csr_pem:
            svid = ca.issue_x509_svid_from_csr(spiffe_id, csr_pem, ttl=ttl)
        else:
            key = cred.generate_private_key()
            key_pem = cred.private_key_to_pem(key)
            svid = ca.issue_x509_svid(spiffe_id, key.public_key(), ttl=ttl)
        conn.execute(
            insert(t.credentials).values(
                serial=format(svid.serial, "x"), org_id=p.org_id, aztp_id=row.aztp_id, kind="x509",
                generation=row.generation, issued_at=now_iso(), not_after=iso(svid.not_after),
            )
        )
        return {"certificate": svid.cert_pem, "privateKey": key_pem, "caCertificate": ca.certificate_pem,
                "serial": format(svid.serial, "x"), "expiresAt": iso(svid.not_after)}

    def issue_credential(self, p: Principal, aztp_id: str, *, csr_pem: str | None = None, ttl: int = 3600) -> dict[str, str]:
        """A fresh X.509-SVID for an active identity (from a CSR, or with a key made here)."""
        with self.store.write(bump=False) as conn:
            row = self._identity_row(conn, p, aztp_id)
            if row.status != "active":
                raise PermissionDeniedError(f"{aztp_id} is revoked; reissue it before asking for credentials")
            out = self._issue_x509(conn, p, row, csr_pem=csr_pem, ttl=ttl)
            self._audit(conn, p.org_id, p.user_id, "credential.x509", aztp_id, {"serial": out["serial"]})
        return out

    def _identity_doc(self, row: Any) -> dict[str, Any]:
        doc = {
            "_id": row.id,
            "userId": row.user_id,
            "aztpId": row.aztp_id,
            "name": row.name,
            "parentIdentity": row.parent_identity,
            "absolutePath": "",
            "selectors": list(row.selectors),
            "workloadInfo": dict(row.workload_info),
            "status": row.status,
            "environment": row.environment,
            "isGlobalIdentity": bool(row.is_global),
            "identityType": "global" if row.is_global else "component",
            "trustDomain": row.trust_domain,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
        }
        if row.status == "revoked":
            doc["revocationReason"] = row.revoked_reason
            doc["revokedAt"] = row.revoked_at
        return doc

    def _identity_row(self, conn: Connection, p: Principal, aztp_id: str) -> Any:
        aztp_id = str(_need_aztp_id(aztp_id))
        row = conn.execute(select(t.identities).where(t.identities.c.aztp_id == aztp_id, t.identities.c.org_id == p.org_id)).first()
        if row is None:
            raise NotFoundError(f"identity {aztp_id} not found in this organization; issue it with secure_connect()")
        return row

    def get_identity(self, p: Principal, aztp_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            return self._identity_doc(self._identity_row(conn, p, aztp_id))

    def get_identity_by_name(self, p: Principal, name: str) -> dict[str, Any]:
        _need_str(name, "name", max_len=64)
        with self.store.read() as conn:
            row = conn.execute(select(t.identities).where(t.identities.c.org_id == p.org_id, t.identities.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no identity named {name!r} in this organization")
        return self._identity_doc(row)

    def list_identities(self, p: Principal) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.identities).where(t.identities.c.org_id == p.org_id).order_by(t.identities.c.created_at)).all()
        return [self._identity_doc(r) for r in rows]

    def discover(self, p: Principal, trust_domain: str | None = None, requestor: str | None = None) -> list[dict[str, Any]]:
        """Discoverable identities: the organization's global identities and the members of its
        public flows (a private flow never exposes its members)."""
        with self.store.read() as conn:
            if requestor is not None:
                self._identity_row(conn, p, requestor)
            visible_flows = select(t.flows.c.id).where(t.flows.c.org_id == p.org_id, t.flows.c.discoverable == "public")
            exposed = select(t.flow_members.c.aztp_id).where(t.flow_members.c.flow_id.in_(visible_flows))
            stmt = select(t.identities).where(
                t.identities.c.org_id == p.org_id,
                or_(t.identities.c.is_global.is_(True), t.identities.c.aztp_id.in_(exposed)),
            )
            if trust_domain:
                stmt = stmt.where(t.identities.c.trust_domain == TrustDomain.parse(trust_domain).name)
            rows = conn.execute(stmt.order_by(t.identities.c.created_at)).all()
        return [self._identity_doc(r) for r in rows]

    def revoke_identity(self, p: Principal, aztp_id: str, reason: str | None = None) -> dict[str, Any]:
        """Invalid everywhere at once. Credentials issued so far stay dead after a reissue."""
        reason = _opt_text(reason, "reason")
        now = now_iso()
        with self.store.write() as conn:
            row = self._identity_row(conn, p, aztp_id)
            if row.status == "revoked":
                raise AlreadyRevokedError(f"Identity already revoked: {row.aztp_id}")
            conn.execute(
                update(t.identities).where(t.identities.c.id == row.id).values(
                    status="revoked", revoked_reason=reason, revoked_at=now, updated_at=now
                )
            )
            self._audit(conn, p.org_id, p.user_id, "identity.revoke", row.aztp_id, {"reason": reason})
        self._invalidate()
        return {"aztpId": row.aztp_id, "status": "revoked", "reason": reason, "revokedAt": now, "valid": False}

    def reissue_identity(self, p: Principal, aztp_id: str, *, csr_pem: str | None = None, make_key: bool = True) -> dict[str, Any]:
        """Valid again, with a new credential; credentials issued before stay dead."""
        now = now_iso()
        with self.store.write() as conn:
            row = self._identity_row(conn, p, aztp_id)
            conn.execute(
                update(t.identities).where(t.identities.c.id == row.id).values(
                    status="active", revoked_reason=None, revoked_at=None, updated_at=now, credentials_valid_after=now,
                    generation=row.generation + 1,
                )
            )
            row = self._identity_row(conn, p, aztp_id)
            answer: dict[str, Any] = {"aztpId": row.aztp_id, "status": "active", "valid": True, "reissuedAt": now}
            if csr_pem or make_key:
                answer.update(self._issue_x509(conn, p, row, csr_pem=csr_pem, ttl=3600))
            self._audit(conn, p.org_id, p.user_id, "identity.reissue", row.aztp_id, {})
        self._invalidate()
        return answer

    def verify_credential(self, p: Principal, cert_pem: str) -> dict[str, Any]:
        """Live check of an X.509-SVID: chain to the organization's CA, identity active, and
        issued after the identity's last reissue (credentials from before a revocation are dead)."""
        if not isinstance(cert_pem, str) or not cert_pem.isascii():
            raise ValidationError("the certificate must be PEM text (ASCII)")
        with self.store.read() as conn:
            tds = conn.execute(select(t.trust_domains.c.name).where(t.trust_domains.c.org_id == p.org_id)).scalars().all()
            for td in tds:
                bundle = cred.TrustBundle.from_authorities(td, [self._ca(conn, p.org_id, td)])
                try:
                    spiffe_id = cred.validate_x509_svid(cert_pem, bundle)
                except CredentialError:
                    continue
                aztp_id = str(AztpId.from_spiffe(spiffe_id))
                row = self._identity_row(conn, p, aztp_id)
                from cryptography import x509 as _x509

                serial = format(_x509.load_pem_x509_certificate(cert_pem.encode()).serial_number, "x")
                generation = conn.execute(select(t.credentials.c.generation).where(t.credentials.c.serial == serial)).scalar()
                if row.status != "active":
                    return {"valid": False, "aztpId": aztp_id, "reason": "revoked"}
                if generation is None or generation != row.generation:
                    return {"valid": False, "aztpId": aztp_id, "reason": "credential_superseded"}
                return {"valid": True, "aztpId": aztp_id, "reason": "allowed"}
        return {"valid": False, "aztpId": None, "reason": "untrusted_chain"}

    def fetch_jwt_svid(self, p: Principal, aztp_id: str, audience: str | Sequence[str], *, ttl: int = 300) -> dict[str, Any]:
        ttl = _ttl(ttl, maximum=MAX_JWT_TTL)
        if isinstance(audience, str):
            _need_str(audience, "audience")
        elif not audience or not all(isinstance(a, str) and a for a in audience):
            raise ValidationError("audience must be a non-empty string or list of strings")
        with self.store.write(bump=False) as conn:
            row = self._identity_row(conn, p, aztp_id)
            if row.status != "active":
                raise PermissionDeniedError(f"{aztp_id} is revoked; no JWT-SVID is issued for it")
            ca = self._ca(conn, p.org_id, row.trust_domain)
            aud = [audience] if isinstance(audience, str) else list(audience)
            token = ca.mint_jwt_svid(AztpId.parse(row.aztp_id).spiffe_id, aud if len(aud) > 1 else aud[0], ttl=ttl)
            self._audit(conn, p.org_id, p.user_id, "credential.jwt", row.aztp_id, {"audience": aud})
        return {"token": token, "spiffeId": AztpId.parse(row.aztp_id).spiffe_id, "aztpId": row.aztp_id,
                "audience": aud, "expiresAt": int(time.time()) + ttl}

    # ================================================================= links

    def link_identities(
        self, p: Principal, source: str, target: str, relationship_type: str = "linked", metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        if not isinstance(relationship_type, str) or not _RELATIONSHIP.fullmatch(relationship_type):
            raise ValidationError(f"relationship_type must match [a-z_]+ (like 'linked', 'parent', 'data_pipeline'), got {relationship_type!r}")
        meta = _json_value(dict(metadata or {}), "metadata") if metadata is None or isinstance(metadata, Mapping) else None
        if meta is None:
            raise ValidationError("metadata must be an object")
        with self.store.write() as conn:
            src = self._identity_row(conn, p, source).aztp_id
            dst = self._linkable_target(conn, p, target)
            if src == dst:
                raise ValidationError("an identity cannot be linked to itself")
            existing = conn.execute(
                select(t.links).where(t.links.c.org_id == p.org_id, t.links.c.source == src,
                                      t.links.c.target == dst, t.links.c.relationship_type == relationship_type)
            ).first()
            if existing is None:
                conn.execute(insert(t.links).values(id=object_id(), org_id=p.org_id, source=src, target=dst,
                                                    relationship_type=relationship_type, metadata=meta, created_at=now_iso()))
                self._audit(conn, p.org_id, p.user_id, "link.create", src, {"target": dst, "relationshipType": relationship_type})
            row = conn.execute(
                select(t.links).where(t.links.c.org_id == p.org_id, t.links.c.source == src,
                                      t.links.c.target == dst, t.links.c.relationship_type == relationship_type)
            ).one()
        self._invalidate()
        return self._link_doc(row)

    def _linkable_target(self, conn: Connection, p: Principal, target: str) -> str:
        aztp = _need_aztp_id(target, "target")
        row = conn.execute(select(t.identities.c.org_id).where(t.identities.c.aztp_id == str(aztp))).first()
        if row is not None and row.org_id == p.org_id:
            return str(aztp)
        federated = conn.execute(
            select(t.federations.c.trust_domain).where(t.federations.c.org_id == p.org_id, t.federations.c.trust_domain == aztp.trust_domain.name)
        ).first()
        if federated is not None:
            return str(aztp)
        raise NotFoundError(f"identity {aztp} not found in this organization (nor in a federated trust domain)")

    @staticmethod
    def _link_doc(row: Any) -> dict[str, Any]:
        return {"_id": row.id, "sourceIdentity": row.source, "targetIdentity": row.target,
                "relationshipType": row.relationship_type, "metadata": row.metadata, "createdAt": row.created_at}

    def unlink_identities(self, p: Principal, source: str, target: str, relationship_type: str | None = None) -> dict[str, Any]:
        src, dst = str(_need_aztp_id(source, "source")), str(_need_aztp_id(target, "target"))
        with self.store.write() as conn:
            forward = and_(t.links.c.source == src, t.links.c.target == dst)
            # a symmetric link authorizes both ways, so it can be removed from either end
            backward = and_(t.links.c.source == dst, t.links.c.target == src, t.links.c.relationship_type.in_(_SYMMETRIC))
            cond = and_(t.links.c.org_id == p.org_id, or_(forward, backward))
            if relationship_type:
                cond = and_(cond, t.links.c.relationship_type == relationship_type)
            n = conn.execute(delete(t.links).where(cond)).rowcount
            if not n:
                raise NotFoundError(f"no link from {src} to {dst}")
            self._audit(conn, p.org_id, p.user_id, "link.delete", src, {"target": dst, "relationshipType": relationship_type, "removed": n})
        self._invalidate()
        return {"sourceIdentity": src, "targetIdentity": dst, "removed": n}

    def list_links(self, p: Principal, aztp_id: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            stmt = select(t.links).where(t.links.c.org_id == p.org_id)
            if aztp_id:
                stmt = stmt.where(or_(t.links.c.source == aztp_id, t.links.c.target == aztp_id))
            return [self._link_doc(r) for r in conn.execute(stmt.order_by(t.links.c.created_at)).all()]

    # ================================================================= verification

    def verify_identity(self, p: Principal, aztp_id: str, flow_id: str | None = None) -> dict[str, Any]:
        """Global or flow-scoped validity (a negative answer is an answer, not an error); audited."""
        answer = self._verify(p, aztp_id, flow_id)
        self._audit_later(p, "identity.verify", answer["aztpId"],
                          {"valid": answer["valid"], "reason": answer["reason"], "flowId": flow_id})
        return answer

    def _verify(self, p: Principal, aztp_id: str, flow_id: str | None) -> dict[str, Any]:
        aztp = str(_need_aztp_id(aztp_id))
        if flow_id is not None and not isinstance(flow_id, str):
            raise ValidationError("identity_flow_id must be a string (the flow's _id)")
        return verify_answer(self.snapshot(p.org_id), p.user_id, aztp, flow_id)

    def verify_cached(self, p: Principal, aztp_id: str, flow_id: str | None = None) -> dict[str, Any] | None:
        """:meth:`verify_identity` without any I/O, or None when the snapshot must be loaded
        first (for event loops: call :meth:`verify_identity` in a worker thread then).
        ``aztp_id`` must already be a canonical AZTP ID."""
        snap = self.cached_snapshot(p.org_id)
        if snap is None:
            return None
        answer = verify_answer(snap, p.user_id, aztp_id, flow_id)
        self._audit_later(p, "identity.verify", aztp_id,
                          {"valid": answer["valid"], "reason": answer["reason"], "flowId": flow_id})
        return answer

    def authorize_connection(self, p: Principal, source: str, target: str, policy_code: str | None = None) -> dict[str, Any]:
        """Both valid, a link allows source -> target, and the policy (if named) allows
        ``connect`` on the target; across organizations only where they federate. Audited."""
        answer = self._authorize(p, source, target, policy_code)
        self._audit_later(p, "connection.authorize", source,
                          {"target": target, "valid": answer["valid"], "reason": answer["reason"], "policyCode": policy_code})
        return answer

    def _authorize(self, p: Principal, source: str, target: str, policy_code: str | None) -> dict[str, Any]:
        policy_code = _opt_text(policy_code, "policyCode", max_len=256)
        src, dst = str(_need_aztp_id(source, "from")), str(_need_aztp_id(target, "to"))
        snap = self.snapshot(p.org_id)
        policy: tuple[Statement, ...] | None = None
        if policy_code:
            policy = self._policy_statements(p, policy_code)
            if policy is None:
                return {"valid": False, "reason": "policy_unknown", "message": f"policy {policy_code!r} not found"}
        foreign = self._foreign_status(p, dst) if dst not in snap.identities else None
        if foreign is not None:
            snap = dataclasses.replace(snap, identities={**snap.identities, dst: foreign}, memo={})
        verdict = authorize_connection(snap, src, dst, policy=policy)
        reason = verdict.reason.value.replace("agent_", "source_").replace("tool_", "target_")
        return {"valid": verdict.valid, "reason": reason,
                "message": "Connection authorized" if verdict.valid else f"Connection not authorized: {reason}"}

    def _foreign_status(self, p: Principal, aztp_id: str) -> str | None:
        """Status of an identity of a federated organization (None if not federated)."""
        aztp = parse_aztp_id(aztp_id)
        with self.store.read() as conn:
            federated = conn.execute(select(t.federations).where(
                t.federations.c.org_id == p.org_id, t.federations.c.trust_domain == aztp.trust_domain.name)).first()
            if federated is None:
                return None
            owner = conn.execute(select(t.trust_domains.c.org_id).where(t.trust_domains.c.name == aztp.trust_domain.name)).first()
            if owner is None:
                return None
            peer_trusts = conn.execute(select(t.federations).where(
                t.federations.c.org_id == owner.org_id, t.federations.c.trust_domain.in_(
                    select(t.trust_domains.c.name).where(t.trust_domains.c.org_id == p.org_id)))).first()
            if peer_trusts is None:
                return None  # federation needs both sides to agree
            return conn.execute(select(t.identities.c.status).where(t.identities.c.aztp_id == str(aztp))).scalar()

    # ================================================================= flows

    def _visible(self, p: Principal) -> Any:
        return or_(t.flows.c.discoverable == "public", t.flows.c.owner_user_id == p.user_id)

    def _flow_row(self, conn: Connection, p: Principal, flow_id: str) -> Any:
        if not isinstance(flow_id, str) or not flow_id:
            raise ValidationError("flow_id must be a non-empty string (the flow's _id)")
        row = conn.execute(select(t.flows).where(t.flows.c.id == flow_id, t.flows.c.org_id == p.org_id, self._visible(p))).first()
        if row is None:
            raise NotFoundError(f"identity flow {flow_id!r} not found")
        return row

    def _flow_doc(self, conn: Connection, row: Any) -> dict[str, Any]:
        members = conn.execute(select(t.flow_members).where(t.flow_members.c.flow_id == row.id).order_by(t.flow_members.c.added_at)).all()
        revoked = {r.aztp_id: r for r in conn.execute(select(t.flow_revocations).where(t.flow_revocations.c.flow_id == row.id)).all()}
        identities = []
        for m in members:
            r = revoked.get(m.aztp_id)
            entry = {"aztpId": m.aztp_id, "status": "revoked" if r else "active", "addedAt": m.added_at, "updatedAt": m.updated_at}
            if r:
                entry.update({"revokedAt": r.revoked_at, "revocationReason": r.reason})
            identities.append(entry)
        return {
            "_id": row.id, "name": row.name, "description": row.description, "discoverable": row.discoverable,
            "tags": list(row.tags), "metadata": row.metadata, "userId": row.owner_user_id,
            "identities": identities, "createdAt": row.created_at, "updatedAt": row.updated_at,
        }

    def create_flow(
        self, p: Principal, name: str, description: str | None = None, discoverable: str = "public",
        tags: Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        name = _need_str(name, "flow name", max_len=256)
        if discoverable not in _DISCOVERABLE:
            raise ValidationError(f"discoverable must be 'public' or 'private', got {discoverable!r}")
        if description is not None and not isinstance(description, str):
            raise ValidationError("description must be a string")
        tags = self._tags(tags)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValidationError("metadata must be an object")
        meta = _json_value(dict(metadata or {}), "metadata")
        now = now_iso()
        flow_id = object_id()
        try:
            with self.store.write() as conn:
                clash = conn.execute(select(t.flows.c.id).where(t.flows.c.org_id == p.org_id, t.flows.c.name == name)).first()
                if clash is not None:
                    raise ConflictError(f"a flow named {name!r} already exists in this organization (id {clash.id})")
                conn.execute(insert(t.flows).values(
                    id=flow_id, org_id=p.org_id, owner_user_id=p.user_id, name=name, description=description,
                    discoverable=discoverable, tags=tags, metadata=meta, created_at=now, updated_at=now))
                self._audit(conn, p.org_id, p.user_id, "flow.create", flow_id, {"name": name, "discoverable": discoverable})
                doc = self._flow_doc(conn, self._flow_row(conn, p, flow_id))
        except IntegrityError:
            raise ConflictError(f"a flow named {name!r} already exists in this organization") from None
        self._invalidate()
        return doc

    @staticmethod
    def _tags(tags: Any) -> list[str]:
        if tags is None:
            return []
        if isinstance(tags, str) or not all(isinstance(x, str) for x in tags):
            raise ValidationError("tags must be a list of strings")
        return list(tags)

    def get_flow(self, p: Principal, flow_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            return self._flow_doc(conn, self._flow_row(conn, p, flow_id))

    def find_flow(self, p: Principal, name: str) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = conn.execute(select(t.flows).where(t.flows.c.org_id == p.org_id, t.flows.c.name == name)).first()
            if row is None:
                return None
            if row.discoverable != "public" and row.owner_user_id != p.user_id:
                raise PermissionDeniedError(f"flow {name!r} is another user's private flow")
            return self._flow_doc(conn, row)

    def ensure_flow(self, p: Principal, name: str, *, discoverable: str = "private", description: str | None = None) -> dict[str, Any]:
        """The visible flow named ``name``, created (``discoverable``) if missing."""
        found = self.find_flow(p, name)
        if found is not None:
            return found
        try:
            return self.create_flow(p, name, description=description or f"aztp-agents flow {name}", discoverable=discoverable)
        except ConflictError:
            found = self.find_flow(p, name)  # made concurrently
            if found is None:
                raise
            return found

    def list_flows(self, p: Principal) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.flows).where(t.flows.c.org_id == p.org_id, self._visible(p)).order_by(t.flows.c.created_at)).all()
            return [self._flow_doc(conn, r) for r in rows]

    def update_flow(self, p: Principal, flow_id: str, **changes: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key == "name":
                values["name"] = _need_str(value, "flow name", max_len=256)
            elif key == "description":
                if not isinstance(value, str):
                    raise ValidationError("description must be a string")
                values["description"] = value
            elif key == "discoverable":
                if value not in _DISCOVERABLE:
                    raise ValidationError(f"discoverable must be 'public' or 'private', got {value!r}")
                values["discoverable"] = value
            elif key == "tags":
                values["tags"] = self._tags(value)
            elif key == "metadata":
                if not isinstance(value, Mapping):
                    raise ValidationError("metadata must be an object")
                values["metadata"] = _json_value(dict(value), "metadata")
            else:
                raise ValidationError(f"unknown flow field {key!r}")
        try:
            with self.store.write() as conn:
                row = self._flow_row(conn, p, flow_id)
                if "name" in values and values["name"] != row.name:
                    clash = conn.execute(select(t.flows.c.id).where(t.flows.c.org_id == p.org_id, t.flows.c.name == values["name"])).first()
                    if clash is not None:
                        raise ConflictError(f"a flow named {values['name']!r} already exists in this organization")
                if values:
                    conn.execute(update(t.flows).where(t.flows.c.id == row.id).values(**values, updated_at=now_iso()))
                    self._audit(conn, p.org_id, p.user_id, "flow.update", row.id, {"fields": sorted(values)})
                doc = self._flow_doc(conn, self._flow_row(conn, p, flow_id))
        except IntegrityError:
            raise ConflictError("a flow with that name already exists in this organization") from None
        self._invalidate()
        return doc

    def delete_flow(self, p: Principal, flow_id: str) -> dict[str, Any]:
        with self.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            conn.execute(delete(t.flow_members).where(t.flow_members.c.flow_id == row.id))
            conn.execute(delete(t.flow_revocations).where(t.flow_revocations.c.flow_id == row.id))
            conn.execute(delete(t.flows).where(t.flows.c.id == row.id))
            self._audit(conn, p.org_id, p.user_id, "flow.delete", row.id, {"name": row.name})
        self._invalidate()
        return {"_id": row.id, "name": row.name, "deleted": True}

    def add_identity_to_flow(self, p: Principal, flow_id: str, aztp_id: str) -> dict[str, Any]:
        with self.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            ident = self._identity_row(conn, p, aztp_id)
            exists = conn.execute(select(t.flow_members).where(t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == ident.aztp_id)).first()
            if exists is None:
                now = now_iso()
                conn.execute(insert(t.flow_members).values(flow_id=row.id, aztp_id=ident.aztp_id, added_at=now, updated_at=now))
                self._audit(conn, p.org_id, p.user_id, "flow.add_identity", ident.aztp_id, {"flowId": row.id})
            doc = self._flow_doc(conn, row)
        self._invalidate()
        return doc

    def remove_identity_from_flow(self, p: Principal, flow_id: str, aztp_id: str) -> dict[str, Any]:
        aztp = str(_need_aztp_id(aztp_id))
        with self.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            n = conn.execute(delete(t.flow_members).where(t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == aztp)).rowcount
            if n:
                self._audit(conn, p.org_id, p.user_id, "flow.remove_identity", aztp, {"flowId": row.id})
            doc = self._flow_doc(conn, row)
        self._invalidate()
        return doc

    def revoke_flow_identity(self, p: Principal, aztp_id: str, flow_id: str, reason: str | None = None) -> dict[str, Any]:
        """Invalid in that flow only. Survives remove + re-add; undone by reinstate."""
        aztp = str(_need_aztp_id(aztp_id))
        reason = _opt_text(reason, "reason")
        issued = utcnow()
        with self.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            self._identity_row(conn, p, aztp)
            member = conn.execute(select(t.flow_members).where(t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == aztp)).first()
            if member is None:
                raise NotFoundError(f"{aztp} is not a member of flow {flow_id}; add it before revoking it there")
            if conn.execute(select(t.flow_revocations).where(t.flow_revocations.c.flow_id == row.id, t.flow_revocations.c.aztp_id == aztp)).first():
                raise AlreadyRevokedError("Identity already revoked for this flow")
            conn.execute(insert(t.flow_revocations).values(flow_id=row.id, aztp_id=aztp, reason=reason, revoked_at=iso(issued)))
            conn.execute(update(t.flow_members).where(t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == aztp).values(updated_at=iso(issued)))
            self._audit(conn, p.org_id, p.user_id, "flow.revoke_identity", aztp, {"flowId": row.id, "reason": reason})
        self._invalidate()
        return {"valid": True, "issuedAt": int(issued.timestamp() * 1000), "reason": reason, "aztpId": aztp, "identityFlowId": row.id}

    def reinstate_flow_identity(self, p: Principal, aztp_id: str, flow_id: str) -> dict[str, Any]:
        aztp = str(_need_aztp_id(aztp_id))
        with self.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            n = conn.execute(delete(t.flow_revocations).where(t.flow_revocations.c.flow_id == row.id, t.flow_revocations.c.aztp_id == aztp)).rowcount
            if not n:
                raise NotFoundError(f"{aztp} is not revoked in flow {flow_id}")
            self._audit(conn, p.org_id, p.user_id, "flow.reinstate_identity", aztp, {"flowId": row.id})
            doc = self._flow_doc(conn, row)
        self._invalidate()
        return doc

    def flow_health(self, p: Principal, flow_id: str) -> dict[str, Any]:
        """Share of members valid in the flow: healthy >= 90 %, warning >= 70 %, else critical."""
        flow = self.get_flow(p, flow_id)
        snap = self.snapshot(p.org_id)
        report = []
        for member in flow["identities"]:
            v = verify_in_snapshot(snap, member["aztpId"], flow_id)
            report.append({"aztpId": member["aztpId"], "valid": v.valid, "reason": v.reason.value.replace("agent_", "identity_")})
        total = len(report)
        valid = sum(1 for r in report if r["valid"])
        score = 0.0 if total == 0 else round(valid / total * 100, 1)  # an empty flow is not healthy
        status = "healthy" if score >= 90 else "warning" if score >= 70 else "critical"
        return {"flowId": flow_id, "name": flow["name"], "status": status, "securityScore": score,
                "total": total, "valid": valid, "identities": report,
                "issues": [f"Identity issue: {r['aztpId']} ({r['reason']})" for r in report if not r["valid"]]}

    # ================================================================= policies

    def create_policy(self, p: Principal, name: str, document: Mapping[str, Any], *, code: str | None = None) -> dict[str, Any]:
        name = _need_str(name, "policy name", max_len=256)
        parsed = parse_document(document)
        stored = _json_value(dict(document) if isinstance(document, Mapping) else parsed.model_dump(by_alias=True), "policy document")
        code = code or f"policy:{secrets.token_hex(6)}"
        if not code.startswith("policy:"):
            raise ValidationError("a policy code starts with 'policy:'")
        try:
            with self.store.write() as conn:
                conn.execute(insert(t.policies).values(code=code, org_id=p.org_id, name=name, document=stored, created_at=now_iso()))
                self._audit(conn, p.org_id, p.user_id, "policy.create", code, {"name": name})
        except IntegrityError:
            raise ConflictError(f"policy code {code!r} is taken") from None
        self._invalidate()
        return {"code": code, "policyName": name, "policyStatement": stored}

    def attach_policy(self, p: Principal, aztp_id: str, code: str) -> dict[str, Any]:
        with self.store.write() as conn:
            ident = self._identity_row(conn, p, aztp_id)
            pol = conn.execute(select(t.policies).where(t.policies.c.code == code, t.policies.c.org_id == p.org_id)).first()
            if pol is None:
                raise NotFoundError(f"policy {code!r} not found in this organization")
            if not conn.execute(select(t.policy_attachments).where(t.policy_attachments.c.code == code, t.policy_attachments.c.aztp_id == ident.aztp_id)).first():
                conn.execute(insert(t.policy_attachments).values(code=code, aztp_id=ident.aztp_id, org_id=p.org_id))
                self._audit(conn, p.org_id, p.user_id, "policy.attach", ident.aztp_id, {"code": code})
        self._invalidate()
        return {"code": code, "aztpId": ident.aztp_id, "attached": True}

    def detach_policy(self, p: Principal, aztp_id: str, code: str) -> dict[str, Any]:
        aztp = str(_need_aztp_id(aztp_id))
        with self.store.write() as conn:
            n = conn.execute(delete(t.policy_attachments).where(
                t.policy_attachments.c.code == code, t.policy_attachments.c.aztp_id == aztp, t.policy_attachments.c.org_id == p.org_id)).rowcount
            if not n:
                raise NotFoundError(f"policy {code!r} is not attached to {aztp}")
            self._audit(conn, p.org_id, p.user_id, "policy.detach", aztp, {"code": code})
        self._invalidate()
        return {"code": code, "aztpId": aztp, "attached": False}

    def get_policies(self, p: Principal, aztp_id: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            ident = self._identity_row(conn, p, aztp_id)
            rows = conn.execute(
                select(t.policies).join(t.policy_attachments, t.policy_attachments.c.code == t.policies.c.code)
                .where(t.policy_attachments.c.aztp_id == ident.aztp_id, t.policies.c.org_id == p.org_id)
                .order_by(t.policies.c.created_at)
            ).all()
        return [{"code": r.code, "policyName": r.name, "policyStatement": r.document} for r in rows]

    def _policy_statements(self, p: Principal, code: str) -> tuple[Statement, ...] | None:
        with self.store.read() as conn:
            row = conn.execute(select(t.policies.c.document).where(
                or_(t.policies.c.code == code, t.policies.c.name == code), t.policies.c.org_id == p.org_id)).first()
        return None if row is None else parse_document(row.document).statement

    def check_permissions(
        self, p: Principal, aztp_id: str, *, policy_code: str | None = None, actions: Sequence[str] | str | None = None,
        trust_domain: str | None = None,
    ) -> dict[str, Any]:
        """For each action: is it allowed by the identity's policies (or the one named)?"""
        policies = self.get_policies(p, aztp_id)
        if policy_code:
            policies = [x for x in policies if policy_code in (x["code"], x["policyName"])]
            if not policies:
                raise NotFoundError(f"policy {policy_code!r} is not attached to {aztp_id}")
        statements = [s for x in policies for s in parse_document(x["policyStatement"]).statement]
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(",") if a.strip()]
        if not actions:
            actions = sorted({a for s in statements for a in s.action})
        result = {a: evaluate(statements, a).allowed for a in actions}
        return {"aztpId": aztp_id, "policyCode": policy_code, "trustDomain": trust_domain,
                "actions": result, "allowed": bool(result) and all(result.values())}

    def oiap_evaluate(self, p: Principal, aztp_id: str, requested_resource: str, user_id: str) -> dict[str, Any]:
        """Organization identity access policy: may ``aztp_id`` (on behalf of ``user_id``)
        access ``requested_resource``? Action ``access`` against the identity's policies."""
        _need_str(requested_resource, "requested_resource")
        _need_str(user_id, "user_id")
        policies = self.get_policies(p, aztp_id)
        statements = [s for x in policies for s in parse_document(x["policyStatement"]).statement]
        verdict = verify_in_snapshot(self.snapshot(p.org_id), str(_need_aztp_id(aztp_id)))
        result = evaluate(statements, ("access", "oiap:access"), requested_resource, {"userId": user_id})
        allowed = verdict.valid and result.allowed
        return {"aztpId": aztp_id, "requestedResource": requested_resource, "userId": user_id,
                "allowed": allowed, "decision": "allow" if allowed else "deny", "audit": result.audit,
                "reason": "allowed" if allowed else ("identity_invalid" if not verdict.valid else result.outcome.value)}

    # ================================================================= federation

    def federate(self, p: Principal, trust_domain: str) -> dict[str, Any]:
        """Trust another organization's trust domain. Effective once both sides trust each other."""
        td = TrustDomain.parse(trust_domain).name
        with self.store.write() as conn:
            owner = conn.execute(select(t.trust_domains.c.org_id).where(t.trust_domains.c.name == td)).first()
            if owner is None:
                raise NotFoundError(f"no organization owns trust domain {td!r}")
            if owner.org_id == p.org_id:
                raise ValidationError(f"{td!r} is already your own trust domain")
            if not conn.execute(select(t.federations).where(t.federations.c.org_id == p.org_id, t.federations.c.trust_domain == td)).first():
                conn.execute(insert(t.federations).values(org_id=p.org_id, trust_domain=td, created_at=now_iso()))
                self._audit(conn, p.org_id, p.user_id, "federation.trust", td, {})
        self._invalidate()
        return {"trustDomain": td, "trusted": True}

    def unfederate(self, p: Principal, trust_domain: str) -> dict[str, Any]:
        td = TrustDomain.parse(trust_domain).name
        with self.store.write() as conn:
            n = conn.execute(delete(t.federations).where(t.federations.c.org_id == p.org_id, t.federations.c.trust_domain == td)).rowcount
            if not n:
                raise NotFoundError(f"{td!r} is not federated")
            self._audit(conn, p.org_id, p.user_id, "federation.untrust", td, {})
        self._invalidate()
        return {"trustDomain": td, "trusted": False}

    # ================================================================= audit

    def _audit(self, conn: Connection, org_id: str, actor: str | None, action: str, subject: str | None, data: Mapping[str, Any]) -> None:
        self.store.append_audit(conn, org_id, [{"action": action, "actor": actor, "subject": subject, "data": dict(data)}])

    def audit_entries(self, p: Principal, *, limit: int | None = None, action: str | None = None) -> list[AuditEntry]:
        """The organization's audit entries, oldest first; ``action`` is a glob like
        ``decision.*``; ``limit`` keeps the newest ones."""
        self.store.flush_audit()
        with self.store.read() as conn:
            stmt = select(t.audit).where(t.audit.c.org_id == p.org_id)
            if action:
                stmt = stmt.where(or_(t.audit.c.action == BATCH_ACTION, t.audit.c.action.like(action.replace("*", "%"))))
            if limit:
                rows = list(reversed(conn.execute(stmt.order_by(t.audit.c.seq.desc()).limit(limit)).all()))
            else:
                rows = conn.execute(stmt.order_by(t.audit.c.seq)).all()
        entries = [e for r in rows for e in AuditEntry.from_row(r) if not action or fnmatch.fnmatchcase(e.action, action)]
        return entries[-limit:] if limit else entries

    def verify_audit(self, p: Principal) -> ChainReport:
        self.store.flush_audit()
        with self.store.read() as conn:
            rows = conn.execute(select(t.audit).where(t.audit.c.org_id == p.org_id).order_by(t.audit.c.seq)).all()
            head = conn.execute(select(t.audit_heads.c.seq, t.audit_heads.c.hash).where(t.audit_heads.c.org_id == p.org_id)).first()
        return verify_chain(rows, (int(head.seq), head.hash) if head else (0, "0" * 64))

    # ================================================================= decisions

    def _invalidate(self) -> None:
        self._stale = True

    def snapshot(self, org_id: str) -> Snapshot:
        """The organization's decision state, current as of the latest committed write here
        or in any other process sharing the store (one shared-memory read to know)."""
        token = self.store.change_token()
        if token is None:  # no shared counter: one PRAGMA per decision
            if self.store.maybe_changed() or self._stale:
                self._stale = False
                self._refresh_revision()
        elif token != self._validated_token or self._stale:
            self._stale = False
            self._refresh_revision()
            # Only now: a thread that reads the counter meanwhile refreshes too, never skips.
            self._validated_token = token
        snap = self._snapshots.get(org_id)
        if snap is None:
            snap = self._load_snapshot(org_id)
        return snap

    def _audit_committed(self, token: int, revision: int) -> None:
        """The audit writer committed; at ``token`` the store's revision was ``revision``
        (see :meth:`Store._AuditWriter._publish_commit`). If that is the revision our snapshots
        are for, ``token`` needs no re-check: decisions keep their snapshot instead of reading
        the revision again after every audit batch."""
        if revision == self._revision and not self._stale:
            self._validated_token = token

    def _refresh_revision(self) -> None:
        rev = self.store.revision()
        if rev != self._revision:
            with self._snap_lock:
                self._snapshots = {}
                self._revision = rev

    def cached_snapshot(self, org_id: str) -> Snapshot | None:
        """The snapshot without any I/O (for event loops), or None when it must be (re)loaded
        with :meth:`snapshot` in a worker thread."""
        token = self.store.change_token()
        if token is None:
            if self._watcher is None:
                self._start_watcher()
        elif token != self._validated_token:
            return None
        if self._stale:
            return None
        return self._snapshots.get(org_id)

    #: Without the shared change counter: bound on how late the no-I/O path
    #: (:meth:`cached_snapshot`) sees another process's write (a watcher thread polls).
    WATCH_INTERVAL_S = 0.002

    def _start_watcher(self) -> None:
        with self._check_lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(target=self._watch, name="aztp-store-watcher", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._closed:
            try:
                if self.store.maybe_changed():
                    self._stale = True
            except Exception:  # store closed or failing: make every cached read miss
                self._stale = True
                log.debug("store watcher check failed", exc_info=True)
            time.sleep(self.WATCH_INTERVAL_S)

    def close(self) -> None:
        self._closed = True
        self.store.close()

    def _load_snapshot(self, org_id: str) -> Snapshot:
        with self.store.read() as conn:
            rev = self.store.revision(conn)
            idents = {r.aztp_id: r.status for r in conn.execute(select(t.identities.c.aztp_id, t.identities.c.status).where(t.identities.c.org_id == org_id))}
            flow_rows = conn.execute(select(t.flows.c.id, t.flows.c.name, t.flows.c.discoverable, t.flows.c.owner_user_id)
                                     .where(t.flows.c.org_id == org_id)).all()
            flows = {r.id: r.name for r in flow_rows}
            members: dict[str, set[str]] = {f: set() for f in flows}
            for r in conn.execute(select(t.flow_members.c.flow_id, t.flow_members.c.aztp_id).where(t.flow_members.c.flow_id.in_(list(flows)))):
                members[r.flow_id].add(r.aztp_id)
            revoked: dict[str, set[str]] = {f: set() for f in flows}
            for r in conn.execute(select(t.flow_revocations.c.flow_id, t.flow_revocations.c.aztp_id).where(t.flow_revocations.c.flow_id.in_(list(flows)))):
                revoked[r.flow_id].add(r.aztp_id)
            links: set[tuple[str, str]] = set()
            for r in conn.execute(select(t.links.c.source, t.links.c.target, t.links.c.relationship_type).where(t.links.c.org_id == org_id)):
                links.add((r.source, r.target))
                if r.relationship_type in _SYMMETRIC:
                    links.add((r.target, r.source))
            policies: dict[str, list[Statement]] = {}
            for r in conn.execute(
                select(t.policy_attachments.c.aztp_id, t.policies.c.document)
                .join(t.policies, t.policies.c.code == t.policy_attachments.c.code)
                .where(t.policy_attachments.c.org_id == org_id)
            ):
                policies.setdefault(r.aztp_id, []).extend(parse_document(r.document).statement)
        snap = Snapshot(
            organization=org_id, revision=rev, identities=idents,
            members={k: frozenset(v) for k, v in members.items()},
            flow_revoked={k: frozenset(v) for k, v in revoked.items()},
            links=frozenset(links), policies={k: tuple(v) for k, v in policies.items()}, flows=flows,
            flow_owners={r.id: r.owner_user_id for r in flow_rows},
            public_flows=frozenset(r.id for r in flow_rows if r.discoverable == "public"),
        )
        with self._snap_lock:
            if rev == self._revision:
                self._snapshots[org_id] = snap
        return snap

    def decide(
        self,
        p: Principal,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        enforce: bool = True,
        snap: Snapshot | None = None,
    ) -> Decision:
        """The tool-call decision (DESIGN "Tool-call decision"), audited. Raises only if the
        state cannot be read; enforcement points turn that into a denial. With ``snap`` (from
        :meth:`cached_snapshot`) it does no I/O at all.

        A decision is a pure function of the snapshot and the call (and of the context only
        when a policy has a condition), so the snapshot keeps each one made: a repeated call
        costs a look-up, a new tuple and a queued audit record."""
        start = time.perf_counter()
        if snap is None:
            snap = self.snapshot(p.org_id)
        key = (p.user_id, flow_id, agent, tool, tool_name, enforce)
        made = None if context and snap.conditional else snap.decisions.get(key)
        if made is None:
            made = self._make_decision(snap, p, key, context)
        head, tail, audit = made
        decision: Decision = tuple.__new__(Decision, (*head, (time.perf_counter() - start) * 1e6, *tail))  # type: ignore[arg-type]
        self._queue_decision(p, agent, audit, context)
        return decision

    def decide_memoized(self, p: Principal, key: tuple[Any, ...], context: Mapping[str, Any] | None = None,
                        flat_context: FieldData | None = None) -> Decision | None:
        """The fast path of :meth:`decide` for enforcement points: the decision for ``key``
        (``(user_id, flow_id, agent, tool, tool_name, enforce)``), audited, when this exact
        call was already decided and **allowed** on the current state; otherwise ``None``
        and nothing is audited (take :meth:`decide`). No I/O and no call into other Python
        code but the audit queue: on a tool-call path every frame touched costs more than
        its instructions. The state counts as current only as :meth:`snapshot` would find
        it without reading the store: the change token matches the one validated last and
        no write here has invalidated it. ``flat_context``: the context already flattened
        (str keys and plain values, as :attr:`CallContext.flat`), instead of ``context``."""
        start = time.perf_counter()
        read_token = self.store.change_token_reader
        if read_token is None or read_token()[0] != self._validated_token or self._stale:
            return None
        snap = self._snapshots.get(p.org_id)
        if snap is None or ((context or flat_context) and snap.conditional):
            return None
        made = snap.decisions.get(key)
        if made is None or not made[0][0]:
            return None
        head, tail, audit = made
        decision: Decision = tuple.__new__(Decision, (*head, (time.perf_counter() - start) * 1e6, *tail))  # type: ignore[arg-type]
        if flat_context:
            audit = FieldParts((audit, flat_context))
        elif context:
            audit = FieldParts((audit, context.flat if type(context) is CallContext else flatten_context(context)))
        self._audit_put((p.org_id, (time.time(), DECISION_ACTION, p.user_id, key[2], audit)))
        return decision

    def _make_decision(self, snap: Snapshot, p: Principal, key: tuple[Any, ...],
                       context: Mapping[str, Any] | None) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
        """``(fields before latency_us, fields after it, audit data)`` of a decision."""
        user_id, flow_id, agent, tool, tool_name, enforce = key
        if not snap.flow_visible(flow_id, user_id):  # unknown, or another user's private flow
            reason, marked = Reason.FLOW_UNKNOWN, False
        else:
            reason, marked = decide_tool_call(snap, flow_id=flow_id, agent=agent, tool=tool, tool_name=tool_name,
                                              context=context)
        allowed = reason is Reason.ALLOWED
        made = ((allowed, reason, agent, tool, flow_id, snap.revision),
                (tool_name, marked, enforce, p.org_id, None),
                (allowed, reason.value, tool, tool_name, flow_id, snap.revision, enforce))
        if not (context and snap.conditional):
            if len(snap.decisions) > 100_000:
                snap.decisions.clear()
            snap.decisions[key] = made
        return made

    def record_decision(self, p: Principal, decision: Decision, context: Mapping[str, Any] | None = None) -> None:
        """Queue the audit record of a decision taken elsewhere (a fail-closed denial)."""
        self._queue_decision(p, decision.agent, (decision.allowed, decision.reason.value, decision.tool,
                                                 decision.tool_name, decision.flow, decision.revision,
                                                 decision.enforced), context)

    def _queue_decision(self, p: Principal, agent: str | None, data: tuple[Any, ...],
                        context: Mapping[str, Any] | None) -> None:
        """Queue a decision's audit record as a flat tuple of its fields (nothing is encoded on
        the decision path); the context is frozen now (plain values as they are, others as text)."""
        if context:
            data = FieldParts((data, context.flat if type(context) is CallContext else flatten_context(context)))
        self._audit_put((p.org_id, (time.time(), DECISION_ACTION, p.user_id, agent, data)))

    def _audit_later(self, p: Principal, action: str, subject: str | None, data: Mapping[str, Any]) -> None:
        """Audit a frequent read (verification) through the group-commit path."""
        self.store.submit_audit(p.org_id, (time.time(), action, p.user_id, subject, canonical_json(data)))


#: Audit action of tool-call decisions.
DECISION_ACTION = "decision.tool_call"


register_layout(DECISION_ACTION, ("allowed", "reason", "tool", "toolName", "flowId", "revision", "enforced"))


_VERIFY_MESSAGES = {
    Reason.ALLOWED: "Identity is valid",
    Reason.AGENT_UNKNOWN: "Identity not found",
    Reason.AGENT_REVOKED: "Identity is revoked",
    Reason.AGENT_NOT_IN_FLOW: "Identity is not a member of this flow",
    Reason.AGENT_REVOKED_IN_FLOW: "Identity is revoked for this flow",
    Reason.FLOW_UNKNOWN: "Identity flow not found",
}


def verify_answer(snap: Snapshot, user_id: str, aztp_id: str, flow_id: str | None) -> dict[str, Any]:
    """The answer to a verification, from a snapshot (pure). A flow the user may not see is
    answered like one that does not exist."""
    if flow_id is not None and not snap.flow_visible(flow_id, user_id):
        reason, valid = Reason.FLOW_UNKNOWN, False
    else:
        verdict = verify_in_snapshot(snap, aztp_id, flow_id)
        reason, valid = verdict.reason, verdict.valid
    message = _VERIFY_MESSAGES[reason]
    if valid and flow_id:
        message += " in this flow"
    return {"valid": valid, "aztpId": aztp_id, "identityFlowId": flow_id,
            "reason": reason.value.replace("agent_", "identity_"), "message": message}
