"""CrewAI topologies: who decides each tool call when crews run in other shapes.

The patterns a CrewAI upgrade could break attribution in, beyond the single crew of
``test_crewai_adapter.py`` (which covers hierarchical crews, ``kickoff_async`` / ``akickoff``
and ``kickoff_for_each``) and ``test_mcp.py`` (MCP tools): crews run by a ``Flow``, crews run
from another crew's tool (one and two levels of nesting), ``akickoff_for_each``, async tools
and structured tools. Real ``kickoff`` runs with the scripted LLM and a real embedded authority
per test. Each test denies one call and proves its body did not run, and that the audit names
the agent that made each call.
"""

# ruff: noqa: E402  (CrewAI reads these variables at import: set them before importing it)
from __future__ import annotations

import os

for _key, _value in {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_TRACKING": "true",
}.items():
    os.environ.setdefault(_key, _value)

import asyncio
import threading
from typing import Any

import pytest

pytest.importorskip("crewai")

from aztp_crewai import guard_of, identity_of, secure_crew
from aztp_crewai.testing import scripted_crew_llm
from crewai import Agent, Crew, Task
from crewai.hooks import clear_all_global_hooks
from crewai.tools import BaseTool, tool
from pydantic import BaseModel, Field

from aztp_agents import Aztp
from tests.support.langchain import decisions, run


@pytest.fixture
def client(tmp_path: Any) -> Aztp:
    return Aztp(home=tmp_path)


@pytest.fixture(autouse=True)
def _clear_hooks() -> Any:
    yield
    clear_all_global_hooks()


