"""Policies through the facade: evaluation, attachment, checks."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aztp_agents import Aztp, Guard, Reason
from aztp_agents.errors import (
    ConflictError,
    NotFoundError,
    ValidationError,
)
from tests.authority.helpers import issue, run

# =========================================================================================
# Policies
# =========================================================================================

POLICY = {
    "Statement": [
        {"Effect": "Allow", "Action": "tool:*"},
        {"Effect": "Deny", "Action": "tool:delete_file"},
        {"Effect": "Audit", "Action": ["data:export"]},
    ]
}


def test_policy_evaluation_deny_wins(client: Aztp) -> None:
    (a,) = issue(client, "policy-agent")
    created = run(client.create_policy("tools-policy", POLICY))
    assert re.fullmatch(r"policy:[0-9a-f]{12}", created["code"])
    assert created["policyName"] == "tools-policy"
    run(client.attach_policy(a, created["code"]))
    policies = run(client.get_policy(a))
    assert [p["code"] for p in policies] == [created["code"]]
    statement = Aztp.get_policy_value(policies, "code", created["code"])
    assert statement == POLICY
    assert Aztp.get_policy_value(policies, "code", "policy:000000000000") is None

    checked = run(
        client.check_identity_policy_permissions(
            a, {"actions": ["tool:search", "tool:delete_file", "data:export", "net:connect"]}
        )
    )
    assert checked["actions"] == {
        "tool:search": True,
        "tool:delete_file": False,
        "data:export": True,
        "net:connect": False,
    }
    assert checked["allowed"] is False
    by_code = run(
        client.check_identity_policy_permissions(
            a, {"policyCode": created["code"], "actions": "tool:search"}
        )
    )
    assert by_code["actions"] == {"tool:search": True} and by_code["allowed"] is True
    with pytest.raises(NotFoundError):
        run(client.check_identity_policy_permissions(a, {"policy_code": "policy:ffffffffffff"}))

    assert client.is_action_allowed(statement, "tool:search") is True
    assert client.is_action_allowed(statement, "tool:delete_file") is False  # Deny wins
    assert client.is_action_allowed(statement, "data:export") is True  # Audit allows
    assert client.is_action_allowed(statement, "net:connect") is False  # no match
    assert client.is_action_allowed(None, "tool:search") is False
    assert client.is_action_allowed({"Statement": [{"Effect": "Maybe"}]}, "tool:search") is False

    run(client.detach_policy(a, created["code"]))
    assert run(client.get_policy(a)) == []


def test_policy_codes_and_documents_are_checked(client: Aztp) -> None:
    run(client.create_policy("fixed", POLICY, code="policy:abcdef012345"))
    with pytest.raises(ConflictError):
        run(client.create_policy("again", POLICY, code="policy:abcdef012345"))
    with pytest.raises(ValidationError, match="policy:"):
        run(client.create_policy("bad-code", POLICY, code="abc"))
    (a,) = issue(client, "attach-target")
    with pytest.raises(NotFoundError):
        run(client.attach_policy(a, "policy:000000000000"))


# =========================================================================================
# An allow-list restricts (issue 13.3): with policies attached a call needs a matching Allow
# =========================================================================================


def test_an_allow_list_policy_restricts_the_tool_call_and_the_check_agrees(client: Aztp) -> None:
    """``Allow tool:web_search`` alone on an agent: the guard allows web_search only, and
    ``check_identity_policy_permissions`` answers the same for each tool."""
    guard = Guard(flow="allow-list", client=client)
    crew = guard.enroll("agent/allow-listed", ["tool/web-search", "tool/send-email"])
    agent = crew.agent_id
    search, email = crew.tools["tool/web-search"], crew.tools["tool/send-email"]
    # No policy attached: the link alone authorizes.
    assert guard.check(agent, email, "send_email").allowed
    assert run(client.check_identity_policy_permissions(agent, {"actions": "tool:send_email"}))[
        "actions"
    ] == {"tool:send_email": True}

    only_search = run(
        client.create_policy(
            "only-search", {"Statement": {"Effect": "Allow", "Action": "tool:web_search"}}
        )
    )
    run(client.attach_policy(agent, only_search["code"]))
    assert guard.check(agent, search, "web_search").allowed
    denied = guard.check(agent, email, "send_email")
    assert not denied.allowed and denied.reason is Reason.POLICY_DENIED
    assert "no attached policy allows" in denied.describe()
    checked = run(
        client.check_identity_policy_permissions(
            agent, {"actions": ["tool:web_search", "tool:send_email"]}
        )
    )
    assert checked["actions"] == {"tool:web_search": True, "tool:send_email": False}

    # The policies attached to the agent and to the tool count together (as IAM's identity
    # and resource policies do): a Deny on either side wins, an Allow on either side allows.
    tool_denies = run(
        client.create_policy("search-off", {"Statement": {"Effect": "Deny", "Action": "tool:*"}})
    )
    run(client.attach_policy(search, tool_denies["code"]))
    assert guard.check(agent, search, "web_search").reason is Reason.POLICY_DENIED
    run(client.detach_policy(agent, only_search["code"]))
    assert guard.check(agent, email, "send_email").allowed  # nothing attached to either
    tool_allows = run(
        client.create_policy(
            "email-ok", {"Statement": {"Effect": "Allow", "Action": "tool:invoke"}}
        )
    )
    run(client.attach_policy(email, tool_allows["code"]))
    run(client.attach_policy(agent, only_search["code"]))
    assert guard.check(agent, email, "send_email").allowed  # the tool's own Allow matches


_EFFECTS = st.sampled_from(["Allow", "Deny", "Audit"])
_ACTIONS = st.sampled_from(["tool:invoke", "tool:*", "tool:search", "tool:send", "*", "connect"])
_RESOURCES = st.sampled_from(
    [None, "aztp://astha.ai/*", "aztp://astha.ai/workload/production/node/tool/prop-search", "x"]
)


@st.composite
def _statements(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        statement: dict[str, Any] = {
            "Effect": draw(_EFFECTS),
            "Action": draw(st.lists(_ACTIONS, min_size=1, max_size=2)),
        }
        resource = draw(_RESOURCES)
        if resource is not None:
            statement["Resource"] = resource
        out.append(statement)
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(statements=_statements(), on_tool=st.booleans())
def test_the_guard_and_the_permission_check_agree_on_random_policies(
    client: Aztp, statements: list[dict[str, Any]], on_tool: bool
) -> None:
    """One rule: for any policy set on one side of a call (the agent's, or the tool's), the
    guard allows a call of tool NAME exactly when ``check_identity_policy_permissions`` of that
    identity permits ``tool:NAME`` on the tool."""
    guard = Guard(flow="prop-flow", client=client)
    crew = guard.enroll("agent/prop-agent", ["tool/prop-search"])
    agent, tool = crew.agent_id, crew.tools["tool/prop-search"]
    holder = tool if on_tool else agent
    code = None
    if statements:
        code = run(client.create_policy("prop", {"Statement": statements}))["code"]
        run(client.attach_policy(holder, code))
    try:
        for name in ("search", "send"):
            decided = guard.check(agent, tool, name)
            checked = run(
                client.check_identity_policy_permissions(
                    holder, {"actions": [f"tool:{name}"], "resource": tool}
                )
            )
            assert decided.allowed is checked["actions"][f"tool:{name}"], (statements, name)
            assert checked["restricted"] is bool(statements)
            assert decided.reason in (Reason.ALLOWED, Reason.POLICY_DENIED)
    finally:
        if code is not None:
            run(client.detach_policy(holder, code))


def test_policy_codes_are_unique_per_organization(
    authority: Any, make_client: Callable[..., Aztp]
) -> None:
    """Issue 13.10c: two organizations choose the same explicit code; each has its own policy
    under it, attaches it and sees only its own; the 409 is only within one organization (it
    no longer tells one organization that another's code exists)."""
    code = "policy:0123456789ab"
    deny_all = {"Statement": [{"Effect": "Deny", "Action": "tool:*"}]}
    clients = {}
    for org in ("acme", "globex"):
        _, key = authority.create_org(org, f"{org}.example")
        clients[org] = make_client(api_key=key, trust_domain=None)
    acme, globex = clients["acme"], clients["globex"]
    run(acme.create_policy("acme-allow", POLICY, code=code))
    run(globex.create_policy("globex-deny", deny_all, code=code))  # not a conflict
    with pytest.raises(ConflictError):
        run(acme.create_policy("acme-again", POLICY, code=code))

    agents = {}
    for org, c in clients.items():
        guard = Guard(flow=f"{org}-flow", client=c)
        crew = guard.enroll(f"{org}-agent", ["search"])
        agents[org] = crew.agent_id
        run(c.attach_policy(crew.agent_id, code))
        (mine,) = run(c.get_policy(crew.agent_id))
        assert (
            mine["code"] == code
            and mine["policyName"] == f"{org}-{'allow' if org == 'acme' else 'deny'}"
        )
        decision = guard.check(crew.agent_id, crew.tools["search"], "search")
        assert decision.allowed is (org == "acme"), (org, decision)
    # detaching in one organization leaves the other's attachment alone
    run(acme.detach_policy(agents["acme"], code))
    assert run(acme.get_policy(agents["acme"])) == []
    assert [x["policyName"] for x in run(globex.get_policy(agents["globex"]))] == ["globex-deny"]


def test_policies_of_a_store_with_global_codes_are_migrated(
    make_client: Callable[..., Aztp], aztp_home: Path
) -> None:
    """A schema-3 store (``policies.code`` the primary key) is rebuilt on open: its policies,
    documents and attachments are kept, and a second organization may take the same code."""
    import sqlite3

    from aztp_agents.store import SCHEMA_VERSION
    from tests.support.cli import close_embedded

    client = make_client()
    (a,) = issue(client, "migrated")
    code = run(client.create_policy("old", POLICY, code="policy:00000000beef"))["code"]
    run(client.attach_policy(a, code))
    close_embedded(aztp_home)
    con = sqlite3.connect(aztp_home / "aztp.db")
    with con:  # the version-3 layout of the two tables, rows as they were
        con.execute("ALTER TABLE policies RENAME TO p_new")
        con.execute("ALTER TABLE policy_attachments RENAME TO pa_new")
        con.execute(
            "CREATE TABLE policies (code VARCHAR(64) NOT NULL PRIMARY KEY, org_id VARCHAR(32)"
            " NOT NULL REFERENCES orgs (id), name VARCHAR(256) NOT NULL, document JSON NOT NULL,"
            " created_at VARCHAR(32) NOT NULL)"
        )
        con.execute(
            "CREATE TABLE policy_attachments (code VARCHAR(64) NOT NULL REFERENCES policies"
            " (code) ON DELETE CASCADE, aztp_id VARCHAR(2048) NOT NULL, org_id VARCHAR(32) NOT"
            " NULL, PRIMARY KEY (code, aztp_id))"
        )
        con.execute(
            "INSERT INTO policies SELECT code, org_id, name, document, created_at FROM p_new"
        )
        con.execute("INSERT INTO policy_attachments SELECT code, aztp_id, org_id FROM pa_new")
        con.execute("DROP TABLE pa_new")
        con.execute("DROP TABLE p_new")
        con.execute("DROP INDEX IF EXISTS ix_policies_org_id")
        con.execute("DROP INDEX IF EXISTS ix_policy_attachments_org_id")
        con.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'")
        con.execute("DROP TABLE alembic_version")  # made before Alembic
    con.close()

    reopened = make_client()
    assert [(x["code"], x["policyStatement"]) for x in run(reopened.get_policy(a))] == [
        (code, POLICY)
    ]
    authority = reopened.backend.authority  # type: ignore[attr-defined]
    _, key = authority.create_org("later", "later.example")
    later = make_client(api_key=key, trust_domain=None)
    assert run(later.create_policy("same-code", POLICY, code=code))["code"] == code
    con = sqlite3.connect(aztp_home / "aztp.db")
    try:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            SCHEMA_VERSION,
        )
        assert con.execute("SELECT count(*) FROM policies").fetchone() == (2,)
    finally:
        con.close()
