"""``aztp-agents flow``: the whole lifecycle, and empty lists that say what to do."""

from __future__ import annotations

from tests.support.cli import Run


def test_flow_lifecycle(run: Run, crew: dict[str, str]) -> None:
    private = run.json(
        "flow", "create", "staging", "--description", "pre-prod", "--metadata", '{"team": "r"}'
    )
    assert private["discoverable"] == "private" and private["metadata"] == {"team": "r"}
    assert "created" in run("flow", "create", "other", "--public").stdout
    flows = run.json("flow", "list")
    assert [f["name"] for f in flows] == ["prod", "staging", "other"]
    assert "prod" in run("flow", "list").stdout

    shown = run.json("flow", "show", "prod")
    assert shown["_id"] == crew["flow"] and shown["tags"] == ["demo"]
    assert {m["aztpId"] for m in shown["identities"]} == {crew["agent"], crew["tool"]}
    assert run.json("flow", "show", crew["flow"])["name"] == "prod"
    assert "researcher" in run("flow", "show", "prod").stdout
    assert "no members" in run("flow", "show", "staging").stdout
    assert run.json("identity", "show", "researcher")["flows"][0]["name"] == "prod"

    # flow-scoped revocation: invalid in the flow, valid globally
    answer = run.json("flow", "revoke", "prod", "researcher", "--reason", "suspicious")
    assert answer["identityFlowId"] == crew["flow"]
    run.fails("flow", "revoke", "prod", "researcher", code=2, contains="already revoked")
    verdict = run.json("verify", "researcher", "--flow", "prod", code=1)
    assert verdict["valid"] is False and verdict["reason"] == "identity_revoked_in_flow"
    run("verify", "researcher", code=0)

    health = run.json("flow", "health", "prod")
    assert health["status"] == "critical" and health["valid"] == 1 and health["total"] == 2
    assert "critical" in run("flow", "health", "prod").stdout

    # remove + re-add keeps the revocation; reinstate clears it
    assert "removed" in run("flow", "remove", "prod", "researcher").stdout
    run("verify", "researcher", "--flow", "prod", code=1)
    assert "added" in run("flow", "add", "prod", "researcher").stdout
    run("verify", "researcher", "--flow", "prod", code=1)
    assert "reinstated" in run("flow", "reinstate", "prod", "researcher").stdout
    run("verify", "researcher", "--flow", "prod", code=0)
    run.fails("flow", "reinstate", "prod", "researcher", code=3)
    assert run.json("flow", "health", crew["flow"])["status"] == "healthy"
    assert "revoked" in run("flow", "revoke", "prod", "tool-search").stdout

    assert run.json("flow", "delete", "staging")["deleted"] is True
    assert "deleted" in run("flow", "delete", "other").stdout
    assert [f["name"] for f in run.json("flow", "list")] == ["prod"]
    run.fails("flow", "create", "prod", code=2, contains="already exists")


def test_empty_lists_say_what_to_do(run: Run) -> None:
    assert "identity issue" in run("identity", "list").stdout
    assert "flow create" in run("flow", "list").stdout
    assert run.json("flow", "list") == []


def test_flow_update(run: Run, crew: dict[str, str]) -> None:
    updated = run.json(
        "flow",
        "update",
        "prod",
        "--name",
        "production",
        "--description",
        "the live crew",
        "--private",
        "--tag",
        "a",
        "--tag",
        "b",
        "--metadata",
        '{"team": "research"}',
    )
    assert updated["_id"] == crew["flow"] and updated["name"] == "production"
    shown = run.json("flow", "show", "production")
    assert shown["description"] == "the live crew" and shown["discoverable"] == "private"
    assert shown["tags"] == ["a", "b"] and shown["metadata"] == {"team": "research"}
    assert len(shown["identities"]) == 2  # members untouched

    # what is not given stays; --no-tags clears; by id works too
    run.json("flow", "update", crew["flow"], "--public", "--no-tags")
    shown = run.json("flow", "show", crew["flow"])
    assert shown["discoverable"] == "public" and shown["tags"] == []
    assert shown["name"] == "production" and shown["description"] == "the live crew"
    assert "updated flow production" in run("flow", "update", "production", "--tag", "x").stdout

    run.fails("flow", "update", "production", code=2, contains="nothing to change")
    run.fails("flow", "update", "production", "--tag", "x", "--no-tags", code=2)
    run.fails("flow", "update", "nope", "--name", "y", code=3, contains="no identity flow")
    run.fails("flow", "update", "production", "--metadata", "[1]", code=2)
    run("flow", "create", "other")
    run.fails("flow", "update", "other", "--name", "production", code=2, contains="already exists")
