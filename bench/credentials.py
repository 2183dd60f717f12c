"""Credential costs, measured against one bare ECDSA P-256 verify in the same run.

Run: ``.venv/bin/python bench/credentials.py``. Prints a table; exits 0.
Target: JWT-SVID validation within 2.5x of the bare verify.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from aztp_agents.credentials import (
    CertificateAuthority,
    generate_private_key,
    validate_jwt_svid,
    validate_x509_svid,
)

TARGET_RATIO = 2.5
REPEATS = 7
SID = "spiffe://bench.example/workload/production/node/agent"
AUD = "spiffe://bench.example/workload/production/node/tool"


def measure(fn: Callable[[], object], *, budget_s: float = 0.25) -> float:
    """Median µs per call over REPEATS batches, after a warm-up that sizes the batch."""
    for _ in range(50):
        fn()
    start = time.perf_counter_ns()
    calls = 0
    while time.perf_counter_ns() - start < 50_000_000:
        fn()
        calls += 1
    per_call_ns = (time.perf_counter_ns() - start) / calls
    n = max(10, int(budget_s * 1e9 / per_call_ns))
    samples = []
    for _ in range(REPEATS):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(samples)


def main() -> int:
    ca = CertificateAuthority.generate("bench.example")
    bundle = ca.trust_bundle()
    key = generate_private_key()
    public = key.public_key()

    message = b"x" * 200  # about the size of a JWT signing input
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    algorithm = ec.ECDSA(hashes.SHA256())

    token = ca.mint_jwt_svid(SID, AUD)
    svid = ca.issue_x509_svid(SID, public)
    chain = [svid.certificate, ca.certificate]
    assert validate_jwt_svid(token, bundle, AUD).spiffe_id == SID
    assert validate_x509_svid(chain, bundle, private_key=key) == SID

    cases: list[tuple[str, Callable[[], object]]] = [
        ("bare ECDSA P-256 verify", lambda: public.verify(signature, message, algorithm)),
        ("X.509-SVID issuance", lambda: ca.issue_x509_svid(SID, public)),
        ("JWT-SVID mint", lambda: ca.mint_jwt_svid(SID, AUD)),
        ("JWT-SVID validation", lambda: validate_jwt_svid(token, bundle, AUD)),
        (
            "JWT-SVID validation (bundle map)",
            lambda: validate_jwt_svid(token, {"bench.example": bundle}, AUD),
        ),
        ("X.509-SVID validation", lambda: validate_x509_svid(chain, bundle)),
    ]
    results = {name: measure(fn) for name, fn in cases}
    base = results["bare ECDSA P-256 verify"]

    print(f"credentials bench (median of {REPEATS} batches, Python {sys.version.split()[0]})")
    print(f"{'operation':<34} {'µs/op':>10} {'× verify':>10}")
    print("-" * 56)
    for name, us in results.items():
        print(f"{name:<34} {us:>10.1f} {us / base:>10.2f}")
    ratio = results["JWT-SVID validation"] / base
    met = "MET" if ratio <= TARGET_RATIO else "NOT MET"
    print("-" * 56)
    print(f"target: JWT-SVID validation <= {TARGET_RATIO}× bare verify: {ratio:.2f}× -> {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
