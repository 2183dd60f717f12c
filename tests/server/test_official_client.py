"""Code nobody here wrote: the official ``aztp-client`` 1.0.42 against our server, unchanged.

Our server runs as a real process on a free loopback port; the official client talks to it
exactly as it talks to api.astha.ai. The scenario is seed 000's flow management plus the
identity lifecycle of seed 001, and every answer is checked against what the seeds show.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

aztp_client = pytest.importorskip("aztp_client")
requests = pytest.importorskip("requests")

from aztp_agents.server.testing import live_server, make_org  # noqa: E402

TD = "astha.ai"
OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def aztp_id(name: str) -> str:
    return f"aztp://{TD}/workload/production/node/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("official-home")
    _, key = make_org(home, "astha", TD)
    with live_server(home) as srv:
        yield srv, key
    assert "Traceback" not in srv.log(), srv.log()


@pytest.fixture
def client(server):
    srv, key = server
    return aztp_client.Aztp(api_key=key, base_url=srv.url)


def run(coro):
    return asyncio.run(coro)


SEED_FLOWS = [
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


def test_create_flows_as_seed_000(client) -> None:
    """Seed 000 "Creating Flows": three flows, each answered with its _id and fields."""
    created = {}
    for config in SEED_FLOWS:
        flow = run(
            client.create_flow(
                name=config["name"],
                description=config["description"],
                discoverable=config["discoverable"],
                tags=config["tags"],
                metadata=config["metadata"],
            )
        )
        assert OBJECT_ID.fullmatch(flow["_id"])
        for field in ("name", "description", "discoverable", "tags", "metadata"):
            assert flow[field] == config[field]
        assert flow["identities"] == []
        created[config["name"]] = flow
    assert len(created) == 3
    # A second flow with a taken name is a real error (409), which the client raises.
    with pytest.raises(requests.HTTPError) as exc:
        run(client.create_flow(name="development-flow"))
    assert exc.value.response.status_code == 409
    assert exc.value.response.json()["success"] is False


def test_flow_management_scenario_of_seed_000(client) -> None:
    """Seed 000 "Managing Flow Identities", step by step, with the answers it shows."""

    async def scenario() -> None:
        agent1 = await client.secure_connect({}, "service1", config={"isGlobalIdentity": False})
        agent2 = await client.secure_connect({}, "service2", config={"isGlobalIdentity": False})
        assert agent1.identity.valid and agent2.identity.valid
        assert agent1.identity.aztp_id == aztp_id("service1")
        assert agent1.identity.workload_id == "service1"

        # get_identity: the seed reads json.loads(...)["data"]["aztpId"]
        identity_data_1 = json.loads(await client.get_identity(agent1))
        aztp_id_1 = identity_data_1["data"]["aztpId"]
        identity_data_2 = json.loads(await client.get_identity(agent2))
        aztp_id_2 = identity_data_2["data"]["aztpId"]
        assert (aztp_id_1, aztp_id_2) == (aztp_id("service1"), aztp_id("service2"))
        doc = identity_data_1["data"]  # seed 001's identity record
        assert OBJECT_ID.fullmatch(doc["_id"]) and OBJECT_ID.fullmatch(doc["userId"])
        assert (
            doc["name"] == "service1"
            and doc["status"] == "active"
            and doc["environment"] == "production"
        )
        assert doc["parentIdentity"] is None and doc["isGlobalIdentity"] is False
        assert doc["identityType"] == "component"
        assert (
            doc["workloadInfo"]["workloadId"] == "service1"
            and doc["workloadInfo"]["trustDomain"] == TD
        )
        assert "workload:id:service1" in doc["selectors"]
        assert identity_data_1["success"] is True
        assert identity_data_1["message"].endswith("Workload identity found successfully")
        assert "selectors" not in identity_data_1  # the official client drops top-level selectors
        # get_identity_by_name answers the same record
        assert (
            json.loads(await client.get_identity_by_name("service2"))["data"]["aztpId"] == aztp_id_2
        )

        # verify by agent and by id (seed 001 "Verification")
        assert await client.verify_identity(agent1) is True
        assert await client.verify_identity_by_aztp_id(aztp_id_2) is True
        assert await client.verify_identity_using_agent_name("service1", trust_domain=TD) is True
        assert await client.verify_identity_using_agent_name("nobody", trust_domain=TD) is False

        flow = await client.create_flow(
            name="identity-management-demo",
            description="Demonstration of identity management in flows",
            discoverable="public",
            tags=["demo", "testing"],
            metadata={"project": "identity-demo", "environment": "development"},
        )
        flow_id = flow.get("_id")
        assert OBJECT_ID.fullmatch(flow_id)

        result1 = await client.add_identity_to_flow(flow_id, aztp_id_1)
        assert len(result1.get("identities", [])) == 1
        result2 = await client.add_identity_to_flow(flow_id, aztp_id_2)
        assert len(result2.get("identities", [])) == 2
        # adding again is idempotent
        assert len((await client.add_identity_to_flow(flow_id, aztp_id_2))["identities"]) == 2

        assert await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id) is True
        assert await client.verify_identity_by_aztp_id(aztp_id_2, identity_flow_id=flow_id) is True
        assert await client.verify_identity(agent1, identity_flow_id=flow_id) is True

        remove_result = await client.remove_identity_from_flow(flow_id, aztp_id_1)
        assert len(remove_result.get("identities", [])) == 1
        assert (
            await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id) is False
        )  # NOT IN FLOW
        assert await client.verify_identity_by_aztp_id(aztp_id_1) is True  # still valid globally

        readd_result = await client.add_identity_to_flow(flow_id, aztp_id_1)
        assert len(readd_result.get("identities", [])) == 2
        assert await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id) is True

        # Flow-specific revocation: {'valid': True, 'issuedAt': 1757475385308, 'reason': '...'}
        revoke_result = await client.revoke_flow_identity(
            aztp_id=aztp_id_2, identity_flow_id=flow_id, reason="Testing flow-specific revocation"
        )
        assert revoke_result["valid"] is True
        assert (
            isinstance(revoke_result["issuedAt"], int)
            and revoke_result["issuedAt"] > 1_700_000_000_000
        )
        assert revoke_result["reason"] == "Testing flow-specific revocation"
        assert (
            await client.verify_identity_by_aztp_id(aztp_id_2, identity_flow_id=flow_id) is False
        )  # REVOKED
        assert await client.verify_identity_by_aztp_id(aztp_id_2) is True  # STILL VALID GLOBALLY
        assert await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id) is True
        with pytest.raises(requests.HTTPError) as again:
            await client.revoke_flow_identity(
                aztp_id=aztp_id_2, identity_flow_id=flow_id, reason="twice"
            )
        assert again.value.response.status_code == 409
        assert "Identity already revoked for this flow" in again.value.response.text
        # Removing and re-adding does not clear a flow revocation.
        await client.remove_identity_from_flow(flow_id, aztp_id_2)
        await client.add_identity_to_flow(flow_id, aztp_id_2)
        assert await client.verify_identity_by_aztp_id(aztp_id_2, identity_flow_id=flow_id) is False

        # Links and connection authorization
        link = await client.link_identities(
            aztp_id_1, aztp_id_2, "linked", metadata={"connection_type": "secure_channel"}
        )
        assert link["sourceIdentity"] == aztp_id_1 and link["targetIdentity"] == aztp_id_2
        assert link["relationshipType"] == "linked"
        assert await client.verify_authorize_identity_connection(aztp_id_1, aztp_id_2) is True
        assert (
            await client.verify_authorize_identity_connection(aztp_id_2, aztp_id_1) is True
        )  # linked: symmetric
        agent3 = await client.secure_connect({}, "service3", config={"isGlobalIdentity": False})
        assert (
            await client.verify_authorize_identity_connection(aztp_id_1, agent3.identity.aztp_id)
            is False
        )
        await client.link_identities(aztp_id_1, agent3.identity.aztp_id, "parent")
        assert (
            await client.verify_authorize_identity_connection(aztp_id_1, agent3.identity.aztp_id)
            is True
        )
        assert (
            await client.verify_authorize_identity_connection(agent3.identity.aztp_id, aztp_id_1)
            is False
        )

        # Revocation and restoration (seed 001 "Revocation and Restoration")
        revoked = json.loads(await client.revoke_identity(aztp_id_1, reason="Security incident"))
        assert revoked["aztpId"] == aztp_id_1 and revoked["status"] == "revoked"
        assert await client.verify_identity_by_aztp_id(aztp_id_1) is False
        assert await client.verify_identity(agent1) is False
        assert await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id) is False
        assert await client.verify_authorize_identity_connection(aztp_id_1, aztp_id_2) is False
        assert json.loads(await client.get_identity(agent1))["data"]["status"] == "revoked"
        with pytest.raises(requests.HTTPError) as twice:
            await client.revoke_identity(aztp_id_1)
        assert twice.value.response.status_code == 409
        # secure_connect of a revoked identity: data.valid false, data.error the message
        again1 = await client.secure_connect({}, "service1", config={"isGlobalIdentity": False})
        assert again1.identity.valid is False and "revoked" in again1.identity.aztp_id

        reissued = json.loads(await client.reissue_identity(aztp_id_1))
        assert reissued["aztpId"] == aztp_id_1 and reissued["valid"] is True
        assert "privateKey" not in reissued
        assert await client.verify_identity_by_aztp_id(aztp_id_1) is True  # restored
        assert await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id) is True
        assert await client.verify_authorize_identity_connection(aztp_id_1, aztp_id_2) is True

        # update_flow / delete_flow
        updated = await client.update_flow(
            flow_id,
            name="updated-ai-pipeline",
            description="Updated description",
            discoverable="private",
            tags=["ai", "updated", "production"],
        )
        assert updated["_id"] == flow_id and updated["name"] == "updated-ai-pipeline"
        assert (
            updated["description"] == "Updated description" and updated["discoverable"] == "private"
        )
        assert updated["tags"] == ["ai", "updated", "production"]
        assert updated["metadata"] == {"project": "identity-demo", "environment": "development"}
        deleted = await client.delete_flow(flow_id)
        assert deleted["_id"] == flow_id
        assert (
            await client.verify_identity_by_aztp_id(aztp_id_1, identity_flow_id=flow_id) is False
        )  # flow gone
        with pytest.raises(requests.HTTPError) as gone:
            await client.delete_flow(flow_id)
        assert gone.value.response.status_code == 404
        assert await client.verify_identity_by_aztp_id(aztp_id_1) is True  # identities stay

    run(scenario())


def test_discovery_and_policies(client, server) -> None:
    srv, key = server

    async def scenario() -> None:
        gateway = await client.secure_connect(
            {}, "organization-api-gateway", config={"isGlobalIdentity": True}
        )
        component = await client.secure_connect(
            {}, "langflow-chat-component", config={"isGlobalIdentity": False}
        )
        assert gateway.identity.valid

        body = json.loads(await client.discover_identity())
        assert body["success"] is True
        found = {d["aztpId"] for d in body["data"]}
        assert gateway.identity.aztp_id in found  # global: discoverable
        assert (
            component.identity.aztp_id not in found
        )  # component in no public flow: not discoverable
        body = json.loads(
            await client.discover_identity(
                trust_domain=TD, requestor_identity=component.identity.aztp_id
            )
        )
        assert gateway.identity.aztp_id in {d["aztpId"] for d in body["data"]}
        g = next(d for d in body["data"] if d["aztpId"] == gateway.identity.aztp_id)
        assert g["isGlobalIdentity"] is True and g["identityType"] == "global"

        assert await client.get_policy(component.identity.aztp_id) == []
        document = {
            "Statement": [
                {"Effect": "Allow", "Action": ["read", "tool:*"]},
                {"Effect": "Deny", "Action": "tool:delete"},
            ]
        }
        with httpx.Client(base_url=srv.url, headers={"api_access_key": key}) as http:
            made = http.post("/v1/policies", json={"name": "reader", "document": document}).json()[
                "data"
            ]
            assert (
                http.post(
                    "/v1/policies/attach",
                    json={"aztpId": component.identity.aztp_id, "code": made["code"]},
                ).status_code
                == 200
            )
        policies = await client.get_policy(component.identity.aztp_id)
        assert policies == [
            {"code": made["code"], "policyName": "reader", "policyStatement": document}
        ]
        statement = client.get_policy_value(policies, "code", made["code"])
        assert client.is_action_allowed(statement, "read") is True
        perms = await client.check_identity_policy_permissions(
            component.identity.aztp_id,
            {"policy_code": made["code"], "actions": ["read", "tool:delete"]},
        )
        assert perms["actions"] == {"read": True, "tool:delete": False}
        oiap = await client.oiap_evaluate(component.identity.aztp_id, "documents", "user-1")
        assert oiap["decision"] in ("allow", "deny")

        health = await client.flow_health()
        assert health["success"] is True and health["data"]["status"] == "healthy"

    run(scenario())


def test_wrong_key_is_refused(server) -> None:
    srv, _ = server
    bad = aztp_client.Aztp(api_key="aztp_not-a-key", base_url=srv.url)
    with pytest.raises(requests.HTTPError) as exc:
        run(bad.verify_identity_by_aztp_id(aztp_id("service1")))
    assert exc.value.response.status_code == 401


def test_prefixed_base_url(tmp_path: Path) -> None:
    """The official default base URL ends in /astha/v1; with --prefix the same client works."""
    _, key = make_org(tmp_path, "prefixed", "prefixed.example")
    with live_server(tmp_path, args=["--prefix", "/astha/v1"]) as srv:
        c = aztp_client.Aztp(api_key=key, base_url=srv.url + "/astha/v1")
        agent = run(c.secure_connect({}, "svc", config={"isGlobalIdentity": False}))
        assert agent.identity.aztp_id == "aztp://prefixed.example/workload/production/node/svc"
        assert run(c.verify_identity(agent)) is True
