"""Change detection: the WAL-index change counter."""

from __future__ import annotations

from pathlib import Path

from aztp_agents import Reason
from tests.authority.helpers import in_another_process


def test_change_counter_follows_a_store_reopened_after_every_connection_closed(
    tmp_path: Path,
) -> None:
    """When every connection closes, SQLite deletes the WAL index; a store opened later must
    watch the new one, or it would miss other processes' revocations."""
    from aztp_agents.authority import Authority
    from aztp_agents.store import Store

    db = tmp_path / "aztp.db"
    first = Authority(Store.open_sqlite(db))
    p = first.local_principal()
    agent = first.secure_connect(p, "reopen-agent", make_key=False)["identity"]["aztpId"]
    tool = first.secure_connect(p, "reopen-tool", make_key=False)["identity"]["aztpId"]
    flow = first.create_flow(p, "reopen-flow")["_id"]
    for member in (agent, tool):
        first.add_identity_to_flow(p, flow, member)
    first.link_identities(p, agent, tool)
    first.store.close()
    in_another_process(
        tmp_path, ("list_flows",)
    )  # another process opens and closes the store alone
    second = Authority(Store.open_sqlite(db))
    try:
        p2 = second.local_principal()
        assert second.decide(p2, flow_id=flow, agent=agent, tool=tool).allowed
        in_another_process(tmp_path, ("revoke_flow_identity", agent, flow, "elsewhere"))
        assert (
            second.decide(p2, flow_id=flow, agent=agent, tool=tool).reason
            is Reason.AGENT_REVOKED_IN_FLOW
        )
    finally:
        second.store.close()