class Runs:
    """Which tool bodies ran, in order (thread-safe: crews may run tools in threads)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def hit(self, name: str) -> None:
        with self._lock:
            self.names.append(name)


class QueryTool(BaseTool):
    name: str = "search"
    description: str = "Search for a query."
    runs: Any = None
    inner: Any = None  # a callable run by the body (a nested crew's kickoff)

    def _run(self, query: str = "") -> str:
        self.runs.hit(self.name)
        if self.inner is not None:
            return str(self.inner())
        return f"{self.name}: {query}"


def query_tool(name: str, runs: Runs, inner: Any = None) -> QueryTool:
    return QueryTool(name=name, description=f"The {name} tool.", runs=runs, inner=inner)


def agent_of(role: str, tools: list[Any], *calls: str, native: bool = False) -> Agent:
    llm = scripted_crew_llm(*[(c, {"query": f"q{i}"}) for i, c in enumerate(calls)], native=native)
    return Agent(
        role=role, goal=f"{role} goal", backstory=f"{role} backstory", tools=tools, llm=llm
    )


def crew_of(*agents: Agent, name: str = "crew") -> Crew:
    return Crew(
        name=name,
        agents=list(agents),
        tasks=[Task(description=f"{a.role} task", expected_output="x", agent=a) for a in agents],
    )


def audit_rows(client: Aztp) -> list[tuple[str, str, str]]:
    """``(agent, tool name, reason)`` of every tool-call decision, oldest first."""
    return [(e["subject"], e["data"]["toolName"], e["data"]["reason"]) for e in decisions(client)]


def revoke(client: Aztp, crew: Crew, agent: Agent) -> None:
    run(client.revoke_flow_identity(identity_of(agent), guard_of(crew).flow_id, "compromised"))


# --- crews run by a Flow ------------------------------------------------------------------------


def test_crews_run_by_a_flow_decide_as_their_own_agents(client: Aztp) -> None:
    from crewai.flow.flow import Flow, listen, start

    runs = Runs()
    researcher = agent_of("Researcher", [query_tool("search", runs)], "search")
    writer = agent_of("Writer", [query_tool("publish", runs)], "publish")
    research = secure_crew(crew_of(researcher, name="research"), flow="prod", client=client)
    writing = secure_crew(crew_of(writer, name="writing"), flow="prod", client=client)
    revoke(client, writing, writer)

    class Pipeline(Flow[dict[str, Any]]):
        @start()
        def gather(self) -> str:
            return str(research.kickoff())

        @listen(gather)
        def write(self, notes: str) -> str:
            return str(writing.kickoff(inputs={"notes": notes}))

    Pipeline().kickoff()

    assert runs.names == ["search"]  # the revoked writer's publish body never ran
    assert audit_rows(client) == [
        (identity_of(researcher), "search", "allowed"),
        (identity_of(writer), "publish", "agent_revoked_in_flow"),
    ]


def test_a_flow_step_running_a_crew_asynchronously(client: Aztp) -> None:
    from crewai.flow.flow import Flow, start

    runs = Runs()
    allowed = agent_of("Researcher", [query_tool("search", runs)], "search")
    denied = agent_of("Auditor", [query_tool("erase", runs)], "erase")
    crew = secure_crew(crew_of(allowed, denied), flow="prod", client=client)
    revoke(client, crew, denied)

    class Pipeline(Flow[dict[str, Any]]):
        @start()
        async def go(self) -> str:
            return str(await crew.akickoff())

    asyncio.run(Pipeline().kickoff_async())

    assert runs.names == ["search"]
    assert audit_rows(client) == [
        (identity_of(allowed), "search", "allowed"),
        (identity_of(denied), "erase", "agent_revoked_in_flow"),
    ]


# --- a crew run from another crew's tool ----------------------------------------------------------


def test_a_crew_run_inside_a_tool_of_another_crew_decides_as_its_own_agents(
    client: Aztp,
) -> None:
    """One level: the lead's ``ask_team`` tool kicks off the team crew. The team's analyst is
    revoked; the lead may call a tool of the same name (``stats``) and must not lend it."""
    runs = Runs()
    analyst = agent_of("Analyst", [query_tool("stats", runs)], "stats")
    team = secure_crew(crew_of(analyst, name="team"), flow="prod", client=client)
    lead = agent_of(
        "Lead",
        [query_tool("ask_team", runs, inner=team.kickoff), query_tool("stats", runs)],
        "ask_team",
    )
    lead_crew = secure_crew(crew_of(lead, name="lead"), flow="prod", client=client)
    revoke(client, team, analyst)

    lead_crew.kickoff()

    assert runs.names == ["ask_team"]  # the analyst's stats body never ran
    assert audit_rows(client) == [
        (identity_of(lead), "ask_team", "allowed"),
        (identity_of(analyst), "stats", "agent_revoked_in_flow"),
    ]


def test_two_levels_of_crews_run_from_tools_each_agent_decides_as_itself(client: Aztp) -> None:
    """Director -> manager's crew -> analyst's crew; the analyst is revoked, and after the nested
    runs return, the outer agents' next calls are theirs again."""
    runs = Runs()
    analyst = agent_of("Analyst", [query_tool("stats", runs)], "stats")
    analysts = secure_crew(crew_of(analyst, name="analysts"), flow="prod", client=client)
    manager = agent_of(
        "Manager",
        [query_tool("ask_analysts", runs, inner=analysts.kickoff), query_tool("notes", runs)],
        "ask_analysts",
        "notes",
    )
    managers = secure_crew(crew_of(manager, name="managers"), flow="prod", client=client)
    director = agent_of(
        "Director",
        [query_tool("ask_managers", runs, inner=managers.kickoff), query_tool("decide", runs)],
        "ask_managers",
        "decide",
    )
    board = secure_crew(crew_of(director, name="board"), flow="prod", client=client)
    revoke(client, analysts, analyst)

    board.kickoff()

    assert runs.names == ["ask_managers", "ask_analysts", "notes", "decide"]
    assert audit_rows(client) == [
        (identity_of(director), "ask_managers", "allowed"),
        (identity_of(manager), "ask_analysts", "allowed"),
        (identity_of(analyst), "stats", "agent_revoked_in_flow"),
        (identity_of(manager), "notes", "allowed"),
        (identity_of(director), "decide", "allowed"),
    ]


# --- akickoff_for_each ------------------------------------------------------------------------------


