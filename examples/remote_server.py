"""The authority as a server: a remote client, the official aztp-client, remote decisions.

1. An operator creates an organization (``aztp-agents org create``, API key shown once) and
   starts the server (``python -m aztp_agents.server``, same as ``aztp-agents serve``).
2. ``Aztp(api_key=..., base_url=...)`` issues an identity: the key pair is made here and only
   a CSR goes to the server — every request body is inspected to show it.
3. The official ``aztp-client`` package, unchanged, talks to the same server.
4. A ``Guard`` on the remote client decides tool calls locally from a replica that follows
   the server's change feed; a revocation made by another process (the CLI) reaches it in
   milliseconds.
5. The organization's audit log, read and verified through the server.

Offline: everything runs on 127.0.0.1; the server's store is in a fresh temporary folder (or
``$AZTP_HOME``); the server process is stopped at the end.

Run: .venv/bin/python examples/remote_server.py
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from aztp_agents import Aztp, Guard
from aztp_agents.remote import RemoteBackend
from aztp_agents.server.testing import live_server


async def main(url: str, api_key: str) -> None:
    print("\n== 2. The aztp-agents client, remote")
    sent: list[bytes] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.content)

    backend = RemoteBackend(
        url,
        api_key=api_key,
        async_event_hooks={"request": [record]},
        event_hooks={"request": [lambda r: sent.append(r.content)]},
    )
    client = Aztp(backend=backend)
    agent = await client.secure_connect({}, "research-agent", config={"isGlobalIdentity": False})
    flow = await client.create_flow("remote-prod", discoverable="private")
    await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)
    print(f"   issued {agent.identity.aztp_id}")
    print(
        f"   X.509-SVID: {agent.identity.certificate.splitlines()[0]}  private key here: {bool(agent.identity.private_key)}"
    )
    print(
        f"   CSR sent: {any(b'CERTIFICATE REQUEST' in body for body in sent)}; "
        f"private key sent to the server: {'yes' if any(b'PRIVATE KEY' in body for body in sent) else 'no'}"
    )
    in_flow = await client.verify_identity_by_aztp_id(
        agent.identity.aztp_id, identity_flow_id=flow["_id"]
    )
    print(f"   verified in flow remote-prod: {in_flow}")

    print("\n== 3. The official aztp-client, unchanged")
    from aztp_client import Aztp as OfficialAztp

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the start of the API key
        official = OfficialAztp(api_key=api_key, base_url=url)
    svc = await official.secure_connect({}, "analytics-service", config={"isGlobalIdentity": False})
    data = json.loads(await official.get_identity(svc))["data"]
    print(
        f"   official aztp-client issued {data['aztpId']} ({data['status']}), verify_identity: "
        f"{await official.verify_identity(svc)}; certificate from it: {svc.identity.certificate!r}"
    )

    print("\n== 4. Tool-call decisions on a remote client")
    guard = Guard(flow="remote-prod", client=client)
    crew = guard.enroll("agent/researcher", ["tool/web-search"])
    tool = crew.tools["tool/web-search"]
    print(f"   first call: {guard.check(crew.agent_id, tool, 'web_search').reason}")
    # An operator revokes the tool in the flow from another process (the CLI, against the server).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "aztp_agents.cli",
            "--url",
            url,
            "--api-key",
            api_key,
            "flow",
            "revoke",
            "remote-prod",
            "tool/web-search",
            "--reason",
            "compromised",
        ],
        check=True,
        capture_output=True,
    )
    acknowledged = time.perf_counter()
    while (
        guard.check(crew.agent_id, tool, "web_search").allowed
        and time.perf_counter() - acknowledged < 5
    ):
        await asyncio.sleep(0.001)
    decision = guard.check(crew.agent_id, tool, "web_search")
    print(
        f"   after another process revoked the tool in the flow: {decision.reason} "
        f"(denied {(time.perf_counter() - acknowledged) * 1000:.0f} ms after the revoking command returned)"
    )
    stats = backend.stats
    print(
        f"   decisions taken locally from the replica: {stats['local']}, asked of the server (replica not ready "
        f"yet): {stats['fallback']}; change-feed events: {stats['feed_events']}"
    )

    print("\n== 5. Audit, through the server")
    await asyncio.sleep(0.5)  # remote decisions reach the server's audit log in batches
    for entry in (await client.audit(action="decision.tool_call"))[:2]:
        print(f"   {entry['action']} {entry['data']['reason']} {entry['data']['toolName']}")
    report = await client.verify_audit()
    print(f"   audit chain: {'intact' if report['ok'] else 'BROKEN'}")
    client.close()


def run() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    print("== 1. Operator: an organization and its API key, then the server")
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "aztp_agents.cli",
            "--home",
            home,
            "org",
            "create",
            "acme",
            "--trust-domain",
            "acme.example",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = json.loads(created.stdout)["api_key"]
    print(
        f"   organization acme (acme.example), API key {api_key[:9]}… (shown once, stored hashed)"
    )
    with live_server(Path(home)) as server:  # a real server process, stopped by its PID
        print(f"   serving on {server.url} (pid {server.pid})")
        asyncio.run(main(server.url, api_key))
    print("\nserver stopped")


if __name__ == "__main__":
    run()
