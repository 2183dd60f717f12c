"""The tool-call decision, without any agent framework: every reason, in order.

This is what runs before every tool call of a secured CrewAI crew or LangChain agent. A
``Guard`` belongs to one flow; ``enroll`` issues identities for an agent and its tools, adds
them to the flow and links the agent to each tool; ``check`` decides one call. Checks run in
a fixed order and the first failure is the reason:

    agent_unknown, agent_revoked, agent_not_in_flow, agent_revoked_in_flow,
    tool_unknown, tool_revoked, tool_not_in_flow, tool_revoked_in_flow,
    no_link, policy_denied  ->  otherwise allowed

and any error reaching the authority is ``authority_unavailable``: a denial (fail closed).
Each step below breaks one thing and shows the decision; every decision is audited.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/tool_call_decisions.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile

from aztp_agents import Aztp, Decision, Guard


def show(step: str, decision: Decision) -> None:
    verdict = "ALLOWED" if decision.allowed else "DENIED "
    print(f"{step:<46} {verdict} {decision.reason.value:<22} {decision.explanation}")


async def main() -> None:
    logging.getLogger("aztp_agents.guard").setLevel(
        logging.CRITICAL
    )  # we print decisions ourselves
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="astha.ai")
    guard = Guard(flow="support-prod", client=client)
    crew = guard.enroll("agent/support-bot", ["tool/lookup-order", "tool/refund"])
    agent, lookup, refund = (
        crew.agent_id,
        crew.tools["tool/lookup-order"],
        crew.tools["tool/refund"],
    )
    flow_id = guard.flow_id
    print(f"flow support-prod ({flow_id}): {agent}\n  linked to {lookup}\n        and {refund}\n")

    show("agent -> lookup_order", guard.check(agent, lookup, "lookup_order"))
    show(
        "an agent nobody issued",
        guard.check("aztp://astha.ai/workload/production/node/agent/ghost", lookup, "lookup_order"),
    )
    show("a caller with no identity at all", guard.check(None, lookup, "lookup_order"))

    outsider = (await client.secure_connect({}, "agent/outsider")).identity.aztp_id
    await client.link_identities(outsider, lookup, "tool_access")
    show("linked, but not a member of the flow", guard.check(outsider, lookup, "lookup_order"))

    show(
        "a tool nobody issued",
        guard.check(agent, "aztp://astha.ai/workload/production/node/tool/ghost", "ghost"),
    )
    shell = (await client.secure_connect({}, "tool/shell")).identity.aztp_id
    show("a tool outside the flow", guard.check(agent, shell, "shell"))
    await client.add_identity_to_flow(flow_id, shell)
    show("the tool in the flow, but no link to it", guard.check(agent, shell, "shell"))

    # With a policy attached, a call needs a matching Allow: this allow-list leaves out refund.
    policy = await client.create_policy(
        "lookups-only", {"Statement": [{"Effect": "Allow", "Action": "tool:lookup_order"}]}
    )
    await client.attach_policy(agent, policy["code"])
    show("an allow-list without tool:refund", guard.check(agent, refund, "refund"))
    no_refunds = await client.create_policy(
        "no-refunds", {"Statement": [{"Effect": "Deny", "Action": "tool:refund"}]}
    )
    await client.attach_policy(refund, no_refunds["code"])
    show("a Deny on the tool (Deny wins)", guard.check(agent, refund, "refund"))

    await client.revoke_flow_identity(lookup, flow_id, reason="vendor API compromised")
    show("the tool revoked in this flow", guard.check(agent, lookup, "lookup_order"))
    await client.revoke_identity(lookup, reason="decommissioned")
    show("the tool revoked globally", guard.check(agent, lookup, "lookup_order"))
    await client.reissue_identity(lookup)
    await client.reinstate_flow_identity(lookup, flow_id)
    show("reissued and reinstated", guard.check(agent, lookup, "lookup_order"))

    await client.revoke_flow_identity(agent, flow_id, reason="prompt injection suspected")
    show("the agent revoked in this flow", guard.check(agent, lookup, "lookup_order"))
    await client.revoke_identity(agent, reason="incident")
    show("the agent revoked globally", await guard.acheck(agent, lookup, "lookup_order"))

    down = Guard(
        flow="support-prod",
        client=Aztp(api_key="aztp_unused", base_url="http://127.0.0.1:9", timeout=1.0),
        timeout=1.0,
    )
    show("the authority cannot be reached", down.check(agent, lookup, "lookup_order"))

    observe = Guard(flow="support-prod", client=client, mode="observe")
    decision = observe.check(agent, lookup, "lookup_order")
    print(
        f"\nobserve mode (rollout): allowed={decision.allowed} enforced={decision.enforced} "
        f"blocks={decision.blocks} reason={decision.reason}"
    )

    reasons = [e["data"]["reason"] for e in await client.audit(action="decision.tool_call")]
    print(
        f"\naudited decisions: {len(reasons)}; chain intact: {(await client.verify_audit())['ok']}"
    )


if __name__ == "__main__":
    asyncio.run(main())
