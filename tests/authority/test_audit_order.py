"""The audit log proves the order of decisions and revocations by state revision (issue 13.9).

Time stamps cannot: decisions are group-committed and enforcement points' clocks differ. Every
state change records the revision it makes, every decision the revision it was decided on,
and ``check_decision_order`` (``aztp-agents audit check``) reports any allow decided on a
revision at or after a revocation of its agent, tool, flow membership or link.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp, Guard
from aztp_agents.audit import canonical_json, entry_hash
from aztp_agents.audit_check import check_decision_order
from tests.authority.helpers import run
from tests.authority.test_audit_checkpoints import _rechain


def _entries(client: Aztp, action: str | None = None) -> list[dict[str, Any]]:
    return run(client.audit(action=action))


def _crew(client: Aztp, flow: str = "ordered") -> tuple[Guard, str, str]:
    guard = Guard(flow=flow, client=client)
    crew = guard.enroll("agent/researcher", ["tool/web-search"])
    return guard, crew.agent_id, crew.tools["tool/web-search"]


def test_state_changes_record_the_revision_they_make(client: Aztp, authority: Any) -> None:
    guard, agent, tool = _crew(client)
    before = guard.check(agent, tool, "web_search")
    assert before.allowed
    run(client.revoke_identity(tool, reason="key leaked"))
    revision = authority.store.revision()
    (revoke,) = _entries(client, "identity.revoke")
    assert revoke["data"]["revision"] == revision > before.revision
    after = guard.check(agent, tool, "web_search")
    assert not after.allowed and after.revision >= revision
    decisions = _entries(client, "decision.tool_call")
    assert [d["data"]["revision"] for d in decisions] == [before.revision, after.revision]
    for action in ("flow.add_identity", "link.create"):
        assert all(isinstance(e["data"]["revision"], int) for e in _entries(client, action))


def test_a_real_run_passes_the_check(client: Aztp) -> None:
    """Allowed, then each kind of revocation, then denied: no allow on a revoked revision."""
    guard, agent, tool = _crew(client)
    flow = guard.flow_id
    assert guard.check(agent, tool, "web_search").allowed
    run(client.revoke_flow_identity(tool, flow, reason="x"))
    assert not guard.check(agent, tool, "web_search").allowed
    run(client.reinstate_flow_identity(tool, flow))
    assert guard.check(agent, tool, "web_search").allowed  # given back: allowed again
    run(client.unlink_identities(agent, tool))
    assert not guard.check(agent, tool, "web_search").allowed
    run(client.link_identities(agent, tool))
    assert guard.check(agent, tool, "web_search").allowed
    run(client.revoke_identity(agent, reason="done"))
    assert not guard.check(agent, tool, "web_search").allowed

    report = check_decision_order(_entries(client))
    assert report.ok, report.violations
    assert (report.decisions, report.allowed, report.revocations) == (6, 3, 3)
    assert report.unrevisioned == 0


def _forge_allow(db: Path, agent: str, tool: str, flow: str, revision: int, rechain: bool) -> None:
    """Append an allow decided 'on' ``revision`` (after the revocation), as an attacker would."""
    con = sqlite3.connect(db)
    with con:
        org, seq, prev = con.execute(
            "SELECT org_id, seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        data = canonical_json(
            {
                "allowed": True,
                "reason": "allowed",
                "tool": tool,
                "toolName": "web_search",
                "flowId": flow,
                "revision": revision,
                "enforced": True,
            }
        )
        ts = "2020-01-01T00:00:00.000Z"  # the forger may pick any time: revisions decide
        digest = entry_hash(org, seq + 1, ts, "u", "decision.tool_call", agent, data, prev)
        con.execute(
            "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)",
            (org, seq + 1, ts, "u", "decision.tool_call", agent, data, prev, digest),
        )
        if rechain:
            _rechain(con)
    con.close()


@pytest.mark.parametrize("rechain", [False, True], ids=["chain-broken", "chain-recomputed"])
def test_a_forged_allow_after_a_revocation_is_reported(
    client: Aztp, db_path: Path, rechain: bool
) -> None:
    guard, agent, tool = _crew(client)
    assert guard.check(agent, tool, "web_search").allowed
    run(client.revoke_flow_identity(tool, guard.flow_id, reason="x"))
    (revoke,) = _entries(client, "flow.revoke_identity")
    assert check_decision_order(_entries(client)).ok

    _forge_allow(db_path, agent, tool, guard.flow_id, revoke["data"]["revision"], rechain)
    assert run(client.verify_audit())["ok"] is rechain
    report = check_decision_order(_entries(client))
    assert not report.ok and len(report.violations) == 1
    (v,) = report.violations
    assert (v["agent"], v["tool"], v["revision"]) == (agent, tool, revoke["data"]["revision"])
    assert v["revokedBy"]["action"] == "flow.revoke_identity"
    assert v["revokedBy"]["seq"] == revoke["seq"]
