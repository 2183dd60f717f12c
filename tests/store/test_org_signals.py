"""Per-organization change signals (``store/org_signals.py``) as enforcement points use them:
another tenant's write costs a memory read, this tenant's write is read from the store before
the next decision, and a writer that dies mid-write never makes a stale state look current."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Reason
from aztp_agents.authority import Authority
from aztp_agents.decisions import fastpath
from aztp_agents.errors import StoreError
from aztp_agents.store import Store
from aztp_agents.store.org_signals import open_signals
from tests.support.processes import in_another_process

_REVOKE = """
from pathlib import Path
from aztp_agents.authority import Authority, Principal
from aztp_agents.errors import StoreError
from aztp_agents.store import Store
store = Store.open_sqlite(Path(db))
Authority(store, issuance_rate=None).identities.revoke_identity(Principal(org, user), who)
store.close()
"""


@pytest.fixture
def hosted(tmp_path: Path) -> Any:
    """One store, two organizations, each with a crew allowed to call its tool."""
    db = tmp_path / "aztp.db"
    store = Store.open_sqlite(db)
    authority = Authority(store, issuance_rate=None)
    crews = {}
    for name in ("acme", "globex"):
        p, _ = authority.create_org(name, f"{name}.example", with_key=False)
        agent = authority.identities.secure_connect(p, "agent", make_key=False)["identity"]
        tool = authority.identities.secure_connect(p, "tool", make_key=False)["identity"]
        flow = authority.flows.create_flow(p, "prod")["_id"]
        for who in (agent["aztpId"], tool["aztpId"]):
            authority.flows.add_identity_to_flow(p, flow, who)
        authority.links.link_identities(p, agent["aztpId"], tool["aztpId"], "uses_tool")
        crews[name] = (p, agent["aztpId"], tool["aztpId"], flow)
    yield db, store, authority, crews
    store.close()


def _point(authority: Authority, crew: tuple[Any, ...]) -> Any:
    p = crew[0]
    return authority.decisions.for_principal(p.org_id, p.user_id)


def _now(authority: Authority, crew: tuple[Any, ...]) -> Any:
    """The decision from memory, or None when the store must be read first. (The store's
    files are confirmed first, as the decision path does every quarter second: a few system
    calls, no read of the database; without it a slow subprocess would expire the interval
    and every answer here would be None for that reason alone.)"""
    _, agent, tool, flow = crew
    authority.changes.confirm_files()
    return _point(authority, crew).decide_now(flow, agent, tool, "search", True)


def _memoized(authority: Authority, crew: tuple[Any, ...]) -> Any:
    """:meth:`LocalDecisions.memoized` (the server's no-I/O path), as :func:`_now`."""
    p, agent, tool, flow = crew
    authority.changes.confirm_files()
    return authority.decisions.memoized(p.org_id, (p.user_id, flow, agent, tool, "search", True))


def _decide(authority: Authority, crew: tuple[Any, ...]) -> Any:
    _, agent, tool, flow = crew
    return _point(authority, crew).decide(flow_id=flow, agent=agent, tool=tool, tool_name="search")


def _revoke_elsewhere(db: Path, crew: tuple[Any, ...], who: str) -> None:
    p = crew[0]
    in_another_process(_REVOKE, db=str(db), org=p.org_id, user=p.user_id, who=who)


def test_another_tenants_write_elsewhere_is_answered_from_memory(hosted: Any) -> None:
    db, _store, authority, crews = hosted
    acme, globex = crews["acme"], crews["globex"]
    assert _decide(authority, acme).allowed and _decide(authority, globex).allowed
    held = authority.decisions.state(acme[0].org_id)
    position = held.position

    _revoke_elsewhere(db, globex, globex[1])  # another tenant's revocation, another process

    answer = _now(authority, acme)  # no read of the store: the signal says "not acme's"
    assert answer is not None and answer.allowed
    assert authority.decisions.state(acme[0].org_id) is held and held.position == position
    assert _now(authority, globex) is None  # globex's own write: read before deciding
    assert _decide(authority, globex).reason is Reason.AGENT_REVOKED


def test_this_tenants_write_elsewhere_denies_the_very_next_decision(hosted: Any) -> None:
    db, _store, authority, crews = hosted
    acme = crews["acme"]
    assert _decide(authority, acme).allowed
    assert _now(authority, acme) is not None  # memoized

    _revoke_elsewhere(db, acme, acme[2])  # the tool, revoked by another process

    assert _now(authority, acme) is None  # never answered from the old state
    denied = _decide(authority, acme)
    assert denied.reason is Reason.TOOL_REVOKED, denied


_ELSEWHERE = """
from pathlib import Path
from aztp_agents.authority import Authority, Principal
from aztp_agents.store import Store
store = Store.open_sqlite(Path(db))
authority, p = Authority(store, issuance_rate=None), Principal(org, user)
for op in ops:
    exec(op)
store.close()
"""


def _elsewhere(db: Path, crew: tuple[Any, ...], *ops: str) -> None:
    """Run ``ops`` (statements over ``authority``, ``p`` and the crew's ``agent``, ``tool``,
    ``flow``) in another process: writes this process learns of only from the store."""
    p, agent, tool, flow = crew
    in_another_process(
        _ELSEWHERE,
        db=str(db),
        org=p.org_id,
        user=p.user_id,
        agent=agent,
        tool=tool,
        flow=flow,
        ops=list(ops),
    )


_BYSTANDER = "aztp://acme.example/workload/production/node/bystander"


@pytest.mark.parametrize(
    "involving",
    [
        "authority.identities.revoke_identity(p, tool)",
        "authority.flows.revoke_flow_identity(p, agent, flow)",
        "authority.links.unlink_identities(p, agent, tool)",
        "authority.flows.update_flow(p, flow, discoverable='public')",
    ],
    ids=["tool revoked", "agent revoked in the flow", "unlinked", "flow settings"],
)
def test_this_tenants_write_about_other_identities_is_answered_from_memory(
    hosted: Any, involving: str
) -> None:
    """Another process writes to this organization about an identity the call does not
    involve: the memoized answer stands without a read, the state stays behind; a write
    that involves the call's agent, tool or flow is never answered from the old state."""
    db, _store, authority, crews = hosted
    acme = crews["acme"]
    authority.identities.secure_connect(acme[0], "bystander", make_key=False)
    assert _decide(authority, acme).allowed
    held = authority.decisions.state(acme[0].org_id)
    position = held.position

    _elsewhere(db, acme, f"authority.identities.revoke_identity(p, {_BYSTANDER!r})")

    answer = _now(authority, acme)
    assert answer is not None and answer.allowed
    memo = _memoized(authority, acme)  # the server's no-I/O path: the same
    assert memo is not None and memo.allowed
    assert authority.decisions._states[acme[0].org_id] is held and held.position == position

    _elsewhere(db, acme, involving)

    assert _now(authority, acme) is None  # never from the old state
    assert _memoized(authority, acme) is None
    after = _decide(authority, acme)
    assert held.position == position + 2  # caught up from the log, in place
    if "update_flow" in involving:
        assert after.allowed  # (a setting that changes no answer: read anyway)
    else:
        assert not after.allowed, after


def test_a_state_never_stays_behind_more_than_the_lag_limit(
    hosted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _store, authority, crews = hosted
    acme = crews["acme"]
    monkeypatch.setattr(fastpath, "LAG_LIMIT", 2 * 2)  # two writes
    authority.identities.secure_connect(acme[0], "bystander", make_key=False)
    assert _decide(authority, acme).allowed
    held = authority.decisions.state(acme[0].org_id)
    position = held.position
    revoke = f"authority.identities.revoke_identity(p, {_BYSTANDER!r})"
    reissue = f"authority.identities.reissue_identity(p, {_BYSTANDER!r})"

    _elsewhere(db, acme, revoke, reissue)
    assert _now(authority, acme) is not None  # two writes behind: within the limit
    _elsewhere(db, acme, revoke)
    assert _now(authority, acme) is None  # three: caught up first
    assert _decide(authority, acme).allowed and held.position == position + 3


def test_a_state_behind_catches_up_after_a_bounded_number_of_answers(
    hosted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers from a state behind its organization's writes cost a few more memory reads
    each: after ``BEHIND_USES`` of them the state catches up, and the next answer is the
    usual one again."""
    db, _store, authority, crews = hosted
    acme = crews["acme"]
    monkeypatch.setattr(fastpath, "BEHIND_USES", 3)
    authority.identities.secure_connect(acme[0], "bystander", make_key=False)
    assert _decide(authority, acme).allowed
    held = authority.decisions.state(acme[0].org_id)
    position = held.position

    _elsewhere(db, acme, f"authority.identities.revoke_identity(p, {_BYSTANDER!r})")
    for _ in range(3):
        assert _now(authority, acme) is not None
    assert held.position == position
    assert _now(authority, acme) is None  # the fourth: catch up first
    assert _decide(authority, acme).allowed and held.position == position + 1
    assert _now(authority, acme) is not None and held.behind_uses == 0


_DIE_MID_WRITE = """
import os
from pathlib import Path
from aztp_agents.store.org_signals import open_signals
from tests.support.processes import in_another_process
signals = open_signals(Path(db))
signals.begin([org])  # as a write transaction does (about the agent), then killed before it ends
signals.touch(org, [who])
os._exit(9)
"""


def test_a_writer_that_died_mid_write_is_never_trusted_and_the_next_write_heals(
    hosted: Any,
) -> None:
    db, store, authority, crews = hosted
    acme = crews["acme"]
    assert _decide(authority, acme).allowed
    org = acme[0].org_id
    signals = store.signals
    assert signals is not None and signals.read(org) is not None

    head = f"db={str(db)!r}\norg={org!r}\nwho={acme[1]!r}\n"
    proc = subprocess.run([sys.executable, "-c", head + _DIE_MID_WRITE])
    assert proc.returncode == 9
    assert signals.read(org) is None  # odd: a write that never ended

    # another commit moves the store's counter: the state may not be trusted by signal now
    authority.create_org("initech", "initech.example", with_key=False)
    assert _now(authority, acme) is None
    assert _decide(authority, acme).allowed  # read from the store: right

    _revoke_elsewhere(db, acme, acme[1])  # the slot's next write takes the dead writer's lock
    assert signals.read(org) is not None  # even again
    assert _decide(authority, acme).reason is Reason.AGENT_REVOKED
    assert _now(authority, acme) is not None  # and trusted from memory again


def test_no_increment_is_lost_across_threads_and_processes(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    db.touch()
    signals = open_signals(db)
    start = signals.read("org-a")
    assert start is not None
    code = (
        "from pathlib import Path\n"
        "from aztp_agents.store.org_signals import open_signals\n"
        "s = open_signals(Path(db))\n"
        "for _ in range(300):\n"
        "    s.end(s.begin(['org-a']))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", f"db={str(db)!r}\n" + code]) for _ in range(2)]

    def loop() -> None:
        for _ in range(300):
            signals.end(signals.begin(["org-a"]))

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert signals.read("org-a") == start + 2 * 300 * 4  # begin +1, end +1, none lost
    signals.close()


def test_a_deleted_signals_file_stops_the_memory_answers(hosted: Any) -> None:
    db, _store, authority, crews = hosted
    acme = crews["acme"]
    assert _decide(authority, acme).allowed
    in_another_process("import os; os.unlink(path)", path=f"{db}-orgs")
    authority.changes.confirmed_until = 0.0  # the confirmation interval has passed
    with pytest.raises(Exception, match="change signals file"):
        _now(authority, acme)  # confirming the files fails: nothing is answered
    with pytest.raises(Exception, match="change signals file"):
        _decide(authority, acme)


def test_a_signals_file_that_cannot_be_opened_refuses_the_store(tmp_path: Path) -> None:
    """Never through a symlink, and never without the signals: a process whose writes would
    not move them would leave every other process deciding on a stale state."""
    db = tmp_path / "aztp.db"
    Store.open_sqlite(db).close()
    (tmp_path / "aztp.db-orgs").unlink()
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    (tmp_path / "aztp.db-orgs").symlink_to(target)
    with pytest.raises(StoreError, match="change signals file"):
        Store.open_sqlite(db)
    assert target.read_bytes() == b"untouched"


_EARLIER_LAYOUT = """
import fcntl, os, sqlite3, sys
conn = sqlite3.connect(db)
conn.execute("SELECT count(*) FROM meta").fetchall()  # holds the database, on its WAL index
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM meta").fetchall()
fd = os.open(db + "-orgs", os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_SH, 1, 4096 * 8 + 1)  # the presence byte of the first layout
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_process_on_an_earlier_signals_layout_stops_writes(hosted: Any) -> None:
    """A process of the layout without subject slots would write without stamping them, and
    readers here would answer from states its writes made stale: while it holds the store,
    no write commits here (it does not share this layout's file)."""
    db, _store, authority, crews = hosted
    p = crews["acme"][0]
    older = subprocess.Popen(
        [sys.executable, "-c", f"db={str(db)!r}\n" + _EARLIER_LAYOUT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert older.stdout is not None and older.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="older version"):
            authority.flows.create_flow(p, "while-an-older-process-runs")
    finally:
        older.communicate("\n", timeout=60)
    authority.flows.create_flow(p, "after-it-stopped")  # and writes go on once it is gone
