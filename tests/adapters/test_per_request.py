"""Securing a crew per request: the same crew shape secured again writes nothing and signs
nothing, yet every decision stays exact (a revocation between two requests is honoured).

Real ``Crew.kickoff()`` and ``create_agent(...).invoke`` runs with scripted models; each test
has its own embedded authority; the store's rows are read straight from the SQLite file.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain")

from aztp_crewai import guard_of, identity_of, secure_crew
from aztp_crewai.testing import scripted_crew_llm
from aztp_langchain import AztpMiddleware
from aztp_langchain.testing import ScriptedChatModel, call
from crewai import Agent, Crew, Task
from crewai.hooks import clear_all_global_hooks
from crewai.tools import BaseTool
from langchain.agents import create_agent

from aztp_agents import Aztp, Reason
from aztp_agents.guard import Guard
from tests.authority.helpers import db_state, run
from tests.support.langchain import Counter, counting_tool


class Tool(BaseTool):
    name: str = "search"
    description: str = "A tool."
    runs: Any  # the test's list (typed Any: pydantic would copy a list)

    def _run(self, query: str = "") -> str:
        self.runs.append(self.name)
        return f"{self.name}: {query}"


def per_request_crew(runs: list[str]) -> tuple[Crew, Agent]:
    """A new crew object of one known shape: 2 agents, 3 tools, one call each tool."""
    search, fetch, write = (
        Tool(name=n, description=f"The {n} tool.", runs=runs) for n in ("search", "fetch", "write")
    )
    researcher = Agent(
        role="Researcher",
        goal="g",
        backstory="b",
        tools=[search, fetch],
        llm=scripted_crew_llm(("search", {"query": "q"}), ("fetch", {"query": "q"}), final="ok"),
    )
    writer = Agent(
        role="Writer",
        goal="g",
        backstory="b",
        tools=[write],
        llm=scripted_crew_llm(("write", {"query": "q"}), final="ok"),
    )
    crew = Crew(
        agents=[researcher, writer],
        tasks=[
            Task(description="research", expected_output="x", agent=researcher),
            Task(description="write", expected_output="x", agent=writer),
        ],
    )
    return crew, researcher


def rows(home: Path, table: str) -> list[str]:
    return db_state(home / "aztp.db").get(table, [])


@pytest.fixture(autouse=True)
def _clear_hooks() -> Any:
    yield
    clear_all_global_hooks()


def test_a_known_crew_shape_is_secured_without_a_write(tmp_path: Path) -> None:
    client = Aztp(home=tmp_path)
    store = client.backend.authority.store  # type: ignore[attr-defined]
    runs: list[str] = []
    crew, _ = per_request_crew(runs)
    secure_crew(crew, flow="prod", client=client)
    crew.kickoff()
    assert runs == ["search", "fetch", "write"]
    credentials, audit = rows(tmp_path, "credentials"), rows(tmp_path, "audit")
    revision = store.revision()
    assert len(credentials) == 5  # one per identity, issued once

    for _ in range(3):  # three more requests, each with a new crew object
        runs.clear()
        crew, researcher = per_request_crew(runs)
        secure_crew(crew, flow="prod", client=client)
        assert rows(tmp_path, "credentials") == credentials  # nothing issued, nothing signed
        assert store.revision() == revision  # nothing written
        crew.kickoff()
        assert runs == ["search", "fetch", "write"]
    assert len(rows(tmp_path, "audit")) > len(audit)  # the decisions were audited all along

    # An operator revokes the researcher between two requests: the next request's crew is
    # secured from the cache and its calls are denied (the tool bodies never run).
    agent_id = identity_of(researcher)
    assert agent_id is not None
    run(client.revoke_identity(agent_id, reason="incident"))
    runs.clear()
    crew, _ = per_request_crew(runs)
    secure_crew(crew, flow="prod", client=client)
    crew.kickoff()
    assert runs == ["write"]


def test_a_changed_enrollment_takes_the_full_path(tmp_path: Path) -> None:
    client = Aztp(home=tmp_path)
    runs: list[str] = []
    crew, researcher = per_request_crew(runs)
    secure_crew(crew, flow="prod", client=client)
    agent_id = identity_of(researcher)
    flow_id = guard_of(crew).flow_id
    assert agent_id is not None
    before = len(rows(tmp_path, "credentials"))

    # Removed from the flow by an operator: enrollment adds it back, as the first time did.
    run(client.remove_identity_from_flow(flow_id, agent_id))
    crew, _ = per_request_crew(runs)
    secure_crew(crew, flow="prod", client=client)
    members = {m["aztpId"] for m in run(client.get_flow(flow_id))["identities"]}
    assert agent_id in members
    assert len(rows(tmp_path, "credentials")) > before  # issued again on the full path

    # Credentials past two thirds of their lifetime are issued again.
    cache = client.enrollments
    for shape, known in list(cache._known.items()):
        cache.put(shape, dataclasses.replace(known, renew_at=time.time() - 1))
    count = len(rows(tmp_path, "credentials"))
    crew, _ = per_request_crew(runs)
    secure_crew(crew, flow="prod", client=client)
    assert len(rows(tmp_path, "credentials")) > count


def test_langchain_new_middleware_per_run_reuses_the_enrollment(tmp_path: Path) -> None:
    client = Aztp(home=tmp_path)
    store = client.backend.authority.store  # type: ignore[attr-defined]
    counter = Counter()

    def one_run() -> None:
        tools = [counting_tool("search", counter), counting_tool("fetch", counter)]
        model = ScriptedChatModel(
            script=[[call("search", query="a")], [call("fetch", query="b", limit=1)], "done"]
        )
        middleware = AztpMiddleware(flow="prod", agent_name="researcher", client=client)
        create_agent(model, tools, middleware=[middleware]).invoke({"messages": [("user", "go")]})

    one_run()
    credentials, revision = rows(tmp_path, "credentials"), store.revision()
    for _ in range(3):
        one_run()
    assert counter.counts == {"search": 4, "fetch": 4}
    assert rows(tmp_path, "credentials") == credentials
    assert store.revision() == revision


def test_a_first_time_crew_is_enrolled_in_one_transaction(tmp_path: Path) -> None:
    """A new crew's identities, memberships and grants commit together: the store's revision
    moves once, and every record is there (audited and in the change log as alone)."""
    clear_all_global_hooks()
    client = Aztp(home=tmp_path)
    store = client.backend.authority.store  # type: ignore[attr-defined]
    guard = Guard(flow="first", client=client)
    assert guard.flow_id  # the flow exists first (as for a crew's second agent)
    revision = store.revision()
    enrollment = guard.enroll("researcher", ["search", "fetch"])
    assert store.revision() == revision + 1  # one write transaction
    allowed = guard.check(enrollment.agent_id, enrollment.tools["search"], "search", None)
    assert allowed.allowed, allowed
    actions = [e["action"] for e in run(client.audit())]
    assert actions.count("identity.issue") == 3 and actions.count("flow.add_identity") == 3


def test_an_enrollment_that_fails_part_way_leaves_nothing_behind(tmp_path: Path) -> None:
    """All or nothing: a tool the authority refuses (its name is issued with other settings)
    undoes the agent and the tool issued before it in the same enrollment (they used to stay,
    half enrolled)."""
    client = Aztp(home=tmp_path)
    client.secure_connect_sync(None, "fetch", {"environment": "staging"})
    guard = Guard(flow="first", client=client)
    assert guard.flow_id
    before = rows(tmp_path, "identities")
    with pytest.raises(Exception, match="already issued"):
        guard.enroll("researcher", ["search", "fetch"])
    assert rows(tmp_path, "identities") == before
    assert rows(tmp_path, "flow_members") == []
    assert rows(tmp_path, "links") == []


def test_an_operators_unlink_does_not_send_every_later_securing_down_the_full_path(
    tmp_path: Path,
) -> None:
    """After an operator removes one grant of a known shape, securing it again takes the full
    path once (which leaves the removal in place), then writes nothing again; the removed
    grant stays denied. (Before, every later securing re-issued every credential.)"""
    client = Aztp(home=tmp_path)
    store = client.backend.authority.store  # type: ignore[attr-defined]
    first = Guard(flow="f", client=client).enroll("agent", ["search", "fetch"])
    run(client.unlink_identities(first.agent_id, first.tools["fetch"]))  # the operator
    Guard(flow="f", client=client).enroll("agent", ["search", "fetch"])  # the full path, once
    credentials, revision = rows(tmp_path, "credentials"), store.revision()
    for _ in range(3):  # requests after it
        guard = Guard(flow="f", client=client)
        again = guard.enroll("agent", ["search", "fetch"])
        assert rows(tmp_path, "credentials") == credentials and store.revision() == revision
        denied = guard.check(again.agent_id, again.tools["fetch"], "fetch", None)
        assert denied.reason is Reason.NO_LINK, denied
        allowed = guard.check(again.agent_id, again.tools["search"], "search", None)
        assert allowed.allowed, allowed
