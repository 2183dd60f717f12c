"""CrewAI adapter: real ``Crew.kickoff()`` runs with a scripted LLM, no network.

Every test has its own embedded authority (``Aztp(home=tmp_path)``). Tool bodies count their
executions, so "blocked" always means "the tool body did not run".
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
import logging
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest

crewai = pytest.importorskip("crewai")

import aztp_crewai
from aztp_crewai import guard_of, identity_of, secure_agent, secure_crew, secured
from aztp_crewai.testing import ScriptedCrewLLM, scripted_crew_llm, tool_call
from crewai import Agent, Crew, Process, Task
from crewai.hooks import clear_all_global_hooks
from crewai.project import CrewBase, agent, crew, task
from crewai.tools import BaseTool

import aztp_agents
from aztp_agents import Aztp, Guard
from aztp_agents.decisions import Decision, Reason

# --- helpers ----------------------------------------------------------------------------------


def run(coro: Any) -> Any:
    """Run a client coroutine from anywhere (tests, tool bodies inside a crew run)."""
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
    """A tool whose body counts executions and can run a side effect before answering."""

    name: str = "web_search"
    description: str = "Search the web for a query."
    executions: int = 0
    on_call: Any = None

    def _run(self, query: str = "") -> str:
        self.executions += 1
        if self.on_call is not None:
            self.on_call(self)
        return f"results for {query}"


def make_tool(name: str = "web_search", on_call: Any = None) -> CountingTool:
    return CountingTool(name=name, description=f"The {name} tool.", on_call=on_call)


def make_agent(role: str, tools: list[Any], llm: Any, **kw: Any) -> Agent:
    return Agent(
        role=role, goal=f"{role} goal", backstory=f"{role} backstory", tools=tools, llm=llm, **kw
    )


def calls(*names: str, native: bool = False, final: str = "done") -> Any:
    return scripted_crew_llm(
        *[(n, {"query": f"q{i}"}) for i, n in enumerate(names)], final=final, native=native
    )


def one_agent_crew(
    tool: CountingTool,
    n_calls: int = 2,
    *,
    role: str = "Researcher",
    native: bool = False,
    name: str = "crew",
) -> tuple[Crew, Agent]:
    llm = calls(*[tool.name] * n_calls, native=native)
    a = make_agent(role, [tool], llm)
    return Crew(
        name=name,
        agents=[a],
        tasks=[Task(description=f"{role} task", expected_output="x", agent=a)],
    ), a


def decisions(client: Aztp) -> list[dict[str, Any]]:
    return run(client.audit(action="decision.tool_call"))


def reasons(client: Aztp) -> list[str]:
    return [e["data"]["reason"] for e in decisions(client)]


class RecordingLLM:
    """Keeps what the agent saw: wraps a scripted LLM's ``respond``."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.seen: list[str] = []
        original = llm.respond

        def respond(messages: Any) -> Any:
            if isinstance(messages, list):
                self.seen.extend(str(m.get("content")) for m in messages if isinstance(m, dict))
            return original(messages)

        object.__setattr__(llm, "respond", respond)

    def saw(self, text: str) -> bool:
        return any(text in s for s in self.seen)


@pytest.fixture
def client(tmp_path: Any) -> Aztp:
    return Aztp(home=tmp_path)


@pytest.fixture(autouse=True)
def _quiet_crewai() -> Any:
    yield
    # Hooks other tests may have left behind (ours re-install themselves when needed).
    clear_all_global_hooks()


# --- the scripted LLM itself ------------------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_scripted_llm_drives_a_real_crew(native: bool) -> None:
    search, write = make_tool("web_search"), make_tool("write_report")
    llm = ScriptedCrewLLM(
        [tool_call("web_search", query="a"), tool_call("write_report", query="b"), "report"],
        native=native,
    )
    a = make_agent("Researcher", [search, write], llm)
    out = Crew(agents=[a], tasks=[Task(description="t", expected_output="x", agent=a)]).kickoff()
    assert out.raw == "report"
    assert (search.executions, write.executions) == (1, 1)
    assert llm.calls == 3


