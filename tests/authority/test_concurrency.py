"""Concurrent threads and processes leave a consistent store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aztp_agents import Aztp
from tests.authority.helpers import REPO, aztp, issue, run

# =========================================================================================
# Concurrency
# =========================================================================================

_WORKER = """
async def worker(client, prefix, flow_id, hub, n):
    ids = []
    for k in range(n):
        agent = await client.secure_connect({}, f"{prefix}-{k}")
        ids.append(agent.identity.aztp_id)
        await client.add_identity_to_flow(flow_id, ids[k])
        await client.link_identities(hub, ids[k], "linked")
        if k:
            await client.link_identities(ids[k - 1], ids[k], "data_pipeline")
        # Our own writes are visible to our very next decision, whatever others are doing.
        decision = client.backend.decide(flow_id=flow_id, agent=ids[k], tool=hub, tool_name="probe")
        if not decision.allowed:
            raise AssertionError(f"{ids[k]} -> hub denied after its own writes: {decision.reason}")
    await client.revoke_identity(ids[0], reason=prefix)
    decision = client.backend.decide(flow_id=flow_id, agent=ids[0], tool=hub, tool_name="probe")
    if decision.allowed:
        raise AssertionError(f"{ids[0]} allowed right after its revocation")
    await client.revoke_flow_identity(ids[1], flow_id, reason=prefix)
    return ids
"""

_PROCESS_WORKER = (
    _WORKER
    + """
import asyncio, json, pathlib, sys, time
from aztp_agents import Aztp
home, prefix, flow_id, hub, n, ready, go = sys.argv[1:]
client = Aztp(home=home, trust_domain="astha.ai")
pathlib.Path(ready).touch()
deadline = time.monotonic() + 60
while not pathlib.Path(go).exists() and time.monotonic() < deadline:
    time.sleep(0.002)
print(json.dumps(asyncio.run(worker(client, prefix, flow_id, hub, int(n)))))
"""
)


def test_concurrent_threads_and_processes_leave_a_consistent_store(
    client: Aztp, make_client: Callable[..., Aztp], aztp_home: Path, tmp_path: Path
) -> None:
    threads_n, processes_n, per_worker = 8, 2, 5
    (hub,) = issue(client, "hub")
    flow = run(client.create_flow("busy-flow"))["_id"]
    run(client.add_identity_to_flow(flow, hub))
    namespace: dict[str, Any] = {}
    exec(_WORKER, namespace)
    worker = namespace["worker"]

    go = tmp_path / "go"
    procs = []
    for j in range(processes_n):
        ready = tmp_path / f"ready-{j}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _PROCESS_WORKER,
                        str(aztp_home),
                        f"proc{j}",
                        flow,
                        hub,
                        str(per_worker),
                        str(ready),
                        str(go),
                    ],
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    deadline = time.monotonic() + 60
    while not all(r.exists() for r, _ in procs) and time.monotonic() < deadline:
        time.sleep(0.01)

    barrier = threading.Barrier(threads_n + 1)
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def thread_main(i: int) -> None:
        own = make_client()  # separate client object, same home (shares the authority)
        barrier.wait()
        try:
            results[f"thread{i}"] = asyncio.run(worker(own, f"thread{i}", flow, hub, per_worker))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    go.touch()
    barrier.wait()
    for t in threads:
        t.join(timeout=240)
    for j, (_, proc) in enumerate(procs):
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        results[f"proc{j}"] = json.loads(out.strip().splitlines()[-1])
    assert not errors, errors
    assert len(results) == threads_n + processes_n

    workers = len(results)
    issued = {a for ids in results.values() for a in ids}
    assert len(issued) == workers * per_worker
    identities = {i["aztpId"]: i for i in run(client.list_identities())}
    assert set(identities) == issued | {hub}  # every issued identity present, nothing extra
    for prefix, ids in results.items():
        assert ids == [aztp(f"{prefix}-{k}") for k in range(per_worker)]
        assert identities[ids[0]]["status"] == "revoked"
        assert all(identities[a]["status"] == "active" for a in ids[1:])
        assert run(client.verify(ids[1], flow))["reason"] == "identity_revoked_in_flow"
        assert run(client.verify_identity_by_aztp_id(ids[2], flow)) is True
        assert run(client.verify_authorize_identity_connection(ids[2], ids[3])) is True
        assert (
            run(client.verify_authorize_identity_connection(ids[3], hub)) is True
        )  # linked: symmetric
    members = run(client.get_flow(flow))["identities"]
    assert len(members) == workers * per_worker + 1
    assert sum(m["status"] == "revoked" for m in members) == workers
    links = client.backend.authority.list_links(client.backend.principal)  # type: ignore[attr-defined]
    assert len(links) == workers * (2 * per_worker - 1)
    assert len({link["_id"] for link in links}) == len(links)

    report = run(client.verify_audit())
    assert report["ok"] is True, report
    counts: dict[str, int] = {}
    for e in run(client.audit()):
        counts[e["action"]] = counts.get(e["action"], 0) + 1
    assert counts["identity.issue"] == workers * per_worker + 1
    assert counts["flow.add_identity"] == workers * per_worker + 1
    assert counts["link.create"] == workers * (2 * per_worker - 1)
    assert counts["identity.revoke"] == workers
    assert counts["flow.revoke_identity"] == workers


def test_concurrent_secure_connect_of_one_name_issues_one_identity(
    client: Aztp, make_client: Callable[..., Aztp]
) -> None:
    n = 8
    barrier = threading.Barrier(n)
    ids: list[str] = []
    errors: list[BaseException] = []

    def connect() -> None:
        own = make_client()
        barrier.wait()
        try:
            ids.append(run(own.secure_connect({}, "shared-name")).identity.aztp_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert ids == [aztp("shared-name")] * n
    assert len(run(client.list_identities())) == 1
    actions = [e["action"] for e in run(client.audit(action="identity.*"))]
    assert actions.count("identity.issue") == 1 and actions.count("identity.reconnect") == n - 1
    assert run(client.verify_audit())["ok"] is True
