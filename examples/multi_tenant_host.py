"""Hosting the agents of three organizations in one process, against one AZTP server.

What an operator and a hosting platform do:

1. ``aztp-agents --home H org create NAME --trust-domain TD --json`` for each organization
   (its own trust domain and CA; the first user's API key is shown once);
2. ``aztp-agents --home H serve`` (here: ``python -m aztp_agents.server`` on a free loopback
   port, stopped by its PID at the end);
3. one ``Aztp(api_key=ORG_KEY, base_url=URL)`` client per organization, and every agent run
   bound to the client of its organization. Runs of all organizations share one event loop;
   each run's agent identity lives in a contextvar, so concurrent runs never swap identities.

Then: one organization revokes one of its agents mid-way, which touches no other organization
(the agent names are the same in all three); every decision lands in its own organization's
audit chain; federation lets two organizations authorize a connection; a rotated API key is
refused.

Offline: the chat model is the scripted one from ``aztp_langchain.testing``.

Run: .venv/bin/python examples/multi_tenant_host.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from aztp_langchain import AztpMiddleware, current_agent
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from aztp_agents import Aztp
from aztp_agents.errors import AuthenticationError
from aztp_agents.server.testing import live_server

ORGS = ("red", "green", "blue")
AGENTS = ("planner", "researcher", "writer")  # the same names in every organization


def cli(home: str, *args: str) -> dict:
    """``aztp-agents --home HOME ... --json`` (what the operator runs on the server's host)."""
    out = subprocess.run(
        [sys.executable, "-m", "aztp_agents.cli", "--home", home, *args, "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


@contextlib.contextmanager
def server(home: str):
    """A real server process on a free local port, stopped by its PID at the end."""
    with live_server(Path(home)) as srv:
        print(f"server: {srv.url} (pid {srv.pid})")
        yield srv.url


@tool
async def whoami() -> str:
    """The AZTP identity this tool call runs for."""
    await asyncio.sleep(0)  # let the other runs interleave
    return str(current_agent())


@tool
async def lookup(topic: str) -> str:
    """Look a topic up."""
    await asyncio.sleep(0)
    return f"notes on {topic}"


class Host:
    """One client per organization; agents (and their guards) are built per organization."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.clients = {org: Aztp(api_key=key, base_url=url) for org, key in keys.items()}
        self.agents: dict[tuple[str, str], tuple[object, AztpMiddleware]] = {}
        self.decisions: Counter[tuple[str, str, str]] = Counter()

    def agent(self, org: str, name: str) -> tuple[object, AztpMiddleware]:
        key = (org, name)  # guards and their state are keyed by organization
        if key not in self.agents:
            guard = AztpMiddleware(flow="hosted", agent_name=name, client=self.clients[org])
            guard.guard.listeners.append(
                lambda d, org=org: self.decisions.update(
                    [(org, d.organization or "?", d.reason.value)]
                )
            )
            model = ScriptedChatModel(
                script=[[call("whoami"), call("lookup", topic=f"{org} roadmap")], "done"]
            )
            self.agents[key] = (create_agent(model, [whoami, lookup], middleware=[guard]), guard)
        return self.agents[key]

    async def run(self, org: str, name: str) -> list[str]:
        graph, guard = self.agent(org, name)
        result = await graph.ainvoke({"messages": [("user", "go")]})
        calls = []
        for m in result["messages"]:
            if isinstance(m, ToolMessage):
                if m.status == "error":
                    calls.append(f"{m.name}: DENIED")
                elif m.name == "whoami":  # the contextvar held this run's own identity
                    calls.append(
                        f"whoami: {'itself' if m.content == guard.agent_id else m.content}"
                    )
                else:
                    calls.append(f"{m.name}: ok")
        return calls

    async def round(self, title: str) -> None:
        jobs = [(org, name) for org in ORGS for name in AGENTS]
        results = await asyncio.gather(*(self.run(org, name) for org, name in jobs))
        print(f"\n== {title}: {len(jobs)} concurrent runs")
        for (org, name), calls in zip(jobs, results, strict=True):
            if org == "red" or name == "planner":
                print(f"  {org:<5} {name:<10} {', '.join(calls)}")

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


async def main(url: str, keys: dict[str, str]) -> None:
    host = Host(url, keys)
    try:
        await host.round("round 1")
        ids = {org: host.agent(org, "planner")[1].agent_id for org in ORGS}
        for org in ORGS:
            print(f"  {org:<5} planner is {ids[org]}")
        # whoami answered each run with its own identity, although all runs share the tools
        _, red_planner = host.agent("red", "planner")
        await host.clients["red"].revoke_identity(red_planner.agent_id, "compromised")
        print("\nred revokes its planner")
        await host.round("round 2")

        print("\n== decisions by organization (taken locally from each organization's replica)")
        org_ids = {
            org: (await host.clients[org].audit(action="org.create"))[0]["org_id"] for org in ORGS
        }
        for org in ORGS:
            mine = {k: v for k, v in host.decisions.items() if k[0] == org}
            carried = {k[1] for k in mine}
            print(
                f"  {org:<5} {dict((k[2], v) for k, v in mine.items())}  organization ok: {carried == {org_ids[org]}}"
            )
        for org in ORGS:
            taken = sum(v for k, v in host.decisions.items() if k[0] == org)
            for _ in range(100):  # locally taken decisions reach the server's audit log in batches
                entries = await host.clients[org].audit(action="decision.tool_call")
                if len(entries) >= taken:
                    break
                await asyncio.sleep(0.1)
            own = all(e["org_id"] == org_ids[org] for e in entries)
            chain = await host.clients[org].verify_audit()
            print(
                f"  {org:<5} audit: {len(entries)} decisions, all of {org}: {own}, chain intact: {chain['ok']}"
            )

        print("\n== federation (red -> green)")
        red, green = host.clients["red"], host.clients["green"]
        src, dst = ids["red"], ids["green"]
        await red.reissue_identity(src)

        async def may() -> bool:
            return await red.verify_authorize_identity_connection(src, dst)

        await red.backend.acall("federate", trust_domain="green.example")
        await red.link_identities(src, dst, "service_chain")
        print(f"  red trusts green only:    {await may()}")
        await green.backend.acall("federate", trust_domain="red.example")
        print(f"  both trust each other:    {await may()}")
        await green.backend.acall("unfederate", trust_domain="red.example")
        print(f"  green withdraws its trust: {await may()}")
    finally:
        host.close()


def rotate_key(url: str, home: str, keys: dict[str, str], key_ids: dict[str, str]) -> None:
    print("\n== keys")
    rotated = cli(home, "keys", "rotate", key_ids["blue"], "--org", "blue")
    old = Aztp(api_key=keys["blue"], base_url=url)
    try:
        old.sync.list_flows()
    except AuthenticationError as exc:
        print(f"  blue's old key: refused ({exc})")
    finally:
        old.close()
    new = Aztp(api_key=rotated["api_key"], base_url=url)
    print(f"  blue's new key: sees flows {[f['name'] for f in new.sync.list_flows()]}")
    new.close()


if __name__ == "__main__":
    home = tempfile.mkdtemp(prefix="aztp-host-")
    keys, key_ids = {}, {}
    for org in ORGS:
        created = cli(home, "org", "create", org, "--trust-domain", f"{org}.example")
        keys[org], key_ids[org] = created["api_key"], created["key_id"]
        print(
            f"organization {org}: trust domain {created['trust_domain']}, key {created['api_key'][:9]}…"
        )
    with server(home) as url:
        asyncio.run(main(url, keys))
        rotate_key(url, home, keys, key_ids)
    print("\ndone")
