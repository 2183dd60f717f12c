"""``aztp-agents identity``: issue (and credential files), list, show, revoke, reissue."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.support.cli import Run


def test_identity_issue_list_show(run: Run) -> None:
    human = run("identity", "issue", "researcher").stdout
    assert "aztp://aztp.local/workload/production/node/researcher" in human
    assert "spiffe://aztp.local/workload/production/node/researcher" in human
    assert "PRIVATE KEY" not in human

    doc = run.json(
        "identity",
        "issue",
        "planner",
        "--global",
        "--environment",
        "staging",
        "--trust-domain",
        "example.org",
        "--parent",
        "researcher",
    )
    assert doc["aztpId"] == "aztp://example.org/workload/staging/node/planner"
    assert doc["isGlobalIdentity"] is True and doc["identityType"] == "global"
    assert doc["parentIdentity"].endswith("/researcher")
    assert doc["spiffeId"] == "spiffe://example.org/workload/staging/node/planner"
    assert "privateKey" not in json.dumps(doc) and "PRIVATE KEY" not in json.dumps(doc)

    again = run.json("identity", "issue", "researcher")  # idempotent by name
    assert (
        again["aztpId"].endswith("/researcher")
        and again["_id"] == run.json("identity", "show", "researcher")["_id"]
    )

    listed = run.json("identity", "list")
    assert sorted(d["name"] for d in listed) == ["planner", "researcher"]
    assert "researcher" in run("identity", "list").stdout

    by_name = run.json("identity", "show", "planner")
    by_id = run.json("identity", "show", doc["aztpId"])
    by_spiffe = run.json("identity", "show", doc["spiffeId"])
    assert by_name["_id"] == by_id["_id"] == by_spiffe["_id"]
    assert by_name["flows"] == []
    assert "staging" in run("identity", "show", "planner").stdout


def test_identity_issue_writes_credentials(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "creds"
    doc = run.json("identity", "issue", "worker", "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["bundle.pem", "svid.key", "svid.pem"]
    assert stat.S_IMODE((out / "svid.key").stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in (out / "svid.pem").read_text()
    assert "PRIVATE KEY" in (out / "svid.key").read_text()
    assert len(doc["files"]) == 3


def test_identity_issue_never_writes_a_key_through_a_planted_symlink(
    run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "creds"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    (out / "svid.key").symlink_to(victim)  # an attacker's trap where the key will go
    (out / "svid.pem").symlink_to(victim)
    run.json("identity", "issue", "trapped", "--out", str(out))
    assert victim.read_text() == "precious\n"  # nothing written through either link
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    key = out / "svid.key"
    assert not key.is_symlink() and "PRIVATE KEY" in key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (out / "svid.pem").is_symlink()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_identity_revoke_and_reissue(run: Run, crew: dict[str, str]) -> None:
    answer = run.json("identity", "revoke", "researcher", "--reason", "compromised")
    assert answer["status"] == "revoked" and answer["reason"] == "compromised"
    shown = run.json("identity", "show", "researcher")
    assert shown["status"] == "revoked" and shown["revocationReason"] == "compromised"
    assert "compromised" in run("identity", "show", "researcher").stdout
    run.fails("identity", "revoke", "researcher", code=2, contains="already revoked")
    run("verify", "researcher", code=1)
    run.fails("identity", "issue", "researcher", code=1, contains="reissue")

    reissued = run.json("identity", "reissue", crew["agent"])
    assert reissued["status"] == "active" and "privateKey" not in reissued
    assert "reissued" in run("identity", "reissue", "researcher").stdout
    run("verify", "researcher", code=0)
    assert "revoked" in run("identity", "revoke", "tool-search").stdout


def test_identity_import_issues_many_and_enrolls_them(run: Run, tmp_path: Path) -> None:
    flow = run.json("flow", "create", "fleet")["_id"]
    names = tmp_path / "names.txt"
    names.write_text("# one per line\nworker-1\nworker-2\n\nworker-3\nworker-2\n")
    doc = run.json("identity", "import", str(names), "--flow", "fleet")
    assert doc == {"issued": 3, "existing": 0, "flowId": flow}
    members = {m["aztpId"] for m in run.json("flow", "show", "fleet")["identities"]}
    assert members == {f"aztp://aztp.local/workload/production/node/worker-{i}" for i in (1, 2, 3)}

    names.write_text("worker-3\nworker-4\n")
    again = run("identity", "import", str(names)).stdout
    assert "imported 1 identities (1 already existed)" in again
    assert run.json("identity", "show", "worker-4")["status"] == "active"
    missing = run("identity", "import", str(names), "--flow", "no-such-flow", code=3)
    assert "not found" in missing.stderr
