"""The decision replica of a remote backend: the followed decision state, the change-feed
follower and the decision audit uploader (DESIGN.md section 4).

The replica is a :class:`~aztp_agents.decisions.DecisionState` loaded once from
``GET /v1/state`` (the user's view, at a change-log position). A background thread follows
the server's change feed (``GET /v1/state/changes``, resumed from the replica's position with
``Last-Event-ID``; the protocol: ``aztp_agents.server.change_feed``) and applies each write's
records in place with :func:`aztp_agents.decisions.changes.apply` — the embedded path's code,
O(change); it loads the whole state again only when the feed says ``reset``.
:meth:`DecisionReplica.decide`:

* feed heard from within ``stale_after`` seconds: decide locally, in memory, at the
  replica's revision (catching it up first — the records after its position, one request —
  if a write made through any remote backend of this process has been acknowledged since:
  a revocation acknowledged here is never followed by an allow here);
* feed silent longer than that: ask the server (``POST /v1/decisions``);
* that fails: raise :class:`~aztp_agents.errors.AuthorityUnavailableError` (the Guard turns
  it into a denial: fail closed).

Decisions taken locally are queued and sent in batches to ``POST /v1/decisions/audit`` by a
second thread.

Bound: elsewhere, a revocation is honoured by this process's decisions once the feed delivers
its record: the server's wake-up (a ~5 ms poll; LISTEN/NOTIFY on PostgreSQL) plus one event,
measured by ``bench/propagation.py``; if the feed cannot deliver, decisions stop being taken locally
``stale_after`` seconds after it was last heard.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..decisions import Decision, DecisionKey, Reason, Snapshot, decide_on
from ..decisions.changes import StateChange, UnknownChange, apply, decode
from ..decisions.rules import enrolled
from ..errors import AuthorityUnavailableError, AztpError
from ..policy import Statement
from ._routes import DECIDE_ROUTE, DECISION_AUDIT_ROUTE, FEED_PATH, STATE_ROUTE, WireRequest, clean
from ._transport import AsyncTransport, SyncTransport, typed_error

__all__ = ["DecisionReplica", "note_write", "snapshot_from_state"]

log = logging.getLogger("aztp_agents.remote")

# A write acknowledged through any remote backend of this process makes every replica here
# re-fetch before its next decision. Read without the lock (an int); bumped under it.
_writes_lock = threading.Lock()
_writes = 0


def note_write() -> None:
    """Record that a write was acknowledged (or may have been) through this process."""
    global _writes
    with _writes_lock:
        _writes += 1


def _json_safe(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if context is None:
        return None
    out: dict[str, Any] = {}
    for k, v in context.items():
        try:
            json.dumps(v)
            out[str(k)] = v
        except (TypeError, ValueError):
            out[str(k)] = str(v)
    return out


def _audit_record(
    decision: Decision, context: Mapping[str, Any] | None, decided_at: float
) -> dict[str, Any]:
    # decidedAt: when the decision was taken here; the server records it as the decision's
    # time (it must not stamp it when the batch arrives, later than a revocation it may follow).
    record = decision.to_dict()
    record["decidedAt"] = decided_at
    if context:
        record["context"] = {str(k): str(v) for k, v in context.items()}
    return record


def snapshot_from_state(data: Mapping[str, Any]) -> Snapshot:
    """The :class:`Snapshot` a ``GET /v1/state`` answer describes."""
    try:
        flows = {str(k): str(v) for k, v in dict(data.get("flows") or {}).items()}
        members = {str(k): frozenset(v) for k, v in dict(data.get("members") or {}).items()}
        revoked = {str(k): frozenset(v) for k, v in dict(data.get("flowRevoked") or {}).items()}
        links = frozenset((str(a), str(b)) for a, b in data.get("links") or ())
        flow_links = {
            str(f): frozenset((str(a), str(b)) for a, b in pairs)
            for f, pairs in dict(data.get("flowLinks") or {}).items()
        }
        policies = {
            str(k): tuple(Statement.model_validate(s) for s in v)
            for k, v in dict(data.get("policies") or {}).items()
        }
        return Snapshot(
            organization=str(data.get("organization") or ""),
            revision=int(data["revision"]),
            identities={str(k): str(v) for k, v in dict(data.get("identities") or {}).items()},
            members=members,
            flow_revoked=revoked,
            links=links,
            flow_links=flow_links,
            policies=policies,
            flows=flows,
            public_flows=frozenset(flows),  # the server sends only the flows this user may see
            position=int(data.get("position", 0)),
        )
    except Exception as exc:
        raise AuthorityUnavailableError(
            f"the server's decision state could not be read: {type(exc).__name__}"
        ) from None


class _Resume(Exception):
    """The replica missed records: reconnect to the feed from its position."""


def _events(lines: Sequence[str]) -> list[list[str]]:
    """Server-sent events' lines, one list per event (comments dropped)."""
    out: list[list[str]] = []
    event: list[str] = []
    for line in lines:
        if line == "":
            if event:
                out.append(event)
                event = []
        elif not line.startswith(":"):
            event.append(line)
    if event:
        out.append(event)
    return out


