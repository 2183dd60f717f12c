"""The wire models: the one definition of what crosses HTTP between server and client.

Requests
    One model per request body (:class:`Body` subclasses). The server validates them strictly
    (``"true"`` is not a boolean, ``1`` is not a string), so a wrong type is a 400 before
    anything reaches the authority; unknown fields are ignored (real clients send more than we
    read). Field names are the wire names, as the official client sends them.

Documents
    The records the authority answers with (identity, flow, verification, ...), as pydantic
    models with Python (snake_case) attributes and the wire's camelCase names as aliases. The
    server's OpenAPI document describes its answers with them (they do not filter answers);
    the client validates answers into them (:meth:`aztp_agents.Aztp.identity`, ``.flow``).

:mod:`aztp_agents.models` (client) and :mod:`aztp_agents.server.schemas` (server) re-export
these names.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from .decisions import Reason

T = TypeVar("T")

EXAMPLE_ID = "aztp://example.org/workload/production/node/my-agent"
#: A link answer's ``state`` when a declared (enrollment) link was not created because an
#: operator removed that grant: the operator's decision holds.
REMOVED_BY_OPERATOR = "removed_by_operator"
#: PEM is ASCII by definition (RFC 7468).
PEM_PATTERN = r"^[\x00-\x7f]*$"

AztpIdField = Annotated[str, Field(min_length=1, max_length=2048, examples=[EXAMPLE_ID])]
FlowIdField = Annotated[
    str, Field(min_length=1, max_length=128, examples=["66e0f1c2a3b4c5d6e7f80912"])
]
Text = Annotated[str, Field(max_length=4096)]
ShortText = Annotated[str, Field(max_length=256)]
Discoverable = Literal["public", "private"]
Tags = Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=128)]
ReasonValue = Literal[tuple(r.value for r in Reason)]  # type: ignore[valid-type]


class Body(BaseModel):
    """Base of every request body: strict types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


# ------------------------------------------------------------------ WIRE.md (official client)


class IssueMetadata(Body):
    hostname: ShortText | None = None
    environment: Annotated[str, Field(max_length=64)] | None = None
    extra: dict[str, Any] | None = None
    trustDomain: Annotated[str, Field(max_length=255)] | None = None
    parentIdentity: AztpIdField | None = None


class IssueIdentityBody(Body):
    """``POST aztp/issue-identity`` as the official client sends it."""

    workloadId: Annotated[str, Field(min_length=1, max_length=256, examples=["my-agent"])]
    agentId: ShortText | None = "aztp"
    timestamp: ShortText | None = None
    isGlobalIdentity: bool = False
    method: Annotated[str, Field(max_length=64)] | None = "node"
    metadata: IssueMetadata | None = None


class VerifyBody(Body):
    aztpId: AztpIdField
    identityFlowId: FlowIdField | None = None


class AuthorizeBody(Body):
    aztpId: AztpIdField
    requestAztpId: AztpIdField
    policyCode: ShortText | None = None


class RevokeBody(Body):
    aztpId: AztpIdField
    reason: Text | None = None


class ReissueBody(Body):
    aztpId: AztpIdField
    csr: Annotated[str, Field(max_length=16384, pattern=PEM_PATTERN)] | None = Field(
        default=None, description="Optional PEM CSR: the new X.509-SVID is issued for its key."
    )


class LinkBody(Body):
    sourceIdentity: AztpIdField
    targetIdentity: AztpIdField
    relationshipType: Annotated[str, Field(min_length=1, max_length=64)] = "linked"
    metadata: dict[str, Any] | None = None
    #: Our extension: the link holds in this flow only (a grant an adapter declares for a
    #: crew). Absent: organization-wide, the AZTP API's meaning.
    identityFlowId: FlowIdField | None = None
    #: Our extension: the link is declared by enrollment (an adapter's grants for its crew),
    #: not made by an operator. A declared link an operator removed is not re-created.
    declared: bool = False


class CreateFlowBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    discoverable: Discoverable = "public"
    description: Text | None = None
    tags: Tags | None = None
    metadata: dict[str, Any] | None = None


class UpdateFlowBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    description: Text | None = None
    discoverable: Discoverable | None = None
    tags: Tags | None = None
    metadata: dict[str, Any] | None = None


class IdentityRef(Body):
    aztpId: AztpIdField


class AddToFlowBody(Body):
    identityFlowId: FlowIdField
    identity: IdentityRef | None = None
    aztpId: AztpIdField | None = Field(default=None, description="Alternative to identity.aztpId.")


