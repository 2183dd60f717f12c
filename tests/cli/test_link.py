"""``aztp-agents link``, ``unlink`` and ``verify``."""

from __future__ import annotations

from tests.support.cli import Run


def test_link_verify_unlink(run: Run, crew: dict[str, str]) -> None:
    assert run("verify", "researcher", "--flow", "prod").stdout.startswith("valid")
    assert run.json("verify", crew["agent"])["valid"] is True
    connect = run.json("verify", "researcher", "--to", "tool-search")
    assert connect["valid"] is True and connect["to"] == crew["tool"]
    run("verify", "tool-search", "--to", "researcher", code=0)  # 'linked' is symmetric

    run.json("identity", "issue", "db")
    link = run.json(
        "link", "researcher", "db", "--type", "data_pipeline", "--metadata", '{"why": "etl"}'
    )
    assert link["relationshipType"] == "data_pipeline"
    run("verify", "researcher", "--to", "db", code=0)
    run("verify", "db", "--to", "researcher", code=1)  # directed

    removed = run.json("unlink", "researcher", "db", "--type", "data_pipeline")
    assert removed["removed"] == 1
    assert "removed 1" in run("unlink", "researcher", "tool-search").stdout
    result = run("verify", "researcher", "--to", "tool-search", code=1)
    assert result.stdout.startswith("invalid")
    run.fails("unlink", "researcher", "tool-search", code=3)
    run.fails(
        "link",
        "researcher",
        "tool-search",
        "--type",
        "Not-Valid",
        code=2,
        contains="relationship_type",
    )
    run.fails("link", "researcher", "researcher", code=2, contains="itself")


def test_links_shows_each_links_scope(run: Run, crew: dict[str, str]) -> None:
    """`aztp-agents links`: the API link of the fixture is organization-wide; a guard's grant
    is scoped to its flow (issue 18.2)."""
    from aztp_agents import Aztp, Guard

    guard = Guard(flow="nightly", client=Aztp(home=run.home))
    guard.enroll("researcher", ["tool-delete"])
    found = run.json("links", "researcher")
    assert [(x["scope"], x["identityFlowIds"]) for x in found] == [
        ("organization", []),
        ("flow", [guard.flow_id]),
    ]
    text = run("links", "researcher").stdout
    assert "organization" in text and "nightly" in text
    assert run.json("links", "tool-search")[0]["targetIdentity"] == crew["tool"]
