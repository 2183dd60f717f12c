"""The seeds' examples, run against the embedded authority.

Seed code is kept as close to verbatim as possible. The only changes: the import line
(``from aztp_agents import Aztp``) and ``Aztp(api_key=...)``, which becomes the embedded
``client`` fixture (passed in as a parameter). Where a seed needs anything else changed, a
``# changed:`` comment says what and why. Each test asserts what the seed prints.

Seeds: 000 identity flows, 001 identity overview, 002 issuing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aztp_agents import Aztp
from aztp_agents.errors import NotFoundError
from aztp_agents.ids import sanitize_name, validate_name

logger = logging.getLogger(__name__)

OBJECT_ID = re.compile(r"[0-9a-f]{24}")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def aztp(name: str, td: str = "astha.ai", env: str = "production") -> str:
    return f"aztp://{td}/workload/{env}/node/{name}"


def links_of(client: Aztp, aztp_id: str | None = None) -> list[dict[str, Any]]:
    authority = client.backend.authority  # type: ignore[attr-defined]
    return authority.list_links(client.backend.principal, aztp_id)  # type: ignore[attr-defined]


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


# --- Langflow integration (seed 000) ------------------------------------------------------


class LangflowIdentityService:
    """From langflow.services.identity.service.py (seed 000: flows; seed 001: components).

    changed: ``_get_client`` returns the embedded client; ``_sanitize_agent_name`` is
    :func:`aztp_agents.ids.sanitize_name` (the library's sanitizer based on the seed's).
    """

    def __init__(self, client: Aztp) -> None:
        self._client = client
        self._lock = asyncio.Lock()

    async def _get_client(self, organization_api_key: str | None = None) -> Aztp:
        return self._client

    def _sanitize_agent_name(self, component_name: str) -> str:
        return sanitize_name(component_name)

    async def create_flow_identity(
        self,
        flow_name: str,
        description: str | None = None,
        flow_id: str | None = None,
        folder_id: str | None = None,
        organization_api_key: str | None = None,
    ) -> dict[str, Any] | None:
        """Create AZTP flow identity for a Langflow workflow."""

        async with self._lock:
            try:
                client = await self._get_client(organization_api_key=organization_api_key)
                if not client:
                    logger.error("❌ Organization API key required for flow creation")
                    return None

                # Prepare enhanced metadata linking Langflow and AZTP
                metadata = {
                    "project": flow_name,
                    "environment": "production",
                    "astha-flow": {
                        "id": flow_id or "unknown-flow-id",
                        "folderId": folder_id or "unknown-folder-id",
                    },
                }

                # Create AZTP flow with enhanced metadata
                aztp_flow_data = await client.create_flow(
                    flow_name,
                    description=description or f"Langflow workflow: {flow_name}",
                    discoverable="public",
                    tags=[description or flow_name],
                    metadata=metadata,
                )

                # Save flow ID for component registration
                flow_file = f"aztp_flow_id_{organization_api_key[:8]}.json"
                with open(flow_file, "w") as f:
                    json.dump(aztp_flow_data["_id"], f)

                logger.info("✅ AZTP flow created:")
                logger.info(f"  AZTP Flow ID: {aztp_flow_data.get('_id')}")
                logger.info(f"  Langflow Flow ID: {flow_id}")
                logger.info(f"  Langflow Folder ID: {folder_id}")

                return aztp_flow_data

            except Exception as e:
                logger.error(f"Failed to create AZTP flow for '{flow_name}': {e}")
                return None

    async def add_component_to_flow(
        self, aztp_flow_id: str, component_aztp_id: str, organization_api_key: str | None = None
    ) -> bool:
        """Add component identity to AZTP flow."""

        async with self._lock:
            try:
                client = await self._get_client(organization_api_key=organization_api_key)
                if not client:
                    logger.error("❌ Organization API key required for adding component to flow")
                    return False

                # Add component identity to flow
                await client.add_identity_to_flow(aztp_flow_id, component_aztp_id)
                logger.info(f"✅ Added component {component_aztp_id} to AZTP flow {aztp_flow_id}")

                return True

            except Exception as e:
                logger.error(
                    f"Failed to add component {component_aztp_id} to AZTP flow {aztp_flow_id}: {e}"
                )
                return False

    async def secure_connect_component(
        self, component_id: str, component_name: str, organization_api_key: str | None = None
    ) -> Any | None:
        """Create secure connection for a Langflow component."""

        # Get organization-specific AZTP client
        client = await self._get_client(organization_api_key=organization_api_key)
        if not client:
            logger.error("❌ Organization API key required for component identity")
            return None

        # Sanitize component name for AZTP requirements
        sanitized_name = self._sanitize_agent_name(component_name)

        # Create component-specific identity
        agent = await client.secure_connect({}, sanitized_name, config={"isGlobalIdentity": False})

        # Store identity information
        if agent.identity.valid:
            identity_data = await client.get_identity(agent)
            parsed_data = json.loads(identity_data)

            agent.aztp_identity_id = parsed_data["data"]["aztpId"]
            agent.aztp_identity_status = parsed_data["data"]["status"]

            logger.info(f"✅ Component secured: {component_id} -> {agent.aztp_identity_id}")

        return agent


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


# --- environment flows --------------------------------------------------------------------


async def create_environment_flows(client):
    """Create separate flows for different environments."""

    environments = ["development", "staging", "production"]
    flows = {}

    for env in environments:
        # Create environment-specific flow
        flow = await client.create_flow(
            f"ai-platform-{env}",
            description=f"AI platform {env} environment",
            discoverable="private" if env == "production" else "public",
            tags=[env, "ai-platform"],
            metadata={
                "project": "ai-platform",
                "environment": env,
                "security_level": "high" if env == "production" else "medium",
            },
        )

        flows[env] = flow
        print(f"✅ Created {env} flow: {flow['_id']}")

        # Create environment-specific identities
        services = ["api-gateway", "ai-processor", "data-store"]

        for service in services:
            # Create service identity for this environment
            agent = await client.secure_connect(
                {}, f"{env}-{service}", config={"isGlobalIdentity": False}
            )

            # Add to environment flow
            await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)

            print(f"  📋 Added {service} to {env} flow")

    return flows


def test_seed000_environment_flows(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    flows = run(create_environment_flows(client))
    out = capsys.readouterr().out
    assert list(flows) == ["development", "staging", "production"]
    assert out.count("📋 Added") == 9
    services = ["api-gateway", "ai-processor", "data-store"]
    for env, flow in flows.items():
        assert f"✅ Created {env} flow: {flow['_id']}" in out
        assert flow["discoverable"] == ("private" if env == "production" else "public")
        assert flow["metadata"]["security_level"] == ("high" if env == "production" else "medium")
        stored = run(client.get_flow(flow["_id"]))
        assert sorted(m["aztpId"] for m in stored["identities"]) == sorted(
            aztp(f"{env}-{s}") for s in services
        )
        for other_env, other in flows.items():
            for s in services:
                in_flow = run(
                    client.verify_identity_by_aztp_id(
                        aztp(f"{env}-{s}"), identity_flow_id=other["_id"]
                    )
                )
                assert in_flow is (other_env == env), (env, s, other_env)


# --- multi-tenant flow management -----------------------------------------------------------


class MultiTenantFlowManager:
    """Manage flows across multiple tenants/organizations."""

    def __init__(self, tenant_configs: dict[str, str], home: Path):  # changed: + home
        """Initialize with tenant-specific API keys."""
        self.tenants = {}

        for tenant_id, api_key in tenant_configs.items():
            self.tenants[tenant_id] = {
                "client": Aztp(api_key=api_key, home=home),  # changed: embedded store folder
                "flows": {},
                "identities": {},
            }

    async def create_tenant_flow(self, tenant_id: str, flow_name: str, flow_config: dict) -> dict:
        """Create flow for specific tenant."""

        if tenant_id not in self.tenants:
            raise ValueError(f"Unknown tenant: {tenant_id}")

        client = self.tenants[tenant_id]["client"]

        # Create tenant-specific flow
        flow = await client.create_flow(
            f"{tenant_id}-{flow_name}",
            description=flow_config.get("description", f"Flow for {tenant_id}"),
            discoverable=flow_config.get("discoverable", "private"),
            tags=flow_config.get("tags", [tenant_id]),
            metadata={
                **flow_config.get("metadata", {}),
                "tenant_id": tenant_id,
                "isolation_level": "tenant",
            },
        )

        # Store in tenant registry
        self.tenants[tenant_id]["flows"][flow_name] = flow

        logger.info(f"✅ Created flow for tenant {tenant_id}: {flow['_id']}")
        return flow

    async def create_tenant_identity(
        self, tenant_id: str, identity_name: str, flow_name: str | None = None
    ) -> dict:
        """Create identity for tenant and optionally add to flow."""

        if tenant_id not in self.tenants:
            raise ValueError(f"Unknown tenant: {tenant_id}")

        client = self.tenants[tenant_id]["client"]

        # Create tenant-specific identity
        agent = await client.secure_connect(
            {}, f"{tenant_id}-{identity_name}", config={"isGlobalIdentity": False}
        )

        # Store in tenant registry
        self.tenants[tenant_id]["identities"][identity_name] = agent

        # Add to flow if specified
        if flow_name and flow_name in self.tenants[tenant_id]["flows"]:
            flow_id = self.tenants[tenant_id]["flows"][flow_name]["_id"]
            await client.add_identity_to_flow(flow_id, agent.identity.aztp_id)
            logger.info(f"📋 Added {identity_name} to flow {flow_name} for tenant {tenant_id}")

        logger.info(f"✅ Created identity for tenant {tenant_id}: {agent.identity.aztp_id}")
        return agent

    async def get_tenant_security_summary(self, tenant_id: str) -> dict:
        """Get security summary for tenant."""

        if tenant_id not in self.tenants:
            raise ValueError(f"Unknown tenant: {tenant_id}")

        tenant_data = self.tenants[tenant_id]
        client = tenant_data["client"]

        summary = {
            "tenant_id": tenant_id,
            "flows": len(tenant_data["flows"]),
            "identities": len(tenant_data["identities"]),
            "identity_status": {},
            "policy_compliance": {},
        }

        # Check identity status for each tenant identity
        for identity_name, agent in tenant_data["identities"].items():
            is_valid = await client.verify_identity(agent)
            summary["identity_status"][identity_name] = {
                "aztp_id": agent.identity.aztp_id,
                "valid": is_valid,
                "status": getattr(agent, "aztp_identity_status", "unknown"),
            }

        # Calculate compliance score
        valid_identities = sum(
            1 for status in summary["identity_status"].values() if status["valid"]
        )
        total_identities = len(summary["identity_status"])
        summary["compliance_score"] = (
            (valid_identities / total_identities * 100) if total_identities > 0 else 100
        )

        return summary


async def multi_tenant_example(tenant_configs, home):  # changed: keys and home passed in
    manager = MultiTenantFlowManager(tenant_configs, home)

    # Create flows for each tenant
    for tenant_id in tenant_configs:
        # Create tenant flow
        await manager.create_tenant_flow(
            tenant_id,
            "ai-workflow",
            {
                "description": f"AI workflow for {tenant_id}",
                "discoverable": "private",
                "tags": ["ai", "production"],
                "metadata": {"compliance": "enterprise"},
            },
        )

        # Create identities for the flow
        services = ["input-processor", "ai-engine", "output-handler"]
        for service in services:
            await manager.create_tenant_identity(tenant_id, service, "ai-workflow")

    # Generate security summaries
    summaries = {}  # changed: collected for the test
    for tenant_id in tenant_configs:
        summary = await manager.get_tenant_security_summary(tenant_id)
        summaries[tenant_id] = summary
        print(f"🔐 {tenant_id} Security Summary:")
        print(f"   Flows: {summary['flows']}")
        print(f"   Identities: {summary['identities']}")
        print(f"   Compliance Score: {summary['compliance_score']:.1f}%")
    return manager, summaries


def test_seed000_multi_tenant_flow_manager(
    client: Aztp, aztp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three organizations in one store, each with its own API key and trust domain."""
    authority = client.backend.authority  # type: ignore[attr-defined]
    tenant_configs = {}
    for tenant in ("tenant-a", "tenant-b", "tenant-c"):
        _, key = authority.create_org(tenant, f"{tenant}.example")
        tenant_configs[tenant] = key

    manager, summaries = run(multi_tenant_example(tenant_configs, aztp_home))
    out = capsys.readouterr().out
    for tenant, summary in summaries.items():
        assert summary["flows"] == 1
        assert summary["identities"] == 3
        assert summary["compliance_score"] == 100.0
        assert all(s["valid"] for s in summary["identity_status"].values())
        assert all(s["status"] == "unknown" for s in summary["identity_status"].values())
        assert f"🔐 {tenant} Security Summary:" in out
        for s in summary["identity_status"].values():
            assert s["aztp_id"].startswith(
                f"aztp://{tenant}.example/workload/production/node/{tenant}-"
            )
    assert out.count("   Compliance Score: 100.0%") == 3

    # Isolation: no tenant sees, verifies or touches another tenant's records.
    a, b = manager.tenants["tenant-a"], manager.tenants["tenant-b"]
    a_flow = a["flows"]["ai-workflow"]
    b_flow = b["flows"]["ai-workflow"]
    a_agent = a["identities"]["ai-engine"]
    assert [f["name"] for f in run(b["client"].list_flows())] == ["tenant-b-ai-workflow"]
    assert run(client.list_flows()) == []  # the local organization sees none of them
    with pytest.raises(NotFoundError):
        run(b["client"].get_flow(a_flow["_id"]))
    with pytest.raises(NotFoundError):
        run(b["client"].add_identity_to_flow(b_flow["_id"], a_agent.identity.aztp_id))
    with pytest.raises(NotFoundError):
        run(b["client"].get_identity_by_aztp_id(a_agent.identity.aztp_id))
    with pytest.raises(NotFoundError):
        run(b["client"].revoke_identity(a_agent.identity.aztp_id, reason="cross-tenant attempt"))
    assert run(b["client"].verify_identity_by_aztp_id(a_agent.identity.aztp_id)) is False
    assert run(a["client"].verify_identity_by_aztp_id(a_agent.identity.aztp_id)) is True
    discovered_by_b = json.loads(run(b["client"].discover_identity()))["data"]
    # Private flows expose none of their component identities (DESIGN: only public flows do).
    assert all(d["aztpId"].startswith("aztp://tenant-b.example/") for d in discovered_by_b)
    assert run(client.list_identities()) == []
    # Same flow and identity names in another tenant are fine (names are per organization).
    assert run(b["client"].create_flow("tenant-a-ai-workflow"))["name"] == "tenant-a-ai-workflow"


