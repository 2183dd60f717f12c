"""LangChain adapter: ``secure_tools`` for every runner that is not ``create_agent`` + middleware.

Runners: a hand-written LangGraph ``StateGraph`` with a ``ToolNode``, LangGraph's prebuilt
``create_react_agent``, ``create_agent`` without middleware, and direct ``tool.invoke``.
Every test has its own embedded authority; tool bodies count their executions.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Annotated, Any

import pytest

pytest.importorskip("langgraph")

from aztp_langchain import (
    AztpMiddleware,
    SecuredTool,
    acting_as,
    current_agent,
    identity_of,
    secure,
    secure_tool,
    secure_tools,
    supports,
)
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import InjectedToolArg, InjectedToolCallId, StructuredTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import InjectedState, ToolNode, ToolRuntime, tools_condition
from langgraph.prebuilt.tool_node import _get_all_injected_args

import aztp_agents
from aztp_agents import Aztp, ToolCallDenied
from aztp_agents.decisions import Reason
from tests.support.langchain import (
    MODES,
    Counter,
    broken_client,
    counting_tool,
    decisions,
    deny_policy,
    invoke,
    reasons,
    run,
    tool_messages,
)


@pytest.fixture
def client(tmp_path: Any) -> Aztp:
    return Aztp(home=tmp_path)


# --- runners --------------------------------------------------------------------------------


def toolnode_graph(model: Any, tools: list[Any]) -> Any:
    """The hand-written LangGraph loop: model node, ToolNode, tools_condition."""
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


def react_graph(model: Any, tools: list[Any]) -> Any:
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, tools)


def plain_create_agent(model: Any, tools: list[Any]) -> Any:
    return create_agent(model, tools)


RUNNERS = {"toolnode": toolnode_graph, "prebuilt": react_graph, "create_agent": plain_create_agent}


def two_calls() -> ScriptedChatModel:
    return ScriptedChatModel(
        script=[[call("search", query="aztp")], [call("fetch", query="doc-1", limit=1)], "done"]
    )


def secured_pair(
    client: Aztp, counter: Counter, *, on_search: Any = None, **options: Any
) -> list[SecuredTool]:
    tools = [counting_tool("search", counter, on_call=on_search), counting_tool("fetch", counter)]
    return secure_tools(
        tools, agent=options.pop("agent", "researcher"), flow="prod", client=client, **options
    )


# --- the scenarios of the middleware, through secured tools ---------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_allowed_calls_run_and_are_audited(client: Aztp, runner: str, mode: str) -> None:
    counter = Counter()
    tools = secured_pair(client, counter)
    result = invoke(RUNNERS[runner](two_calls(), tools), mode)

    assert counter.counts == {"search": 1, "fetch": 1}
    assert [m.status for m in tool_messages(result)] == ["success", "success"]
    assert tool_messages(result, "fetch")[0].content == "fetch: 1 results for doc-1"
    agent_id = tools[0].agent_id
    entries = decisions(client)
    assert [(e["subject"], e["data"]["tool"], e["data"]["reason"]) for e in entries] == [
        (agent_id, tools[0].aztp_id, "allowed"),
        (agent_id, tools[1].aztp_id, "allowed"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_flow_revocation_between_two_calls_blocks_the_second(
    client: Aztp, runner: str, mode: str
) -> None:
    counter = Counter()
    holder: dict[str, Any] = {}

    async def revoke() -> None:
        t = holder["tool"]
        await client.revoke_flow_identity(t.agent_id, t.guard.flow_id, "compromised")

    tools = secured_pair(client, counter, on_search=revoke)
    holder["tool"] = tools[0]
    result = invoke(RUNNERS[runner](two_calls(), tools), mode)

    assert counter.counts == {"search": 1}
    (fetch,) = tool_messages(result, "fetch")
    assert fetch.status == "error" and "[agent_revoked_in_flow]" in fetch.content
    assert reasons(client) == ["allowed", "agent_revoked_in_flow"]


async def _revoke_agent(client: Aztp, tools: list[SecuredTool]) -> None:
    await client.revoke_identity(tools[0].agent_id, "stolen")


async def _unlink(client: Aztp, tools: list[SecuredTool]) -> None:
    await client.unlink_identities(tools[0].agent_id, tools[0].aztp_id)


async def _revoke_tool(client: Aztp, tools: list[SecuredTool]) -> None:
    await client.revoke_identity(tools[0].aztp_id, "retired")


async def _deny(client: Aztp, tools: list[SecuredTool]) -> None:
    await deny_policy(client, tools[0].aztp_id, "search")


SCENARIOS = {
    "global_revoke": (_revoke_agent, Reason.AGENT_REVOKED),
    "missing_link": (_unlink, Reason.NO_LINK),
    "revoked_tool": (_revoke_tool, Reason.TOOL_REVOKED),
    "deny_policy": (_deny, Reason.POLICY_DENIED),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runner", sorted(RUNNERS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_denial_blocks_with_its_reason(
    client: Aztp, scenario: str, runner: str, mode: str
) -> None:
    change, reason = SCENARIOS[scenario]
    counter = Counter()
    tools = secured_pair(client, counter)
    run(change(client, tools))
    model = ScriptedChatModel(script=[[call("search", query="x")], "done"])

    result = invoke(RUNNERS[runner](model, tools), mode)

    assert counter.total == 0
    (msg,) = tool_messages(result)
    assert msg.status == "error" and f"[{reason.value}]" in msg.content
    assert reasons(client) == [reason.value]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_fail_closed_when_the_authority_breaks(tmp_path: Any, runner: str, mode: str) -> None:
    client, backend = broken_client(tmp_path, broken=False)
    counter = Counter()

    async def break_authority() -> None:
        backend.broken = True

    tools = secured_pair(client, counter, on_search=break_authority)
    result = invoke(RUNNERS[runner](two_calls(), tools), mode)

    assert counter.counts == {"search": 1}
    (fetch,) = tool_messages(result, "fetch")
    assert fetch.status == "error" and "[authority_unavailable]" in fetch.content


def test_securing_against_an_unreachable_authority_fails_loudly(tmp_path: Any) -> None:
    client, _ = broken_client(tmp_path)
    with pytest.raises(ConnectionError):
        secured_pair(client, Counter())


@pytest.mark.parametrize("mode", MODES)
def test_raise_mode_propagates_out_of_the_graph(client: Aztp, mode: str) -> None:
    counter = Counter()
    tools = secured_pair(client, counter, on_deny="raise")
    run(_revoke_tool(client, tools))
    with pytest.raises(ToolCallDenied) as info:
        invoke(toolnode_graph(two_calls(), tools), mode)
    assert info.value.decision.reason is Reason.TOOL_REVOKED
    assert counter.total == 0


@pytest.mark.parametrize("mode", MODES)
def test_observe_mode_runs_and_records(client: Aztp, mode: str) -> None:
    counter = Counter()
    tools = secured_pair(client, counter, mode="observe")
    run(_unlink(client, tools))
    invoke(toolnode_graph(two_calls(), tools), mode)
    assert counter.counts == {"search": 1, "fetch": 1}
    assert [(e["data"]["reason"], e["data"]["enforced"]) for e in decisions(client)] == [
        ("no_link", False),
        ("allowed", False),
    ]


# --- direct invocation ----------------------------------------------------------------------


def test_direct_invoke(client: Aztp) -> None:
    counter = Counter()
    search, _ = secured_pair(client, counter)
    assert search.invoke({"query": "a"}) == "search: 3 results for a"
    assert asyncio.run(search.ainvoke({"query": "b", "limit": 2})) == "search: 2 results for b"
    as_call = {"name": "search", "args": {"query": "c"}, "id": "tc-1", "type": "tool_call"}
    msg = search.invoke(as_call)
    assert isinstance(msg, ToolMessage) and msg.status == "success" and msg.tool_call_id == "tc-1"
    assert counter["search"] == 3

    run(_revoke_agent(client, [search]))
    # Plain arguments: nothing to answer with, so it raises.
    with pytest.raises(ToolCallDenied, match=r"\[agent_revoked\]"):
        search.invoke({"query": "a"})
    with pytest.raises(ToolCallDenied):
        asyncio.run(search.ainvoke({"query": "a"}))
    with pytest.raises(ToolCallDenied):
        search.run({"query": "a"})
    # A tool call: an error ToolMessage for the model.
    denied = search.invoke(as_call)
    assert (
        isinstance(denied, ToolMessage)
        and denied.status == "error"
        and denied.tool_call_id == "tc-1"
    )
    assert "[agent_revoked]" in denied.content
    assert counter["search"] == 3


def test_a_tool_without_any_agent_in_context_is_denied(client: Aztp) -> None:
    counter = Counter()
    (search,) = secure_tools([counting_tool("search", counter)], flow="prod", client=client)
    assert search.aztp_id and search.agent_id is None
    with pytest.raises(ToolCallDenied, match=r"\[agent_unknown\]"):
        search.invoke({"query": "x"})
    assert counter.total == 0


def test_acting_as_names_the_calling_agent(client: Aztp) -> None:
    counter = Counter()
    alpha = secured_pair(client, counter, agent="alpha")
    beta = secured_pair(client, counter, agent="beta")
    shared = secure_tools([counting_tool("search", counter)], flow="prod", client=client)[0]

    with acting_as(alpha[0].agent_id):
        assert shared.invoke({"query": "1"})
    mw = AztpMiddleware(flow="prod", agent_name="beta", client=client)
    mw.enroll(["search"])
    with acting_as(mw):  # an object with an agent identity: it is looked up
        assert asyncio.run(shared.ainvoke({"query": "2"}))
    # The context wins over the agent a tool was secured for: beta calling alpha's tool.
    with acting_as(beta[0].agent_id):
        assert alpha[0].invoke({"query": "3"})
    assert [e["subject"] for e in decisions(client)] == [
        alpha[0].agent_id,
        beta[0].agent_id,
        beta[0].agent_id,
    ]
    with pytest.raises(ValueError), acting_as("researcher"):  # a name is not an identity
        pass


def test_acting_as_records_the_acting_agent_in_the_audit_context(client: Aztp) -> None:
    """The audit context names the agent the decision was taken for, like the subject."""
    counter = Counter()
    alpha = secured_pair(client, counter, agent="alpha")
    shared = secure_tools([counting_tool("search", counter)], flow="prod", client=client)[0]
    beta_id = secured_pair(client, counter, agent="beta")[0].agent_id
    mw = AztpMiddleware(flow="prod", agent_name="gamma_bot", client=client)
    mw.enroll(["search"])

    with acting_as(alpha[0].agent_id):
        shared.invoke({"query": "1"})  # a tool with no agent of its own
    with acting_as(beta_id):
        alpha[0].invoke({"query": "2"})  # alpha's tool, beta acting
    with acting_as(mw):  # an object: its own agent name
        shared.invoke({"query": "3"})

    assert [(e["subject"], e["data"]["context"].get("agent")) for e in decisions(client)] == [
        (alpha[0].agent_id, "alpha"),
        (beta_id, "beta"),
        (mw.agent_id, "gamma_bot"),
    ]


def test_current_agent_inside_a_tool(client: Aztp) -> None:
    @tool
    def whoami() -> str:
        """Say who is calling."""
        return str(current_agent())

    (secured,) = secure_tools([whoami], agent="alpha", flow="prod", client=client)
    assert secured.invoke({}) == secured.agent_id
    assert current_agent() is None


# --- the wrapped tool stays the same tool ---------------------------------------------------


@tool
def with_runtime(x: int, runtime: ToolRuntime) -> str:
    """Sees its runtime."""
    return f"x={x} call={runtime.tool_call_id} state={len(runtime.state['messages'])}"


@tool
def with_injected(x: int, secret: Annotated[str, InjectedToolArg]) -> str:
    """Gets a value the model never sees."""
    return f"x={x} secret={secret}"


@tool
def with_state(
    x: int,
    messages: Annotated[list, InjectedState("messages")],
    call_id: Annotated[str, InjectedToolCallId],
) -> str:
    """Reads state and its own call id."""
    return f"x={x} seen={len(messages)} id={call_id}"


@tool(response_format="content_and_artifact")
def with_artifact(q: str) -> tuple[str, dict]:
    """Answers with an artifact."""
    return f"found {q}", {"raw": q}


@tool(return_direct=True)
def finish(answer: str) -> str:
    """Ends the run with this answer."""
    return f"FINAL {answer}"


@tool
async def async_only(q: str) -> str:
    """Only has an async body."""
    await asyncio.sleep(0)
    return f"async {q}"


ODD_TOOLS = [with_runtime, with_injected, with_state, with_artifact, finish, async_only]


def test_schema_and_injection_are_the_wrapped_tools(client: Aztp) -> None:
    secured = secure_tools(ODD_TOOLS, agent="odd", flow="prod", client=client)
    for original, wrapper in zip(ODD_TOOLS, secured, strict=True):
        assert convert_to_openai_tool(wrapper) == convert_to_openai_tool(original)
        assert _get_all_injected_args(wrapper) == _get_all_injected_args(original)
        assert wrapper.return_direct == original.return_direct
        assert wrapper.response_format == original.response_format
        assert identity_of(wrapper) == wrapper.aztp_id
    # Injected arguments never reach the model's schema.
    schema = convert_to_openai_tool(secured[1])["function"]["parameters"]["properties"]
    assert set(schema) == {"x"}
    # ...and pass through untouched when the caller supplies them.
    assert secured[1].invoke({"x": 1, "secret": "s3"}) == "x=1 secret=s3"


@pytest.mark.parametrize("mode", MODES)
def test_injected_args_artifacts_and_return_direct_in_an_agent(client: Aztp, mode: str) -> None:
    tools = [with_runtime, with_state, with_artifact, finish] + (
        [async_only] if mode == "async" else []
    )
    secured = secure_tools(tools, agent="odd", flow="prod", client=client)
    script = [
        [call("with_runtime", x=1), call("with_state", x=2), call("with_artifact", q="k")]
        + ([call("async_only", q="z")] if mode == "async" else []),
        [call("finish", answer="42")],
        "never reached: finish returns directly",
    ]
    result = invoke(create_agent(ScriptedChatModel(script=script), secured), mode)

    by_name = {m.name: m for m in tool_messages(result)}
    assert by_name["with_runtime"].content == "x=1 call=call_0_0 state=2"
    assert by_name["with_state"].content == "x=2 seen=2 id=call_0_1"
    assert by_name["with_artifact"].content == "found k" and by_name["with_artifact"].artifact == {
        "raw": "k"
    }
    if mode == "async":
        assert by_name["async_only"].content == "async z"
    assert result["messages"][-1].content == "FINAL 42"  # return_direct ended the run
    assert all(e["data"]["reason"] == "allowed" for e in decisions(client))


# --- middleware and secured tools together --------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_middleware_and_secured_tools_decide_once_per_call(client: Aztp, mode: str) -> None:
    counter = Counter()
    tools = secured_pair(client, counter)
    mw = AztpMiddleware(flow="prod", agent_name="researcher", client=client)
    invoke(create_agent(two_calls(), tools, middleware=[mw]), mode)
    assert counter.counts == {"search": 1, "fetch": 1}
    assert len(decisions(client)) == 2  # the tool saw the middleware's decision cover it


@pytest.mark.parametrize("mode", MODES)
def test_secured_tool_still_checks_when_the_middleware_is_in_another_flow(
    client: Aztp, mode: str
) -> None:
    counter = Counter()
    tools = secured_pair(client, counter)  # flow "prod"
    mw = AztpMiddleware(flow="staging", agent_name="researcher", client=client)
    run(_revoke_tool(client, tools))
    result = invoke(create_agent(two_calls(), tools, middleware=[mw]), mode)
    assert counter["search"] == 0
    assert "[tool_revoked]" in tool_messages(result, "search")[0].content


# --- secure() / supports() / secured --------------------------------------------------------


def test_supports() -> None:
    counter = Counter()
    t = counting_tool("search", counter)
    assert supports(t) and supports([t]) and supports((t,))
    assert supports(create_agent(two_calls(), [t]))
    assert not supports([]) and not supports("search") and not supports([t, "x"])


def test_secure_a_create_agent_graph_in_place(client: Aztp) -> None:
    counter = Counter()
    graph = create_agent(
        two_calls(),
        [counting_tool("search", counter), counting_tool("fetch", counter)],
        name="librarian",
    )
    assert secure(graph, flow="prod", client=client) is graph
    agent_id = identity_of(graph)
    assert agent_id and agent_id.endswith("/librarian")
    invoke(graph, "sync")
    assert counter.counts == {"search": 1, "fetch": 1}
    assert {e["subject"] for e in decisions(client)} == {agent_id}


def test_secured_decorator_on_a_graph_builder(client: Aztp) -> None:
    counter = Counter()

    @aztp_agents.secured(flow="prod", client=client, agent="builder")
    def build() -> Any:
        return create_agent(
            two_calls(), [counting_tool("search", counter), counting_tool("fetch", counter)]
        )

    graph = build()
    assert aztp_agents.identity_of(graph) == identity_of(graph)
    assert identity_of(graph).endswith("/builder")
    invoke(graph, "sync")
    assert reasons(client) == ["allowed", "allowed"]


def test_secured_decorator_on_a_tool_list_builder(client: Aztp) -> None:
    counter = Counter()

    @aztp_agents.secured(flow="prod", client=client, agent="builder")
    def build_tools() -> list[Any]:
        return [counting_tool("search", counter)]

    (search,) = build_tools()
    assert isinstance(search, SecuredTool)
    assert aztp_agents.identity_of(search) == search.aztp_id


def test_secure_single_tool_and_rewrap(client: Aztp) -> None:
    counter = Counter()
    one = secure_tool(counting_tool("search", counter), agent="a1", flow="prod", client=client)
    again = secure_tool(one, agent="a2", flow="prod", client=client)
    assert again.inner is one.inner  # re-securing re-binds, never stacks two guards
    assert again.agent_id != one.agent_id and again.aztp_id == one.aztp_id
    with pytest.raises(TypeError, match="built-in"):
        secure_tools([{"type": "web_search_preview"}], flow="prod", client=client)
    with pytest.raises(ValueError, match="unique"):
        secure_tools(
            [counting_tool("x", counter), counting_tool("x", counter)], flow="prod", client=client
        )


def test_a_registered_middleware_hook_sees_the_secured_tool(client: Aztp) -> None:
    seen: list[str] = []

    class Spy(AgentMiddleware):
        def wrap_tool_call(self, request: Any, handler: Any) -> Any:
            seen.append(type(request.tool).__name__)
            return handler(request)

    counter = Counter()
    invoke(create_agent(two_calls(), secured_pair(client, counter), middleware=[Spy()]), "sync")
    assert seen == ["SecuredTool", "SecuredTool"]


# --- a tool with only an async body (langchain-mcp-adapters makes such tools) ---------------


def async_only_tool(counter: Counter) -> Any:
    async def body(query: str) -> str:
        counter.hit("mcp_search")
        return f"mcp results for {query}"

    return StructuredTool.from_function(
        coroutine=body, name="mcp_search", description="Search through an MCP server."
    )


def test_a_sync_call_of_an_async_only_tool_is_not_audited_as_allowed(client: Aztp) -> None:
    """A sync ``invoke`` cannot run a tool that has only a coroutine: LangChain raises
    ``NotImplementedError``. No ``allowed`` decision is recorded for a call that cannot run;
    the async call of the same tool is decided and runs."""
    counter = Counter()
    (mcp,) = secure_tools([async_only_tool(counter)], flow="prod", agent="alpha", client=client)
    with pytest.raises(NotImplementedError, match="sync"):
        mcp.invoke({"query": "x"})
    as_call = {"name": "mcp_search", "args": {"query": "x"}, "id": "tc-1", "type": "tool_call"}
    with pytest.raises(NotImplementedError, match="sync"):
        mcp.invoke(as_call)
    assert counter.total == 0 and reasons(client) == []

    assert asyncio.run(mcp.ainvoke({"query": "y"})) == "mcp results for y"
    assert counter.total == 1 and reasons(client) == ["allowed"]