def _event_id(lines: Sequence[str]) -> int:
    """An event's ``id:`` (its position), or -1."""
    for line in lines:
        if line.startswith("id:"):
            with contextlib.suppress(ValueError):
                return int(line[3:].strip())
    return -1


class DecisionReplica:
    """Tool-call decisions from a local replica of one organization's decision state.

    ``stale_after``: seconds of feed silence after which decisions stop being taken locally.
    ``decision_timeout``: bound on a decision asked of the server. ``audit_batch`` /
    ``audit_interval``: size and period of the decision audit uploads.
    """

    def __init__(
        self,
        sync: SyncTransport,
        async_: AsyncTransport,
        *,
        stale_after: float,
        decision_timeout: float,
        audit_batch: int,
        audit_interval: float,
    ) -> None:
        self._sync = sync
        self._async = async_
        self.stale_after = float(stale_after)
        self.decision_timeout = float(decision_timeout)
        self.audit_batch = int(audit_batch)
        self.audit_interval = float(audit_interval)
        self._closed = False
        self._lock = threading.Lock()
        # Serializes every change to the replica: full loads and applied records (an RLock:
        # a catch-up may turn into a full load).
        self._reload_lock = threading.RLock()
        #: The server's state says which log position it is at: the feed resumes from there
        #: and sends records (else: an older server; every revision event reloads).
        self._resumable = False
        self._snapshot: Snapshot | None = None
        #: (position, the mark of the log entry there): the feed resumes from the replica's
        #: position saying which entry it saw there, so a server whose store has another
        #: history (restored from a backup, then written) answers with a reset
        self._marked: tuple[int, str] | None = None
        self._loaded_writes = -1  # process write count the replica is known to include
        self._feed_revision = -1
        self._feed_revision_at = 0.0
        self._heard = float("-inf")  # time.monotonic() of the last sign of life from the feed
        self._feed_connected = False
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._feed_client: httpx.Client | None = None
        self._ready = threading.Event()
        #: (decision, context, decided at: epoch seconds)
        self._audit: collections.deque[tuple[Decision, Mapping[str, Any] | None, float]] = (
            collections.deque(maxlen=100_000)
        )
        self._audit_dropped = 0
        self._audit_wake = threading.Event()
        self._auditor: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.stats = {
            "local": 0,
            "fallback": 0,
            "reloads": 0,
            "applied": 0,
            "catch_ups": 0,
            "feed_events": 0,
            "feed_reconnects": 0,
            "audit_sent": 0,
            "audit_dropped": 0,
        }

    def _check_open(self) -> None:
        if self._closed:
            raise AuthorityUnavailableError("this remote client is closed")

    @property
    def feed_revision(self) -> int:
        """The latest revision the change feed announced (-1 before it was heard)."""
        return self._feed_revision

    @property
    def feed_revision_at(self) -> float:
        """``time.monotonic()`` when :attr:`feed_revision` last increased."""
        return self._feed_revision_at

    @property
    def replica_revision(self) -> int:
        snap = self._snapshot
        return -1 if snap is None else snap.revision

    def feed_fresh(self) -> bool:
        """Whether the change feed was heard from within ``stale_after`` seconds."""
        return time.monotonic() - self._heard <= self.stale_after

    def start(self, wait: float | None = 5.0) -> bool:
        """Start following the change feed (done on the first decision anyway); with ``wait``,
        block up to that many seconds until the replica is loaded. True if it is."""
        self._ensure_threads()
        if wait:
            return self._ready.wait(wait)
        return self._ready.is_set()

    def _ensure_threads(self) -> None:
        if self._follower is not None or self._closed:
            return
        with self._start_lock:
            if self._follower is not None or self._closed:
                return
            self._feed_client = self._sync.stream_client(
                read_timeout=max(self.stale_after, 1.0) + 1.0
            )
            self._auditor = threading.Thread(
                target=self._audit_loop, name="aztp-remote-audit", daemon=True
            )
            self._auditor.start()
            follower = threading.Thread(target=self._follow, name="aztp-remote-feed", daemon=True)
            follower.start()
            self._follower = follower

    def _needs_reload(self) -> bool:
        snap = self._snapshot
        return snap is None or self._loaded_writes != _writes or snap.revision < self._feed_revision

    def _install(self, data: Any, writes_seen: int) -> Snapshot:
        snap = snapshot_from_state(data if isinstance(data, Mapping) else {})
        with self._reload_lock, self._lock:
            self._resumable = isinstance(data, Mapping) and "position" in data
            current = self._snapshot
            if current is None or snap.revision >= current.revision:
                self._snapshot = snap
                self._mark(snap.position, data.get("mark") if isinstance(data, Mapping) else None)
            self._loaded_writes = max(self._loaded_writes, writes_seen)
            self.stats["reloads"] += 1
            self._ready.set()
            return self._snapshot  # type: ignore[return-value]

    def _mark(self, position: int, mark: Any) -> None:
        self._marked = (position, mark) if isinstance(mark, str) else None

    def _resume_from(self, snap: Snapshot) -> tuple[int, str | None]:
        """The replica's position, and the mark of the entry there when known."""
        marked = self._marked
        return snap.position, marked[1] if marked and marked[0] == snap.position else None

    def _reload(self, *, force: bool = False) -> Snapshot:
        snap = self._snapshot
        if snap is not None and not force and self._resumable and self._needs_reload():
            # Behind the feed, or a write was acknowledged here: fetch the records since the
            # replica's position (O(change)); a full load only if that does not do.
            self._catch_up(snap, _writes)
            snap = self._snapshot
            if snap is not None and not self._needs_reload():
                return snap
        # One reload at a time from threads: a decision that finds the follower fetching the
        # state waits for that answer instead of asking again (it is at least as new).
        with self._reload_lock:
            snap = self._snapshot
            if snap is not None and not force and not self._needs_reload():
                return snap
            writes_seen = _writes
            return self._install(self._sync.call("state", STATE_ROUTE, {}), writes_seen)

    def _catch_up(self, snap: Snapshot, writes_seen: int) -> None:
        """Apply what the feed has after the replica's position, read in one request
        (``?after=N&once=true``: the events there are now, then the end).

        A resumed feed cannot always tell what this replica saw of a flow whose settings
        changed since its position (a flow created by the write just made, typically), and
        says ``reset``; the live feed, which knows, delivers the same writes as records
        within milliseconds, so wait (briefly) for it to pass the head instead of loading
        the whole state."""
        client = self._feed_client
        if client is None:
            return
        replicas = self._sync.config.replicas
        base = replicas.current
        position, mark = self._resume_from(snap)
        params: dict[str, Any] = {"after": position, "once": "true"}
        if mark is not None:
            params["mark"] = mark
        try:
            response = client.get(
                replicas.url(base, FEED_PATH),
                params=params,
                timeout=self.decision_timeout,
            )
        except httpx.HTTPError:
            raise AuthorityUnavailableError("the change feed could not be read") from None
        if response.status_code != 200:
            raise typed_error(response, "state changes")
        self.stats["catch_ups"] += 1
        events = _events(response.text.splitlines())
        head = max((_event_id(lines) for lines in events), default=snap.position)
        try:
            for lines in events:
                if any(line.startswith("event:") and line[6:].strip() == "reset" for line in lines):
                    self._await_position(head)
                    break
                self._on_event(lines)
        except _Resume:
            return  # a gap: the caller loads the whole state
        with self._lock:
            current = self._snapshot
            if current is not None and current.position >= head:
                self._loaded_writes = max(self._loaded_writes, writes_seen)

    def _await_position(self, position: int) -> None:
        """Wait (at most a second) for the live feed to bring the replica to ``position``."""
        deadline = time.monotonic() + min(1.0, self.stale_after)
        while self._feed_connected and time.monotonic() < deadline:
            snap = self._snapshot
            if snap is None or snap.position >= position:
                return
            time.sleep(0.001)

    async def _areload(self) -> Snapshot:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._reload)

    def _local(
        self,
        snap: Snapshot,
        started: float,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None,
        context: Mapping[str, Any] | None,
        enforce: bool,
    ) -> Decision:
        key = DecisionKey("", flow_id, agent, tool, tool_name, enforce)
        decision, _audit = decide_on(snap, key, context, started)
        self.stats["local"] += 1
        if len(self._audit) == self._audit.maxlen:
            self._audit_dropped += 1
        # made into a record by the audit thread; the time is the decision's, taken now
        self._audit.append((decision, context, time.time()))
        return decision

    def _decision_request(
        self,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None,
        context: Mapping[str, Any] | None,
        enforce: bool,
    ) -> WireRequest:
        return WireRequest(
            DECIDE_ROUTE.path,
            body=clean(
                {
                    "flowId": flow_id,
                    "agent": agent,
                    "tool": tool,
                    "toolName": tool_name,
                    "context": _json_safe(context),
                    "enforce": enforce,
                }
            ),
        )

    def _from_answer(self, data: Any, started: float) -> Decision:
        try:
            return Decision(
                allowed=bool(data["allowed"]),
                reason=Reason(data["reason"]),
                agent=data.get("agent"),
                tool=data.get("tool"),
                flow=data.get("flow"),
                revision=int(data.get("revision", -1)),
                latency_us=(time.perf_counter() - started) * 1e6,
                tool_name=data.get("toolName"),
                audit=bool(data.get("audit", False)),
                enforced=bool(data.get("enforced", True)),
                organization=data.get("organization"),
            )
        except Exception:
            raise AuthorityUnavailableError("the AZTP server gave an unusable decision") from None

    def _fallback(self, started: float, **kw: Any) -> Decision:
        self.stats["fallback"] += 1
        response = self._sync.send(
            "decide",
            DECIDE_ROUTE,
            self._decision_request(**kw),
            timeout=self.decision_timeout,
            attempts=1,
        )
        return self._from_answer(
            self._sync.finish("decide", DECIDE_ROUTE, response, {}, {}), started
        )

    async def _afallback(self, started: float, **kw: Any) -> Decision:
        self.stats["fallback"] += 1
        response = await self._async.send(
            "decide",
            DECIDE_ROUTE,
            self._decision_request(**kw),
            timeout=self.decision_timeout,
            attempts=1,
        )
        return self._from_answer(
            self._async.finish("decide", DECIDE_ROUTE, response, {}, {}), started
        )

    def _current(self) -> Snapshot | None:
        """The replica, if decisions may be taken on it now: the feed was heard from within
        ``stale_after``, and the replica includes the feed's latest revision and every write
        acknowledged through this process."""
        snap = self._snapshot
        if (
            snap is None
            or time.monotonic() - self._heard > self.stale_after
            or self._loaded_writes != _writes
            or snap.revision < self._feed_revision
            or self._closed
        ):
            return None
        return snap

    def enrolled(self, flow_id: str, agent: str, tools: Sequence[str]) -> bool:
        """Whether enrolling ``agent`` and ``tools`` in the flow would change nothing, on the
        replica while decisions may be taken on it (else False: the caller enrolls, with
        requests). The replica holds only the flows this user may see."""
        snap = self._current()
        return snap is not None and enrolled(snap, None, flow_id, agent, tools)

    def decide(
        self,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        enforce: bool = True,
    ) -> Decision:
        """The tool-call decision: local when the feed is fresh, else the server's; raises
        :class:`AuthorityUnavailableError` when neither can be had."""
        started = time.perf_counter()
        snap = self._current()
        if snap is None:
            self._check_open()
            self._ensure_threads()
            if self.feed_fresh():
                with contextlib.suppress(AztpError):
                    self._reload()
            snap = self._current()
            if snap is None:
                return self._fallback(
                    started,
                    flow_id=flow_id,
                    agent=agent,
                    tool=tool,
                    tool_name=tool_name,
                    context=context,
                    enforce=enforce,
                )
        return self._local(snap, started, flow_id, agent, tool, tool_name, context, enforce)

    async def adecide(
        self,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        enforce: bool = True,
    ) -> Decision:
        """:meth:`decide` on an event loop; any I/O it needs does not block the loop."""
        started = time.perf_counter()
        snap = self._current()
        if snap is None:
            self._check_open()
            self._ensure_threads()
            if self.feed_fresh():
                with contextlib.suppress(AztpError):
                    await self._areload()
            snap = self._current()
            if snap is None:
                return await self._afallback(
                    started,
                    flow_id=flow_id,
                    agent=agent,
                    tool=tool,
                    tool_name=tool_name,
                    context=context,
                    enforce=enforce,
                )
        return self._local(snap, started, flow_id, agent, tool, tool_name, context, enforce)

    def record_decision(self, decision: Decision, context: Mapping[str, Any] | None = None) -> None:
        """Queue a decision taken elsewhere in this process (e.g. a fail-closed denial) for the
        server's audit log; it is sent with the next batch once the server can be reached."""
        if len(self._audit) == self._audit.maxlen:
            self._audit_dropped += 1
        self._audit.append((decision, context, time.time()))
        self._ensure_threads()

    # ================================================================= change feed

    def _follow(self) -> None:
        """Follow ``GET /v1/state/changes`` until closed, reconnecting with backoff."""
        delay = 0.05
        refused = False
        client = self._feed_client
        assert client is not None
        replicas = self._sync.config.replicas
        while not self._stop.is_set():
            resume = False
            base = replicas.current  # the replica followed now (it moves when one fails)
            snap = self._snapshot
            headers = {}
            if snap is not None and self._resumable:
                position, mark = self._resume_from(snap)
                headers["Last-Event-ID"] = f"{position}:{mark}" if mark else str(position)
            try:
                with client.stream(
                    "GET", replicas.url(base, FEED_PATH), headers=headers
                ) as response:
                    if response.status_code != 200:
                        if response.status_code >= 500:
                            replicas.failed(base)
                        response.read()
                        err = typed_error(response, "state changes")
                        (log.warning if not refused else log.debug)("change feed refused: %s", err)
                        refused = True
                        raise err
                    self._feed_connected = True
                    self._heard = time.monotonic()
                    delay = 0.05
                    event: list[str] = []
                    for line in response.iter_lines():
                        if self._stop.is_set():
                            return
                        if line == "":
                            if event:
                                self._on_event(event)
                                event = []
                            continue
                        if line.startswith(":"):  # comment: a keep-alive
                            self._heard = time.monotonic()
                            continue
                        event.append(line)
            except _Resume:
                resume = True  # reconnect at once, from the replica's position
            except Exception as exc:
                if self._stop.is_set():
                    return
                if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    replicas.failed(base)  # gone: reconnect to the next replica
                log.debug("change feed interrupted: %s", type(exc).__name__)
            self._feed_connected = False
            self.stats["feed_reconnects"] += 1
            if self._stop.wait(0.0 if resume else delay):
                return
            delay = min(delay * 2, max(0.5, min(2.0, self.stale_after / 2)))

    def _on_event(self, lines: list[str]) -> None:
        """One server-sent event (the protocol: ``aztp_agents.server.change_feed``). Raises
        :class:`_Resume` when the replica missed records (reconnect from its position)."""
        name = "message"
        data_lines = []
        for line in lines:
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].lstrip())
        payload: dict[str, Any] = {}
        if data_lines:
            with contextlib.suppress(ValueError):
                parsed = json.loads("\n".join(data_lines))
                if isinstance(parsed, dict):
                    payload = parsed
        self._heard = time.monotonic()
        self.stats["feed_events"] += 1
        try:
            if name == "reset":
                snap = self._snapshot
                position = payload.get("position")
                if (
                    payload.get("entry") is True
                    and isinstance(position, int)
                    and snap is not None
                    and self._resumable
                    and snap.position >= position
                ):
                    return  # loaded at or after that write: nothing to load again
                self._on_reset()
            elif name == "changes":
                self._on_changes(payload)
            else:
                self._on_revision(payload)
        except AztpError as exc:
            log.debug("state reload failed: %s", type(exc).__name__)

    def _on_reset(self) -> None:
        """Load the whole state again; until then decide nothing locally (fail closed)."""
        with self._reload_lock:
            with self._lock:
                self._snapshot = None
            self._reload(force=True)

    def _on_changes(self, payload: Mapping[str, Any]) -> None:
        """Apply one ``changes`` event's records (the same :func:`apply` as the embedded
        decision state: O(change))."""
        try:
            start, position = int(payload["from"]), int(payload["position"])
            revision = int(payload["revision"])
            changes: list[StateChange] = [decode(r) for r in payload["records"]]
        except (KeyError, TypeError, ValueError):  # UnknownChange included: never skip one
            self._on_reset()
            return
        with self._reload_lock:
            snap = self._snapshot
            if snap is None or not self._resumable:
                self._reload()
                return
            if position <= snap.position:
                return  # already in the replica (loaded after it)
            if start > snap.position:
                raise _Resume  # records missed: resume from the replica's position
            try:
                apply(snap, changes, revision=max(revision, snap.revision), position=position)
            except UnknownChange:
                self._on_reset()
                return
            self._mark(position, payload.get("mark"))
            self.stats["applied"] += 1
            self._heard_revision(revision)

    def _heard_revision(self, revision: int) -> None:
        with self._lock:
            if revision > self._feed_revision:
                self._feed_revision = revision
                self._feed_revision_at = time.monotonic()

    def _on_revision(self, payload: Mapping[str, Any]) -> None:
        """``revision`` / ``heartbeat``: the stream is current as of ``revision``."""
        try:
            revision = int(payload["revision"])
        except (KeyError, TypeError, ValueError):
            return
        position = payload.get("position")
        if self._resumable and isinstance(position, int):
            with self._reload_lock:
                snap = self._snapshot
                if snap is None:
                    self._reload()
                    return
                if position > snap.position:
                    raise _Resume  # the stream is past records this replica has not got
                if position == snap.position and revision > snap.revision:
                    # nothing of this organization since: the replica is current as of it
                    snap.revision = revision
                self._heard_revision(revision)
            return
        # An older server (revision events only): reload on every new revision.
        with self._lock:
            if revision > self._feed_revision:
                self._feed_revision = revision
                self._feed_revision_at = time.monotonic()
                stale = True
            else:
                snap = self._snapshot
                stale = (
                    snap is None or revision < snap.revision
                )  # the server's state went back: re-read
                if stale:
                    self._feed_revision = revision
                    self._snapshot = None
        if stale:
            self._reload()

    # ================================================================= decision audit

    def _audit_loop(self) -> None:
        while not self._stop.is_set():
            self._audit_wake.wait(self.audit_interval)
            self._audit_wake.clear()
            self._flush_audit()

    def _flush_audit(self, timeout: float | None = None) -> None:
        while self._audit:
            batch: list[tuple[Decision, Mapping[str, Any] | None, float]] = []
            while self._audit and len(batch) < self.audit_batch:
                batch.append(self._audit.popleft())
            try:
                records = [_audit_record(d, c, t) for d, c, t in batch]
                response = self._sync.post(
                    DECISION_AUDIT_ROUTE.path,
                    {"decisions": records},
                    timeout=timeout or self._sync.config.timeout,
                )
                if response.status_code >= 400:
                    log.warning(
                        "the server refused %d decision audit records: HTTP %d",
                        len(batch),
                        response.status_code,
                    )
                else:
                    self.stats["audit_sent"] += len(batch)
            except httpx.TransportError as exc:
                # Not sent: put the records back (oldest first) and try again later.
                self._audit.extendleft(reversed(batch))
                log.debug("decision audit not sent yet: %s", type(exc).__name__)
                return
            except Exception as exc:  # never let the auditor die
                log.warning("decision audit failed: %s", type(exc).__name__)
                return
        if self._audit_dropped:
            self.stats["audit_dropped"] += self._audit_dropped
            log.warning("%d decision audit records were dropped (queue full)", self._audit_dropped)
            self._audit_dropped = 0

    # ================================================================= lifecycle

    def _stop_replica(self) -> None:
        """Stop the feed and audit threads, sending queued decision records first."""
        self._stop.set()
        self._audit_wake.set()
        if self._auditor is not None:
            self._auditor.join(timeout=2.0)
        if self._audit and not self._sync.is_closed:
            with contextlib.suppress(Exception):
                self._flush_audit(timeout=2.0)
        self._closed = True
        if self._feed_client is not None:
            with contextlib.suppress(Exception):
                self._feed_client.close()
        if self._follower is not None and self._follower is not threading.current_thread():
            # It may be blocked reading the feed until the next heartbeat (<= 1 s); it is a
            # daemon thread and ends by itself then, so do not wait long for it.
            self._follower.join(timeout=0.3)
