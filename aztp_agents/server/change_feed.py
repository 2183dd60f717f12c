"""The change feed's content: one follower's place in its organization's change log, the
records it may be sent (filtered for its user), and the full state it loads on a reset.

The protocol (``GET v1/state/changes``, server-sent events; every event has
``id: <organization position>``, the position the stream has delivered through):

* ``changes``: ``{"from": F, "position": P, "revision": R, "mark": M, "records": [...]}`` —
  apply the records (every write's records in (F, P], filtered) to a state at a position in
  [F, P]; a follower behind F missed something and resumes from its own position;
* ``reset``: ``{"position": P, "revision": R, "mark": M}`` — load the whole state
  (``GET v1/state``, at a position of at least P) and apply what follows after it. Sent to a
  follower with no position, one behind the compaction point or ahead of the log, one whose
  position names another entry than this store's (a store restored from a backup and
  written again), and —
  with ``"entry": true`` — when the write at P cannot be sent as records: it changes which
  flows the user may see (:mod:`aztp_agents.decisions.views`). A follower whose state is
  already at P or past it may ignore an ``entry`` reset (never another one);
* ``revision`` (a write anywhere in the store; the stream is current as of revision R) and
  ``heartbeat`` (nothing else for a second): ``{"revision": R, "position": P}``.

``M`` is the mark of the entry at ``P`` (``aztp_agents.store.change_log.mark``; ``GET
v1/state`` has its position's in ``data.mark``). A follower resumes with ``Last-Event-ID:
P:M`` (or ``?after=P&mark=M``); a bare ``P`` (an older follower) is resumed unchecked.

:class:`FeedCursor` is blocking (store reads): the async stream
(:meth:`~aztp_agents.server.feed.StoreWatcher.events`) calls it in a worker thread.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from ..authority import Authority
from ..decisions.changes import UnknownChange, encode
from ..decisions.state import DecisionState
from ..decisions.views import (
    Visibility,
    filter_changes,
    mark_unknown,
    settings_touched,
    user_view,
    visibility,
)
from ..store import change_log

__all__ = ["Event", "FeedCursor", "position_mark", "sse", "state_chunks", "user_state"]

#: (event name, position, data)
Event = tuple[str, int, dict[str, Any]]


def sse(event: Event) -> bytes:
    name, position, data = event
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {position}\nevent: {name}\ndata: {body}\n\n".encode()


class FeedCursor:
    """One follower's stream: its position in the organization's log, each flow's visibility
    to its user at that position (for :func:`~aztp_agents.decisions.views.filter_changes`),
    and the store revision it was last told."""

    def __init__(self, authority: Authority, org_id: str, user_id: str | None) -> None:
        self.authority = authority
        self.org_id = org_id
        self.user_id = user_id
        self.position = 0
        #: The mark of the entry at :attr:`position` (None: not known).
        self.mark: str | None = None
        self.revision = -1
        self.visible: Visibility = {}

    def _restart(self) -> list[Event]:
        """Tell the follower to load its state; follow on from the server's state."""

        def read(state: DecisionState) -> tuple[int, int, dict[str, bool | None]]:
            return state.position, state.revision, visibility(state, self.user_id)

        self.position, revision, self.visible = self.authority.decisions.view(self.org_id, read)
        self.mark = position_mark(self.authority, self.org_id, self.position)
        data = {"position": self.position, "revision": revision, "mark": self.mark}
        return [("reset", self.position, data)]

    def open(self, after: int | None, mark: str | None = None) -> list[Event]:
        """The first events: a reset, or the records after ``after`` (a resumed follower
        that saw the entry marked ``mark`` there: None, unchecked)."""
        if after is None or after < 0:
            return self._restart()

        def read(state: DecisionState) -> tuple[int, dict[str, bool | None]]:
            return state.position, visibility(state, self.user_id)

        position, visible = self.authority.decisions.view(self.org_id, read)
        if after > position:  # ahead of the log: not this store's positions
            return self._restart()
        store = self.authority.store
        try:
            with store.read() as conn:
                tail = change_log.since(conn, self.org_id, after)
                here = change_log.mark_at(conn, self.org_id, after)
        except UnknownChange:
            return self._restart()
        if tail.compacted or tail.head < position:
            return self._restart()
        if mark is not None and mark != here:
            return self._restart()  # its position names another history's entry
        # The visibility known is the server state's, at ``position``: it holds at ``after``
        # for every flow whose settings no write in (after, position] set; the others are
        # unknown there (a record about one resets).
        mark_unknown(
            visible,
            {f for e in tail.entries if e.seq <= position for f in settings_touched(e.changes)},
        )
        self.visible, self.position, self.mark = visible, after, here
        return self._events(tail.entries)

    def poll(self) -> list[Event]:
        """The events for what was written since the last call; a ``revision`` event last
        when the store's revision moved."""
        store = self.authority.store
        try:
            with store.read() as conn:
                revision = store.revision(conn)
                tail = change_log.since(conn, self.org_id, self.position)
        except UnknownChange:
            return self._restart()
        if tail.compacted or tail.head < self.position:
            return self._restart()
        events = self._events(tail.entries)
        if revision != self.revision:
            self.revision = revision
            events.append(self.tick("revision"))
        return events

    def tick(self, name: str) -> Event:
        """A ``revision`` or ``heartbeat`` event at the stream's position."""
        return (name, self.position, {"revision": self.revision, "position": self.position})

    def _events(self, entries: Any) -> list[Event]:
        """``changes`` events for ``entries`` (in order): one per run of entries between two
        resets (applying one write's records after another's is applying both)."""
        events: list[Event] = []
        start, records, revision = self.position, [], None
        for entry in entries:
            if entry.seq <= self.position:
                continue
            filtered = filter_changes(entry.changes, self.visible, self.user_id)
            if filtered.reset:
                if revision is not None:
                    events.append(self._changes(start, records, revision))
                # "entry": only this write cannot be sent; a follower whose state is already
                # at or past it (loaded after it) may go on without loading again
                data = {
                    "position": entry.seq,
                    "revision": entry.revision,
                    "mark": entry.mark,
                    "entry": True,
                }
                events.append(("reset", entry.seq, data))
                start, records, revision = entry.seq, [], None
            else:
                records.extend(encode(c) for c in filtered.records)
                revision = entry.revision
            self.position, self.mark = entry.seq, entry.mark
        if revision is not None:
            events.append(self._changes(start, records, revision))
        return events

    def _changes(self, start: int, records: list[dict[str, Any]], revision: int) -> Event:
        data = {
            "from": start,
            "position": self.position,
            "revision": revision,
            "mark": self.mark,
            "records": records,
        }
        return ("changes", self.position, data)


