"""Credentials of identities: X.509-SVIDs (issue, live verification) and JWT-SVIDs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select

from .. import credentials as cred
from .._util import iso, now_iso
from ..errors import (
    CredentialError,
    PermissionDeniedError,
    ValidationError,
)
from ..ids import AztpId
from ..store import schema as t
from ._context import (
    MAX_JWT_TTL,
    MAX_X509_TTL,
    Component,
    Principal,
    need_str,
    ttl_seconds,
)

__all__ = ["Svids"]


class Svids(Component):
    """X.509-SVID and JWT-SVID issuance and live verification."""

    def issue_x509(
        self, conn: Connection, p: Principal, row: Any, *, csr_pem: str | None, ttl: int
    ) -> dict[str, str]:
        ttl = ttl_seconds(ttl, maximum=MAX_X509_TTL)
        ca = self.ctx.trust.ca(conn, p.org_id, row.trust_domain)
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
                serial=format(svid.serial, "x"),
                org_id=p.org_id,
                aztp_id=row.aztp_id,
                kind="x509",
                generation=row.generation,
                issued_at=now_iso(),
                not_after=iso(svid.not_after),
            )
        )
        return {
            "certificate": svid.cert_pem,
            "privateKey": key_pem,
            "caCertificate": ca.certificate_pem,
            "serial": format(svid.serial, "x"),
            "expiresAt": iso(svid.not_after),
        }

    def issue_credential(
        self, p: Principal, aztp_id: str, *, csr_pem: str | None = None, ttl: int = 3600
    ) -> dict[str, str]:
        """A fresh X.509-SVID for an active identity (from a CSR, or with a key made here)."""
        with self.ctx.store.write(bump=False) as conn:
            row = self.ctx.identities.row(conn, p, aztp_id)
            if row.status != "active":
                raise PermissionDeniedError(
                    f"{aztp_id} is revoked; reissue it before asking for credentials"
                )
            out = self.issue_x509(conn, p, row, csr_pem=csr_pem, ttl=ttl)
            self.ctx.audit(
                conn, p.org_id, p.user_id, "credential.x509", aztp_id, {"serial": out["serial"]}
            )
        return out

    def verify_credential(self, p: Principal, cert_pem: str) -> dict[str, Any]:
        """Live check of an X.509-SVID: chain to the organization's CA, identity active, and
        issued after the identity's last reissue (credentials from before a revocation are dead)."""
        if not isinstance(cert_pem, str) or not cert_pem.isascii():
            raise ValidationError("the certificate must be PEM text (ASCII)")
        with self.ctx.store.read() as conn:
            tds = (
                conn.execute(
                    select(t.trust_domains.c.name).where(t.trust_domains.c.org_id == p.org_id)
                )
                .scalars()
                .all()
            )
            for td in tds:
                bundle = cred.TrustBundle.from_authorities(
                    td, [self.ctx.trust.ca(conn, p.org_id, td)]
                )
                try:
                    spiffe_id = cred.validate_x509_svid(cert_pem, bundle)
                except CredentialError:
                    continue
                aztp_id = str(AztpId.from_spiffe(spiffe_id))
                row = self.ctx.identities.row(conn, p, aztp_id)
                from cryptography import x509 as _x509

                serial = format(
                    _x509.load_pem_x509_certificate(cert_pem.encode()).serial_number, "x"
                )
                generation = conn.execute(
                    select(t.credentials.c.generation).where(t.credentials.c.serial == serial)
                ).scalar()
                if row.status != "active":
                    return {"valid": False, "aztpId": aztp_id, "reason": "revoked"}
                if generation is None or generation != row.generation:
                    return {"valid": False, "aztpId": aztp_id, "reason": "credential_superseded"}
                return {"valid": True, "aztpId": aztp_id, "reason": "allowed"}
        return {"valid": False, "aztpId": None, "reason": "untrusted_chain"}

    def fetch_jwt_svid(
        self, p: Principal, aztp_id: str, audience: str | Sequence[str], *, ttl: int = 300
    ) -> dict[str, Any]:
        ttl = ttl_seconds(ttl, maximum=MAX_JWT_TTL)
        if isinstance(audience, str):
            need_str(audience, "audience")
        elif not audience or not all(isinstance(a, str) and a for a in audience):
            raise ValidationError("audience must be a non-empty string or list of strings")
        with self.ctx.store.write(bump=False) as conn:
            row = self.ctx.identities.row(conn, p, aztp_id)
            if row.status != "active":
                raise PermissionDeniedError(f"{aztp_id} is revoked; no JWT-SVID is issued for it")
            ca = self.ctx.trust.ca(conn, p.org_id, row.trust_domain)
            aud = [audience] if isinstance(audience, str) else list(audience)
            token = ca.mint_jwt_svid(
                AztpId.parse(row.aztp_id).spiffe_id, aud if len(aud) > 1 else aud[0], ttl=ttl
            )
            self.ctx.audit(
                conn, p.org_id, p.user_id, "credential.jwt", row.aztp_id, {"audience": aud}
            )
        return {
            "token": token,
            "spiffeId": AztpId.parse(row.aztp_id).spiffe_id,
            "aztpId": row.aztp_id,
            "audience": aud,
            "expiresAt": int(time.time()) + ttl,
        }
