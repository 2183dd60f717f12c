"""Topologies: agents run by other agents, and who decides their tool calls.

A supervisor's tool runs a sub-agent (another ``create_agent`` graph). Every tool call the
sub-agent makes must be decided, and audited, as the sub-agent: the agent its tools were
secured for, or the agent of its own ``AztpMiddleware``, never the supervisor whose tool call
happens to be running around it. Real ``create_agent`` runs with scripted models, a real
embedded authority per test; tool bodies count their executions, so "denied" always means
"the body did not run".
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("langchain")

from aztp_langchain import AztpMiddleware, acting_as, identity_of, secure_tools
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from aztp_agents import Aztp, secured
from aztp_agents.guard import bind_agent
from tests.support.langchain import (
    MODES,
    USER,
    Counter,
    QueryArgs,
    counting_tool,
    decisions,
    invoke,
    run,
    tool_messages,
)

#: How an agent is guarded: its own middleware, its tools secured for it, or ``@secured``.
SUPERVISOR_KINDS = ("middleware", "secure_tools")
SUB_AGENT_KINDS = ("secure_tools", "secured")


@pytest.fixture
def client(tmp_path: Any) -> Aztp:
    return Aztp(home=tmp_path)


class Agent:
    """One guarded ``create_agent`` graph and the AZTP ID of its agent."""

    def __init__(self, graph: Any, agent_id: str, flow_id: str) -> None:
        self.graph = graph
        self.agent_id = agent_id
        self.flow_id = flow_id


def build(client: Aztp, name: str, kind: str, script: list[Any], tools: list[BaseTool]) -> Agent:
    model = ScriptedChatModel(script=script)
    if kind == "middleware":
        mw = AztpMiddleware(flow="prod", agent_name=name, client=client)
        agent_id = mw.enroll(tools)  # identities now, so the test can name the agent up front
        return Agent(create_agent(model, tools, middleware=[mw]), agent_id, mw.guard.flow_id)
    if kind in ("secure_tools", "toolnode"):
        wrapped = secure_tools(tools, flow="prod", agent=name, client=client)
        graph = create_agent(model, wrapped) if kind == "secure_tools" else toolnode(model, wrapped)
        return Agent(graph, str(wrapped[0].agent_id), wrapped[0].guard.flow_id)
    assert kind == "secured"

    @secured(flow="prod", agent=name, client=client)
    def make() -> Any:
        return create_agent(model, tools)

    graph = make()
    tool = next(iter(graph.nodes["tools"].bound.tools_by_name.values()))
    return Agent(graph, str(identity_of(graph)), tool.guard.flow_id)


def toolnode(model: Any, tools: list[BaseTool]) -> Any:
    """A hand-written LangGraph ``StateGraph``: model node, ``ToolNode``, ``tools_condition``."""
    bound = model.bind_tools(tools)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", RunnableLambda(call_model, afunc=acall_model))
    g.add_node("tools", ToolNode(tools))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile()


def last_answer(result: dict[str, Any]) -> str:
    return str(result["messages"][-1].content)


#: How a supervisor's tool body starts the nested run.
RUNNERS = ("direct", "thread", "copied-thread", "task")


def asker(name: str, inner: Callable[[], Agent], counter: Counter, runner: str = "direct") -> Any:
    """A tool whose body runs another agent (``inner()``) and answers with its last message.

    ``runner``: the nested run is started in the body itself, in a new thread (that inherits
    no context), in a thread that runs in a copy of the body's context, or (async) in an
    asyncio task (which copies the context too)."""

    def in_thread(graph: Any) -> str:
        box: dict[str, Any] = {}

        def target() -> None:
            box["result"] = graph.invoke(USER)

        ctx = contextvars.copy_context()
        thread = threading.Thread(
            target=(lambda: ctx.run(target)) if runner == "copied-thread" else target
        )
        thread.start()
        thread.join(60)
        return last_answer(box["result"])

    def body(query: str, limit: int = 3) -> str:
        counter.hit(name)
        graph = inner().graph
        if runner in ("thread", "copied-thread"):
            return in_thread(graph)
        return last_answer(graph.invoke(USER))

    async def abody(query: str, limit: int = 3) -> str:
        counter.hit(name)
        graph = inner().graph
        if runner == "task":
            return last_answer(await asyncio.create_task(graph.ainvoke(USER)))
        if runner in ("thread", "copied-thread"):
            return await asyncio.to_thread(in_thread, graph)
        return last_answer(await graph.ainvoke(USER))

    return StructuredTool.from_function(
        func=body,
        coroutine=abody,
        name=name,
        description=f"Ask the {name} agent.",
        args_schema=QueryArgs,
    )


def audit_rows(client: Aztp) -> list[tuple[str, str, str]]:
    """``(agent, tool name, reason)`` of every tool-call decision, oldest first."""
    return [(e["subject"], e["data"]["toolName"], e["data"]["reason"]) for e in decisions(client)]


def revoke(client: Aztp, agent: Agent) -> None:
    run(client.revoke_flow_identity(agent.agent_id, agent.flow_id, "compromised"))


def supervisor_over_analyst(
    client: Aztp,
    counter: Counter,
    supervisor_kind: str,
    analyst_kind: str,
    *,
    supervisor_has_stats: bool = False,
    runner: str = "direct",
) -> tuple[Agent, Agent]:
    """A supervisor whose ``ask_analyst`` tool runs the analyst, whose one tool is ``stats``.

    ``supervisor_has_stats``: the supervisor is linked to a tool named ``stats`` too (the
    case where deciding the analyst's call as the supervisor would wrongly allow it)."""
    analyst = build(
        client,
        "analyst",
        analyst_kind,
        [[call("stats", query="q3")], "analysis done"],
        [counting_tool("stats", counter)],
    )
    sup_tools = [asker("ask_analyst", lambda: analyst, counter, runner)]
    if supervisor_has_stats:
        sup_tools.append(counting_tool("stats", counter))
    supervisor = build(
        client,
        "supervisor",
        supervisor_kind,
        [[call("ask_analyst", query="q3")], "report done"],
        sup_tools,
    )
    return supervisor, analyst


# --- 18.1: a nested agent decides as itself -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("analyst_kind", SUB_AGENT_KINDS)
@pytest.mark.parametrize("supervisor_kind", SUPERVISOR_KINDS)
def test_a_nested_agent_is_decided_as_itself(
    client: Aztp, supervisor_kind: str, analyst_kind: str, mode: str
) -> None:
    counter = Counter()
    supervisor, analyst = supervisor_over_analyst(client, counter, supervisor_kind, analyst_kind)

    result = invoke(supervisor.graph, mode)

    assert [m.content for m in tool_messages(result, "ask_analyst")] == ["analysis done"]
    assert counter.counts == {"ask_analyst": 1, "stats": 1}
    assert audit_rows(client) == [
        (supervisor.agent_id, "ask_analyst", "allowed"),
        (analyst.agent_id, "stats", "allowed"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("analyst_kind", SUB_AGENT_KINDS)
@pytest.mark.parametrize("supervisor_kind", SUPERVISOR_KINDS)
def test_a_revoked_nested_agent_is_denied_even_when_its_supervisor_may_call_the_tool(
    client: Aztp, supervisor_kind: str, analyst_kind: str, mode: str
) -> None:
    counter = Counter()
    supervisor, analyst = supervisor_over_analyst(
        client, counter, supervisor_kind, analyst_kind, supervisor_has_stats=True
    )
    revoke(client, analyst)

    invoke(supervisor.graph, mode)

    assert counter["stats"] == 0  # the analyst's stats body never ran
    assert counter["ask_analyst"] == 1
    assert audit_rows(client) == [
        (supervisor.agent_id, "ask_analyst", "allowed"),
        (analyst.agent_id, "stats", "agent_revoked_in_flow"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runner", RUNNERS)
def test_the_nested_run_decides_as_itself_in_threads_and_tasks(
    client: Aztp, runner: str, mode: str
) -> None:
    """The nested run in the tool body itself, in a plain thread (no caller in its context),
    in a thread running a copy of the body's context, and (async) in an asyncio task."""
    if runner == "task" and mode == "sync":
        pytest.skip("a task needs the async run")
    counter = Counter()
    supervisor, analyst = supervisor_over_analyst(
        client, counter, "middleware", "secure_tools", supervisor_has_stats=True, runner=runner
    )
    revoke(client, analyst)

    invoke(supervisor.graph, mode)

    assert counter.counts == {"ask_analyst": 1}
    assert audit_rows(client) == [
        (supervisor.agent_id, "ask_analyst", "allowed"),
        (analyst.agent_id, "stats", "agent_revoked_in_flow"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kinds", [("middleware", "secure_tools"), ("secure_tools", "secured")])
def test_two_levels_of_nesting_each_agent_decides_as_itself_and_the_parent_resumes(
    client: Aztp, kinds: tuple[str, str], mode: str
) -> None:
    """supervisor -> analyst -> clerk. After the clerk's run, the analyst's next call is
    decided as the analyst again, and after the analyst's, the supervisor's as the supervisor."""
    top, middle = kinds
    counter = Counter()
    clerk = build(
        client,
        "clerk",
        middle,
        [[call("stats", query="raw")], "clerk done"],
        [counting_tool("stats", counter)],
    )
    analyst = build(
        client,
        "analyst",
        middle,
        [[call("ask_clerk", query="raw")], [call("stats", query="q3")], "analysis done"],
        [asker("ask_clerk", lambda: clerk, counter), counting_tool("stats", counter)],
    )
    supervisor = build(
        client,
        "supervisor",
        top,
        [[call("ask_analyst", query="q3")], [call("search", query="x")], "report done"],
        [asker("ask_analyst", lambda: analyst, counter), counting_tool("search", counter)],
    )

    result = invoke(supervisor.graph, mode)

    assert [m.content for m in tool_messages(result, "ask_analyst")] == ["analysis done"]
    assert counter.counts == {"ask_analyst": 1, "ask_clerk": 1, "stats": 2, "search": 1}
    assert audit_rows(client) == [
        (supervisor.agent_id, "ask_analyst", "allowed"),
        (analyst.agent_id, "ask_clerk", "allowed"),
        (clerk.agent_id, "stats", "allowed"),
        (analyst.agent_id, "stats", "allowed"),
        (supervisor.agent_id, "search", "allowed"),
    ]

    # The clerk revoked: only its own call is denied, the parents go on as themselves.
    revoke(client, clerk)
    before = len(audit_rows(client))
    invoke(supervisor.graph, mode)
    assert counter.counts == {"ask_analyst": 2, "ask_clerk": 2, "stats": 3, "search": 2}
    assert audit_rows(client)[before:] == [
        (supervisor.agent_id, "ask_analyst", "allowed"),
        (analyst.agent_id, "ask_clerk", "allowed"),
        (clerk.agent_id, "stats", "agent_revoked_in_flow"),
        (analyst.agent_id, "stats", "allowed"),
        (supervisor.agent_id, "search", "allowed"),
    ]


# --- the rule for a caller in the context ---------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_acting_as_decides_the_calls_of_its_own_run_but_not_of_runs_nested_below(
    client: Aztp, mode: str
) -> None:
    """``acting_as`` is an explicit override for the tools called in its block; a tool call
    that runs inside it binds its own caller, and a sub-agent below decides as itself."""
    counter = Counter()
    supervisor, analyst = supervisor_over_analyst(client, counter, "secure_tools", "secure_tools")
    boss = secure_tools(
        [counting_tool("ask_analyst", counter)], flow="prod", agent="boss", client=client
    )[0].agent_id

    async def arun() -> Any:
        with acting_as(boss):
            return await supervisor.graph.ainvoke(USER)

    if mode == "sync":
        with acting_as(boss):
            supervisor.graph.invoke(USER)
    else:
        asyncio.run(arun())

    assert counter.counts == {"ask_analyst": 1, "stats": 1}
    assert audit_rows(client) == [
        (boss, "ask_analyst", "allowed"),
        (analyst.agent_id, "stats", "allowed"),
    ]


def test_tools_without_an_agent_take_the_caller_of_the_running_tool_call(client: Aztp) -> None:
    """A tool secured with no agent of its own, called from inside a supervisor's tool call:
    decided as the supervisor (the only caller there is)."""
    counter = Counter()
    (helper,) = secure_tools([counting_tool("helper", counter)], flow="prod", client=client)

    def body(query: str, limit: int = 3) -> str:
        counter.hit("delegate")
        return str(helper.invoke({"query": query}))

    delegate = StructuredTool.from_function(
        func=body, name="delegate", description="Delegate.", args_schema=QueryArgs
    )
    supervisor = build(
        client,
        "supervisor",
        "middleware",
        [[call("delegate", query="x")], "done"],
        [delegate, counting_tool("helper", counter)],
    )

    invoke(supervisor.graph, "sync")

    assert counter.counts == {"delegate": 1, "helper": 1}
    assert audit_rows(client) == [
        (supervisor.agent_id, "delegate", "allowed"),
        (supervisor.agent_id, "helper", "allowed"),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_a_middleware_decision_covers_only_the_call_it_decided(client: Aztp, mode: str) -> None:
    """The supervisor's ``stats`` tool (call id ``call_0_0``) runs the analyst, whose secured
    ``stats`` is called with the same tool identity and the same call id: still decided, as
    the analyst (revoked), not taken as already covered by the supervisor's decision."""
    counter = Counter()
    analyst = build(
        client,
        "analyst",
        "secure_tools",
        [[call("stats", query="q3")], "analysis done"],
        [counting_tool("stats", counter)],
    )
    supervisor = build(
        client,
        "supervisor",
        "middleware",
        [[call("stats", query="q3")], "report done"],
        [asker("stats", lambda: analyst, counter)],
    )
    revoke(client, analyst)

    invoke(supervisor.graph, mode)

    assert counter["stats"] == 1  # the supervisor's body only
    assert audit_rows(client) == [
        (supervisor.agent_id, "stats", "allowed"),
        (analyst.agent_id, "stats", "agent_revoked_in_flow"),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_a_core_bind_agent_names_a_caller_but_overrides_no_tool_agent(
    client: Aztp, mode: str
) -> None:
    """``aztp_agents.guard.bind_agent`` around a run: tools with no agent decide as the bound
    agent; a tool secured for an agent still decides as that agent."""
    counter = Counter()
    analyst = build(
        client,
        "analyst",
        "secure_tools",
        [[call("stats", query="q3")], "analysis done"],
        [counting_tool("stats", counter)],
    )
    (shared,) = secure_tools([counting_tool("lookup", counter)], flow="prod", client=client)
    boss = secure_tools(
        [counting_tool("lookup", counter)], flow="prod", agent="boss", client=client
    )[0].agent_id

    async def both() -> None:
        with bind_agent(boss):
            await analyst.graph.ainvoke(USER)
            await shared.ainvoke({"query": "x"})

    if mode == "sync":
        with bind_agent(boss):
            analyst.graph.invoke(USER)
            shared.invoke({"query": "x"})
    else:
        asyncio.run(both())

    assert counter.counts == {"stats": 1, "lookup": 1}
    assert audit_rows(client) == [
        (analyst.agent_id, "stats", "allowed"),
        (boss, "lookup", "allowed"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("supervisor_kind", SUPERVISOR_KINDS)
def test_after_the_nested_run_the_parents_caller_is_back(
    client: Aztp, supervisor_kind: str, mode: str
) -> None:
    """In the supervisor's tool body, a tool with no agent of its own, called after the
    analyst's run returned, is decided as the supervisor again (not as the analyst)."""
    counter = Counter()
    (helper,) = secure_tools([counting_tool("helper", counter)], flow="prod", client=client)
    analyst = build(
        client,
        "analyst",
        "secure_tools",
        [[call("stats", query="q3")], "analysis done"],
        [counting_tool("stats", counter)],
    )

    def body(query: str, limit: int = 3) -> str:
        answer = last_answer(analyst.graph.invoke(USER))
        return f"{answer} / {helper.invoke({'query': query})}"

    async def abody(query: str, limit: int = 3) -> str:
        answer = last_answer(await analyst.graph.ainvoke(USER))
        return f"{answer} / {await helper.ainvoke({'query': query})}"

    ask = StructuredTool.from_function(
        func=body, coroutine=abody, name="ask_analyst", description="Ask.", args_schema=QueryArgs
    )
    supervisor = build(
        client,
        "supervisor",
        supervisor_kind,
        [[call("ask_analyst", query="q3")], "report done"],
        [ask, counting_tool("helper", counter)],  # the supervisor is linked to helper
    )

    result = invoke(supervisor.graph, mode)

    assert [m.content for m in tool_messages(result, "ask_analyst")] == [
        "analysis done / helper: 3 results for q3"
    ]
    assert audit_rows(client) == [
        (supervisor.agent_id, "ask_analyst", "allowed"),
        (analyst.agent_id, "stats", "allowed"),
        (supervisor.agent_id, "helper", "allowed"),
    ]


# --- the topology suite: streaming, parallel calls, StateGraph sub-agents ---------------------
# (supervisors with sub-agents and two-level nesting are above; MCP tools are in test_mcp.py;
# CrewAI's topologies in test_topology_crewai.py and test_crewai_adapter.py)

STREAMS = ("stream", "astream")


def consume(graph: Any, how: str) -> list[Any]:
    """Run ``graph`` by streaming its updates to the end."""
    if how == "stream":
        return list(graph.stream(USER, stream_mode="updates"))

    async def go() -> list[Any]:
        return [chunk async for chunk in graph.astream(USER, stream_mode="updates")]

    return asyncio.run(go())


@pytest.mark.parametrize("how", STREAMS)
@pytest.mark.parametrize("supervisor_kind", SUPERVISOR_KINDS)
def test_a_streamed_supervisor_run_decides_nested_calls_as_the_sub_agent(
    client: Aztp, supervisor_kind: str, how: str
) -> None:
    counter = Counter()
    supervisor, analyst = supervisor_over_analyst(
        client, counter, supervisor_kind, "secure_tools", supervisor_has_stats=True
    )
    revoke(client, analyst)

    chunks = consume(supervisor.graph, how)

    assert chunks  # updates were streamed
    assert counter.counts == {"ask_analyst": 1}  # the analyst's stats body never ran
    assert audit_rows(client) == [
        (supervisor.agent_id, "ask_analyst", "allowed"),
        (analyst.agent_id, "stats", "agent_revoked_in_flow"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("supervisor_kind", SUPERVISOR_KINDS)
def test_parallel_calls_to_two_sub_agents_each_decide_as_their_own_agent(
    client: Aztp, supervisor_kind: str, mode: str
) -> None:
    """One model turn calls two sub-agents at once (LangGraph runs them concurrently); the
    auditor is revoked. Each nested call is decided as the agent that made it."""
    counter = Counter()
    analyst = build(
        client,
        "analyst",
        "secure_tools",
        [[call("stats", query="q3")], "analysis done"],
        [counting_tool("stats", counter)],
    )
    auditor = build(
        client,
        "auditor",
        "secure_tools",
        [[call("erase", query="logs")], "audit done"],
        [counting_tool("erase", counter)],
    )
    supervisor = build(
        client,
        "supervisor",
        supervisor_kind,
        [[call("ask_analyst", query="a"), call("ask_auditor", query="b")], "report done"],
        [
            asker("ask_analyst", lambda: analyst, counter),
            asker("ask_auditor", lambda: auditor, counter),
        ],
    )
    revoke(client, auditor)

    invoke(supervisor.graph, mode)

    assert counter.counts == {"ask_analyst": 1, "ask_auditor": 1, "stats": 1}
    assert sorted(audit_rows(client)) == sorted(
        [
            (supervisor.agent_id, "ask_analyst", "allowed"),
            (supervisor.agent_id, "ask_auditor", "allowed"),
            (analyst.agent_id, "stats", "allowed"),
            (auditor.agent_id, "erase", "agent_revoked_in_flow"),
        ]
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("supervisor_kind", SUPERVISOR_KINDS)
def test_a_stategraph_toolnode_sub_agent_decides_as_itself(
    client: Aztp, supervisor_kind: str, mode: str
) -> None:
    """The sub-agent is a hand-written ``StateGraph`` with a ``ToolNode`` (its tools secured
    for it) and makes two calls in one turn; its revoked call never runs."""
    counter = Counter()
    analyst = build(
        client,
        "analyst",
        "toolnode",
        [[call("stats", query="q3"), call("chart", query="q3")], "analysis done"],
        [counting_tool("stats", counter), counting_tool("chart", counter)],
    )
    supervisor = build(
        client,
        "supervisor",
        supervisor_kind,
        [[call("ask_analyst", query="q3")], "report done"],
        [asker("ask_analyst", lambda: analyst, counter), counting_tool("stats", counter)],
    )
    revoke(client, analyst)

    result = invoke(supervisor.graph, mode)

    assert [m.content for m in tool_messages(result, "ask_analyst")] == ["analysis done"]
    assert counter.counts == {"ask_analyst": 1}
    assert sorted(audit_rows(client)) == sorted(
        [
            (supervisor.agent_id, "ask_analyst", "allowed"),
            (analyst.agent_id, "stats", "agent_revoked_in_flow"),
            (analyst.agent_id, "chart", "agent_revoked_in_flow"),
        ]
    )