class RemoveFromFlowBody(Body):
    identityFlowId: FlowIdField
    aztpId: AztpIdField


class RevokeFlowBody(Body):
    aztpId: AztpIdField
    identityFlowId: FlowIdField
    reason: Text | None = None


class OiapBody(Body):
    aztp_id: AztpIdField
    requested_resource: Annotated[str, Field(min_length=1, max_length=2048)]
    user_id: Annotated[str, Field(min_length=1, max_length=256)]


# ------------------------------------------------------------------ extensions (/v1)


Csr = Annotated[
    str,
    Field(
        min_length=1,
        max_length=16384,
        pattern=PEM_PATTERN,
        description="PEM certificate signing request",
    ),
]
Ttl = Annotated[int, Field(ge=1, le=86400)]


class NewIdentityBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=256, examples=["my-agent"])]
    isGlobalIdentity: bool = False
    trustDomain: Annotated[str, Field(max_length=255)] | None = None
    parentIdentity: AztpIdField | None = None
    environment: Annotated[str, Field(max_length=64)] | None = None
    method: Annotated[str, Field(max_length=64)] | None = None
    hostname: ShortText | None = None
    extra: dict[str, Any] | None = None
    csr: Csr | None = None
    ttl: Ttl = 3600


class CredentialBody(Body):
    aztpId: AztpIdField
    csr: Csr
    ttl: Ttl = 3600


class VerifyCredentialBody(Body):
    certificate: Annotated[
        str,
        Field(
            min_length=1,
            max_length=16384,
            pattern=PEM_PATTERN,
            description="PEM X.509-SVID (leaf first, optional chain)",
        ),
    ]


class JwtSvidBody(Body):
    aztpId: AztpIdField
    audience: (
        Annotated[str, Field(min_length=1, max_length=1024)]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=1024)]],
            Field(min_length=1, max_length=32),
        ]
    )
    ttl: Annotated[int, Field(ge=1, le=3600)] = 300


class UnlinkBody(Body):
    sourceIdentity: AztpIdField
    targetIdentity: AztpIdField
    relationshipType: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    #: Why the operator removed it (kept with the removal record).
    reason: Text | None = None


class RestoreLinkBody(Body):
    sourceIdentity: AztpIdField
    targetIdentity: AztpIdField
    relationshipType: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class ReinstateBody(Body):
    aztpId: AztpIdField
    identityFlowId: FlowIdField


class EnsureFlowBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    discoverable: Discoverable = "private"
    description: Text | None = None


class PolicyBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    document: dict[str, Any] = Field(
        examples=[{"Statement": [{"Effect": "Allow", "Action": "tool:*"}]}]
    )
    code: (
        Annotated[str, Field(min_length=8, max_length=128, examples=["policy:0650537f8614"])] | None
    ) = None


class AttachBody(Body):
    aztpId: AztpIdField
    code: Annotated[str, Field(min_length=1, max_length=128)]


class FederationBody(Body):
    trustDomain: Annotated[str, Field(min_length=1, max_length=255)]


class AuditVerifyBody(Body):
    """``POST v1/audit/verify``: check the chain, and against a signed checkpoint if given."""

    checkpoint: dict[str, Any] | Annotated[str, Field(max_length=16384)] | None = Field(
        default=None, description="A signed checkpoint (GET v1/audit/checkpoint), or its JSON."
    )
    publicKey: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None,
        description="PEM Ed25519 key to check the checkpoint's signature with (default: the "
        "organization's checkpoint key).",
    )


class DecideBody(Body):
    flowId: FlowIdField
    agent: AztpIdField
    tool: AztpIdField
    toolName: ShortText | None = None
    context: dict[str, Any] | None = None
    enforce: bool = True


class ExplainBody(Body):
    """``POST v1/decisions/explain``: why a call of ``tool`` by ``agent`` in ``flowId`` is
    (or would be) allowed or denied."""

    flowId: FlowIdField
    agent: AztpIdField
    tool: AztpIdField
    toolName: ShortText | None = None
    context: dict[str, Any] | None = None


class DecisionRecord(Body):
    allowed: bool
    reason: ReasonValue
    agent: AztpIdField | None = None
    tool: AztpIdField | None = None
    flow: FlowIdField | None = None
    toolName: ShortText | None = None
    revision: int = 0
    latencyUs: float = 0.0
    audit: bool = False
    enforced: bool = True
    context: dict[str, Any] | None = None
    decidedAt: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None,
        description="When the enforcement point took the decision (epoch seconds): recorded "
        "as the decision's time; the server adds receivedAt.",
    )