def test_core_and_testing_module_do_not_import_crewai() -> None:
    code = "import sys, aztp_agents, aztp_agents.testing; assert 'crewai' not in sys.modules, 'crewai imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- allowed calls are audited ------------------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_secured_two_agent_crew_runs_and_audits_allowed(client: Aztp, native: bool) -> None:
    search, write = make_tool("web_search"), make_tool("write_report")
    researcher = make_agent(
        "Senior Researcher", [search], calls("web_search", "web_search", native=native)
    )
    writer = make_agent("Writer", [write], calls("write_report", native=native))
    c = Crew(
        name="research crew",
        agents=[researcher, writer],
        tasks=[
            Task(
                name="research",
                description="Research AZTP",
                expected_output="notes",
                agent=researcher,
            ),
            Task(name="write", description="Write it up", expected_output="report", agent=writer),
        ],
    )
    assert secure_crew(c, flow="prod", client=client) is c
    c.kickoff()
    assert (search.executions, write.executions) == (2, 1)

    agent_id, writer_id = identity_of(researcher), identity_of(writer)
    assert agent_id == "aztp://aztp.local/workload/production/node/agent/senior-researcher"
    assert writer_id == "aztp://aztp.local/workload/production/node/agent/writer"
    assert identity_of(search) == "aztp://aztp.local/workload/production/node/tool/web-search"
    assert aztp_agents.identity_of(researcher) == agent_id

    entries = decisions(client)
    assert [e["data"]["reason"] for e in entries] == ["allowed"] * 3
    assert [e["subject"] for e in entries] == [agent_id, agent_id, writer_id]
    flow_id = guard_of(c).flow_id
    assert {e["data"]["flowId"] for e in entries} == {flow_id}
    ctx = entries[0]["data"]["context"]
    assert ctx == {
        "framework": "crewai",
        "crew": "research crew",
        "task": "research",
        "agent": "Senior Researcher",
        "tool": "web_search",
    }
    assert entries[2]["data"]["context"]["task"] == "write"
    flow = run(client.get_flow(flow_id))
    assert flow["name"] == "prod"
    members = {i["aztpId"] for i in flow["identities"]}
    assert {agent_id, writer_id, identity_of(search), identity_of(write)} <= members


def test_identity_names_are_unique_within_a_crew(client: Aztp) -> None:
    t1, t2 = make_tool("web_search"), make_tool("web_search")
    a1 = make_agent("Researcher", [t1], calls("web_search"))
    a2 = make_agent("Researcher", [t2], calls("web_search"))
    c = Crew(
        agents=[a1, a2],
        tasks=[
            Task(description="a", expected_output="x", agent=a1),
            Task(description="b", expected_output="x", agent=a2),
        ],
    )
    secure_crew(c, flow="prod", client=client)
    assert identity_of(a1).endswith("/agent/researcher")
    assert identity_of(a2).endswith("/agent/researcher-2")
    c.kickoff()
    assert (t1.executions, t2.executions) == (1, 1)
    assert [e["subject"] for e in decisions(client)] == [identity_of(a1), identity_of(a2)]


# --- revocation -------------------------------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_flow_revocation_between_two_calls_blocks_the_second(client: Aztp, native: bool) -> None:
    state: dict[str, Any] = {}

    def revoke_after_first(tool: CountingTool) -> None:
        if tool.executions == 1:
            run(client.revoke_flow_identity(state["agent"], state["flow"], "compromised"))

    search = make_tool(on_call=revoke_after_first)
    c, a = one_agent_crew(search, 2, native=native)
    recorder = RecordingLLM(a.llm)
    secure_crew(c, flow="prod", client=client)
    state.update(agent=identity_of(a), flow=guard_of(c).flow_id)

    c.kickoff()
    assert search.executions == 1
    assert reasons(client) == ["allowed", "agent_revoked_in_flow"]
    assert recorder.saw("AZTP DENIED [agent_revoked_in_flow]")
    assert recorder.saw("The tool was not run.")

    # The same agent identity still passes in another flow ...
    other_tool = make_tool()
    other, other_agent = one_agent_crew(other_tool, 1)
    secure_crew(other, flow="staging", client=client)
    assert identity_of(other_agent) == state["agent"]
    other.kickoff()
    assert other_tool.executions == 1
    assert reasons(client)[-1] == "allowed"

    # ... global revocation blocks it everywhere ...
    run(client.revoke_identity(state["agent"], "stolen key"))
    c.kickoff()
    other.kickoff()
    assert (search.executions, other_tool.executions) == (1, 1)
    assert reasons(client)[-3:] == ["agent_revoked"] * 3

    # ... and reissue restores it (the flow revocation in "prod" stays until reinstated).
    run(client.reissue_identity(state["agent"]))
    other.kickoff()
    c.kickoff()
    assert (search.executions, other_tool.executions) == (1, 2)
    assert reasons(client)[-3:] == ["allowed", "agent_revoked_in_flow", "agent_revoked_in_flow"]
    run(client.reinstate_flow_identity(state["agent"], state["flow"]))
    c.kickoff()
    assert search.executions == 3