def test_seed000_multi_tenant_on_separate_homes(make_client: Any, tmp_path: Path) -> None:
    """The seed's tenants as separate embedded stores: nothing is shared at all."""
    clients = {t: make_client(home=tmp_path / t) for t in ("tenant-a", "tenant-b")}
    agents = {}
    for tenant, c in clients.items():
        flow = run(c.create_flow(f"{tenant}-ai-workflow", discoverable="private"))
        agents[tenant] = run(c.secure_connect({}, f"{tenant}-ai-engine"))
        run(c.add_identity_to_flow(flow["_id"], agents[tenant].identity.aztp_id))
    a_id = agents["tenant-a"].identity.aztp_id
    assert run(clients["tenant-a"].verify_identity_by_aztp_id(a_id)) is True
    assert run(clients["tenant-b"].verify_identity_by_aztp_id(a_id)) is False
    assert [f["name"] for f in run(clients["tenant-b"].list_flows())] == ["tenant-b-ai-workflow"]


# --- flow context security ------------------------------------------------------------------


async def flow_context_security_example(client):
    """Demonstrate flow-based security context."""

    # Create flows for different security contexts
    security_contexts = [
        {
            "name": "high-security-flow",
            "security_level": "critical",
            "allowed_actions": ["read", "verify"],
            "environment": "production",
        },
        {
            "name": "development-flow",
            "security_level": "standard",
            "allowed_actions": ["read", "write", "api_call", "debug"],
            "environment": "development",
        },
    ]

    flows = {}

    for context in security_contexts:
        # Create flow with security context
        flow = await client.create_flow(
            context["name"],
            description=f"Flow with {context['security_level']} security",
            discoverable="private",
            metadata={
                "security_level": context["security_level"],
                "allowed_actions": context["allowed_actions"],
                "environment": context["environment"],
            },
        )

        flows[context["name"]] = flow

        # Create identity for this security context
        agent = await client.secure_connect(
            {}, f"{context['environment']}-secure-agent", config={"isGlobalIdentity": False}
        )

        # Add to flow
        await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)

        # Verify identity within flow context
        is_valid_in_flow = await client.verify_identity_by_aztp_id(
            agent.identity.aztp_id, identity_flow_id=flow["_id"]
        )

        print(f"✅ {context['name']} setup complete:")
        print(f"   Flow ID: {flow['_id']}")
        print(f"   Agent ID: {agent.identity.aztp_id}")
        print(f"   Valid in Flow: {is_valid_in_flow}")
        print(f"   Security Level: {context['security_level']}")

    return flows


