"""Operator intent outlasts the code that declared a link (issue 13.4).

An adapter declares its crew's links again at every process start. An operator's ``unlink``
and ``flow revoke`` must survive that: a NEW client on the same home (the next process start)
re-secures the same crew, and the tool body still does not run. Only an explicit operator
action (``restore-link``, ``flow reinstate``) gives the grant back. Real ``Crew.kickoff()`` runs
with a scripted model, the real CLI, real SQLite files.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

crewai = pytest.importorskip("crewai")

from aztp_crewai import guard_of, identity_of, secure_crew
from aztp_crewai.testing import scripted_crew_llm
from crewai import Agent, Crew, Task
from crewai.hooks import clear_all_global_hooks
from crewai.tools import BaseTool

from aztp_agents import Aztp
from tests.support.cli import Run, close_embedded


def run(coro: Any) -> Any:
    """Run a client coroutine from a test (CrewAI may hold an event loop in this thread)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    if "error" in box:
        raise box["error"]
    return box.get("value")


class CountingTool(BaseTool):
    name: str = "web_search"
    description: str = "Search the web for a query."
    executions: int = 0

    def _run(self, query: str = "") -> str:
        self.executions += 1
        return f"results for {query}"


def process_start(home: Path) -> tuple[Aztp, Crew, CountingTool]:
    """What a fresh process does: a new client on the home, the same crew built from code and
    secured (enrollment declares the agent -> tool link again)."""
    close_embedded(home)  # the previous "process" is gone: nothing cached survives
    client = Aztp(home=home)
    tool = CountingTool(name="web_search", description="The web_search tool.")
    llm = scripted_crew_llm(("web_search", {"query": "q"}), final="done")
    agent = Agent(role="Researcher", goal="g", backstory="b", tools=[tool], llm=llm)
    crew = Crew(
        name="crew",
        agents=[agent],
        tasks=[Task(description="Research", expected_output="x", agent=agent)],
    )
    secure_crew(crew, flow="prod", client=client)
    return client, crew, tool


def last_reason(client: Aztp) -> str:
    return str(run(client.audit(action="decision.tool_call"))[-1]["data"]["reason"])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("AZTP_HOME", "AZTP_URL", "AZTP_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path / "home"
    close_embedded(tmp_path / "home")
    clear_all_global_hooks()


def test_an_operator_unlink_survives_the_next_process_start(home: Path) -> None:
    client, crew, tool = process_start(home)
    crew.kickoff()
    assert tool.executions == 1 and last_reason(client) == "allowed"
    agent_id, tool_id = identity_of(crew.agents[0]), identity_of(tool)

    cli = Run(home)
    cli("unlink", agent_id, tool_id, "--reason", "exfiltration risk")

    # next process start: the crew declares the link again; the operator's removal holds
    client, crew, tool = process_start(home)
    crew.kickoff()
    assert tool.executions == 0
    assert last_reason(client) == "no_link"
    assert run(client.list_links(agent_id)) == []

    # the CLI shows the removal: who, when, why, and the scope the link had
    removal = cli.json("links", "--removed")
    assert len(removal) == 1
    assert removal[0]["state"] == "removed_by_operator"
    assert (removal[0]["sourceIdentity"], removal[0]["targetIdentity"]) == (agent_id, tool_id)
    assert removal[0]["reason"] == "exfiltration risk"
    assert removal[0]["identityFlowIds"] == [guard_of(crew).flow_id]
    assert removal[0]["removedBy"] and removal[0]["removedAt"]
    text = cli("links").stdout
    assert "removed by operator" in text and "prod" in text

    # only an operator action restores it: the same flow-scoped link as before
    restored = cli.json("restore-link", agent_id, tool_id)
    assert restored["restored"] == 1
    assert [(x["scope"], x["identityFlowIds"]) for x in restored["links"]] == [
        ("flow", [guard_of(crew).flow_id])
    ]
    assert cli.json("links", "--removed") == []
    crew.kickoff()
    assert tool.executions == 1 and last_reason(client) == "allowed"

    # and the restore lasts too
    client, crew, tool = process_start(home)
    crew.kickoff()
    assert tool.executions == 1 and last_reason(client) == "allowed"
    cli.fails("restore-link", agent_id, tool_id, code=3)


def test_an_operator_link_clears_the_removal(home: Path) -> None:
    """`aztp-agents link` is an operator action too: it links (organization-wide, as asked)
    and the removal record is gone."""
    client, crew, tool = process_start(home)
    agent_id, tool_id = identity_of(crew.agents[0]), identity_of(tool)
    cli = Run(home)
    cli("unlink", agent_id, tool_id)
    cli("link", agent_id, tool_id, "--type", "tool_access")
    assert cli.json("links", "--removed") == []
    client, crew, tool = process_start(home)
    crew.kickoff()
    assert tool.executions == 1 and last_reason(client) == "allowed"


def test_a_flow_revocation_survives_the_next_process_start(home: Path) -> None:
    client, crew, tool = process_start(home)
    agent_id = identity_of(crew.agents[0])
    cli = Run(home)
    cli("flow", "revoke", "prod", agent_id, "--reason", "paused")

    # enrollment adds the agent to the flow again: the revocation holds
    client, crew, tool = process_start(home)
    crew.kickoff()
    assert tool.executions == 0
    assert last_reason(client) == "agent_revoked_in_flow"

    cli("flow", "reinstate", "prod", agent_id)
    client, crew, tool = process_start(home)
    crew.kickoff()
    assert tool.executions == 1 and last_reason(client) == "allowed"


def test_a_revoked_identity_is_not_reissued_by_the_next_process_start(home: Path) -> None:
    client, crew, tool = process_start(home)
    tool_id = identity_of(tool)
    cli = Run(home)
    cli("identity", "revoke", tool_id, "--reason", "retired")

    client, crew, tool = process_start(home)
    crew.kickoff()
    assert tool.executions == 0
    assert last_reason(client) == "tool_revoked"
    assert run(client.identity(tool_id)).status == "revoked"