@pytest.mark.parametrize("native", [False, True])
def test_denial_text_reaches_the_agent_and_allowed_calls_leave_no_after_hook(
    client: Aztp, native: bool
) -> None:
    """The after-hook that hands the agent the denial text is registered only while a denial
    waits for it (CrewAI's dispatch of a hook point is not free), and is gone again after."""
    from crewai.hooks import get_after_tool_call_hooks

    ours = aztp_crewai._hooks.after_tool_call
    search = make_tool()
    c, a = one_agent_crew(search, 2, native=native)
    recorder = RecordingLLM(a.llm)
    secure_crew(c, flow="prod", client=client)
    c.kickoff()
    assert search.executions == 2
    assert ours not in get_after_tool_call_hooks()
    run(client.revoke_flow_identity(identity_of(a), guard_of(c).flow_id, "paused"))
    c.kickoff()
    assert search.executions == 2
    assert recorder.saw("AZTP DENIED [agent_revoked_in_flow]") and recorder.saw(
        "The tool was not run."
    )
    assert ours not in get_after_tool_call_hooks()
    run(client.reinstate_flow_identity(identity_of(a), guard_of(c).flow_id))
    c.kickoff()
    assert search.executions == 4
    assert reasons(client) == ["allowed"] * 2 + ["agent_revoked_in_flow"] * 2 + ["allowed"] * 2


def test_removing_the_link_blocks_with_no_link(client: Aztp) -> None:
    search = make_tool()
    c, a = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client)
    run(client.unlink_identities(identity_of(a), identity_of(search)))
    c.kickoff()
    assert search.executions == 0
    assert reasons(client) == ["no_link"]


def test_revoked_tool_identity_blocks_with_tool_revoked(client: Aztp) -> None:
    search = make_tool()
    c, _ = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client)
    run(client.revoke_identity(identity_of(search), "tool retired"))
    c.kickoff()
    assert search.executions == 0
    assert reasons(client) == ["tool_revoked"]


def test_deny_policy_on_the_tool_action_blocks_with_policy_denied(client: Aztp) -> None:
    search, write = make_tool("web_search"), make_tool("write_report")
    a = make_agent("Researcher", [search, write], calls("web_search", "write_report"))
    c = Crew(agents=[a], tasks=[Task(description="t", expected_output="x", agent=a)])
    secure_crew(c, flow="prod", client=client)
    policy = run(
        client.create_policy(
            "no-search",
            {
                "Statement": [
                    {"Effect": "Deny", "Action": "tool:web_search"},
                    {"Effect": "Allow", "Action": "tool:*"},
                ]
            },
        )
    )
    run(client.attach_policy(identity_of(a), policy["code"]))
    c.kickoff()
    assert (search.executions, write.executions) == (0, 1)
    assert reasons(client) == ["policy_denied", "allowed"]


def test_allow_list_policy_on_the_agent_blocks_every_other_tool(client: Aztp) -> None:
    """``Allow tool:web_search`` alone: the agent's other tool is denied (``policy_denied``,
    no attached policy allows it) and its body never runs (issue 13.3)."""
    search, email = make_tool("web_search"), make_tool("send_email")
    a = make_agent("Researcher", [search, email], calls("send_email", "web_search"))
    c = Crew(agents=[a], tasks=[Task(description="t", expected_output="x", agent=a)])
    secure_crew(c, flow="prod", client=client)
    policy = run(
        client.create_policy(
            "only-search", {"Statement": [{"Effect": "Allow", "Action": "tool:web_search"}]}
        )
    )
    run(client.attach_policy(identity_of(a), policy["code"]))
    c.kickoff()
    assert (email.executions, search.executions) == (0, 1)
    assert reasons(client) == ["policy_denied", "allowed"]
    perms = run(
        client.check_identity_policy_permissions(
            identity_of(a), {"actions": ["tool:send_email", "tool:web_search"]}
        )
    )
    assert perms["actions"] == {"tool:send_email": False, "tool:web_search": True}


