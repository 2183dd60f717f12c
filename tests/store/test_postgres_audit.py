"""Audit appends on PostgreSQL are serialized per organization in the database: two
connections appending to one chain at once (even a chain with no entry yet) make one chain."""

from __future__ import annotations

import threading

from aztp_agents.store import Store


def test_two_connections_starting_one_chain_at_once_both_commit_in_order(pg_url: str) -> None:
    one, two = Store.open_url(pg_url), Store.open_url(pg_url)
    first_in = threading.Event()
    errors: list[BaseException] = []

    def slow_first() -> None:
        try:
            with one.write(bump=False) as conn:
                one.append_audit(conn, "org-new", [{"action": "a.first", "data": {}}])
                first_in.set()
                threading.Event().wait(0.5)  # holds its transaction open while the other tries
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=slow_first)
    thread.start()
    try:
        assert first_in.wait(30)
        with two.write(bump=False) as conn:  # the same chain, from another connection
            two.append_audit(conn, "org-new", [{"action": "a.second", "data": {}}])
        thread.join(30)
        assert errors == []
        with one.read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT seq, action, prev_hash, hash FROM audit WHERE org_id = 'org-new'"
                " ORDER BY seq"
            ).fetchall()
        assert [(r[0], r[1]) for r in rows] == [(1, "a.first"), (2, "a.second")]
        assert rows[1][2] == rows[0][3]  # the second links to the first: one chain
    finally:
        thread.join(30)
        one.close()
        two.close()
