"""The audit chain stays one chain per organization when several replicas append at once
(appends are serialized per organization in the database)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable

from aztp_agents import Aztp
from aztp_agents.client._remote import RemoteBackend
from aztp_agents.guard import Guard
from tests.authority.helpers import REPO, run
from tests.replicas.conftest import Cluster
from tests.replicas.load import decide_during, missing, write_load


def test_concurrent_writes_and_decisions_through_three_replicas_keep_one_verified_chain(
    replicas: Callable[[int], Cluster],
) -> None:
    cluster = replicas(3)
    operator = Aztp(api_key=cluster.key, base_url=cluster.urls)
    guards = []
    try:
        flow_id = run(operator.create_flow("load"))["_id"]
        for i, url in enumerate(cluster.urls):  # a guard per replica, deciding during the load
            guard = Guard(
                f"decide-{i}", client=Aztp(backend=RemoteBackend(url, api_key=cluster.key))
            )
            enrolled = guard.enroll("agent", ["tool"])
            guards.append((guard, enrolled.agent_id, enrolled.tools["tool"]))
        stop = threading.Event()
        deciding = decide_during(guards, stop)
        try:
            acked = write_load(cluster.urls, cluster.key, flow_id, workers=6, ops=8)
        finally:
            stop.set()
            deciding.join(timeout=30)
        for guard, _, _ in guards:
            guard.client.close()  # sends its queued decision records
        assert acked.failures == []
        assert missing(operator, flow_id, acked) == []
    finally:
        operator.close()

    verified = subprocess.run(
        [sys.executable, "-m", "aztp_agents.cli", "--json", "audit", "verify"],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "AZTP_DATABASE_URL": cluster.database_url,
            "AZTP_API_KEY": cluster.key,
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert '"ok": true' in verified.stdout
