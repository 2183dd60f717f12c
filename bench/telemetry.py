"""What OpenTelemetry costs a secured CrewAI tool call: AZTP's own CPU per call, telemetry off
and on, in full ``Crew.kickoff()`` runs with a scripted LLM (same crew, same calls).

* off -- ``aztp_agents.telemetry`` never enabled (the default): the guard has no listener,
  its fast path is the one ``bench/crewai_guard.py`` measures;
* on  -- ``telemetry.enable()`` with an SDK tracer provider (a synchronous span processor and
  an exporter that drops spans, so a span's whole cost is on the telemetry worker thread and
  counted; a batch processor would move the export to a thread of its own) and an SDK meter
  provider (counter and histogram recorded per decision; collection is the reader's
  business, outside the call).

AZTP's own CPU is the thread CPU time spent inside its ``before_tool_call`` hook (decision,
audit record queued, listeners: with telemetry on, the decision is queued for the telemetry
worker) per tool call (``_paired.CpuMeter``), plus the telemetry worker thread's CPU per
decision (spans and metrics are made there) and the audit writer's CPU per record (the same
on both sides). Off and on run
in alternating rounds; printed are the medians. Then ``Guard.check`` alone, warm, both ways.

Run: .venv/bin/python bench/telemetry.py [--rounds 6] [--calls 200]
"""

from __future__ import annotations

import os

# CrewAI's own telemetry stays off; the OpenTelemetry SDK must be on for the "on" side.
for _key in ("CREWAI_DISABLE_TELEMETRY", "CREWAI_DISABLE_TRACKING"):
    os.environ.setdefault(_key, "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ["OTEL_SDK_DISABLED"] = "false"

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from _otel import providers  # noqa: E402
from _paired import CpuMeter, writer_us_per_record  # noqa: E402
from aztp_crewai import guard_of, secure_crew  # noqa: E402
from crewai_guard import AztpSwitch, build_crew, timed_run  # noqa: E402

from aztp_agents import Aztp, telemetry  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="off/on rounds (default 6)")
    parser.add_argument("--calls", type=int, default=200, help="tool calls per run (default 200)")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="aztp-bench-otel-")
    client = Aztp(home=home)
    store = client.backend.authority.store  # type: ignore[attr-defined]
    crew, tool = build_crew(args.calls, native=False)
    secure_crew(crew, flow="bench", client=client)
    switch = AztpSwitch(crew)
    tracer_provider, meter_provider, exporter, reader = providers()

    for _ in range(2):  # warm-up, both ways
        timed_run(crew)
        telemetry.enable(tracer_provider, meter_provider)
        timed_run(crew)
        telemetry.disable()
    gc.collect()
    gc.freeze()

    per_call: dict[str, list[float]] = {"off": [], "on": []}
    worker: list[float] = []  # the telemetry worker thread's CPU per decision, on side
    writer_before = store.audit_writer_stats()
    runs = 0
    for i in range(args.rounds):
        for side in ("off", "on") if i % 2 == 0 else ("on", "off"):
            if side == "on":
                telemetry.enable(tracer_provider, meter_provider)
            meter = CpuMeter()
            switch.metered(meter)
            try:
                timed_run(crew)
                if side == "on":
                    telemetry.flush()
                    done = telemetry.stats()
                    worker.append(done["worker_cpu_seconds"] / done["recorded"] * 1e6)
            finally:
                switch.unmetered()
                telemetry.disable()
            per_call[side].append(sum(meter.spent) / args.calls * 1e6)
            runs += 1
    writer_us = writer_us_per_record(store, writer_before)

    guard = guard_of(crew)
    agent_id = next(i for i in guard.identities if "/agent/" in i)
    tool_id = next(i for i in guard.identities if "/tool/" in i)
    n = 5000

    def check_us() -> float:
        start = time.thread_time()
        for _ in range(n):
            guard.check(agent_id, tool_id, "lookup")
        return (time.thread_time() - start) / n * 1e6

    check_off = statistics.median(check_us() for _ in range(3))
    telemetry.enable(tracer_provider, meter_provider)
    check_on = statistics.median(check_us() for _ in range(3))
    telemetry.disable()

    off, on = statistics.median(per_call["off"]), statistics.median(per_call["on"])
    worker_us = statistics.median(worker)
    counted = sum(
        p.value
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "aztp.decisions"
        for p in m.data.data_points
    )
    print(
        f"telemetry: full Crew.kickoff() runs, scripted LLM, {args.rounds} rounds of off/on runs "
        f"x {args.calls} tool calls"
    )
    print(
        f"  AZTP's own CPU per tool call (its hook), median   off {off:6.1f} us   on {on:6.1f} us"
        f"   (+{on - off:.1f} us with OpenTelemetry)"
    )
    print(
        f"  telemetry worker thread CPU per decision (on)     {worker_us:6.1f} us   "
        f"=> AZTP's CPU per tool call, all threads: off {off + writer_us:.1f} us, "
        f"on {on + writer_us + worker_us:.1f} us"
    )
    print(f"  audit writer CPU per record (both sides)          {writer_us:6.1f} us")
    print(
        f"  Guard.check alone, warm (thread CPU)              off {check_off:6.2f} us   "
        f"on {check_on:6.2f} us"
    )
    print(
        f"  recorded with telemetry on: {exporter.spans} spans, {int(counted)} counted "
        f"decisions; with it off: none (the guard has no listener: {guard.listeners == []})"
    )
    assert tool.executions == (runs + 4) * args.calls, (tool.executions, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
