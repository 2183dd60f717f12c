"""LangChain adapter: ``AztpMiddleware`` in real ``create_agent(...).invoke / ainvoke`` runs.

A scripted chat model (no network) emits the tool calls. Every test has its own embedded
authority (``Aztp(home=tmp_path)``); tool bodies count their executions.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("langchain")

import aztp_langchain
from aztp_langchain import AztpMiddleware, identity_of
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool

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


def search_then_fetch() -> ScriptedChatModel:
    """Two model turns with one tool call each, then a final answer."""
    return ScriptedChatModel(
        script=[[call("search", query="aztp")], [call("fetch", query="doc-1", limit=1)], "done"]
    )


def agent_with(
    client: Aztp, counter: Counter, *, model: Any = None, **mw: Any
) -> tuple[Any, AztpMiddleware]:
    tools = [
        counting_tool("search", counter, on_call=mw.pop("on_search", None)),
        counting_tool("fetch", counter),
    ]
    middleware = AztpMiddleware(
        flow="prod", agent_name=mw.pop("agent_name", "researcher"), client=client, **mw
    )
    return create_agent(model or search_then_fetch(), tools, middleware=[middleware]), middleware


# --- allowed --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_allowed_calls_run_and_are_audited(client: Aztp, mode: str) -> None:
    counter = Counter()
    agent, mw = agent_with(client, counter)
    assert identity_of(mw) is None  # identities are issued on first use

    result = invoke(agent, mode)

    assert counter.counts == {"search": 1, "fetch": 1}
    msgs = tool_messages(result)
    assert [m.status for m in msgs] == ["success", "success"]
    assert msgs[1].content == "fetch: 1 results for doc-1"  # structured args reached the body
    assert result["messages"][-1].content == "done"

    agent_id = identity_of(mw)
    assert agent_id == mw.agent_id and agent_id.endswith("/researcher")
    assert aztp_agents.identity_of(mw) == agent_id  # the universal helper delegates here
    entries = decisions(client)
    assert [(e["data"]["toolName"], e["data"]["reason"]) for e in entries] == [
        ("search", "allowed"),
        ("fetch", "allowed"),
    ]
    for e in entries:
        assert e["subject"] == agent_id
        assert e["data"]["tool"] == mw.tool_ids[e["data"]["toolName"]]
        assert e["data"]["context"]["framework"] == "langchain"
    assert run(client.verify_audit())["ok"] is True


@pytest.mark.parametrize("mode", MODES)
def test_first_use_issues_agent_and_every_known_tool_enrolled_and_linked(
    client: Aztp, mode: str
) -> None:
    counter = Counter()
    model = ScriptedChatModel(script=[[call("search", query="x")], "done"])  # fetch never called
    agent, mw = agent_with(client, counter, model=model)
    invoke(agent, mode)

    assert set(mw.tool_ids) == {"search", "fetch"}
    flow_id = mw.guard.flow_id
    flow = run(client.get_flow(flow_id))
    members = {i["aztpId"] for i in flow["identities"]}
    assert {mw.agent_id, *mw.tool_ids.values()} <= members
    for tool_id in mw.tool_ids.values():
        assert run(client.verify_authorize_identity_connection(mw.agent_id, tool_id)) is True


# --- denied ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_flow_revocation_between_two_calls_of_one_run_blocks_the_second(
    client: Aztp, mode: str
) -> None:
    counter = Counter()
    holder: dict[str, AztpMiddleware] = {}

    async def revoke_agent_in_flow() -> None:
        mw = holder["mw"]
        await client.revoke_flow_identity(mw.agent_id, mw.guard.flow_id, "compromised")

    agent, mw = agent_with(client, counter, on_search=revoke_agent_in_flow)
    holder["mw"] = mw

    result = invoke(agent, mode)

    assert counter["search"] == 1
    assert counter["fetch"] == 0  # the second call of the same run never ran
    (fetch,) = tool_messages(result, "fetch")
    assert fetch.status == "error"
    assert "[agent_revoked_in_flow]" in fetch.content
    assert reasons(client) == ["allowed", "agent_revoked_in_flow"]


async def _revoke_agent(client: Aztp, mw: AztpMiddleware) -> None:
    await client.revoke_identity(mw.agent_id, "stolen key")


async def _unlink(client: Aztp, mw: AztpMiddleware) -> None:
    await client.unlink_identities(mw.agent_id, mw.tool_ids["search"])


async def _revoke_tool(client: Aztp, mw: AztpMiddleware) -> None:
    await client.revoke_identity(mw.tool_ids["search"], "tool retired")


async def _revoke_tool_in_flow(client: Aztp, mw: AztpMiddleware) -> None:
    await client.revoke_flow_identity(mw.tool_ids["search"], mw.guard.flow_id, "not here")


async def _deny(client: Aztp, mw: AztpMiddleware) -> None:
    await deny_policy(client, mw.agent_id, "search")


SCENARIOS = {
    "global_revoke": (_revoke_agent, Reason.AGENT_REVOKED),
    "missing_link": (_unlink, Reason.NO_LINK),
    "revoked_tool": (_revoke_tool, Reason.TOOL_REVOKED),
    "tool_revoked_in_flow": (_revoke_tool_in_flow, Reason.TOOL_REVOKED_IN_FLOW),
    "deny_policy": (_deny, Reason.POLICY_DENIED),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_denial_blocks_with_its_reason(client: Aztp, scenario: str, mode: str) -> None:
    change, reason = SCENARIOS[scenario]
    counter = Counter()
    model = ScriptedChatModel(script=[[call("search", query="x")], "done"])
    agent, mw = agent_with(client, counter, model=model)
    mw.enroll(["search", "fetch"])  # issue now, so the change lands before the first call
    run(change(client, mw))

    result = invoke(agent, mode)

    assert counter.total == 0
    (msg,) = tool_messages(result)
    assert msg.status == "error"
    assert f"[{reason.value}]" in msg.content
    assert msg.artifact["aztp_decision"]["reason"] == reason.value
    assert reasons(client) == [reason.value]
    assert result["messages"][-1].content == "done"  # the model read the denial and went on


@pytest.mark.parametrize("mode", MODES)
def test_on_deny_raise(client: Aztp, mode: str) -> None:
    counter = Counter()
    agent, mw = agent_with(client, counter, on_deny="raise")
    mw.enroll(["search", "fetch"])
    run(_revoke_agent(client, mw))

    with pytest.raises(ToolCallDenied) as info:
        invoke(agent, mode)
    assert info.value.decision.reason is Reason.AGENT_REVOKED
    assert "[agent_revoked]" in str(info.value)
    assert counter.total == 0


@pytest.mark.parametrize("mode", MODES)
def test_observe_mode_records_but_does_not_block(client: Aztp, mode: str) -> None:
    counter = Counter()
    agent, mw = agent_with(client, counter, mode="observe")
    mw.enroll(["search", "fetch"])
    run(_unlink(client, mw))

    result = invoke(agent, mode)

    assert counter.counts == {"search": 1, "fetch": 1}
    assert [m.status for m in tool_messages(result)] == ["success", "success"]
    entries = decisions(client)
    assert [(e["data"]["reason"], e["data"]["enforced"]) for e in entries] == [
        ("no_link", False),
        ("allowed", False),
    ]


# --- fail closed ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_fail_closed_when_the_authority_is_unreachable_from_the_start(
    tmp_path: Any, mode: str
) -> None:
    client, backend = broken_client(tmp_path)
    counter = Counter()
    agent, _ = agent_with(client, counter)

    result = invoke(agent, mode)

    assert counter.total == 0
    msgs = tool_messages(result)
    assert len(msgs) == 2
    for m in msgs:
        assert m.status == "error" and "[authority_unavailable]" in m.content
    assert backend.calls > 0  # the failure came from the boundary we broke


@pytest.mark.parametrize("mode", MODES)
def test_fail_closed_when_the_authority_breaks_mid_run(tmp_path: Any, mode: str) -> None:
    client, backend = broken_client(tmp_path, broken=False)
    counter = Counter()

    async def break_authority() -> None:
        backend.broken = True

    agent, _ = agent_with(client, counter, on_search=break_authority)

    result = invoke(agent, mode)

    assert counter.counts == {"search": 1}  # fetch never ran
    (fetch,) = tool_messages(result, "fetch")
    assert fetch.status == "error" and "[authority_unavailable]" in fetch.content
    backend.broken = False
    # The denial could not reach the (unreachable) authority's audit log; the guard logged it.
    assert reasons(client) == ["allowed"]


@pytest.mark.parametrize("mode", MODES)
def test_fail_closed_when_the_guard_answers_garbage(
    client: Aztp, mode: str, monkeypatch: Any
) -> None:
    counter = Counter()
    agent, mw = agent_with(client, counter)

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("guard bug")

    async def aboom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("guard bug")

    monkeypatch.setattr(mw.guard, "check", boom)
    monkeypatch.setattr(mw.guard, "acheck", aboom)
    result = invoke(agent, mode)

    assert counter.total == 0
    assert all("[authority_unavailable]" in m.content for m in tool_messages(result))


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_the_agent_does_not_have_is_denied(client: Aztp, mode: str) -> None:
    counter = Counter()
    model = ScriptedChatModel(script=[[call("rm_rf", query="/")], "done"])
    agent, _ = agent_with(client, counter, model=model)
    result = invoke(agent, mode)
    (msg,) = tool_messages(result)
    assert msg.status == "error" and "[tool_unknown]" in msg.content
    assert counter.total == 0


# --- identities and options -----------------------------------------------------------------


def test_enroll_is_idempotent_and_identities_are_stable(client: Aztp) -> None:
    counter = Counter()
    _, mw = agent_with(client, counter)
    first = mw.enroll(["search", "fetch"])
    again = AztpMiddleware(flow="prod", agent_name="researcher", client=client).enroll(["search"])
    assert first == again
    assert set(mw.tool_ids) == {"search", "fetch"}


def test_two_agents_in_one_process_have_their_own_identities(client: Aztp) -> None:
    counter = Counter()
    a, mw_a = agent_with(client, counter, agent_name="alpha")
    b, mw_b = agent_with(client, counter, agent_name="beta")
    invoke(a, "sync")
    invoke(b, "sync")
    assert mw_a.agent_id != mw_b.agent_id
    assert {e["subject"] for e in decisions(client)} == {mw_a.agent_id, mw_b.agent_id}


def test_bad_options_are_rejected_at_construction(client: Aztp) -> None:
    with pytest.raises(ValueError, match="mode"):
        AztpMiddleware(flow="prod", client=client, mode="audit")
    with pytest.raises(ValueError, match="on_deny"):
        AztpMiddleware(flow="prod", client=client, on_deny="ignore")
    with pytest.raises(ValueError):
        AztpMiddleware(flow="", client=client)


def test_denial_message_names_the_reason_for_the_model(client: Aztp) -> None:
    counter = Counter()
    model = ScriptedChatModel(script=[[call("search", query="x")], "done"])
    agent, mw = agent_with(client, counter, model=model)
    mw.enroll(["search"])
    run(_revoke_tool(client, mw))
    result = agent.invoke({"messages": [{"role": "user", "content": "go"}]})
    msg = tool_messages(result)[0]
    assert isinstance(msg, ToolMessage)
    assert msg.content.startswith("Tool call denied by AZTP [tool_revoked]: ")
    assert msg.tool_call_id == "call_0_0"


def test_importing_aztp_agents_never_imports_langchain() -> None:
    code = (
        "import sys, aztp_agents, aztp_agents.guard, aztp_agents.secured\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('langchain', 'langchain_core', 'langgraph', 'aztp_langchain'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert aztp_langchain.AztpMiddleware is AztpMiddleware


def test_a_sync_run_of_an_async_only_tool_is_not_audited_as_allowed(client: Aztp) -> None:
    """``invoke`` of an agent whose tool has only a coroutine (as langchain-mcp-adapters makes
    them): the call cannot run, LangChain raises ``NotImplementedError``, and no ``allowed``
    decision is recorded for it. ``ainvoke`` decides and runs it."""
    counter = Counter()

    async def body(query: str) -> str:
        counter.hit("mcp_search")
        return f"mcp results for {query}"

    mcp = StructuredTool.from_function(
        coroutine=body, name="mcp_search", description="Search through an MCP server."
    )
    mw = AztpMiddleware(flow="prod", agent_name="researcher", client=client)
    model = ScriptedChatModel(script=[[call("mcp_search", query="x")], "done"])
    agent = create_agent(model, [mcp], middleware=[mw])

    with pytest.raises(NotImplementedError, match="sync"):
        invoke(agent, "sync")
    assert counter.total == 0 and reasons(client) == []

    result = invoke(agent, "async")
    assert [m.content for m in tool_messages(result)] == ["mcp results for x"]
    assert counter.total == 1 and reasons(client) == ["allowed"]