def test_seed000_flow_context_security(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    flows = run(flow_context_security_example(client))
    out = capsys.readouterr().out
    assert list(flows) == ["high-security-flow", "development-flow"]
    assert out.count("   Valid in Flow: True") == 2
    assert f"   Agent ID: {aztp('production-secure-agent')}" in out
    assert f"   Agent ID: {aztp('development-secure-agent')}" in out
    high = flows["high-security-flow"]
    assert high["discoverable"] == "private"
    assert high["metadata"]["allowed_actions"] == ["read", "verify"]
    # Each agent is valid in its own context only.
    assert (
        run(
            client.verify_identity_by_aztp_id(
                aztp("development-secure-agent"), identity_flow_id=high["_id"]
            )
        )
        is False
    )


# --- CI/CD pipeline flows -------------------------------------------------------------------


async def cicd_pipeline_flows(client):
    """Create flows for CI/CD pipeline stages."""

    # Define pipeline stages
    pipeline_stages = [
        {
            "name": "build-stage",
            "description": "Build and compilation stage",
            "services": ["code-analyzer", "builder", "test-runner"],
            "security_level": "standard",
        },
        {
            "name": "security-stage",
            "description": "Security scanning and validation",
            "services": ["vulnerability-scanner", "compliance-checker", "security-validator"],
            "security_level": "high",
        },
        {
            "name": "deployment-stage",
            "description": "Production deployment stage",
            "services": ["deployment-manager", "health-checker", "monitor"],
            "security_level": "critical",
        },
    ]

    stage_flows = {}

    for stage in pipeline_stages:
        # Create stage flow
        flow = await client.create_flow(
            f"cicd-{stage['name']}",
            description=stage["description"],
            discoverable="private",
            tags=["cicd", "pipeline", stage["name"]],
            metadata={
                "project": "cicd-pipeline",
                "stage": stage["name"],
                "security_level": stage["security_level"],
                "services": stage["services"],
            },
        )

        stage_flows[stage["name"]] = flow

        # Create service identities for stage
        stage_identities = {}

        for service in stage["services"]:
            agent = await client.secure_connect(
                {}, f"cicd-{stage['name']}-{service}", config={"isGlobalIdentity": False}
            )

            stage_identities[service] = agent

            # Add to stage flow
            await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)

            print(f"✅ Created {stage['name']} service: {service}")

        # Link services within stage for secure communication
        services = stage["services"]
        for i in range(len(services) - 1):
            await client.link_identities(
                stage_identities[services[i]].identity.aztp_id,
                stage_identities[services[i + 1]].identity.aztp_id,
                "pipeline_stage",
                metadata={"stage": stage["name"], "sequence": i + 1},
            )

    # Link stages together
    stage_names = list(stage_flows.keys())
    for i in range(len(stage_names) - 1):
        # Get representative identity from each stage
        current_stage = stage_names[i]
        next_stage = stage_names[i + 1]

        # Link final service of current stage to first service of next stage
        # This would require getting the identities, simplified here
        print(f"🔗 Linked {current_stage} -> {next_stage}")

    return stage_flows


def test_seed000_cicd_pipeline_flows(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    flows = run(cicd_pipeline_flows(client))
    out = capsys.readouterr().out
    assert list(flows) == ["build-stage", "security-stage", "deployment-stage"]
    assert out.count("✅ Created") == 9
    assert "🔗 Linked build-stage -> security-stage" in out
    for flow in flows.values():
        assert len(run(client.get_flow(flow["_id"]))["identities"]) == 3
    links = links_of(client)
    assert len(links) == 6
    assert {link["relationshipType"] for link in links} == {"pipeline_stage"}
    first = next(x for x in links if x["sourceIdentity"] == aztp("cicd-build-stage-code-analyzer"))
    assert first["targetIdentity"] == aztp("cicd-build-stage-builder")
    assert first["metadata"] == {"stage": "build-stage", "sequence": 1}
    assert OBJECT_ID.fullmatch(first["_id"])

    def may(src: str, dst: str) -> bool:
        return run(client.verify_authorize_identity_connection(aztp(src), aztp(dst)))

    assert may("cicd-build-stage-code-analyzer", "cicd-build-stage-builder") is True
    assert may("cicd-build-stage-builder", "cicd-build-stage-test-runner") is True
    assert may("cicd-build-stage-builder", "cicd-build-stage-code-analyzer") is False  # directed
    assert (
        may("cicd-build-stage-code-analyzer", "cicd-build-stage-test-runner") is False
    )  # not transitive
    assert (
        may("cicd-build-stage-test-runner", "cicd-security-stage-vulnerability-scanner") is False
    )  # no stage link


# --- microservices tiers --------------------------------------------------------------------


async def microservices_flow_architecture(client):
    """Create flow architecture for microservices."""

    # Define service architecture
    architecture = {
        "frontend-services": {
            "services": ["web-ui", "mobile-api", "admin-dashboard"],
            "security_level": "medium",
            "external_facing": True,
        },
        "business-services": {
            "services": ["user-service", "order-service", "payment-service"],
            "security_level": "high",
            "external_facing": False,
        },
        "data-services": {
            "services": ["user-db", "order-db", "analytics-db"],
            "security_level": "critical",
            "external_facing": False,
        },
    }

    service_flows = {}
    all_identities = {}

    # Create flows for each service tier
    for tier_name, tier_config in architecture.items():
        # Create tier flow
        flow = await client.create_flow(
            f"microservices-{tier_name}",
            description=f"Microservices {tier_name} tier",
            discoverable="private",
            tags=["microservices", tier_name, tier_config["security_level"]],
            metadata={
                "project": "microservices-platform",
                "tier": tier_name,
                "security_level": tier_config["security_level"],
                "external_facing": tier_config["external_facing"],
            },
        )

        service_flows[tier_name] = flow
        tier_identities = {}

        # Create service identities
        for service in tier_config["services"]:
            agent = await client.secure_connect(
                {}, f"microservice-{service}", config={"isGlobalIdentity": False}
            )

            tier_identities[service] = agent
            all_identities[service] = agent

            # Add to tier flow
            await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)

            print(f"✅ Created {tier_name} service: {service}")

        # Link services within tier
        services = tier_config["services"]
        for i in range(len(services)):
            for j in range(i + 1, len(services)):
                await client.link_identities(
                    tier_identities[services[i]].identity.aztp_id,
                    tier_identities[services[j]].identity.aztp_id,
                    "tier_communication",
                    metadata={"tier": tier_name, "security_level": tier_config["security_level"]},
                )

    # Create cross-tier communication links
    cross_tier_links = [
        ("web-ui", "user-service"),
        ("mobile-api", "order-service"),
        ("user-service", "user-db"),
        ("order-service", "order-db"),
        ("payment-service", "analytics-db"),
    ]

    for source_service, target_service in cross_tier_links:
        if source_service in all_identities and target_service in all_identities:
            await client.link_identities(
                all_identities[source_service].identity.aztp_id,
                all_identities[target_service].identity.aztp_id,
                "cross_tier_communication",
                metadata={"communication_type": "api_call"},
            )
            print(f"🔗 Cross-tier link: {source_service} -> {target_service}")

    return service_flows, all_identities