def test_akickoff_for_each_runs_copies_that_decide_as_the_secured_agents(client: Aztp) -> None:
    runs = Runs()
    allowed = agent_of("Researcher", [query_tool("search", runs)], "search")
    denied = agent_of("Auditor", [query_tool("erase", runs)], "erase")
    crew = secure_crew(crew_of(allowed, denied), flow="prod", client=client)
    revoke(client, crew, denied)

    asyncio.run(crew.akickoff_for_each([{"x": "1"}, {"x": "2"}]))

    assert runs.names == ["search", "search"]
    assert sorted(audit_rows(client)) == sorted(
        [(identity_of(allowed), "search", "allowed")] * 2
        + [(identity_of(denied), "erase", "agent_revoked_in_flow")] * 2
    )


# --- async tools and structured tools --------------------------------------------------------------


class TransferArgs(BaseModel):
    account: str = Field(description="The account.")
    amount: int = Field(description="How much.")


class TransferTool(BaseTool):
    """A structured tool: several typed arguments from an ``args_schema``."""

    name: str = "transfer"
    description: str = "Transfer an amount to an account."
    args_schema: type[BaseModel] = TransferArgs
    runs: Any = None

    def _run(self, account: str, amount: int) -> str:
        self.runs.hit(self.name)
        return f"sent {amount} to {account}"


def async_tool(runs: Runs) -> Any:
    @tool("fetch_async")
    async def fetch_async(query: str) -> str:
        """Fetch a page (an async tool body)."""
        await asyncio.sleep(0)
        runs.hit("fetch_async")
        return f"page for {query}"

    return fetch_async


@pytest.mark.parametrize("runner", ["kickoff", "akickoff"])
@pytest.mark.parametrize("native", [False, True])
def test_async_and_structured_tools_are_decided_and_denied_bodies_never_run(
    client: Aztp, runner: str, native: bool
) -> None:
    runs = Runs()
    transfer, fetch = TransferTool(runs=runs), async_tool(runs)
    llm = scripted_crew_llm(
        ("fetch_async", {"query": "aztp"}),
        ("transfer", {"account": "acme", "amount": 5}),
        ("fetch_async", {"query": "again"}),
        native=native,
    )
    clerk = Agent(role="Clerk", goal="g", backstory="b", tools=[transfer, fetch], llm=llm)
    crew = secure_crew(crew_of(clerk), flow="prod", client=client)
    run(client.unlink_identities(identity_of(clerk), identity_of(transfer)))

    result = crew.kickoff() if runner == "kickoff" else asyncio.run(crew.akickoff())

    assert result is not None
    assert runs.names == ["fetch_async", "fetch_async"]  # transfer's body never ran
    assert audit_rows(client) == [
        (identity_of(clerk), "fetch_async", "allowed"),
        (identity_of(clerk), "transfer", "no_link"),
        (identity_of(clerk), "fetch_async", "allowed"),
    ]


# --- tools that appear at kickoff: platform apps ----------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_platform_app_tools_resolved_at_kickoff_are_the_agents_grant(
    client: Aztp, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """``apps=`` tools are resolved by CrewAI inside ``kickoff`` (from the CrewAI platform:
    replaced here by a local tool, the test runs offline). The agent that declared the app
    may call them; a revoked one may not. (MCP tools: ``test_mcp.py``.)"""
    crewai_tools = pytest.importorskip("crewai_tools")
    runs = Runs()
    monkeypatch.setattr(
        crewai_tools, "CrewaiPlatformTools", lambda apps: [query_tool("notion_search", runs)]
    )
    researcher = agent_of("Researcher", [], "notion_search", native=native)
    researcher.apps = ["notion"]
    auditor = agent_of("Auditor", [], "notion_search", native=native)
    auditor.apps = ["notion"]
    crew = secure_crew(crew_of(researcher, auditor), flow="prod", client=client)
    revoke(client, crew, auditor)

    crew.kickoff()

    assert runs.names == ["notion_search"]  # only the researcher's call ran
    assert audit_rows(client) == [
        (identity_of(researcher), "notion_search", "allowed"),
        (identity_of(auditor), "notion_search", "agent_revoked_in_flow"),
    ]
