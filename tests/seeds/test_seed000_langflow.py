"""Seed 000 (identity flows): the Langflow integration, a flow per Langflow flow and an identity
per component. Run against the embedded authority.

How seed code is adapted to run here: see :mod:`tests.seeds`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp
from tests.support.seeds import (
    OBJECT_ID,
    LangflowIdentityService,
    run,
)


def test_seed000_langflow_flow_and_components(
    client: Aztp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the seed writes aztp_flow_id_<key[:8]>.json into the cwd
    service = LangflowIdentityService(client)

    async def scenario() -> tuple[Any, ...]:
        flow = await service.create_flow_identity(
            "Customer Support Bot",
            flow_id="lf-flow-1",
            folder_id="lf-folder-9",
            organization_api_key="embedded-org",
        )
        agent = await service.secure_connect_component("ChatInput-a1B2c", "Chat Input (v2)")
        added = await service.add_component_to_flow(flow["_id"], agent.aztp_identity_id)
        bad = await service.add_component_to_flow("0" * 24, agent.aztp_identity_id)
        return flow, agent, added, bad

    flow, agent, added, bad = run(scenario())
    assert flow is not None and OBJECT_ID.fullmatch(flow["_id"])
    assert flow["metadata"]["astha-flow"] == {"id": "lf-flow-1", "folderId": "lf-folder-9"}
    assert flow["tags"] == ["Customer Support Bot"]
    assert flow["description"] == "Langflow workflow: Customer Support Bot"
    assert json.loads((tmp_path / "aztp_flow_id_embedded.json").read_text()) == flow["_id"]
    assert agent.identity.valid is True
    assert agent.aztp_identity_id == "aztp://astha.ai/workload/production/node/Chat-Input-v2"
    assert agent.aztp_identity_status == "active"
    assert added is True
    assert bad is False  # unknown flow: the seed logs the error and answers False
    assert run(
        client.verify_identity_by_aztp_id(agent.aztp_identity_id, identity_flow_id=flow["_id"])
    )
