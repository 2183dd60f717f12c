"""Console sessions: a random session id in an HttpOnly cookie, the principal it signed in as
kept here (in memory, never in the cookie), a CSRF token per session, and one-time login
tokens (``aztp-agents console`` prints one in its URL, as notebook servers do).

The API key a user signs in with is checked once and never kept: the session holds only the
principal it authenticated to. Sessions end after ``idle`` seconds without a request or
``lifetime`` seconds after sign-in, whichever comes first; a server restart ends them all.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from ...authority import Principal

__all__ = ["COOKIE", "Session", "Sessions"]

#: The session cookie's name.
COOKIE = "aztp_console"


@dataclass
class Session:
    id: str
    principal: Principal
    csrf: str
    created: float
    seen: float = field(default=0.0)
    #: digest of the API key it signed in with (None: a one-time link), to end the session
    #: when the key is revoked
    key_digest: str | None = None
    #: one-time messages for the next page (what an action did, or why it failed)
    flash: str | None = None
    error: str | None = None

    def csrf_ok(self, token: str | None) -> bool:
        """Whether a form carried this session's CSRF token (compared in constant time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    """Signed-in sessions and unused one-time login tokens (thread-safe)."""

    def __init__(
        self,
        *,
        idle: float = 30 * 60,
        lifetime: float = 8 * 3600,
        token_lifetime: float = 24 * 3600,
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._tokens: dict[str, tuple[Principal, float]] = {}

    def open(self, principal: Principal, key_digest: str | None = None) -> Session:
        """A new session for ``principal`` (signed in with the key of ``key_digest``)."""
        now = time.monotonic()
        session = Session(
            id=secrets.token_urlsafe(32),
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            created=now,
            seen=now,
            key_digest=key_digest,
        )
        with self._lock:
            self._expire(now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarts), or None."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def login_token(self, principal: Principal) -> str:
        """A token that opens one session for ``principal``, once."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (principal, time.monotonic())
        return token

    def redeem(self, token: str | None) -> Session | None:
        """A new session for a login token, which is then invalid; None if it is unknown,
        used or too old."""
        if not token:
            return None
        with self._lock:
            found = self._tokens.pop(token, None)
        if found is None or time.monotonic() - found[1] > self.token_lifetime:
            return None
        return self.open(found[0])

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen > self.idle or now - session.created > self.lifetime

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if self._expired(s, now)]:
            del self._sessions[sid]
