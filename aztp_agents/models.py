"""Typed views of what the authority answers (pydantic v2), beside the seed-shaped dicts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FlowMember", "FlowRecord", "Identity", "IdentityRecord", "LinkRecord", "Verification"]


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Identity(_Wire):
    """The identity attached to a secured agent (``agent.identity``), as the official client
    has it — but with the credential fields filled with PEM."""

    aztp_id: str
    workload_id: str
    valid: bool = False
    status: str = "active"
    certificate: str = ""
    private_key: str = Field(default="", repr=False)
    ca_certificate: str = ""
    spiffe_id: str = ""
    expires_at: str | None = None


class IdentityRecord(_Wire):
    id: str = Field(alias="_id")
    user_id: str = Field(alias="userId")
    aztp_id: str = Field(alias="aztpId")
    name: str
    parent_identity: str | None = Field(default=None, alias="parentIdentity")
    selectors: list[str] = []
    workload_info: dict[str, Any] = Field(default_factory=dict, alias="workloadInfo")
    status: str
    environment: str
    is_global_identity: bool = Field(alias="isGlobalIdentity")
    identity_type: str = Field(alias="identityType")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class FlowMember(_Wire):
    aztp_id: str = Field(alias="aztpId")
    status: str
    added_at: str = Field(alias="addedAt")
    updated_at: str = Field(alias="updatedAt")
    revoked_at: str | None = Field(default=None, alias="revokedAt")
    revocation_reason: str | None = Field(default=None, alias="revocationReason")


class FlowRecord(_Wire):
    id: str = Field(alias="_id")
    name: str
    description: str | None = None
    discoverable: str
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    user_id: str = Field(alias="userId")
    identities: list[FlowMember] = []
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class LinkRecord(_Wire):
    id: str = Field(alias="_id")
    source_identity: str = Field(alias="sourceIdentity")
    target_identity: str = Field(alias="targetIdentity")
    relationship_type: str = Field(alias="relationshipType")
    metadata: dict[str, Any] = {}
    created_at: str = Field(alias="createdAt")


class Verification(_Wire):
    valid: bool
    reason: str = ""
    message: str = ""
