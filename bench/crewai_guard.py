"""What the AZTP guard adds to a CrewAI tool call: full ``Crew.kickoff()`` runs, with and
without ``secure_crew``, same scripted LLM, measured side by side.

Each run is one kickoff of a one-agent crew that makes ``--calls`` tool calls (>= 200). The
same crew object runs both sides, so nothing but AZTP differs: A with AZTP's hooks taken out of
CrewAI (as if ``secure_crew`` had never been called: CrewAI then has no hook to dispatch), B
with them in. Runs are interleaved in pairs (AB, BA, AB, ...: drift hits both sides alike);
the cost per tool call is the run's CPU time divided by the calls, and the result is the
median of the paired B/A ratios with a bootstrap 95 % interval. Then, in separate runs, the
thread CPU time spent inside AZTP's two hooks and the audit writer's CPU per record give AZTP's
own cost per call (see ``_paired.py``). Target: the guard (decision + audit record) adds at
most 1 % to an unguarded CrewAI tool call.

Garbage collection: after the warm-up the objects made so far (imports: CrewAI, pydantic,
LiteLLM, ~275 k objects) are moved out of the collector's way with ``gc.freeze()``, as
long-running services do after start-up. Without it every full collection walks them and
costs ~150 ms, a seventh of a whole run, charged to whichever run (A or B) happens to
trigger it; that noise swamps a 1 % effect. Collections still run during the measured runs,
and the time each side spends in them is printed (``--no-freeze`` to see it the other way).

Run: .venv/bin/python bench/crewai_guard.py [--pairs 30] [--calls 200] [--native] [--no-freeze]
"""

from __future__ import annotations

import os

