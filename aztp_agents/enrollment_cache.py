"""What a client already enrolled, so that securing the same crew shape again costs no write.

A host that builds a crew per request secures the same agents and tools over and over. The
first time, :meth:`aztp_agents.guard.Guard.enroll` issues each identity (a key pair and a
signed X.509-SVID), adds it to the flow and links the agent to its tools. Each later time,
for the same *shape* (flow, environment, trust domain, agent and tool names), the guard
finds the enrollment here and only confirms on the decision state — held in memory by the
enforcement point — that it still holds: every identity active and a member of the flow,
every grant present. Then it reuses the credentials issued the first time; nothing is written
and nothing is signed. Anything else (an identity revoked or removed from the flow, a grant
gone, a credential past two thirds of its lifetime, a backend that cannot confirm without a
request) takes the full path, exactly as the first time — except a grant an operator
removed: enrollment does not re-create it, and the next confirmation only asks that tool to
be an active member (see :attr:`KnownEnrollment.withheld`).

One cache per client: a client acts for one principal, so one tenant's enrollments are never
another's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .wire import Identity

__all__ = ["EnrollmentCache", "KnownEnrollment", "Shape", "renew_at"]

#: A reused credential is renewed once this share of its lifetime has passed (SPIFFE
#: workloads rotate well before expiry; the SVIDs here live an hour by default).
RENEW_AFTER = 2 / 3


@dataclass(frozen=True, slots=True)
class Shape:
    """What an enrollment was asked for."""

    flow: str
    environment: str | None
    trust_domain: str | None
    discoverable: str
    agent: str
    tools: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KnownEnrollment:
    """An enrollment done once: its flow and identities, and when to renew its credentials."""

    flow_id: str
    agent_id: str
    tools: Mapping[str, str]
    identities: Mapping[str, Identity] = field(repr=False)
    #: ``time.time()`` past which the credentials are issued again (the full path)
    renew_at: float
    #: Tools whose grant an operator removed (enrollment does not re-create it): confirmed
    #: as active members only, so the operator's unlink does not send every later securing
    #: of the shape down the full path.
    withheld: frozenset[str] = frozenset()

    @property
    def fresh(self) -> bool:
        return time.time() < self.renew_at


def renew_at(identities: Mapping[str, Identity]) -> float:
    """When the first of these credentials reaches :data:`RENEW_AFTER` of its lifetime (now
    if one has no credential: it is issued again next time)."""
    from cryptography import x509

    soonest = float("inf")
    for identity in identities.values():
        if not identity.certificate:
            return time.time()
        cert = x509.load_pem_x509_certificate(identity.certificate.encode())
        start = cert.not_valid_before_utc.timestamp()
        end = cert.not_valid_after_utc.timestamp()
        soonest = min(soonest, start + (end - start) * RENEW_AFTER)
    return soonest if soonest != float("inf") else time.time()


class EnrollmentCache:
    """Enrollments by shape (thread-safe)."""

    #: Shapes kept at most (a host with more distinct crews re-enrolls the oldest).
    LIMIT = 10_000

    def __init__(self) -> None:
        self._known: dict[Shape, KnownEnrollment] = {}
        self._lock = threading.Lock()

    def get(self, shape: Shape) -> KnownEnrollment | None:
        known = self._known.get(shape)
        return known if known is not None and known.fresh else None

    def put(self, shape: Shape, known: KnownEnrollment) -> None:
        with self._lock:
            if len(self._known) >= self.LIMIT:
                self._known.pop(next(iter(self._known)))
            self._known[shape] = known
