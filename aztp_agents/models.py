"""Typed views of what the authority answers, as the client returns them.

The models are defined once, in :mod:`aztp_agents.wire`, for server and client alike; this
module keeps the client's import path.
"""

from __future__ import annotations

from .wire import FlowMember, FlowRecord, Identity, IdentityRecord, Verification

__all__ = ["FlowMember", "FlowRecord", "Identity", "IdentityRecord", "Verification"]
