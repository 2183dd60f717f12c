"""Federation: trust in another organization's trust domain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select

from .._util import now_iso
from ..errors import (
    NotFoundError,
    ValidationError,
)
from ..ids import TrustDomain
from ..store import schema as t
from ._context import (
    Component,
    Principal,
)

__all__ = ["Federation"]


class Federation(Component):
    """Federation (effective once both sides trust each other)."""

    def federate(self, p: Principal, trust_domain: str) -> dict[str, Any]:
        """Trust another organization's trust domain. Effective once both sides trust each other."""
        td = TrustDomain.parse(trust_domain).name
        with self.ctx.store.write() as conn:
            owner = conn.execute(
                select(t.trust_domains.c.org_id).where(t.trust_domains.c.name == td)
            ).first()
            if owner is None:
                raise NotFoundError(f"no organization owns trust domain {td!r}")
            if owner.org_id == p.org_id:
                raise ValidationError(f"{td!r} is already your own trust domain")
            if not conn.execute(
                select(t.federations).where(
                    t.federations.c.org_id == p.org_id, t.federations.c.trust_domain == td
                )
            ).first():
                conn.execute(
                    insert(t.federations).values(
                        org_id=p.org_id, trust_domain=td, created_at=now_iso()
                    )
                )
                self.ctx.audit(conn, p.org_id, p.user_id, "federation.trust", td, {})
        self.ctx.invalidate()
        return {"trustDomain": td, "trusted": True}

    def unfederate(self, p: Principal, trust_domain: str) -> dict[str, Any]:
        td = TrustDomain.parse(trust_domain).name
        with self.ctx.store.write() as conn:
            n = conn.execute(
                delete(t.federations).where(
                    t.federations.c.org_id == p.org_id, t.federations.c.trust_domain == td
                )
            ).rowcount
            if not n:
                raise NotFoundError(f"{td!r} is not federated")
            self.ctx.audit(conn, p.org_id, p.user_id, "federation.untrust", td, {})
        self.ctx.invalidate()
        return {"trustDomain": td, "trusted": False}
