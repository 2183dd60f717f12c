"""The enforcement point every framework adapter uses.

A :class:`Guard` belongs to one flow. It issues identities for agents and tools, enrolls them
in the flow, links agents to the tools they were given, and takes the tool-call decision
before each call — synchronously (:meth:`Guard.check`) or on an event loop
(:meth:`Guard.acheck`). Neither ever raises: **every error on the decision path becomes a
denial** with reason ``authority_unavailable`` (fail closed), because some frameworks
(CrewAI) swallow hook exceptions and would otherwise run the tool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from . import telemetry
from .audit import FieldData
from .client import Aztp, default_client
from .decisions import Decision, Reason, denial
from .enrollment_cache import EnrollmentCache, KnownEnrollment, Shape, renew_at
from .errors import ValidationError
from .ids import sanitize_name
from .models import Identity
from .wire import REMOVED_BY_OPERATOR

__all__ = [
    "TOOL_RELATIONSHIP",
    "DecisionPoint",
    "Enrollment",
    "Guard",
    "Mode",
    "bind_agent",
    "current_agent",
]

log = logging.getLogger("aztp_agents.guard")

Mode = Literal["enforce", "observe"]


def _log_denial(decision: Decision) -> None:
    """One rule for every denial (docs/security.md "Logging"): a decision the rules took
    is INFO (it is audited, and the framework hands the model the reason); a would-be denial
    in observe mode is WARNING (a call ran that enforce mode would block); a denial because
    the authority could not be consulted is ERROR (something is broken: an operator acts).
    The reason decides the level, never the path that produced the denial."""
    if decision.reason is Reason.AUTHORITY_UNAVAILABLE:
        level = logging.ERROR
    elif not decision.enforced:
        level = logging.WARNING
    else:
        level = logging.INFO
    if log.isEnabledFor(level):
        prefix = "" if decision.enforced else "observe mode, would deny: "
        log.log(level, "%s%s", prefix, decision.describe())


#: Relationship type of the agent -> tool links a guard creates (directed).
TOOL_RELATIONSHIP = "tool_access"

#: The AZTP ID of the agent on whose behalf the current task/thread is running.
current_agent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aztp_current_agent", default=None
)


@contextlib.contextmanager
def bind_agent(aztp_id: str | None) -> Iterator[None]:
    """Run the block as ``aztp_id`` (a contextvar: concurrent tasks never see each other's).

    The bound agent is the caller of tools that have no agent of their own. It never
    overrides the agent a tool was secured for: a sub-agent run inside the block decides as
    itself (only ``aztp_langchain.acting_as`` overrides, explicitly). Adapters bind the agent
    of an allowed tool call while its body runs and restore the previous one afterwards."""
    token = current_agent.set(aztp_id)
    try:
        yield
    finally:
        current_agent.reset(token)


@dataclass(frozen=True)
class Enrollment:
    agent_id: str
    tools: dict[str, str] = field(default_factory=dict)


_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="aztp-guard"
            )
        return _EXECUTOR


class Guard:
    """Enforcement point for one flow.

    ``client``: an :class:`~aztp_agents.Aztp` (default: the process-wide embedded one).
    ``mode``: ``"enforce"`` blocks denied calls; ``"observe"`` only logs them.
    ``timeout``: bound on a decision when the backend may do I/O; past it, the call is denied.
    """

    def __init__(
        self,
        flow: str,
        client: Aztp | None = None,
        *,
        mode: Mode = "enforce",
        environment: str | None = None,
        trust_domain: str | None = None,
        discoverable: str = "private",
        timeout: float = 2.0,
    ) -> None:
        if not isinstance(flow, str) or not flow.strip():
            raise ValidationError("flow must be a non-empty flow name, e.g. Guard(flow='prod')")
        if mode not in ("enforce", "observe"):
            raise ValidationError(f"mode must be 'enforce' or 'observe', got {mode!r}")
        if discoverable not in ("public", "private"):
            raise ValidationError(
                f"discoverable must be 'public' or 'private', got {discoverable!r}"
            )
        self.flow = flow
        self.client = client if client is not None else default_client()
        self.mode: Mode = mode
        self.environment = environment
        self.trust_domain = trust_domain
        self.discoverable = discoverable
        self.timeout = timeout
        self.identities: dict[str, Identity] = {}
        #: Called with every decision this guard takes (after it is taken; a listener cannot
        #: change it, and a listener that raises is logged and ignored).
        self.listeners: list[Callable[[Decision], None]] = []
        self._flow_id: str | None = None
        self._lock = threading.Lock()
        self._enforce = mode == "enforce"
        #: Where decisions come from (in memory for the embedded backend; see DecisionPoint).
        self._point: DecisionPoint = decision_point_of(self.client.backend)
        # OpenTelemetry, when enabled, is one more listener (nothing at all when it is off)
        telemetry.attach(self)

    def __repr__(self) -> str:
        return f"Guard(flow={self.flow!r}, mode={self.mode!r}, client={self.client!r})"

    # ----------------------------------------------------------------- set-up (may raise)

    @property
    def flow_id(self) -> str:
        """The flow's ``_id`` (the flow is created, private by default, if missing)."""
        if self._flow_id is None:
            with self._lock:
                if self._flow_id is None:
                    doc = self.client.backend.call(
                        "ensure_flow", name=self.flow, discoverable=self.discoverable
                    )
                    self._flow_id = str(doc["_id"])
        return self._flow_id

    def ensure_identity(self, name: str) -> str:
        """Issue (idempotent by name) an identity with a fresh X.509-SVID and enroll it."""
        name = sanitize_name(name)
        config: dict[str, Any] = {"isGlobalIdentity": False}
        if self.environment:
            config["environment"] = self.environment
        if self.trust_domain:
            config["trustDomain"] = self.trust_domain
        secured = self.client.secure_connect_sync(None, name, config)
        aztp_id = secured.identity.aztp_id
        self.identities[aztp_id] = secured.identity
        self.client.backend.call("add_identity_to_flow", flow_id=self.flow_id, aztp_id=aztp_id)
        return aztp_id

    def link(self, agent_id: str, tool_id: str) -> dict[str, Any]:
        """Authorize ``agent_id`` to call ``tool_id`` in this guard's flow only (a directed,
        flow-scoped link; idempotent). A grant declared for one flow's crew is no grant in
        another flow. The answer's ``state`` is ``removed_by_operator`` when an operator
        removed the grant: it is not re-created."""
        return self.client.backend.call(
            "link_identities",
            source=agent_id,
            target=tool_id,
            relationship_type=TOOL_RELATIONSHIP,
            metadata={"flow": self.flow},
            flow_id=self.flow_id,
            # enrollment, not an operator: a link an operator removed stays removed
            declared=True,
        )

    def enroll(self, agent_name: str, tool_names: Sequence[str]) -> Enrollment:
        """Identities for an agent and its tools, all in the flow, agent linked to each tool.

        The same shape enrolled again through the same client (a crew built per request)
        writes nothing and signs nothing while the decision state confirms the enrollment
        still holds and its credentials are fresh (see :mod:`aztp_agents.enrollment_cache`)."""
        names = list(tool_names)
        shape = Shape(
            self.flow,
            self.environment,
            self.trust_domain,
            self.discoverable,
            agent_name,
            tuple(sorted(set(names))),
        )
        cache: EnrollmentCache = self.client.enrollments
        known = cache.get(shape)
        if known is not None and self._still_enrolled(known):
            self._flow_id = known.flow_id
            self.identities.update(known.identities)
            return Enrollment(known.agent_id, {name: known.tools[name] for name in names})
        # One write transaction for the whole enrollment where the backend can (embedded):
        # one commit instead of one per identity, membership and grant, and all or nothing.
        batch = getattr(self.client.backend, "batch", None)
        with batch() if batch is not None else contextlib.nullcontext():
            agent_id = self.ensure_identity(agent_name)
            tools: dict[str, str] = {}
            withheld: set[str] = set()
            for tool_name in names:
                tool_id = self.ensure_identity(tool_name)
                if self.link(agent_id, tool_id).get("state") == REMOVED_BY_OPERATOR:
                    withheld.add(tool_id)
                tools[tool_name] = tool_id
        issued = {i: self.identities[i] for i in (agent_id, *tools.values())}
        cache.put(
            shape,
            KnownEnrollment(
                self.flow_id,
                agent_id,
                dict(tools),
                issued,
                renew_at(issued),
                frozenset(withheld),
            ),
        )
        return Enrollment(agent_id, tools)

    def _still_enrolled(self, known: KnownEnrollment) -> bool:
        """Confirmed on the backend's decision state, without a request (False: enroll)."""
        if self._flow_id is not None and self._flow_id != known.flow_id:
            return False
        check = getattr(self._point, "enrolled", None)
        if check is None:
            return False  # a backend that cannot tell without a request: the full path
        granted = [tool for tool in known.tools.values() if tool not in known.withheld]
        try:
            # a tool whose grant an operator removed: an active member is all it must be
            # (checked as an "agent" with no tools)
            return bool(check(known.flow_id, known.agent_id, granted)) and all(
                check(known.flow_id, tool, []) for tool in known.withheld
            )
        except Exception:  # cannot confirm: enroll as the first time (which reports errors)
            log.debug("could not confirm a known enrollment", exc_info=True)
            return False

    # ----------------------------------------------------------------- decisions (never raise)

    def _denied(
        self,
        agent: str | None,
        tool: str | None,
        tool_name: str | None,
        detail: str,
        started: float,
        reason: Reason = Reason.AUTHORITY_UNAVAILABLE,
    ) -> Decision:
        return denial(
            agent=agent,
            tool=tool,
            tool_name=tool_name,
            flow=self._flow_id,
            enforced=self._enforce,
            detail=detail,
            latency_us=(time.perf_counter() - started) * 1e6,
            reason=reason,
        )

    def _notify(self, decision: Decision) -> None:
        for listener in self.listeners:
            try:
                listener(decision)
            except Exception:
                log.exception("decision listener %r failed", listener)

    def _finish(
        self,
        decision: Any,
        agent: str | None,
        tool: str | None,
        tool_name: str | None,
        started: float,
        context: Mapping[str, Any] | None,
    ) -> Decision:
        if not isinstance(decision, Decision):
            denied = self._denied(
                agent,
                tool,
                tool_name,
                f"unusable answer from the authority: {type(decision).__name__}",
                started,
            )
            self._record_failure(denied, context)
            return denied
        if not decision.allowed:
            _log_denial(decision)
        if self.listeners:
            self._notify(decision)
        return decision

    def _unidentified(
        self,
        agent: str | None,
        tool: str | None,
        tool_name: str | None,
        context: Mapping[str, Any] | None,
        started: float,
    ) -> Decision:
        """A caller or tool with no AZTP identity at all: denied as unknown, and audited."""
        reason = Reason.AGENT_UNKNOWN if not agent else Reason.TOOL_UNKNOWN
        decision = self._denied(agent, tool, tool_name, "it has no AZTP identity", started, reason)
        self._record_failure(decision, context)
        return decision

    def _failed(
        self,
        agent: str | None,
        tool: str | None,
        tool_name: str | None,
        detail: str,
        started: float,
        context: Mapping[str, Any] | None,
    ) -> Decision:
        decision = self._denied(agent, tool, tool_name, detail, started)
        self._record_failure(decision, context)
        return decision

    def _record_failure(self, decision: Decision, context: Mapping[str, Any] | None) -> None:
        try:
            self._point.record_decision(decision, context)
        except Exception:  # the denial stands; only its audit record is lost
            log.error("could not audit a fail-closed denial", exc_info=True)
        _log_denial(decision)
        if self.listeners:
            self._notify(decision)

    def check(
        self,
        agent_id: str | None,
        tool_id: str | None,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Decide one tool call. Never raises; any failure is a denial."""
        decision = self.check_now(agent_id, tool_id, tool_name, context)
        if decision is not None:
            return decision
        started = time.perf_counter()
        try:
            if not agent_id or not tool_id:
                return self._unidentified(agent_id, tool_id, tool_name, context, started)
            point = self._point
            decide = functools.partial(
                point.decide,
                flow_id=self._flow_id or self.flow_id,
                agent=agent_id,
                tool=tool_id,
                tool_name=tool_name,
                context=context,
                enforce=self._enforce,
            )
            if point.bounded:
                decision = decide()
            else:
                decision = _executor().submit(decide).result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            return self._failed(
                agent_id, tool_id, tool_name, f"no answer within {self.timeout} s", started, context
            )
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return self._failed(
                agent_id, tool_id, tool_name, f"{type(exc).__name__}: {exc}", started, context
            )
        return self._finish(decision, agent_id, tool_id, tool_name, started, context)

    def check_now(
        self,
        agent_id: str | None,
        tool_id: str | None,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        flat_context: FieldData | None = None,
    ) -> Decision | None:
        """The decision, if it can be taken at once without any I/O (an embedded authority
        whose state is in memory: the usual case); else ``None``, and the caller awaits
        :meth:`acheck`. Safe on an event loop: it never blocks. Never raises.

        ``flat_context`` may stand for ``context``: alternating str keys and plain values
        (a :class:`CallContext`'s ``flat`` plus per-call items), so the usual call builds no
        mapping at all."""
        flow_id = self._flow_id
        if flow_id is None or not agent_id or not tool_id:
            return None
        try:
            decision = self._point.decide_now(
                flow_id, agent_id, tool_id, tool_name, self._enforce, context, flat_context
            )
        except Exception:  # acheck takes it again, and fails closed if it fails again
            log.debug("no immediate decision; deferring to acheck", exc_info=True)
            return None
        if decision is None or (decision.allowed and not self.listeners):
            return decision
        return self._finish(decision, agent_id, tool_id, tool_name, time.perf_counter(), context)

    async def acheck(
        self,
        agent_id: str | None,
        tool_id: str | None,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Decide one tool call on an event loop without blocking it. Never raises."""
        decision = self.check_now(agent_id, tool_id, tool_name, context)
        if decision is not None:
            return decision
        started = time.perf_counter()
        try:
            if not agent_id or not tool_id:
                return self._unidentified(agent_id, tool_id, tool_name, context, started)
            flow_id = self._flow_id or await asyncio.to_thread(lambda: self.flow_id)
            point = self._point
            pending = point.adecide(
                flow_id=flow_id,
                agent=agent_id,
                tool=tool_id,
                tool_name=tool_name,
                context=context,
                enforce=self._enforce,
            )
            decision = await (
                pending if point.bounded else asyncio.wait_for(pending, timeout=self.timeout)
            )
        except asyncio.TimeoutError:
            return self._failed(
                agent_id, tool_id, tool_name, f"no answer within {self.timeout} s", started, context
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # fail closed on anything
            return self._failed(
                agent_id, tool_id, tool_name, f"{type(exc).__name__}: {exc}", started, context
            )
        return self._finish(decision, agent_id, tool_id, tool_name, started, context)


class DecisionPoint(Protocol):
    """Where a guard's decisions come from (a backend's ``decision_point``).

    ``decide_now`` never does I/O (``None``: take ``decide`` / ``adecide``); ``bounded``: the
    blocking and async variants never wait longer than their own bound (else the guard bounds
    them with its timeout). All may raise; the guard turns that into a denial."""

    bounded: bool

    def decide_now(
        self,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None,
        enforce: bool,
        context: Mapping[str, Any] | None = None,
        flat_context: FieldData | None = None,
    ) -> Decision | None: ...

    def decide(
        self,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        enforce: bool = True,
    ) -> Decision: ...

    async def adecide(
        self,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        enforce: bool = True,
    ) -> Decision: ...

    def record_decision(
        self, decision: Decision, context: Mapping[str, Any] | None = None
    ) -> None: ...


class _BackendDecisions:
    """The decision point of a backend that has none of its own: every decision asks the
    backend (``decide`` / ``adecide``), nothing is decided without it."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.bounded = bool(getattr(backend, "bounded_decisions", False))

    def decide_now(self, *_args: Any) -> Decision | None:
        return None

    def decide(self, **kwargs: Any) -> Decision:
        return self._backend.decide(**kwargs)  # type: ignore[no-any-return]

    async def adecide(self, **kwargs: Any) -> Decision:
        return await self._backend.adecide(**kwargs)  # type: ignore[no-any-return]

    def enrolled(self, flow_id: str, agent: str, tools: Sequence[str]) -> bool:
        check = getattr(self._backend, "enrolled", None)
        return bool(check(flow_id, agent, tools)) if check is not None else False

    def record_decision(self, decision: Decision, context: Mapping[str, Any] | None = None) -> None:
        record = getattr(self._backend, "record_decision", None)
        if record is not None:
            record(decision, context)


def decision_point_of(backend: Any) -> DecisionPoint:
    """The backend's own decision point, or one that asks the backend for every decision."""
    point = getattr(backend, "decision_point", None)
    return point if point is not None else _BackendDecisions(backend)
