"""Policies through the facade: evaluation, attachment, checks."""

from __future__ import annotations

import re

import pytest

from aztp_agents import Aztp
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
