"""``aztp-agents console``: the operator console over the embedded store, for one person on
this machine.

It serves the same application as ``aztp-agents serve`` (the console at ``/console``) on
127.0.0.1 only, and prints a one-time sign-in link, as notebook servers do: the token in it
opens one session (as the embedded store's default user, or the user of ``--api-key``) and is
then invalid, so a link left in a terminal's scrollback opens nothing.
"""

from __future__ import annotations

import socket
import sys
from typing import Annotated

import typer

from ._app import app
from ._client import embedded_authority
from ._errors import EXIT_USAGE, fail

__all__ = ["console"]

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@app.command("console")
def console(
    ctx: typer.Context,
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, help="TCP port on 127.0.0.1 (0: a free one)."),
    ] = 0,
) -> None:
    """Open the operator console over the embedded store: serves 127.0.0.1 and prints a
    one-time sign-in link."""
    try:
        import uvicorn

        from ..server import create_app
    except ModuleNotFoundError:
        fail("the console needs the server: pip install 'aztp-agents[server]'", EXIT_USAGE)
    authority, principal = embedded_authority(ctx, "console")
    application = create_app(authority)
    token = application.state.console.login_token(principal)
    port = port or _free_port()
    # stdout, flushed before serving: a script (or a person) reads the link from it
    typer.echo(
        f"aztp-agents console: open http://{HOST}:{port}/console/login/token?token={token}\n"
        "  (a one-time link: it signs one browser in, then no longer works; Ctrl+C stops)"
    )
    sys.stdout.flush()
    uvicorn.run(
        application,
        host=HOST,
        port=port,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=3,
    )
