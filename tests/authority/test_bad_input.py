"""Bad input: specific errors, nothing half-written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp
from aztp_agents.errors import (
    AlreadyRevokedError,
    ConflictError,
    InvalidIdError,
    InvalidNameError,
    NotFoundError,
    ValidationError,
)
from tests.authority.helpers import aztp, db_state, issue, run

# =========================================================================================
# Bad input: specific errors, nothing half-written
# =========================================================================================

BAD_INPUTS: list[tuple[str, Callable[[Aztp, dict[str, str]], Any], type[Exception], str]] = [
    ("name starts with '-'", lambda c, s: c.secure_connect({}, "-agent"), InvalidNameError, "name"),
    ("name too short", lambda c, s: c.secure_connect({}, "a"), InvalidNameError, "2-64"),
    ("name too long", lambda c, s: c.secure_connect({}, "x" * 65), InvalidNameError, "2-64"),
    (
        "name with space",
        lambda c, s: c.secure_connect({}, "chat service"),
        InvalidNameError,
        "name",
    ),
    ("name not a string", lambda c, s: c.secure_connect({}, 42), InvalidNameError, "string"),
    ("name missing", lambda c, s: c.secure_connect({}, ""), ValidationError, "name is required"),
    (
        "config not a dict",
        lambda c, s: c.secure_connect({}, "ok-name", config=["x"]),
        ValidationError,
        "config",
    ),
    (
        "isGlobalIdentity not bool",
        lambda c, s: c.secure_connect({}, "ok-name", config={"isGlobalIdentity": "yes"}),
        ValidationError,
        "isGlobalIdentity",
    ),
    (
        "upper-case trust domain",
        lambda c, s: c.secure_connect({}, "ok-name", config={"trustDomain": "Astha.AI"}),
        InvalidIdError,
        "trust domain",
    ),
    (
        "unknown parent in a new trust domain",
        lambda c, s: c.secure_connect(
            {}, "ok-name", config={"trustDomain": "fresh.example", "parentIdentity": aztp("ghost")}
        ),
        NotFoundError,
        "ghost",
    ),
    (
        "malformed parent",
        lambda c, s: c.secure_connect({}, "ok-name", config={"parentIdentity": "aztp://x/y"}),
        InvalidIdError,
        "path",
    ),
    (
        "not an aztp id",
        lambda c, s: c.verify_identity_by_aztp_id("spiffe://astha.ai/workload/production/node/a"),
        ValidationError,
        "aztp://",
    ),
    (
        "upper-case trust domain in id",
        lambda c, s: c.revoke_identity("aztp://ASTHA.ai/workload/production/node/member"),
        InvalidIdError,
        "trust domain",
    ),
    (
        "trailing newline in id",
        lambda c, s: c.revoke_identity(s["member"] + "\n"),
        InvalidIdError,
        "",
    ),
    (
        "short path",
        lambda c, s: c.revoke_identity("aztp://astha.ai/workload/prod/member"),
        InvalidIdError,
        "/workload/{environment}/{method}/{name}",
    ),
    (
        "unknown identity",
        lambda c, s: c.revoke_identity(aztp("ghost")),
        NotFoundError,
        "secure_connect",
    ),
    (
        "unknown flow",
        lambda c, s: c.add_identity_to_flow("0" * 24, s["member"]),
        NotFoundError,
        "flow",
    ),
    (
        "flow id not a string",
        lambda c, s: c.add_identity_to_flow(7, s["member"]),
        ValidationError,
        "flow_id",
    ),
    (
        "unknown identity into flow",
        lambda c, s: c.add_identity_to_flow(s["flow"], aztp("ghost")),
        NotFoundError,
        "ghost",
    ),
    (
        "revoke in unknown flow",
        lambda c, s: c.revoke_flow_identity(s["member"], "f" * 24, reason="x"),
        NotFoundError,
        "flow",
    ),
    (
        "bad discoverable",
        lambda c, s: c.create_flow("new-flow", discoverable="everyone"),
        ValidationError,
        "discoverable",
    ),
    (
        "tags as a string",
        lambda c, s: c.create_flow("new-flow", tags="a,b"),
        ValidationError,
        "tags",
    ),
    (
        "metadata not JSON",
        lambda c, s: c.create_flow("new-flow", metadata={"x": object()}),
        ValidationError,
        "JSON",
    ),
    (
        "duplicate flow name",
        lambda c, s: c.create_flow("existing-flow"),
        ConflictError,
        "existing-flow",
    ),
    (
        "update unknown field value",
        lambda c, s: c.update_flow(s["flow"], discoverable="hidden"),
        ValidationError,
        "discoverable",
    ),
    (
        "bad relationship type",
        lambda c, s: c.link_identities(s["member"], s["other"], "Data-Pipeline"),
        ValidationError,
        "relationship_type",
    ),
    (
        "link metadata not a dict",
        lambda c, s: c.link_identities(s["member"], s["other"], "linked", metadata="x"),
        ValidationError,
        "metadata",
    ),
    (
        "self link",
        lambda c, s: c.link_identities(s["member"], s["member"]),
        ValidationError,
        "itself",
    ),
    (
        "link to unknown",
        lambda c, s: c.link_identities(s["member"], aztp("ghost")),
        NotFoundError,
        "ghost",
    ),
    (
        "bad policy document",
        lambda c, s: c.create_policy("p", {"Statement": [{"Effect": "Maybe", "Action": "x"}]}),
        ValidationError,
        "Statement",
    ),
    (
        "policy without actions",
        lambda c, s: c.create_policy("p", {"Statement": [{"Effect": "Allow", "Action": []}]}),
        ValidationError,
        "Action",
    ),
    (
        "jwt without audience",
        lambda c, s: c.fetch_jwt_svid(s["member"], ""),
        ValidationError,
        "audience",
    ),
    (
        "revoke twice",
        lambda c, s: c.revoke_identity(s["revoked"]),
        AlreadyRevokedError,
        "already revoked",
    ),
]


# Wrong types: a specific ValidationError, nothing written.
BAD_INPUT_GAPS = [
    pytest.param(
        "revoke reason not a string",
        lambda c, s: c.revoke_identity(s["member"], reason=5),
        ValidationError,
        "reason",
        id="revoke reason not a string",
    ),
    pytest.param(
        "flow revoke reason not a string",
        lambda c, s: c.revoke_flow_identity(s["member"], s["flow"], reason={"why": 1}),
        ValidationError,
        "reason",
        id="flow revoke reason not a string",
    ),
    pytest.param(
        "permission options not a dict",
        lambda c, s: c.check_identity_policy_permissions(s["member"], "tool:search"),
        ValidationError,
        "options",
        id="permission options not a dict",
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "error", "says"),
    [pytest.param(*b, id=b[0]) for b in BAD_INPUTS] + BAD_INPUT_GAPS,
)
def test_bad_input_is_specific_and_writes_nothing(
    client: Aztp,
    db_path: Path,
    case: str,
    call: Callable[..., Any],
    error: type[Exception],
    says: str,
) -> None:
    member, other, revoked = issue(client, "member", "other", "revoked")
    run(client.revoke_identity(revoked))
    flow = run(client.create_flow("existing-flow"))["_id"]
    run(client.add_identity_to_flow(flow, member))
    before = db_state(db_path)
    audit_before = len(run(client.audit()))

    with pytest.raises(error) as caught:
        run(call(client, {"member": member, "other": other, "revoked": revoked, "flow": flow}))
    assert says.lower() in str(caught.value).lower(), str(caught.value)
    assert len(str(caught.value)) > 15  # says what to fix, not just "invalid"

    assert db_state(db_path) == before
    assert len(run(client.audit())) == audit_before
    assert run(client.verify_audit())["ok"] is True
    # The store still works normally afterwards.
    assert run(client.secure_connect({}, "after-error")).identity.valid
