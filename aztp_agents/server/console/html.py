"""The console's HTML: one escaping helper, the page layout and a few building blocks.

Every value that reaches a page passes through :func:`e` (names, reasons, metadata come from
users); markup is only ever built from constant strings and escaped values, so a name like
``<script>`` is shown, never run. Pages load only this package's own CSS and JavaScript
(the Content-Security-Policy set by the router forbids anything else).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

__all__ = ["badge", "e", "form", "layout", "link", "table", "url"]

BASE = "/console"

_NAV = (
    ("flows", "Flows"),
    ("identities", "Identities"),
    ("decisions", "Decisions"),
    ("audit", "Audit"),
)


def e(value: object) -> str:
    """``value`` as text safe in HTML content and in quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def url(path: str, **query: object) -> str:
    """A console URL (not yet escaped) with the query parameters that are not None/''."""
    params = {k: str(v) for k, v in query.items() if v is not None and v != ""}
    return f"{BASE}/{path.lstrip('/')}" + (f"?{urlencode(params)}" if params else "")


def link(text: object, href: str, cls: str = "") -> str:
    attr = f' class="{e(cls)}"' if cls else ""
    return f'<a href="{e(href)}"{attr}>{e(text)}</a>'


def badge(text: object, kind: str) -> str:
    """A coloured label; ``kind`` is one of the CSS classes ok, warn, bad, muted."""
    return f'<span class="badge {e(kind)}">{e(text)}</span>'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str) -> str:
    """A table whose cells are already-built HTML (escape values before passing them)."""
    rows = list(rows)
    if not rows:
        return f'<p class="muted">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def form(
    action: str,
    csrf: str,
    fields: Mapping[str, object],
    button: str,
    *,
    cls: str = "",
    visible: str = "",
) -> str:
    """A POST form carrying the session's CSRF token and ``fields`` as hidden inputs;
    ``visible`` is extra (already-built) markup such as a reason input."""
    hidden = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
        for k, v in fields.items()
        if v is not None
    )
    return (
        f'<form method="post" action="{e(action)}" class="inline {e(cls)}">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">{hidden}{visible}'
        f'<button type="submit">{e(button)}</button></form>'
    )


def layout(
    title: str,
    body: str,
    *,
    active: str = "",
    user: str | None = None,
    org: str | None = None,
    csrf: str | None = None,
    flash: str | None = None,
    error: str | None = None,
) -> str:
    """The whole page: navigation, who is signed in, a message, ``body`` (already built)."""
    nav = "".join(
        link(label, url(path), "active" if path == active else "") for path, label in _NAV
    )
    who = ""
    if user is not None:
        who = f'<span class="who">{e(user)} · {e(org)}</span>' + form(
            url("logout"), csrf or "", {}, "Sign out", cls="signout"
        )
    notes = ""
    if flash:
        notes += f'<p class="flash ok" role="status">{e(flash)}</p>'
    if error:
        notes += f'<p class="flash bad" role="alert">{e(error)}</p>'
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · aztp-agents console</title>"
        f'<link rel="stylesheet" href="{BASE}/static/console.css">'
        f'<script src="{BASE}/static/console.js" defer></script></head><body>'
        f'<header><span class="brand">aztp-agents</span><nav>{nav if user else ""}</nav>{who}</header>'
        f"<main><h1>{e(title)}</h1>{notes}{body}</main></body></html>"
    )
