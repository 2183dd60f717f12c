"""Flow patterns from the AZTP "Identity Flows" documentation, made concrete.

1. Environment flows: one flow per environment (production private), three services each.
2. CI/CD pipeline stages: a flow per stage, services linked in sequence with
   ``pipeline_stage`` links — and, where the documentation stops at "simplified here", the
   stages really linked: the last service of a stage to the first of the next.
3. Microservice tiers: a flow per tier, ``tier_communication`` links inside a tier,
   ``cross_tier_communication`` links between tiers; then who may call whom.
4. Context-aware security: a flow per security context, its allowed actions as a policy on
   the context's agent.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/flow_patterns.py
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile

from aztp_agents import Aztp


async def environment_flows(client: Aztp) -> None:
    print("== 1. Environment-based flows")
    for env in ("development", "staging", "production"):
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
        names = []
        for service in ("api-gateway", "ai-processor", "data-store"):
            agent = await client.secure_connect(
                {}, f"{env}-{service}", config={"isGlobalIdentity": False}
            )
            await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)
            names.append(service)
        print(
            f"   {flow['name']:<26} {flow['discoverable']:<8} {flow['_id']}  services: {', '.join(names)}"
        )


async def cicd_pipeline_flows(client: Aztp) -> None:
    print("\n== 2. CI/CD pipeline flows")
    stages = [
        (
            "build-stage",
            "Build and compilation stage",
            ["code-analyzer", "builder", "test-runner"],
            "standard",
        ),
        (
            "security-stage",
            "Security scanning and validation",
            ["vulnerability-scanner", "compliance-checker", "security-validator"],
            "high",
        ),
        (
            "deployment-stage",
            "Production deployment stage",
            ["deployment-manager", "health-checker", "monitor"],
            "critical",
        ),
    ]
    firsts_lasts: list[tuple[str, str, str]] = []
    for stage, description, services, level in stages:
        flow = await client.create_flow(
            f"cicd-{stage}",
            description=description,
            discoverable="private",
            tags=["cicd", "pipeline", stage],
            metadata={
                "project": "cicd-pipeline",
                "stage": stage,
                "security_level": level,
                "services": services,
            },
        )
        ids = []
        for service in services:
            agent = await client.secure_connect(
                {}, f"cicd-{stage}-{service}", config={"isGlobalIdentity": False}
            )
            await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)
            ids.append(agent.identity.aztp_id)
        for i in range(len(ids) - 1):  # link services within the stage, in sequence
            await client.link_identities(
                ids[i], ids[i + 1], "pipeline_stage", metadata={"stage": stage, "sequence": i + 1}
            )
        print(f"   {flow['name']:<22} {' -> '.join(services)}  (pipeline_stage links)")
        firsts_lasts.append((stage, ids[0], ids[-1]))
    for (stage, _, last), (next_stage, first, _) in itertools.pairwise(firsts_lasts):
        await client.link_identities(
            last, first, "pipeline_stage", metadata={"from": stage, "to": next_stage}
        )
        print(
            f"   linked {stage} -> {next_stage}: {last.rsplit('/', 1)[1]} -> {first.rsplit('/', 1)[1]}"
        )
    start, end = firsts_lasts[0][2], firsts_lasts[1][1]
    print(
        f"   build -> security handoff authorized: {await client.verify_authorize_identity_connection(start, end)}"
    )
    print(
        f"   security -> build (backwards) authorized: {await client.verify_authorize_identity_connection(end, start)}"
    )


async def microservices_flow_architecture(client: Aztp) -> None:
    print("\n== 3. Microservices flow architecture")
    architecture = {
        "frontend-services": (["web-ui", "mobile-api", "admin-dashboard"], "medium", True),
        "business-services": (["user-service", "order-service", "payment-service"], "high", False),
        "data-services": (["user-db", "order-db", "analytics-db"], "critical", False),
    }
    ids: dict[str, str] = {}
    for tier, (services, level, external) in architecture.items():
        flow = await client.create_flow(
            f"microservices-{tier}",
            description=f"Microservices {tier} tier",
            discoverable="private",
            tags=["microservices", tier, level],
            metadata={
                "project": "microservices-platform",
                "tier": tier,
                "security_level": level,
                "external_facing": external,
            },
        )
        for service in services:
            agent = await client.secure_connect(
                {}, f"microservice-{service}", config={"isGlobalIdentity": False}
            )
            await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)
            ids[service] = agent.identity.aztp_id
        for i in range(len(services)):
            for j in range(i + 1, len(services)):
                await client.link_identities(
                    ids[services[i]],
                    ids[services[j]],
                    "tier_communication",
                    metadata={"tier": tier, "security_level": level},
                )
        print(f"   {flow['name']:<32} {', '.join(services)}")
    cross_tier_links = [
        ("web-ui", "user-service"),
        ("mobile-api", "order-service"),
        ("user-service", "user-db"),
        ("order-service", "order-db"),
        ("payment-service", "analytics-db"),
    ]
    for source, target in cross_tier_links:
        await client.link_identities(
            ids[source],
            ids[target],
            "cross_tier_communication",
            metadata={"communication_type": "api_call"},
        )
        print(f"   Cross-tier link: {source} -> {target}")
    print("   Who may call whom (verify_authorize_identity_connection):")
    for source, target in (
        ("web-ui", "user-service"),
        ("user-service", "user-db"),
        ("web-ui", "user-db"),
        ("user-db", "user-service"),
    ):
        allowed = await client.verify_authorize_identity_connection(ids[source], ids[target])
        print(f"     {source} -> {target}: {'allowed' if allowed else 'denied (no link)'}")


async def flow_context_security(client: Aztp) -> None:
    print("\n== 4. Context-aware security")
    contexts = [
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
    for context in contexts:
        flow = await client.create_flow(
            context["name"],
            description=f"Flow with {context['security_level']} security",
            discoverable="private",
            metadata={k: context[k] for k in ("security_level", "allowed_actions", "environment")},
        )
        agent = await client.secure_connect(
            {}, f"{context['environment']}-secure-agent", config={"isGlobalIdentity": False}
        )
        await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)
        policy = await client.create_policy(
            f"{context['name']}-actions",
            {"Statement": [{"Effect": "Allow", "Action": context["allowed_actions"]}]},
        )
        await client.attach_policy(agent.identity.aztp_id, policy["code"])
        valid = await client.verify_identity_by_aztp_id(
            agent.identity.aztp_id, identity_flow_id=flow["_id"]
        )
        perms = await client.check_identity_policy_permissions(
            agent.identity.aztp_id, {"actions": ["read", "write", "debug"]}
        )
        print(f"   {context['name']}: valid in flow {valid}; permissions {perms['actions']}")


async def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="astha.ai")
    await environment_flows(client)
    await cicd_pipeline_flows(client)
    await microservices_flow_architecture(client)
    await flow_context_security(client)


if __name__ == "__main__":
    asyncio.run(main())
