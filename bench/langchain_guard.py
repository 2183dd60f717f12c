"""Per-tool-call cost of ``AztpMiddleware`` in a real LangChain v1 agent.

One "tool call" is one agent turn of ``create_agent``: a scripted chat model step (no network),
the ``ToolNode``, a trivial tool body. Variant A runs without the middleware, B with it; each
block is ``--calls`` tool calls (>= 200), and A and B blocks are interleaved (ABBA order, to
cancel drift) for ``--rounds`` rounds. The result is the median of the per-round ratios B/A.
Target (issue 5): overhead (decision + audit record) <= 2 % of an unguarded tool call.

Attribution rows run the same way, each against A in its own round:
  * no-op middleware   -- LangChain's own cost of one ``wrap_tool_call`` layer: the very graph
                          of the AztpMiddleware row with AZTP switched off (one graph for
                          both, so nothing but AZTP differs between them);
  * adapter only       -- AztpMiddleware with the guard's decision replaced by a constant;
  * decision, no audit -- the real decision, audit recording switched off;
  * AztpMiddleware     -- the real thing (decision + audit record);
  * A/A control        -- the unguarded graph against itself: how far two identical sides
                          differ on this machine (the noise floor of the rows above).

Then, in separate runs, AZTP's own CPU: the thread CPU time inside ``AztpMiddleware``'s
``wrap_tool_call`` / ``awrap_tool_call`` less the handler it calls (the tool), plus the audit
writer's CPU per record (see ``_paired.py``); the whole-run figure comes with a bootstrap 95 %
interval.

Garbage collection: after the warm-up the start-up heap (LangChain, LangGraph, pydantic) is
moved out of the collector's way with ``gc.freeze()``, as long-running services do; every
block still starts from a collected heap and collections still run inside it
(``--no-freeze`` to compare).

Run: ``python bench/langchain_guard.py [--rounds 15] [--calls 200] [--strict] [--no-freeze]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _paired import CpuMeter, median_ci, verdict, writer_us_per_record
from aztp_langchain import AztpMiddleware
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain_core.tools import tool

from aztp_agents import Aztp
from aztp_agents.decisions import Decision, Reason

TARGET = 0.02
FREEZE = True  # gc.freeze() after the warm-up (see the module docstring)
PER_RUN = 10  # tool calls per agent run (one per model turn)
INPUT = {"messages": [{"role": "user", "content": "look things up"}]}


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return "value-of-" + key


def model() -> ScriptedChatModel:
    return ScriptedChatModel(
        script=[[call("lookup", key=f"k{i}")] for i in range(PER_RUN)] + ["done"]
    )


class SwitchableMiddleware(AztpMiddleware):
    """AztpMiddleware that can be switched off, to act as the no-op middleware: the no-op and
    the AZTP runs then use one and the same graph, so nothing but AZTP differs between them
    (two graphs built alike still differ by a few percent in CPU time)."""

    active = True

    def wrap_tool_call(self, request: Any, handler: Any) -> Any:
        return super().wrap_tool_call(request, handler) if self.active else handler(request)

    async def awrap_tool_call(self, request: Any, handler: Any) -> Any:
        if self.active:
            return await super().awrap_tool_call(request, handler)
        return await handler(request)


class Side:
    """One side of a comparison: a graph, with the switchable middleware set for it."""

    def __init__(self, graph: Any, mw: SwitchableMiddleware, active: bool) -> None:
        self.graph, self.mw, self.active = graph, mw, active

    def invoke(self, inputs: Any) -> Any:
        self.mw.active = self.active
        return self.graph.invoke(inputs)

    async def ainvoke(self, inputs: Any) -> Any:
        self.mw.active = self.active
        return await self.graph.ainvoke(inputs)


class MeteredMiddleware(AztpMiddleware):
    """AztpMiddleware that books its own thread CPU time (the handler's excluded)."""

    meter = CpuMeter()

    def wrap_tool_call(self, request: Any, handler: Any) -> Any:
        return self.meter.wrap(super().wrap_tool_call)(request, self.meter.exclude(handler))

    async def awrap_tool_call(self, request: Any, handler: Any) -> Any:
        return await self.meter.awrap(super().awrap_tool_call)(
            request, self.meter.aexclude(handler)
        )


def aztp_middleware(home: Path, *, variant: str) -> AztpMiddleware:
    client = Aztp(home=home)
    kind = {"metered": MeteredMiddleware, "switchable": SwitchableMiddleware}.get(
        variant, AztpMiddleware
    )
    mw = kind(flow="bench", agent_name="bench-agent", client=client)
    mw.enroll([lookup])
    if variant == "adapter-only":
        allowed = Decision(
            allowed=True,
            reason=Reason.ALLOWED,
            agent=mw.agent_id,
            tool=mw.tool_ids["lookup"],
            flow=mw.guard.flow_id,
            revision=0,
            tool_name="lookup",
        )

        async def acheck(*_a: Any, **_k: Any) -> Decision:
            return allowed

        mw.guard.check = lambda *_a, **_k: allowed  # type: ignore[method-assign]
        mw.guard.acheck = acheck  # type: ignore[method-assign]
    elif variant == "no-audit":
        authority = client.backend.authority  # type: ignore[attr-defined]
        authority.record_decision = lambda *_a, **_k: None
    return mw


def build(
    tmp: Path, attribution: bool
) -> tuple[dict[str, Any], AztpMiddleware, tuple[Any, MeteredMiddleware]]:
    m = model()
    graphs: dict[str, Any] = {"unguarded": create_agent(m, [lookup])}
    real = aztp_middleware(tmp / "c", variant="switchable")
    assert isinstance(real, SwitchableMiddleware)
    shared = create_agent(m, [lookup], middleware=[real])
    graphs["no-op middleware"] = Side(shared, real, active=False)
    if attribution:
        graphs["adapter only"] = create_agent(
            m, [lookup], middleware=[aztp_middleware(tmp / "a", variant="adapter-only")]
        )
        graphs["decision, no audit"] = create_agent(
            m, [lookup], middleware=[aztp_middleware(tmp / "b", variant="no-audit")]
        )
    graphs["AztpMiddleware"] = Side(shared, real, active=True)
    graphs["A/A control"] = graphs[
        "unguarded"
    ]  # the unguarded graph against itself: the noise floor
    metered = aztp_middleware(tmp / "d", variant="metered")
    assert isinstance(metered, MeteredMiddleware)
    return graphs, real, (create_agent(m, [lookup], middleware=[metered]), metered)


def own_cpu_us(graph: Any, mw: MeteredMiddleware, mode: str, runs: int = 40) -> tuple[float, float]:
    """(middleware us, audit writer us per record) per tool call, from ``runs`` agent runs."""
    store = mw.guard.client.backend.authority.store  # type: ignore[attr-defined]
    block(graph, 2, mode)  # warm
    mw.meter.spent.clear()
    before = store.audit_writer_stats()
    block(graph, runs, mode)
    return mw.meter.mean_us, writer_us_per_record(store, before)


def block(graph: Any, runs: int, mode: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per tool call over ``runs`` agent runs.

    CPU time is the process's, all threads included (ToolNode workers, the audit writer), so
    other processes on a shared machine do not move it; wall time is printed alongside."""
    gc.collect()
    if mode == "sync":
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(runs):
            graph.invoke(INPUT)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    else:

        async def go() -> tuple[float, float]:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(runs):
                await graph.ainvoke(INPUT)
            return time.process_time() - cpu, time.perf_counter() - wall

        cpu, wall = asyncio.run(go())
    n = runs * PER_RUN
    return cpu / n, wall / n


def measure(
    graphs: dict[str, Any],
    rounds: int,
    calls: int,
    mode: str,
    *,
    base_name: str = "unguarded",
    only: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    runs = max(1, -(-calls // PER_RUN))
    base = graphs[base_name]
    for g in graphs.values():  # warm-up: first-use issuance, imports, caches
        block(g, 2, mode)
    if FREEZE:
        gc.freeze()
    out: dict[str, Any] = {}
    for name, graph in graphs.items():
        if name == base_name or (only is not None and name not in only):
            continue
        rows: dict[str, list[float]] = {k: [] for k in ("a", "b", "ratio", "wa", "wb", "wratio")}
        for r in range(rounds):
            order: list[tuple[str, Any]] = [("A", base), ("B", graph), ("B", graph), ("A", base)]
            if r % 2:
                order.reverse()
            t: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
            for label, g in order:
                t[label].append(block(g, runs, mode))
            a = sum(x[0] for x in t["A"]) / 2
            b = sum(x[0] for x in t["B"]) / 2
            wa = sum(x[1] for x in t["A"]) / 2
            wb = sum(x[1] for x in t["B"]) / 2
            for key, value in (("a", a), ("b", b), ("ratio", b / a)):
                rows[key].append(value)
            for key, value in (("wa", wa), ("wb", wb), ("wratio", wb / wa)):
                rows[key].append(value)
        out[name] = {k: statistics.median(v) for k, v in rows.items()}
        out[name]["ratios"] = rows["ratio"]
    return out


def decision_latency(
    graph: Any, mw: AztpMiddleware, mode: str, runs: int = 20
) -> tuple[float, float]:
    """(median, mean) microseconds inside the guard's decision during real runs: ``check``
    on ``invoke``; on ``ainvoke``, ``check_now`` (the in-memory decision the middleware takes
    without a coroutine) or ``acheck`` when that one must read the store."""
    guard = mw.guard
    spent: list[float] = []
    check, check_now, acheck = guard.check, guard.check_now, guard.acheck

    def timed(fn: Any) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent.append(time.perf_counter() - t)

        return run

    async def atimed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return await acheck(*a, **k)
        finally:
            spent.append(time.perf_counter() - t)

    guard.check, guard.check_now, guard.acheck = timed(check), timed(check_now), atimed  # type: ignore[method-assign]
    try:
        block(graph, runs, mode)
    finally:
        del guard.check, guard.check_now, guard.acheck
    return statistics.median(spent) * 1e6, statistics.mean(spent) * 1e6


def otel_row(graph: Any, mw: MeteredMiddleware, mode: str, off_us: float) -> None:
    """AZTP's own CPU per tool call with OpenTelemetry on (``aztp_agents.telemetry``), beside
    the same measure with it off, and the telemetry worker thread's CPU per decision."""
    os.environ["OTEL_SDK_DISABLED"] = "false"
    from _otel import providers

    from aztp_agents import telemetry

    tracer_provider, meter_provider, exporter, _ = providers()
    telemetry.enable(tracer_provider, meter_provider)
    try:
        on_us, _ = own_cpu_us(graph, mw, mode)
        telemetry.flush()
        done = telemetry.stats()
    finally:
        telemetry.disable()
    worker_us = done["worker_cpu_seconds"] / max(1, done["recorded"]) * 1e6
    print(
        f"  with OpenTelemetry: middleware {on_us:.1f} us per tool call (off {off_us:.1f} us), "
        f"+ telemetry worker {worker_us:.1f} us per decision ({exporter.spans} spans)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200, help="tool calls per block (>= 200)")
    parser.add_argument("--modes", default="sync,async")
    parser.add_argument("--attribution", action="store_true", help="also run the attribution rows")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument(
        "--no-freeze", action="store_true", help="leave the start-up heap to the collector"
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="also AZTP's own CPU with OpenTelemetry on (needs the otel extra)",
    )
    args = parser.parse_args(argv)
    global FREEZE
    FREEZE = not args.no_freeze
    if args.calls < 200:
        parser.error("--calls must be >= 200")

    modes = [m for m in args.modes.split(",") if m]
    missed = False
    with tempfile.TemporaryDirectory(prefix="aztp-bench-") as tmp:
        graphs, real_mw, (metered_graph, metered_mw) = build(Path(tmp), args.attribution)
        per_block = -(-args.calls // PER_RUN) * PER_RUN
        print(
            f"LangChain create_agent, scripted model, {per_block} tool calls per block, "
            f"{args.rounds} interleaved ABBA rounds per row; median of paired ratios B/A"
        )
        for mode in modes:
            results = measure(graphs, args.rounds, args.calls, mode)
            real = results["AztpMiddleware"]
            print(f"\n[{'invoke' if mode == 'sync' else 'ainvoke'}]  per tool call, CPU (wall)")
            print(f"  {'variant B':<20} {'A unguarded':>20} {'B':>20} {'overhead':>20}")
            for name, r in results.items():
                print(
                    f"  {name:<20} {r['a'] * 1e3:>6.3f} ({r['wa'] * 1e3:.3f}) ms "
                    f"{r['b'] * 1e3:>6.3f} ({r['wb'] * 1e3:.3f}) ms "
                    f"{(r['ratio'] - 1) * 100:>+7.2f} % ({(r['wratio'] - 1) * 100:+.2f} %)"
                )
            noop = measure(
                graphs,
                args.rounds,
                args.calls,
                mode,
                base_name="no-op middleware",
                only=("AztpMiddleware",),
            )["AztpMiddleware"]
            layer = results["no-op middleware"]["ratio"]
            # What AZTP adds (decision + audit record, adapter included) beyond LangChain's own
            # cost of having a middleware at all, as a share of an unguarded tool call.
            whole = tuple(1 + (r - 1) * layer for r in median_ci(noop["ratios"]))
            unguarded_us = results["AztpMiddleware"]["a"] * 1e6
            mw_us, writer_us = own_cpu_us(metered_graph, metered_mw, mode)
            own_share = (mw_us + writer_us) / unguarded_us
            ok, word = verdict(own_share, whole, TARGET)  # type: ignore[arg-type]
            missed |= not ok
            print(
                f"  whole middleware vs unguarded: median paired ratio {real['ratio']:.4f} "
                f"({(real['ratio'] - 1) * 100:+.2f} % CPU, {(real['wratio'] - 1) * 100:+.2f} % wall); "
                f"LangChain's own middleware layer alone: {(layer - 1) * 100:+.2f} %"
            )
            print(
                f"  AZTP vs a no-op middleware, paired: {(whole[0] - 1) * 100:+.2f} % of an unguarded tool call, "
                f"95 % interval [{(whole[1] - 1) * 100:+.2f} %, {(whole[2] - 1) * 100:+.2f} %]"
            )
            print(
                f"  AZTP's own CPU: middleware {mw_us:.1f} us + audit writer {writer_us:.1f} us/record = "
                f"{mw_us + writer_us:.1f} us per tool call = {own_share * 100:.2f} % of an unguarded tool call "
                f"({unguarded_us:.0f} us CPU)"
            )
            if args.otel:
                otel_row(metered_graph, metered_mw, mode, mw_us)
            med, mean = decision_latency(graphs["AztpMiddleware"], real_mw, mode)
            print(
                f"  guard decision in situ (wall): median {med:.1f} us, mean {mean:.1f} us per call"
            )
            print(
                f"  target: AZTP (decision + audit record) adds <= {TARGET * 100:.0f} % to an unguarded tool call: "
                f"{word} (own CPU {own_share * 100:.2f} %; whole runs {(whole[0] - 1) * 100:+.2f} %, "
                f"interval low end {(whole[1] - 1) * 100:+.2f} %)"
            )
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