class DecisionAuditBody(Body):
    decisions: Annotated[list[DecisionRecord], Field(max_length=1000)]


# ------------------------------------------------------------------ documents (answers)


class Envelope(BaseModel, Generic[T]):
    """Every answer: ``{success, message, data}``."""

    success: bool
    message: str
    data: T


class ErrorData(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str


class ErrorEnvelope(BaseModel):
    success: Literal[False]
    message: str
    data: ErrorData


class Loose(BaseModel):
    """A JSON object; the base of every document (fields beyond the declared ones are kept,
    and may be given by attribute name or by wire name)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


Status = Literal["active", "revoked"]
#: ``workloadInfo`` stays a plain dict for callers; the OpenAPI document names its one
#: required field.
WorkloadInfo = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "properties": {"workloadId": {"type": "string"}},
            "required": ["workloadId"],
            "additionalProperties": True,
        }
    ),
]


class IdentityRecord(Loose):
    """The identity record of seed 001."""

    id: str = Field(alias="_id")
    user_id: str = Field(alias="userId")
    aztp_id: str = Field(alias="aztpId")
    name: str
    parent_identity: str | None = Field(alias="parentIdentity")
    selectors: list[str]
    workload_info: WorkloadInfo = Field(alias="workloadInfo")
    status: Status
    environment: str
    is_global_identity: bool = Field(alias="isGlobalIdentity")
    identity_type: Literal["global", "component"] = Field(alias="identityType")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class IssuedIdentity(IdentityRecord):
    """``aztp/issue-identity``: the identity record plus ``valid`` (and ``error`` if not)."""

    valid: bool
    error: str | None = None


class FoundIdentity(IdentityRecord):
    """``aztp/get-identity``: the identity record, which also carries the seed's envelope
    (``success``, ``message``, ``data``) so that the official client's answer is what the
    seeds show (``json.loads(await client.get_identity(agent))["data"]["aztpId"]``)."""

    success: bool
    message: str
    data: IdentityRecord


class IssueAnswer(Loose):
    identity: IdentityRecord
    valid: bool
    certificate: str
    ca_certificate: str = Field(alias="caCertificate")


class Identity(Loose):
    """The identity attached to a secured agent (``agent.identity``), as the official client
    has it — but with the credential fields filled with PEM. Made by the client from an
    :class:`IssueAnswer` (the private key is made on the client in remote mode)."""

    aztp_id: str
    workload_id: str
    valid: bool = False
    status: str = "active"
    certificate: str = ""
    private_key: str = Field(default="", repr=False)
    ca_certificate: str = ""
    spiffe_id: str = ""
    expires_at: str | None = None


class Verification(Loose):
    valid: bool
    reason: str
    message: str


class FlowMember(Loose):
    aztp_id: str = Field(alias="aztpId")
    status: Status
    added_at: str = Field(alias="addedAt")
    updated_at: str = Field(alias="updatedAt")
    revoked_at: str | None = Field(default=None, alias="revokedAt")
    revocation_reason: str | None = Field(default=None, alias="revocationReason")


class FlowRecord(Loose):
    id: str = Field(alias="_id")
    name: str
    description: str | None
    discoverable: Discoverable
    tags: list[str]
    metadata: dict[str, Any] = Field(default_factory=dict)
    user_id: str = Field(alias="userId")
    identities: list[FlowMember]
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class PolicyInfo(Loose):
    code: str
    policy_name: str = Field(alias="policyName")
    policy_statement: dict[str, Any] = Field(alias="policyStatement")


class DecisionDoc(Loose):
    allowed: bool
    reason: ReasonValue
    revision: int


class StateDoc(BaseModel):
    """What an enforcement point needs to decide locally (one organization)."""

    model_config = ConfigDict(populate_by_name=True)

    revision: int
    #: The organization's change-log position the state is at: the change feed resumes
    #: after it (``GET v1/state/changes?after=position``).
    position: int = 0
    #: The mark of the entry at ``position`` (``?mark=``, with ``after``, when resuming).
    mark: str | None = None
    organization: str
    identities: dict[str, str]
    flows: dict[str, str]
    members: dict[str, list[str]]
    flow_revoked: dict[str, list[str]] = Field(alias="flowRevoked")
    links: list[list[str]]
    #: flow_id -> the links that hold in that flow only (adapters' grants).
    flow_links: dict[str, list[list[str]]] = Field(default_factory=dict, alias="flowLinks")
    policies: dict[str, list[dict[str, Any]]]


class Health(Loose):
    status: str