def test_agent_or_tool_without_identity_in_a_secured_crew_is_denied(client: Aztp) -> None:
    search = make_tool()
    c, a = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client)
    # Added after securing: no identity.
    late_tool = make_tool("late_tool")
    a.tools.append(late_tool)
    a.llm = calls("late_tool", "web_search")
    newcomer_tool = make_tool()
    newcomer = make_agent("Newcomer", [newcomer_tool], calls("web_search"))
    c.agents.append(newcomer)
    c.tasks.append(Task(description="new", expected_output="x", agent=newcomer))
    c.kickoff()
    assert (late_tool.executions, search.executions, newcomer_tool.executions) == (0, 1, 0)
    assert reasons(client) == ["tool_unknown", "allowed", "agent_unknown"]


# --- fail closed ------------------------------------------------------------------------------


class BrokenBackend:
    """The real embedded backend for set-up; ``decide`` raises, hangs or answers garbage."""

    is_remote = True

    def __init__(self, real: Any, how: str) -> None:
        self.real, self.how = real, how
        self.release = threading.Event()

    def call(self, op: str, /, **kwargs: Any) -> Any:
        return self.real.call(op, **kwargs)

    async def acall(self, op: str, /, **kwargs: Any) -> Any:
        return await self.real.acall(op, **kwargs)

    def decide(self, **kwargs: Any) -> Any:
        if self.how == "raise":
            raise ConnectionError("authority unreachable")
        if self.how == "hang":
            self.release.wait(30)
            return self.real.decide(**kwargs)  # an "allowed" that comes too late
        return {"allowed": True}  # garbage: not a Decision

    async def adecide(self, **kwargs: Any) -> Any:
        return self.decide(**kwargs)

    def close(self) -> None:
        self.release.set()


@pytest.mark.parametrize("how", ["raise", "hang", "garbage"])
def test_authority_failure_blocks_the_call(client: Aztp, how: str) -> None:
    backend = BrokenBackend(client.backend, how)
    guard = Guard("prod", Aztp(backend=backend), timeout=0.2)
    search = make_tool()
    c, a = one_agent_crew(search, 2)
    recorder = RecordingLLM(a.llm)
    secure_crew(c, flow="prod", guard=guard)
    try:
        c.kickoff()
    finally:
        backend.release.set()
    assert search.executions == 0
    assert recorder.saw("AZTP DENIED [authority_unavailable]")


class ExplodingGuard:
    """A guard that enrolls for real but whose ``check`` breaks its contract."""

    def __init__(self, real: Guard, answer: Any) -> None:
        self.real, self.answer = real, answer

    def enroll(self, agent_name: str, tool_names: Any) -> Any:
        return self.real.enroll(agent_name, tool_names)

    def check(self, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer", [RuntimeError("guard bug"), None, "allowed", True])
def test_guard_that_breaks_its_contract_still_blocks(client: Aztp, answer: Any) -> None:
    search = make_tool()
    c, a = one_agent_crew(search, 1)
    recorder = RecordingLLM(a.llm)
    secure_crew(c, flow="prod", guard=ExplodingGuard(Guard("prod", client), answer))
    c.kickoff()
    assert search.executions == 0
    assert recorder.saw("AZTP DENIED [authority_unavailable]")


def test_decision_with_non_bool_verdict_blocks(client: Aztp) -> None:
    weird = Decision(
        allowed="yes", reason=Reason.ALLOWED, agent=None, tool=None, flow=None, revision=0
    )  # type: ignore[arg-type]
    search = make_tool()
    c, _ = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", guard=ExplodingGuard(Guard("prod", client), weird))
    c.kickoff()
    assert search.executions == 0


# --- observe mode -----------------------------------------------------------------------------


def test_observe_mode_logs_the_would_be_denial_and_runs_the_tool(
    client: Aztp, caplog: pytest.LogCaptureFixture
) -> None:
    search = make_tool()
    c, _ = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client, mode="observe")
    run(client.revoke_identity(identity_of(search), "retired"))
    with caplog.at_level(logging.WARNING):
        c.kickoff()
    assert search.executions == 1
    entry = decisions(client)[-1]["data"]
    assert (entry["allowed"], entry["reason"], entry["enforced"]) == (False, "tool_revoked", False)
    assert any(
        "would deny" in r.getMessage() and "tool_revoked" in r.getMessage() for r in caplog.records
    )


# --- isolation between crews ----------------------------------------------------------------


