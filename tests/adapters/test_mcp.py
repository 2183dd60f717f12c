"""MCP tools: a real stdio MCP server (``tests/support/mcp_server.py``) behind each adapter.

The server's ``wipe`` tool writes a marker file when its body runs, and every tool body logs
its name in ``calls``: "denied" always means "the body never ran on the server". Covered:
langchain-mcp-adapters tools (``secure_tools`` and ``AztpMiddleware`` in real ``create_agent``
runs), crewai-tools' ``MCPServerAdapter`` tools in a real ``Crew.kickoff()``, and CrewAI's own
``Agent(mcps=[...])``, whose tools appear only inside ``kickoff``.
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
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from aztp_agents import Aztp
from tests.support.langchain import decisions, run

SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"


@pytest.fixture
def client(tmp_path: Path) -> Aztp:
    return Aztp(home=tmp_path / "aztp")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The MCP server's marker directory."""
    path = tmp_path / "mcp"
    path.mkdir()
    return path


def server_calls(marker: Path) -> list[str]:
    """The tool bodies that ran on the MCP server, in order."""
    calls = marker / "calls"
    return calls.read_text(encoding="utf-8").split() if calls.exists() else []


def wiped(marker: Path) -> bool:
    return (marker / "wipe-ran").exists()


def audit_rows(client: Aztp) -> list[tuple[str, str, str]]:
    """``(agent, tool name, reason)`` of every tool-call decision, oldest first."""
    return [(e["subject"], e["data"]["toolName"], e["data"]["reason"]) for e in decisions(client)]


# --- langchain-mcp-adapters -------------------------------------------------------------------


def langchain_mcp_tools(marker: Path) -> list[Any]:
    pytest.importorskip("langchain_mcp_adapters")
    from langchain_mcp_adapters.client import MultiServerMCPClient

    mcp = MultiServerMCPClient(
        {
            "test": {
                "command": sys.executable,
                "args": [str(SERVER), str(marker)],
                "transport": "stdio",
            }
        }
    )
    tools = asyncio.run(mcp.get_tools())
    assert sorted(t.name for t in tools) == ["lookup", "wipe"]
    return tools


def lc_agent(
    client: Aztp, kind: str, tools: list[Any], script: list[Any]
) -> tuple[Any, str, Any, dict[str, str]]:
    """A ``create_agent`` graph guarded by ``kind``; its agent ID, guard and tool IDs."""
    from aztp_langchain import AztpMiddleware, secure_tools
    from aztp_langchain.testing import ScriptedChatModel
    from langchain.agents import create_agent

    model = ScriptedChatModel(script=script)
    if kind == "middleware":
        mw = AztpMiddleware(flow="prod", agent_name="researcher", client=client)
        agent_id = mw.enroll(tools)
        return create_agent(model, tools, middleware=[mw]), agent_id, mw.guard, mw.tool_ids
    wrapped = secure_tools(tools, flow="prod", agent="researcher", client=client)
    tool_ids = {t.name: str(t.aztp_id) for t in wrapped}
    return create_agent(model, wrapped), str(wrapped[0].agent_id), wrapped[0].guard, tool_ids


LC_KINDS = ("secure_tools", "middleware")


@pytest.mark.parametrize("kind", LC_KINDS)
def test_langchain_mcp_tools_run_when_allowed(client: Aztp, marker: Path, kind: str) -> None:
    from aztp_langchain.testing import call

    tools = langchain_mcp_tools(marker)
    graph, agent_id, _, _ = lc_agent(
        client,
        kind,
        tools,
        [[call("lookup", query="aztp")], [call("wipe", target="/tmp/x")], "done"],
    )

    # MCP tools are async-only: the agent runs with ainvoke.
    result = asyncio.run(graph.ainvoke({"messages": [{"role": "user", "content": "go"}]}))

    assert server_calls(marker) == ["lookup", "wipe"]
    assert "found: aztp" in str(result["messages"])
    assert [(a, t, r) for a, t, r in audit_rows(client)] == [
        (agent_id, "lookup", "allowed"),
        (agent_id, "wipe", "allowed"),
    ]


@pytest.mark.parametrize("kind", LC_KINDS)
def test_langchain_mcp_tool_not_granted_never_runs_on_the_server(
    client: Aztp, marker: Path, kind: str
) -> None:
    from aztp_langchain.testing import call

    tools = langchain_mcp_tools(marker)
    graph, agent_id, _, tool_ids = lc_agent(
        client,
        kind,
        tools,
        [[call("wipe", target="/tmp/x")], [call("lookup", query="aztp")], "done"],
    )
    run(client.unlink_identities(agent_id, tool_ids["wipe"]))

    asyncio.run(graph.ainvoke({"messages": [{"role": "user", "content": "go"}]}))

    assert not wiped(marker)
    assert server_calls(marker) == ["lookup"]
    assert audit_rows(client) == [(agent_id, "wipe", "no_link"), (agent_id, "lookup", "allowed")]


