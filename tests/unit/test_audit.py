"""The audit record codec (pure)."""

from __future__ import annotations

import json

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
