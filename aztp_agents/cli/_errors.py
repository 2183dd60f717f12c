"""Exit codes and the one place where a failure becomes ``error: <message>`` and a code.

Every ``aztp-agents`` run, and the ``python -m aztp_agents.server`` launcher, goes through
:func:`exit_code_of`, so a failure is always one line on stderr (``--debug`` adds the
traceback) and an exit code from the table in the package docstring.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

import typer

from ..errors import (
    AuditChainError,
    AuthenticationError,
    AuthorityUnavailableError,
    AztpError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    StoreError,
    ToolCallDenied,
)
from ._state import State

__all__ = [
    "EXIT_DENIED",
    "EXIT_NEGATIVE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "UsageProblem",
    "exit_code_of",
    "fail",
    "one_line",
    "refuse_remote",
]

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DENIED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130


class UsageProblem(AztpError):
    """Bad use of the command line that the parser cannot see (exit code 2)."""

    code = "usage"


def one_line(text: str) -> str:
    """``text`` with all whitespace runs (newlines included) folded to one space."""
    return " ".join(str(text).split()) or "(no message)"


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and end the command with ``code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def refuse_remote(state: State, message: str, *, home_explicit: bool) -> None:
    """Refuse a command that works on this host's store when a server URL was given.

    ``AZTP_URL`` from the environment is overridden by an explicit ``--home`` or
    ``--database-url``: the user asked for that store in so many words.
    """
    if state.url and not (state.url_from_env and (home_explicit or state.database_explicit)):
        hint = " (AZTP_URL is set: unset it or pass --home)" if state.url_from_env else ""
        raise UsageProblem(message + hint)


def exit_code_of(call: Callable[[], object], state: State) -> int:
    """Run a click entry point (in non-standalone mode) and turn its outcome into an exit code."""
    try:
        rv = call()
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _report(exc, state)
    return rv if isinstance(rv, int) else EXIT_OK


def _report(exc: Exception, state: State) -> int:
    # Typer >= 0.20 vendors click (typer._click); older versions use click: match by name.
    if _is_a(exc, "NoArgsIsHelpError"):
        # The error already holds the rendered help (plain text: the app renders no rich help,
        # which printed itself while being rendered and so showed up twice).
        typer.echo(exc.format_message())  # type: ignore[attr-defined]
        return EXIT_USAGE
    if _is_a(exc, "UsageError"):
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)  # type: ignore[attr-defined]
        return EXIT_USAGE
    if _is_a(exc, "ClickException"):
        typer.echo(f"error: {one_line(exc.format_message())}", err=True)  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    if _is_a(exc, "Abort") and not isinstance(exc, AztpError):
        typer.echo("error: aborted", err=True)
        return EXIT_INTERRUPTED
    if state.debug:
        traceback.print_exc(file=sys.stderr)
    message, code = _describe(exc, state)
    typer.echo(f"error: {message}", err=True)
    return code


def _is_a(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _describe(exc: BaseException, state: State) -> tuple[str, int]:
    """The one-line message and exit code for an exception."""
    if isinstance(exc, AztpError):
        return one_line(exc.message), _exit_code(exc)
    if _is_transport_error(exc):
        where = state.url or "the authority"
        return one_line(f"cannot reach {where}: {exc.__class__.__name__}: {exc}"), EXIT_UNAVAILABLE
    if isinstance(exc, OSError):
        where = exc.filename or state.home or "the AZTP home"
        hint = (
            " (--home must be a folder you can write)"
            if state.home and str(where).startswith(state.home)
            else ""
        )
        return one_line(f"cannot use {where}: {exc.strerror or exc}{hint}"), EXIT_UNAVAILABLE
    return one_line(
        f"unexpected {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)"
    ), EXIT_NEGATIVE


def _exit_code(exc: AztpError) -> int:
    if isinstance(exc, AuditChainError):
        return EXIT_NEGATIVE
    if isinstance(exc, AuthenticationError | PermissionDeniedError | ToolCallDenied):
        return EXIT_DENIED
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, AuthorityUnavailableError | StoreError | RateLimitedError):
        return EXIT_UNAVAILABLE
    # Errors that came over the wire carry the server's HTTP status.
    status = getattr(exc, "status_code", 400)
    if status in (401, 403):
        return EXIT_DENIED
    if status == 404:
        return EXIT_NOT_FOUND
    if status == 429 or status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_USAGE


def _is_transport_error(exc: BaseException) -> bool:
    # httpx is only loaded in remote mode: never import it just to classify an error.
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ConnectionError | TimeoutError)
