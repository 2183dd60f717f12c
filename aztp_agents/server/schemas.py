"""Request and response models of the HTTP API, as the server's routes import them.

The models are defined once, in :mod:`aztp_agents.wire`, for server and client alike; this
module keeps the server's names (``IdentityDoc`` and ``FlowDoc`` are the wire's
``IdentityRecord`` and ``FlowRecord``).
"""

from __future__ import annotations

from ..wire import (
    EXAMPLE_ID,
    PEM_PATTERN,
    AddToFlowBody,
    AttachBody,
    AuthorizeBody,
    AztpIdField,
    Body,
    CreateFlowBody,
    CredentialBody,
    Csr,
    DecideBody,
    DecisionAuditBody,
    DecisionDoc,
    DecisionRecord,
    Discoverable,
    EnsureFlowBody,
    Envelope,
    ErrorData,
    ErrorEnvelope,
    FederationBody,
    FlowIdField,
    FlowMember,
    FoundIdentity,
    Health,
    IdentityRef,
    IssueAnswer,
    IssuedIdentity,
    IssueIdentityBody,
    IssueMetadata,
    JwtSvidBody,
    LinkBody,
    Loose,
    NewIdentityBody,
    OiapBody,
    PolicyBody,
    PolicyInfo,
    ReasonValue,
    ReinstateBody,
    ReissueBody,
    RemoveFromFlowBody,
    RevokeBody,
    RevokeFlowBody,
    ShortText,
    StateDoc,
    Tags,
    Text,
    Ttl,
    UnlinkBody,
    UpdateFlowBody,
    Verification,
    VerifyBody,
    VerifyCredentialBody,
    WorkloadInfo,
)
from ..wire import FlowRecord as FlowDoc
from ..wire import IdentityRecord as IdentityDoc

__all__ = [
    "EXAMPLE_ID", "PEM_PATTERN", "AddToFlowBody", "AttachBody", "AuthorizeBody", "AztpIdField", "Body",
    "CreateFlowBody", "CredentialBody", "Csr", "DecideBody", "DecisionAuditBody", "DecisionDoc",
    "DecisionRecord", "Discoverable", "EnsureFlowBody", "Envelope", "ErrorData", "ErrorEnvelope",
    "FederationBody", "FlowDoc", "FlowIdField", "FlowMember", "FoundIdentity", "Health", "IdentityDoc",
    "IdentityRef", "IssueAnswer", "IssueIdentityBody", "IssueMetadata", "IssuedIdentity", "JwtSvidBody",
    "LinkBody", "Loose", "NewIdentityBody", "OiapBody", "PolicyBody", "PolicyInfo", "ReasonValue",
    "ReinstateBody", "ReissueBody", "RemoveFromFlowBody", "RevokeBody", "RevokeFlowBody", "ShortText",
    "StateDoc", "Tags", "Text", "Ttl", "UnlinkBody", "UpdateFlowBody", "Verification", "VerifyBody",
    "VerifyCredentialBody", "WorkloadInfo",
]