def test_two_secured_crews_in_different_flows_enforce_independently(client: Aztp) -> None:
    t_a, t_b, t_plain = make_tool(), make_tool(), make_tool()
    crew_a, agent_a = one_agent_crew(t_a, 2, role="Analyst", name="A")
    crew_b, agent_b = one_agent_crew(t_b, 2, role="Analyst", name="B")
    plain, _ = one_agent_crew(t_plain, 2, role="Analyst", name="plain")
    secure_crew(crew_a, flow="flow-a", client=client)
    secure_crew(crew_b, flow="flow-b", client=client)
    assert identity_of(agent_a) == identity_of(agent_b)  # same role, same identity ...
    run(client.revoke_flow_identity(identity_of(agent_a), guard_of(crew_a).flow_id, "only in A"))
    crew_a.kickoff()
    crew_b.kickoff()
    plain.kickoff()  # an unsecured crew is not touched (and not audited)
    assert (t_a.executions, t_b.executions, t_plain.executions) == (0, 2, 2)
    by_flow = Counter((e["data"]["flowId"], e["data"]["reason"]) for e in decisions(client))
    assert by_flow == {
        (guard_of(crew_a).flow_id, "agent_revoked_in_flow"): 2,
        (guard_of(crew_b).flow_id, "allowed"): 2,
    }


@pytest.mark.parametrize("runner", ["kickoff_async", "akickoff"])
def test_two_secured_crews_enforce_independently_when_run_concurrently(
    client: Aztp, runner: str
) -> None:
    barrier = threading.Barrier(2, timeout=10)

    def meet_then_call(messages: Any) -> Any:
        barrier.wait()  # both crews are inside kickoff at the same time
        return tool_call("web_search", query="x")

    def crew_with(tool: CountingTool, name: str) -> tuple[Crew, Agent]:
        llm = ScriptedCrewLLM([meet_then_call, tool_call("web_search", query="y"), "done"])
        a = make_agent("Analyst", [tool], llm)
        return Crew(
            name=name, agents=[a], tasks=[Task(description="t", expected_output="x", agent=a)]
        ), a

    t_a, t_b = make_tool(), make_tool()
    crew_a, agent_a = crew_with(t_a, "A")
    crew_b, _ = crew_with(t_b, "B")
    secure_crew(crew_a, flow="flow-a", client=client)
    secure_crew(crew_b, flow="flow-b", client=client)
    run(client.revoke_flow_identity(identity_of(agent_a), guard_of(crew_a).flow_id, "only in A"))

    async def both() -> None:
        await asyncio.gather(getattr(crew_a, runner)(), getattr(crew_b, runner)())

    asyncio.run(both())
    assert (t_a.executions, t_b.executions) == (0, 2)
    assert Counter(reasons(client)) == {"agent_revoked_in_flow": 2, "allowed": 2}


def test_copies_of_a_secured_crew_are_enforced(client: Aztp) -> None:
    search = make_tool()
    c, a = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client)
    c.kickoff_for_each([{"x": "1"}, {"x": "2"}])  # runs copies of the crew and its agents
    assert search.executions == 2
    assert [e["subject"] for e in decisions(client)] == [identity_of(a)] * 2
    run(client.revoke_flow_identity(identity_of(a), guard_of(c).flow_id, "stop"))
    c.kickoff_for_each([{"x": "3"}])
    assert search.executions == 2
    assert reasons(client)[-1] == "agent_revoked_in_flow"


def test_audit_context_follows_inputs_interpolated_at_each_kickoff(client: Aztp) -> None:
    # The hook reuses what it worked out for a (crew, agent, task, tool); CrewAI rewrites the
    # task text and the role from each kickoff's inputs, and the audit context must follow.
    search = make_tool()
    a = make_agent("{field} Researcher", [search], calls("web_search", "web_search"))
    c = Crew(agents=[a], tasks=[Task(description="Research {topic}", expected_output="x", agent=a)])
    secure_crew(c, flow="prod", client=client)
    c.kickoff(inputs={"topic": "AZTP", "field": "Security"})
    c.kickoff(inputs={"topic": "SPIFFE", "field": "Identity"})
    contexts = [e["data"]["context"] for e in decisions(client)]
    assert [(x["task"], x["agent"]) for x in contexts] == [
        ("Research AZTP", "Security Researcher")
    ] * 2 + [("Research SPIFFE", "Identity Researcher")] * 2
    assert search.executions == 4


