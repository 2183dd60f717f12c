"""``aztp-agents audit``: tail, and verify detecting an edited, dropped or truncated chain."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.support.cli import Run


def test_audit_tail(run: Run, crew: dict[str, str]) -> None:
    entries = run.json("audit", "tail")
    assert [e["action"] for e in entries][-2:] == ["flow.add_identity", "link.create"]
    assert len(run.json("audit", "tail", "-n", "2")) == 2
    assert len(run.json("audit", "tail", "-n", "0")) == len(entries)
    flows = run.json("audit", "tail", "--action", "flow.*")
    assert flows and {e["action"] for e in flows} <= {"flow.create", "flow.add_identity"}
    assert "link.create" in run("audit", "tail").stdout
    assert "no audit entries" in run("audit", "tail", "--action", "nothing.*").stdout
    run.fails("audit", "tail", "-n", "-1", code=2)


def test_audit_tail_names_and_filters(run: Run, crew: dict[str, str]) -> None:
    """Issue 16.7: people read names, not ids; --flow and --subject narrow the tail (the
    limit applies after them)."""
    from aztp_agents import Aztp, Guard

    run("identity", "issue", "bystander")
    run("flow", "create", "other")
    run("flow", "add", "other", "bystander")
    run("unlink", "researcher", "tool-search")
    client = Aztp(home=run.home)
    try:
        guard = Guard(flow="prod", client=client)
        assert not guard.check(crew["agent"], crew["tool"], "search").allowed  # no_link
    finally:
        client.close()

    out = " ".join(run("audit", "tail").stdout.split())
    assert "DENIED [no_link] tool tool-search (search) in flow prod" in out, out
    assert "flow=other" in out and crew["flow"] not in out
    assert crew["agent"] not in out  # by name only, for people
    assert crew["agent"] in run("audit", "tail", "--json").stdout  # ids for scripts

    in_prod = run.json("audit", "tail", "--flow", "prod", "-n", "0")
    assert [e["action"] for e in in_prod] == [
        "flow.create",
        "flow.add_identity",
        "flow.add_identity",
        "decision.tool_call",
    ]
    assert run.json("audit", "tail", "--flow", crew["flow"], "-n", "1") == in_prod[-1:]
    about = run.json("audit", "tail", "--subject", "tool-search", "-n", "0")
    assert [e["action"] for e in about] == [
        "identity.issue",
        "flow.add_identity",
        "link.create",  # as the link's target
        "link.delete",
        "decision.tool_call",  # as the decision's tool
    ]
    assert run.json("audit", "tail", "--subject", "bystander", "--flow", "prod") == []
    both = run.json("audit", "tail", "--subject", "bystander", "--flow", "other")
    assert [e["action"] for e in both] == ["flow.add_identity"]
    assert (
        "matching --flow 'prod'"
        in run("audit", "tail", "--flow", "prod", "--subject", "bystander").stdout
    )
    run.fails("audit", "tail", "--flow", "nope", code=3)


@pytest.mark.parametrize("tamper", ["edit", "drop_middle", "drop_last"])
def test_audit_verify_detects_tampering(run: Run, crew: dict[str, str], tamper: str) -> None:
    result = run("audit", "verify")
    assert "intact" in result.stdout
    report = run.json("audit", "verify")
    assert report["ok"] is True and report["entries"] >= 5

    db = sqlite3.connect(run.home / "aztp.db")
    with db:
        if tamper == "edit":
            db.execute(
                "UPDATE audit SET subject = 'aztp://evil.example/workload/x/node/y' WHERE seq = 3"
            )
        elif tamper == "drop_middle":
            db.execute("DELETE FROM audit WHERE seq = 2")
        else:
            db.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
    db.close()

    broken = run("audit", "verify", code=1)
    assert broken.stderr.startswith("audit chain broken:") and len(broken.stderr.splitlines()) == 1
    report = run.json("audit", "verify", code=1)
    assert report["ok"] is False and report["problem"]


def test_audit_checkpoint_detects_a_truncated_history(run: Run, crew: dict[str, str]) -> None:
    """Drop the last entries and move the head back: 'audit verify' says intact, 'audit verify
    --checkpoint' does not (issue 13.6)."""
    cp_file, key_file = run.home.parent / "cp.json", run.home.parent / "checkpoint.pem"
    written = run.json("audit", "checkpoint", "--out", str(cp_file))
    assert written["file"] == str(cp_file) and written["seq"] >= 5
    assert "written to" in run("audit", "checkpoint", "--public-key", "--out", str(key_file)).stdout
    assert run("audit", "checkpoint", "--public-key").stdout == key_file.read_text()
    assert json.loads(run("audit", "checkpoint").stdout)["checkpoint"]["kid"] == written["kid"]
    ok = run("audit", "verify", "--checkpoint", str(cp_file), "--public-key", str(key_file))
    assert f"checkpoint of entry {written['seq']}" in ok.stdout and "holds" in ok.stdout

    db = sqlite3.connect(run.home / "aztp.db")
    with db:
        n = written["seq"] - 2
        db.execute("DELETE FROM audit WHERE seq > ?", (n,))
        db.execute(
            "UPDATE audit_heads SET seq = ?, hash = (SELECT hash FROM audit WHERE seq = ?)", (n, n)
        )
    db.close()

    assert "intact" in run("audit", "verify").stdout  # the chain alone is fooled
    for args in ((), ("--public-key", str(key_file))):
        broken = run("audit", "verify", "--checkpoint", str(cp_file), *args, code=1)
        assert broken.stderr.startswith("audit chain broken: the chain ends at entry")
    report = run.json("audit", "verify", "--checkpoint", str(cp_file), code=1)
    assert report["ok"] is False and report["checkpoint"]["seq"] == written["seq"]
    run.fails("audit", "verify", "--public-key", str(key_file), code=2)
    run.fails("audit", "verify", "--checkpoint", str(run.home / "missing.json"), code=2)
    bad = run("audit", "verify", "--checkpoint", str(key_file), code=1)
    assert "cannot be read" in bad.stderr


def test_audit_check_proves_no_allow_after_a_revocation(run: Run, crew: dict[str, str]) -> None:
    """A real run: allowed, revoked, denied: 'audit check' passes; a forged allow on a later
    revision fails it (issue 13.9). 'audit tail' shows the revision of each entry."""
    from aztp_agents import Aztp, Guard
    from tests.authority.test_audit_order import _forge_allow

    client = Aztp(home=run.home)
    try:
        guard = Guard(flow="prod", client=client)
        assert guard.check(crew["agent"], crew["tool"], "search").allowed
        run("identity", "revoke", crew["tool"], "--reason", "leaked")
        assert not guard.check(crew["agent"], crew["tool"], "search").allowed
    finally:
        client.close()

    passed = run("audit", "check")
    assert passed.stdout.startswith("audit check passed: 1 of 2 decisions allowed")
    report = run.json("audit", "check")
    assert report["ok"] is True and report["revocations"] == 1 and report["violations"] == []
    tail = run.json("audit", "tail", "--action", "identity.revoke")
    revision = tail[0]["data"]["revision"]
    assert "revision" in run("audit", "tail").stdout

    _forge_allow(run.home / "aztp.db", crew["agent"], crew["tool"], crew["flow"], revision, True)
    failed = run("audit", "check", code=1)
    first, last = failed.stderr.splitlines()
    assert first.startswith(f"allowed at revision {revision}") and "identity.revoke" in first
    assert last == "audit check failed: 1 allows decided on a revision at or after a revocation"
    report = run.json("audit", "check", code=1)
    assert report["ok"] is False and report["violations"][0]["revision"] == revision
