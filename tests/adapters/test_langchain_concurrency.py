"""LangChain adapter: 50 concurrent ``ainvoke`` runs in one event loop, each with its own agent
identity. Every decision must name the agent of its own run, and BlockBuster (active around
the runs) must find no blocking call on the loop.

A BlockingError raised inside the guard would be turned into an ``authority_unavailable``
denial by the fail-closed path, so the tests also require every decision to be ``allowed``:
a blocking call cannot hide behind the denial it causes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain")
pytest.importorskip("blockbuster")

import blockbuster
from aztp_langchain import AztpMiddleware, acting_as, current_agent, secure_tools
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain_core.tools import BaseTool, StructuredTool

from aztp_agents import Aztp
from tests.support.langchain import USER, Counter, counting_tool, decisions, tool_messages

N = 50


@pytest.fixture
def client(tmp_path: Any) -> Aztp:
    return Aztp(home=tmp_path)


def whoami_tool() -> BaseTool:
    async def whoami() -> str:
        await asyncio.sleep(0)  # let the other runs interleave
        return str(current_agent())

    return StructuredTool.from_function(
        coroutine=whoami, name="whoami", description="Who is calling."
    )


def model() -> ScriptedChatModel:
    # Two turns of tool calls per run: the identity must hold across turns too.
    return ScriptedChatModel(
        script=[[call("whoami"), call("search", query="q")], [call("whoami")], "done"]
    )


def run_under_blockbuster(runs: Any) -> list[Any]:
    """Await all runs concurrently in one loop, BlockBuster active around them (every module
    scanned: LangChain, LangGraph, the adapter, the core)."""

    async def main() -> list[Any]:
        with blockbuster.blockbuster_ctx():
            return await asyncio.gather(*runs())

    return asyncio.run(main())


def check(client: Aztp, results: list[Any], agent_ids: list[str], names: list[str]) -> None:
    problems = [e for e in decisions(client) if e["data"]["reason"] != "allowed"]
    assert not problems, [
        (e["data"]["reason"], e["data"].get("context"), e["subject"]) for e in problems[:3]
    ]
    for result, agent_id in zip(results, agent_ids, strict=True):
        whoami = [m.content for m in tool_messages(result, "whoami")]
        assert whoami == [agent_id, agent_id]
    by_name = dict(zip(names, agent_ids, strict=True))
    entries = decisions(client)
    assert len(entries) == 3 * N
    for e in entries:
        assert e["subject"] == by_name[e["data"]["context"]["agent"]]


def test_50_concurrent_create_agent_runs_with_the_middleware(client: Aztp) -> None:
    counter = Counter()
    tools = [whoami_tool(), counting_tool("search", counter)]
    names = [f"agent-{i:02d}" for i in range(N)]
    middlewares = [AztpMiddleware(flow="prod", agent_name=n, client=client) for n in names]
    shared_model = model()
    agents = [create_agent(shared_model, tools, middleware=[mw]) for mw in middlewares]

    # First use (identity issuance) happens inside the runs, under BlockBuster too.
    results = run_under_blockbuster(lambda: [a.ainvoke(USER) for a in agents])

    check(client, results, [mw.agent_id for mw in middlewares], names)
    assert counter["search"] == N


def test_50_concurrent_runs_share_one_graph_and_one_secured_tool_list(client: Aztp) -> None:
    """One graph, one list of secured tools: only the context says who is calling."""
    counter = Counter()
    tools = [whoami_tool(), counting_tool("search", counter)]
    names = [f"agent-{i:02d}" for i in range(N)]
    agent_ids = [
        secure_tools(tools, agent=n, flow="prod", client=client)[0].agent_id for n in names
    ]
    shared = secure_tools(tools, flow="prod", client=client)  # no agent of its own
    graph = create_agent(model(), shared)

    async def one(agent_id: str) -> Any:
        with acting_as(agent_id):
            return await graph.ainvoke(USER)

    results = run_under_blockbuster(lambda: [one(a) for a in agent_ids])

    problems = [e for e in decisions(client) if e["data"]["reason"] != "allowed"]
    assert not problems, [(e["data"]["reason"], e["subject"]) for e in problems[:3]]
    for result, agent_id in zip(results, agent_ids, strict=True):
        assert [m.content for m in tool_messages(result, "whoami")] == [agent_id, agent_id]
    entries = decisions(client)
    assert len(entries) == 3 * N
    assert sorted(e["subject"] for e in entries) == sorted(a for a in agent_ids for _ in range(3))
    assert counter["search"] == N
