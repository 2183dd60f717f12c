"""What the AZTP guard adds to a CrewAI tool call: full ``Crew.kickoff()`` runs, with and
without ``secure_crew``, same scripted LLM, measured side by side.

Each run is one kickoff of a one-agent crew that makes ``--calls`` tool calls (>= 200). Runs
of the unguarded crew (A) and of the secured crew (B) are interleaved in pairs (ABBA order, so
drift hits both sides alike); the cost per tool call is the run's CPU time divided by the
calls, and the result is the median of the paired B/A ratios. Target: the guard (decision +
audit record) adds at most 1 % to an unguarded CrewAI tool call.

Garbage collection: after the warm-up the objects made so far (imports: CrewAI, pydantic,
LiteLLM, ~275 k objects) are moved out of the collector's way with ``gc.freeze()``, as
long-running services do after start-up. Without it every full collection walks them and
costs ~150 ms, a seventh of a whole run, charged to whichever run (A or B) happens to
trigger it; that noise swamps a 1 % effect. Collections still run during the measured runs,
and the time each side spends in them is printed (``--no-freeze`` to see it the other way).

Run: .venv/bin/python bench/crewai_guard.py [--pairs 15] [--calls 200] [--native] [--no-freeze]
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

from aztp_crewai import guard_of, secure_crew  # noqa: E402
from crewai import Agent, Crew, Task  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15, help="A/B pairs of runs (default 15)")
    parser.add_argument("--calls", type=int, default=200, help="tool calls per run (default 200, at least 200)")
    parser.add_argument("--native", action="store_true", help="native function calling instead of ReAct text")
    parser.add_argument("--no-freeze", action="store_true", help="leave the start-up heap to the collector")
    args = parser.parse_args()
    if args.calls < 200:
        parser.error("--calls must be >= 200 (issue 4: runs of at least 200 tool calls)")

    home = tempfile.mkdtemp(prefix="aztp-bench-crewai-")
    client = Aztp(home=home)
    plain, plain_tool = build_crew(args.calls, args.native)
    guarded, guarded_tool = build_crew(args.calls, args.native)
    secure_crew(guarded, flow="bench", client=client)

    for _ in range(3):  # warm-up: imports, caches, the guard's snapshot, SQLite pages
        timed_run(plain)
        timed_run(guarded)

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

    def run_side(name: str, crew: Crew) -> float:
        side[0] = name
        return timed_run(crew)

    for i in range(args.pairs):
        if i % 2 == 0:
            a, b = run_side("A", plain), run_side("B", guarded)
        else:
            b, a = run_side("B", guarded), run_side("A", plain)
        a_times.append(a / args.calls)
        b_times.append(b / args.calls)
    gc.callbacks.remove(gc_clock)

    ratios = [b / a for a, b in zip(a_times, b_times, strict=True)]
    ratio = statistics.median(ratios)
    overhead_pct = (ratio - 1.0) * 100.0
    total = args.pairs * args.calls
    assert plain_tool.executions == guarded_tool.executions == (args.pairs + 3) * args.calls

    # The guard's decision path in situ: time guard.check inside real runs.
    guard = guard_of(guarded)
    spent: list[float] = []
    check = guard.check

    def timed_check(*a: object, **k: object) -> object:
        t = time.perf_counter()
        try:
            return check(*a, **k)  # type: ignore[arg-type]
        finally:
            spent.append(time.perf_counter() - t)

    guard.check = timed_check  # type: ignore[method-assign]
    for _ in range(5):
        timed_run(guarded)
    del guard.check
    in_situ_us = statistics.median(spent) * 1e6
    in_situ_pct = in_situ_us / (statistics.median(a_times) * 1e6) * 100

    # ... and alone, warm, for reference.
    agent_id = next(i for i in guard.identities if "/agent/" in i)
    tool_id = next(i for i in guard.identities if "/tool/" in i)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        guard.check(agent_id, tool_id, "lookup", {"framework": "crewai", "crew": "bench"})
    decision_us = (time.perf_counter() - start) / n * 1e6
    audited = len(asyncio.run(client.audit(action="decision.tool_call")))

    mode = "native tool calls" if args.native else "ReAct text"
    print(f"crewai_guard: full Crew.kickoff() runs, scripted LLM ({mode}), {args.pairs} interleaved A/B pairs "
          f"x {args.calls} tool calls = {total} calls per side")
    print(f"  A unguarded          median {statistics.median(a_times) * 1e3:8.3f} ms CPU per tool call")
    print(f"  B secure_crew        median {statistics.median(b_times) * 1e3:8.3f} ms CPU per tool call")
    print(f"  guard.check alone    mean   {decision_us:8.1f} us per decision (decision + audit record)")
    print(f"  guard.check in situ  median {in_situ_us:8.1f} us per tool call = {in_situ_pct:.2f} % of an unguarded "
          f"tool call (target <= {TARGET_PCT:.0f} %): {'PASS' if in_situ_pct <= TARGET_PCT else 'FAIL'}")
    print(f"  audited decisions    {audited} (every guarded call, plus {n} direct checks)")
    per_call = args.pairs * args.calls
    print(f"  garbage collection   A {gc_time['A'] / per_call * 1e6:6.1f} us, B {gc_time['B'] / per_call * 1e6:6.1f} us "
          f"per tool call ({'start-up heap frozen' if not args.no_freeze else 'nothing frozen'})")
    verdict = "PASS" if overhead_pct <= TARGET_PCT else "FAIL"
    print(f"  whole runs, CPU: median paired ratio B/A = {ratio:.4f} -> secure_crew adds {overhead_pct:+.2f} % "
          f"per tool call (target <= {TARGET_PCT:.0f} %): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
