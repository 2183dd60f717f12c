"""Faults as tests: a replica killed mid-load loses no acknowledged write; PostgreSQL
restarted under load makes requests fail with 503 (never 500), and the replicas recover by
themselves when it is back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.pool import NullPool

from aztp_agents import Aztp
from aztp_agents.errors import AuthorityUnavailableError
from tests.authority.helpers import run
from tests.replicas.conftest import Cluster
from tests.replicas.load import Acked, missing, write_load

PATIENCE_S = 60.0


#: The issue asks for the kill to be survived five times in a row.
ROUNDS = 5


def test_kill_9_of_one_of_three_replicas_mid_load_loses_no_acknowledged_write(
    replicas: Callable[[int], Cluster],
) -> None:
    """Five rounds: a write load through three replicas, one of them (a different one each
    round) killed with SIGKILL mid-load and started again after; every write a replica
    acknowledged is in the database."""
    cluster = replicas(3)
    operator = Aztp(api_key=cluster.key, base_url=cluster.urls)
    try:
        flow_id = run(operator.create_flow("kill-load"))["_id"]
        for round_ in range(ROUNDS):
            victim = round_ % len(cluster.servers)
            result: dict[str, Acked] = {}
            load = threading.Thread(
                target=_load_into, args=(result, cluster, flow_id, f"r{round_}w")
            )
            start = _identities(cluster)
            load.start()
            deadline = time.monotonic() + PATIENCE_S
            killed = False
            while load.is_alive() and time.monotonic() < deadline:
                if _identities(cluster) >= start + 10:  # well under way
                    cluster.servers[victim].kill()  # SIGKILL by PID
                    killed = True
                    break
                time.sleep(0.01)
            load.join(timeout=600)
            assert killed, f"round {round_}: the load ended before the replica was killed"
            acked = result["acked"]
            assert acked.total() > 0
            for failure in acked.failures:  # only requests cut by the kill, reported as such
                assert "AuthorityUnavailableError" in failure
            assert missing(operator, flow_id, acked) == [], f"round {round_}"
            cluster.relaunch(victim)
    finally:
        operator.close()


def _load_into(result: dict[str, Acked], cluster: Cluster, flow_id: str, tag: str) -> None:
    result["acked"] = write_load(cluster.urls, cluster.key, flow_id, workers=6, ops=6, tag=tag)


def _identities(cluster: Cluster) -> int:
    """Identities issued so far (read from the database)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(cluster.database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM identities")).scalar_one())
    finally:
        engine.dispose()


def test_postgresql_restarted_under_load_gives_503_never_500_and_recovers_alone(
    replicas: Callable[[int], Cluster], postgres_cluster: Any
) -> None:
    cluster = replicas(2)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    stop = threading.Event()
    headers = {"api_access_key": cluster.key}

    def hammer(url: str, worker: int) -> None:
        n = 0
        with httpx.Client(base_url=url + "/", headers=headers, timeout=30) as http:
            while not stop.is_set():
                n += 1
                try:
                    if n % 2:
                        r = http.get("v1/flows")
                    else:
                        r = http.post("identity-flow/create", json={"name": f"f{worker}-{n}"})
                    statuses[r.status_code] += 1
                    if r.status_code >= 500:
                        assert r.status_code == 503, r.text
                        assert "internal" not in r.text
                except AssertionError as exc:
                    failures.append(str(exc))
                except httpx.TransportError as exc:
                    failures.append(f"transport: {type(exc).__name__}")
                time.sleep(0.005)

    threads = [
        threading.Thread(target=hammer, args=(url, i), daemon=True)
        for i, url in enumerate(cluster.urls * 2)
    ]
    for t in threads:
        t.start()
    try:
        _wait(lambda: statuses[200] >= 10)
        postgres_cluster.stop()  # fast shutdown: every connection is cut
        _wait(lambda: statuses[503] >= 4)  # answered while it is down: 503
        postgres_cluster.restart()
        ok_before = statuses[200]
        _wait(lambda: statuses[200] >= ok_before + 10)  # back by themselves, no restart
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        if postgres_cluster.process is None:
            postgres_cluster.restart()
    assert failures == []
    assert statuses[500] == 0 and set(statuses) <= {200, 503}, statuses
    client = Aztp(api_key=cluster.key, base_url=cluster.urls)
    try:
        assert run(client.secure_connect({}, "after-restart")).identity.aztp_id
        assert run(client.verify_audit())["ok"] is True
    finally:
        client.close()


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AuthorityUnavailableError("condition not reached (hang guard)")
        time.sleep(0.02)
