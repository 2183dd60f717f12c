"""The store's group-commit audit writer: field records stored whole."""

from __future__ import annotations

import time
from typing import Any

from aztp_agents import Aztp
from aztp_agents.audit import (
    register_layout,
)
from tests.authority.helpers import run


def test_field_records_are_stored_whole_and_odd_values_cannot_sink_a_batch(
    client: Aztp, authority: Any, principal: Any
) -> None:
    """Records queued as field tuples are decoded by name; True and 1 stay apart; a value that
    is not plain JSON (queued by a careless caller) is kept as text, and the batch with it."""
    register_layout("test.fields", ("flag", "count", "name"))

    class Odd:
        def __str__(self) -> str:
            return "odd-value"

    store = authority.store
    store.submit_audit(
        principal.org_id, (time.time(), "test.fields", "someone", "s1", (True, 1, "n", "k", Odd()))
    )
    store.submit_audit(
        principal.org_id, (time.time(), "test.fields", "someone", "s2", (1, True, None))
    )
    store.submit_audit(principal.org_id, (time.time(), "test.text", "someone", "s3", '{"x":1}'))
    store.flush_audit()
    store.submit_audit(principal.org_id, (time.time(), "test.text", "someone", "s4", '{"y":2}'))
    entries = {e["subject"]: e for e in run(client.audit()) if e["action"].startswith("test.")}
    assert entries["s1"]["data"] == {
        "flag": True,
        "count": 1,
        "name": "n",
        "context": {"k": "odd-value"},
    }
    assert entries["s2"]["data"] == {"flag": 1, "count": True, "name": None}
    assert type(entries["s2"]["data"]["flag"]) is int and entries["s2"]["data"]["count"] is True
    assert entries["s3"]["data"] == {"x": 1}
    assert entries["s4"]["data"] == {"y": 2}  # the writer is still alive
    assert run(client.verify_audit())["ok"] is True
