"""``aztp-agents demo`` / ``make demo``: the product in one short, offline story.

1. Identity flows (the AZTP documentation's flow scenario) on the embedded authority.
2. A secured CrewAI crew — two agents, three tools, flow ``prod`` — whose every tool call is
   decided live; an operator revokes one agent in the flow mid-run and its next call is
   blocked; then the audit trail and its hash chain.

Offline: the agents' LLM is scripted (``aztp_crewai.testing``) and the authority is embedded
in a fresh temporary home (or ``--home``). Part 2 uses the CrewAI adapter through its public
API only (``aztp_crewai``), and only when CrewAI is installed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from .audit_check import check_decision_order
from .client import Aztp
from .decisions import Decision

console = Console(highlight=False, soft_wrap=True)


def _ok(flag: bool) -> str:
    return "[green]✓[/green]" if flag else "[red]✗[/red]"


async def flow_story(client: Aztp) -> None:
    console.rule("[bold]1. Identities and identity flows")
    s1 = await client.secure_connect({}, "chat-service", config={"isGlobalIdentity": False})
    s2 = await client.secure_connect({}, "analytics-service", config={"isGlobalIdentity": False})
    a1, a2 = s1.identity.aztp_id, s2.identity.aztp_id
    console.print(f"issued {a1}\n       {a2}")
    console.print(
        f"       each with an X.509-SVID for {s1.identity.spiffe_id} (expires {s1.identity.expires_at})"
    )
    flow = await client.create_flow(
        "identity-management-demo", description="flow demo", discoverable="public"
    )
    fid = flow["_id"]
    await client.add_identity_to_flow(fid, a1)
    await client.add_identity_to_flow(fid, a2)
    console.print(
        f"flow {fid}: both added; verified in flow "
        f"{_ok(await client.verify_identity_by_aztp_id(a1, identity_flow_id=fid))} "
        f"{_ok(await client.verify_identity_by_aztp_id(a2, identity_flow_id=fid))}"
    )
    await client.remove_identity_from_flow(fid, a1)
    removed = await client.verify_identity_by_aztp_id(a1, identity_flow_id=fid)
    console.print(f"removed chat-service: in flow {_ok(removed)} (expected ✗); re-added")
    await client.add_identity_to_flow(fid, a1)
    await client.revoke_flow_identity(a2, fid, "demo: flow-specific revocation")
    in_flow = await client.verify_identity_by_aztp_id(a2, identity_flow_id=fid)
    globally = await client.verify_identity_by_aztp_id(a2)
    console.print(
        f"revoked analytics-service in this flow only: in flow {_ok(in_flow)}, globally {_ok(globally)}"
    )


def _crew_tools(runs: dict[str, int]) -> list[Any]:
    """Three tools that count their runs (so the story can show which bodies never ran)."""
    from crewai.tools import tool

    @tool("web_search")
    def web_search(query: str) -> str:
        """Search the web."""
        runs["web_search"] += 1
        return f"3 results for {query!r}"

    @tool("read_file")
    def read_file(path: str) -> str:
        """Read a file from the knowledge base."""
        runs["read_file"] += 1
        return f"contents of {path}"

    @tool("write_report")
    def write_report(text: str) -> str:
        """Write the report."""
        runs["write_report"] += 1
        return f"report written ({len(text)} characters)"

    return [web_search, read_file, write_report]


def _crew_agents(runs: dict[str, int]) -> tuple[Any, Any]:
    """The Researcher (web_search, read_file) and the Writer (write_report), scripted."""
    from aztp_crewai.testing import ScriptedCrewLLM, tool_call
    from crewai import Agent

    web_search, read_file, write_report = _crew_tools(runs)
    researcher = Agent(
        role="Researcher",
        goal="Find facts",
        backstory="Careful.",
        tools=[web_search, read_file],
        llm=ScriptedCrewLLM(
            [
                tool_call("web_search", query="AZTP identity flows"),
                tool_call("read_file", path="notes/spiffe.md"),
                "Notes ready.",
            ]
        ),
    )
    writer = Agent(
        role="Writer",
        goal="Write the report",
        backstory="Brief.",
        tools=[write_report],
        llm=ScriptedCrewLLM(
            [tool_call("write_report", text="AZTP in one paragraph"), "Report done."]
        ),
    )
    return researcher, writer


def _decision_printer(names: dict[str | None, str]) -> Callable[[Decision], None]:
    """A guard listener printing each decision, agents shown by role."""

    def show(decision: Decision) -> None:
        who = names.get(decision.agent, decision.agent)
        if decision.allowed:
            console.print(
                f"  [green]ALLOWED[/green] {who:<10} → {decision.tool_name:<12} "
                f"[dim]({decision.reason.value}, {decision.latency_us:.0f} µs)[/dim]"
            )
        else:
            console.print(
                f"  [bold red]DENIED [/bold red] {who:<10} → {decision.tool_name:<12} "
                f"[red]{decision.reason.value}[/red]: {decision.explanation}"
            )

    return show


def crew_story(client: Aztp) -> None:
    from aztp_crewai import guard_of, identity_of, secure_crew
    from crewai import Crew, Task

    runs = {"web_search": 0, "read_file": 0, "write_report": 0}
    researcher, writer = _crew_agents(runs)

    console.rule("[bold]2. A secured CrewAI crew in flow 'prod'")
    state: dict[str, Any] = {}

    def revoke_after_research(_output: Any) -> None:
        guard = state["guard"]
        aztp_id = identity_of(researcher)
        client.sync.revoke_flow_identity(
            aztp_id, guard.flow_id, "operator: suspicious prompt injection"
        )
        console.print(
            f"[bold yellow]! operator revokes Researcher in flow 'prod'[/bold yellow] ({aztp_id})"
        )

    tasks = [
        Task(
            name="research",
            description="Research AZTP",
            expected_output="notes",
            agent=researcher,
            callback=revoke_after_research,
        ),
        Task(
            name="write", description="Write the report", expected_output="a report", agent=writer
        ),
        Task(
            name="follow-up",
            description="Research once more",
            expected_output="notes",
            agent=researcher,
        ),
    ]
    crew = secure_crew(
        Crew(name="demo crew", agents=[researcher, writer], tasks=tasks), flow="prod", client=client
    )
    guard = state["guard"] = guard_of(crew)

    names = {identity_of(a): a.role for a in crew.agents}
    for agent_obj in crew.agents:
        tools = ", ".join(t.name for t in agent_obj.tools)
        console.print(f"{agent_obj.role:<10} {identity_of(agent_obj)}  tools: {tools}")

    guard.listeners.append(_decision_printer(names))
    crew.kickoff()
    console.print(
        f"tool bodies run: {runs} — the researcher's calls after the revocation never ran"
    )
    audit_story(client, names)


def audit_story(client: Aztp, names: dict[str | None, str]) -> None:
    console.rule("[bold]3. Audit trail")
    entries = client.sync.audit(limit=8)
    for e in entries:
        d = e["data"]
        if e["action"] == "decision.tool_call":
            seq = f"{e['seq']}.{e['index']}"
            what = f"{d['reason']} {names.get(e['subject'], e['subject'])} → {d.get('toolName')}"
        else:
            seq, what = str(e["seq"]), e.get("subject") or ""
        # The revision the decision was taken on (or a change made) orders them, not the
        # time stamp: a batch written after a revocation holds decisions taken before it.
        rev = f"r{d['revision']}" if isinstance(d.get("revision"), int) else ""
        console.print(f"  #{seq:<6} {e['ts']}  {rev:<5} {e['action']:<22} {what}")
    report = client.sync.verify_audit()
    console.print(f"hash chain verified: {_ok(report['ok'])} ({report['entries']} entries)")
    order = check_decision_order(client.sync.audit())
    console.print(
        f"no allow on a revision at or after a revocation: {_ok(order.ok)} "
        f"({order.allowed} allowed, {order.revocations} revocations; aztp-agents audit check)"
    )


def main(home: str | os.PathLike[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message="function callbacks cannot be serialized")
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="aztp-demo-"))
    console.print(f"[bold]aztp-agents demo[/bold] — embedded authority at {home} (offline)")
    client = Aztp(home=home, trust_domain="demo.aztp")
    asyncio.run(flow_story(client))
    try:
        import crewai  # noqa: F401
    except ImportError:
        console.print("CrewAI is not installed: pip install 'aztp-agents[crewai]' for part 2")
        return 0
    crew_story(client)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
