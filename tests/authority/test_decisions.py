"""Tool-call decisions through the authority: the order of checks, cross-process freshness, the memoized fast path, decision audit records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aztp_agents import Aztp, Reason
from aztp_agents.audit import (
    CallContext,
)
from tests.authority.helpers import aztp, in_another_process, issue, run

# =========================================================================================
# Tool-call decisions (order of checks)
# =========================================================================================


def test_decision_reasons_in_order(client: Aztp, authority: Any, principal: Any) -> None:
    agent, tool, stranger = issue(client, "dec-agent", "dec-tool", "dec-stranger")
    flow = run(client.create_flow("dec-flow"))["_id"]

    def decide(a: str = agent, t: str = tool, name: str = "search") -> Any:
        return authority.decide(principal, flow_id=flow, agent=a, tool=t, tool_name=name)

    assert decide(a=aztp("ghost")).reason is Reason.AGENT_UNKNOWN
    assert decide().reason is Reason.AGENT_NOT_IN_FLOW
    run(client.add_identity_to_flow(flow, agent))
    assert decide().reason is Reason.TOOL_NOT_IN_FLOW
    assert decide(t=aztp("ghost-tool")).reason is Reason.TOOL_UNKNOWN
    run(client.add_identity_to_flow(flow, tool))
    assert decide().reason is Reason.NO_LINK
    run(client.link_identities(agent, tool, "uses_tool"))
    ok = decide()
    assert ok.allowed and ok.reason is Reason.ALLOWED and ok.flow == flow
    assert decide(a=tool, t=agent).reason is Reason.NO_LINK  # directed

    deny = run(
        client.create_policy(
            "no-delete", {"Statement": [{"Effect": "Deny", "Action": "tool:delete_file"}]}
        )
    )
    run(client.attach_policy(agent, deny["code"]))
    assert decide(name="delete_file").reason is Reason.POLICY_DENIED
    # With a policy attached, nothing matching is not an allow: a deny-list alone restricts.
    no_allow = decide(name="search")
    assert no_allow.reason is Reason.POLICY_DENIED
    assert no_allow.detail == "no attached policy allows tool:search"
    rest = run(
        client.create_policy("rest", {"Statement": [{"Effect": "Allow", "Action": "tool:*"}]})
    )
    run(client.attach_policy(agent, rest["code"]))
    # Deny wins, and the denial names the statement (its actions, whom it is attached to).
    assert decide(name="delete_file").detail == (
        f"a Deny statement matches: Deny tool:delete_file (attached to {agent})"
    )
    assert decide(name="search").allowed
    audit = run(
        client.create_policy("watch", {"Statement": [{"Effect": "Audit", "Action": "tool:search"}]})
    )
    run(client.attach_policy(tool, audit["code"]))
    marked = decide(name="search")
    assert marked.allowed and marked.audit

    prod_only = run(
        client.create_policy(
            "no-prod-writes",
            {
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Action": "tool:write",
                        "Condition": {"StringEquals": {"env": "prod"}},
                    }
                ]
            },
        )
    )
    run(client.attach_policy(agent, prod_only["code"]))
    in_prod = authority.decide(
        principal, flow_id=flow, agent=agent, tool=tool, tool_name="write", context={"env": "prod"}
    )
    in_dev = authority.decide(
        principal, flow_id=flow, agent=agent, tool=tool, tool_name="write", context={"env": "dev"}
    )
    assert in_prod.reason is Reason.POLICY_DENIED and in_dev.allowed

    run(client.revoke_flow_identity(tool, flow))
    assert decide().reason is Reason.TOOL_REVOKED_IN_FLOW
    run(client.revoke_identity(tool))
    assert decide().reason is Reason.TOOL_REVOKED
    run(client.revoke_flow_identity(agent, flow))
    assert decide().reason is Reason.AGENT_REVOKED_IN_FLOW
    run(client.revoke_identity(agent))
    assert decide().reason is Reason.AGENT_REVOKED
    assert authority.decide(principal, flow_id="0" * 24, agent=agent, tool=tool).allowed is False
    assert decide(a=stranger).reason is Reason.AGENT_NOT_IN_FLOW
    decisions = run(client.audit(action="decision.tool_call"))
    assert len(decisions) == 20
    assert decisions[-1]["data"]["reason"] == "agent_not_in_flow"
    assert run(client.verify_audit())["ok"] is True


# =========================================================================================
# Cross-process freshness
# =========================================================================================


def test_revocation_in_another_process_denies_the_very_next_decision(
    client: Aztp, authority: Any, principal: Any, aztp_home: Path
) -> None:
    agent, tool = issue(client, "xp-agent", "xp-tool")
    flow = run(client.create_flow("xp-flow"))["_id"]
    run(client.add_identity_to_flow(flow, agent))
    run(client.add_identity_to_flow(flow, tool))
    run(client.link_identities(agent, tool))

    def decide() -> Any:
        return authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search")

    assert decide().allowed  # warm: the snapshot is cached in this process
    assert decide().allowed
    in_another_process(aztp_home, ("revoke_identity", agent, "revoked elsewhere"))
    denied = decide()
    assert not denied.allowed and denied.reason is Reason.AGENT_REVOKED
    in_another_process(aztp_home, ("reissue_identity", agent))
    assert decide().allowed
    in_another_process(aztp_home, ("revoke_flow_identity", tool, flow, "flow-only"))
    assert decide().reason is Reason.TOOL_REVOKED_IN_FLOW
    in_another_process(
        aztp_home, ("unlink_identities", agent, tool), ("reinstate_flow_identity", tool, flow)
    )
    assert decide().reason is Reason.NO_LINK
    assert run(client.verify_audit())["ok"] is True


def test_memoized_fast_path_serves_only_allowed_current_decisions(
    client: Aztp, authority: Any, principal: Any, aztp_home: Path
) -> None:
    """``decide_memoized`` answers only a call already allowed on the current state; any
    write (here or in another process) and any denial send callers to the full path, and it
    audits exactly what it answers."""
    agent, tool = issue(client, "fp-agent", "fp-tool")
    flow = run(client.create_flow("fp-flow"))["_id"]
    for ident in (agent, tool):
        run(client.add_identity_to_flow(flow, ident))
    run(client.link_identities(agent, tool))
    key = (principal.user_id, flow, agent, tool, "search", True)

    def memoized() -> Any:
        # The store's files confirmed first, as the decision path does every 0.25 s (a few
        # system calls): else a slow step before (an audit flush) expires the interval and the
        # answer is None for that reason alone.
        authority.changes.confirm_files()
        return authority.decide_memoized(principal, key, CallContext(call="m"))

    def audited() -> int:
        return len(run(client.audit(action="decision.tool_call")))

    assert memoized() is None  # nothing decided yet
    assert authority.decide(
        principal, flow_id=flow, agent=agent, tool=tool, tool_name="search"
    ).allowed
    before = audited()
    fast = memoized()
    assert fast is not None and fast.allowed and fast.reason is Reason.ALLOWED and fast.flow == flow
    assert audited() == before + 1
    assert run(client.audit(action="decision.tool_call"))[-1]["data"]["context"] == {"call": "m"}

    run(client.revoke_flow_identity(agent, flow, "in-process write"))  # acknowledged here
    assert memoized() is None
    denied = authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search")
    assert denied.reason is Reason.AGENT_REVOKED_IN_FLOW
    assert memoized() is None  # a denial is never served from the memo
    run(client.reinstate_flow_identity(agent, flow))
    assert authority.decide(
        principal, flow_id=flow, agent=agent, tool=tool, tool_name="search"
    ).allowed
    assert memoized() is not None

    in_another_process(aztp_home, ("unlink_identities", agent, tool))
    assert memoized() is None
    assert (
        authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search").reason
        is Reason.NO_LINK
    )
    assert run(client.verify_audit())["ok"] is True


def test_own_audit_commits_keep_the_snapshot_and_other_writes_still_deny_at_once(
    client: Aztp, authority: Any, principal: Any, aztp_home: Path
) -> None:
    """An audit batch moves SQLite's change counter; the writer tells the authority the
    revision did not move, so decisions keep their snapshot. A state change by another process
    between, or right after, audit batches is still seen by the very next decision."""
    agent, tool = issue(client, "ac-agent", "ac-tool")
    flow = run(client.create_flow("ac-flow"))["_id"]
    for ident in (agent, tool):
        run(client.add_identity_to_flow(flow, ident))
    run(client.link_identities(agent, tool))
    refreshes: list[int] = []
    real_refresh = authority.changes.read_revision

    def counting_refresh() -> None:
        refreshes.append(1)
        real_refresh()

    authority.changes.read_revision = counting_refresh

    def decide() -> Any:
        return authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search")

    assert decide().allowed
    for _ in range(5):  # five audit batches, each followed by decisions
        token = authority.store.change_token()
        authority.store.flush_audit()
        assert authority.store.change_token() != token  # the batch did move the counter ...
        before = len(refreshes)
        assert decide().allowed and decide().allowed
        assert len(refreshes) == before  # ... and no decision had to re-read the revision

    authority.store.flush_audit()
    in_another_process(aztp_home, ("revoke_identity", agent, "between batches"))
    assert decide().reason is Reason.AGENT_REVOKED
    in_another_process(aztp_home, ("reissue_identity", agent))
    assert decide().allowed
    in_another_process(aztp_home, ("revoke_flow_identity", agent, flow, "then a batch"))
    authority.store.flush_audit()  # our batch commits after the other process's change
    assert decide().reason is Reason.AGENT_REVOKED_IN_FLOW


def test_decision_audit_keeps_the_context_as_it_was_when_decided(
    client: Aztp, authority: Any, principal: Any
) -> None:
    """Audit data is encoded later by the writer; the context is frozen at decision time."""
    agent, tool = issue(client, "ctx-agent", "ctx-tool")
    flow = run(client.create_flow("ctx-flow"))["_id"]
    for ident in (agent, tool):
        run(client.add_identity_to_flow(flow, ident))
    run(client.link_identities(agent, tool))
    tags = ["first"]
    for i in range(3):
        authority.decide(
            principal,
            flow_id=flow,
            agent=agent,
            tool=tool,
            tool_name="search",
            context={"call": f"c{i}", "n": i, "tags": tags, "ok": True, "none": None},
        )
        tags.append(f"changed after call {i}")
    entries = run(client.audit(action="decision.tool_call"))
    contexts = [e["data"]["context"] for e in entries if e["data"].get("context", {}).get("call")]
    assert contexts == [
        {"call": "c0", "n": 0, "tags": "['first']", "ok": True, "none": None},
        {
            "call": "c1",
            "n": 1,
            "tags": "['first', 'changed after call 0']",
            "ok": True,
            "none": None,
        },
        {
            "call": "c2",
            "n": 2,
            "tags": "['first', 'changed after call 0', 'changed after call 1']",
            "ok": True,
            "none": None,
        },
    ]
    assert run(client.verify_audit())["ok"] is True
