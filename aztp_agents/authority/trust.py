"""Trust domains, their certificate authorities and SPIFFE trust bundles."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from .. import credentials as cred
from .._util import now_iso
from ..errors import (
    NotFoundError,
    PermissionDeniedError,
)
from ..store import schema as t
from ._context import (
    AuthorityContext,
    Component,
    Principal,
)

__all__ = ["Trust"]


class Trust(Component):
    """Trust domains and CAs (parsed CAs cached by key id)."""

    def __init__(self, ctx: AuthorityContext) -> None:
        super().__init__(ctx)
        self._cas: dict[str, cred.CertificateAuthority] = {}

    def claim(self, conn: Connection, org_id: str, td: str, *, assign: bool) -> None:
        """Make sure ``td`` is the organization's, with a CA. A trust domain nobody holds yet
        becomes the organization's only with ``assign``: an operator assigning it (``org
        create``, ``org add-trust-domain``) or the embedded default organization, which takes
        the domains its single user configures. Otherwise a tenant could take any name (and
        with it every identity another organization would issue there)."""
        row = conn.execute(
            select(t.trust_domains.c.org_id).where(t.trust_domains.c.name == td)
        ).first()
        if row is not None:
            if row.org_id != org_id:
                raise PermissionDeniedError(
                    f"trust domain {td!r} belongs to another organization; use one of your own"
                )
            return
        if not assign:
            raise PermissionDeniedError(
                f"trust domain {td!r} is not assigned to this organization; issue in one of "
                "its own, or ask the operator to assign it "
                f"('aztp-agents org add-trust-domain ORG {td}')"
            )
        ca = cred.CertificateAuthority.generate(td)
        cert_pem, key_pem = ca.to_pem()
        conn.execute(
            insert(t.trust_domains).values(
                name=td,
                org_id=org_id,
                cert_pem=cert_pem,
                key_pem=self.ctx.store.seal(key_pem, context=f"ca:{td}"),
                kid=ca.kid,
                sequence=1,
                created_at=now_iso(),
            )
        )

    def ca(self, conn: Connection, org_id: str, td: str) -> cred.CertificateAuthority:
        """The trust domain's CA as stored in this transaction. The parsed CA is cached by its
        key id, so a CA from a rolled-back claim is never used."""
        row = conn.execute(
            select(t.trust_domains.c.org_id, t.trust_domains.c.kid).where(
                t.trust_domains.c.name == td
            )
        ).first()
        if row is None:
            raise NotFoundError(f"trust domain {td!r} is not set up")
        if row.org_id != org_id:
            raise PermissionDeniedError(f"trust domain {td!r} belongs to another organization")
        ca = self._cas.get(td)
        if ca is None or ca.kid != row.kid:
            pem = conn.execute(
                select(t.trust_domains.c.cert_pem, t.trust_domains.c.key_pem).where(
                    t.trust_domains.c.name == td
                )
            ).one()
            ca = cred.CertificateAuthority.from_pem(
                pem.cert_pem, self.ctx.store.unseal(pem.key_pem, context=f"ca:{td}")
            )
            self._cas[td] = ca
        return ca

    def trust_domains(self, p: Principal) -> list[str]:
        with self.ctx.store.read() as conn:
            return list(
                conn.execute(
                    select(t.trust_domains.c.name).where(t.trust_domains.c.org_id == p.org_id)
                ).scalars()
            )

    def trust_bundle(self, p: Principal, trust_domain: str | None = None) -> dict[str, Any]:
        """SPIFFE bundles (JWKS) of the organization's trust domains, keyed by trust domain."""
        out: dict[str, Any] = {}
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(t.trust_domains).where(t.trust_domains.c.org_id == p.org_id)
            ).all()
            for row in rows:
                if trust_domain and row.name != trust_domain:
                    continue
                ca = self.ca(conn, p.org_id, row.name)
                out[row.name] = cred.TrustBundle.from_authorities(
                    row.name, [ca], sequence=row.sequence
                ).to_jwks()
        if trust_domain and trust_domain not in out:
            raise NotFoundError(f"trust domain {trust_domain!r} is not one of this organization's")
        return out
