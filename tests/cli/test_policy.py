"""``aztp-agents policy``: create from a file or a statement, attach, detach, show."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import Run


def test_policies(run: Run, crew: dict[str, str], tmp_path: Path) -> None:
    doc = {"Statement": [{"Effect": "Allow", "Action": ["connect", "tool:*"]}]}
    path = tmp_path / "allow.json"
    path.write_text(json.dumps(doc))
    created = run.json(
        "policy", "create", "allow-all", "--file", str(path), "--code", "policy:allow"
    )
    assert created["code"] == "policy:allow"
    deny = run.json(
        "policy", "create", "deny", "--statement", '{"Effect": "Deny", "Action": "connect"}'
    )
    assert deny["code"].startswith("policy:")
    assert (
        "created"
        in run(
            "policy", "create", "listy", "--statement", '[{"Effect": "Audit", "Action": "x"}]'
        ).stdout
    )

    assert run.json("policy", "attach", "researcher", "policy:allow")["attached"] is True
    assert "attached" in run("policy", "attach", "researcher", deny["code"]).stdout
    shown = run.json("policy", "show", "researcher")
    assert {p["code"] for p in shown} == {"policy:allow", deny["code"]}
    assert "policy:allow" in run("policy", "show", "researcher").stdout

    run("verify", "researcher", "--to", "tool-search", "--policy", "policy:allow", code=0)
    run("verify", "researcher", "--to", "tool-search", "--policy", deny["code"], code=1)

    assert run.json("policy", "detach", "researcher", deny["code"])["attached"] is False
    assert "detached" in run("policy", "detach", "researcher", "policy:allow").stdout
    assert run.json("policy", "show", "researcher") == []
    assert "no policies" in run("policy", "show", "researcher").stdout

    run.fails(
        "policy", "create", "x", "--statement", "{bad json", code=2, contains="not valid JSON"
    )
    run.fails(
        "policy",
        "create",
        "x",
        "--statement",
        '{"Effect": "Maybe", "Action": "a"}',
        code=2,
        contains="invalid policy",
    )
    run.fails("policy", "create", "x", code=2, contains="exactly one")
    run.fails(
        "policy",
        "create",
        "x",
        "--file",
        str(path),
        "--statement",
        "{}",
        code=2,
        contains="exactly one",
    )
    run.fails(
        "policy",
        "create",
        "x",
        "--file",
        str(tmp_path / "missing.json"),
        code=2,
        contains="cannot read",
    )
    run.fails("policy", "create", "x", "--statement", "42", code=2)
    run.fails("policy", "create", "dup", "--statement", "{}", "--code", "policy:allow", code=2)
    run.fails("policy", "attach", "researcher", "policy:nope", code=3)
    run.fails("verify", "researcher", "--policy", "policy:allow", code=2, contains="--to")
    run.fails("verify", "researcher", "--to", "tool-search", "--flow", "prod", code=2)


def test_policy_list_shows_every_policy_and_where_it_is_attached(
    run: Run, crew: dict[str, str]
) -> None:
    """Issue 16.7: the organization's policies can be listed (not only per identity)."""
    assert run.json("policy", "list") == []
    assert "no policies" in run("policy", "list").stdout
    statement = '{"Effect": "Allow", "Action": "tool:*"}'
    run("policy", "create", "open", "--statement", statement, "--code", "policy:open")
    run("policy", "create", "spare", "--statement", statement, "--code", "policy:spare")
    run("policy", "attach", "researcher", "policy:open")
    run("policy", "attach", "tool-search", "policy:open")
    listed = run.json("policy", "list")
    assert [(p["code"], p["policyName"]) for p in listed] == [
        ("policy:open", "open"),
        ("policy:spare", "spare"),
    ]
    assert sorted(listed[0]["attachedTo"]) == sorted([crew["agent"], crew["tool"]])
    assert listed[1]["attachedTo"] == []
    assert listed[0]["policyStatement"] == {"Statement": [json.loads(statement)]}
    out = run("policy", "list").stdout
    assert "researcher" in out and "tool-search" in out and crew["agent"] not in out
