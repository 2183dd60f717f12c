"""The identity lifecycle of the AZTP identity documentation, end to end.

Create global and component identities, verify them (by agent, by AZTP ID, in a flow), read
their details, link them, revoke and reissue one, discover identities, and authorize a
cross-domain connection with a policy — the sections of the "Identity Management" page, each
with what it prints.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/identity_lifecycle.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile

from aztp_agents import Aztp
from aztp_agents.ids import sanitize_name


def langflow_sanitize(component_name: str) -> str:
    """The Langflow integration's sanitizer, as the documentation shows it (for comparison)."""
    component_name = component_name.split("-")[0]
    sanitized = re.sub(r"[^a-zA-Z0-9\-/]", "-", component_name)
    sanitized = re.sub(r"-+", "-", sanitized).strip("-/")
    if len(sanitized) < 2:
        sanitized = f"component-{sanitized}" if sanitized else "component"
    return sanitized[:64]


async def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="aztp.network", environment="prod")

    print("== 1. Creation (secure_connect)")
    gateway = await client.secure_connect(
        {}, "organization-api-gateway", config={"isGlobalIdentity": True}
    )
    component = await client.secure_connect(
        {}, "langflow-chat-component", config={"isGlobalIdentity": False}
    )
    service = await client.secure_connect(
        crew_agent={},
        name="ai-service-v1",
        config={"isGlobalIdentity": False, "trustDomain": "aztp.network"},
    )
    for agent in (gateway, component, service):
        print(f"Identity created: {agent.identity.aztp_id}")
        print(f"   Status: {agent.identity.status}  Valid: {agent.identity.valid}")

    print("\n== 2. Verification (verify_identity)")
    agent1 = await client.secure_connect({}, "service1", config={"isGlobalIdentity": False})
    agent2 = await client.secure_connect({}, "service2", config={"isGlobalIdentity": False})
    aztp_id_1 = json.loads(await client.get_identity(agent1))["data"]["aztpId"]
    aztp_id_2 = json.loads(await client.get_identity(agent2))["data"]["aztpId"]
    print(f"   Service 1: {aztp_id_1}")
    print(f"   Service 2: {aztp_id_2}")
    print(f"Agent verification: {'PASSED' if await client.verify_identity(agent1) else 'FAILED'}")
    print(
        f"ID verification: {'PASSED' if await client.verify_identity_by_aztp_id(aztp_id_2) else 'FAILED'}"
    )
    flow = await client.create_flow(
        "verification-test-flow", description="Flow for verification testing"
    )
    await client.add_identity_to_flow(flow["_id"], aztp_id_1)
    in_flow = await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow["_id"])
    print(f"Flow context verification: {'PASSED' if in_flow else 'FAILED'}")

    print("\n== 3. Information retrieval (get_identity)")
    data = json.loads(await client.get_identity(service))["data"]
    print("Identity Details:")
    print(f"   Internal ID: {data['_id']}")
    print(f"   AZTP ID: {data['aztpId']}")
    print(f"   Status: {data['status']}")
    print(f"   Created: {data['createdAt']}")
    print(f"   Identity Type: {data['identityType']}")
    by_name = json.loads(await client.get_identity_by_name("ai-service-v1"))["data"]
    print(f"   by name 'ai-service-v1': {by_name['aztpId']}")

    print("\n== 4. Linking (link_identities)")
    processor = await client.secure_connect({}, "ai-processor")
    await client.link_identities(
        aztp_id_1, aztp_id_2, "data_pipeline", metadata={"connection_type": "secure_channel"}
    )
    await client.link_identities(
        source_identity=gateway.identity.aztp_id,
        target_identity=processor.identity.aztp_id,
        relationship_type="service_chain",
        metadata={"connection_type": "api_call", "security_level": "high"},
    )
    for src, dst in (
        (aztp_id_1, aztp_id_2),
        (gateway.identity.aztp_id, processor.identity.aztp_id),
        (processor.identity.aztp_id, gateway.identity.aztp_id),
    ):
        ok = await client.verify_authorize_identity_connection(src, dst)
        print(
            f"   {src.rsplit('/', 1)[1]} -> {dst.rsplit('/', 1)[1]}: {'authorized' if ok else 'not authorized'}"
        )

    print("\n== 5. Revocation and restoration")
    compromised = (await client.secure_connect({}, "compromised-service")).identity.aztp_id
    await client.revoke_identity(
        aztp_id=compromised, reason="Security incident - potential compromise detected"
    )
    print(f"   after revoke: valid={await client.verify_identity_by_aztp_id(compromised)}")
    answer = json.loads(await client.reissue_identity(aztp_id=compromised))
    print(
        f"   after reissue: valid={await client.verify_identity_by_aztp_id(compromised)} "
        f"(new credential: {'certificate' in answer})"
    )

    print("\n== 6. Identity discovery")
    discovered = json.loads(
        await client.discover_identity(
            trust_domain="aztp.network", requestor_identity=gateway.identity.aztp_id
        )
    )["data"]
    print(
        f"Discovered {len(discovered)} identities in trust domain: {[d['name'] for d in discovered]}"
    )
    print("   (global identities, plus the members of public flows)")

    print("\n== 7. Cross-domain verification with a policy")
    # One organization may own several trust domains (each with its own CA). Across
    # organizations, a connection is authorized only where both federate.
    local = (await client.secure_connect({}, "service1")).identity.aztp_id
    remote = (
        await client.secure_connect({}, "service2-gpt", config={"trustDomain": "gptapps.ai"})
    ).identity.aztp_id
    other = (
        await client.secure_connect({}, "service3-gpt", config={"trustDomain": "gptapps.ai"})
    ).identity.aztp_id
    await client.create_policy(
        "cross-domain-communication",
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "connect",
                    "Resource": "aztp://gptapps.ai/workload/prod/node/service2-*",
                },
            ]
        },
    )
    await client.link_identities(local, remote, "service_chain")
    await client.link_identities(local, other, "service_chain")
    for target in (remote, other):
        valid = await client.verify_authorize_identity_connection(
            from_aztp_id=local, to_aztp_id=target, policyCode="cross-domain-communication"
        )
        verdict = (
            "Cross-domain communication authorized"
            if valid
            else "Cross-domain communication denied"
        )
        print(f"   {local} -> {target}\n   {verdict}")

    print("\n== 8. Name sanitization (Langflow's sanitizer vs aztp_agents.ids.sanitize_name)")
    for raw in ("langflow-chat-component", "langflow-router", "Chat Input (v2)", "x"):
        print(
            f"   {raw!r:26} langflow: {langflow_sanitize(raw):18} aztp-agents: {sanitize_name(raw)}"
        )

    print("\n== 9. Batch verification")
    ids = [aztp_id_1, aztp_id_2, compromised, "aztp://aztp.network/workload/prod/node/never-issued"]
    results = await asyncio.gather(
        *(client.verify_identity_by_aztp_id(i) for i in ids), return_exceptions=True
    )
    for aztp_id, ok in zip(ids, results, strict=True):
        print(f"   {aztp_id}: {ok}")


if __name__ == "__main__":
    asyncio.run(main())
