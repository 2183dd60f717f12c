"""Server throughput: ``POST aztp/verify-identity`` on our server vs a bare Starlette
hello-world, same machine, same run, same load generator; plus one loopback HTTP round trip.

Both servers are uvicorn subprocesses on 127.0.0.1 with the same settings (one worker, the
same event loop and HTTP parser, no access log). The load generator is one asyncio process
with ``--concurrency`` keep-alive HTTP/1.1 connections sending a fixed number of identical
requests (the verify request, with its API key and JSON body) to each server in turn.

Run: ``.venv/bin/python bench/server.py [--requests N] [--concurrency C]``.
Verification is measured globally and with ``identityFlowId`` (the lower rate counts).
Target: our verify-identity throughput >= 0.5x the hello-world's. Exits 1 below target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aztp_agents import Aztp, Guard  # noqa: E402
from aztp_agents.authority import Authority  # noqa: E402
from aztp_agents.server.testing import free_port, live_server  # noqa: E402
from aztp_agents.store import Store  # noqa: E402

TARGET = 0.5
TD = "bench.example"
AGENT = f"aztp://{TD}/workload/production/node/bench-agent"

HELLO = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def hello(request):
    return JSONResponse({"hello": "world"})

app = Starlette(routes=[Route("/{path:path}", hello, methods=["GET", "POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


# ----------------------------------------------------------------------------- load generator


def _request(path: str, host: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    payload = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {payload[:200]!r}")
    return payload


async def load(
    port: int, request: bytes, total: int, concurrency: int, expect: bytes
) -> dict[str, float]:
    """Send ``total`` requests over ``concurrency`` keep-alive connections; rate and latency."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    for reader, writer in conns:  # warm-up, and check the answer once per connection
        for _ in range(20):
            payload = await _exchange(reader, writer, request)
        if expect not in payload:
            raise RuntimeError(f"unexpected answer: {payload[:300]!r}")
    remaining = total
    latencies: list[float] = []

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in conns))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


async def raw_round_trip_us(port: int, request: bytes, n: int = 2000) -> float:
    """Median of ``n`` sequential request/answer exchanges on one keep-alive socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(200):
        await _exchange(reader, writer, request)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await _exchange(reader, writer, request)
        samples.append(time.perf_counter_ns() - t0)
    writer.close()
    return statistics.median(samples) / 1000


def round_trip_us(url: str, n: int = 2000) -> float:
    """Median of ``n`` sequential keep-alive GETs to the hello-world (one loopback HTTP round trip)."""
    samples = []
    with httpx.Client(base_url=url) as c:
        for _ in range(200):
            c.get("/")
        for _ in range(n):
            t0 = time.perf_counter_ns()
            c.get("/")
            samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("hello-world server exited")
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("hello-world server did not start")


GUARD_TARGET = 0.05


def remote_guard_us(url: str, key: str, n: int = 20_000) -> float:
    """Median per-decision time of a warm Guard whose client talks to the server (the
    decision itself is local, on the replicated state that follows the change feed)."""
    client = Aztp(api_key=key, base_url=url)
    try:
        guard = Guard(flow="bench-guard", client=client)
        enrollment = guard.enroll("bench-guard-agent", ["search"])
        agent, tool = enrollment.agent_id, enrollment.tools["search"]
        assert guard.check(agent, tool, "search").allowed
        rounds = []
        for _ in range(5):
            start = time.perf_counter_ns()
            for _ in range(n):
                guard.check(agent, tool, "search")
            rounds.append((time.perf_counter_ns() - start) / n / 1000)
        assert guard.check(agent, tool, "search").allowed
        return statistics.median(rounds)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=4000, help="requests per server and round (default 4000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="keep-alive connections (default 16)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; the best is kept (default 3)"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    with tempfile.TemporaryDirectory(prefix="aztp-bench-") as tmp:
        home = Path(tmp)
        store = Store.open_sqlite(home / "aztp.db")
        authority = Authority(store)
        principal, key = authority.create_org("bench", TD)
        authority.secure_connect(principal, "bench-agent", make_key=False)
        flow_id = authority.create_flow(principal, "bench-flow")["_id"]
        authority.add_identity_to_flow(principal, flow_id, AGENT)
        store.close()
        assert key is not None

        hello_port = free_port()
        hello = subprocess.Popen(
            [sys.executable, "-c", HELLO, str(hello_port)], stdin=subprocess.DEVNULL
        )
        try:
            hello_url = f"http://127.0.0.1:{hello_port}"
            _wait(hello_url, hello)
            with live_server(home) as srv:
                port = int(srv.url.rsplit(":", 1)[1])
                body = json.dumps({"aztpId": AGENT}).encode()
                ours_req = _request(
                    "/aztp/verify-identity", f"127.0.0.1:{port}", body, {"api_access_key": key}
                )
                hello_req = _request(
                    "/aztp/verify-identity",
                    f"127.0.0.1:{hello_port}",
                    body,
                    {"api_access_key": key},
                )
                flow_body = json.dumps({"aztpId": AGENT, "identityFlowId": flow_id}).encode()
                flow_req = _request(
                    "/aztp/verify-identity", f"127.0.0.1:{port}", flow_body, {"api_access_key": key}
                )
                best: dict[str, dict[str, float]] = {}
                for _ in range(args.rounds):
                    for name, p, req, expect in (
                        ("hello", hello_port, hello_req, b'"hello"'),
                        ("ours", port, ours_req, b'"valid":true'),
                        ("flow", port, flow_req, b'"valid":true'),
                    ):
                        res = asyncio.run(load(p, req, args.requests, args.concurrency, expect))
                        if name not in best or res["rps"] > best[name]["rps"]:
                            best[name] = res
                rtt = round_trip_us(hello_url)
                raw_rtt = asyncio.run(raw_round_trip_us(hello_port, hello_req))
                guard_us = remote_guard_us(srv.url, key)
                log = srv.log()
        finally:
            hello.terminate()
            hello.wait(10)

    ratio = min(best["ours"]["rps"], best["flow"]["rps"]) / best["hello"]["rps"]
    print(
        f"server bench: {args.requests} requests x {args.rounds} rounds, {args.concurrency} connections, "
        f"uvicorn 1 worker each, {os.cpu_count()} CPUs"
    )
    print(f"{'server':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, label in (
        ("hello", "starlette hello-world"),
        ("ours", "aztp-agents POST verify-identity"),
        ("flow", "  same, with identityFlowId"),
    ):
        r = best[name]
        print(f"{label:34} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    print(
        f"throughput ratio ours/hello (lower of the two verify rows) = {ratio:.2f}x (target >= {TARGET}x): {'OK' if ratio >= TARGET else 'BELOW TARGET'}"
    )
    print(
        f"loopback HTTP round trip to the hello-world, median: raw socket {raw_rtt:.1f} us, "
        f"httpx.Client {rtt:.1f} us"
    )
    guard_ratio = guard_us / rtt
    print(
        f"warm remote guard decision (Guard on Aztp(base_url=...), replicated state): {guard_us:.2f} us "
        f"= {guard_ratio:.3f}x one loopback HTTP round trip with an HTTP client (target <= {GUARD_TARGET}x): "
        f"{'OK' if guard_ratio <= GUARD_TARGET else 'ABOVE TARGET'}; "
        f"= {guard_us / raw_rtt:.3f}x a bare socket exchange (no HTTP client at all)"
    )
    if "Traceback" in log:
        print(log, file=sys.stderr)
        return 1
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
