"""Signed checkpoints anchor the audit chain outside the database (issue 13.6).

The tamper matrix: every way someone with write access to the store file (and to the
checkpoint file, in the last cases) can rewrite the history, done with sqlite3 on a real store.
The chain alone misses the rewrites that recompute it; a checkpoint taken before detects all
of them, whether its signature is checked with the store's key or with the exported public key.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aztp_agents import Aztp
from aztp_agents.audit import GENESIS, canonical_json, decode_batch, entry_hash
from aztp_agents.audit_checkpoints import sign_checkpoint
from aztp_agents.errors import AuditChainError
from tests.authority.helpers import issue, run

Tamper = Callable[[sqlite3.Connection, dict[str, Any]], "dict[str, Any] | None"]


def _populate(client: Aztp) -> None:
    a, b = issue(client, "cp-a", "cp-b")
    flow = run(client.create_flow("cp-flow"))["_id"]
    run(client.add_identity_to_flow(flow, a))
    run(client.link_identities(a, b))
    run(client.verify_identity_by_aztp_id(b))  # a group-committed batch entry
    run(client.revoke_identity(b, reason="key leaked"))
    run(client.verify_identity_by_aztp_id(b))


# --- tampering helpers (the store file, as an attacker with write access edits it) -------


def _org(con: sqlite3.Connection) -> str:
    return con.execute("SELECT org_id FROM audit_heads").fetchone()[0]


def _last(con: sqlite3.Connection) -> int:
    return con.execute("SELECT MAX(seq) FROM audit").fetchone()[0]


def _rechain(con: sqlite3.Connection) -> None:
    """Recompute every hash in seq order and move the head: what a careful attacker does."""
    org = _org(con)
    prev = GENESIS
    seq = 0
    rows = con.execute(
        "SELECT seq, ts, actor, action, subject, data FROM audit WHERE org_id=? ORDER BY seq",
        (org,),
    ).fetchall()
    for seq, ts, actor, action, subject, data in rows:
        digest = entry_hash(org, seq, ts, actor, action, subject, data, prev)
        con.execute(
            "UPDATE audit SET prev_hash=?, hash=? WHERE org_id=? AND seq=?",
            (prev, digest, org, seq),
        )
        prev = digest
    con.execute("UPDATE audit_heads SET seq=?, hash=? WHERE org_id=?", (seq, prev, org))


def _revoke_seq(con: sqlite3.Connection) -> int:
    return con.execute("SELECT seq FROM audit WHERE action='identity.revoke'").fetchone()[0]


def _batch_seq(con: sqlite3.Connection) -> int:
    return con.execute("SELECT MIN(seq) FROM audit WHERE action='audit.batch'").fetchone()[0]


def _edit(column: str, value: Any) -> Tamper:
    def tamper(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
        con.execute(f"UPDATE audit SET {column} = ? WHERE seq = ?", (value, _revoke_seq(con)))

    return tamper


def _rewrite_revocation(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    con.execute(
        "UPDATE audit SET data = replace(data, 'key leaked', 'routine rotation') WHERE seq = ?",
        (_revoke_seq(con),),
    )


def _rehash_own(con: sqlite3.Connection, cp: dict[str, Any]) -> None:
    _rewrite_revocation(con, cp)
    s = _revoke_seq(con)
    org, seq, ts, actor, action, subject, data, prev = con.execute(
        "SELECT org_id, seq, ts, actor, action, subject, data, prev_hash FROM audit WHERE seq=?",
        (s,),
    ).fetchone()
    digest = entry_hash(org, seq, ts, actor, action, subject, data, prev)
    con.execute("UPDATE audit SET hash=? WHERE seq=?", (digest, s))


def _edit_recompute(con: sqlite3.Connection, cp: dict[str, Any]) -> None:
    _rewrite_revocation(con, cp)
    _rechain(con)


def _delete_middle(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    con.execute("DELETE FROM audit WHERE seq = ?", (_revoke_seq(con),))


def _renumber_from(con: sqlite3.Connection, start: int, by: int) -> None:
    """Shift seq of entries >= start by ``by`` (in an order that keeps the key unique)."""
    order = "DESC" if by > 0 else "ASC"
    for (s,) in con.execute(
        f"SELECT seq FROM audit WHERE seq >= ? ORDER BY seq {order}", (start,)
    ).fetchall():
        con.execute("UPDATE audit SET seq = ? WHERE seq = ?", (s + by, s))


def _delete_middle_recompute(con: sqlite3.Connection, cp: dict[str, Any]) -> None:
    s = _revoke_seq(con)
    con.execute("DELETE FROM audit WHERE seq = ?", (s,))
    _renumber_from(con, s + 1, -1)
    _rechain(con)


def _drop_tail(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    con.execute("DELETE FROM audit WHERE seq = ?", (_last(con),))


def _truncate(keep: Callable[[sqlite3.Connection, dict[str, Any]], int]) -> Tamper:
    """Delete every entry after ``keep`` and move the head back to it."""

    def tamper(con: sqlite3.Connection, cp: dict[str, Any]) -> None:
        n = keep(con, cp)
        con.execute("DELETE FROM audit WHERE seq > ?", (n,))
        (h,) = con.execute("SELECT hash FROM audit WHERE seq = ?", (n,)).fetchone()
        con.execute("UPDATE audit_heads SET seq=?, hash=?", (n, h))

    return tamper


def _delete_everything(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    con.execute("DELETE FROM audit")
    con.execute("DELETE FROM audit_heads")


def _swap(con: sqlite3.Connection, a: int, b: int) -> None:
    con.execute("UPDATE audit SET seq = -1 WHERE seq = ?", (a,))
    con.execute("UPDATE audit SET seq = ? WHERE seq = ?", (a, b))
    con.execute("UPDATE audit SET seq = ? WHERE seq = -1", (b,))


def _reorder(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    s = _revoke_seq(con)
    _swap(con, s - 1, s)


def _reorder_recompute(con: sqlite3.Connection, cp: dict[str, Any]) -> None:
    _reorder(con, cp)
    _rechain(con)


def _insert_forged(con: sqlite3.Connection, seq: int, prev: str = GENESIS) -> None:
    org = _org(con)
    ts, data = "2026-01-01T00:00:00.000Z", canonical_json({"note": "forged"})
    digest = entry_hash(org, seq, ts, "evil", "link.create", None, data, prev)
    con.execute(
        "INSERT INTO audit (org_id, seq, ts, actor, action, subject, data, prev_hash, hash) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        (org, seq, ts, "evil", "link.create", None, data, prev, digest),
    )


def _insert_middle(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    s = _revoke_seq(con)
    _renumber_from(con, s, 1)
    _insert_forged(con, s)


def _insert_middle_recompute(con: sqlite3.Connection, cp: dict[str, Any]) -> None:
    _insert_middle(con, cp)
    _rechain(con)


def _append_without_head(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    n = _last(con)
    (prev,) = con.execute("SELECT hash FROM audit WHERE seq = ?", (n,)).fetchone()
    _insert_forged(con, n + 1, prev)


def _edit_head(column: str) -> Tamper:
    def tamper(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
        value = "f" * 64 if column == "hash" else _last(con) + 5
        con.execute(f"UPDATE audit_heads SET {column} = ?", (value,))

    return tamper


def _flip_batch_record(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    """Rewrite a verification answer inside a group-committed batch (valid -> invalid)."""
    s = _batch_seq(con)
    (data,) = con.execute("SELECT data FROM audit WHERE seq = ?", (s,)).fetchone()
    assert decode_batch(data)[0][4]["valid"] is True
    con.execute("UPDATE audit SET data = ? WHERE seq = ?", (data.replace("true", "false"), s))


def _flip_batch_recompute(con: sqlite3.Connection, cp: dict[str, Any]) -> None:
    _flip_batch_record(con, cp)
    _rechain(con)


def _move_to_other_org(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    con.execute("UPDATE audit SET org_id = 'another-org' WHERE seq = ?", (_revoke_seq(con),))


def _fork(con: sqlite3.Connection, _cp: dict[str, Any]) -> None:
    """A different history of the same length, every hash recomputed, the head moved."""
    n = _last(con)
    con.execute("DELETE FROM audit")
    prev = GENESIS
    for seq in range(1, n + 1):
        _insert_forged(con, seq, prev)
        (prev,) = con.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
    _rechain(con)


def _rewrite_and_edit_checkpoint(con: sqlite3.Connection, cp: dict[str, Any]) -> dict[str, Any]:
    """Rewrite and recompute, then make the checkpoint file name the new hash."""
    _edit_recompute(con, cp)
    (h,) = con.execute(
        "SELECT hash FROM audit WHERE seq = ?", (cp["checkpoint"]["seq"],)
    ).fetchone()
    return {**cp, "checkpoint": {**cp["checkpoint"], "hash": h}}


def _rewrite_and_forge_checkpoint(con: sqlite3.Connection, cp: dict[str, Any]) -> dict[str, Any]:
    """Rewrite and recompute, then sign a new checkpoint with the attacker's own key."""
    _edit_recompute(con, cp)
    body = cp["checkpoint"]
    (h,) = con.execute("SELECT hash FROM audit WHERE seq = ?", (body["seq"],)).fetchone()
    return sign_checkpoint(
        Ed25519PrivateKey.generate(),
        org_id=body["org_id"],
        org=body["org"],
        seq=body["seq"],
        head=h,
        ts=body["ts"],
    ).to_doc()


