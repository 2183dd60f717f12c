"""What the AZTP guard adds to a CrewAI tool call: full ``Crew.kickoff()`` runs, with and
without ``secure_crew``, same scripted LLM, measured side by side.

Each run is one kickoff of a one-agent crew that makes ``--calls`` tool calls (>= 200). The
same crew object runs every side, so nothing but the hooks differs:

* A -- no hook at all (as if ``secure_crew`` had never been called);
* N -- one no-op ``before_tool_call`` hook: CrewAI's own cost of having a hook, which any
  hook-based guard pays (CrewAI 1.15 emits a telemetry event per hook dispatch);
* B -- ``secure_crew``: AZTP's hook (the decision + the audit record);
* A2 -- A again: the A2/A control shows how far two identical sides differ on this machine.

The four run in rounds (A N B A2, then A2 B N A: drift hits all alike); the cost per tool call is a
run's CPU time divided by its calls. Printed: the median of the paired ratios B/A (what a user
pays in all), N/A (CrewAI's hook layer) and B/N (what AZTP adds beyond it, the issue's
target), each with a bootstrap 95 % interval. Then, in separate runs, AZTP's own CPU: the
thread CPU time inside its hooks plus the audit writer's CPU per record (``_paired.py``).
Target: the guard (decision + audit record) adds at most 1 % to an unguarded tool call.

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
from aztp_crewai.testing import scripted_crew_llm  # noqa: E402
from crewai import Agent, Crew, Task  # noqa: E402
from crewai.hooks.dispatch import InterceptionPoint, get_global_hook_list  # noqa: E402
from crewai.tools import BaseTool  # noqa: E402

from aztp_agents import Aztp  # noqa: E402

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
    llm = scripted_crew_llm(
        *[("lookup", {"query": f"k{i}"}) for i in range(calls)], final="done", native=native
    )
    agent = Agent(
        role="Analyst",
        goal="Look things up",
        backstory="Careful.",
        tools=[tool],
        llm=llm,
        max_iter=calls + 5,
        verbose=False,
    )
    task = Task(description="Look up the keys", expected_output="the values", agent=agent)
    return Crew(agents=[agent], tasks=[task], verbose=False), tool


def timed_run(crew: Crew) -> float:
    """CPU seconds of the process (every thread: CrewAI's, the audit writer's) for one kickoff:
    unlike wall time, other processes on a shared machine do not move it."""
    start = time.process_time()
    crew.kickoff()
    return time.process_time() - start


_POINTS = (
    (InterceptionPoint.PRE_TOOL_CALL, _hooks.before_tool_call),
    (InterceptionPoint.POST_TOOL_CALL, _hooks.after_tool_call),
)


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
        """Replace the hook by a timed wrapper of itself (until :meth:`unmetered`). Allowed
        calls have no after-hook: it is registered only while a denial waits for it."""
        self.off()
        get_global_hook_list(InterceptionPoint.PRE_TOOL_CALL).append(
            meter.wrap(_hooks.before_tool_call)
        )

    def unmetered(self) -> None:
        get_global_hook_list(InterceptionPoint.PRE_TOOL_CALL).clear()
        self.on()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=30, help="rounds of A/N/B/A2 runs (default 30)"
    )
    parser.add_argument(
        "--calls", type=int, default=200, help="tool calls per run (default 200, at least 200)"
    )
    parser.add_argument(
        "--native", action="store_true", help="native function calling instead of ReAct text"
    )
    parser.add_argument(
        "--no-freeze", action="store_true", help="leave the start-up heap to the collector"
    )
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

    times: dict[str, list[float]] = {"A": [], "N": [], "B": [], "A2": []}
    gc.collect()
    if not args.no_freeze:
        gc.freeze()
    gc_time = dict.fromkeys(times, 0.0)
    side = ["A"]
    gc_start = [0.0]

    def gc_clock(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.process_time()
        else:
            gc_time[side[0]] += time.process_time() - gc_start[0]

    def noop_hook(_ctx: object) -> None:
        return None

    gc.callbacks.append(gc_clock)

    def run_side(name: str) -> float:
        side[0] = name
        if name == "B":
            switch.on()
            return timed_run(crew)
        switch.off()
        if name in ("A", "A2"):  # A2: A again, the control that shows the noise floor
            return timed_run(crew)
        hooks = get_global_hook_list(InterceptionPoint.PRE_TOOL_CALL)
        hooks.append(noop_hook)
        try:
            return timed_run(crew)
        finally:
            hooks.remove(noop_hook)

    for i in range(args.pairs):
        for name in ("A", "N", "B", "A2") if i % 2 == 0 else ("A2", "B", "N", "A"):
            times[name].append(run_side(name) / args.calls)
            runs += 1
    gc.callbacks.remove(gc_clock)
    switch.on()

    def paired(num: str, den: str) -> tuple[float, float, float]:
        return median_ci([x / y for x, y in zip(times[num], times[den], strict=True)])

    total, layer, beyond, control = (
        paired("B", "A"),
        paired("N", "A"),
        paired("B", "N"),
        paired("A2", "A"),
    )
    # AZTP beyond CrewAI's hook layer, as a share of an unguarded call: (B/N - 1) x N/A.
    whole = tuple(1 + (r - 1) * layer[0] for r in beyond)
    unguarded_us = statistics.median(times["A"]) * 1e6

    # AZTP's own CPU: its hook (thread CPU inside it) and the audit writer per record.
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

    ok, word = verdict(own_share, whole, TARGET_PCT / 100)  # type: ignore[arg-type]
    mode = "native tool calls" if args.native else "ReAct text"
    per_side = args.pairs * args.calls

    def ci(r: tuple[float, ...]) -> str:
        return f"{pct(r[0])} [{pct(r[1])}, {pct(r[2])}]"

    print(
        f"crewai_guard: full Crew.kickoff() runs, scripted LLM ({mode}), one crew; {args.pairs} rounds of "
        f"A/N/B/A2 runs x {args.calls} tool calls = {per_side} calls per side"
    )
    print(
        f"  A no hooks           median {statistics.median(times['A']) * 1e3:8.3f} ms CPU per tool call"
    )
    print(
        f"  N no-op CrewAI hook  median {statistics.median(times['N']) * 1e3:8.3f} ms CPU per tool call"
    )
    print(
        f"  B secure_crew        median {statistics.median(times['B']) * 1e3:8.3f} ms CPU per tool call"
    )
    print(
        "  garbage collection   "
        + ", ".join(f"{k} {v / per_side * 1e6:5.1f} us" for k, v in gc_time.items())
        + f" per tool call ({'start-up heap frozen' if not args.no_freeze else 'nothing frozen'})"
    )
    print("  whole runs, CPU, median paired ratio [95 % interval]:")
    print(f"    B/A  secure_crew vs no hooks (all a user pays)      {ci(total)}")
    print(f"    N/A  CrewAI's hook layer alone                      {ci(layer)}")
    print(f"    AZTP beyond CrewAI's hook layer, (B/N - 1) x N/A    {ci(whole)}")
    print(f"    A2/A control: no hooks vs no hooks (noise floor)    {ci(control)}")
    print(
        f"  AZTP's own CPU       hooks {hooks_us:5.1f} us + audit writer {writer_us:5.1f} us/record = {own_us:5.1f} us "
        f"per tool call = {own_share * 100:.2f} % of an unguarded tool call"
    )
    print(
        f"  guard.check alone    {decision_us:5.1f} us per decision, warm (decision + audit record queued)"
    )
    print(
        f"  audited decisions    {audited} = every guarded call ({guarded_calls}) + {n} direct checks"
    )
    print(
        f"  target: the guard (decision + audit record) adds <= {TARGET_PCT:.0f} % to an unguarded tool call: {word} "
        f"(AZTP's own CPU {own_share * 100:.2f} %; whole runs {pct(whole[0])}, interval low end {pct(whole[1])})"
    )
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