def test_securing_again_in_another_flow_takes_effect_at_the_next_call(client: Aztp) -> None:
    search = make_tool()
    c, a = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client)
    c.kickoff()
    prod = guard_of(c).flow_id
    secure_crew(c, flow="staging", client=client)
    staging = guard_of(c).flow_id
    assert staging != prod
    run(client.revoke_flow_identity(identity_of(a), staging, "not in staging"))
    c.kickoff()
    assert search.executions == 1
    assert [(e["data"]["flowId"], e["data"]["reason"]) for e in decisions(client)] == [
        (prod, "allowed"),
        (staging, "agent_revoked_in_flow"),
    ]


def test_hooks_cleared_by_someone_else_are_reinstalled_at_kickoff(client: Aztp) -> None:
    search = make_tool()
    c, a = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client)
    run(client.revoke_flow_identity(identity_of(a), guard_of(c).flow_id, "stop"))
    clear_all_global_hooks()
    c.kickoff()
    assert search.executions == 0


def test_secured_tool_called_by_an_agent_without_identity_is_denied(client: Aztp) -> None:
    search = make_tool()
    c, _ = one_agent_crew(search, 1)
    secure_crew(c, flow="prod", client=client)
    stranger, _ = one_agent_crew(search, 1, role="Stranger", name="unsecured")
    stranger.kickoff()
    assert search.executions == 0
    assert reasons(client) == ["agent_unknown"]


# --- agents, decorators, universal secured ----------------------------------------------------


def test_secure_agent_enforces_outside_any_secured_crew(client: Aztp) -> None:
    search = make_tool()
    c, a = one_agent_crew(search, 2)
    secure_agent(a, flow="solo", client=client)
    assert guard_of(c) is None
    c.kickoff()
    assert search.executions == 2
    run(client.revoke_identity(identity_of(a), "gone"))
    c.kickoff()
    assert search.executions == 2
    assert reasons(client) == ["allowed", "allowed", "agent_revoked", "agent_revoked"]


def test_secured_decorator_on_a_function_and_the_universal_decorator(client: Aztp) -> None:
    search = make_tool()

    @secured(flow="prod", client=client)
    def researcher() -> Agent:
        return make_agent("Researcher", [search], calls("web_search"))

    @aztp_agents.secured(flow="prod", client=client)
    def reviewer() -> Agent:
        return make_agent("Reviewer", [make_tool("review")], calls("review"))

    r1, r2 = researcher(), reviewer()
    assert identity_of(r1).endswith("/agent/researcher")
    assert aztp_agents.identity_of(r2).endswith("/agent/reviewer")
    whole = aztp_agents.secured(
        Crew(agents=[r1], tasks=[Task(description="t", expected_output="x", agent=r1)]),
        flow="prod",
        client=client,
    )
    assert guard_of(whole) is not None
    with pytest.raises(TypeError, match="return a crewai Agent or Crew"):
        secured(flow="prod", client=client)(lambda: 42)()
    with pytest.raises(TypeError, match="unknown option"):
        secure_crew(whole, flow="prod", client=client, mood="enforce")


def test_secured_on_crewbase_agent_methods_in_either_order(client: Aztp) -> None:
    search, write = make_tool("web_search"), make_tool("write_report")

    @CrewBase
    class ResearchCrew:
        agents_config: ClassVar[dict[str, Any]] = {}
        tasks_config: ClassVar[dict[str, Any]] = {}

        @agent
        @aztp_agents.secured(flow="prod", client=client)
        def researcher(self) -> Agent:
            return make_agent("Researcher", [search], calls("web_search"))

        @secured(flow="prod", client=client)
        @agent
        def writer(self) -> Agent:
            return make_agent("Writer", [write], calls("write_report", "write_report"))

        @task
        def research(self) -> Task:
            return Task(description="research", expected_output="x", agent=self.researcher())

        @task
        def write(self) -> Task:
            return Task(description="write", expected_output="x", agent=self.writer())

        @crew
        def crew(self) -> Crew:
            return Crew(agents=self.agents, tasks=self.tasks)

    assert ResearchCrew.__dict__["writer"].is_agent
    assert ResearchCrew.__dict__["researcher"].is_agent
    built = ResearchCrew().crew()
    researcher_id, writer_id = (identity_of(x) for x in built.agents)
    assert researcher_id.endswith("/agent/researcher") and writer_id.endswith("/agent/writer")
    run(client.revoke_identity(writer_id, "no writing today"))
    built.kickoff()
    assert (search.executions, write.executions) == (1, 0)
    assert reasons(client) == ["allowed", "agent_revoked", "agent_revoked"]


