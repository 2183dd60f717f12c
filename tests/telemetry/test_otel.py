"""OpenTelemetry (``aztp_agents.telemetry``): decisions of real CrewAI and LangChain runs as
spans and metrics, read back from the SDK's in-memory exporter and reader.

The suite sets ``OTEL_SDK_DISABLED=true`` (tests/conftest.py); each test here that records
lifts it before making its providers. Tool bodies count their executions, so "denied" always
means "the tool body did not run".
"""

# ruff: noqa: E402  (CrewAI reads these variables at import: set them before importing it)
from __future__ import annotations

import os

for _key, _value in {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_TRACKING": "true",
}.items():
    os.environ.setdefault(_key, _value)

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
crewai = pytest.importorskip("crewai")
pytest.importorskip("langchain")

from aztp_crewai import guard_of, identity_of, secure_crew
from aztp_crewai.testing import scripted_crew_llm
from aztp_langchain import AztpMiddleware
from aztp_langchain.testing import ScriptedChatModel, call
from crewai import Agent, Crew, Task
from crewai.hooks import clear_all_global_hooks
from crewai.tools import BaseTool
from langchain.agents import create_agent
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aztp_agents import Aztp, Guard, telemetry
from tests.support.langchain import Counter, counting_tool, deny_policy, invoke, run


class CountingTool(BaseTool):
    name: str = "web_search"
    description: str = "Search the web for a query."
    executions: int = 0

    def _run(self, query: str = "") -> str:
        self.executions += 1
        return f"results for {query}"


