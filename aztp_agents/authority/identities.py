"""Identities: issuance (``secure_connect``), look-up, discovery, revocation, reissue."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from .._util import now_iso, object_id
from ..decisions.changes import IdentityStatus, Membership, StateChange
from ..errors import (
    AlreadyRevokedError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from ..ids import AztpId, TrustDomain, validate_name
from ..store import schema as t
from ._context import (
    LOCAL_ORG,
    Component,
    Principal,
    Touched,
    json_value,
    need_aztp_id,
    need_str,
    opt_text,
)

__all__ = ["Identities"]


class Identities(Component):
    """Identity records of an organization."""

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
        if self.ctx.issuance is not None:
            self.ctx.issuance.take(p.org_id, "identity issuances")
        if not isinstance(is_global, bool):
            raise ValidationError("isGlobalIdentity must be true or false")
        environment = need_str(environment or "production", "environment", max_len=64)
        if extra is not None and not isinstance(extra, Mapping):
            raise ValidationError("metadata.extra must be an object")
        hostname = hostname or socket.gethostname()
        with self.ctx.store.write() as conn:
            row = self._named(conn, p, name)
            if row is None:
                self._insert(
                    conn,
                    p,
                    name,
                    is_global=is_global,
                    trust_domain=trust_domain,
                    parent_identity=parent_identity,
                    environment=environment,
                    method=method,
                    hostname=hostname,
                    extra=extra,
                )
                action = "identity.issue"
            else:
                self._check_reconnect(
                    row,
                    trust_domain=trust_domain,
                    environment=environment,
                    method=method,
                    parent_identity=parent_identity,
                )
                now = now_iso()
                conn.execute(
                    update(t.identities)
                    .where(t.identities.c.id == row.id)
                    .values(
                        updated_at=now,
                        workload_info={**row.workload_info, "timestamp": now, "hostname": hostname},
                    )
                )
                action = "identity.reconnect"
            answer = self._connect_answer(
                conn, p, self._named(conn, p, name), csr_pem=csr_pem, make_key=make_key, ttl=ttl
            )
            self.ctx.audit(
                conn,
                p.org_id,
                p.user_id,
                action,
                answer["identity"]["aztpId"],
                {"credential": bool(answer["certificate"])},
            )
            if action == "identity.issue":
                touched = Touched(identities={answer["identity"]["aztpId"]})
                self.ctx.state_changed(conn, p.org_id, touched)
        self.ctx.invalidate()
        return answer

    @staticmethod
    def _check_reconnect(
        row: Any,
        *,
        trust_domain: str | None,
        environment: str,
        method: str,
        parent_identity: str | None,
    ) -> None:
        """A reconnect names the identity it had: settings that say otherwise are an error
        (ignoring them would hand back an identity the caller did not ask for)."""
        td = TrustDomain.parse(trust_domain).name if trust_domain else row.trust_domain
        wanted = AztpId.build(td, row.name, environment=environment, method=method or "node")
        if parent_identity is not None:
            parent_identity = str(need_aztp_id(parent_identity, "parentIdentity"))
        conflicts = [
            f"{label} {asked!r} (it has {had!r})"
            for label, asked, had in (
                ("trust domain", wanted.trust_domain.name, row.trust_domain),
                ("environment", wanted.environment, row.environment),
                ("method", wanted.method, row.method),
            )
            if asked != had
        ]
        if parent_identity is not None and parent_identity != row.parent_identity:
            conflicts.append(f"parentIdentity {parent_identity!r} (it has {row.parent_identity!r})")
        if conflicts:
            raise ConflictError(
                f"{row.name!r} is already issued as {row.aztp_id}; this reconnect asks for "
                + ", ".join(conflicts)
                + ": reconnect with its settings, or issue another name"
            )

    @staticmethod
    def _named(conn: Connection, p: Principal, name: str) -> Any:
        return conn.execute(
            select(t.identities).where(
                t.identities.c.org_id == p.org_id, t.identities.c.name == name
            )
        ).first()

    def _insert(
        self,
        conn: Connection,
        p: Principal,
        name: str,
        *,
        is_global: bool,
        trust_domain: str | None,
        parent_identity: str | None,
        environment: str,
        method: str,
        hostname: str,
        extra: Mapping[str, Any] | None,
    ) -> None:
        """A new identity record (its trust domain claimed for the organization if new)."""
        td = TrustDomain.parse(trust_domain).name if trust_domain else p.default_trust_domain
        self.ctx.trust.claim(conn, p.org_id, td, assign=p.org_name == LOCAL_ORG)
        if parent_identity is not None:
            parent_identity = str(need_aztp_id(parent_identity, "parentIdentity"))
            self.row(conn, p, parent_identity)
        values = _identity_values(
            p,
            name,
            td,
            is_global=is_global,
            parent_identity=parent_identity,
            environment=environment,
            method=method,
            hostname=hostname,
            extra=extra,
        )
        if conn.execute(
            select(t.identities.c.id).where(t.identities.c.aztp_id == values["aztp_id"])
        ).first():
            raise ConflictError(f"{values['aztp_id']} is already issued by another organization")
        conn.execute(insert(t.identities).values(**values))

    #: Names per transaction of :meth:`import_identities`.
    IMPORT_BATCH = 10_000

    def import_identities(
        self,
        p: Principal,
        names: Iterable[str],
        *,
        environment: str = "production",
        trust_domain: str | None = None,
        flow_id: str | None = None,
    ) -> dict[str, Any]:
        """Issue many identities at once, without credentials (a workload gets its X.509-SVID
        when it connects: ``secure_connect`` by name answers with the same identity and a
        fresh credential); with ``flow_id``, each is also a member of that flow. Idempotent
        by name: names already issued are counted as existing (and added to the flow).

        One write transaction per :attr:`IMPORT_BATCH` names, each one audit entry
        (``identity.import``: how many, the flow, the first and last name) and one change-log
        entry (the new identities and memberships). Answer: ``{"issued", "existing",
        "flowId"}``."""
        environment = need_str(environment or "production", "environment", max_len=64)
        hostname = socket.gethostname()
        issued = existing = 0
        batch: list[str] = []
        seen: set[str] = set()
        for raw in names:
            name = validate_name(raw)
            if name in seen:
                continue
            seen.add(name)
            batch.append(name)
            if len(batch) == self.IMPORT_BATCH:
                n, m = self._import_batch(p, batch, environment, trust_domain, flow_id, hostname)
                issued, existing, batch = issued + n, existing + m, []
        if batch or not seen:
            n, m = self._import_batch(p, batch, environment, trust_domain, flow_id, hostname)
            issued, existing = issued + n, existing + m
        self.ctx.invalidate()
        return {"issued": issued, "existing": existing, "flowId": flow_id}

    def _import_batch(
        self,
        p: Principal,
        names: list[str],
        environment: str,
        trust_domain: str | None,
        flow_id: str | None,
        hostname: str,
    ) -> tuple[int, int]:
        if self.ctx.issuance is not None and names:
            # no credential is signed: one token per batch bounds the rate of imports
            self.ctx.issuance.take(p.org_id, "identity imports")
        td = TrustDomain.parse(trust_domain).name if trust_domain else p.default_trust_domain
        with self.ctx.store.write() as conn:
            if flow_id is not None:
                flow_id = self.ctx.flows.row(conn, p, flow_id).id
            if not names:
                return 0, 0
            self.ctx.trust.claim(conn, p.org_id, td, assign=p.org_name == LOCAL_ORG)
            known = {
                r.name: r.aztp_id
                for r in conn.execute(
                    select(t.identities.c.name, t.identities.c.aztp_id).where(
                        t.identities.c.org_id == p.org_id, t.identities.c.name.in_(names)
                    )
                )
            }
            rows = [
                _identity_values(
                    p,
                    name,
                    td,
                    is_global=False,
                    parent_identity=None,
                    environment=environment,
                    method="node",
                    hostname=hostname,
                    extra=None,
                )
                for name in names
                if name not in known
            ]
            new_ids = [r["aztp_id"] for r in rows]
            if (
                new_ids
                and conn.execute(
                    select(t.identities.c.aztp_id)
                    .where(t.identities.c.aztp_id.in_(new_ids))
                    .limit(1)
                ).first()
            ):
                raise ConflictError("some of these identities are issued by another organization")
            if rows:
                conn.execute(insert(t.identities), rows)
            changes: list[StateChange] = [IdentityStatus(i, "active") for i in new_ids]
            if flow_id is not None:
                ids = [*known.values(), *new_ids]
                members = set(
                    conn.execute(
                        select(t.flow_members.c.aztp_id).where(
                            t.flow_members.c.flow_id == flow_id,
                            t.flow_members.c.aztp_id.in_(list(known.values())),
                        )
                    ).scalars()
                )
                joining = [i for i in ids if i not in members]
                now = now_iso()
                if joining:
                    conn.execute(
                        insert(t.flow_members),
                        [
                            {"flow_id": flow_id, "aztp_id": i, "added_at": now, "updated_at": now}
                            for i in joining
                        ],
                    )
                changes += [Membership(flow_id, i, True) for i in joining]
            self.ctx.audit(
                conn,
                p.org_id,
                p.user_id,
                "identity.import",
                None,
                {
                    "issued": len(rows),
                    "existing": len(known),
                    "flowId": flow_id,
                    "first": names[0],
                    "last": names[-1],
                },
            )
            if changes:
                self.ctx.append_changes(conn, p.org_id, changes)
        return len(rows), len(known)

    def _connect_answer(
        self,
        conn: Connection,
        p: Principal,
        row: Any,
        *,
        csr_pem: str | None,
        make_key: bool,
        ttl: int,
    ) -> dict[str, Any]:
        """The identity and, when active and asked for, a fresh X.509-SVID."""
        answer: dict[str, Any] = {
            "valid": row.status == "active",
            "certificate": "",
            "privateKey": "",
            "caCertificate": "",
        }
        if row.status == "active" and (csr_pem or make_key):
            answer.update(self.ctx.svids.issue_x509(conn, p, row, csr_pem=csr_pem, ttl=ttl))
        elif row.status != "active":
            answer["error"] = f"{row.aztp_id} is revoked; reissue it with reissue_identity()"
        answer["identity"] = self.doc(row)
        return answer

    def doc(self, row: Any) -> dict[str, Any]:
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

    def row(self, conn: Connection, p: Principal, aztp_id: str) -> Any:
        aztp_id = str(need_aztp_id(aztp_id))
        row = conn.execute(
            select(t.identities).where(
                t.identities.c.aztp_id == aztp_id, t.identities.c.org_id == p.org_id
            )
        ).first()
        if row is None:
            raise NotFoundError(
                f"identity {aztp_id} not found in this organization; issue it with secure_connect()"
            )
        return row

    def get_identity(self, p: Principal, aztp_id: str) -> dict[str, Any]:
        with self.ctx.store.read() as conn:
            return self.doc(self.row(conn, p, aztp_id))

    def get_identity_by_name(self, p: Principal, name: str) -> dict[str, Any]:
        need_str(name, "name", max_len=64)
        with self.ctx.store.read() as conn:
            row = conn.execute(
                select(t.identities).where(
                    t.identities.c.org_id == p.org_id, t.identities.c.name == name
                )
            ).first()
        if row is None:
            raise NotFoundError(f"no identity named {name!r} in this organization")
        return self.doc(row)

    def list_identities(self, p: Principal) -> list[dict[str, Any]]:
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(t.identities)
                .where(t.identities.c.org_id == p.org_id)
                .order_by(t.identities.c.created_at)
            ).all()
        return [self.doc(r) for r in rows]

    def discover(
        self, p: Principal, trust_domain: str | None = None, requestor: str | None = None
    ) -> list[dict[str, Any]]:
        """Discoverable identities: the organization's global identities and the members of its
        public flows (a private flow never exposes its members)."""
        with self.ctx.store.read() as conn:
            if requestor is not None:
                self.row(conn, p, requestor)
            visible_flows = select(t.flows.c.id).where(
                t.flows.c.org_id == p.org_id, t.flows.c.discoverable == "public"
            )
            exposed = select(t.flow_members.c.aztp_id).where(
                t.flow_members.c.flow_id.in_(visible_flows)
            )
            stmt = select(t.identities).where(
                t.identities.c.org_id == p.org_id,
                or_(t.identities.c.is_global.is_(True), t.identities.c.aztp_id.in_(exposed)),
            )
            if trust_domain:
                stmt = stmt.where(
                    t.identities.c.trust_domain == TrustDomain.parse(trust_domain).name
                )
            rows = conn.execute(stmt.order_by(t.identities.c.created_at)).all()
        return [self.doc(r) for r in rows]

    def revoke_identity(
        self, p: Principal, aztp_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Invalid everywhere at once. Credentials issued so far stay dead after a reissue."""
        reason = opt_text(reason, "reason")
        now = now_iso()
        with self.ctx.store.write() as conn:
            row = self.row(conn, p, aztp_id)
            if row.status == "revoked":
                raise AlreadyRevokedError(f"Identity already revoked: {row.aztp_id}")
            conn.execute(
                update(t.identities)
                .where(t.identities.c.id == row.id)
                .values(status="revoked", revoked_reason=reason, revoked_at=now, updated_at=now)
            )
            self.ctx.audit(
                conn, p.org_id, p.user_id, "identity.revoke", row.aztp_id, {"reason": reason}
            )
            self.ctx.state_changed(conn, p.org_id, Touched(identities={row.aztp_id}))
        self.ctx.invalidate()
        return {
            "aztpId": row.aztp_id,
            "status": "revoked",
            "reason": reason,
            "revokedAt": now,
            "valid": False,
        }

    def reissue_identity(
        self, p: Principal, aztp_id: str, *, csr_pem: str | None = None, make_key: bool = True
    ) -> dict[str, Any]:
        """Valid again, with a new credential; credentials issued before stay dead."""
        now = now_iso()
        with self.ctx.store.write() as conn:
            row = self.row(conn, p, aztp_id)
            conn.execute(
                update(t.identities)
                .where(t.identities.c.id == row.id)
                .values(
                    status="active",
                    revoked_reason=None,
                    revoked_at=None,
                    updated_at=now,
                    credentials_valid_after=now,
                    generation=row.generation + 1,
                )
            )
            row = self.row(conn, p, aztp_id)
            answer: dict[str, Any] = {
                "aztpId": row.aztp_id,
                "status": "active",
                "valid": True,
                "reissuedAt": now,
            }
            if csr_pem or make_key:
                answer.update(self.ctx.svids.issue_x509(conn, p, row, csr_pem=csr_pem, ttl=3600))
            self.ctx.audit(conn, p.org_id, p.user_id, "identity.reissue", row.aztp_id, {})
            self.ctx.state_changed(conn, p.org_id, Touched(identities={row.aztp_id}))
        self.ctx.invalidate()
        return answer


