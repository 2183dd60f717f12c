"""``@secured(flow=...)`` on CrewAI agent definitions, offline.

``aztp_agents.secured`` works on any supported framework's definitions: here a plain function
returning a CrewAI ``Agent`` (flow ``prod``) and a ``@CrewBase`` ``@agent`` method (flow
``reports``). The agent gets an AZTP identity, its tools get identities, it is linked to its
tools, and every tool call it makes is checked in its flow — in whatever crew it runs, even
one that was not secured itself.

Both definitions have the role "Senior Researcher", so they are one identity (names are per
organization). Revoking it in flow ``prod`` blocks it there and leaves it valid in ``reports``.

Offline: a scripted LLM (``aztp_crewai.testing``) and the embedded authority (SQLite in a
fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/secured_decorator.py
"""

from __future__ import annotations

import logging
import os
import tempfile

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
# @secured without client= uses the process-wide embedded authority under $AZTP_HOME.
if not os.environ.get("AZTP_HOME"):
    os.environ["AZTP_HOME"] = tempfile.mkdtemp(prefix="aztp-example-")

from aztp_crewai import guard_of, identity_of
from aztp_crewai.testing import ScriptedCrewLLM, tool_call
from crewai import Agent, Crew, Task
from crewai.project import CrewBase, agent, crew, task
from crewai.tools import tool

from aztp_agents import Aztp, secured


@tool("web_search")
def web_search(query: str) -> str:
    """Search the web."""
    return f"3 results for {query!r}"


def scripted() -> ScriptedCrewLLM:
    return ScriptedCrewLLM([tool_call("web_search", query="AZTP identity flows"), "Notes ready."])


@secured(flow="prod")  # a plain function returning an Agent
def researcher() -> Agent:
    return Agent(
        role="Senior Researcher",
        goal="Find facts",
        backstory="Careful.",
        tools=[web_search],
        llm=scripted(),
    )


@CrewBase
class ReportCrew:
    """A @CrewBase crew whose agent definition is secured in flow 'reports'."""

    agents: list
    tasks: list

    @agent
    @secured(flow="reports")  # below @agent (aztp_crewai.secured also works above it)
    def analyst(self) -> Agent:
        return Agent(
            role="Senior Researcher",
            goal="Find facts",
            backstory="Careful.",
            tools=[web_search],
            llm=scripted(),
        )

    @task
    def research(self) -> Task:
        return Task(description="Research AZTP", expected_output="notes", agent=self.analyst())

    @crew
    def crew(self) -> Crew:
        return Crew(agents=self.agents, tasks=self.tasks)


def show(client: Aztp, seen: int) -> int:
    entries = client.sync.audit(action="decision.tool_call")
    for e in entries[seen:]:
        d = e["data"]
        flow = next(f["name"] for f in client.sync.list_flows() if f["_id"] == d["flowId"])
        print(
            f"  {d['reason']:<22} flow={flow:<8} agent={d['context']['agent']}  tool={d['toolName']}"
        )
    return len(entries)


def main() -> None:
    client = Aztp()  # the same embedded authority @secured uses
    research_agent = researcher()
    print("@secured(flow='prod') on researcher():")
    print(f"  agent  {identity_of(research_agent)}")
    print(f"  tool   {identity_of(web_search)}")

    # A plain, unsecured Crew: the secured agent is still checked in its own flow.
    plain = Crew(
        agents=[research_agent],
        tasks=[Task(description="Research AZTP", expected_output="notes", agent=research_agent)],
    )
    print("\nRun 1 (plain Crew, secured agent): the call passes the guard")
    plain.kickoff()
    seen = show(client, 0)

    flow_id = guard_of(research_agent).flow_id
    client.sync.revoke_flow_identity(
        identity_of(research_agent), flow_id, reason="prompt injection suspected"
    )
    print("\nOperator revokes the researcher in flow 'prod' only; run 2:")
    plain.kickoff()
    seen = show(client, seen)

    logging.disable(logging.WARNING)  # @CrewBase warns that there is no config/agents.yaml
    report_crew = ReportCrew().crew()
    logging.disable(logging.NOTSET)
    print("\n@CrewBase crew, same role, flow 'reports': still allowed there")
    print(f"  agent  {identity_of(report_crew.agents[0])}  (the same identity)")
    report_crew.kickoff()
    show(client, seen)

    print(f"\nAudit chain intact: {client.sync.verify_audit()['ok']}")


if __name__ == "__main__":
    main()
