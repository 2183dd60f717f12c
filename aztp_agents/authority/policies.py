"""Policies: documents, attachments, permission checks."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError

from .._util import now_iso
from ..decisions import (
    verify_in_snapshot,
)
from ..errors import (
    ConflictError,
    NotFoundError,
    ValidationError,
)
from ..policy import Statement, authorize, evaluate, parse_document, requested_actions
from ..store import schema as t
from ._context import (
    Component,
    Principal,
    Touched,
    json_value,
    need_aztp_id,
    need_str,
)

__all__ = ["Policies"]


class Policies(Component):
    """Policies and their evaluation outside tool calls."""

    def create_policy(
        self, p: Principal, name: str, document: Mapping[str, Any], *, code: str | None = None
    ) -> dict[str, Any]:
        name = need_str(name, "policy name", max_len=256)
        parsed = parse_document(document)
        stored = json_value(
            dict(document) if isinstance(document, Mapping) else parsed.model_dump(by_alias=True),
            "policy document",
        )
        code = code or f"policy:{secrets.token_hex(6)}"
        if not code.startswith("policy:"):
            raise ValidationError("a policy code starts with 'policy:'")
        try:
            with self.ctx.store.write() as conn:
                conn.execute(
                    insert(t.policies).values(
                        code=code, org_id=p.org_id, name=name, document=stored, created_at=now_iso()
                    )
                )
                self.ctx.audit(conn, p.org_id, p.user_id, "policy.create", code, {"name": name})
        except IntegrityError:
            raise ConflictError(f"policy code {code!r} is taken in this organization") from None
        self.ctx.invalidate()
        return {"code": code, "policyName": name, "policyStatement": stored}

    def attach_policy(self, p: Principal, aztp_id: str, code: str) -> dict[str, Any]:
        with self.ctx.store.write() as conn:
            ident = self.ctx.identities.row(conn, p, aztp_id)
            pol = conn.execute(
                select(t.policies).where(t.policies.c.code == code, t.policies.c.org_id == p.org_id)
            ).first()
            if pol is None:
                raise NotFoundError(f"policy {code!r} not found in this organization")
            if not conn.execute(
                select(t.policy_attachments).where(
                    t.policy_attachments.c.org_id == p.org_id,
                    t.policy_attachments.c.code == code,
                    t.policy_attachments.c.aztp_id == ident.aztp_id,
                )
            ).first():
                conn.execute(
                    insert(t.policy_attachments).values(
                        code=code, aztp_id=ident.aztp_id, org_id=p.org_id
                    )
                )
                self.ctx.audit(
                    conn, p.org_id, p.user_id, "policy.attach", ident.aztp_id, {"code": code}
                )
                self.ctx.state_changed(conn, p.org_id, Touched(policies={ident.aztp_id}))
        self.ctx.invalidate()
        return {"code": code, "aztpId": ident.aztp_id, "attached": True}

    def detach_policy(self, p: Principal, aztp_id: str, code: str) -> dict[str, Any]:
        aztp = str(need_aztp_id(aztp_id))
        with self.ctx.store.write() as conn:
            n = conn.execute(
                delete(t.policy_attachments).where(
                    t.policy_attachments.c.code == code,
                    t.policy_attachments.c.aztp_id == aztp,
                    t.policy_attachments.c.org_id == p.org_id,
                )
            ).rowcount
            if not n:
                raise NotFoundError(f"policy {code!r} is not attached to {aztp}")
            self.ctx.audit(conn, p.org_id, p.user_id, "policy.detach", aztp, {"code": code})
            self.ctx.state_changed(conn, p.org_id, Touched(policies={aztp}))
        self.ctx.invalidate()
        return {"code": code, "aztpId": aztp, "attached": False}

    def get_policies(self, p: Principal, aztp_id: str) -> list[dict[str, Any]]:
        with self.ctx.store.read() as conn:
            ident = self.ctx.identities.row(conn, p, aztp_id)
            rows = conn.execute(
                select(t.policies)
                .join(
                    t.policy_attachments,
                    and_(
                        t.policy_attachments.c.org_id == t.policies.c.org_id,
                        t.policy_attachments.c.code == t.policies.c.code,
                    ),
                )
                .where(
                    t.policy_attachments.c.aztp_id == ident.aztp_id, t.policies.c.org_id == p.org_id
                )
                .order_by(t.policies.c.created_at)
            ).all()
        return [{"code": r.code, "policyName": r.name, "policyStatement": r.document} for r in rows]

    def list_policies(self, p: Principal) -> list[dict[str, Any]]:
        """Every policy of the organization, oldest first, with the identities it is attached
        to (``attachedTo``). A read: nothing is written or audited."""
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(t.policies)
                .where(t.policies.c.org_id == p.org_id)
                .order_by(t.policies.c.created_at, t.policies.c.code)
            ).all()
            attached: dict[str, list[str]] = {}
            for r in conn.execute(
                select(t.policy_attachments.c.code, t.policy_attachments.c.aztp_id)
                .where(t.policy_attachments.c.org_id == p.org_id)
                .order_by(t.policy_attachments.c.aztp_id)
            ):
                attached.setdefault(r.code, []).append(r.aztp_id)
        return [
            {
                "code": r.code,
                "policyName": r.name,
                "policyStatement": r.document,
                "createdAt": r.created_at,
                "attachedTo": attached.get(r.code, []),
            }
            for r in rows
        ]

    def statements(self, p: Principal, code: str) -> tuple[Statement, ...] | None:
        with self.ctx.store.read() as conn:
            row = conn.execute(
                select(t.policies.c.document).where(
                    or_(t.policies.c.code == code, t.policies.c.name == code),
                    t.policies.c.org_id == p.org_id,
                )
            ).first()
        return None if row is None else parse_document(row.document).statement

    def check_permissions(
        self,
        p: Principal,
        aztp_id: str,
        *,
        policy_code: str | None = None,
        actions: Sequence[str] | str | None = None,
        trust_domain: str | None = None,
        resource: str | None = None,
    ) -> dict[str, Any]:
        """For each action: do the identity's policies (or the one named) permit it?

        The same rule as the tool-call decision (:func:`aztp_agents.policy.authorize`): with no
        policy attached nothing restricts (``restricted`` is False and every action is
        permitted); with policies attached an action needs a matching Allow, and a Deny wins.
        ``tool:NAME`` is asked as a call of tool NAME is (``tool:invoke`` and ``tool:NAME``),
        on ``resource`` (the tool's AZTP ID) when given.
        """
        policies = self.get_policies(p, aztp_id)
        if policy_code:
            policies = [x for x in policies if policy_code in (x["code"], x["policyName"])]
            if not policies:
                raise NotFoundError(f"policy {policy_code!r} is not attached to {aztp_id}")
        if resource is not None:
            resource = str(need_aztp_id(resource))
        statements = [s for x in policies for s in parse_document(x["policyStatement"]).statement]
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(",") if a.strip()]
        if not actions:
            actions = sorted({a for s in statements for a in s.action})
        result = {
            a: authorize(statements, requested_actions(a), resource).permitted for a in actions
        }
        return {
            "aztpId": aztp_id,
            "policyCode": policy_code,
            "trustDomain": trust_domain,
            "resource": resource,
            "restricted": bool(statements),
            "actions": result,
            "allowed": bool(result) and all(result.values()),
        }

    def oiap_evaluate(
        self, p: Principal, aztp_id: str, requested_resource: str, user_id: str
    ) -> dict[str, Any]:
        """Organization identity access policy: may ``aztp_id`` (on behalf of ``user_id``)
        access ``requested_resource``? Action ``access`` against the identity's policies."""
        need_str(requested_resource, "requested_resource")
        need_str(user_id, "user_id")
        policies = self.get_policies(p, aztp_id)
        statements = [s for x in policies for s in parse_document(x["policyStatement"]).statement]
        verdict = verify_in_snapshot(self.ctx.decisions.state(p.org_id), str(need_aztp_id(aztp_id)))
        result = evaluate(
            statements, ("access", "oiap:access"), requested_resource, {"userId": user_id}
        )
        allowed = verdict.valid and result.allowed
        return {
            "aztpId": aztp_id,
            "requestedResource": requested_resource,
            "userId": user_id,
            "allowed": allowed,
            "decision": "allow" if allowed else "deny",
            "audit": result.audit,
            "reason": "allowed"
            if allowed
            else ("identity_invalid" if not verdict.valid else result.outcome.value),
        }