def position_mark(authority: Authority, org_id: str, position: int) -> str | None:
    """The mark of the organization's entry at ``position`` (see the module). Blocking."""
    with authority.store.read() as conn:
        return change_log.mark_at(conn, org_id, position)


# --- the full state ----------------------------------------------------------------------

#: Identities (and members of a flow) per JSON chunk of ``GET v1/state``.
CHUNK = 20_000


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


try:  # optional speed-up (as the envelope's encoder)
    import orjson

    def _dumps(value: Any) -> bytes:  # type: ignore[no-redef]
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - orjson is optional
    pass


def _object_chunks(table: dict[str, Any]) -> Iterator[bytes]:
    """A JSON object of ``table``, written ``CHUNK`` members at a time (``table`` is the
    view's own copy: nothing changes it while it is iterated)."""
    yield b"{"
    items = iter(table.items())
    first = True
    while chunk := dict(itertools.islice(items, CHUNK)):
        yield (b"" if first else b",") + _dumps(chunk)[1:-1]
        first = False
    yield b"}"


def _array_chunks(values: set[str]) -> Iterator[bytes]:
    """A JSON array of ``values``, ``CHUNK`` at a time."""
    yield b"["
    items = iter(values)
    first = True
    while chunk := list(itertools.islice(items, CHUNK)):
        yield (b"" if first else b",") + _dumps(chunk)[1:-1]
        first = False
    yield b"]"


def user_state(authority: Authority, org_id: str, user_id: str | None) -> DecisionState:
    """The user's view of the organization's current state
    (:func:`~aztp_agents.decisions.views.user_view`), copied under the state's apply lock:
    one consistent position; the copy shares the state's strings. Blocking; raises when the
    store cannot be read (before any byte of the answer is sent)."""
    return authority.decisions.view(org_id, lambda state: user_view(state, user_id))


def state_chunks(view: DecisionState, mark: str | None = None) -> Iterator[bytes]:
    """``GET v1/state``: the ``{success, message, data}`` envelope of ``view`` (a
    :func:`user_state`), encoded ``CHUNK`` entries at a time: the JSON document never exists
    whole in memory. ``data.position`` is the log position the state is at: the follower
    resumes the feed from there, saying it saw the entry ``data.mark`` (``mark``) there."""
    head = {
        "revision": view.revision,
        "position": view.position,
        "mark": mark,
        "organization": view.organization,
        "flows": view.flows,
        "flowRevoked": {f: sorted(m) for f, m in view.flow_revoked.items()},
        "links": sorted([s, t] for s, t in view.links),
        "flowLinks": {f: sorted([s, t] for s, t in pairs) for f, pairs in view.flow_links.items()},
        "policies": {
            aztp: [s.model_dump(mode="json", by_alias=True, exclude_defaults=True) for s in stmts]
            for aztp, stmts in view.policies.items()
        },
    }
    yield b'{"success":true,"message":"Decision state","data":'
    yield _dumps(head)[:-1]
    yield b',"identities":'
    yield from _object_chunks(view.identities)
    yield b',"members":{'
    for n, (flow_id, members) in enumerate(view.members.items()):
        yield (b"," if n else b"") + _dumps(flow_id) + b":"
        yield from _array_chunks(members)
    yield b"}}}"
