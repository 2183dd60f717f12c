"""The audit chain: operations recorded, tampering detected."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp
from aztp_agents.authority import audit_log
from tests.authority.helpers import issue, run

# =========================================================================================
# Audit log
# =========================================================================================


def _populate(client: Aztp) -> None:
    a, b = issue(client, "audit-a", "audit-b")
    flow = run(client.create_flow("audit-flow"))["_id"]
    run(client.add_identity_to_flow(flow, a))
    run(client.link_identities(a, b))
    run(client.revoke_identity(b, reason="test"))


def test_audit_chain_records_operations_and_verifies(client: Aztp) -> None:
    _populate(client)
    entries = run(client.audit())
    actions = [e["action"] for e in entries]
    for action in (
        "org.create",
        "identity.issue",
        "flow.create",
        "flow.add_identity",
        "link.create",
        "identity.revoke",
    ):
        assert action in actions
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0]["prev_hash"] == "0" * 64
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(entries))
    report = run(client.verify_audit())
    assert report == {"ok": True, "entries": len(entries), "problem": None, "seq": None}


def _tamper_edit(con: sqlite3.Connection) -> None:
    con.execute("UPDATE audit SET data = ? WHERE seq = 3", (json.dumps({"name": "evil"}),))


def _tamper_delete(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM audit WHERE seq = 3")


def _tamper_reorder(con: sqlite3.Connection) -> None:
    con.execute("UPDATE audit SET seq = -1 WHERE seq = 3")
    con.execute("UPDATE audit SET seq = 3 WHERE seq = 4")
    con.execute("UPDATE audit SET seq = 4 WHERE seq = -1")


def _tamper_drop_tail(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")


def _tamper_rehash(con: sqlite3.Connection) -> None:
    """Edit an entry and recompute its own hash: the next entry no longer follows it."""
    from aztp_agents.audit import canonical_json, entry_hash

    org_id, seq, ts, actor, action, subject, prev_hash = con.execute(
        "SELECT org_id, seq, ts, actor, action, subject, prev_hash FROM audit WHERE seq = 3"
    ).fetchone()
    data = canonical_json({"name": "evil"})
    digest = entry_hash(org_id, seq, ts, actor, action, subject, data, prev_hash)
    con.execute("UPDATE audit SET data = ?, hash = ? WHERE seq = 3", (data, digest))


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (_tamper_edit, "entry 3 was edited"),
        (_tamper_delete, "entry 4 found where 3 was expected"),
        (_tamper_reorder, "entry 3 does not follow entry 2"),
        (_tamper_drop_tail, "dropped from the end"),
        (_tamper_rehash, "entry 4 does not follow entry 3"),
    ],
    ids=["edit", "delete", "reorder", "drop-tail", "edit-and-rehash"],
)
def test_audit_tampering_is_detected(
    client: Aztp, db_path: Path, tamper: Callable[..., None], problem: str
) -> None:
    _populate(client)
    assert run(client.verify_audit())["ok"] is True
    con = sqlite3.connect(db_path)
    with con:
        tamper(con)
    con.close()
    report = run(client.verify_audit())
    assert report["ok"] is False
    assert problem in report["problem"]


def test_audit_limit_keeps_the_newest_matching_entries_under_newer_batches(
    client: Aztp, authority: Any, principal: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``limit`` applies after the ``action`` filter: flow entries older than many batched
    decisions are still found, also when the search pages backwards over several pages."""
    agent, tool = issue(client, "lim-agent", "lim-tool")
    flows = [run(client.create_flow(f"lim-flow-{i}"))["_id"] for i in range(4)]
    for ident in (agent, tool):
        run(client.add_identity_to_flow(flows[0], ident))
    run(client.link_identities(agent, tool))
    for _ in range(6):  # six batches of decisions, all newer than every flow.* entry
        for _ in range(20):
            authority.decide(principal, flow_id=flows[0], agent=agent, tool=tool, tool_name="s")
        authority.store.flush_audit()

    everything = run(client.audit())
    flow_entries = [e for e in everything if e["action"].startswith("flow.")]
    decisions = [e for e in everything if e["action"].startswith("decision.")]
    assert len(flow_entries) == 6 and len(decisions) == 120
    for page in (500, 2, 1):  # one page, and the backward paging over many small pages
        monkeypatch.setattr(audit_log, "_PAGE_ROWS", page)
        assert run(client.audit(limit=3, action="flow.*")) == flow_entries[-3:]
        assert run(client.audit(limit=3, action="flow.creat?")) == flow_entries[1:4]
        assert run(client.audit(limit=50, action="decision.*")) == decisions[-50:]
        assert run(client.audit(limit=100, action="flow.*")) == flow_entries
        assert run(client.audit(limit=4)) == everything[-4:]
        assert run(client.audit(limit=3, action="nothing.*")) == []
