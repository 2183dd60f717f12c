"""A secured CrewAI crew, offline: AZTP identities, flow enrollment, and a revocation that
stops a tool call.

Runs without network or API key: the agents' LLM is the scripted one from
``aztp_crewai.testing`` and the identity authority is embedded (SQLite in a temporary
directory unless ``AZTP_HOME`` is set).

Run: .venv/bin/python examples/crewai_secured_crew.py
"""

from __future__ import annotations

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import asyncio
import tempfile

from aztp_crewai import guard_of, identity_of, secure_crew
from aztp_crewai.testing import ScriptedCrewLLM, tool_call
from crewai import Agent, Crew, Task
from crewai.tools import tool

from aztp_agents import Aztp


@tool("web_search")
def web_search(query: str) -> str:
    """Search the web."""
    return f"3 results for {query!r}"


@tool("write_report")
def write_report(text: str) -> str:
    """Write the report to disk."""
    return f"report written ({len(text)} characters)"


def build_crew() -> Crew:
    researcher = Agent(
        role="Senior Researcher",
        goal="Find what AZTP is",
        backstory="Thorough and careful.",
        tools=[web_search],
        llm=ScriptedCrewLLM(
            [tool_call("web_search", query="AZTP identity flows"), "AZTP gives agents identities."]
        ),
    )
    writer = Agent(
        role="Writer",
        goal="Write a short report",
        backstory="Clear and brief.",
        tools=[write_report],
        llm=ScriptedCrewLLM(
            [tool_call("write_report", text="AZTP in one paragraph"), "Report done."]
        ),
    )
    return Crew(
        name="research crew",
        agents=[researcher, writer],
        tasks=[
            Task(
                name="research",
                description="Research AZTP",
                expected_output="notes",
                agent=researcher,
            ),
            Task(
                name="write",
                description="Write the report",
                expected_output="a report",
                agent=writer,
            ),
        ],
    )


def show_decisions(client: Aztp, since: int) -> int:
    entries = asyncio.run(client.audit(action="decision.tool_call"))
    for e in entries[since:]:
        d = e["data"]
        print(f"  {d['reason']:<22} agent={d['context']['agent']:<18} tool={d['toolName']}")
    return len(entries)


def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-crewai-example-")
    client = Aztp(home=home)
    crew = secure_crew(build_crew(), flow="research-prod", client=client)
    researcher = crew.agents[0]

    print("Identities (flow 'research-prod'):")
    for obj in (*crew.agents, web_search, write_report):
        print(f"  {getattr(obj, 'role', None) or obj.name:<18} {identity_of(obj)}")

    print("\nRun 1: every tool call passes the guard")
    crew.kickoff()
    seen = show_decisions(client, 0)

    print("\nRevoke the researcher in this flow only, then run again")
    flow_id = guard_of(crew).flow_id
    asyncio.run(
        client.revoke_flow_identity(identity_of(researcher), flow_id, "suspicious behaviour")
    )
    crew.kickoff()
    show_decisions(client, seen)
    observation = researcher.last_messages and [
        m["content"] for m in researcher.last_messages if "AZTP DENIED" in str(m.get("content"))
    ]
    if observation:
        print("\nWhat the researcher was told instead of a search result:")
        print("  " + str(observation[-1]).split("Observation: ")[-1].strip())

    report = asyncio.run(client.verify_audit())
    print(f"\nAudit chain intact: {report.get('ok', report)}")


if __name__ == "__main__":
    main()
