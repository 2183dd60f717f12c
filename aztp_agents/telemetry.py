"""OpenTelemetry for tool-call decisions (the optional extra ``aztp-agents[otel]``).

Off by default. :func:`enable` (or ``AZTP_OTEL=1`` in the environment, read when the first
guard is made) adds one listener to every :class:`~aztp_agents.guard.Guard`, existing and
future; :func:`disable` takes it away again. The listener records each decision as:

* a span ``aztp.decision`` (a child of whatever span is current), back-dated to when the
  decision began, or — when the current span is the framework's own tool-call span
  (OpenTelemetry GenAI ``gen_ai.operation.name = execute_tool``, or OpenInference
  ``openinference.span.kind = TOOL``) — an event ``aztp.decision`` on that span;
* the counter ``aztp.decisions`` (by reason, allowed, enforced), the histogram
  ``aztp.decision.duration`` (seconds), and the observable gauge ``aztp.audit.queue.depth``
  (decision records queued for the audit writer of the stores the guards use).

Why a listener and nothing in the decision path: a guard already calls its listeners with
every decision and skips them with one attribute check (``if self.listeners``) when there are
none, so with telemetry off the memoized fast path runs exactly as before — no import of
OpenTelemetry, no call, no allocation. This module imports nothing of OpenTelemetry until
:func:`enable` runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .decisions import Decision, Reason

if TYPE_CHECKING:
    from .guard import Guard

__all__ = [
    "ENV_VAR",
    "SPAN_NAME",
    "attach",
    "audit_backlog",
    "decision_attributes",
    "disable",
    "enable",
    "enabled",
]

log = logging.getLogger("aztp_agents.telemetry")

#: ``AZTP_OTEL=1`` (or true/yes/on) enables telemetry when the first guard is made.
ENV_VAR = "AZTP_OTEL"
#: Name of a decision's span, and of its event on a framework's tool-call span.
SPAN_NAME = "aztp.decision"
#: Instrumentation scope (tracer and meter name).
SCOPE = "aztp_agents"

#: Decision latencies are microseconds: bucket bounds (seconds) that resolve them, from a
#: memoized decision (~1 us) to a remote fallback (~ms) and a timed-out one (seconds).
_DURATION_BUCKETS = (
    1e-6,
    2.5e-6,
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    1e-3,
    1e-2,
    0.1,
    1.0,
    5.0,
)

_lock = threading.Lock()
#: Every guard made in this process (weakly): enable() and disable() reach them all.
_guards: weakref.WeakSet[Guard] = weakref.WeakSet()
_recorder: _Recorder | None = None
_env_checked = False


def decision_attributes(decision: Decision) -> dict[str, str | int | bool]:
    """A decision's span attributes (absent values are left out: OpenTelemetry has no null).
    Nothing secret: identifiers, the reason and the state revision, as in the audit log."""
    attrs: dict[str, str | int | bool] = {
        "aztp.allowed": decision.allowed,
        "aztp.enforced": decision.enforced,
        "aztp.reason": decision.reason.value,
        "aztp.revision": decision.revision,
    }
    for key, value in (
        ("aztp.organization", decision.organization),
        ("aztp.flow", decision.flow),
        ("aztp.agent", decision.agent),
        ("aztp.tool", decision.tool),
        ("aztp.tool.name", decision.tool_name),
    ):
        if value:
            attrs[key] = value
    if decision.audit:
        attrs["aztp.audit_marked"] = True
    return attrs


def audit_backlog(store: Any) -> int:
    """Decision records queued for ``store``'s background audit writer, not yet taken by it
    (0 when the store has no writer). Read without a lock: a gauge, not an invariant."""
    writer = getattr(store, "_audit_writer", None)
    queue = getattr(writer, "_queue", None)
    try:
        return int(queue.qsize()) if queue is not None else 0
    except Exception:  # a gauge must never break the reader
        return 0


def _is_tool_span(span: Any) -> bool:
    """Whether ``span`` is a framework's own tool-call span (by the GenAI or OpenInference
    conventions): a decision then becomes an event on it rather than a span of its own."""
    attributes = getattr(span, "attributes", None)
    if not attributes:
        return False
    return (
        attributes.get("gen_ai.operation.name") == "execute_tool"
        or attributes.get("openinference.span.kind") == "TOOL"
    )


class _Recorder:
    """Turns decisions into spans and metrics (made by :func:`enable`; holds the instruments)."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import Status, StatusCode

        from . import __version__

        self._trace = trace
        self._error = Status(StatusCode.ERROR, Reason.AUTHORITY_UNAVAILABLE.value)
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self.decisions = meter.create_counter(
            "aztp.decisions",
            unit="{decision}",
            description="Tool-call decisions, by reason",
        )
        self.duration = meter.create_histogram(
            "aztp.decision.duration",
            unit="s",
            description="Time to take a tool-call decision (as the decision reports it)",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.active = True
        self.queue_depth = meter.create_observable_gauge(
            "aztp.audit.queue.depth",
            callbacks=[self._observe_queue],
            unit="{record}",
            description="Decision records queued for the audit writer, not yet written",
        )

    def record(self, decision: Decision) -> None:
        """The guard listener: one span (or event) and the metrics of one decision."""
        attrs = decision_attributes(decision)
        now = time.time_ns()
        current = self._trace.get_current_span()
        if current.is_recording() and _is_tool_span(current):
            current.add_event(SPAN_NAME, attributes=attrs, timestamp=now)
        else:
            span = self.tracer.start_span(
                SPAN_NAME, start_time=now - int(decision.latency_us * 1000), attributes=attrs
            )
            if decision.reason is Reason.AUTHORITY_UNAVAILABLE:
                span.set_status(self._error)  # something is broken, not a rule's verdict
            span.end(end_time=now)
        labels = {
            "aztp.reason": decision.reason.value,
            "aztp.allowed": decision.allowed,
            "aztp.enforced": decision.enforced,
        }
        self.decisions.add(1, labels)
        self.duration.record(decision.latency_us / 1e6, labels)

    def _observe_queue(self, _options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        if not self.active:
            return []
        stores = {}
        for guard in list(_guards):
            store = getattr(getattr(guard.client.backend, "authority", None), "store", None)
            if store is not None:
                stores[id(store)] = store
        return [Observation(sum(audit_backlog(s) for s in stores.values()))]


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def enable(tracer_provider: Any = None, meter_provider: Any = None) -> bool:
    """Record every decision of every guard (existing and future) as a span and in metrics.

    ``tracer_provider`` / ``meter_provider``: where to (default: OpenTelemetry's global
    providers, as the application configured them). Calling it again replaces the providers.
    Returns False, and installs nothing, when ``OTEL_SDK_DISABLED=true`` (the SDK would drop
    everything anyway: nothing should cost). Raises :class:`ImportError` with what to install
    when the ``otel`` extra is missing."""
    global _recorder
    if _sdk_disabled():
        log.info("OTEL_SDK_DISABLED=true: AZTP telemetry stays off")
        return False
    try:
        recorder = _Recorder(tracer_provider, meter_provider)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "opentelemetry":
            raise ImportError(
                "AZTP telemetry needs OpenTelemetry: pip install 'aztp-agents[otel]'"
            ) from exc
        raise
    with _lock:
        previous, _recorder = _recorder, recorder
        for guard in list(_guards):
            _swap(guard, previous, recorder)
    if previous is not None:
        previous.active = False
    return True


def disable() -> None:
    """Stop recording: every guard loses the listener (its fast path is as before)."""
    global _recorder
    with _lock:
        previous, _recorder = _recorder, None
        for guard in list(_guards):
            _swap(guard, previous, None)
    if previous is not None:
        previous.active = False


def enabled() -> bool:
    return _recorder is not None


def attach(guard: Guard) -> None:
    """Called by every new guard: remembered (weakly) for :func:`enable`, and given the
    listener when telemetry is on. The first call reads ``AZTP_OTEL``."""
    global _env_checked
    if not _env_checked:
        _env_checked = True
        if os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on"):
            try:
                enable()
            except ImportError as exc:  # asked for, not installed: say so, run without
                log.warning("%s=1 ignored: %s", ENV_VAR, exc)
    with _lock:
        _guards.add(guard)
        if _recorder is not None:
            guard.listeners.append(_recorder.record)


def _swap(guard: Guard, old: _Recorder | None, new: _Recorder | None) -> None:
    if old is not None:
        # bound methods compare equal by (function, instance): this removes exactly ours
        while old.record in guard.listeners:
            guard.listeners.remove(old.record)
    if new is not None:
        guard.listeners.append(new.record)
