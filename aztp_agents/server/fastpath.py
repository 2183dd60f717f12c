"""The hot path: ``POST aztp/verify-identity`` answered on the event loop, from memory.

A verification whose API key is already in the key cache is answered here, without FastAPI's
request machinery and without a worker thread: it is a lookup in the organization's decision
snapshot (:func:`~aztp_agents.decisions.verify_in_snapshot`). Flow-scoped checks are answered
here once the flow is known to be visible to the caller at that snapshot's revision. Anything
else — unknown keys, anything malformed, any doubt — goes on unchanged to the regular route;
a stale snapshot is refreshed by asking the authority itself (in a worker thread), whose answer
is returned.

The snapshot used here is fresh when both hold:

* its revision is the store revision the :class:`~.feed.StoreWatcher` last read (writes by
  other processes are seen within one poll interval, 5 ms), and
* no write answered by this server since the watcher's last poll began (:class:`WriteEpoch`
  counts answered writes; the watcher records the count it saw *before* reading the revision).
  A decision taken after this server acknowledged a revocation therefore never uses a
  snapshot from before it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from ..audit import canonical_json
from ..authority import Authority, Principal
from ..decisions import Reason, Snapshot, verify_in_snapshot
from ..errors import AztpError
from ..ids import parse_aztp_id
from .responses import envelope_bytes

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    import json

    _loads = json.loads

__all__ = ["MESSAGES", "FastPathMiddleware", "WriteEpoch", "verify_answer"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Verification messages, as ``Authority.verify_identity`` words them.
MESSAGES = {
    Reason.ALLOWED: "Identity is valid",
    Reason.AGENT_UNKNOWN: "Identity not found",
    Reason.AGENT_REVOKED: "Identity is revoked",
    Reason.AGENT_NOT_IN_FLOW: "Identity is not a member of this flow",
    Reason.AGENT_REVOKED_IN_FLOW: "Identity is revoked for this flow",
    Reason.FLOW_UNKNOWN: "Identity flow not found",
}


def verify_answer(snap: Snapshot, aztp_id: str, flow_id: str | None = None) -> dict[str, Any]:
    """What ``Authority.verify_identity(p, aztp_id, flow_id)`` answers, from a snapshot (for a
    flow visible to the caller)."""
    verdict = verify_in_snapshot(snap, aztp_id, flow_id)
    message = MESSAGES[verdict.reason]
    if verdict.reason is Reason.ALLOWED and flow_id:
        message += " in this flow"
    return {"valid": verdict.valid, "aztpId": aztp_id, "identityFlowId": flow_id,
            "reason": verdict.reason.value.replace("agent_", "identity_"), "message": message}


@functools.lru_cache(maxsize=4096)
def _audit_json(valid: bool, reason: str, flow_id: str | None) -> str:
    return canonical_json({"valid": valid, "reason": reason, "flowId": flow_id})


class WriteEpoch:
    """Count of write requests this server has answered (bumped on the event loop only)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


