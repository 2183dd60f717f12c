"""Hosting at scale: what a decision costs at a million identities, right after a write, with
another tenant writing; and what securing a crew per request costs. Side by side, one run.

The store is seeded the way the product writes it: ``identity import`` (one transaction per
10,000 names, each one audit entry and one change-log entry), every identity a member of the
flow. The decisions are the guard's full path (``Guard.check``: change check, state, rules or
memo, the Decision, the queued audit record), as in ``bench/decisions.py``.

Rows (each prints its target and MET / NOT MET):

* steady decision at N identities vs at 1,000 (one organization): <= 1.5x;
* first decision after an unrelated write at N identities vs steady: <= 10x — the write made
  through this process (applied when it commits) and through another enforcement point on
  the same store (this one reads the subject signals of the call's agent, tool and flow; for
  comparison, also a write that involves the call, which it reads from the log);
* first decision after a write in another organization vs steady: <= 2x;
* memory of the decision state per identity (bytes allocated loading it / N, tracemalloc):
  <= 1 KB;
* ``secure_crew`` on a known crew shape (2 agents, 3 tools) vs one ES256 JWT-SVID
  validation: <= 10x; a first-time crew of 5 identities vs one unguarded CrewAI tool call: <= 2x;
* a whole 60-tool-call run including securing a fresh crew object of a known shape, guarded vs
  unguarded, median of paired runs (process CPU time): <= +3 % (CrewAI), <= +5 % (LangChain,
  a new ``create_agent`` graph with a new ``AztpMiddleware`` per run).

* remote followers, against a real ``aztp-agents serve`` process on the seeded store: bytes
  a follower's change feed carries for one revocation at N identities: <= 2 KB; revoke ->
  first denial at a remote follower (a Guard on a ``RemoteBackend``), p99: <= 100 ms.

``bench/propagation.py`` measures the same revoke -> denial on a small store, and across two
replicas on PostgreSQL.

Run: .venv/bin/python bench/scale.py [--identities 1000000] [--pairs 15]
"""

from __future__ import annotations

import os

