"""``aztp-agents audit``: tail, and verify detecting an edited, dropped or truncated chain."""

from __future__ import annotations

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
