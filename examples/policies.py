"""Policies: create, attach, check — and an explicit Deny wins.

A policy is an IAM-style document (Allow / Deny / Audit statements over actions, optional
resources and conditions) attached to identities. This example:

1. creates a policy and attaches it to an agent;
2. reads it back the official client's way (``get_policy`` + ``get_policy_value``) and checks
   actions with ``is_action_allowed`` — Deny wins, wildcards match (the official client's
   ``is_action_allowed`` ignores Deny; its answer is shown next to ours);
3. checks permissions for several actions at once (``check_identity_policy_permissions``);
4. lets the policy decide real tool calls through a ``Guard``: ``policy_denied``, and Audit
   statements that allow but mark the decision;
5. uses a condition on the call's context, and an OIAP access evaluation.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/policies.py
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tempfile

from aztp_agents import Aztp, Guard

RESEARCHER_POLICY = {
    "Version": "2025-09-10",
    "Statement": [
        {"Sid": "tools", "Effect": "Allow", "Action": "tool:*"},
        {"Sid": "mail-team-grant", "Effect": "Allow", "Action": "tool:send_email"},
        {
            "Sid": "security-team-deny",
            "Effect": "Deny",
            "Action": ["tool:delete", "tool:send_email"],
        },
        {"Sid": "watch-search", "Effect": "Audit", "Action": "tool:search"},
        {
            "Sid": "prod-db-only-in-business-hours",
            "Effect": "Deny",
            "Action": "tool:query_db",
            "Condition": {"StringEquals": {"window": "after-hours"}},
        },
        {"Sid": "reports", "Effect": "Allow", "Action": "access", "Resource": "reports/*"},
    ],
}


def official_is_action_allowed(policy: dict, action: str) -> bool:
    """What aztp-client 1.0.42 answers (it prints the API key when constructed: silenced)."""
    from aztp_client import Aztp as OfficialAztp

    with contextlib.redirect_stdout(io.StringIO()):
        official = OfficialAztp(api_key="unused")
    return official.is_action_allowed(policy, action)


async def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="astha.ai")

    guard = Guard(flow="research-prod", client=client)
    crew = guard.enroll("agent/researcher", ["search", "delete", "send_email", "query_db"])
    agent = crew.agent_id

    print("== 1. Create and attach")
    policy = await client.create_policy("researcher-policy", RESEARCHER_POLICY)
    print(
        f"   created {policy['code']} ({policy['policyName']}), {len(policy['policyStatement']['Statement'])} statements"
    )
    await client.attach_policy(agent, policy["code"])
    print(f"   attached to {agent}")

    print("\n== 2. get_policy / get_policy_value / is_action_allowed")
    policies = await client.get_policy(agent)
    statement = Aztp.get_policy_value(policies, "code", policy["code"])
    for action in (
        "tool:search",
        "tool:read_file",
        "tool:delete",
        "tool:send_email",
        "admin:reset",
    ):
        print(f"   {action} allowed: {client.is_action_allowed(statement, action)}")
    print("   tool:send_email is granted by one statement and denied by another; the Deny wins.")
    print(
        f"   official client would say: {official_is_action_allowed(statement, 'tool:send_email')} (it ignores Deny)"
    )

    print("\n== 3. check_identity_policy_permissions")
    perms = await client.check_identity_policy_permissions(
        agent, {"actions": ["tool:search", "tool:delete", "tool:anything"]}
    )
    print(f"   {perms['actions']}  all allowed: {perms['allowed']}")

    print("\n== 4. The policy in tool-call decisions")
    for tool_name in ("search", "delete", "send_email"):
        decision = guard.check(agent, crew.tools[tool_name], tool_name)
        print(f"   {tool_name:<11} {decision.reason.value:<14} audit-marked: {decision.audit}")

    print("\n== 5. Conditions and OIAP")
    for window in ("business-hours", "after-hours"):
        decision = guard.check(
            agent, crew.tools["query_db"], "query_db", context={"window": window}
        )
        print(f"   query_db during {window:<15} {decision.reason.value}")
    for resource in ("reports/q3.pdf", "payroll/2025.csv"):
        answer = await client.oiap_evaluate(agent, resource, user_id="alice")
        print(f"   OIAP access to {resource:<17} {answer['decision']}")

    print("\n== Deny wins across identities: a Deny on the tool blocks every agent")
    lockdown = await client.create_policy(
        "lockdown", {"Statement": [{"Effect": "Deny", "Action": "tool:invoke"}]}
    )
    await client.attach_policy(crew.tools["search"], lockdown["code"])
    print(f"   search: {guard.check(agent, crew.tools['search'], 'search').reason}")
    await client.detach_policy(crew.tools["search"], lockdown["code"])
    print(f"   after detach: {guard.check(agent, crew.tools['search'], 'search').reason}")


if __name__ == "__main__":
    asyncio.run(main())
