"""Who the console's caller is, and whether a state-changing request is really theirs.

- :func:`session_of`: the request's live session (cookie -> server-side table), or None.
- :func:`refusal`: why a POST must be refused (None: it may proceed): its ``Origin`` (else
  ``Referer``) must be this server's own origin, and its form must carry the session's CSRF
  token. Both are required: SameSite=Strict already keeps other sites' requests from carrying
  the cookie, these checks keep a browser that ignores it (or a same-site attacker) out.
- :func:`set_session_cookie`: HttpOnly, SameSite=Strict, Path=/console, Secure over https.
- :data:`SECURITY_HEADERS`: every console answer's CSP and framing headers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from .sessions import COOKIE, Session, Sessions

__all__ = [
    "SECURITY_HEADERS",
    "origin_ok",
    "refusal",
    "session_of",
    "sessions_of",
    "set_session_cookie",
]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def sessions_of(request: Request) -> Sessions:
    return request.app.state.console  # type: ignore[no-any-return]


def session_of(request: Request) -> Session | None:
    return sessions_of(request).get(request.cookies.get(COOKIE))


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}".lower()


def origin_ok(request: Request) -> bool:
    """Whether the request says it comes from a page of this server. A request that names
    no origin at all is refused (fail closed): browsers send ``Origin`` with every POST."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin.lower() == _own_origin(request)


def refusal(request: Request, session: Session | None, csrf: str | None) -> str | None:
    """None if this POST may act for ``session``; otherwise why it is refused."""
    if not origin_ok(request):
        return "cross-site request refused: it does not come from this console's own pages"
    if session is None:
        return "not signed in (or the session ended): sign in again"
    if not session.csrf_ok(csrf):
        return "the form's CSRF token is missing or wrong: reload the page and try again"
    return None


def set_session_cookie(request: Request, response: Response, session: Session | None) -> None:
    """Set (or, with None, clear) the session cookie."""
    secure = request.url.scheme == "https"
    if session is None:
        response.delete_cookie(
            COOKIE, path="/console", secure=secure, httponly=True, samesite="strict"
        )
        return
    response.set_cookie(
        COOKIE,
        session.id,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