for _key in ("CREWAI_DISABLE_TELEMETRY", "CREWAI_DISABLE_TRACKING"):
    os.environ.setdefault(_key, "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import argparse  # noqa: E402
import gc  # noqa: E402
import mmap  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _paired import median_ci, pct  # noqa: E402

from aztp_agents import Aztp  # noqa: E402
from aztp_agents import credentials as cred  # noqa: E402
from aztp_agents.guard import Guard  # noqa: E402

ROWS: list[tuple[str, str, str, bool]] = []
read_done = struct.Struct("=Q").unpack_from
#: How long each write by another process took, seen from here (for the reference row).
WRITE_S: list[float] = []


def row(label: str, value: str, target: str, met: bool) -> None:
    ROWS.append((label, value, target, met))
    print(f"{label:<66}{value:>16}   target {target:<10} {'MET' if met else 'NOT MET'}", flush=True)


def per_op_us(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


class Tenant:
    """One organization's crew on a shared embedded store: ``size`` identities in the flow."""

    def __init__(self, home: Path, org: str, size: int, api_key: str | None = None) -> None:
        self.client = Aztp(home=home, trust_domain=f"{org}.bench", api_key=api_key)
        self.authority = self.client.backend.authority  # type: ignore[attr-defined]
        self.principal = self.client.backend.principal  # type: ignore[attr-defined]
        self.guard = Guard(flow=f"{org}-flow", client=self.client)
        enrollment = self.guard.enroll("bench-agent", ["search"])
        self.agent, self.tool = enrollment.agent_id, enrollment.tools["search"]
        started = time.perf_counter()
        if size > 2:
            self.authority.import_identities(
                self.principal,
                (f"member-{i}" for i in range(size - 2)),
                flow_id=self.guard.flow_id,
            )
        self.seeded_s = time.perf_counter() - started
        self.unrelated = f"aztp://{org}.bench/workload/production/node/member-0"

    def decide(self) -> None:
        decision = self.guard.check(self.agent, self.tool, "search", None)
        assert decision.allowed, decision

    def steady_us(self, n: int = 20_000) -> float:
        self.decide()
        return per_op_us(self.decide, n)

    def after_write_us(self, write: Callable[[int], None], rounds: int = 200) -> float:
        """Median time of the first decision after ``write(i)``."""
        times = []
        for i in range(rounds):
            write(i)
            start = time.perf_counter_ns()
            self.decide()
            times.append((time.perf_counter_ns() - start) / 1000)
        return statistics.median(times)

    def toggle_unrelated(self, by: Any) -> Callable[[int], None]:
        """A write about an unrelated identity of this organization: a policy attached to it
        and detached in turn (through the authority ``by``). (Not a flow revocation: that
        operation answers with the whole flow, every member listed.)"""
        p, who = self.principal, self.unrelated
        code = by.create_policy(
            p, "unrelated", {"Statement": [{"Effect": "Allow", "Action": "*"}]}
        )["code"]

        def write(i: int) -> None:
            if i % 2 == 0:
                by.attach_policy(p, who, code)
            else:
                by.detach_policy(p, who, code)

        return write

    def toggle_elsewhere(
        self, noop: bool = False, who: str | None = None
    ) -> tuple[Callable[[int], None], Callable[[], None]]:
        """:meth:`toggle_unrelated` by another process on the same store (``bench/_writer.py``):
        this process learns of its writes only from the store, as a neighbour host would, and
        its CPU caches are not the writer's. Returns the write and a stopper. ``noop``: the
        same round trip to that process without a write (what waiting for it costs alone).
        ``who``: the identity the policy is toggled on (default: an unrelated one)."""
        store = self.authority.store
        done_path = Path(tempfile.mkstemp(prefix="aztp-bench-done-")[1])
        done_path.write_bytes(bytes(8))
        done_file = done_path.open("r+b")
        done = mmap.mmap(done_file.fileno(), 8)
        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("_writer.py")),
                str(store.path),
                self.principal.org_id,
                self.principal.user_id,
                who or self.unrelated,
                str(done_path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "ready"

        sent = [0]

        def write(i: int) -> None:
            if noop:
                took = statistics.median(WRITE_S) if WRITE_S else 0.002
                command = f"noop {took:.6f}"
            else:
                command = "attach" if i % 2 == 0 else "detach"
            started = time.perf_counter()
            sent[0] += 1
            child.stdin.write(command + "\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            # Wait without sleeping (a process that sleeps on a pipe pays its core's wake-up,
            # ~10-20 us of cold caches, in its next decision, write or not), yielding the
            # core each round: the writer may need it (2 cores, shared).
            while read_done(done, 0)[0] != sent[0]:
                os.sched_yield()
            if not noop:
                WRITE_S.append(time.perf_counter() - started)

        def stop() -> None:
            child.stdin.close()  # type: ignore[union-attr]
            child.wait(timeout=30)
            done.close()
            done_file.close()
            done_path.unlink()

        return write, stop


def interleaved(
    a: Callable[[], float], b: Callable[[], float], rounds: int = 7
) -> tuple[float, float, float]:
    """``(median a, median b, median of the paired ratios a/b)`` over interleaved rounds."""
    xs, ys, ratios = [], [], []
    for i in range(rounds):
        x, y = (a(), b()) if i % 2 == 0 else tuple(reversed((b(), a())))
        xs.append(x)
        ys.append(y)
        ratios.append(x / y)
    return statistics.median(xs), statistics.median(ys), statistics.median(ratios)


def decisions_at_scale(n: int) -> None:
    from aztp_agents.authority.decision_state import load_state

    root = Path(tempfile.mkdtemp(prefix="aztp-bench-scale-"))
    small = Tenant(root / "small", "small", 1_000)
    print(f"seeding {n:,} identities with `identity import` ...", flush=True)
    big = Tenant(root / "big", "big", n)
    print(f"  seeded in {big.seeded_s:.0f} s", flush=True)
    # the decision state's memory: one more copy of it, loaded as the first decision would
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    copy = load_state(big.authority.store, big.principal.org_id)
    load_s = time.perf_counter() - started
    per_identity = tracemalloc.get_traced_memory()[0] / n
    tracemalloc.stop()
    del copy
    gc.collect()
    steady, small_steady, ratio = interleaved(big.steady_us, small.steady_us)
    row(
        f"steady decision at {n:,} identities vs at 1,000",
        f"{steady:.2f} / {small_steady:.2f} us = {ratio:.2f}x",
        "<= 1.5x",
        ratio <= 1.5,
    )
    # another enforcement point on the same store, in another process: this one learns of
    # its writes only from the store (the change counter, the organization's change signal,
    # the subject signals, then the log), as a neighbouring host would
    _, key = big.authority.create_org("neighbour", "neighbour.bench")
    neighbour = Tenant(root / "big", "neighbour", 3, api_key=key)
    neighbour.decide()
    elsewhere, stop_elsewhere = big.toggle_elsewhere()
    other_org, stop_other_org = neighbour.toggle_elsewhere()
    cases = [
        ("an unrelated write here", big.toggle_unrelated(big.authority), 10),
        ("an unrelated write by another process", elsewhere, 10),
        ("a write in another organization (another process)", other_org, 2),
    ]
    for label, write, target in cases:
        after, steady_now, ratio = interleaved(
            lambda write=write: big.after_write_us(write, rounds=60), big.steady_us, rounds=5
        )
        row(
            f"first decision after {label} ({n:,} ids) vs steady",
            f"{after:.1f} / {steady_now:.2f} us = {ratio:.1f}x",
            f"<= {target}x",
            ratio <= target,
        )
    row(
        f"decision state memory per identity (allocated; loaded in {load_s:.1f} s)",
        f"{per_identity:.0f} bytes",
        "<= 1 KB",
        per_identity <= 1024,
    )
    # for reference: the same wait for the other process (as long as its writes take),
    # without a write: what the wait alone costs the next decision; and what a write that
    # involves the call costs it (the log read and apply): the same policy toggle, on the
    # calling agent itself
    roundtrip, stop_roundtrip = big.toggle_elsewhere(noop=True)
    involving, stop_involving = big.toggle_elsewhere(who=big.agent)
    for label, write in (
        ("reference: first decision after waiting as long as a write, without one", roundtrip),
        (
            "for comparison: first decision after a write by another process that involves "
            "the call's agent",
            involving,
        ),
    ):
        after, steady_now, ratio = interleaved(
            lambda write=write: big.after_write_us(write, rounds=60), big.steady_us, rounds=5
        )
        print(f"  ({label}: {after:.1f} / {steady_now:.2f} us = {ratio:.1f}x)", flush=True)
    for stop in (stop_elsewhere, stop_other_org, stop_roundtrip, stop_involving):
        stop()
    for tenant in (small, big, neighbour):
        tenant.authority.store.flush_audit(timeout=120)
    remote_followers(root / "big", big, n)


def remote_followers(home: Path, tenant: Tenant, n: int, cycles: int = 100) -> None:
    """A real server on the seeded store; a follower here; revocations made on the store."""
    import httpx

    from aztp_agents.remote import RemoteBackend
    from aztp_agents.server.testing import live_server
    from aztp_agents.store import change_log

    p, flows = tenant.principal, tenant.authority.flows
    _, key = tenant.authority.tenants.create_api_key(p.org_id, p.user_id)
    with live_server(home, startup_timeout=120) as server:
        backend = RemoteBackend(server.base_url, api_key=key, stale_after=30)
        guard = Guard("follower-flow", client=Aztp(backend=backend))
        try:
            enrolled = guard.enroll("follower-agent", ["follower-tool"])
            agent, tool = enrolled.agent_id, enrolled.tools["follower-tool"]
            started = time.perf_counter()
            if not backend.start(wait=600):
                raise SystemExit("the remote follower did not load the state")
            print(
                f"  remote follower: first full load at {n:,} identities in "
                f"{time.perf_counter() - started:.1f} s (first start only)",
                flush=True,
            )
            assert guard.check(agent, tool, "follower-tool").allowed

            # bytes: a raw follower of the feed, resumed at the head, for one revocation
            with tenant.authority.store.read() as conn:
                head = change_log.heads(conn, [p.org_id])[p.org_id]
            sizes = []
            with (
                httpx.Client(timeout=httpx.Timeout(30, read=30)) as c,
                c.stream(
                    "GET",
                    f"{server.base_url}/v1/state/changes",
                    headers={"api_access_key": key, "Last-Event-ID": str(head)},
                ) as stream,
            ):
                lines = stream.iter_lines()
                for line in lines:  # live once the first revision event was sent
                    if line == "event: revision":
                        break
                for i in range(5):
                    op = flows.revoke_flow_identity if i % 2 == 0 else flows.reinstate_flow_identity
                    op(p, tool, guard.flow_id)
                    size, got_changes = 0, False
                    for line in lines:
                        size += len(line.encode()) + 1
                        got_changes = got_changes or line == "event: changes"
                        if got_changes and line.startswith("event: revision"):
                            break
                    for line in lines:  # the rest of the revision event
                        size += len(line.encode()) + 1
                        if line == "":
                            break
                    sizes.append(size)
            if len(sizes) % 2:
                flows.reinstate_flow_identity(p, tool, guard.flow_id)
            worst = max(sizes)
            row(
                f"bytes a remote follower receives for one revocation ({n:,} ids)",
                f"{worst:,} bytes",
                "<= 2 KB",
                worst <= 2048,
            )

            # revoke -> first denial at the remote follower
            delays = []

            def spin(allowed: bool) -> float:
                limit = time.monotonic() + 10
                while guard.check(agent, tool, "follower-tool").allowed != allowed:
                    if time.monotonic() > limit:
                        raise SystemExit("the follower did not see the change within 10 s")
                    time.sleep(0.0002)
                return time.perf_counter()

            spin(True)
            for _ in range(cycles):
                flows.revoke_flow_identity(p, tool, guard.flow_id)
                acked = time.perf_counter()
                delays.append((spin(False) - acked) * 1000)
                flows.reinstate_flow_identity(p, tool, guard.flow_id)
                spin(True)
            delays.sort()
            p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
            row(
                f"revoke -> first denial at a remote follower, p99 ({n:,} ids)",
                f"{p99:.1f} ms (p50 {statistics.median(delays):.1f})",
                "<= 100 ms",
                p99 <= 100,
            )
            print(f"  follower: {backend.stats}", flush=True)
        finally:
            guard.client.close()


# --- securing per request ---------------------------------------------------------------


def crewai_parts() -> tuple[Any, Any]:
    from aztp_crewai import _hooks, secure_crew
    from aztp_crewai.testing import scripted_crew_llm
    from crewai import Agent, Crew, Task
    from crewai.hooks.dispatch import InterceptionPoint, get_global_hook_list
    from crewai.tools import BaseTool

    class Tool(BaseTool):
        name: str = "search"
        description: str = "A tool."

        def _run(self, query: str = "") -> str:
            return f"{self.name}: {query}"

    def build(calls: int = 2, prefix: str = "") -> Any:
        """A new crew object: 2 agents, 3 tools; ``calls`` tool calls in all."""
        tools = [Tool(name=f"{prefix}{n}", description=f"The {n} tool.") for n in "abc"]
        first = calls - calls // 2
        researcher = Agent(
            role=f"{prefix}Researcher",
            goal="g",
            backstory="b",
            tools=tools[:2],
            llm=scripted_crew_llm(
                *[(tools[i % 2].name, {"query": f"q{i}"}) for i in range(first)], final="ok"
            ),
            max_iter=calls + 5,
        )
        writer = Agent(
            role=f"{prefix}Writer",
            goal="g",
            backstory="b",
            tools=tools[2:],
            llm=scripted_crew_llm(
                *[(tools[2].name, {"query": f"q{i}"}) for i in range(calls // 2)], final="ok"
            ),
            max_iter=calls + 5,
        )
        return Crew(
            agents=[researcher, writer],
            tasks=[
                Task(description="research", expected_output="x", agent=researcher),
                Task(description="write", expected_output="x", agent=writer),
            ],
        )

    def hooks(on: bool) -> None:
        points = (
            (InterceptionPoint.PRE_TOOL_CALL, _hooks.before_tool_call),
            (InterceptionPoint.POST_TOOL_CALL, _hooks.after_tool_call),
        )
        for point, hook in points:
            hooks_list = get_global_hook_list(point)
            if on and hook not in hooks_list:
                hooks_list.append(hook)
            if not on and hook in hooks_list:
                hooks_list.remove(hook)

    def secure(crew: Any, client: Aztp, flow: str = "bench") -> None:
        secure_crew(crew, flow=flow, client=client)

    return build, (secure, hooks, _hooks)


def securing(pairs: int) -> None:
    build, (secure, hooks, _hooks) = crewai_parts()
    client = Aztp(home=Path(tempfile.mkdtemp(prefix="aztp-bench-secure-")))
    ca = cred.CertificateAuthority.generate("bench.test")
    bundle = cred.TrustBundle.from_authorities("bench.test", [ca])
    token = ca.mint_jwt_svid("spiffe://bench.test/workload/production/node/a", "bench", ttl=3600)
    jwt_us = statistics.median(
        per_op_us(lambda: cred.validate_jwt_svid(token, bundle, "bench"), 500) for _ in range(5)
    )

    # secure_crew on a known shape: new crew objects, built beforehand (not timed)
    secure(build(), client)
    crews = [build() for _ in range(200)]
    start = time.perf_counter_ns()
    for crew in crews:
        secure(crew, client)
    known_us = (time.perf_counter_ns() - start) / len(crews) / 1000
    row(
        "secure_crew, known shape (2 agents, 3 tools) vs one JWT-SVID check",
        f"{known_us:.0f} / {jwt_us:.0f} us = {known_us / jwt_us:.1f}x",
        "<= 10x",
        known_us / jwt_us <= 10,
    )

    # first time: 5 new identities (new names each time) vs one unguarded tool call
    firsts = []
    for i in range(10):
        crew = build(prefix=f"n{i}-")
        start = time.perf_counter_ns()
        secure(crew, client, flow=f"first-{i}")
        firsts.append((time.perf_counter_ns() - start) / 1000)
    first_us = statistics.median(firsts)
    hooks(False)
    calls = 60
    unguarded = []
    for _ in range(5):
        crew = build(calls)
        start = time.process_time()
        crew.kickoff()
        unguarded.append((time.process_time() - start) / calls * 1e6)
    call_us = statistics.median(unguarded)
    row(
        "secure_crew, first time (5 identities) vs one unguarded CrewAI call",
        f"{first_us / 1000:.1f} ms = {first_us / call_us:.1f}x",
        "<= 2x",
        first_us / call_us <= 2,
    )

    # whole 60-call runs, each with a fresh crew object of the known shape
    gc.collect()
    ratios = []
    for i in range(pairs):
        sides = ("A", "B") if i % 2 == 0 else ("B", "A")
        spent = {}
        for side in sides:
            crew = build(calls)
            hooks(side == "B")
            start = time.process_time()
            if side == "B":
                secure(crew, client)
            crew.kickoff()
            spent[side] = time.process_time() - start
        ratios.append(spent["B"] / spent["A"])
    med, low, high = median_ci(ratios)
    row(
        "CrewAI 60-call run incl. securing a fresh crew, guarded/unguarded",
        f"{pct(med)} [{pct(low)}, {pct(high)}]",
        "<= +3 %",
        med <= 1.03,
    )
    hooks(True)
    _hooks.install()
    client.backend.authority.store.flush_audit(timeout=60)  # type: ignore[attr-defined]
    langchain_runs(client, pairs)


def langchain_runs(client: Aztp, pairs: int) -> None:
    from aztp_langchain import AztpMiddleware
    from aztp_langchain.testing import ScriptedChatModel, call
    from langchain.agents import create_agent
    from langchain_core.tools import StructuredTool

    def search(query: str) -> str:
        """Search."""
        return f"found {query}"

    def fetch(query: str) -> str:
        """Fetch."""
        return f"fetched {query}"

    tools = [StructuredTool.from_function(search), StructuredTool.from_function(fetch)]
    calls = 60

    def one(guarded: bool) -> float:
        model = ScriptedChatModel(
            script=[[call(("search", "fetch")[i % 2], query=f"q{i}")] for i in range(calls)]
            + ["done"]
        )
        start = time.process_time()
        middleware = (
            [AztpMiddleware(flow="bench-lc", agent_name="researcher", client=client)]
            if guarded
            else []
        )
        create_agent(model, tools, middleware=middleware).invoke(
            {"messages": [("user", "go")]}, {"recursion_limit": 4 * calls + 10}
        )
        return time.process_time() - start

    one(True)
    one(False)
    ratios = []
    for i in range(pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        spent = {g: one(g) for g in order}
        ratios.append(spent[True] / spent[False])
    med, low, high = median_ci(ratios)
    row(
        "LangChain 60-call run, new graph + new AztpMiddleware, guarded/unguarded",
        f"{pct(med)} [{pct(low)}, {pct(high)}]",
        "<= +5 %",
        med <= 1.05,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=15, help="paired whole runs per framework")
    parser.add_argument("--skip-securing", action="store_true")
    args = parser.parse_args()
    decisions_at_scale(args.identities)
    if not args.skip_securing:
        securing(args.pairs)
    met = sum(1 for r in ROWS if r[3])
    print(f"\n{met} of {len(ROWS)} targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
