"""The audit record codec (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aztp_agents.audit import (
    CallContext,
    FieldParts,
    decode_batch,
    encode_batch,
    flatten_context,
    register_layout,
)


def test_shared_field_tuples_and_parts_encode_once_and_decode_per_record() -> None:
    """Records that share tuples (a memoized decision, a CallContext) are written once per
    batch; every record still decodes to its own fields, and equal-looking tuples of other
    types (True and 1) are not taken for the shared ones."""
    register_layout("test.parts", ("flag", "n"))
    fields = (True, 1)
    context = CallContext(crew="c", task="t")
    records = [
        (1.0, "test.parts", "u", "a", FieldParts((fields, context.flat))),
        (2.0, "test.parts", "u", "a", FieldParts((fields, context.flat))),
        (3.0, "test.parts", "u", "a", (1, True)),
        (4.0, "test.parts", "u", "a", fields),
        (5.0, "test.parts", "u", "a", fields),
        (6.0, "test.parts", "u", "b", FieldParts(((False, 2), flatten_context({"crew": "d"})))),
    ]
    text = encode_batch(records)
    assert (
        len(json.loads(text)["fields"]) == 4
    )  # two parts joined once, (1, True), fields, the last
    decoded = decode_batch(text)
    shared = {"flag": True, "n": 1, "context": {"crew": "c", "task": "t"}}
    assert [d[4] for d in decoded] == [
        shared,
        shared,
        {"flag": 1, "n": True},
        {"flag": True, "n": 1},
        {"flag": True, "n": 1},
        {"flag": False, "n": 2, "context": {"crew": "d"}},
    ]
    assert type(decoded[2][4]["flag"]) is int and decoded[2][4]["n"] is True
    assert [d[0] for d in decoded] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(TypeError):
        context["crew"] = "changed"  # a CallContext is read-only: what was audited is what it says


# --- the order of decisions and revocations (issue 13.9) ---------------------------------


def _state(seq: int, action: str, subject: str, revision: int, **data: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": "t",
        "action": action,
        "subject": subject,
        "data": {**data, "revision": revision},
    }


def _allow(seq: int, agent: str, tool: str, revision: int, flow: str = "F") -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": "t",
        "action": "decision.tool_call",
        "subject": agent,
        "data": {
            "allowed": True,
            "reason": "allowed",
            "tool": tool,
            "flowId": flow,
            "revision": revision,
            "enforced": True,
        },
    }


def test_decision_order_windows() -> None:
    from aztp_agents.audit_check import check_decision_order

    log = [
        _state(1, "link.create", "A", 1, target="T", relationshipType="linked"),
        _state(2, "link.create", "A", 2, target="T", relationshipType="uses"),
        _allow(3, "A", "T", 2),
        _state(4, "link.delete", "A", 3, target="T", relationshipType="uses", removed=1),
        _allow(5, "T", "A", 3),  # the 'linked' link still allows both ways
        _state(6, "link.delete", "A", 4, target="T", relationshipType="linked", removed=1),
        _state(7, "link.create", "A", 6, target="T", relationshipType="linked"),
        _allow(8, "A", "T", 6),  # linked again at 6
        _state(9, "identity.revoke", "X", 7),
        _state(10, "identity.reissue", "X", 9),
        _allow(11, "X", "T", 9),
        _state(12, "flow.delete", "G", 10),
        _allow(13, "A", "T", 2),  # decided on revision 2 but written late: fine
    ]
    report = check_decision_order(log)
    assert report.ok and (report.allowed, report.revocations) == (5, 4)

    bad = [
        *log,
        _allow(20, "T", "A", 5),  # no link between revisions 4 and 6 (symmetric)
        _allow(21, "X", "T", 8),  # revoked from 7 to 9
        _allow(22, "A", "T", 12, flow="G"),  # flow deleted for good
    ]
    violations = check_decision_order(bad).violations
    assert [(v["seq"], v["revokedBy"]["seq"]) for v in violations] == [(20, 6), (21, 9), (22, 12)]