class Otel:
    """In-memory providers, with AZTP telemetry enabled on them."""

    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        assert telemetry.flush()  # decisions are recorded by a worker thread
        return [s for s in self.spans_out.get_finished_spans() if s.name == telemetry.SPAN_NAME]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points (one collection)."""
        assert telemetry.flush()
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    found.setdefault(m.name, []).extend(m.data.data_points)
        return found


@pytest.fixture
def sdk_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)


@pytest.fixture
def otel(sdk_on: None) -> Iterator[Otel]:
    o = Otel()
    assert telemetry.enable(o.tracer_provider, o.meter_provider) is True
    try:
        yield o
    finally:
        telemetry.disable()


@pytest.fixture
def client(tmp_path: Path) -> Aztp:
    return Aztp(home=tmp_path)


@pytest.fixture(autouse=True)
def _crewai_hooks() -> Iterator[None]:
    yield
    clear_all_global_hooks()


def crew_with(search: CountingTool, delete: CountingTool) -> Crew:
    llm = scripted_crew_llm(("web_search", {"query": "q1"}), ("delete_db", {"query": "q2"}))
    agent = Agent(
        role="Researcher", goal="g", backstory="b", tools=[search, delete], llm=llm, max_iter=6
    )
    return Crew(agents=[agent], tasks=[Task(description="t", expected_output="x", agent=agent)])


# --- CrewAI ---------------------------------------------------------------------------------


def test_crewai_allowed_and_denied_calls_are_spans_with_their_attributes(
    client: Aztp, otel: Otel
) -> None:
    search = CountingTool(name="web_search")
    delete = CountingTool(name="delete_db", description="Delete the database.")
    crew = crew_with(search, delete)
    secure_crew(crew, flow="prod", client=client)
    run(client.revoke_identity(identity_of(delete), "compromised"))

    crew.kickoff()

    assert (search.executions, delete.executions) == (1, 0)  # the denied body never ran
    spans = otel.spans()
    assert [s.attributes["aztp.tool.name"] for s in spans] == ["web_search", "delete_db"]
    allowed, denied = (dict(s.attributes) for s in spans)
    guard = guard_of(crew)
    agent_id = identity_of(crew.agents[0])
    assert allowed == {
        "aztp.allowed": True,
        "aztp.enforced": True,
        "aztp.reason": "allowed",
        "aztp.revision": allowed["aztp.revision"],
        "aztp.organization": allowed["aztp.organization"],
        "aztp.flow": guard.flow_id,
        "aztp.agent": agent_id,
        "aztp.tool": identity_of(search),
        "aztp.tool.name": "web_search",
    }
    assert allowed["aztp.organization"] and allowed["aztp.revision"] > 0
    assert denied["aztp.allowed"] is False and denied["aztp.enforced"] is True
    assert denied["aztp.reason"] == "tool_revoked"
    assert denied["aztp.tool"] == identity_of(delete)
    assert denied["aztp.revision"] >= allowed["aztp.revision"]
    # a denial by the rules is a verdict, not an error; and the span covers the decision
    for span in spans:
        assert span.status.is_unset
        assert span.end_time >= span.start_time

    metrics = otel.metrics()
    by_reason = {p.attributes["aztp.reason"]: p.value for p in metrics["aztp.decisions"]}
    assert by_reason == {"allowed": 1, "tool_revoked": 1}
    assert sum(p.count for p in metrics["aztp.decision.duration"]) == 2
    (depth,) = metrics["aztp.audit.queue.depth"]
    assert depth.value >= 0


def test_memoized_allowed_calls_are_recorded_too(client: Aztp, otel: Otel) -> None:
    """The guard's fast path (an allow already decided on this state) still reaches the
    listener when telemetry is on: every call is a span, not only the first."""
    guard = Guard(flow="prod", client=client)
    enrollment = guard.enroll("agent", ["search"])
    for _ in range(3):
        assert guard.check(enrollment.agent_id, enrollment.tools["search"], "search").allowed
    assert [s.attributes["aztp.reason"] for s in otel.spans()] == ["allowed"] * 3


def test_disabled_records_nothing_and_leaves_the_guard_without_listeners(
    client: Aztp, sdk_on: None
) -> None:
    o = Otel()
    telemetry.enable(o.tracer_provider, o.meter_provider)
    telemetry.disable()
    search = CountingTool(name="web_search")
    delete = CountingTool(name="delete_db", description="Delete the database.")
    crew = crew_with(search, delete)
    secure_crew(crew, flow="prod", client=client)
    run(client.revoke_identity(identity_of(delete), "compromised"))

    crew.kickoff()

    assert (search.executions, delete.executions) == (1, 0)
    assert o.spans_out.get_finished_spans() == ()
    assert guard_of(crew).listeners == []  # the fast path pays nothing for telemetry
    assert telemetry.enabled() is False


def test_enable_reaches_guards_made_before_it_and_disable_leaves_other_listeners(
    client: Aztp, sdk_on: None
) -> None:
    guard = Guard(flow="prod", client=client)
    enrollment = guard.enroll("agent", ["search"])
    seen: list[str] = []
    guard.listeners.append(lambda d: seen.append(d.reason.value))
    o = Otel()
    telemetry.enable(o.tracer_provider, o.meter_provider)
    try:
        guard.check(enrollment.agent_id, enrollment.tools["search"], "search")
    finally:
        telemetry.disable()
    guard.check(enrollment.agent_id, enrollment.tools["search"], "search")
    assert len(o.spans()) == 1
    assert seen == ["allowed", "allowed"]
    assert len(guard.listeners) == 1


def test_a_worker_that_cannot_keep_up_drops_instead_of_growing(
    client: Aztp, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = Guard(flow="prod", client=client)
    enrollment = guard.enroll("agent", ["search"])
    monkeypatch.setattr(telemetry, "MAX_PENDING", 0)
    for _ in range(3):
        assert guard.check(enrollment.agent_id, enrollment.tools["search"], "search").allowed
    assert otel.spans() == []
    assert telemetry.stats()["dropped"] == 3
    assert len(run(client.audit(action="decision.tool_call"))) == 3  # still audited


def test_sdk_disabled_installs_nothing(client: Aztp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert telemetry.enable() is False
    assert telemetry.enabled() is False
    assert Guard(flow="prod", client=client).listeners == []


# --- LangChain ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_langchain_denial_span_has_the_reason(client: Aztp, otel: Otel, mode: str) -> None:
    counter = Counter()
    tools = [counting_tool("search", counter), counting_tool("fetch", counter)]
    middleware = AztpMiddleware(flow="prod", agent_name="researcher", client=client)
    model = ScriptedChatModel(
        script=[[call("search", query="a")], [call("fetch", query="b")], "done"]
    )
    agent = create_agent(model, tools, middleware=[middleware])
    invoke(agent, mode, {"messages": [{"role": "user", "content": "warm-up"}]})  # enrolls
    assert telemetry.flush()
    otel.spans_out.clear()
    run(deny_policy(client, middleware.agent_id, "fetch"))
    model2 = ScriptedChatModel(
        script=[[call("search", query="a")], [call("fetch", query="b")], "done"]
    )
    agent = create_agent(model2, tools, middleware=[middleware])

    invoke(agent, mode)

    assert counter.counts == {"search": 2, "fetch": 1}  # the second fetch was denied
    got = [(s.attributes["aztp.tool.name"], s.attributes["aztp.reason"]) for s in otel.spans()]
    assert got == [("search", "allowed"), ("fetch", "policy_denied")]
    denied = otel.spans()[1].attributes
    assert denied["aztp.allowed"] is False
    assert denied["aztp.agent"] == middleware.agent_id
    assert denied["aztp.tool"] == middleware.tool_ids["fetch"]
    assert denied["aztp.flow"] == middleware.guard.flow_id


def test_a_framework_tool_span_gets_an_event_not_a_new_span(client: Aztp, otel: Otel) -> None:
    guard = Guard(flow="prod", client=client)
    enrollment = guard.enroll("agent", ["search"])
    tracer = otel.tracer_provider.get_tracer("framework")
    with tracer.start_as_current_span(
        "execute_tool search", attributes={"gen_ai.operation.name": "execute_tool"}
    ):
        guard.check(enrollment.agent_id, enrollment.tools["search"], "search")
    with tracer.start_as_current_span("crew run"):  # not a tool span: a child span
        guard.check(enrollment.agent_id, "aztp://aztp.local/workload/x/node/nobody", "search")

    assert telemetry.flush()
    finished = {s.name: s for s in otel.spans_out.get_finished_spans()}
    (event,) = finished["execute_tool search"].events
    assert event.name == telemetry.SPAN_NAME
    assert event.attributes["aztp.reason"] == "allowed"
    assert event.attributes["aztp.tool"] == enrollment.tools["search"]
    child = finished[telemetry.SPAN_NAME]
    assert child.parent is not None
    assert child.parent.span_id == finished["crew run"].context.span_id
    assert child.attributes["aztp.reason"] == "tool_unknown"


# --- enabled by the environment; nothing loaded when off --------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    out = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(out))
    trace.set_tracer_provider(provider)

    from aztp_agents import Aztp, Guard
    guard = Guard(flow="prod", client=Aztp(home=sys.argv[1]))
    e = guard.enroll("agent", ["search"])
    guard.check(e.agent_id, e.tools["search"], "search")
    from aztp_agents import telemetry
    telemetry.flush()
    print([s.attributes["aztp.reason"] for s in out.get_finished_spans()])
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OTEL_SDK_DISABLED", "AZTP_OTEL")}
    return {**env, **extra}


def test_aztp_otel_env_enables_on_the_global_provider(tmp_path: Path) -> None:
    on = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "a")],
        env=_env(AZTP_OTEL="1"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert on.stdout.strip() == "['allowed']"
    off = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "b")],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert off.stdout.strip() == "[]"


def test_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from aztp_agents import Aztp, Guard
        guard = Guard(flow="prod", client=Aztp(home=sys.argv[1]))
        e = guard.enroll("agent", ["search"])
        assert guard.check(e.agent_id, e.tools["search"], "search").allowed
        assert guard.listeners == []
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=_env(), check=True)