for _key in ("CREWAI_DISABLE_TELEMETRY", "CREWAI_DISABLE_TRACKING"):
    os.environ.setdefault(_key, "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from _paired import CpuMeter, median_ci, pct, verdict, writer_us_per_record  # noqa: E402
from aztp_crewai import _hooks, guard_of, secure_crew  # noqa: E402
from crewai import Agent, Crew, Task  # noqa: E402
from crewai.hooks.dispatch import InterceptionPoint, get_global_hook_list  # noqa: E402
from crewai.tools import BaseTool  # noqa: E402

from aztp_agents import Aztp  # noqa: E402
from aztp_agents.testing import scripted_crew_llm  # noqa: E402

TARGET_PCT = 1.0


class LookupTool(BaseTool):
    name: str = "lookup"
    description: str = "Look a key up."
    executions: int = 0

    def _run(self, query: str = "") -> str:
        self.executions += 1
        return f"value of {query}"


def build_crew(calls: int, native: bool) -> tuple[Crew, LookupTool]:
    tool = LookupTool()
    llm = scripted_crew_llm(*[("lookup", {"query": f"k{i}"}) for i in range(calls)], final="done", native=native)
    agent = Agent(role="Analyst", goal="Look things up", backstory="Careful.", tools=[tool], llm=llm,
                  max_iter=calls + 5, verbose=False)
    task = Task(description="Look up the keys", expected_output="the values", agent=agent)
    return Crew(agents=[agent], tasks=[task], verbose=False), tool


def timed_run(crew: Crew) -> float:
    """CPU seconds of the process (every thread: CrewAI's, the audit writer's) for one kickoff:
    unlike wall time, other processes on a shared machine do not move it."""
    start = time.process_time()
    crew.kickoff()
    return time.process_time() - start


_POINTS = ((InterceptionPoint.PRE_TOOL_CALL, _hooks.before_tool_call),
           (InterceptionPoint.POST_TOOL_CALL, _hooks.after_tool_call))


class AztpSwitch:
    """Takes AZTP out of a secured crew's runs and puts it back: its two global hooks and the
    kickoff callback that would re-install them."""

    def __init__(self, crew: Crew) -> None:
        self.crew = crew

    def off(self) -> None:
        for point, hook in _POINTS:
            hooks = get_global_hook_list(point)
            if hook in hooks:
                hooks.remove(hook)
        callbacks = self.crew.before_kickoff_callbacks
        if _hooks.ensure_hooks_before_kickoff in callbacks:
            callbacks.remove(_hooks.ensure_hooks_before_kickoff)

    def on(self) -> None:
        _hooks.install()
        if _hooks.ensure_hooks_before_kickoff not in self.crew.before_kickoff_callbacks:
            self.crew.before_kickoff_callbacks.append(_hooks.ensure_hooks_before_kickoff)

    def metered(self, meter: CpuMeter) -> None:
        """Replace the hooks by timed wrappers of themselves (until :meth:`on`)."""
        self.off()
        for point, hook in _POINTS:
            get_global_hook_list(point).append(meter.wrap(hook))

    def unmetered(self) -> None:
        for point, _hook in _POINTS:
            get_global_hook_list(point).clear()
        self.on()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30, help="A/B pairs of runs (default 30)")
    parser.add_argument("--calls", type=int, default=200, help="tool calls per run (default 200, at least 200)")
    parser.add_argument("--native", action="store_true", help="native function calling instead of ReAct text")
    parser.add_argument("--no-freeze", action="store_true", help="leave the start-up heap to the collector")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    if args.calls < 200:
        parser.error("--calls must be >= 200 (issue 4: runs of at least 200 tool calls)")

    home = tempfile.mkdtemp(prefix="aztp-bench-crewai-")
    client = Aztp(home=home)
    store = client.backend.authority.store  # type: ignore[attr-defined]
    crew, tool = build_crew(args.calls, args.native)
    secure_crew(crew, flow="bench", client=client)
    switch = AztpSwitch(crew)
    runs = 0

    for _ in range(3):  # warm-up: imports, caches, the guard's snapshot, SQLite pages
        switch.off()
        timed_run(crew)
        switch.on()
        timed_run(crew)
        runs += 2

    a_times: list[float] = []
    b_times: list[float] = []
    gc.collect()
    if not args.no_freeze:
        gc.freeze()
    gc_time = {"A": 0.0, "B": 0.0}
    side = ["A"]
    gc_start = [0.0]

    def gc_clock(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.process_time()
        else:
            gc_time[side[0]] += time.process_time() - gc_start[0]

    gc.callbacks.append(gc_clock)

    def run_side(name: str) -> float:
        side[0] = name
        if name == "A":
            switch.off()
        else:
            switch.on()
        return timed_run(crew)

    for i in range(args.pairs):
        if i % 2 == 0:
            a, b = run_side("A"), run_side("B")
        else:
            b, a = run_side("B"), run_side("A")
        a_times.append(a / args.calls)
        b_times.append(b / args.calls)
        runs += 2
    gc.callbacks.remove(gc_clock)
    whole = median_ci([b / a for a, b in zip(a_times, b_times, strict=True)])
    unguarded_us = statistics.median(a_times) * 1e6

    # AZTP's own CPU: the two hooks (thread CPU inside them) and the audit writer per record.
    meter = CpuMeter()
    switch.metered(meter)
    writer_before = store.audit_writer_stats()
    measured = 5
    for _ in range(measured):
        timed_run(crew)
        runs += 1
    switch.unmetered()
    hooks_us = sum(meter.spent) / (measured * args.calls) * 1e6
    writer_us = writer_us_per_record(store, writer_before)
    own_us = hooks_us + writer_us
    own_share = own_us / unguarded_us

    # ... and the decision alone, warm, for reference.
    guard = guard_of(crew)
    agent_id = next(i for i in guard.identities if "/agent/" in i)
    tool_id = next(i for i in guard.identities if "/tool/" in i)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        guard.check(agent_id, tool_id, "lookup", {"framework": "crewai", "crew": "bench"})
    decision_us = (time.perf_counter() - start) / n * 1e6
    audited = len(asyncio.run(client.audit(action="decision.tool_call")))
    guarded_calls = (3 + args.pairs + measured) * args.calls
    assert tool.executions == runs * args.calls, (tool.executions, runs)
    assert audited == guarded_calls + n, (audited, guarded_calls + n)

    ok, word = verdict(own_share, whole, TARGET_PCT / 100)
    mode = "native tool calls" if args.native else "ReAct text"
    per_side = args.pairs * args.calls
    print(f"crewai_guard: full Crew.kickoff() runs, scripted LLM ({mode}), one crew, AZTP hooks out (A) / in (B), "
          f"{args.pairs} interleaved pairs x {args.calls} tool calls = {per_side} calls per side")
    print(f"  A without AZTP       median {statistics.median(a_times) * 1e3:8.3f} ms CPU per tool call")
    print(f"  B secure_crew        median {statistics.median(b_times) * 1e3:8.3f} ms CPU per tool call")
    print(f"  garbage collection   A {gc_time['A'] / per_side * 1e6:6.1f} us, B {gc_time['B'] / per_side * 1e6:6.1f} us "
          f"per tool call ({'start-up heap frozen' if not args.no_freeze else 'nothing frozen'})")
    print(f"  whole runs, CPU      median paired ratio B/A {whole[0]:.4f}: {pct(whole[0])} per tool call, "
          f"95 % interval [{pct(whole[1])}, {pct(whole[2])}]")
    print(f"  AZTP's own CPU       hooks {hooks_us:5.1f} us + audit writer {writer_us:5.1f} us/record = {own_us:5.1f} us "
          f"per tool call = {own_share * 100:.2f} % of an unguarded tool call")
    print(f"  guard.check alone    {decision_us:5.1f} us per decision, warm (decision + audit record queued)")
    print(f"  audited decisions    {audited} = every guarded call ({guarded_calls}) + {n} direct checks")
    print(f"  target: the guard adds <= {TARGET_PCT:.0f} % to an unguarded tool call: {word} "
          f"(AZTP's own CPU {own_share * 100:.2f} %; whole runs {pct(whole[0])}, interval low end {pct(whole[1])})")
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
