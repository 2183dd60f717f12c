"""Relational schema of the authority's store (SQLAlchemy Core, SQLite and PostgreSQL).

Every row that belongs to a tenant carries ``org_id``. Timestamps are UTC ISO-8601 strings
with millisecond precision (``2025-09-10T03:36:05.794Z``), as the AZTP API shows them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

#: Text settings of the store itself: ``master_key_check``, a value sealed under the master
#: key, by which a process with another key is refused before it writes (see
#: :mod:`aztp_agents.keywrap`).
store_settings = Table(
    "store_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("org_id", "name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
)

trust_domains = Table(
    "trust_domains",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("cert_pem", Text, nullable=False),
    Column("key_pem", Text, nullable=False),
    Column("kid", String(64), nullable=False),
    Column("sequence", Integer, nullable=False, default=1),
    Column("created_at", String(32), nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("aztp_id", String(2048), nullable=False, unique=True),
    Column("name", String(64), nullable=False),
    Column("trust_domain", String(255), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("method", String(64), nullable=False),
    Column("is_global", Boolean, nullable=False),
    Column("parent_identity", String(2048)),
    Column("status", String(16), nullable=False),
    Column("revoked_reason", Text),
    Column("revoked_at", String(32)),
    Column("credentials_valid_after", String(32)),
    Column("generation", Integer, nullable=False, default=0),  # bumped by each reissue
    Column("selectors", JSON, nullable=False),
    Column("workload_info", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    UniqueConstraint("org_id", "name"),
)

credentials = Table(
    "credentials",
    metadata,
    Column("serial", String(64), primary_key=True),
    Column("org_id", String(32), nullable=False),
    Column("aztp_id", String(2048), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("generation", Integer, nullable=False, default=0),
    Column("issued_at", String(32), nullable=False),
    Column("not_after", String(32), nullable=False),
)

flows = Table(
    "flows",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False),
    Column("owner_user_id", String(32), nullable=False),
    Column("name", String(256), nullable=False),
    Column("description", Text),
    Column("discoverable", String(16), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    UniqueConstraint("org_id", "name"),
)

flow_members = Table(
    "flow_members",
    metadata,
    Column("flow_id", String(24), ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
    Column("aztp_id", String(2048), nullable=False),
    Column("added_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    PrimaryKeyConstraint("flow_id", "aztp_id"),
)

flow_revocations = Table(
    "flow_revocations",
    metadata,
    Column("flow_id", String(24), ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
    Column("aztp_id", String(2048), nullable=False),
    Column("reason", Text),
    Column("revoked_at", String(32), nullable=False),
    PrimaryKeyConstraint("flow_id", "aztp_id"),
)

links = Table(
    "links",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("source", String(2048), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("relationship_type", String(64), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("org_id", "source", "target", "relationship_type"),
)

#: The flows a link is scoped to. A link with no row here is organization-wide (links made
#: through the AZTP API, and every link of a store older than schema version 2); a link with
#: rows holds in those flows only (the grants an adapter declares for a crew of one flow).
link_flows = Table(
    "link_flows",
    metadata,
    Column("link_id", String(24), ForeignKey("links.id"), nullable=False),
    Column("flow_id", String(24), ForeignKey("flows.id"), nullable=False, index=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False, index=True),
    PrimaryKeyConstraint("link_id", "flow_id"),
)

#: Operator intent: a link an operator removed (``unlink``). Enrollment (the links an adapter
#: declares for its crew at each process start) never re-creates a link recorded here; only an
#: explicit operator action clears it (``restore-link``, or an operator's own ``link``). One
#: row per removed (source, target, relationship); ``flows`` is the scope the link had (empty:
#: organization-wide), so that a restore puts back exactly what was removed.
link_removals = Table(
    "link_removals",
    metadata,
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False),
    Column("source", String(2048), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("relationship_type", String(64), nullable=False),
    Column("flows", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("removed_by", String(256)),
    Column("removed_at", String(32), nullable=False),
    Column("reason", Text),
    PrimaryKeyConstraint("org_id", "source", "target", "relationship_type"),
)

#: A policy code is unique within its organization (schema version 4; before, codes were
#: unique across organizations, and a 409 told one organization another's code existed).
policies = Table(
    "policies",
    metadata,
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("code", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("document", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    PrimaryKeyConstraint("org_id", "code"),
)

policy_attachments = Table(
    "policy_attachments",
    metadata,
    Column("org_id", String(32), nullable=False, index=True),
    Column("code", String(64), nullable=False),
    Column("aztp_id", String(2048), nullable=False),
    PrimaryKeyConstraint("org_id", "code", "aztp_id"),
    ForeignKeyConstraint(
        ["org_id", "code"], ["policies.org_id", "policies.code"], ondelete="CASCADE"
    ),
)

federations = Table(
    "federations",
    metadata,
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False),
    Column("trust_domain", String(255), nullable=False),
    Column("created_at", String(32), nullable=False),
    PrimaryKeyConstraint("org_id", "trust_domain"),
)

audit = Table(
    "audit",
    metadata,
    Column("org_id", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(256)),
    Column("action", String(64), nullable=False),
    Column("subject", String(2048)),
    Column("data", Text, nullable=False),  # canonical JSON, hashed as stored
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    PrimaryKeyConstraint("org_id", "seq"),
)

audit_heads = Table(
    "audit_heads",
    metadata,
    Column("org_id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: The change log (see :mod:`aztp_agents.store.change_log`): per organization, one row per
#: write transaction that changed its decision state, at the next position (``seq``) of the
#: organization; ``records`` is the JSON list of the write's change records
#: (:mod:`aztp_agents.decisions.changes`), ``revision`` the store revision the write made.
state_changes = Table(
    "state_changes",
    metadata,
    Column("org_id", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("records", Text, nullable=False),
    Column("ts", String(32), nullable=False),
    PrimaryKeyConstraint("org_id", "seq"),
)

#: Each organization's position in the change log: ``seq`` of its last row, and
#: ``compacted_through``, the last position whose rows compaction deleted (a follower at an
#: older position must load the whole state). The row is locked by every append, which
#: orders one organization's appends even across PostgreSQL connections.
change_heads = Table(
    "change_heads",
    metadata,
    Column("org_id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("compacted_through", BigInteger, nullable=False),
)

Index("ix_identities_org", identities.c.org_id)
Index("ix_flows_org", flows.c.org_id)
Index("ix_flow_members_aztp", flow_members.c.aztp_id)