def test_seed000_microservices_tiers(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    flows, identities = run(microservices_flow_architecture(client))
    out = capsys.readouterr().out
    assert list(flows) == ["frontend-services", "business-services", "data-services"]
    assert len(identities) == 9
    assert out.count("🔗 Cross-tier link:") == 5
    assert "🔗 Cross-tier link: payment-service -> analytics-db" in out
    links = links_of(client)
    by_type: dict[str, int] = {}
    for link in links:
        by_type[link["relationshipType"]] = by_type.get(link["relationshipType"], 0) + 1
    assert by_type == {"tier_communication": 9, "cross_tier_communication": 5}

    def may(src: str, dst: str) -> bool:
        return run(
            client.verify_authorize_identity_connection(
                identities[src].identity.aztp_id, identities[dst].identity.aztp_id
            )
        )

    assert may("web-ui", "mobile-api") is True  # tier_communication
    assert may("web-ui", "user-service") is True  # cross-tier
    assert may("user-service", "web-ui") is False  # cross-tier links are directed
    assert may("web-ui", "user-db") is False  # frontend never talks to data directly
    assert may("payment-service", "analytics-db") is True
    for tier, flow in flows.items():
        assert flow["metadata"]["tier"] == tier
        assert len(run(client.get_flow(flow["_id"]))["identities"]) == 3


# --- flow health monitor --------------------------------------------------------------------


class FlowHealthMonitor:
    """Monitor health and security status of identity flows."""

    # changed: the seed hard-codes this list inside monitor_flow_health ("For now, we'll
    # demonstrate with known identities"); as a class attribute the same code also runs over
    # a flow's real members. The default is the seed's list.
    test_identities: ClassVar[list[str]] = [
        "aztp://domain/workload/prod/service1",
        "aztp://domain/workload/prod/service2",
        "aztp://domain/workload/prod/service3",
    ]

    def __init__(self, client: Aztp):  # changed: the client instead of an API key
        self.client = client
        self.monitoring_data = {}

    async def monitor_flow_health(self, flow_id: str) -> dict:
        """Monitor health of a specific flow."""

        health_report = {
            "flow_id": flow_id,
            "timestamp": datetime.utcnow().isoformat(),
            "status": "unknown",
            "identities": {},
            "security_score": 0,
            "issues": [],
        }

        try:
            # Example: Monitor known identities in flow
            test_identities = self.test_identities  # changed: see the class attribute

            valid_count = 0

            for aztp_id in test_identities:
                try:
                    # Verify identity in flow context
                    is_valid = await self.client.verify_identity_by_aztp_id(
                        aztp_id, identity_flow_id=flow_id
                    )

                    # Get identity details
                    identity_data = await self.client.get_identity_by_aztp_id(aztp_id)
                    parsed_data = json.loads(identity_data)

                    identity_health = {
                        "aztp_id": aztp_id,
                        "valid": is_valid,
                        "status": parsed_data["data"]["status"],
                        "last_verified": datetime.utcnow().isoformat(),
                    }

                    if is_valid and parsed_data["data"]["status"] == "active":
                        valid_count += 1
                    else:
                        health_report["issues"].append(f"Identity issue: {aztp_id}")

                    health_report["identities"][aztp_id] = identity_health

                except Exception as e:
                    health_report["issues"].append(f"Verification failed for {aztp_id}: {e!s}")
                    health_report["identities"][aztp_id] = {
                        "aztp_id": aztp_id,
                        "valid": False,
                        "error": str(e),
                    }

            # Calculate health metrics
            total_identities = len(test_identities)
            health_report["security_score"] = (
                (valid_count / total_identities * 100) if total_identities > 0 else 0
            )

            if health_report["security_score"] >= 90:
                health_report["status"] = "healthy"
            elif health_report["security_score"] >= 70:
                health_report["status"] = "warning"
            else:
                health_report["status"] = "critical"

            logger.info(
                f"🏥 Flow health check: {flow_id} - {health_report['status']} ({health_report['security_score']:.1f}%)"
            )

        except Exception as e:
            health_report["status"] = "error"
            health_report["issues"].append(f"Health check failed: {e!s}")
            logger.error(f"❌ Flow health check failed for {flow_id}: {e}")

        return health_report

    async def monitor_all_flows(self, flow_ids: list[str]) -> dict:
        """Monitor health of multiple flows."""

        monitoring_summary = {
            "monitoring_timestamp": datetime.utcnow().isoformat(),
            "total_flows": len(flow_ids),
            "flow_reports": {},
            "overall_status": "unknown",
            "summary_metrics": {},
        }

        # Monitor all flows in parallel
        tasks = [self.monitor_flow_health(flow_id) for flow_id in flow_ids]
        flow_reports = await asyncio.gather(*tasks, return_exceptions=True)

        # Process results
        healthy_flows = 0
        warning_flows = 0
        critical_flows = 0

        for flow_id, report in zip(flow_ids, flow_reports, strict=True):
            if isinstance(report, Exception):
                monitoring_summary["flow_reports"][flow_id] = {
                    "status": "error",
                    "error": str(report),
                }
                critical_flows += 1
            else:
                monitoring_summary["flow_reports"][flow_id] = report

                if report["status"] == "healthy":
                    healthy_flows += 1
                elif report["status"] == "warning":
                    warning_flows += 1
                else:
                    critical_flows += 1

        # Calculate overall metrics
        monitoring_summary["summary_metrics"] = {
            "healthy_flows": healthy_flows,
            "warning_flows": warning_flows,
            "critical_flows": critical_flows,
            "health_percentage": (healthy_flows / len(flow_ids) * 100) if flow_ids else 0,
        }

        # Determine overall status
        if critical_flows > 0:
            monitoring_summary["overall_status"] = "critical"
        elif warning_flows > 0:
            monitoring_summary["overall_status"] = "warning"
        else:
            monitoring_summary["overall_status"] = "healthy"

        return monitoring_summary


async def production_flow_monitoring(client):
    monitor = FlowHealthMonitor(client)

    # Monitor critical production flows
    production_flows = [
        "user-authentication-flow",
        "payment-processing-flow",
        "ai-recommendation-flow",
        "security-monitoring-flow",
    ]

    # Run monitoring
    monitoring_report = await monitor.monitor_all_flows(production_flows)

    print("🔍 Production Flow Monitoring Report:")
    print(f"   Overall Status: {monitoring_report['overall_status']}")
    print(f"   Health Percentage: {monitoring_report['summary_metrics']['health_percentage']:.1f}%")
    print(f"   Healthy Flows: {monitoring_report['summary_metrics']['healthy_flows']}")
    print(f"   Warning Flows: {monitoring_report['summary_metrics']['warning_flows']}")
    print(f"   Critical Flows: {monitoring_report['summary_metrics']['critical_flows']}")

    # Alert on critical issues
    if monitoring_report["overall_status"] == "critical":
        print("🚨 CRITICAL: Production flows have security issues!")
        # In production, trigger alerts to operations team

    return monitoring_report


def test_seed000_flow_health_monitor_with_seed_ids_is_critical(client: Aztp) -> None:
    """The seed's placeholder IDs (``aztp://domain/workload/prod/serviceN``) are not valid
    AZTP IDs, so every check fails with a specific error and the flow is critical."""
    flow = run(client.create_flow("monitored-flow"))
    report = run(FlowHealthMonitor(client).monitor_flow_health(flow["_id"]))
    assert report["status"] == "critical"
    assert report["security_score"] == 0
    assert len(report["issues"]) == 3
    for aztp_id in FlowHealthMonitor.test_identities:
        entry = report["identities"][aztp_id]
        assert entry["valid"] is False
        assert "/workload/{environment}/{method}/{name}" in entry["error"]  # says what to fix


def test_seed000_production_flow_monitoring(
    client: Aztp, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run(production_flow_monitoring(client))
    out = capsys.readouterr().out
    assert report["overall_status"] == "critical"
    assert report["summary_metrics"] == {
        "healthy_flows": 0,
        "warning_flows": 0,
        "critical_flows": 4,
        "health_percentage": 0,
    }
    assert "🚨 CRITICAL: Production flows have security issues!" in out
    assert "   Critical Flows: 4" in out


def test_seed000_flow_health_monitor_with_real_members(client: Aztp) -> None:
    flow = run(client.create_flow("payment-processing-flow"))
    members = []
    for name in ("payment-api", "payment-worker", "payment-ledger"):
        agent = run(client.secure_connect({}, name))
        run(client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id))
        members.append(agent.identity.aztp_id)
    monitor = FlowHealthMonitor(client)
    monitor.test_identities = members

    report = run(monitor.monitor_flow_health(flow["_id"]))
    assert report["status"] == "healthy"
    assert report["security_score"] == 100
    assert report["issues"] == []
    assert all(e["valid"] and e["status"] == "active" for e in report["identities"].values())
    assert run(client.get_flow_health(flow["_id"]))["status"] == "healthy"

    # One member revoked in this flow: 2 of 3 valid (66.7 %) -> critical, in both views.
    run(client.revoke_flow_identity(members[1], flow["_id"], reason="suspicious"))
    report = run(monitor.monitor_flow_health(flow["_id"]))
    assert report["status"] == "critical"
    assert report["issues"] == [f"Identity issue: {members[1]}"]
    assert report["identities"][members[1]]["status"] == "active"  # still valid globally
    library = run(client.get_flow_health(flow["_id"]))
    assert library["status"] == "critical"
    assert library["securityScore"] == pytest.approx(66.7, abs=0.05)

    summary = run(monitor.monitor_all_flows([flow["_id"]]))
    assert summary["overall_status"] == "critical"


# --- secure flow creation / lifecycle manager ----------------------------------------------


async def secure_flow_creation(client, flow_config):
    """Create flow with security best practices."""

    # Validate flow configuration
    required_fields = ["name", "description", "security_level"]
    for field in required_fields:
        if field not in flow_config:
            raise ValueError(f"Missing required field: {field}")

    # Set security-appropriate discoverability
    discoverable = "private" if flow_config["security_level"] == "critical" else "public"

    # Create flow with security metadata
    flow = await client.create_flow(
        flow_config["name"],
        description=flow_config["description"],
        discoverable=discoverable,
        tags=[*flow_config.get("tags", []), "secure", flow_config["security_level"]],
        metadata={
            **flow_config.get("metadata", {}),
            "security_level": flow_config["security_level"],
            "created_by": "security_team",
            "compliance_required": True,
            "monitoring_enabled": True,
        },
    )

    logger.info(f"🔐 Secure flow created: {flow['_id']} (Level: {flow_config['security_level']})")
    return flow


def test_seed000_secure_flow_creation(client: Aztp) -> None:
    critical = run(
        secure_flow_creation(
            client,
            {
                "name": "vault-access",
                "description": "Secrets access",
                "security_level": "critical",
                "tags": ["vault"],
                "metadata": {"owner": "sec"},
            },
        )
    )
    assert critical["discoverable"] == "private"
    assert critical["tags"] == ["vault", "secure", "critical"]
    assert critical["metadata"] == {
        "owner": "sec",
        "security_level": "critical",
        "created_by": "security_team",
        "compliance_required": True,
        "monitoring_enabled": True,
    }
    standard = run(
        secure_flow_creation(
            client, {"name": "docs-search", "description": "d", "security_level": "standard"}
        )
    )
    assert standard["discoverable"] == "public"
    assert standard["tags"] == ["secure", "standard"]
    with pytest.raises(ValueError, match="Missing required field: security_level"):
        run(secure_flow_creation(client, {"name": "x-flow", "description": "d"}))
    assert [f["name"] for f in run(client.list_flows())] == ["vault-access", "docs-search"]


class FlowLifecycleManager:
    """Manage complete lifecycle of identity flows."""

    def __init__(self, client: Aztp):  # changed: the client instead of an API key
        self.client = client
        self.active_flows = {}

    async def create_managed_flow(self, flow_config: dict) -> dict:
        """Create flow with lifecycle management."""

        # Create flow
        flow = await self.client.create_flow(
            flow_config["name"],
            description=flow_config["description"],
            discoverable=flow_config.get("discoverable", "private"),
            tags=flow_config.get("tags", []),
            metadata={
                **flow_config.get("metadata", {}),
                "lifecycle_managed": True,
                "created_at": datetime.utcnow().isoformat(),
                "manager_version": "1.0",
            },
        )

        # Register for lifecycle management
        self.active_flows[flow["_id"]] = {
            "flow_data": flow,
            "config": flow_config,
            "identities": {},
            "created_at": datetime.utcnow(),
            "last_health_check": None,
        }

        return flow

    async def add_managed_identity(self, flow_id: str, identity_name: str, identity_config: dict):
        """Add identity to managed flow."""

        if flow_id not in self.active_flows:
            raise ValueError(f"Flow {flow_id} not under management")

        # Create identity
        agent = await self.client.secure_connect({}, identity_name, config=identity_config)

        # Add to flow
        await self.client.add_identity_to_flow(flow_id, agent.identity.aztp_id)

        # Register in management
        self.active_flows[flow_id]["identities"][identity_name] = {
            "agent": agent,
            "config": identity_config,
            "added_at": datetime.utcnow(),
        }

        logger.info(f"✅ Added managed identity {identity_name} to flow {flow_id}")
        return agent

    async def perform_health_checks(self):
        """Perform health checks on all managed flows."""

        health_summary = {
            "check_timestamp": datetime.utcnow().isoformat(),
            "flows_checked": 0,
            "healthy_flows": 0,
            "issues_detected": 0,
            "flow_details": {},
        }

        for flow_id, flow_info in self.active_flows.items():
            try:
                # Check each identity in the flow
                identity_health = {}

                for identity_name, identity_info in flow_info["identities"].items():
                    agent = identity_info["agent"]

                    # Verify identity
                    is_valid = await self.client.verify_identity_by_aztp_id(
                        agent.identity.aztp_id, identity_flow_id=flow_id
                    )

                    identity_health[identity_name] = {
                        "valid": is_valid,
                        "aztp_id": agent.identity.aztp_id,
                    }

                    if not is_valid:
                        health_summary["issues_detected"] += 1

                # Update flow health status
                all_valid = all(health["valid"] for health in identity_health.values())

                flow_health = {
                    "flow_id": flow_id,
                    "status": "healthy" if all_valid else "issues",
                    "identities": identity_health,
                    "last_check": datetime.utcnow().isoformat(),
                }

                health_summary["flow_details"][flow_id] = flow_health
                health_summary["flows_checked"] += 1

                if all_valid:
                    health_summary["healthy_flows"] += 1

                # Update management record
                self.active_flows[flow_id]["last_health_check"] = datetime.utcnow()

            except Exception as e:
                logger.error(f"Health check failed for flow {flow_id}: {e}")
                health_summary["issues_detected"] += 1

        return health_summary


def test_seed000_flow_lifecycle_manager(client: Aztp) -> None:
    manager = FlowLifecycleManager(client)

    async def scenario() -> tuple[Any, ...]:
        flow = await manager.create_managed_flow(
            {
                "name": "managed-rag-flow",
                "description": "RAG pipeline",
                "tags": ["rag"],
                "metadata": {"team": "ml"},
            }
        )
        retriever = await manager.add_managed_identity(
            flow["_id"], "rag-retriever", {"isGlobalIdentity": False}
        )
        generator = await manager.add_managed_identity(
            flow["_id"], "rag-generator", {"isGlobalIdentity": True}
        )
        first = await manager.perform_health_checks()
        await client.revoke_identity(generator.identity.aztp_id, reason="key leaked")
        second = await manager.perform_health_checks()
        return flow, retriever, generator, first, second

    flow, retriever, generator, first, second = run(scenario())
    assert flow["discoverable"] == "private"
    assert flow["metadata"]["lifecycle_managed"] is True and flow["metadata"]["team"] == "ml"
    with pytest.raises(ValueError, match="not under management"):
        run(manager.add_managed_identity("0" * 24, "stray", {}))
    assert (
        first["flows_checked"] == 1
        and first["healthy_flows"] == 1
        and first["issues_detected"] == 0
    )
    details = first["flow_details"][flow["_id"]]
    assert details["status"] == "healthy"
    assert details["identities"]["rag-retriever"] == {
        "valid": True,
        "aztp_id": retriever.identity.aztp_id,
    }
    assert second["healthy_flows"] == 0 and second["issues_detected"] == 1
    assert second["flow_details"][flow["_id"]]["status"] == "issues"
    assert second["flow_details"][flow["_id"]]["identities"]["rag-generator"]["valid"] is False
    assert manager.active_flows[flow["_id"]]["last_health_check"] is not None
    assert json.loads(run(client.get_identity(generator)))["data"]["identityType"] == "global"


# =========================================================================================
# Seed 001: identity overview
# =========================================================================================


def test_seed001_global_and_component_identities(client: Aztp, make_client: Any) -> None:
    async def scenario() -> tuple[Any, Any]:
        # Create global identity
        agent = await client.secure_connect(
            {}, "organization-api-gateway", config={"isGlobalIdentity": True}
        )
        global_agent = agent
        # Create component identity
        agent = await client.secure_connect(
            {}, "langflow-chat-component", config={"isGlobalIdentity": False}
        )
        return global_agent, agent

    global_agent, component = run(scenario())
    g = json.loads(run(client.get_identity(global_agent)))["data"]
    c = json.loads(run(client.get_identity(component)))["data"]
    assert (g["identityType"], g["isGlobalIdentity"]) == ("global", True)
    assert (c["identityType"], c["isGlobalIdentity"]) == ("component", False)
    assert "metadata:isGlobal:true" in g["selectors"]
    assert "metadata:isGlobal:false" in c["selectors"]
    # Global identities are discoverable; component identities are not ...
    discovered = [d["aztpId"] for d in json.loads(run(client.discover_identity()))["data"]]
    assert discovered == [g["aztpId"]]
    # ... unless a public flow exposes them; another user's private flow does not.
    authority = client.backend.authority  # type: ignore[attr-defined]
    authority.create_user(client.backend.principal.org_id, "bob")  # type: ignore[attr-defined]
    bob = make_client(user="bob")

    def found_by_bob() -> list[str]:
        return [d["aztpId"] for d in json.loads(run(bob.discover_identity()))["data"]]

    assert found_by_bob() == [g["aztpId"]]
    private = run(client.create_flow("private-chat", discoverable="private"))
    run(client.add_identity_to_flow(private["_id"], c["aztpId"]))
    assert found_by_bob() == [g["aztpId"]]
    public = run(client.create_flow("public-chat", discoverable="public"))
    run(client.add_identity_to_flow(public["_id"], c["aztpId"]))
    assert set(found_by_bob()) == {g["aztpId"], c["aztpId"]}


def test_seed001_creation_lifecycle(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> Any:
        # Python: Create new identity
        agent = await client.secure_connect(
            crew_agent={},  # Agent configuration
            name="ai-service-v1",  # Unique service name
            config={
                "isGlobalIdentity": False,  # Component-specific
                "trustDomain": "aztp.network",  # Trust boundary
            },
        )

        print(f"✅ Identity created: {agent.identity.aztp_id}")
        print(f"   Status: {agent.identity.status}")
        print(f"   Valid: {agent.identity.valid}")
        return agent

    agent = run(scenario())
    out = capsys.readouterr().out
    assert "✅ Identity created: aztp://aztp.network/workload/production/node/ai-service-v1" in out
    assert "   Status: active" in out
    assert "   Valid: True" in out
    assert (
        agent.identity.spiffe_id == "spiffe://aztp.network/workload/production/node/ai-service-v1"
    )

    # Get identity by name
    identity_by_name = run(client.get_identity_by_name("ai-service-v1"))
    parsed = json.loads(identity_by_name)
    assert parsed["success"] is True
    assert parsed["data"]["aztpId"] == agent.identity.aztp_id
    assert parsed["data"]["workloadInfo"]["trustDomain"] == "aztp.network"
    with pytest.raises(NotFoundError, match="no identity named 'ai-service-v2'"):
        run(client.get_identity_by_name("ai-service-v2"))


async def identity_verification_example(client):
    """Real identity verification from successful test execution."""

    # Create agents
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

    # Verify identity by agent object
    is_valid_1 = await client.verify_identity(agent1)
    print(f"🔍 Agent verification: {'✅ PASSED' if is_valid_1 else '❌ FAILED'}")

    # Verify identity by AZTP ID
    is_valid_2 = await client.verify_identity_by_aztp_id(aztp_id_2)
    print(f"🔍 ID verification: {'✅ PASSED' if is_valid_2 else '❌ FAILED'}")

    # Verify with flow context (if flow exists)
    try:
        flow = await client.create_flow(
            "verification-test-flow", description="Flow for verification testing"
        )
        await client.add_identity_to_flow(flow["_id"], aztp_id_1)

        is_valid_in_flow = await client.verify_identity_by_aztp_id(
            aztp_id_1, identity_flow_id=flow["_id"]
        )
        print(f"🔍 Flow context verification: {'✅ PASSED' if is_valid_in_flow else '❌ FAILED'}")

    except Exception as e:
        print(f"⚠️ Flow verification test skipped: {e}")


def test_seed001_identity_verification(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    run(identity_verification_example(client))
    out = capsys.readouterr().out
    assert "   Service 1: aztp://astha.ai/workload/production/node/service1" in out
    assert "   Service 2: aztp://astha.ai/workload/production/node/service2" in out
    assert "🔍 Agent verification: ✅ PASSED" in out
    assert "🔍 ID verification: ✅ PASSED" in out
    assert "🔍 Flow context verification: ✅ PASSED" in out
    assert "skipped" not in out


def test_seed001_get_identity_fields(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    agent = run(client.secure_connect({}, "chat-service", config={"isGlobalIdentity": False}))

    # Get detailed identity information
    identity_data = run(client.get_identity(agent))
    parsed_data = json.loads(identity_data)

    print("📋 Identity Details:")
    print(f"   Internal ID: {parsed_data['data']['_id']}")
    print(f"   AZTP ID: {parsed_data['data']['aztpId']}")
    print(f"   Status: {parsed_data['data']['status']}")
    print(f"   Created: {parsed_data['data']['createdAt']}")
    print(f"   Identity Type: {parsed_data['data']['identityType']}")

    out = capsys.readouterr().out
    data = parsed_data["data"]
    assert parsed_data["success"] is True
    assert "Workload identity found successfully" in parsed_data["message"]
    assert OBJECT_ID.fullmatch(data["_id"])
    assert OBJECT_ID.fullmatch(data["userId"])
    assert data["aztpId"] == "aztp://astha.ai/workload/production/node/chat-service"
    assert data["name"] == "chat-service"
    assert data["status"] == "active"
    assert ISO_MS.fullmatch(data["createdAt"]) and ISO_MS.fullmatch(data["updatedAt"])
    assert data["identityType"] == "component"
    assert data["isGlobalIdentity"] is False
    assert data["environment"] == "production"
    assert data["parentIdentity"] is None
    # selectors and workloadInfo as in seed 001's JSON
    assert data["selectors"][:3] == ["workload:id:chat-service", "agent:id:aztp", "method:node"]
    for selector in (
        "metadata:environment:production",
        "metadata:trustDomain:astha.ai",
        "metadata:parentIdentity:None",
    ):
        assert (
            selector in data["selectors"] or selector.replace("None", "null") in data["selectors"]
        )
    assert any(s.startswith("metadata:hostname:") for s in data["selectors"])
    info = data["workloadInfo"]
    assert {
        k: info[k] for k in ("workloadId", "agentId", "trustDomain", "method", "environment")
    } == {
        "workloadId": "chat-service",
        "agentId": "aztp",
        "trustDomain": "astha.ai",
        "method": "node",
        "environment": "production",
    }
    assert ISO_MS.fullmatch(info["timestamp"]) and info["hostname"]
    for line in (
        f"   Internal ID: {data['_id']}",
        f"   AZTP ID: {data['aztpId']}",
        "   Status: active",
        "   Identity Type: component",
    ):
        assert line in out


def test_seed001_selector_for_no_parent_is_null(client: Aztp) -> None:
    agent = run(client.secure_connect({}, "chat-service"))
    data = json.loads(run(client.get_identity(agent)))["data"]
    assert "metadata:parentIdentity:null" in data["selectors"]


def test_seed001_parent_identity_config(client: Aztp) -> None:
    parent = run(client.secure_connect({}, "orchestrator"))
    child = run(
        client.secure_connect(
            {}, "orchestrator-worker", config={"parentIdentity": parent.identity.aztp_id}
        )
    )
    data = json.loads(run(client.get_identity(child)))["data"]
    assert data["parentIdentity"] == parent.identity.aztp_id
    assert f"metadata:parentIdentity:{parent.identity.aztp_id}" in data["selectors"]


def _domain_identities(
    client: Aztp, *names: str, td: str = "domain", env: str = "prod"
) -> list[str]:
    """Issue identities matching the seed's literal IDs (``aztp://domain/workload/prod/node/...``)."""
    out = []
    for name in names:
        agent = run(client.secure_connect({}, name, config={"trustDomain": td, "environment": env}))
        out.append(agent.identity.aztp_id)
    return out


def test_seed001_link_identities(client: Aztp) -> None:
    ids = _domain_identities(client, "service1", "service2", "api-gateway", "ai-processor")
    assert ids[0] == "aztp://domain/workload/prod/node/service1"

    async def scenario() -> tuple[Any, Any]:
        # Link two identities
        pipeline = await client.link_identities(
            "aztp://domain/workload/prod/node/service1",
            "aztp://domain/workload/prod/node/service2",
            "data_pipeline",
            metadata={"connection_type": "secure_channel"},
        )
        # Link identities for secure communication
        chain = await client.link_identities(
            source_identity="aztp://domain/workload/prod/node/api-gateway",
            target_identity="aztp://domain/workload/prod/node/ai-processor",
            relationship_type="service_chain",
            metadata={
                "connection_type": "api_call",
                "security_level": "high",
                "established_at": datetime.utcnow().isoformat(),
            },
        )
        return pipeline, chain

    pipeline, chain = run(scenario())
    assert pipeline["sourceIdentity"] == "aztp://domain/workload/prod/node/service1"
    assert pipeline["targetIdentity"] == "aztp://domain/workload/prod/node/service2"
    assert pipeline["relationshipType"] == "data_pipeline"
    assert pipeline["metadata"] == {"connection_type": "secure_channel"}
    assert chain["relationshipType"] == "service_chain"
    assert chain["metadata"]["security_level"] == "high"

    # Common relationship types
    relationship_types = [
        "linked",  # General connection
        "parent",  # Parent-child relationship
        "data_pipeline",  # Data flow connection
        "service_chain",  # Service communication
        "backup_replica",  # Backup/redundancy
        "load_balancer",  # Load balancing
    ]
    for rel in relationship_types:
        link = run(client.link_identities(ids[2], ids[1], rel))
        assert link["relationshipType"] == rel
    assert len(links_of(client, ids[2])) == 1 + len(relationship_types)
    assert run(client.verify_authorize_identity_connection(ids[0], ids[1])) is True
    assert (
        run(client.verify_authorize_identity_connection(ids[1], ids[0])) is False
    )  # data_pipeline: directed
    assert run(client.verify_authorize_identity_connection(ids[2], ids[3])) is True


def test_seed001_revoke_and_restore(client: Aztp) -> None:
    (compromised,) = _domain_identities(client, "compromised-service")

    async def scenario() -> tuple[bool, bool]:
        # Revoke identity
        await client.revoke_identity(
            aztp_id="aztp://domain/workload/prod/node/compromised-service",
            reason="Security incident - potential compromise detected",
        )
        is_revoked_valid = await client.verify_identity_by_aztp_id(
            "aztp://domain/workload/prod/node/compromised-service"
        )

        # Restore revoked identity
        await client.reissue_identity(
            aztp_id="aztp://domain/workload/prod/node/compromised-service"
        )

        # Verify restoration
        is_restored = await client.verify_identity_by_aztp_id(
            "aztp://domain/workload/prod/node/compromised-service"
        )
        return is_revoked_valid, is_restored

    revoked_valid, restored = run(scenario())
    assert revoked_valid is False
    assert restored is True
    data = json.loads(run(client.get_identity_by_aztp_id(compromised)))["data"]
    assert data["status"] == "active"


def test_seed001_revoked_identity_record(client: Aztp) -> None:
    (victim,) = _domain_identities(client, "leaky-service")
    result = json.loads(run(client.revoke_identity(victim, reason="Security incident")))
    assert result["status"] == "revoked" and result["valid"] is False
    data = json.loads(run(client.get_identity_by_aztp_id(victim)))["data"]
    assert data["status"] == "revoked"
    assert data["revocationReason"] == "Security incident"
    assert run(client.verify(victim))["reason"] == "identity_revoked"


def test_seed001_langflow_component_identity(client: Aztp) -> None:
    service = LangflowIdentityService(client)
    agent = run(service.secure_connect_component("ChatOutput-x9", "langflow-chat-component"))
    assert agent.identity.valid
    assert (
        agent.aztp_identity_id == "aztp://astha.ai/workload/production/node/langflow-chat-component"
    )
    assert agent.aztp_identity_status == "active"
    # Names that break the AZTP rule become valid, distinct names.
    raw = [
        "a",
        "-",
        "Chat Input",
        "x" * 80,
        "  ",
        "Café/Über//Agent--v2-",
        "langflow-router",
        "---//--",
        "é",
    ]
    sanitized = [sanitize_name(r) for r in raw]
    for name in sanitized:
        assert validate_name(name) == name
    assert sanitize_name("langflow-router") != sanitize_name("langflow-chat-component")
    for name in sanitized:
        assert run(service.secure_connect_component("c", name)).identity.valid


def test_seed001_discover_identity(client: Aztp) -> None:
    run(
        client.secure_connect(
            {}, "network-gateway", config={"isGlobalIdentity": True, "trustDomain": "aztp.network"}
        )
    )
    run(
        client.secure_connect(
            {}, "network-worker", config={"isGlobalIdentity": False, "trustDomain": "aztp.network"}
        )
    )
    run(client.secure_connect({}, "astha-gateway", config={"isGlobalIdentity": True}))
    _domain_identities(client, "discovery-service")

    # Discover available identities
    discovered = run(
        client.discover_identity(
            trust_domain="aztp.network",
            requestor_identity="aztp://domain/workload/prod/node/discovery-service",
        )
    )
    print(f"🔍 Discovered {len(discovered)} identities in trust domain")
    parsed = json.loads(discovered)
    assert parsed["success"] is True
    assert [d["aztpId"] for d in parsed["data"]] == [
        "aztp://aztp.network/workload/production/node/network-gateway"
    ]
    everything = json.loads(run(client.discover_identity()))["data"]
    assert {d["name"] for d in everything} == {"network-gateway", "astha-gateway"}
    with pytest.raises(NotFoundError):  # an unknown requestor is refused
        run(client.discover_identity(requestor_identity="aztp://domain/workload/prod/node/nobody"))


def test_seed001_cross_domain_connection(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    """One organization owns both trust domains (aztp.network and gptapps.ai)."""
    source = run(
        client.secure_connect(
            {}, "service1", config={"trustDomain": "aztp.network", "environment": "prod"}
        )
    )
    target = run(
        client.secure_connect(
            {}, "service2", config={"trustDomain": "gptapps.ai", "environment": "prod"}
        )
    )
    assert source.identity.aztp_id == "aztp://aztp.network/workload/prod/node/service1"
    assert target.identity.aztp_id == "aztp://gptapps.ai/workload/prod/node/service2"

    async def seed() -> bool:
        # Verify identity across trust domains
        cross_domain_valid = await client.verify_authorize_identity_connection(
            from_aztp_id="aztp://aztp.network/workload/prod/node/service1",
            to_aztp_id="aztp://gptapps.ai/workload/prod/node/service2",
            policyCode="cross-domain-communication",
        )

        if cross_domain_valid:
            print("✅ Cross-domain communication authorized")
        else:
            print("❌ Cross-domain communication denied")
        return cross_domain_valid

    allow = {
        "Statement": [
            {"Effect": "Allow", "Action": "connect", "Resource": "aztp://gptapps.ai/workload/*"}
        ]
    }
    deny = {
        "Statement": [{"Effect": "Allow", "Action": "*"}, {"Effect": "Deny", "Action": "connect"}]
    }
    run(client.create_policy("cross-domain-communication", allow))
    assert run(seed()) is False  # no link yet
    run(client.link_identities(source.identity.aztp_id, target.identity.aztp_id, "service_chain"))
    assert run(seed()) is True
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "❌ Cross-domain communication denied",
        "✅ Cross-domain communication authorized",
    ]

    denying = run(client.create_policy("cross-domain-deny", deny))
    assert (
        run(
            client.verify_authorize_identity_connection(
                from_aztp_id=source.identity.aztp_id,
                to_aztp_id=target.identity.aztp_id,
                policyCode=denying["code"],
            )
        )
        is False
    )
    # Without a policy code the link alone decides; an unknown policy code never allows.
    assert (
        run(
            client.verify_authorize_identity_connection(
                source.identity.aztp_id, target.identity.aztp_id
            )
        )
        is True
    )
    assert (
        run(
            client.verify_authorize_identity_connection(
                source.identity.aztp_id, target.identity.aztp_id, policyCode="no-such-policy"
            )
        )
        is False
    )
    # The link is directed (service_chain) and needs both identities valid.
    assert (
        run(
            client.verify_authorize_identity_connection(
                target.identity.aztp_id, source.identity.aztp_id
            )
        )
        is False
    )
    run(client.revoke_identity(target.identity.aztp_id, reason="test"))
    assert run(seed()) is False


# =========================================================================================
# Seed 002: issuing an identity
# =========================================================================================


def test_seed002_issue_identity(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> Any:
        # 3. Create your agent object (replace {} with your actual agent)
        agent = {}
        # 4. Issue an identity for your agent
        secured_agent = await client.secure_connect(agent, "my-agent")
        print("AZTP ID:", secured_agent.identity.aztp_id)
        return secured_agent

    secured_agent = run(main())
    assert capsys.readouterr().out == "AZTP ID: aztp://astha.ai/workload/production/node/my-agent\n"
    identity = secured_agent.identity
    assert identity.valid is True and identity.status == "active"
    assert identity.spiffe_id == "spiffe://astha.ai/workload/production/node/my-agent"

    # Real credentials, not placeholders.
    cert = x509.load_pem_x509_certificate(identity.certificate.encode())
    ca_cert = x509.load_pem_x509_certificate(identity.ca_certificate.encode())
    key = serialization.load_pem_private_key(identity.private_key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [identity.spiffe_id]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert 0 < (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 3600 + 300
    # The private key is never written to the store's audit log.
    authority = client.backend.authority  # type: ignore[attr-defined]
    entries = authority.audit_entries(client.backend.principal)  # type: ignore[attr-defined]
    body = identity.private_key.split("-----")[2].strip().splitlines()[0]
    assert all(body not in json.dumps(e.model_dump()) for e in entries)
    # The wrapped agent's attributes fall through.
    assert repr(secured_agent).startswith("SecuredAgent(aztp_id='aztp://astha.ai/")
