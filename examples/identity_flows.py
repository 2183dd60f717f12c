"""Identity flows, as the AZTP "Identity Flows" documentation runs them.

Create the documentation's three flows (public and private, with tags and metadata), then
manage identities in a flow: add, verify in the flow, remove, re-add, and revoke one
identity *in that flow only* — it stays valid globally. Then what the documentation leaves
out: a flow revocation survives remove + re-add, revoking twice says so, and
``reinstate_flow_identity`` undoes it. Finally update and delete a flow.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/identity_flows.py
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

from aztp_agents import Aztp
from aztp_agents.errors import AlreadyRevokedError

FLOW_CONFIGURATIONS = [
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


async def create_production_flows(client: Aztp) -> dict[str, dict]:
    created = {}
    for config in FLOW_CONFIGURATIONS:
        print(f"Creating flow: '{config['name']}'")
        flow = await client.create_flow(
            name=config["name"],
            description=config["description"],
            discoverable=config["discoverable"],
            tags=config["tags"],
            metadata=config["metadata"],
        )
        created[config["name"]] = flow
        print(f"   Flow ID: {flow.get('_id')}")
        print(f"   Discoverable: {flow.get('discoverable')}  Tags: {flow.get('tags')}")
    print(f"Created {len(created)} flows successfully\n")
    return created


async def manage_flow_identities(client: Aztp) -> None:
    agent1 = await client.secure_connect({}, "service1", config={"isGlobalIdentity": False})
    agent2 = await client.secure_connect({}, "service2", config={"isGlobalIdentity": False})
    aztp_id_1 = json.loads(await client.get_identity(agent1))["data"]["aztpId"]
    aztp_id_2 = json.loads(await client.get_identity(agent2))["data"]["aztpId"]
    print("Created identities:")
    print(f"   Service 1: {aztp_id_1}")
    print(f"   Service 2: {aztp_id_2}")

    flow = await client.create_flow(
        name="identity-management-demo",
        description="Demonstration of identity management in flows",
        discoverable="public",
        tags=["demo", "testing"],
        metadata={"project": "identity-demo", "environment": "development"},
    )
    flow_id = flow["_id"]
    print(f"Created flow: {flow_id}")

    result1 = await client.add_identity_to_flow(flow_id, aztp_id_1)
    print(f"Added service1 to flow: {len(result1['identities'])} total identities")
    result2 = await client.add_identity_to_flow(flow_id, aztp_id_2)
    print(f"Added service2 to flow: {len(result2['identities'])} total identities")

    async def in_flow(aztp_id: str) -> bool:
        return await client.verify_identity_by_aztp_id(aztp_id, identity_flow_id=flow_id)

    print(f"   Service 1 in flow: {'VERIFIED' if await in_flow(aztp_id_1) else 'NOT VERIFIED'}")
    print(f"   Service 2 in flow: {'VERIFIED' if await in_flow(aztp_id_2) else 'NOT VERIFIED'}")

    removed = await client.remove_identity_from_flow(flow_id, aztp_id_1)
    print(f"Removed service1: flow now has {len(removed['identities'])} identities")
    print(
        f"   Verification after removal: {'STILL IN FLOW' if await in_flow(aztp_id_1) else 'NOT IN FLOW'}"
    )
    readded = await client.add_identity_to_flow(flow_id, aztp_id_1)
    print(f"Re-added service1: flow now has {len(readded['identities'])} identities")

    print("\nFlow-specific revocation of service2")
    answer = await client.revoke_flow_identity(
        aztp_id=aztp_id_2,
        identity_flow_id=flow_id,
        reason="Testing flow-specific revocation in documentation demo",
    )
    print(
        f"   Result: valid={answer['valid']} issuedAt={answer['issuedAt']} reason={answer['reason']!r}"
    )
    print(
        f"   Flow context verification: {'STILL ACTIVE' if await in_flow(aztp_id_2) else 'REVOKED'}"
    )
    globally = await client.verify_identity_by_aztp_id(aztp_id_2)
    print(f"   Global verification: {'STILL VALID GLOBALLY' if globally else 'GLOBALLY REVOKED'}")

    try:
        await client.revoke_flow_identity(aztp_id_2, flow_id, reason="once more")
    except AlreadyRevokedError as exc:
        print(f"   Revoking again: {exc}")
    await client.remove_identity_from_flow(flow_id, aztp_id_2)
    await client.add_identity_to_flow(flow_id, aztp_id_2)
    detail = await client.verify(aztp_id_2, flow_id)
    print(
        f"   after remove + re-add: {'VERIFIED' if detail['valid'] else 'NOT VERIFIED'} ({detail['reason']})"
    )
    await client.reinstate_flow_identity(aztp_id_2, flow_id)
    print(f"   after reinstate: {'VERIFIED' if await in_flow(aztp_id_2) else 'NOT VERIFIED'}")

    members = (await client.flow(flow_id)).identities
    print("Members:", [(m.aztp_id.rsplit("/", 1)[1], m.status) for m in members])


async def update_and_delete(client: Aztp, flows: dict[str, dict]) -> None:
    flow_id = flows["testing-flow"]["_id"]
    updated = await client.update_flow(
        flow_id=flow_id,
        name="updated-ai-pipeline",
        description="Updated description",
        discoverable="private",
        tags=["ai", "updated", "production"],
    )
    print(
        f"\nUpdated flow {flow_id}: {updated['name']} ({updated['discoverable']}) {updated['tags']}"
    )
    print(f"Deleted: {(await client.delete_flow(flow_id))['deleted']}")
    print("Flows now:", [f["name"] for f in await client.list_flows()])


async def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="astha.ai")
    flows = await create_production_flows(client)
    await manage_flow_identities(client)
    await update_and_delete(client, flows)


if __name__ == "__main__":
    asyncio.run(main())