def test_crewbase_yaml_agents_with_templated_roles_are_named_by_their_key(
    client: Aztp, tmp_path: Path
) -> None:
    """A standard ``@CrewBase`` project: YAML agents whose roles hold ``{topic}``. Each agent
    is named by its YAML key / ``@agent`` method, the same identity for every topic."""
    (tmp_path / "agents.yaml").write_text(
        "researcher:\n"
        '  role: "{topic} Senior Data Researcher"\n'
        '  goal: "Find {topic} facts"\n'
        '  backstory: "Careful."\n'
        "reporting_analyst:\n"
        '  role: "{topic} Reporting Analyst"\n'
        '  goal: "Report on {topic}"\n'
        '  backstory: "Precise."\n'
    )
    (tmp_path / "tasks.yaml").write_text(
        "research_task:\n"
        '  description: "Research {topic}"\n'
        '  expected_output: "notes"\n'
        "  agent: researcher\n"
        "reporting_task:\n"
        '  description: "Report on {topic}"\n'
        '  expected_output: "a report"\n'
        "  agent: reporting_analyst\n"
    )
    search, write = make_tool("web_search"), make_tool("write_report")

    @CrewBase
    class LatestAiDevelopment:
        agents_config = str(tmp_path / "agents.yaml")
        tasks_config = str(tmp_path / "tasks.yaml")

        @agent
        def researcher(self) -> Agent:
            return Agent(
                config=self.agents_config["researcher"], tools=[search], llm=calls("web_search")
            )

        @agent
        def reporting_analyst(self) -> Agent:
            return Agent(
                config=self.agents_config["reporting_analyst"],
                tools=[write],
                llm=calls("write_report"),
            )

        @task
        def research_task(self) -> Task:
            return Task(config=self.tasks_config["research_task"])

        @task
        def reporting_task(self) -> Task:
            return Task(config=self.tasks_config["reporting_task"])

        @crew
        def crew(self) -> Crew:
            return Crew(agents=self.agents, tasks=self.tasks)

    ids = []
    for topic in ("AI LLMs", "Biology"):
        built = secure_crew(LatestAiDevelopment().crew(), flow="prod", client=client)
        built.kickoff(inputs={"topic": topic})
        ids.append([identity_of(a) for a in built.agents])
    assert ids[0] == ids[1]
    assert [i.rsplit("/node/", 1)[1] for i in ids[0]] == [
        "agent/researcher",
        "agent/reporting-analyst",
    ]
    names = {i["aztpId"] for i in run(client.list_identities())}
    assert not [n for n in names if "topic" in n]
    assert (search.executions, write.executions) == (2, 2)
    assert reasons(client) == ["allowed"] * 4

    (tmp_path / "one-task.yaml").write_text(
        'research_task:\n  description: "Research {topic}"\n  expected_output: "notes"\n'
    )

    @CrewBase
    class SecuredMethods:  # the documented style: @secured below @agent
        agents_config = str(tmp_path / "agents.yaml")
        tasks_config = str(tmp_path / "one-task.yaml")

        @agent
        @secured(flow="prod", client=client)
        def researcher(self) -> Agent:
            return Agent(config=self.agents_config["researcher"], llm=calls())

    made = SecuredMethods().researcher()
    assert identity_of(made) == ids[0][0]
    plain = secure_agent(
        Agent(role="{topic} Senior Data Researcher", goal="g", backstory="b", llm=calls()),
        flow="prod",
        client=client,
    )
    assert identity_of(plain).endswith("/node/agent/senior-data-researcher")


def test_hierarchical_crew_manager_gets_an_identity(client: Aztp) -> None:
    search = make_tool()
    worker = make_agent("Researcher", [search], calls("web_search"))
    manager_llm = ScriptedCrewLLM(
        [
            tool_call(
                "Delegate work to coworker", task="research", context="c", coworker="Researcher"
            ),
            "managed",
        ]
    )
    c = Crew(
        agents=[worker],
        tasks=[Task(description="research", expected_output="x")],
        process=Process.hierarchical,
        manager_llm=manager_llm,
    )
    secure_crew(c, flow="prod", client=client)
    c.kickoff()
    assert search.executions == 1
    entries = decisions(client)
    assert [(e["data"]["toolName"], e["data"]["reason"]) for e in entries] == [
        ("delegate_work_to_coworker", "allowed"),
        ("web_search", "allowed"),
    ]
    assert entries[0]["subject"].endswith("/agent/crew-manager")