#: (tamper, detected by the chain alone?) — the matrix of issue 13.6.
MATRIX: dict[str, tuple[Tamper, bool]] = {
    "edit-data": (_rewrite_revocation, True),
    "edit-actor": (_edit("actor", "someone-else"), True),
    "edit-subject": (_edit("subject", "aztp://astha.ai/workload/production/node/x"), True),
    "edit-action": (_edit("action", "identity.issue"), True),
    "edit-ts": (_edit("ts", "2020-01-01T00:00:00.000Z"), True),
    "edit-prev-hash": (_edit("prev_hash", "e" * 64), True),
    "edit-hash": (_edit("hash", "e" * 64), True),
    "edit-and-rehash-entry": (_rehash_own, True),
    "edit-and-recompute-chain": (_edit_recompute, False),
    "delete-middle": (_delete_middle, True),
    "delete-middle-renumber-recompute": (_delete_middle_recompute, False),
    "drop-tail": (_drop_tail, True),
    # the checkpointed entry and everything after it, the head moved back
    "drop-tail-move-head": (_truncate(lambda _con, cp: cp["checkpoint"]["seq"] - 1), False),
    "truncate-to-the-middle": (_truncate(lambda _con, _cp: 3), False),
    "delete-everything": (_delete_everything, False),
    "reorder": (_reorder, True),
    "reorder-recompute": (_reorder_recompute, False),
    "insert-middle": (_insert_middle, True),
    "insert-middle-recompute": (_insert_middle_recompute, False),
    "append-without-head": (_append_without_head, True),
    "edit-head-seq": (_edit_head("seq"), True),
    "edit-head-hash": (_edit_head("hash"), True),
    "edit-batch-record": (_flip_batch_record, True),
    "edit-batch-record-recompute": (_flip_batch_recompute, False),
    "move-entry-to-another-org": (_move_to_other_org, True),
    "fork-same-length": (_fork, False),
    "rewrite-and-edit-checkpoint": (_rewrite_and_edit_checkpoint, False),
    "rewrite-and-forge-checkpoint": (_rewrite_and_forge_checkpoint, False),
}


