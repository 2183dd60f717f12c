"""Multi-tenant flows: the AZTP documentation's ``MultiTenantFlowManager``, on one machine.

Each tenant is an organization with its own API key, trust domain and CA. An operator makes
them with the command line (``aztp-agents org create``, the key is shown once); the manager
then holds one client per tenant — ``Aztp(api_key=tenant_key)`` acts as that organization on
the embedded store (``Aztp(api_key=..., base_url=...)`` would do the same against a server).
The documentation's flow runs as written: a flow and three identities per tenant, then a
security summary per tenant. Then the isolation it promises: one tenant cannot see, verify,
use or decide on another's identities and flows, and each has its own audit chain.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/multi_tenant.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from aztp_agents import Aztp, Guard
from aztp_agents.errors import NotFoundError


def create_tenant(home: str, tenant_id: str) -> str:
    """What an operator runs: ``aztp-agents --home HOME org create TENANT --trust-domain ...``."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aztp_agents.cli",
            "--home",
            home,
            "org",
            "create",
            tenant_id,
            "--trust-domain",
            f"{tenant_id}.example",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["api_key"]


class MultiTenantFlowManager:
    """Manage flows across multiple tenants/organizations (from the documentation)."""

    def __init__(self, tenant_configs: dict[str, str], home: str) -> None:
        self.tenants: dict[str, dict[str, Any]] = {
            tenant_id: {"client": Aztp(api_key=api_key, home=home), "flows": {}, "identities": {}}
            for tenant_id, api_key in tenant_configs.items()
        }

    async def create_tenant_flow(self, tenant_id: str, flow_name: str, flow_config: dict) -> dict:
        client = self.tenants[tenant_id]["client"]
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
        self.tenants[tenant_id]["flows"][flow_name] = flow
        print(f"Created flow for tenant {tenant_id}: {flow['_id']}")
        return flow

    async def create_tenant_identity(
        self, tenant_id: str, identity_name: str, flow_name: str | None = None
    ) -> Any:
        client = self.tenants[tenant_id]["client"]
        agent = await client.secure_connect(
            {}, f"{tenant_id}-{identity_name}", config={"isGlobalIdentity": False}
        )
        self.tenants[tenant_id]["identities"][identity_name] = agent
        if flow_name and flow_name in self.tenants[tenant_id]["flows"]:
            flow_id = self.tenants[tenant_id]["flows"][flow_name]["_id"]
            await client.add_identity_to_flow(flow_id, agent.identity.aztp_id)
        print(f"   identity for {tenant_id}: {agent.identity.aztp_id}")
        return agent

    async def get_tenant_security_summary(self, tenant_id: str) -> dict:
        tenant = self.tenants[tenant_id]
        client = tenant["client"]
        summary: dict[str, Any] = {
            "tenant_id": tenant_id,
            "flows": len(tenant["flows"]),
            "identities": len(tenant["identities"]),
            "identity_status": {},
        }
        for name, agent in tenant["identities"].items():
            summary["identity_status"][name] = {
                "aztp_id": agent.identity.aztp_id,
                "valid": await client.verify_identity(agent),
            }
        valid = sum(1 for s in summary["identity_status"].values() if s["valid"])
        total = len(summary["identity_status"])
        summary["compliance_score"] = valid / total * 100 if total else 100.0
        return summary


async def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    tenant_configs = {
        tenant: create_tenant(home, tenant) for tenant in ("tenant-a", "tenant-b", "tenant-c")
    }
    print(f"operator created {len(tenant_configs)} organizations, one API key each\n")
    manager = MultiTenantFlowManager(tenant_configs, home)

    for tenant_id in tenant_configs:
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
        for service in ("input-processor", "ai-engine", "output-handler"):
            await manager.create_tenant_identity(tenant_id, service, "ai-workflow")

    # tenant-c has an incident: one of its identities is revoked.
    c = manager.tenants["tenant-c"]
    await c["client"].revoke_identity(
        c["identities"]["ai-engine"].identity.aztp_id, reason="incident"
    )

    print()
    for tenant_id in tenant_configs:
        summary = await manager.get_tenant_security_summary(tenant_id)
        print(f"{tenant_id} Security Summary:")
        print(
            f"   Flows: {summary['flows']}  Identities: {summary['identities']}  "
            f"Compliance Score: {summary['compliance_score']:.1f}%"
        )

    print("\nIsolation")
    a, b = manager.tenants["tenant-a"], manager.tenants["tenant-b"]
    a_engine = a["identities"]["ai-engine"].identity.aztp_id
    a_flow = a["flows"]["ai-workflow"]["_id"]
    print(f"   tenant-b's flows: {[f['name'] for f in await b['client'].list_flows()]}")
    try:
        await b["client"].get_flow(a_flow)
    except NotFoundError:
        print("   tenant-b cannot see tenant-a's flow (not found)")
    print(
        f"   tenant-b verifies tenant-a's ai-engine: {await b['client'].verify_identity_by_aztp_id(a_engine)}"
    )
    try:
        await b["client"].link_identities(b["identities"]["ai-engine"].identity.aztp_id, a_engine)
    except NotFoundError as exc:
        print(f"   tenant-b cannot link to it: {exc}")
    guard_b = Guard(flow="tenant-b-ai-workflow", client=b["client"])
    decision = guard_b.check(a_engine, b["identities"]["output-handler"].identity.aztp_id, "handle")
    print(f"   tenant-b's guard, tenant-a's agent as caller: {decision.reason}")
    for tenant_id in ("tenant-a", "tenant-b"):
        client = manager.tenants[tenant_id]["client"]
        entries = await client.audit()
        print(
            f"   {tenant_id}: its own audit chain, {len(entries)} entries, intact: {(await client.verify_audit())['ok']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
