"""Prove from the audit log alone that no tool call was allowed on a state that had already
revoked it (pure: reads audit entries as :meth:`Aztp.audit` returns them).

Time stamps cannot prove that: decisions are group-committed (a batch written after a
revocation holds decisions taken before it), and enforcement points' clocks differ. Revisions
can. Every write that changes decision state records the state revision it makes
(``data.revision`` of ``identity.revoke``, ``link.delete``, ...), and every decision records the
revision it was decided on. A state at revision ``r`` holds every write up to ``r``; so an
allow decided on a revision at or after a revocation's (and before the access was given back)
was decided on a state that knew of it: a violation.

What revokes, and what gives back, per scope:

* an identity (as the agent or the tool): ``identity.revoke`` until ``identity.reissue``;
* an identity in a flow: ``flow.revoke_identity`` until ``flow.reinstate_identity``, and
  ``flow.remove_identity`` until ``flow.add_identity``;
* a flow: ``flow.delete`` (for good);
* an agent's use of a tool: the last link that allowed it deleted (``link.delete``) until a
  ``link.create`` allows it again (a ``linked`` link allows both ways).

Policies are not checked: a policy's effect can depend on the call's context, which only the
decision saw.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OrderReport", "check_decision_order"]

DECISION_ACTION = "decision.tool_call"
#: Relationship types that authorize both ways (as the decision rules read them).
SYMMETRIC = frozenset({"linked"})
_CLOSE_OPEN = {
    "identity.revoke": ("identity", False),
    "identity.reissue": ("identity", True),
    "flow.revoke_identity": ("flow-revoked", False),
    "flow.reinstate_identity": ("flow-revoked", True),
    "flow.remove_identity": ("flow-member", False),
    "flow.add_identity": ("flow-member", True),
    "flow.delete": ("flow", False),
}
_LINKS = ("link.create", "link.delete")


@dataclass
class OrderReport:
    ok: bool = True
    decisions: int = 0
    allowed: int = 0
    revocations: int = 0
    #: state changes written before writes recorded their revision (not checkable)
    unrevisioned: int = 0
    #: entries that could not be read (run 'audit verify')
    unreadable: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "decisions": self.decisions,
            "allowed": self.allowed,
            "revocations": self.revocations,
            "unrevisioned": self.unrevisioned,
            "unreadable": self.unreadable,
            "violations": self.violations,
        }


def _revision(data: Mapping[str, Any]) -> int | None:
    value = data.get("revision")
    return value if type(value) is int else None


class _Windows:
    """Per scope, the revision ranges [closed, reopened) in which access was revoked."""

    def __init__(self) -> None:
        self.events: dict[tuple[Any, ...], list[tuple[int, bool, Mapping[str, Any]]]] = defaultdict(
            list
        )
        self.ranges: dict[tuple[Any, ...], list[tuple[int, float, Mapping[str, Any]]]] = {}

    def add(self, scope: tuple[Any, ...], revision: int, opens: bool, entry: Mapping[str, Any]):
        self.events[scope].append((revision, opens, entry))

    def build(self) -> None:
        for scope, events in self.events.items():
            events.sort(key=lambda e: (e[0], e[2].get("seq", 0), e[2].get("index") or 0))
            out: list[tuple[int, float, Mapping[str, Any]]] = []
            closed: tuple[int, Mapping[str, Any]] | None = None
            for revision, opens, entry in events:
                if opens and closed is not None:
                    out.append((closed[0], revision, closed[1]))
                    closed = None
                elif not opens and closed is None:
                    closed = (revision, entry)
            if closed is not None:
                out.append((closed[0], math.inf, closed[1]))
            self.ranges[scope] = out

    def revoked_at(self, scope: tuple[Any, ...], revision: int) -> Mapping[str, Any] | None:
        """The revoking entry whose window holds ``revision``, if any."""
        ranges = self.ranges.get(scope)
        if not ranges:
            return None
        i = bisect.bisect_right([r[0] for r in ranges], revision) - 1
        if i >= 0 and ranges[i][0] <= revision < ranges[i][1]:
            return ranges[i][2]
        return None


def _link_windows(links: list[tuple[int, Mapping[str, Any]]], windows: _Windows) -> None:
    """Replay link writes in revision order: a pair (agent, tool) is revoked while no live link
    allows it, from the delete that removed its last one."""
    live: set[tuple[str, str, str]] = set()

    def allows(a: str, b: str) -> bool:
        return any(
            (s, t) == (a, b) or (typ in SYMMETRIC and (s, t) == (b, a)) for s, t, typ in live
        )

    links.sort(key=lambda e: (e[0], e[1].get("seq", 0)))
    for revision, entry in links:
        data = entry.get("data") or {}
        src, dst = entry.get("subject"), data.get("target")
        typ = str(data.get("relationshipType") or "linked")
        if not isinstance(src, str) or not isinstance(dst, str):
            continue
        pairs = [(src, dst), (dst, src)] if typ in SYMMETRIC else [(src, dst)]
        before = {p: allows(*p) for p in pairs}
        if entry["action"] == "link.create":
            live.add((src, dst, typ))
        elif data.get("removed", 1):
            live.discard((src, dst, typ))
        for p in pairs:
            now = allows(*p)
            if before[p] and not now:
                windows.add(("link", *p), revision, False, entry)
            elif now and not before[p]:
                windows.add(("link", *p), revision, True, entry)


def check_decision_order(entries: Iterable[Mapping[str, Any]]) -> OrderReport:
    """Every allow decision checked against the revocations the log records (see the module)."""
    report = OrderReport()
    windows = _Windows()
    links: list[tuple[int, Mapping[str, Any]]] = []
    allows: list[Mapping[str, Any]] = []
    for e in entries:
        if e.get("problem"):
            report.unreadable += 1
            continue
        action, data = e.get("action"), e.get("data") or {}
        if action == DECISION_ACTION:
            report.decisions += 1
            if data.get("allowed") is True:
                report.allowed += 1
                allows.append(e)
            continue
        if action not in _CLOSE_OPEN and action not in _LINKS:
            continue
        revision = _revision(data)
        if revision is None:
            report.unrevisioned += 1
            continue
        if action in _LINKS:
            links.append((revision, e))
            if action == "link.delete" and data.get("removed", 1):
                report.revocations += 1
            continue
        kind, opens = _CLOSE_OPEN[action]
        report.revocations += not opens
        subject = e.get("subject")
        scope = (
            ("flow", subject)
            if kind == "flow"
            else (kind, subject)
            if kind == "identity"
            else (kind, subject, data.get("flowId"))
        )
        windows.add(scope, revision, opens, e)
    _link_windows(links, windows)
    windows.build()

    for e in allows:
        data = e.get("data") or {}
        revision = _revision(data)
        if revision is None:
            continue
        agent, tool, flow = e.get("subject"), data.get("tool"), data.get("flowId")
        scopes = [
            ("identity", agent),
            ("identity", tool),
            ("flow", flow),
            ("flow-revoked", agent, flow),
            ("flow-revoked", tool, flow),
            ("flow-member", agent, flow),
            ("flow-member", tool, flow),
            ("link", agent, tool),
        ]
        for scope in scopes:
            by = windows.revoked_at(scope, revision)
            if by is not None:
                report.violations.append(
                    {
                        "seq": e.get("seq"),
                        "index": e.get("index"),
                        "ts": e.get("ts"),
                        "agent": agent,
                        "tool": tool,
                        "flowId": flow,
                        "revision": revision,
                        "revokedBy": {
                            "seq": by.get("seq"),
                            "ts": by.get("ts"),
                            "action": by.get("action"),
                            "subject": by.get("subject"),
                            "revision": (by.get("data") or {}).get("revision"),
                        },
                    }
                )
                break
    report.ok = not report.violations
    return report