def test_the_matrix_has_the_issue_s_28_cases() -> None:
    assert len(MATRIX) == 28
    # Without a checkpoint the chain alone detects 17 of them; with one, all 28 (below).
    assert sum(alone for _t, alone in MATRIX.values()) == 17


@pytest.fixture
def checkpointed(client: Aztp, db_path: Path) -> tuple[dict[str, Any], str]:
    """A populated store, a checkpoint of it and the exported public key, then more history
    (the log goes on after a checkpoint)."""
    _populate(client)
    cp = run(client.audit_checkpoint())
    key = run(client.audit_checkpoint_key())["public_key"]
    run(client.link_identities(*issue(client, "cp-c", "cp-d")))
    report = run(client.verify_audit(cp))
    assert report["ok"] is True and report["entries"] > cp["checkpoint"]["seq"]
    assert report["checkpoint"]["seq"] == cp["checkpoint"]["seq"]
    return cp, key


@pytest.mark.parametrize("case", list(MATRIX))
def test_tampering_is_detected_with_a_checkpoint(
    client: Aztp, db_path: Path, checkpointed: tuple[dict[str, Any], str], case: str
) -> None:
    cp, key = checkpointed
    tamper, detected_alone = MATRIX[case]
    con = sqlite3.connect(db_path)
    with con:
        cp = tamper(con, cp) or cp
    con.close()

    alone = run(client.verify_audit())
    assert alone["ok"] is (not detected_alone), alone
    for report in (
        run(client.verify_audit(cp)),  # the store's checkpoint key (derived from the master key)
        run(client.verify_audit(json.dumps(cp), public_key=key)),  # a verifier's own copy
    ):
        assert report["ok"] is False, report
        assert report["problem"]


