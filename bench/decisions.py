"""Warm tool-call decision vs one ES256 JWT-SVID validation, measured side by side.

The decision is the full enforcement-point path of the embedded authority: the cross-process
change check (the store's shared change counter; ``PRAGMA data_version`` where that is
unavailable), the snapshot lookup, agent + tool + flow +
link + policy checks, the Decision value and the queued audit record.

Run: .venv/bin/python bench/decisions.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aztp_agents import Aztp
from aztp_agents import credentials as cred
from aztp_agents.guard import Guard

TARGET = 0.1
N = 20_000
ROUNDS = 7


def per_op_us(fn, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="aztp-bench-"))
    client = Aztp(home=home, trust_domain="bench.test")
    guard = Guard(flow="bench", client=client)
    enrollment = guard.enroll("bench-agent", ["search"])
    agent, tool = enrollment.agent_id, enrollment.tools["search"]
    authority, principal = client.backend.authority, client.backend.principal
    policy = authority.create_policy(
        principal,
        "bench",
        {
            "Statement": [
                {"Effect": "Allow", "Action": "tool:*"},
                {"Effect": "Deny", "Action": "tool:delete_everything"},
            ]
        },
    )
    authority.attach_policy(principal, agent, policy["code"])

    decision = guard.check(agent, tool, "search", {"crew": "bench"})
    assert decision.allowed, decision

    ca = cred.CertificateAuthority.generate("bench.test")
    bundle = (
        ca.trust_bundle()
        if hasattr(ca, "trust_bundle")
        else cred.TrustBundle.from_authorities("bench.test", [ca])
    )
    token = ca.mint_jwt_svid(
        "spiffe://bench.test/workload/production/node/bench-agent", "bench", ttl=3600
    )
    cred.validate_jwt_svid(token, bundle, "bench")

    def decide() -> None:
        guard.check(agent, tool, "search", {"crew": "bench"})

    def jwt_verify() -> None:
        cred.validate_jwt_svid(token, bundle, "bench")

    ratios, dec, jwt = [], [], []
    for _ in range(ROUNDS):  # interleaved rounds, median of the paired ratios
        d = per_op_us(decide, N)
        j = per_op_us(jwt_verify, N // 10)
        client.backend.authority.store.flush_audit(timeout=60)
        dec.append(d)
        jwt.append(j)
        ratios.append(d / j)
    ratio = statistics.median(ratios)
    print(f"{'operation':<52}{'us/op':>10}")
    print("-" * 62)
    print(
        f"{'warm tool-call decision (agent+tool+flow+link+policy)':<52}{statistics.median(dec):>10.2f}"
    )
    check = (
        authority.store.change_token
        if authority.store.change_token() is not None
        else authority.store.maybe_changed
    )
    label = (
        "shared change counter" if check == authority.store.change_token else "PRAGMA data_version"
    )
    print(
        f"{'  of which: cross-process change check (' + label + ')':<52}{per_op_us(check, N):>10.2f}"
    )
    print(
        f"{'  (PRAGMA data_version, the fallback, for comparison)':<52}{per_op_us(authority.store.maybe_changed, N):>10.2f}"
    )
    print(f"{'one ES256 JWT-SVID validation':<52}{statistics.median(jwt):>10.2f}")
    print(
        f"decision / JWT validation = {ratio:.3f}x (median of {ROUNDS} paired rounds); "
        f"target <= {TARGET}x -> {'MET' if ratio <= TARGET else 'NOT MET'}"
    )
    client.backend.authority.store.flush_audit(timeout=60)
    entries = len(authority.audit_entries(principal, action="decision.*"))
    print(
        f"audit: {entries} decision records committed, chain ok = {authority.verify_audit(principal).ok}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
