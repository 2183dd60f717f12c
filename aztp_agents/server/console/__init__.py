"""The operator console at ``/console``: flows and their health, who may call what, live
decisions, the audit chain, and confirmed actions (revoke, reinstate, reissue, unlink,
attach and detach policies), for the organization of the API key a user signs in with.

=================  ==================================================================
module             owns
=================  ==================================================================
``sessions``       sessions (server-side), CSRF tokens, one-time login tokens
``security``       the session cookie, the origin and CSRF checks, security headers
``html``           escaping and the page layout
``graph``          the agents -> tools graph as inline SVG (pure)
``views``          the pages, read through the authority as the signed-in principal
``actions``        the confirmed actions: the same authority operations as the API
``router``         the routes, the live decisions stream, the audit export
``static/``        the stylesheet and the small script (no CDN: they ship in the wheel)
=================  ==================================================================
"""

from __future__ import annotations

from fastapi import FastAPI

from .router import console_router
from .sessions import Sessions

__all__ = ["Sessions", "install_console"]


def install_console(app: FastAPI) -> Sessions:
    """Serve the console on ``app``; its sessions live (in memory) as long as the app."""
    sessions = app.state.console = Sessions()
    app.include_router(console_router())
    return sessions