def test_checkpoint_survives_legitimate_growth_and_names_what_held(
    client: Aztp, checkpointed: tuple[dict[str, Any], str]
) -> None:
    cp, key = checkpointed
    later = run(client.audit_checkpoint())
    assert later["checkpoint"]["seq"] > cp["checkpoint"]["seq"]
    assert later["checkpoint"]["kid"] == cp["checkpoint"]["kid"]
    for doc in (cp, later):
        report = run(client.verify_audit(doc, public_key=key))
        assert report["ok"] is True
        assert report["checkpoint"]["hash"] == doc["checkpoint"]["hash"]


def test_a_checkpoint_of_another_organization_or_store_is_refused(
    tmp_path: Path, client: Aztp, checkpointed: tuple[dict[str, Any], str]
) -> None:
    cp, _key = checkpointed
    other = Aztp(home=tmp_path / "other")  # another store: another master key
    try:
        report = run(other.verify_audit(cp))
        assert report["ok"] is False and "signed by another key" in report["problem"]
        mine = run(other.audit_checkpoint())
        report = run(
            client.verify_audit(mine, public_key=run(other.audit_checkpoint_key())["public_key"])
        )
        assert report["ok"] is False and "of organization" in report["problem"]
    finally:
        other.close()


def test_entries_after_the_latest_checkpoint_rest_on_the_chain_alone(
    client: Aztp, db_path: Path, checkpointed: tuple[dict[str, Any], str]
) -> None:
    """The documented limit: a checkpoint vouches for the history up to its entry. Entries
    written after it can be dropped with the head moved back (to no earlier than the
    checkpoint) without the checkpoint noticing; checkpoint often to keep that window short."""
    cp, _key = checkpointed
    con = sqlite3.connect(db_path)
    with con:
        _truncate(lambda _con, cp: cp["checkpoint"]["seq"])(con, cp)
    con.close()
    assert run(client.verify_audit(cp))["ok"] is True


def test_no_checkpoint_is_signed_over_a_broken_chain(client: Aztp, db_path: Path) -> None:
    _populate(client)
    con = sqlite3.connect(db_path)
    with con:
        _rewrite_revocation(con, {})
    con.close()
    with pytest.raises(AuditChainError, match="no checkpoint signed"):
        run(client.audit_checkpoint())