@pytest.mark.parametrize("kind", LC_KINDS)
def test_langchain_mcp_tools_of_an_agent_revoked_in_the_flow_never_run(
    client: Aztp, marker: Path, kind: str
) -> None:
    from aztp_langchain.testing import call

    tools = langchain_mcp_tools(marker)
    graph, agent_id, guard, _ = lc_agent(
        client, kind, tools, [[call("wipe", target="/tmp/x"), call("lookup", query="q")], "done"]
    )
    run(client.revoke_flow_identity(agent_id, guard.flow_id, "compromised"))

    asyncio.run(graph.ainvoke({"messages": [{"role": "user", "content": "go"}]}))

    assert not wiped(marker)
    assert server_calls(marker) == []
    assert sorted(audit_rows(client)) == [
        (agent_id, "lookup", "agent_revoked_in_flow"),
        (agent_id, "wipe", "agent_revoked_in_flow"),
    ]


# --- CrewAI -----------------------------------------------------------------------------------


@pytest.fixture
def _crewai() -> Any:
    pytest.importorskip("crewai")
    from crewai.hooks import clear_all_global_hooks

    yield
    clear_all_global_hooks()


def crew_of(agent: Any, **kw: Any) -> Any:
    from crewai import Crew, Task

    return Crew(
        agents=[agent],
        tasks=[Task(description="Research task", expected_output="x", agent=agent)],
        **kw,
    )


def crewai_agent(role: str, llm: Any, **kw: Any) -> Any:
    from crewai import Agent

    return Agent(role=role, goal=f"{role} goal", backstory=f"{role} backstory", llm=llm, **kw)


@pytest.mark.usefixtures("_crewai")
@pytest.mark.parametrize("native", [False, True])
def test_crewai_tools_mcp_server_adapter_in_a_secured_crew(
    client: Aztp, marker: Path, native: bool
) -> None:
    pytest.importorskip("crewai_tools")
    from aztp_crewai import identity_of, secure_crew
    from aztp_crewai.testing import scripted_crew_llm
    from crewai_tools import MCPServerAdapter
    from mcp import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=[str(SERVER), str(marker)])
    with MCPServerAdapter(params) as tools:
        llm = scripted_crew_llm(
            ("lookup", {"query": "aztp"}), ("wipe", {"target": "/tmp/x"}), native=native
        )
        researcher = crewai_agent("Researcher", llm, tools=list(tools))
        crew = secure_crew(crew_of(researcher), flow="prod", client=client)
        agent_id = identity_of(researcher)
        wipe_id = identity_of(next(t for t in tools if t.name == "wipe"))
        run(client.unlink_identities(agent_id, wipe_id))  # wipe is not granted any more

        crew.kickoff()

    assert not wiped(marker)
    assert server_calls(marker) == ["lookup"]
    assert audit_rows(client) == [
        (agent_id, "lookup", "allowed"),
        (agent_id, "wipe", "no_link"),
    ]


def native_mcp(marker: Path) -> tuple[Any, str, str]:
    """CrewAI's stdio config for the test server, and the names CrewAI gives its two tools."""
    from crewai.mcp import MCPServerStdio
    from crewai.mcp.tool_resolver import MCPToolResolver
    from crewai.utilities.string_utils import sanitize_tool_name

    config = MCPServerStdio(command=sys.executable, args=[str(SERVER), str(marker)])
    server_name = MCPToolResolver._create_transport(config)[1]
    return (
        config,
        sanitize_tool_name(f"{server_name}_lookup"),
        sanitize_tool_name(f"{server_name}_wipe"),
    )


@pytest.mark.usefixtures("_crewai")
@pytest.mark.parametrize("native", [False, True])
def test_crewai_mcps_tools_appearing_at_kickoff_are_the_agents_grant(
    client: Aztp, marker: Path, native: bool
) -> None:
    """Failed before 18.4: both calls were ``tool_unknown`` and nothing ran on the server."""
    from aztp_crewai import identity_of, secure_crew
    from aztp_crewai.testing import scripted_crew_llm

    config, lookup, wipe = native_mcp(marker)
    llm = scripted_crew_llm(
        (lookup, {"query": "aztp"}), (wipe, {"target": "/tmp/x"}), native=native
    )
    researcher = crewai_agent("Researcher", llm, mcps=[config])
    crew = secure_crew(crew_of(researcher), flow="prod", client=client)
    agent_id = identity_of(researcher)

    crew.kickoff()

    assert server_calls(marker) == ["lookup", "wipe"]
    rows = audit_rows(client)
    assert [(a, t, r) for a, t, r in rows] == [
        (agent_id, lookup, "allowed"),
        (agent_id, wipe, "allowed"),
    ]
    # each tool got its own identity, in the crew's flow, linked to the agent
    tool_ids = [e["data"]["tool"] for e in decisions(client)]
    assert len(set(tool_ids)) == 2
    assert all(t.startswith("aztp://") and "unidentified" not in t for t in tool_ids)


