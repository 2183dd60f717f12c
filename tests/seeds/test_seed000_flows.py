"""Seed 000 (identity flows): creating production flows, managing their identities, updating and
deleting flows. Run against the embedded authority.

How seed code is adapted to run here: see :mod:`tests.seeds`.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from aztp_agents import Aztp
from aztp_agents.errors import NotFoundError
from tests.support.seeds import (
    ISO_MS,
    OBJECT_ID,
    run,
)

# =========================================================================================
# Seed 000: identity flows
# =========================================================================================


async def create_production_flows(client):
    """Create flows based on successful test execution patterns."""

    # Real flow configurations that work (from test execution)
    flow_configurations = [
        {
            "name": "development-flow",
            "description": "Development environment workflow",
            "discoverable": "public",
            "tags": ["development", "testing", "env:dev"],
            "metadata": {
                "environment": "development",
                "project": "aztp-testing",
                "created_by": "functional_test",
                "version": "1.0",
            },
        },
        {
            "name": "production-flow",
            "description": "Production deployment workflow",
            "discoverable": "private",
            "tags": ["production", "critical", "env:prod"],
            "metadata": {
                "environment": "production",
                "project": "aztp-testing",
                "security_level": "high",
                "astha-flow": {"id": "flow_123", "folderId": "folder_456"},
            },
        },
        {
            "name": "testing-flow",
            "description": "Automated testing workflow",
            "discoverable": "public",
            "tags": ["testing", "automation", "ci/cd"],
            "metadata": {"environment": "testing", "automation": True, "test_suite": "integration"},
        },
    ]

    created_flows = {}

    for config in flow_configurations:
        try:
            print(f"🔄 Creating flow: '{config['name']}'")

            flow = await client.create_flow(
                name=config["name"],
                description=config["description"],
                discoverable=config["discoverable"],
                tags=config["tags"],
                metadata=config["metadata"],
            )

            created_flows[config["name"]] = flow

            print("✅ Flow created successfully:")
            print(f"   Flow ID: {flow.get('_id')}")
            print(f"   Name: {flow.get('name')}")
            print(f"   Description: {flow.get('description')}")
            print(f"   Discoverable: {flow.get('discoverable')}")
            print(f"   Tags: {flow.get('tags')}")

        except Exception as e:
            print(f"❌ Error creating flow '{config['name']}': {e}")

    print(f"\n📊 Created {len(created_flows)} flows successfully")
    return created_flows, flow_configurations  # changed: also return the input, to compare


def test_seed000_create_production_flows(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    flows, configs = run(create_production_flows(client))
    out = capsys.readouterr().out
    assert "❌" not in out
    assert "📊 Created 3 flows successfully" in out
    assert list(flows) == ["development-flow", "production-flow", "testing-flow"]
    for config in configs:
        flow = flows[config["name"]]
        assert OBJECT_ID.fullmatch(flow["_id"])
        for field in ("name", "description", "discoverable", "tags", "metadata"):
            assert flow[field] == config[field], field
        assert flow["identities"] == []
        assert ISO_MS.fullmatch(flow["createdAt"]) and ISO_MS.fullmatch(flow["updatedAt"])
        assert f"   Flow ID: {flow['_id']}" in out
        assert f"   Tags: {config['tags']}" in out
    # Stored, not just echoed: list_flows and get_flow give the same records back.
    listed = run(client.list_flows())
    assert [f["name"] for f in listed] == list(flows)
    assert run(client.get_flow(flows["production-flow"]["_id"]))["metadata"]["astha-flow"] == {
        "id": "flow_123",
        "folderId": "folder_456",
    }


async def manage_flow_identities_example(client):
    """Real working example from successful test execution."""

    # First, create identities
    agent1 = await client.secure_connect({}, "service1", config={"isGlobalIdentity": False})
    agent2 = await client.secure_connect({}, "service2", config={"isGlobalIdentity": False})

    # Get AZTP IDs
    identity_info_1 = await client.get_identity(agent1)
    identity_data_1 = json.loads(identity_info_1)
    aztp_id_1 = identity_data_1["data"]["aztpId"]

    identity_info_2 = await client.get_identity(agent2)
    identity_data_2 = json.loads(identity_info_2)
    aztp_id_2 = identity_data_2["data"]["aztpId"]

    print("🔑 Created identities:")
    print(f"   Service 1: {aztp_id_1}")
    print(f"   Service 2: {aztp_id_2}")

    # Create flow
    flow = await client.create_flow(
        name="identity-management-demo",
        description="Demonstration of identity management in flows",
        discoverable="public",
        tags=["demo", "testing"],
        metadata={"project": "identity-demo", "environment": "development"},
    )

    flow_id = flow.get("_id")
    print(f"📋 Created flow: {flow_id}")

    # Add identities to flow
    print("\n🔗 Adding identities to flow...")

    result1 = await client.add_identity_to_flow(flow_id, aztp_id_1)
    print("✅ Added service1 to flow")
    print(f"   Result contains {len(result1.get('identities', []))} total identities")

    result2 = await client.add_identity_to_flow(flow_id, aztp_id_2)
    print("✅ Added service2 to flow")
    print(f"   Result contains {len(result2.get('identities', []))} total identities")

    # Verify identities in flow context
    print("\n🔍 Verifying identities in flow context...")

    is_valid_1 = await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id)
    is_valid_2 = await client.verify_identity_by_aztp_id(aztp_id_2, identity_flow_id=flow_id)

    print(f"   Service 1 in flow: {'✅ VERIFIED' if is_valid_1 else '❌ NOT VERIFIED'}")
    print(f"   Service 2 in flow: {'✅ VERIFIED' if is_valid_2 else '❌ NOT VERIFIED'}")

    # Demonstrate flow-specific operations
    print("\n🔧 Flow identity management operations...")

    # Remove identity from flow
    print(f"➖ Removing {aztp_id_1} from flow...")
    remove_result = await client.remove_identity_from_flow(flow_id, aztp_id_1)
    print(
        f"✅ Identity removed, flow now has {len(remove_result.get('identities', []))} identities"
    )

    # Verify removal
    try:
        verification_after_removal = await client.verify_identity_by_aztp_id(
            aztp_id_1, identity_flow_id=flow_id
        )
        status = "❌ NOT IN FLOW" if not verification_after_removal else "⚠️ STILL IN FLOW"
        print(f"   Verification after removal: {status}")
    except Exception:
        print("   Verification after removal: ❌ NOT IN FLOW (expected)")

    # Re-add identity
    print(f"➕ Re-adding {aztp_id_1} to flow...")
    readd_result = await client.add_identity_to_flow(flow_id, aztp_id_1)
    print(
        f"✅ Identity re-added, flow now has {len(readd_result.get('identities', []))} identities"
    )

    # Flow-specific revocation (advanced feature)
    print("\n🚫 Testing flow-specific revocation...")
    print(f"⚠️ Revoking {aztp_id_2} from flow context only...")

    try:
        revoke_result = await client.revoke_flow_identity(
            aztp_id=aztp_id_2,
            identity_flow_id=flow_id,
            reason="Testing flow-specific revocation in documentation demo",
        )

        print("✅ Flow-specific revocation completed:")
        print(f"   Result: {revoke_result}")

        # Verify revocation in flow context
        try:
            post_revoke_verification = await client.verify_identity_by_aztp_id(
                aztp_id_2, identity_flow_id=flow_id
            )
            status = "✅ REVOKED" if not post_revoke_verification else "⚠️ STILL ACTIVE"
            print(f"   Flow context verification: {status}")
        except Exception as verify_error:
            if "Identity already revoked for this flow" in str(verify_error):
                print("   Flow context verification: ✅ REVOKED (expected)")
            else:
                raise verify_error

        # Check global validity (should still be valid)
        global_verification = await client.verify_identity_by_aztp_id(aztp_id_2)
        global_status = "✅ STILL VALID GLOBALLY" if global_verification else "❌ GLOBALLY REVOKED"
        print(f"   Global verification: {global_status}")

    except Exception as e:
        print(f"❌ Flow revocation error: {e}")

    return {
        "flow": flow,
        "identities": [aztp_id_1, aztp_id_2],
        "agents": [agent1, agent2],
        # changed: also return the intermediate results the seed prints, to assert on them
        "results": {
            "add": [result1, result2],
            "verified": [is_valid_1, is_valid_2],
            "remove": remove_result,
            "after_removal": verification_after_removal,
            "readd": readd_result,
            "revoke": revoke_result,
            "flow_after_revoke": post_revoke_verification,
            "global_after_revoke": global_verification,
        },
    }


def test_seed000_manage_flow_identities(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(manage_flow_identities_example(client))
    out = capsys.readouterr().out
    r = result["results"]
    id1, id2 = result["identities"]
    assert id1 == "aztp://astha.ai/workload/production/node/service1"
    assert id2 == "aztp://astha.ai/workload/production/node/service2"
    assert [len(x["identities"]) for x in r["add"]] == [1, 2]
    assert r["verified"] == [True, True]
    assert len(r["remove"]["identities"]) == 1
    assert [m["aztpId"] for m in r["remove"]["identities"]] == [id2]
    assert r["after_removal"] is False
    assert len(r["readd"]["identities"]) == 2
    revoke = r["revoke"]
    assert revoke["valid"] is True
    assert revoke["reason"] == "Testing flow-specific revocation in documentation demo"
    assert isinstance(revoke["issuedAt"], int)
    assert abs(revoke["issuedAt"] / 1000 - datetime.now().timestamp()) < 300  # epoch ms
    assert r["flow_after_revoke"] is False
    assert r["global_after_revoke"] is True
    # What the seed prints.
    for line in (
        "   Result contains 1 total identities",
        "   Result contains 2 total identities",
        "   Service 1 in flow: ✅ VERIFIED",
        "   Service 2 in flow: ✅ VERIFIED",
        "✅ Identity removed, flow now has 1 identities",
        "   Verification after removal: ❌ NOT IN FLOW",
        "✅ Identity re-added, flow now has 2 identities",
        "✅ Flow-specific revocation completed:",
        "   Flow context verification: ✅ REVOKED",
        "   Global verification: ✅ STILL VALID GLOBALLY",
    ):
        assert line in out, line
    assert "❌ Flow revocation error" not in out
    # The flow's record shows the flow-level revocation of service2 only.
    members = {m["aztpId"]: m for m in run(client.get_flow(result["flow"]["_id"]))["identities"]}
    assert members[id1]["status"] == "active"
    assert members[id2]["status"] == "revoked"
    assert members[id2]["revocationReason"] == revoke["reason"]
    # Revoking it again in the same flow answers the seed's error text.
    with pytest.raises(Exception, match="Identity already revoked for this flow"):
        run(client.revoke_flow_identity(aztp_id=id2, identity_flow_id=result["flow"]["_id"]))


def test_seed000_update_and_delete_flow(client: Aztp) -> None:
    flow = run(
        client.create_flow("ai-pipeline", description="d", discoverable="public", tags=["ai"])
    )
    agent = run(client.secure_connect({}, "pipeline-worker"))
    run(client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id))
    # Update flow properties
    updated = run(
        client.update_flow(
            flow_id=flow["_id"],
            name="updated-ai-pipeline",
            description="Updated description",
            discoverable="private",
            tags=["ai", "updated", "production"],
        )
    )
    assert updated["_id"] == flow["_id"]
    assert updated["name"] == "updated-ai-pipeline"
    assert updated["description"] == "Updated description"
    assert updated["discoverable"] == "private"
    assert updated["tags"] == ["ai", "updated", "production"]
    assert updated["updatedAt"] >= flow["updatedAt"]
    assert len(updated["identities"]) == 1
    # Delete flow
    run(client.delete_flow(flow["_id"]))
    with pytest.raises(NotFoundError):
        run(client.get_flow(flow["_id"]))
    assert run(client.verify_identity_by_aztp_id(agent.identity.aztp_id)) is True
