"""``aztp-agents explain AGENT TOOL --flow F`` (issue 16.3): why a call is allowed or denied."""

from __future__ import annotations

import json

from tests.support.cli import Run


def test_an_allowed_call_passes_every_check(run: Run, crew: dict[str, str]) -> None:
    answer = run.json("explain", "researcher", "tool-search", "--flow", "prod")
    assert answer["allowed"] and answer["reason"] == "allowed"
    assert (answer["agent"], answer["tool"], answer["flowId"]) == (
        crew["agent"],
        crew["tool"],
        crew["flow"],
    )
    assert [c["status"] for c in answer["checks"]] == ["pass"] * 11
    assert answer["names"] == {crew["agent"]: "researcher", crew["tool"]: "tool-search"}
    out = run("explain", crew["agent"], crew["tool"], "--flow", crew["flow"]).stdout
    assert out.startswith("ALLOWED [allowed]: every check passed"), out


def test_a_denial_lists_every_failure_and_its_fix(run: Run, crew: dict[str, str]) -> None:
    run("flow", "remove", "prod", "tool-search")
    run("unlink", "researcher", "tool-search")
    result = run("explain", "researcher", "tool-search", "--flow", "prod", code=1)
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert out.startswith("DENIED [tool_not_in_flow]: the tool is not a member of the flow"), out
    assert f"fix: aztp-agents flow add prod {crew['tool']}" in out
    # The operator removed the link: restoring it, not linking anew, undoes that.
    assert f"fix: aztp-agents restore-link {crew['agent']} {crew['tool']}" in out
    failed = [
        c["check"]
        for c in json.loads(
            run("explain", "researcher", "tool-search", "--flow", "prod", "--json", code=1).stdout
        )["checks"]
        if c["status"] == "fail"
    ]
    assert failed == ["tool.member", "link"]


def test_the_policy_statement_that_denied_is_named(run: Run, crew: dict[str, str]) -> None:
    statements = json.dumps(
        [
            {"Effect": "Allow", "Action": "tool:*"},
            {"Sid": "NoDelete", "Effect": "Deny", "Action": "tool:delete_file"},
        ]
    )
    run("policy", "create", "careful", "--statement", statements, "--code", "policy:careful")
    run("policy", "attach", "researcher", "policy:careful")
    args = ("explain", "researcher", "tool-search", "--flow", "prod")
    denied = run.json(*args, "--tool-name", "delete_file", code=1)
    assert denied["reason"] == "policy_denied"
    assert denied["detail"] == (
        'denied by policy:careful (careful) statement "NoDelete" (#1): Deny tool:delete_file on *'
    )
    assert denied["actions"] == ["tool:invoke", "tool:delete_file"]
    assert (
        denied["checks"][-1]["fix"] == f"aztp-agents policy detach {crew['agent']} policy:careful"
    )
    allowed = run.json(*args, "--tool-name", "search")
    assert allowed["checks"][-1]["message"].startswith("allowed by policy:careful (careful)")


def test_unknown_flow_and_bad_context_are_errors(run: Run, crew: dict[str, str]) -> None:
    run.fails("explain", "researcher", "tool-search", "--flow", "nope", code=3, contains="flow")
    run.fails("explain", "researcher", "tool-search", "--flow", "prod", "--context", "[1]", code=2)
    run.fails("explain", "nobody-here", "tool-search", "--flow", "prod", code=3)