@pytest.mark.usefixtures("_crewai")
def test_crewai_mcps_tools_are_enrolled_once(client: Aztp, marker: Path) -> None:
    """The tool is enrolled and linked at its first appearance only: when an administrator
    removes the link afterwards, the next kickoff (which resolves the tools again) is denied
    instead of quietly linking it again."""
    from aztp_crewai import identity_of, secure_crew
    from aztp_crewai.testing import scripted_crew_llm

    config, lookup, _ = native_mcp(marker)
    llm = scripted_crew_llm((lookup, {"query": "aztp"}))
    researcher = crewai_agent("Researcher", llm, mcps=[config])
    crew = secure_crew(crew_of(researcher), flow="prod", client=client)

    crew.kickoff()
    crew.kickoff()
    tool_id = decisions(client)[0]["data"]["tool"]
    run(client.unlink_identities(identity_of(researcher), tool_id))
    crew.kickoff()

    assert server_calls(marker) == ["lookup", "lookup"]
    rows = decisions(client)
    assert [e["data"]["reason"] for e in rows] == ["allowed", "allowed", "no_link"]
    assert {e["data"]["tool"] for e in rows} == {tool_id}


@pytest.mark.usefixtures("_crewai")
@pytest.mark.parametrize("native", [False, True])
def test_crewai_mcps_tools_of_an_agent_revoked_in_the_flow_never_run(
    client: Aztp, marker: Path, native: bool
) -> None:
    from aztp_crewai import guard_of, identity_of, secure_crew
    from aztp_crewai.testing import scripted_crew_llm

    config, lookup, wipe = native_mcp(marker)
    llm = scripted_crew_llm(
        (wipe, {"target": "/tmp/x"}), (lookup, {"query": "aztp"}), native=native
    )
    researcher = crewai_agent("Researcher", llm, mcps=[config])
    crew = secure_crew(crew_of(researcher), flow="prod", client=client)
    agent_id = identity_of(researcher)
    run(client.revoke_flow_identity(agent_id, guard_of(crew).flow_id, "compromised"))

    crew.kickoff()

    assert not wiped(marker)
    assert server_calls(marker) == []
    assert audit_rows(client) == [
        (agent_id, wipe, "agent_revoked_in_flow"),
        (agent_id, lookup, "agent_revoked_in_flow"),
    ]


@pytest.mark.usefixtures("_crewai")
def test_crewai_mcp_tool_that_no_declaration_produced_stays_denied(
    client: Aztp, marker: Path
) -> None:
    """A tool injected into an agent at kickoff (here by a ``before_kickoff`` callback) is not
    the agent's grant: it has no identity, and its body never runs on the server."""
    pytest.importorskip("crewai_tools")
    from aztp_crewai import identity_of, secure_crew
    from aztp_crewai.testing import scripted_crew_llm
    from crewai_tools import MCPServerAdapter
    from mcp import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=[str(SERVER), str(marker)])
    with MCPServerAdapter(params, "wipe") as injected:
        llm = scripted_crew_llm(("wipe", {"target": "/tmp/x"}))
        researcher = crewai_agent("Researcher", llm)
        crew = secure_crew(crew_of(researcher), flow="prod", client=client)

        def inject(inputs: Any) -> Any:
            researcher.tools = [*(researcher.tools or []), *injected]
            return inputs

        crew.before_kickoff_callbacks.append(inject)
        crew.kickoff()

    assert not wiped(marker)
    assert server_calls(marker) == []
    assert [(a, t, r) for a, t, r in audit_rows(client)] == [
        (identity_of(researcher), "wipe", "tool_unknown")
    ]


@pytest.mark.usefixtures("_crewai")
def test_crewai_mcps_of_a_standalone_secured_agent(client: Aztp, marker: Path) -> None:
    from aztp_crewai import identity_of, secure_agent
    from aztp_crewai.testing import scripted_crew_llm

    config, lookup, _ = native_mcp(marker)
    researcher = crewai_agent(
        "Researcher", scripted_crew_llm((lookup, {"query": "aztp"})), mcps=[config]
    )
    secure_agent(researcher, flow="prod", client=client)

    researcher.kickoff("Look it up")

    assert server_calls(marker) == ["lookup"]
    assert audit_rows(client) == [(identity_of(researcher), lookup, "allowed")]


@pytest.mark.usefixtures("_crewai")
def test_crewai_mcps_in_an_async_run(client: Aztp, marker: Path) -> None:
    """``akickoff`` resolves the tools and calls the hook on the event loop's thread.
    (``kickoff_for_each`` is not a case: CrewAI's ``Agent.copy()`` drops ``mcps`` and ``apps``,
    so the copies it runs have no MCP tools to call.)"""
    from aztp_crewai import identity_of, secure_crew
    from aztp_crewai.testing import scripted_crew_llm

    config, lookup, wipe = native_mcp(marker)
    llm = scripted_crew_llm((lookup, {"query": "aztp"}), (wipe, {"target": "/tmp/x"}))
    researcher = crewai_agent("Researcher", llm, mcps=[config])
    crew = secure_crew(crew_of(researcher), flow="prod", client=client)

    asyncio.run(crew.akickoff())

    assert server_calls(marker) == ["lookup", "wipe"]
    assert audit_rows(client) == [
        (identity_of(researcher), lookup, "allowed"),
        (identity_of(researcher), wipe, "allowed"),
    ]