def hierarchical_crew(manager: str, assigned: bool, task_tools: list[Any]) -> tuple[Crew, Any]:
    """A hierarchical crew whose one task carries ``task_tools``; its manager (built by CrewAI
    from ``manager_llm``, or a ``manager_agent``) calls ``stats`` itself, then answers.
    Returns the crew and the manager's LLM (to script or inspect)."""
    worker = make_agent("Researcher", [make_tool("web_search")], calls("web_search"))
    manager_llm = ScriptedCrewLLM([tool_call("stats", query="q3"), "managed"])
    task = Task(
        description="quarterly numbers",
        expected_output="x",
        tools=task_tools,
        agent=worker if assigned else None,
    )
    options: dict[str, Any] = {"manager_llm": manager_llm}
    if manager == "manager_agent":
        options = {"manager_agent": make_agent("Boss", [], manager_llm, allow_delegation=True)}
    crew = Crew(agents=[worker], tasks=[task], process=Process.hierarchical, **options)
    return crew, manager_llm


@pytest.mark.parametrize(
    ("manager", "assigned"),
    [
        ("manager_llm", False),
        ("manager_llm", True),
        ("manager_agent", True),
        ("manager_agent", False),
    ],
)
def test_hierarchical_manager_may_call_the_tools_of_the_tasks_it_runs(
    client: Aztp, manager: str, assigned: bool
) -> None:
    """CrewAI hands ``task.tools`` to the manager: it is linked to them in the crew's flow."""
    stats = make_tool("stats")
    crew, _ = hierarchical_crew(manager, assigned, [stats])
    secure_crew(crew, flow="prod", client=client)

    crew.kickoff()

    assert stats.executions == 1
    entries = decisions(client)
    assert [(e["data"]["toolName"], e["data"]["reason"]) for e in entries] == [("stats", "allowed")]
    role = "crew-manager" if manager == "manager_llm" else "boss"
    assert entries[0]["subject"].endswith(f"/agent/{role}")


@pytest.mark.parametrize("manager", ["manager_llm", "manager_agent"])
def test_hierarchical_manager_is_not_linked_to_tools_outside_its_tasks(
    client: Aztp, manager: str
) -> None:
    """Tools put on the task after ``secure_crew``: one no agent or task had (no identity),
    one only a worker had (no link for the manager). Both stay denied and never run."""
    crew, manager_llm = hierarchical_crew(manager, True, [make_tool("stats")])
    manager_llm.script[:] = [
        tool_call("rogue", query="q"),
        tool_call("web_search", query="q"),
        "managed",
    ]
    secure_crew(crew, flow="prod", client=client)
    rogue = make_tool("rogue")
    worker_search = crew.agents[0].tools[0]
    crew.tasks[0].tools = [*crew.tasks[0].tools, rogue, worker_search]

    crew.kickoff()

    assert (rogue.executions, worker_search.executions) == (0, 0)
    assert [(e["data"]["toolName"], e["data"]["reason"]) for e in decisions(client)] == [
        ("rogue", "tool_unknown"),
        ("web_search", "no_link"),
    ]


def test_universal_secured_above_crewbase_agent_keeps_the_marker(client: Aztp) -> None:
    class Holder:
        @aztp_agents.secured(flow="prod", client=client)
        @agent
        def researcher(self) -> Agent:
            return make_agent("Researcher", [make_tool()], calls("web_search"))

    assert Holder.__dict__["researcher"].is_agent


def test_supports_and_identity_of_on_other_objects(client: Aztp) -> None:
    a = make_agent("Researcher", [make_tool()], calls())
    assert aztp_crewai.supports(a) and aztp_crewai.supports(Crew(agents=[a], tasks=[]))
    assert not aztp_crewai.supports(object()) and not aztp_crewai.supports(lambda: a)
    assert identity_of(a) is None and identity_of(object()) is None and guard_of(a) is None
    with pytest.raises(TypeError):
        secure_agent(object(), flow="prod", client=client)
    with pytest.raises(ValueError, match="mode"):
        secure_agent(a, flow="prod", client=client, mode="audit")
