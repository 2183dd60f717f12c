"""A bounded concurrent write load through several replicas, and the check that every write a
replica acknowledged (2xx) is in the database afterwards."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from aztp_agents import Aztp
from aztp_agents.errors import AuthorityUnavailableError
from aztp_agents.guard import Guard
from aztp_agents.wire import FlowRecord


@dataclass
class Acked:
    """What the replicas acknowledged, and what failed (by exception type and message)."""

    identities: set[str] = field(default_factory=set)
    members: set[str] = field(default_factory=set)  # in the load's flow
    links: set[tuple[str, str]] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self) -> int:
        return len(self.identities) + len(self.members) + len(self.links) + len(self.revoked)


async def _worker(
    urls: list[str], key: str, flow_id: str, tag: str, ops: int, acked: Acked
) -> None:
    client = Aztp(api_key=key, base_url=urls)
    previous: str | None = None
    try:
        for n in range(ops):
            try:
                aztp_id = (await client.secure_connect({}, f"{tag}-{n}")).identity.aztp_id
                with acked.lock:
                    acked.identities.add(aztp_id)
                await client.add_identity_to_flow(flow_id, aztp_id)
                with acked.lock:
                    acked.members.add(aztp_id)
                if previous is not None:
                    await client.link_identities(previous, aztp_id, "linked")
                    with acked.lock:
                        acked.links.add((previous, aztp_id))
                if n % 4 == 3:
                    await client.revoke_identity(aztp_id, "load")
                    with acked.lock:
                        acked.revoked.add(aztp_id)
                previous = aztp_id
            except AuthorityUnavailableError as exc:  # a replica died under it: not acked
                with acked.lock:
                    acked.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        await client.backend.aclose()  # type: ignore[attr-defined]


def write_load(
    urls: list[str], key: str, flow_id: str, *, workers: int, ops: int, tag: str = "w"
) -> Acked:
    """``workers`` threads, each with a client given every replica (starting at a different
    one), each doing ``ops`` rounds of issue / add to flow / link / (every 4th) revoke."""
    acked = Acked()
    threads = [
        threading.Thread(
            target=asyncio.run,
            args=(
                _worker(
                    urls[i % len(urls) :] + urls[: i % len(urls)],
                    key,
                    flow_id,
                    f"{tag}{i}",
                    ops,
                    acked,
                ),
            ),
        )
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "the load did not finish"
    return acked


def missing(client: Aztp, flow_id: str, acked: Acked) -> list[str]:
    """Every acknowledged write not found in the database (through ``client``)."""
    lost: list[str] = []
    for aztp_id in sorted(acked.identities):
        try:
            record = asyncio.run(client.identity(aztp_id))
        except Exception as exc:
            lost.append(f"identity {aztp_id}: {type(exc).__name__}")
            continue
        if aztp_id in acked.revoked and record.status != "revoked":
            lost.append(f"revocation of {aztp_id}")
    flow: FlowRecord = asyncio.run(client.flow(flow_id))
    members = {m.aztp_id for m in flow.identities}
    lost += [f"membership of {a}" for a in sorted(acked.members - members)]
    links = {(x["sourceIdentity"], x["targetIdentity"]) for x in asyncio.run(client.list_links())}
    lost += [f"link {s} -> {t}" for s, t in sorted(acked.links - links)]
    return lost


def decide_during(guards: list[tuple[Guard, str, str]], stop: threading.Event) -> threading.Thread:
    """A thread taking decisions through each guard until ``stop`` (their audit records go to
    the replicas' audit writers)."""

    def loop() -> None:
        while not stop.is_set():
            for guard, agent, tool in guards:
                guard.check(agent, tool, "tool")
            stop.wait(0.005)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread
