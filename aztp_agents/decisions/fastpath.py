"""The decision fast path: the one owner of how a tool-call decision is made, memoized and
audited.

It owns:

* :class:`DecisionKey`, what a decision depends on besides the state and a policy condition's
  context;
* the one memo: ``DecisionState.memo`` maps a key to the :class:`Made` decision (a new
  revision is a new state, with an empty memo);
* the audit layout of a decision record (:data:`DECISION_ACTION`, :data:`DECISION_LAYOUT`);
* :class:`LocalDecisions`, the embedded authority's per-organization states, and
  :class:`PrincipalDecisions`, the no-I/O decision point of one principal.

Why the code below looks the way it does: a tool call passes through here on every call of
every agent, and on that path each Python frame costs 2-5 us in situ (cold caches between two
stretches of framework code), far more than its instructions. So the allowed-and-memoized
call (:meth:`PrincipalDecisions.decide_now`) makes no call into other Python code but the
audit queue's ``put``: the key is built as a plain tuple in :class:`DecisionKey`'s field
order (equal to, and hashing like, a ``DecisionKey``; a NamedTuple's ``__new__`` is a Python
frame); a :class:`~.decision.Decision` is made with ``tuple.__new__`` from the memoized
fields before and after its latency; the change check reads the shared counter through a
C-level callable, and the bound on trusting an unconfirmed store (``confirmed_until``, see
``aztp_agents.store.files``) is one C-level clock read. Nothing outside this module knows
these layouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from .._util import epoch_iso
from ..audit import (
    CallContext,
    FieldData,
    FieldParts,
    QueuedRecord,
    canonical_json,
    flatten_context,
    register_layout,
)
from .changes import StateChange, UnknownChange, apply
from .decision import Decision, Reason
from .rules import decide_tool_call, enrolled
from .state import DecisionState

__all__ = [
    "DECISION_ACTION",
    "DECISION_LAYOUT",
    "DecisionKey",
    "LocalDecisions",
    "Made",
    "PrincipalDecisions",
    "decide_on",
    "decision_fields",
]

#: Audit action of tool-call decisions.
DECISION_ACTION = "decision.tool_call"
#: The fields of a decision's audit record, in the order :attr:`Made.audit` holds them.
DECISION_LAYOUT = ("allowed", "reason", "tool", "toolName", "flowId", "revision", "enforced")
register_layout(DECISION_ACTION, DECISION_LAYOUT)

T = TypeVar("T")

#: A memo grows with distinct calls on one state; past this it starts again.
MEMO_LIMIT = 100_000
#: By signal, a state may stay behind its organization's writes by at most this much signal
#: (two per write) while the decisions taken on it involve none of what they touched; past
#: it, the next decision catches up (one read of at most this many writes' entries, far
#: inside the change log's retention).
LAG_LIMIT = 2 * 256
#: ... and for at most this many decisions: then one catches it up, so the usual call is back
#: on the shortest path (a read per this many decisions).
BEHIND_USES = 1000

_perf_counter = time.perf_counter
_monotonic = time.monotonic
_time = time.time
_new_tuple = tuple.__new__


def _no_clock() -> tuple[int]:
    return (0,)


class DecisionKey(NamedTuple):
    """What a memoized decision depends on (with the state it was made on)."""

    user_id: str
    flow_id: str
    agent: str
    tool: str
    tool_name: str | None
    enforce: bool


class Made(NamedTuple):
    """A decision made on a state, as the memo keeps it: the :class:`Decision` fields before
    ``latency_us`` and after it (a repeat costs one new tuple), and the audit record's fields
    (:data:`DECISION_LAYOUT`)."""

    head: tuple[Any, ...]
    tail: tuple[Any, ...]
    audit: FieldData


def make(state: DecisionState, key: tuple[Any, ...], context: Mapping[str, Any] | None) -> Made:
    """Decide ``key`` on ``state`` (pure rules) and memoize it unless it depended on the
    context. A flow the user may not see is decided like one that does not exist."""
    user_id, flow_id, agent, tool, tool_name, enforce = key
    if not state.flow_visible(flow_id, user_id):
        reason, marked, detail = Reason.FLOW_UNKNOWN, False, None
    else:
        reason, marked, detail = decide_tool_call(
            state, flow_id=flow_id, agent=agent, tool=tool, tool_name=tool_name, context=context
        )
    allowed = reason is Reason.ALLOWED
    made = Made(
        (allowed, reason, agent, tool, flow_id, state.revision),
        (tool_name, marked, enforce, state.organization or None, detail),
        (allowed, reason.value, tool, tool_name, flow_id, state.revision, enforce),
    )
    if not (context and state.conditional):
        memo = state.memo
        if len(memo) > MEMO_LIMIT:
            memo.clear()
        memo[key] = made
    return made


def decide_on(
    state: DecisionState, key: DecisionKey, context: Mapping[str, Any] | None, started: float
) -> tuple[Decision, FieldData]:
    """The decision for ``key`` on ``state`` (from the memo when possible) and its audit
    fields; ``started``: ``time.perf_counter()`` when the decision began (its latency)."""
    made = None if context and state.conditional else state.memo.get(key)
    if made is None:
        made = make(state, key, context)
    head, tail, audit = made
    decision: Decision = _new_tuple(Decision, (*head, (_perf_counter() - started) * 1e6, *tail))
    return decision, audit


def decision_fields(decision: Decision) -> FieldData:
    """The audit fields (:data:`DECISION_LAYOUT`) of a decision taken elsewhere."""
    return (
        decision.allowed,
        decision.reason.value,
        decision.tool,
        decision.tool_name,
        decision.flow,
        decision.revision,
        decision.enforced,
    )


def with_context(audit: FieldData, context: Mapping[str, Any] | None) -> FieldData:
    """The record's data: the decision's fields, then the context frozen now (flat)."""
    if not context:
        return audit
    return FieldParts(
        (audit, context.flat if type(context) is CallContext else flatten_context(context))
    )


class Changes(Protocol):
    """What the cache needs of change detection (a :class:`~aztp_agents.store.changes.ChangeCursor`)."""

    revision: int
    confirmed_token: int | None
    stale: bool
    confirmed_until: float  # time.monotonic() until which the store's files count as confirmed
    listeners: list[Callable[[int], None]]
    #: ``token_reader()[0]``: the store's shared change counter (a C-level read), or None.
    token_reader: Callable[[], tuple[int]] | None

    def confirm(self) -> int: ...
    def confirm_files(self) -> None: ...
    def current_now(self) -> bool: ...


class Signals(Protocol):
    """Per-organization change signals (a :class:`aztp_agents.store.org_signals.OrgSignals`)."""

    def read(self, org_id: str) -> int | None:
        """The organization's signal when no write to it is in flight, else None (no I/O)."""
        ...

    def reader(self, org_id: str) -> Callable[[], tuple[int]]:
        """``reader()[0]``: the organization's raw signal (odd: in flight), a C-level read."""
        ...

    def clock_reader(self) -> Callable[[], tuple[int]]:
        """``clock_reader()[0]``: the store's clock (read before a signal), a C-level read."""
        ...

    def subject_reader(self, org_id: str, subject: str) -> Callable[[], tuple[int]]:
        """``subject_reader(...)()[0]``: the clock value of the last write that touched the
        subject (an identity's or a flow's id) or another sharing its slot; C-level."""
        ...


class LogEntry(Protocol):
    """One write's records for one organization (a :class:`aztp_agents.store.change_log.LogEntry`)."""

    @property
    def seq(self) -> int: ...
    @property
    def revision(self) -> int: ...
    @property
    def changes(self) -> Sequence[StateChange]: ...


class LogTail(Protocol):
    """What a reader behind the head must apply (a :class:`aztp_agents.store.change_log.Since`)."""

    @property
    def entries(self) -> Sequence[LogEntry]: ...
    @property
    def head(self) -> int: ...
    @property
    def compacted(self) -> bool: ...


class ChangeLog(Protocol):
    """What the cache needs of the store's change log (blocking reads)."""

    def tail(self, org_id: str, position: int) -> tuple[int, LogTail]:
        """The store's revision and the organization's entries after ``position``, read
        together. Raises :class:`~.changes.UnknownChange` for a record it cannot read."""
        ...

    def committed(self) -> tuple[int | None, int]:
        """The store's change token (None: none), then its revision, read in that order."""
        ...


class LocalDecisions:
    """The decision states of every organization an embedded authority serves, kept current
    by applying the change log, and the decisions taken on them (audited).

    A state is loaded whole once per organization (``load``). After that it is kept current
    one of two ways:

    * **By signal** (a SQLite file: the store's shared change counter and per-organization
      change ``signals``, see ``aztp_agents.store.org_signals``). A state is current while the
      counter equals its ``token``. When the counter moved, the organization's signal says
      whether anything of *this* organization was written since the state's read: if not (a
      write in another organization, an audit commit), the state is current again at the cost
      of a memory read; if so, one read of the organization's log tail, applied in place.
      Before that read, the memoized decision of a call whose agent, tool and flow no write
      since touched (their subject signals) is still the answer: the state stays behind (by
      at most :data:`LAG_LIMIT`) while the writes are about other identities.
    * **By revision** (otherwise, e.g. PostgreSQL): when the store's revision moves
      (``changes``, this reader's change cursor, tells), the next decision of an organization
      reads its log tail and applies it. A state is current when its ``revision`` is at least
      the cursor's.

    Either way only the entries after the state's position are applied (O(change)); a state
    whose entries were compacted away, or that meets a record this version cannot read, is
    dropped and loaded again. A write made through this process is applied at once, after its
    commit (:meth:`applied`).

    ``log``: the store's change log; ``audit_queue``: returns the audit writer's ``put``
    (called once, on the first record, which starts the writer)."""

    def __init__(
        self,
        load: Callable[[str], DecisionState],
        log: ChangeLog,
        changes: Changes,
        audit_queue: Callable[[], Callable[[tuple[str, QueuedRecord]], None]],
        signals: Signals | None = None,
    ) -> None:
        self._load = load
        self._log = log
        self.changes = changes
        self._signals = signals
        #: ``_read_clock()[0]``: the store's clock (see org_signals); 0 without signals.
        self._read_clock = _no_clock if signals is None else signals.clock_reader()
        #: org_id -> subject -> its slot's reader (see :meth:`untouched`)
        self._subject_readers: dict[str, dict[str, Callable[[], tuple[int]]]] = {}
        self._states: dict[str, DecisionState] = {}
        self._lock = threading.Lock()
        #: Per thread: the revision of the write it just committed and applied (see
        #: :meth:`invalidate`).
        self._own = threading.local()
        self._audit_queue = audit_queue
        #: Queues ``(org_id, record)`` for the audit writer (started on the first record).
        self.audit_put: Callable[[tuple[str, QueuedRecord]], None] = self._first_audit_put

    def _first_audit_put(self, item: tuple[str, QueuedRecord]) -> None:
        self.audit_put = self._audit_queue()
        self.audit_put(item)

    #: Subject readers kept per organization; past this its table starts again.
    SUBJECTS_LIMIT = 65536

    def subject_readers(self, org_id: str) -> dict[str, Callable[[], tuple[int]]]:
        """The organization's table of subject readers (for :meth:`untouched`)."""
        return self._subject_readers.setdefault(org_id, {})

    def untouched(
        self,
        org_id: str,
        readers: dict[str, Callable[[], tuple[int]]],
        state: DecisionState,
        signal: int | None,
        flow_id: str,
        agent: str,
        tool: str,
    ) -> bool:
        """No write to the organization touched the flow, the agent or the tool since the
        state's read at its ``clock`` (their subject slots, see ``org_signals``): a decision
        about them on that state is the decision now, though the organization was written
        since (its ``signal`` now: at most :data:`LAG_LIMIT` past the state's). No I/O.
        False past :data:`BEHIND_USES` such answers (time the state caught up).
        ``readers``: :meth:`subject_readers` of ``org_id``, the state's organization."""
        clock, held, signals = state.clock, state.signal, self._signals
        if (
            clock is None
            or held is None
            or signal is None
            or signal - held > LAG_LIMIT
            or signals is None
            or state.behind_uses >= BEHIND_USES
        ):
            return False
        state.behind_uses += 1
        for subject in (flow_id, agent, tool):
            read = readers.get(subject)
            if read is None:
                if len(readers) >= self.SUBJECTS_LIMIT:
                    readers.clear()
                read = readers[subject] = signals.subject_reader(org_id, subject)
            if read()[0] > clock:
                return False
        return True

    def catch_up(
        self, org_id: str, token: int = -1, signal: int | None = None, clock: int | None = None
    ) -> None:
        """Bring the organization's held state to the log's head: one read (the store's
        revision, the organization's head and the entries after the state's position,
        together), then the entries applied in place. Serialized with every other apply:
        :func:`.changes.apply` mutates in place. ``token``, ``clock`` and ``signal``: read
        before this (by signal, in that order), what the state is then current at. Blocking."""
        with self._lock:
            state = self._states.get(org_id)
            if state is None:
                return
            try:
                revision, tail = self._log.tail(org_id, state.position)
            except UnknownChange:
                tail = None
            if tail is None or not _apply_tail(state, tail):
                del self._states[org_id]  # loaded again, whole, by the next decision
                return
            if state.revision < revision:
                # Current as of ``revision`` (nothing of this organization changed since its
                # last entry): its memo stays valid.
                state.revision = revision
            if token != -1:
                state.token, state.signal = token, signal
                state.clock = None if signal is None else clock
                state.behind_uses = 0

    def applied(
        self, org_id: str, position: int, revision: int, changes: Sequence[StateChange]
    ) -> None:
        """A write through this process committed ``changes`` at ``position``: apply them
        now when the held state is right behind it (else the next catch-up reads them)."""
        with self._lock:
            state = self._states.get(org_id)
            current = state is None or state.position == position - 1
            if state is not None and current:
                before = state.signal
                apply(state, changes, revision=revision, position=position)
                if before is not None:
                    self._confirm_own_signal(org_id, state, before)
        # What invalidate() may confirm without a read (only if this was applied, or not held)
        self._own.revision = revision if current else None

    def _confirm_own_signal(self, org_id: str, state: DecisionState, before: int) -> None:
        """By signal, after this process's write to the organization, applied to a state that
        was current at signal ``before``: if the signal moved by exactly that write (+2: begun,
        ended), nothing else of the organization was written, and the state is current at
        the counter read before it. Else the next decision reads the tail."""
        read_token, signals = self.changes.token_reader, self._signals
        if read_token is None or signals is None:
            return
        token = read_token()[0]
        clock = self._read_clock()[0]
        signal = signals.read(org_id)
        if signal == before + 2:
            state.token, state.signal, state.clock = token, signal, clock
            state.behind_uses = 0

    def invalidate(self) -> None:
        """A write here committed: confirm before the next decision — unless it was this
        thread's own write, applied at once, and the only change (see :meth:`_confirm_own`).
        By signal, nothing to do: the write moved the store's counter, so the next decision
        checks the organization's signal anyway."""
        own, self._own.revision = getattr(self._own, "revision", None), None
        if self._signals is not None and self.changes.token_reader is not None:
            return
        if own is not None and self._confirm_own(own):
            return
        self.changes.stale = True

    def _confirm_own(self, revision: int) -> bool:
        """After this process's write at ``revision``, already applied: if every held state
        was current at ``revision - 1`` (the cursor's confirmed revision) and the store's
        revision is still ``revision`` when read *after* its change token, nothing else was
        committed that changes decision state up to that token — so every held state is
        current there, and the next decision needs no read at all. False: it confirms."""
        changes = self.changes
        if changes.stale or changes.revision != revision - 1:
            return False
        try:
            token, now = self._log.committed()
        except Exception:  # the next decision confirms (and fails closed if it must)
            return False
        if token is None or now != revision:
            return False
        with self._lock:
            for state in self._states.values():
                if state.revision == revision - 1:  # current before it: current after it
                    state.revision = revision
            changes.revision = revision
            changes.confirmed_token = token
        return True

    def state(self, org_id: str) -> DecisionState:
        """The organization's state, current as of the latest commit here or in any other
        process sharing the store (one shared-memory read to know). Blocking."""
        changes, signals = self.changes, self._signals
        read_token = changes.token_reader
        if read_token is None or signals is None:
            return self._state_by_revision(org_id)
        changes.confirm_files()
        token = read_token()[0]  # first: the state is current at most at the token read
        state = self._states.get(org_id)
        if state is not None and state.token != token:
            clock = self._read_clock()[0]  # before the signal: see org_signals
            signal = signals.read(org_id)
            if signal is not None and signal == state.signal:
                state.token = token  # nothing of this organization written since its read
            else:
                self.catch_up(org_id, token, signal, clock)
                state = self._states.get(org_id)
        if state is None:
            clock = self._read_clock()[0]
            signal = signals.read(org_id)  # before the read it stands for
            loaded = self._load(org_id)
            loaded.token, loaded.signal = token, signal
            loaded.clock = None if signal is None else clock
            with self._lock:
                state = self._states.setdefault(org_id, loaded)
        return state

    def _state_by_revision(self, org_id: str) -> DecisionState:
        """:meth:`state` without signals: confirm the store's revision first."""
        revision = self.changes.confirm()
        state = self._states.get(org_id)
        if state is not None and state.revision < revision:
            # Something was committed since this state was last known current: catch this
            # organization up (a write elsewhere costs it one read, no apply).
            self.catch_up(org_id)
            state = self._states.get(org_id)
        if state is None:
            loaded = self._load(org_id)
            with self._lock:
                state = self._states.setdefault(org_id, loaded)
        return state

    def view(self, org_id: str, read: Callable[[DecisionState], T]) -> T:
        """``read(state)`` on the organization's current state, serialized with every apply
        (a consistent view: what ``read`` copies is the state at one position), its
        ``revision`` the store's latest one it is current at (for followers, who compare it
        with the change feed's revisions). Blocking."""
        # Read before confirming the state: the state is current at that revision too. (A
        # state confirmed by its organization's signal keeps the revision of that
        # organization's last write, which another organization's writes have passed.)
        _, revision = self._log.committed()
        state = self.state(org_id)
        with self._lock:
            # a state dropped meanwhile (compacted past) is still whole at its own position
            state = self._states.get(org_id, state)
            if state.revision < revision:
                state.revision = revision
            return read(state)

    def cached_state(self, org_id: str) -> DecisionState | None:
        """The state without any I/O, or None when it must be loaded or caught up first
        (:meth:`state`)."""
        changes, signals = self.changes, self._signals
        read_token = changes.token_reader
        if read_token is None or signals is None:
            if not changes.current_now():
                return None
            state = self._states.get(org_id)
            if state is None or state.revision < changes.revision:
                return None
            return state
        state = self._states.get(org_id)
        if state is None or _monotonic() >= changes.confirmed_until:
            return None
        token = read_token()[0]
        if state.token != token:
            signal = signals.read(org_id)
            if signal is None or signal != state.signal:
                return None
            state.token = token
        return state

    def decide(
        self,
        org_id: str,
        key: DecisionKey,
        context: Mapping[str, Any] | None = None,
        state: DecisionState | None = None,
    ) -> Decision:
        """The decision for ``key`` (blocking unless ``state`` is given), audited."""
        started = _perf_counter()
        if state is None:
            state = self.state(org_id)
        decision, audit = decide_on(state, key, context, started)
        self.audit_put(
            (org_id, (_time(), DECISION_ACTION, key[0], key[2], with_context(audit, context)))
        )
        return decision

    def memoized(
        self,
        org_id: str,
        key: tuple[Any, ...],
        context: Mapping[str, Any] | None = None,
        flat_context: FieldData | None = None,
    ) -> Decision | None:
        """The decision for ``key``, audited, when this exact call was already decided and
        **allowed** on the current state; else ``None`` and nothing is audited. No I/O.
        ``flat_context``: the context already flattened (as :attr:`CallContext.flat`)."""
        started = _perf_counter()
        changes = self.changes
        read_token = changes.token_reader
        state = self._states.get(org_id)
        if (
            read_token is None
            or state is None
            or _monotonic() >= changes.confirmed_until  # the store's files: re-confirm
            or ((context or flat_context) and state.conditional)
        ):
            return None
        if read_token()[0] != state.token and self.cached_state(org_id) is not state:
            # written since: still the answer if the write was about other identities
            signal = self._signals.read(org_id) if self._signals is not None else None
            readers = self.subject_readers(org_id)
            if not self.untouched(org_id, readers, state, signal, key[1], key[2], key[3]):
                return None  # not confirmed current without I/O
        made = state.memo.get(key)
        if made is None or not made[0][0]:
            return None
        head, tail, audit = made
        decision: Decision = _new_tuple(Decision, (*head, (_perf_counter() - started) * 1e6, *tail))
        if flat_context:
            audit = FieldParts((audit, flat_context))
        elif context:
            audit = with_context(audit, context)
        self.audit_put((org_id, (_time(), DECISION_ACTION, key[0], key[2], audit)))
        return decision

    def record(
        self,
        org_id: str,
        user_id: str,
        decision: Decision,
        context: Mapping[str, Any] | None,
        decided_at: float | None = None,
    ) -> None:
        """Queue the audit record of a decision taken elsewhere: a fail-closed denial (now),
        or a remote enforcement point's decision, recorded at the time it was taken there
        (``decided_at``) with the time it reached us as ``receivedAt``: the log must not
        show a decision taken before a revocation as if it came after it."""
        received = _time()
        data: str | FieldData
        if decided_at is None:
            data = with_context(decision_fields(decision), context)
        else:
            doc: dict[str, Any] = dict(zip(DECISION_LAYOUT, decision_fields(decision), strict=True))
            if context:
                doc["context"] = {str(k): v for k, v in context.items()}
            doc["receivedAt"] = epoch_iso(received)
            data = canonical_json(doc)
        ts = received if decided_at is None else decided_at
        self.audit_put((org_id, (ts, DECISION_ACTION, user_id, decision.agent, data)))

    def for_principal(self, org_id: str, user_id: str) -> PrincipalDecisions:
        return PrincipalDecisions(self, org_id, user_id)


def _apply_tail(state: DecisionState, tail: LogTail) -> bool:
    """Apply ``tail`` to ``state``; False when the state must be loaded again instead
    (compacted past it, a gap, or a log behind it: a replaced store)."""
    if tail.compacted or tail.head < state.position:
        return False
    for entry in tail.entries:
        if entry.seq != state.position + 1:
            return False
        apply(state, entry.changes, revision=entry.revision, position=entry.seq)
    return True


class PrincipalDecisions:
    """The embedded decision point of one principal (see ``aztp_agents.guard.DecisionPoint``):
    decisions from the in-memory state, loaded in a worker thread when it must be."""

    #: In-memory decisions cannot hang: the guard calls :meth:`decide` without a timeout.
    bounded = True

    def __init__(self, cache: LocalDecisions, org_id: str, user_id: str) -> None:
        self.cache = cache
        self.changes = cache.changes  # fixed for the cache's life: one attribute read less
        self.org_id = org_id
        self.user_id = user_id
        signals = cache._signals
        #: ``read_signal()[0]``: the organization's raw change signal, read without a frame.
        self.read_signal = None if signals is None else signals.reader(org_id)
        #: The cache's subject readers for this organization (see LocalDecisions.untouched).
        self._subjects = cache.subject_readers(org_id)

    def decide_now(
        self,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None,
        enforce: bool,
        context: Mapping[str, Any] | None = None,
        flat_context: FieldData | None = None,
    ) -> Decision | None:
        """The decision without any I/O (audited), or ``None`` when the state must be loaded
        first. ``flat_context`` may stand for ``context``: alternating str keys and plain
        values; a mapping is made from it only if the call needs more than the memo."""
        started = _perf_counter()
        cache = self.cache
        # --- the usual call: already decided and allowed on the current state (inlined
        # LocalDecisions.memoized: no frame)
        changes = self.changes
        read_token = changes.token_reader
        key = (self.user_id, flow_id, agent, tool, tool_name, enforce)  # DecisionKey order
        state = cache._states.get(self.org_id)
        if (
            read_token is not None
            and state is not None
            and _monotonic() < changes.confirmed_until  # else re-confirm the store's files
            and not ((context or flat_context) and state.conditional)
        ):
            token = read_token()[0]
            current = token == state.token  # confirmed at the store's latest commit
            if not current:  # a commit since: by signal, was it this organization's?
                read_signal = self.read_signal
                if read_signal is not None:
                    signal = read_signal()[0]
                    # (an odd signal, a write in flight, never equals a held one: always even)
                    if signal == state.signal:
                        state.token, current = token, True
                    elif cache.untouched(
                        self.org_id, self._subjects, state, signal, flow_id, agent, tool
                    ):
                        # written since, but nothing this call involves: the memo's answer
                        # holds (the state itself stays behind; see LocalDecisions)
                        current = True
            made = state.memo.get(key) if current else None
            if made is not None and made[0][0]:
                head, tail, audit = made
                decision: Decision = _new_tuple(
                    Decision, (*head, (_perf_counter() - started) * 1e6, *tail)
                )
                if flat_context:
                    audit = FieldParts((audit, flat_context))
                elif context:  # with_context() inlined
                    audit = FieldParts(
                        (
                            audit,
                            context.flat
                            if type(context) is CallContext
                            else flatten_context(context),
                        )
                    )
                cache.audit_put(
                    (self.org_id, (_time(), DECISION_ACTION, self.user_id, agent, audit))
                )
                return decision
        # --- anything else that needs no I/O
        if context is None and flat_context:
            context = CallContext(zip(flat_context[::2], flat_context[1::2], strict=True))
        state = cache.cached_state(self.org_id)
        if state is None:
            return None
        decision, audit = decide_on(state, key, context, started)  # type: ignore[arg-type]
        cache.audit_put(
            (
                self.org_id,
                (_time(), DECISION_ACTION, self.user_id, agent, with_context(audit, context)),
            )
        )
        return decision

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
        """The decision, loading the state if it must (blocking)."""
        return self.cache.decide(
            self.org_id,
            (self.user_id, flow_id, agent, tool, tool_name, enforce),  # type: ignore[arg-type]
            context,
        )

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
        """:meth:`decide` on an event loop: the state, if it must be loaded, in a thread."""
        import anyio.to_thread

        state = self.cache.cached_state(self.org_id)
        if state is None:
            state = await anyio.to_thread.run_sync(self.cache.state, self.org_id)
        return self.cache.decide(
            self.org_id,
            (self.user_id, flow_id, agent, tool, tool_name, enforce),  # type: ignore[arg-type]
            context,
            state,
        )

    def record_decision(self, decision: Decision, context: Mapping[str, Any] | None = None) -> None:
        self.cache.record(self.org_id, self.user_id, decision, context)

    def enrolled(self, flow_id: str, agent: str, tools: Sequence[str]) -> bool:
        """Whether enrolling ``agent`` and ``tools`` in the flow would change nothing, on the
        current state (blocking only when the state must be loaded or caught up)."""
        return enrolled(self.cache.state(self.org_id), self.user_id, flow_id, agent, tools)