def _identity_values(
    p: Principal,
    name: str,
    td: str,
    *,
    is_global: bool,
    parent_identity: str | None,
    environment: str,
    method: str,
    hostname: str,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``identities`` row of a new identity."""
    now = now_iso()
    aztp = AztpId.build(td, name, environment=environment, method=method or "node")
    workload_info = {
        "workloadId": name,
        "agentId": "aztp",
        "trustDomain": td,
        "method": aztp.method,
        "timestamp": now,
        "hostname": hostname,
        "environment": environment,
    }
    selectors = [
        f"workload:id:{name}",
        "agent:id:aztp",
        f"method:{aztp.method}",
        f"metadata:hostname:{hostname}",
        f"metadata:environment:{environment}",
        f"metadata:trustDomain:{td}",
        f"metadata:parentIdentity:{parent_identity or 'null'}",
        f"metadata:isGlobal:{str(is_global).lower()}",
    ]
    if extra:
        json_value(extra, "metadata.extra")
        selectors += [f"metadata:extra:{k}:{v}" for k, v in sorted(extra.items())][:32]
    return {
        "id": object_id(),
        "org_id": p.org_id,
        "user_id": p.user_id,
        "aztp_id": str(aztp),
        "name": name,
        "trust_domain": td,
        "environment": environment,
        "method": aztp.method,
        "is_global": is_global,
        "parent_identity": parent_identity,
        "status": "active",
        "selectors": selectors,
        "workload_info": workload_info,
        "created_at": now,
        "updated_at": now,
    }
