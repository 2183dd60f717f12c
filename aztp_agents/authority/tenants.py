"""Organizations, their users and API keys (tenants)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from .._util import now_iso, object_id
from ..errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
)
from ..ids import TrustDomain
from ..store import schema as t
from ._context import (
    LOCAL_ORG,
    Component,
    Principal,
    need_str,
)

__all__ = ["Tenants"]

_KEY_PREFIX = "aztp_"


def _hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class Tenants(Component):
    """Organizations, users and API keys."""

    def local_principal(self) -> Principal:
        """The embedded default: organization ``local`` with user ``local`` (made on first use)."""
        with self.ctx.store.read() as conn:
            row = conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == LOCAL_ORG)).first()
        if row is None:
            with contextlib.suppress(ConflictError):  # another process may make it first
                self.create_org(
                    LOCAL_ORG, self.ctx.default_trust_domain, user_name=LOCAL_ORG, with_key=False
                )
        with self.ctx.store.read() as conn:
            org = conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == LOCAL_ORG)).one()
            user = conn.execute(
                select(t.users.c.id, t.users.c.name)
                .where(t.users.c.org_id == org.id)
                .order_by(t.users.c.created_at)
            ).first()
            return self._principal(conn, org.id, user.id)

    def _principal(self, conn: Connection, org_id: str, user_id: str) -> Principal:
        org = conn.execute(select(t.orgs.c.name).where(t.orgs.c.id == org_id)).one()
        user = conn.execute(select(t.users.c.name).where(t.users.c.id == user_id)).one()
        td = conn.execute(
            select(t.trust_domains.c.name)
            .where(t.trust_domains.c.org_id == org_id)
            .order_by(t.trust_domains.c.created_at)
        ).first()
        return Principal(
            org_id, user_id, org.name, user.name, td.name if td else self.ctx.default_trust_domain
        )

    def create_org(
        self, name: str, trust_domain: str, *, user_name: str = "admin", with_key: bool = True
    ) -> tuple[Principal, str | None]:
        """Create an organization owning ``trust_domain`` with a first user (and an API key)."""
        name = need_str(name, "organization name", max_len=128)
        td = TrustDomain.parse(trust_domain).name
        org_id, user_id = object_id(), object_id()
        key = None
        try:
            with self.ctx.store.write() as conn:
                if conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == name)).first():
                    raise ConflictError(f"an organization named {name!r} already exists")
                now = now_iso()
                conn.execute(insert(t.orgs).values(id=org_id, name=name, created_at=now))
                conn.execute(
                    insert(t.users).values(
                        id=user_id, org_id=org_id, name=user_name, created_at=now
                    )
                )
                self.ctx.trust.claim(conn, org_id, td, assign=True)
                if with_key:
                    key = self._new_key(conn, org_id, user_id)
                self.ctx.audit(
                    conn, org_id, user_id, "org.create", None, {"name": name, "trustDomain": td}
                )
                principal = Principal(org_id, user_id, name, user_name, td)
        except IntegrityError:
            raise ConflictError(
                f"an organization named {name!r} or trust domain {td!r} already exists"
            ) from None
        self.ctx.invalidate()
        return principal, key

    def add_trust_domain(self, org_id: str, trust_domain: str) -> dict[str, Any]:
        """An operator assigns ``trust_domain`` to the organization (its CA is made now).
        Idempotent for the organization that holds it; refused if another one does."""
        td = TrustDomain.parse(trust_domain).name
        with self.ctx.store.write() as conn:
            held = conn.execute(
                select(t.trust_domains.c.org_id).where(t.trust_domains.c.name == td)
            ).first()
            self.ctx.trust.claim(conn, org_id, td, assign=True)
            if held is None:
                self.ctx.audit(conn, org_id, None, "org.trust_domain.add", td, {"trustDomain": td})
        self.ctx.invalidate()
        return {"trustDomain": td, "assigned": held is None}

    def create_user(self, org_id: str, name: str) -> Principal:
        name = need_str(name, "user name", max_len=128)
        user_id = object_id()
        try:
            with self.ctx.store.write() as conn:
                conn.execute(
                    insert(t.users).values(
                        id=user_id, org_id=org_id, name=name, created_at=now_iso()
                    )
                )
                self.ctx.audit(conn, org_id, user_id, "user.create", None, {"name": name})
                return self._principal(conn, org_id, user_id)
        except IntegrityError:
            raise ConflictError(
                f"a user named {name!r} already exists in this organization"
            ) from None

    def org_by_name(self, name: str) -> str:
        with self.ctx.store.read() as conn:
            row = conn.execute(select(t.orgs.c.id).where(t.orgs.c.name == name)).first()
        if row is None:
            raise NotFoundError(
                f"no organization named {name!r}; create it with 'aztp-agents org create'"
            )
        return str(row.id)

    def principal_for(self, org_id: str, user_name: str | None = None) -> Principal:
        with self.ctx.store.read() as conn:
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
                id=object_id(),
                org_id=org_id,
                user_id=user_id,
                key_hash=_hash_key(key),
                prefix=key[: len(_KEY_PREFIX) + 4],
                created_at=now_iso(),
            )
        )
        return key

    def create_api_key(self, org_id: str, user_id: str) -> tuple[str, str]:
        """A new key for the user, returned once as ``(key_id, key)``; only its hash is stored."""
        with self.ctx.store.write(bump=False) as conn:
            key = self._new_key(conn, org_id, user_id)
            key_id = conn.execute(
                select(t.api_keys.c.id).where(t.api_keys.c.key_hash == _hash_key(key))
            ).scalar_one()
            self.ctx.audit(conn, org_id, user_id, "key.create", key_id, {})
        return key_id, key

    def list_orgs(self) -> list[dict[str, Any]]:
        """Every organization of the store, with its trust domains and its number of users."""
        with self.ctx.store.read() as conn:
            orgs = conn.execute(select(t.orgs).order_by(t.orgs.c.created_at)).all()
            domains = conn.execute(
                select(t.trust_domains.c.org_id, t.trust_domains.c.name).order_by(
                    t.trust_domains.c.created_at
                )
            ).all()
            users = conn.execute(select(t.users.c.org_id)).all()
        return [
            {
                "id": o.id,
                "name": o.name,
                "trustDomains": [d.name for d in domains if d.org_id == o.id],
                "users": sum(1 for u in users if u.org_id == o.id),
                "createdAt": o.created_at,
            }
            for o in orgs
        ]

    def list_users(self, org_id: str) -> list[dict[str, Any]]:
        """The organization's users, with how many active API keys each holds."""
        with self.ctx.store.read() as conn:
            users = conn.execute(
                select(t.users).where(t.users.c.org_id == org_id).order_by(t.users.c.created_at)
            ).all()
            keys = conn.execute(
                select(t.api_keys.c.user_id).where(
                    t.api_keys.c.org_id == org_id, t.api_keys.c.revoked_at.is_(None)
                )
            ).all()
        return [
            {
                "id": u.id,
                "name": u.name,
                "activeKeys": sum(1 for k in keys if k.user_id == u.id),
                "createdAt": u.created_at,
            }
            for u in users
        ]

    def list_api_keys(self, org_id: str) -> list[dict[str, Any]]:
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(t.api_keys, t.users.c.name.label("user_name"))
                .join(t.users, t.users.c.id == t.api_keys.c.user_id)
                .where(t.api_keys.c.org_id == org_id)
                .order_by(t.api_keys.c.created_at)
            ).all()
        return [
            {
                "id": r.id,
                "userId": r.user_id,
                "userName": r.user_name,
                "prefix": r.prefix + "…",
                "createdAt": r.created_at,
                "revokedAt": r.revoked_at,
            }
            for r in rows
        ]

    def revoke_api_key(self, org_id: str, key_id: str) -> None:
        with self.ctx.store.write(bump=False) as conn:
            n = conn.execute(
                update(t.api_keys)
                .where(
                    t.api_keys.c.id == key_id,
                    t.api_keys.c.org_id == org_id,
                    t.api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=now_iso())
            ).rowcount
            if not n:
                raise NotFoundError(f"no active API key {key_id!r} in this organization")
            self.ctx.audit(conn, org_id, None, "key.revoke", key_id, {})

    def rotate_api_key(self, org_id: str, key_id: str) -> tuple[str, str]:
        """Revoke key ``key_id`` and make its user a new one, in one transaction."""
        with self.ctx.store.write(bump=False) as conn:
            row = conn.execute(
                select(t.api_keys).where(
                    t.api_keys.c.id == key_id,
                    t.api_keys.c.org_id == org_id,
                    t.api_keys.c.revoked_at.is_(None),
                )
            ).first()
            if row is None:
                raise NotFoundError(f"no active API key {key_id!r} in this organization")
            conn.execute(
                update(t.api_keys).where(t.api_keys.c.id == key_id).values(revoked_at=now_iso())
            )
            key = self._new_key(conn, org_id, row.user_id)
            new_id = conn.execute(
                select(t.api_keys.c.id).where(t.api_keys.c.key_hash == _hash_key(key))
            ).scalar_one()
            self.ctx.audit(conn, org_id, row.user_id, "key.rotate", key_id, {"newKeyId": new_id})
        return new_id, key

    def authenticate(self, api_key: str | None) -> Principal:
        """The principal an API key belongs to; :class:`AuthenticationError` otherwise."""
        if not api_key or not isinstance(api_key, str) or len(api_key) > 256:
            raise AuthenticationError(
                "missing or malformed API key: send it in the 'api_access_key' header or as 'Authorization: Bearer <key>'"
            )
        digest = _hash_key(api_key)
        with self.ctx.store.read() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_hash == digest)).first()
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                raise AuthenticationError("unknown API key")
            if row.revoked_at is not None:
                raise AuthenticationError("this API key was revoked or rotated")
            return self._principal(conn, row.org_id, row.user_id)
