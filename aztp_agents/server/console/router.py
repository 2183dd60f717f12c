"""The console's routes under ``/console``: sign-in, the pages, confirmed actions, the live
decisions stream (server-sent events) and the audit export.

Handlers are ``async`` (they read the form body themselves: no multipart dependency) and
run every authority call in a worker thread (the store blocks). Every page needs a session;
every POST passes :func:`.security.refusal` (own origin + CSRF token) before anything else.
Authority errors become an HTML page with the error's own status and message (a foreign or
private flow is "not found", as through the API).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from ...authority import Authority
from ...authority.console_reads import api_key_active, api_key_digest, audit_after
from ...errors import AztpError
from ..context import ServerContext
from . import views
from .actions import ACTIONS, fields_of
from .html import BASE, e, form, layout, url
from .security import (
    SECURITY_HEADERS,
    origin_ok,
    refusal,
    session_of,
    sessions_of,
    set_session_cookie,
)
from .sessions import COOKIE, Session

__all__ = ["console_router"]

_T = TypeVar("_T")
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
#: How often the live stream looks for new decisions, and sends a keep-alive comment.
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
#: A live stream checks its session's API key every this many polls (~5 s), and looks
#: names and flow visibility up afresh (a flow made private stops showing then).
KEY_CHECK_POLLS = 10
NAMES_REFRESH_POLLS = 10


async def _run(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _context(request: Request) -> ServerContext:
    return request.app.state.aztp  # type: ignore[no-any-return]


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)


def _redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)


def _page(
    session: Session, title: str, body: str, active: str = "", status: int = 200
) -> HTMLResponse:
    p = session.principal
    flash, error = session.flash, session.error
    session.flash = session.error = None
    return _html(
        layout(
            title,
            body,
            active=active,
            user=p.user_name or p.user_id,
            org=p.org_name or p.org_id,
            csrf=session.csrf,
            flash=flash,
            error=error,
        ),
        status,
    )


def _refused(message: str, status: int = 403) -> HTMLResponse:
    body = f'<p class="flash bad" role="alert">{e(message)}</p><p><a href="{BASE}/">Back to the console</a></p>'
    return _html(layout("Refused", body), status)


def _login_form(error: str | None = None) -> str:
    return layout(
        "Sign in",
        f'<form method="post" action="{BASE}/login" class="login">'
        '<label>API key <input type="password" name="api_key" autocomplete="off" required '
        'autofocus></label><button type="submit">Sign in</button></form>'
        '<p class="muted">Use an API key made with <code>aztp-agents keys create</code>. '
        "The console shows exactly what the API shows that key: its organization only.</p>",
        error=error,
    )


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _local(back: str | None, default: str) -> str:
    """A redirect target inside the console only (never another site)."""
    if back and back.startswith(BASE + "/") and not back.startswith("//") and "\\" not in back:
        return back
    return default


async def _session(request: Request) -> Session | None:
    """The request's live session, ended here if the API key it signed in with was revoked
    or rotated since (checked in a worker thread: one indexed read)."""
    session = session_of(request)
    if session is None or session.key_digest is None:
        return session
    if await _run(api_key_active, _context(request).authority, session.key_digest):
        return session
    sessions_of(request).close(session.id)
    return None


def console_router() -> APIRouter:
    router = APIRouter(prefix=BASE, include_in_schema=False)

    def signed_in(
        build: Callable[[Request, Session], Any],
    ) -> Callable[[Request], Any]:
        """A page handler that needs a session (else: to the sign-in page) and turns
        authority errors into an error page."""

        # not functools.wraps: FastAPI would read ``build``'s signature as the route's
        async def handler(request: Request) -> Response:
            session = await _session(request)
            if session is None:
                return _redirect(f"{BASE}/login")
            try:
                return await build(request, session)  # type: ignore[no-any-return]
            except AztpError as exc:
                return _page(
                    session,
                    "Not available",
                    f'<p class="flash bad">{e(exc)}</p>',
                    status=exc.status_code,
                )

        handler.__name__ = build.__name__
        return handler

    # ------------------------------------------------------------------ sign-in and out

    @router.get("")
    @router.get("/")
    async def home(request: Request) -> Response:
        return _redirect(f"{BASE}/flows" if await _session(request) else f"{BASE}/login")

    @router.get("/login")
    async def login_page(request: Request) -> Response:
        if await _session(request):
            return _redirect(f"{BASE}/flows")
        return _html(_login_form())

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not origin_ok(request):
            return _refused("cross-site sign-in refused")
        key = (await _form(request)).get("api_key", "").strip()
        try:
            principal = await _run(_context(request).auth_cache.authenticate, key)
        except AztpError:
            return _html(_login_form("That API key is not valid (or was revoked)."), 401)
        response = _redirect(f"{BASE}/flows")
        sessions = sessions_of(request)
        sessions.close(request.cookies.get(COOKIE))  # a new session id at every sign-in
        session = sessions.open(principal, api_key_digest(key))
        set_session_cookie(request, response, session)
        return response

    @router.get("/login/token")
    async def login_token(request: Request, token: str = "") -> Response:
        session = sessions_of(request).redeem(token)
        if session is None:
            return _refused(
                "This sign-in link was already used or is not valid: run "
                "'aztp-agents console' again for a new one."
            )
        response = _redirect(f"{BASE}/flows")
        set_session_cookie(request, response, session)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = await _session(request)
        why = refusal(request, session, (await _form(request)).get("csrf"))
        if why:
            return _refused(why)
        sessions_of(request).close(session.id if session else None)
        response = _redirect(f"{BASE}/login")
        set_session_cookie(request, response, None)
        return response

    # ------------------------------------------------------------------------------ pages

    def authority_of(request: Request) -> Authority:
        return _context(request).authority

    async def flows(request: Request, s: Session) -> Response:
        body = await _run(views.flows_page, authority_of(request), s.principal)
        return _page(s, "Flows", body, "flows")

    async def flow(request: Request, s: Session) -> Response:
        title, body = await _run(
            views.flow_page,
            authority_of(request),
            s.principal,
            request.query_params.get("id", ""),
        )
        return _page(s, title, body, "flows")

    async def identities(request: Request, s: Session) -> Response:
        body = await _run(
            views.identities_page,
            authority_of(request),
            s.principal,
            request.query_params.get("q", "")[:64],
        )
        return _page(s, "Identities", body, "identities")

    async def identity(request: Request, s: Session) -> Response:
        title, body = await _run(
            views.identity_page,
            authority_of(request),
            s.principal,
            request.query_params.get("id", ""),
        )
        return _page(s, title, body, "identities")

    async def decisions(request: Request, s: Session) -> Response:
        q = request.query_params
        body = await _run(
            views.decisions_page, authority_of(request), s.principal,
            q.get("flow", ""), q.get("agent", ""), q.get("tool", ""), bool(q.get("denied")),
        )  # fmt: skip
        return _page(s, "Decisions, live", body, "decisions")

    async def explain(request: Request, s: Session) -> Response:
        q = request.query_params
        body = await _run(
            views.explain_page, authority_of(request), s.principal,
            q.get("agent", ""), q.get("tool", ""), q.get("flow", ""), q.get("toolName"),
        )  # fmt: skip
        return _page(s, "Why this decision", body, "decisions")

    async def audit(request: Request, s: Session) -> Response:
        q = request.query_params
        try:
            limit = max(1, min(100_000, int(q.get("limit") or 200)))
        except ValueError:
            limit = 200
        body = await _run(
            views.audit_page, authority_of(request), s.principal,
            q.get("action", ""), q.get("actor", ""), q.get("subject", ""), limit,
        )  # fmt: skip
        return _page(s, "Audit log", body, "audit")

    async def confirm(request: Request, s: Session) -> Response:
        q = request.query_params
        action = ACTIONS.get(q.get("op", ""))
        if action is None:
            return _page(s, "Unknown action", "<p>No such action.</p>", status=404)
        fields = fields_of(action, {k: v for k, v in q.items() if k != "reason"})
        fields.pop("reason", None)
        back = _local(q.get("back"), f"{BASE}/flows")
        facts = "".join(f"<dt>{e(k)}</dt><dd><code>{e(v)}</code></dd>" for k, v in fields.items())
        reason = (
            '<label>Reason (recorded in the audit log) <input name="reason" maxlength="500"></label>'
            if action.reason
            else ""
        )
        body = (
            f'<p class="warning">{e(action.warning)}</p><dl>{facts}</dl>'
            + form(
                url(f"act/{q.get('op')}"),
                s.csrf,
                {**fields, "back": back},
                f"Yes, {action.title.lower()}",
                cls="danger" if action.danger else "",
                visible=reason,
            )
            + f' <a href="{e(back)}">Cancel</a>'
        )
        return _page(s, f"Confirm: {action.title}", body)

    for path, build in (
        ("/flows", flows), ("/flow", flow), ("/identities", identities), ("/identity", identity),
        ("/decisions", decisions), ("/explain", explain), ("/audit", audit), ("/confirm", confirm),
    ):  # fmt: skip
        router.add_api_route(path, signed_in(build), methods=["GET"])

    # ---------------------------------------------------------------------------- actions

    @router.post("/act/{op}")
    async def act(request: Request, op: str) -> Response:
        session = await _session(request)
        given = await _form(request)
        why = refusal(request, session, given.get("csrf"))
        if why or session is None:
            return _refused(why or "not signed in")
        action = ACTIONS.get(op)
        if action is None:
            return _refused("no such action", 404)
        back = _local(given.get("back"), f"{BASE}/flows")
        try:
            fields = fields_of(action, given)
            await _run(action.run, authority_of(request), session.principal, fields)
        except AztpError as exc:
            session.error = f"{action.title} failed: {exc}"
        else:
            session.flash = action.done
        return _redirect(back)

    # --------------------------------------------------------------- live and export

    @router.get("/decisions/stream")
    async def stream(request: Request) -> Response:
        session = await _session(request)
        if session is None:
            return _refused("not signed in", 401)
        q = request.query_params
        try:
            after = int(q.get("after") or 0)
        except ValueError:
            after = 0
        filters = (q.get("flow", ""), q.get("agent", ""), q.get("tool", ""), bool(q.get("denied")))
        authority = authority_of(request)
        sessions = sessions_of(request)
        sid = session.id

        async def events() -> AsyncIterator[str]:
            nonlocal after
            quiet = 0.0
            yield "retry: 2000\n\n"
            polls = 0
            names = views.Names(authority, session.principal)
            while not await request.is_disconnected():
                live = sessions.get(sid)
                polls += 1
                if (
                    live is not None
                    and live.key_digest is not None
                    and polls % KEY_CHECK_POLLS == 0
                    and not await _run(api_key_active, authority, live.key_digest)
                ):
                    sessions.close(sid)
                    live = None
                if live is None:  # signed out, expired or key revoked: the stream ends
                    yield "event: ended\ndata: {}\n\n"
                    return
                entries, after = await _run(
                    audit_after, authority, live.principal, after, views.DECISION
                )
                if polls % NAMES_REFRESH_POLLS == 1:  # forget names and flow visibility
                    names = views.Names(authority, live.principal)
                if entries:
                    shown = await _run(views.decision_events, entries, names, *filters)
                    for event in shown:
                        yield f"id: {event['seq']}\ndata: {json.dumps(event)}\n\n"
                    quiet = 0.0
                else:
                    quiet += POLL_SECONDS
                    if quiet >= KEEPALIVE_SECONDS:
                        quiet = 0.0
                        yield ": keep-alive\n\n"
                await asyncio.sleep(POLL_SECONDS)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
        )

    @router.get("/audit/export")
    async def export(request: Request) -> Response:
        session = await _session(request)
        if session is None:
            return _refused("not signed in", 401)
        q = request.query_params
        authority = authority_of(request)
        entries = await _run(
            authority.audit_entries, session.principal, action=q.get("action") or None
        )
        actors = await _run(views.actor_ids, authority, session.principal, q.get("actor", ""))
        lines = "".join(
            json.dumps(x.to_doc(), sort_keys=True) + "\n"
            for x in entries
            if views.audit_filter(x, actors, q.get("subject", ""))
        )
        return Response(
            lines,
            media_type="application/x-ndjson",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": 'attachment; filename="aztp-audit.jsonl"',
            },
        )

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC:
            return Response("not found", status_code=404)
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(
            data,
            media_type=_STATIC[name],
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    return router