class FastPathMiddleware:
    """Counts answered writes; answers the common verify-identity request from memory."""

    def __init__(self, app: ASGIApp, *, context: Any, prefix: str = "",
                 read_only_posts: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.ctx = context  # ServerContext: authority, watcher, auth_cache, epoch
        self.verify_path = f"{prefix}/aztp/verify-identity"
        self.read_only = frozenset(f"{prefix}{p}" for p in read_only_posts) | {self.verify_path}
        self._snaps: dict[str, Snapshot] = {}
        #: org -> (revision, {(user_id, flow_id)} visible at that revision)
        self._visible: dict[str, tuple[int, set[tuple[str, str]]]] = {}
        self._ids: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "POST" and scope["path"] == self.verify_path:
            body = b""
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # client went away
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            try:
                answer = await self._verify(scope, body)
            except Exception:  # any doubt: the regular route decides (and reports errors)
                log.debug("fast verify fell back", exc_info=True)
                answer = None
            if answer is not None:
                payload = envelope_bytes(True, answer["message"], answer)
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        if method in SAFE_METHODS or scope["path"] in self.read_only:
            await self.app(scope, receive, send)
            return
        epoch = self.ctx.epoch
        bumped = False

        async def send_and_count(message: Message) -> None:
            nonlocal bumped
            if message["type"] == "http.response.start" and not bumped:
                bumped = True
                epoch.bump()  # the write has committed (or failed) before its answer starts
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            if not bumped:
                epoch.bump()

    # ------------------------------------------------------------------ verify

    async def _verify(self, scope: Scope, body: bytes) -> dict[str, Any] | None:
        key = None
        content_type = None
        for name, value in scope["headers"]:
            if name == b"api_access_key":
                key = value.decode("latin-1")
            elif name == b"authorization" and key is None:
                scheme, _, cred = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and cred.strip():
                    key = cred.strip()
            elif name == b"content-type":
                content_type = value
        if not key or (content_type is not None and not content_type.startswith(b"application/json")):
            return None
        principal = self.ctx.auth_cache.cached(key)
        if principal is None:
            return None
        doc = _loads(body)
        if type(doc) is not dict:
            return None
        flow_id = doc.get("identityFlowId")
        if flow_id is not None and (type(flow_id) is not str or not flow_id or len(flow_id) > 128):
            return None
        raw = doc.get("aztpId")
        if type(raw) is not str or not raw or len(raw) > 2048:
            return None
        aztp_id = self._ids.get(raw)
        if aztp_id is None:
            try:
                aztp_id = str(parse_aztp_id(raw))
            except AztpError:
                return None
            if len(self._ids) > 50_000:
                self._ids.clear()
            self._ids[raw] = aztp_id
        snap = self._fresh(principal.org_id)
        if snap is not None and (flow_id is None or self._is_visible(snap, principal, flow_id)):
            answer = verify_answer(snap, aztp_id, flow_id)
            self._audit(principal, answer)
            return answer
        return await anyio.to_thread.run_sync(self._ask_authority, principal, aztp_id, flow_id)

    def _audit(self, principal: Principal, answer: dict[str, Any]) -> None:
        """The audit record ``Authority.verify_identity`` makes (queued, group-committed)."""
        data = _audit_json(answer["valid"], answer["reason"], answer["identityFlowId"])
        self.ctx.authority.store.submit_audit(
            principal.org_id, (time.time(), "identity.verify", principal.user_id, answer["aztpId"], data))

    def _is_visible(self, snap: Snapshot, principal: Principal, flow_id: str) -> bool:
        known = self._visible.get(principal.org_id)
        return known is not None and known[0] == snap.revision and (principal.user_id, flow_id) in known[1]

    def _ask_authority(self, principal: Principal, aztp_id: str, flow_id: str | None) -> dict[str, Any]:
        """The authority's own answer (worker thread); keeps its snapshot for the next ones."""
        authority: Authority = self.ctx.authority
        snap = authority.snapshot(principal.org_id)  # current as of now (the authority checks the store)
        answer = authority.verify_identity(principal, aztp_id, flow_id)
        self._snaps[principal.org_id] = snap
        if flow_id is not None and answer["reason"] != "flow_unknown" and flow_id in snap.flows:
            known = self._visible.get(principal.org_id)
            if known is None or known[0] != snap.revision:
                known = (snap.revision, set())
                self._visible[principal.org_id] = known
            if len(known[1]) < 100_000:
                known[1].add((principal.user_id, flow_id))
        return answer

    def _fresh(self, org_id: str) -> Snapshot | None:
        snap = self._snaps.get(org_id)
        watcher = self.ctx.watcher
        if snap is None or not watcher.alive:
            return None
        revision, epoch = watcher.state
        if snap.revision != revision or epoch != self.ctx.epoch.value:
            return None
        return snap
