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

The listener only queues the decision (with the caller's OpenTelemetry context, so a span's
parent is right); a worker thread makes the spans and records the metrics, back-dated to
when the decision was taken. :func:`flush` waits for it (run at exit, and by
:func:`disable`).

Why a listener and nothing in the decision path: a guard already calls its listeners with
every decision and skips them with one attribute check (``if self.listeners``) when there are
none, so with telemetry off the memoized fast path runs exactly as before — no import of
OpenTelemetry, no call, no allocation. This module imports nothing of OpenTelemetry until
:func:`enable` runs.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
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
    "flush",
    "stats",
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
#: Most decisions waiting for the worker; past it, decisions are not recorded (memory stays
#: bounded; the audit log still has every one).
MAX_PENDING = 100_000
#: How long disable() (and exit) waits for queued decisions to be recorded.
_STOP_TIMEOUT = 10.0


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
    backlog = getattr(store, "audit_backlog", None)
    try:
        return int(backlog()) if backlog is not None else 0
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
    """Turns decisions into spans and metrics (made by :func:`enable`; holds the instruments).

    The listener (:meth:`record`) runs on the tool call's thread and only queues the decision
    with the caller's context and the time; a worker thread makes the spans and records the
    metrics. Why: on that thread, between two stretches of framework code, the SDK's span and
    metric calls run with cold caches and cost several times what they cost in a loop
    (``bench/telemetry.py`` prints both); the worker runs them back to back. Only an event on
    a framework's tool-call span is added at once (that span may end soon after)."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import context, metrics, trace
        from opentelemetry.trace import Status, StatusCode

        from . import __version__

        self._get_context = context.get_current
        self._span_in = trace.get_current_span
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
        #: (decision, caller's context or None when only metrics are left, time_ns), a flush
        #: (an Event to set), or None (stop).
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._put = self._queue.put
        self._wake = threading.Event()
        #: CPU seconds the worker thread spent (for the benchmark).
        self.worker_cpu_seconds = 0.0
        self.recorded = 0
        #: Decisions not recorded because MAX_PENDING were already waiting.
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="aztp-telemetry", daemon=True)
        self._thread.start()

    def record(self, decision: Decision) -> None:
        """The guard listener: queue one decision (its span or event, and its metrics)."""
        ctx = self._get_context()
        current = self._span_in(ctx)
        if current.is_recording() and _is_tool_span(current):
            current.add_event(
                SPAN_NAME, attributes=decision_attributes(decision), timestamp=time.time_ns()
            )
            ctx = None
        if self._queue.qsize() >= MAX_PENDING:  # the worker cannot keep up: drop, never grow
            self.dropped += 1
            if self.dropped == 1:
                log.warning("telemetry cannot keep up: dropping decisions (still audited)")
            return
        self._put((decision, ctx, time.time_ns()))

    #: After the first queued decision the worker lets more gather this long, then records
    #: them back to back (one wake-up per window, not per decision; flush() cuts it short).
    LINGER_S = 0.05

    def _run(self) -> None:
        clock = time.thread_time
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            batch = [get()]
            self._wake.wait(self.LINGER_S)
            self._wake.clear()
            started = clock()
            with contextlib.suppress(queue.Empty):
                while len(batch) < 10_000:
                    batch.append(get_nowait())
            stop = False
            for item in batch:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    item.set()
                else:
                    try:
                        self._emit(*item)
                    except Exception:  # telemetry must never take anything down with it
                        log.debug("could not record a decision", exc_info=True)
            self.worker_cpu_seconds += clock() - started
            if stop:
                return

    def _emit(self, decision: Decision, ctx: Any, now: int) -> None:
        if ctx is not None:
            span = self.tracer.start_span(
                SPAN_NAME,
                context=ctx,
                start_time=now - int(decision.latency_us * 1000),
                attributes=decision_attributes(decision),
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
        self.recorded += 1

    def flush(self, timeout: float) -> bool:
        done = threading.Event()
        self._put(done)
        self._wake.set()
        return done.wait(timeout)

    def stop(self, timeout: float) -> None:
        """Record what is queued, then end the worker."""
        self._put(None)
        self._wake.set()
        self._thread.join(timeout)

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
    _install(recorder)
    return True


def disable() -> None:
    """Stop recording: every guard loses the listener (its fast path is as before)."""
    _install(None)


def _install(recorder: _Recorder | None) -> None:
    """Make ``recorder`` every guard's one telemetry listener (None: none), and stop the one
    it replaces."""
    global _recorder
    with _lock:
        previous, _recorder = _recorder, recorder
        for guard in list(_guards):
            _swap(guard, previous, recorder)
    if previous is not None:
        previous.active = False
        previous.stop(_STOP_TIMEOUT)


def flush(timeout: float = 10.0) -> bool:
    """Wait until every decision taken so far is recorded (spans ended, metrics counted);
    False if that took longer than ``timeout``. Also run at exit."""
    recorder = _recorder
    return True if recorder is None else recorder.flush(timeout)


def enabled() -> bool:
    return _recorder is not None


def stats() -> dict[str, float]:
    """What the current recorder did: ``recorded`` decisions, ``dropped`` ones (the worker
    fell :data:`MAX_PENDING` behind) and the CPU seconds its worker thread spent
    (``worker_cpu_seconds``); zeros when off. For benchmarks and checks."""
    recorder = _recorder
    if recorder is None:
        return {"recorded": 0, "dropped": 0, "worker_cpu_seconds": 0.0}
    return {
        "recorded": recorder.recorded,
        "dropped": recorder.dropped,
        "worker_cpu_seconds": recorder.worker_cpu_seconds,
    }


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


atexit.register(flush, _STOP_TIMEOUT)
