"""Topology: a ``langgraph-supervisor`` supervisor handing off to guarded sub-agents.

The supervisor's handoff tools are langgraph-supervisor's own; each sub-agent is a
``create_agent`` graph guarded by its own ``AztpMiddleware`` or by tools secured for it.
Every tool call a sub-agent makes is decided, and audited, as that sub-agent; a revoked
sub-agent's tool body never runs. Real runs with scripted models, a real embedded authority.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langgraph_supervisor")

from aztp_langchain import AztpMiddleware, secure_tools
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, ToolMessage
from langgraph_supervisor import create_supervisor

from aztp_agents import Aztp
from tests.support.langchain import MODES, Counter, counting_tool, decisions, invoke, run


@pytest.fixture
def client(tmp_path: Any) -> Aztp:
    return Aztp(home=tmp_path)


def steps(*tools: str, final: str) -> ScriptedChatModel:
    """A model that calls each of ``tools`` once, in order, then answers ``final``. The
    conversation is shared by the supervisor and its sub-agents, so the model looks at which
    tools have answered rather than counting turns."""

    def step(messages: list[BaseMessage]) -> Any:
        done = {m.name for m in messages if isinstance(m, ToolMessage)}
        pending = [t for t in tools if t not in done]
        return [call(pending[0], query="q")] if pending else final

    return ScriptedChatModel(script=[step] * 16, final=final)


def sub_agent(client: Aztp, name: str, kind: str, tool: str, counter: Counter) -> tuple[Any, str]:
    """A named ``create_agent`` sub-agent that calls ``tool`` once, and its AZTP ID."""
    model = steps(tool, final=f"{name} done")
    tools = [counting_tool(tool, counter)]
    if kind == "middleware":
        mw = AztpMiddleware(flow="prod", agent_name=name, client=client)
        agent_id = mw.enroll(tools)
        return create_agent(model, tools, middleware=[mw], name=name), agent_id
    wrapped = secure_tools(tools, flow="prod", agent=name, client=client)
    return create_agent(model, wrapped, name=name), str(wrapped[0].agent_id)


def team(client: Aztp, counter: Counter, kinds: tuple[str, str]) -> tuple[Any, str, str]:
    analyst, analyst_id = sub_agent(client, "analyst", kinds[0], "stats", counter)
    writer, writer_id = sub_agent(client, "writer", kinds[1], "draft", counter)
    supervisor_model = steps("transfer_to_analyst", "transfer_to_writer", final="report done")
    graph = create_supervisor([analyst, writer], model=supervisor_model).compile()
    return graph, analyst_id, writer_id


def rows(client: Aztp) -> list[tuple[str, str, str]]:
    return [(e["subject"], e["data"]["toolName"], e["data"]["reason"]) for e in decisions(client)]


KINDS = [("middleware", "secure_tools"), ("secure_tools", "middleware")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kinds", KINDS)
def test_each_sub_agent_of_a_supervisor_decides_as_itself(
    client: Aztp, kinds: tuple[str, str], mode: str
) -> None:
    counter = Counter()
    graph, analyst_id, writer_id = team(client, counter, kinds)

    invoke(graph, mode)

    assert counter.counts == {"stats": 1, "draft": 1}
    assert rows(client) == [
        (analyst_id, "stats", "allowed"),
        (writer_id, "draft", "allowed"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kinds", KINDS)
def test_a_revoked_sub_agent_of_a_supervisor_is_denied_and_its_tool_never_runs(
    client: Aztp, kinds: tuple[str, str], mode: str
) -> None:
    counter = Counter()
    graph, analyst_id, writer_id = team(client, counter, kinds)
    flow_id = next(f["_id"] for f in run(client.list_flows()) if f["name"] == "prod")
    run(client.revoke_flow_identity(analyst_id, flow_id, "compromised"))

    invoke(graph, mode)

    assert counter["stats"] == 0  # the revoked analyst's body never ran
    assert counter["draft"] == 1
    assert rows(client) == [
        (analyst_id, "stats", "agent_revoked_in_flow"),
        (writer_id, "draft", "allowed"),
    ]
