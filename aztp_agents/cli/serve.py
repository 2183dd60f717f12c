"""``aztp-agents serve``: the one server launcher.

``python -m aztp_agents.server`` is this same command on its own (:func:`server_main`): same
options, same defaults (port 8700), same errors. The server stack (FastAPI, uvicorn) is
imported only when the command runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ValidationError
from ._app import app
from ._errors import EXIT_USAGE, UsageProblem, exit_code_of, fail, refuse_remote
from ._state import State, state_of

__all__ = ["DEFAULT_PORT", "server_main"]

DEFAULT_PORT = 8700
#: The metrics token, when no --metrics-token-file is given.
METRICS_TOKEN_ENV = "AZTP_METRICS_TOKEN"
#: Shortest metrics token accepted: a scrape credential must not be guessable.
MIN_METRICS_TOKEN = 16
LAUNCHER = "python -m aztp_agents.server"


class LogLevel(str, Enum):
    """The server's log level (uvicorn's names)."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


@app.command("serve")
def serve(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option(
            "--home",
            metavar="DIR",
            help="Store folder, as the global --home (default: $AZTP_HOME or ~/.aztp).",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = DEFAULT_PORT,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", metavar="F", help="TLS certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", metavar="F", help="TLS private key (PEM).")
    ] = None,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Path prefix of every route, e.g. /astha/v1.")
    ] = "",
    trust_domain: Annotated[
        str | None,
        typer.Option("--trust-domain", help="Default trust domain of new organizations."),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="Server log level.")
    ] = LogLevel.info,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            show_default=False,
            help="Serve this database (postgresql://...), as the global --database-url.",
        ),
    ] = None,
    master_key_file: Annotated[
        Path | None,
        typer.Option(
            "--master-key-file",
            metavar="F",
            help="The master key (base64 of 32 bytes, mode 0600), as AZTP_MASTER_KEY_FILE.",
        ),
    ] = None,
    metrics_token_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-token-file",
            metavar="F",
            help="Serve Prometheus metrics at /metrics to 'Authorization: Bearer <token>' "
            "(the file's first line; else $AZTP_METRICS_TOKEN; neither: no /metrics).",
        ),
    ] = None,
) -> None:
    """Run the authority as an HTTP server over the embedded store (--home), or over a
    database (--database-url) that several servers may share."""
    state = state_of(ctx)
    refuse_remote(
        state,
        "'serve' runs the authority on this host's store: use --home DIR, not --url",
        home_explicit=state.home_explicit or home is not None or database_url is not None,
    )
    _check_tls(tls_cert, tls_key)
    run_server = _server_runner()
    from ..client import resolve_home

    metrics_token = _metrics_token(metrics_token_file, os.environ.get(METRICS_TOKEN_ENV))

    if master_key_file is not None:
        os.environ["AZTP_MASTER_KEY_FILE"] = str(master_key_file)
    store_home = resolve_home(home or state.home)
    # The serve command's own --database-url wins; the global one (or AZTP_DATABASE_URL)
    # yields to an explicit --home, as everywhere.
    database = database_url or (None if home is not None else state.embedded_database())
    scheme = "https" if tls_cert else "http"
    where = database.split("@")[-1] if database else store_home
    typer.echo(f"aztp-agents: serving {where} on {scheme}://{host}:{port}", err=True)
    options = _changed_options(prefix, trust_domain, log_level, access_log)
    if database:
        options["database_url"] = database
    if metrics_token:
        options["metrics_token"] = metrics_token
        typer.echo(f"aztp-agents: Prometheus metrics at {scheme}://{host}:{port}/metrics", err=True)
    run_server(
        store_home,
        host,
        port,
        str(tls_cert) if tls_cert else None,
        str(tls_key) if tls_key else None,
        **options,
    )


def _changed_options(
    prefix: str, trust_domain: str | None, log_level: LogLevel, access_log: bool
) -> dict[str, Any]:
    """The keyword options of the server's ``run`` that differ from its defaults.

    Only those are passed: ``run`` has the same defaults, and its plain positional call
    (home, host, port, cert, key) is its oldest, most stable form.
    """
    options = {
        "prefix": (prefix, ""),
        "trust_domain": (trust_domain, None),
        "log_level": (log_level.value, LogLevel.info.value),
        "access_log": (access_log, False),
    }
    return {name: value for name, (value, default) in options.items() if value != default}


def _metrics_token(path: Path | None, env_value: str | None) -> str | None:
    """The metrics token: the first line of ``path``, else ``env_value``; None: neither."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValidationError(f"--metrics-token-file {path}: {exc.strerror or exc}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        where = f"--metrics-token-file {path}"
    elif env_value is not None:
        token, where = env_value.strip(), METRICS_TOKEN_ENV
    else:
        return None
    if len(token) < MIN_METRICS_TOKEN:
        raise ValidationError(
            f"{where}: the metrics token must be at least {MIN_METRICS_TOKEN} characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def _check_tls(tls_cert: Path | None, tls_key: Path | None) -> None:
    """Both TLS files or neither, and the ones given exist (before the server stack loads)."""
    if (tls_cert is None) != (tls_key is None):
        raise UsageProblem("TLS needs both --tls-cert and --tls-key")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not path.is_file():
            raise ValidationError(f"{flag} {path}: no such file")


def _server_runner() -> Callable[..., Any]:
    """``aztp_agents.server.run``, or a usage error naming the extra to install."""
    try:
        from ..server import run
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {
            "aztp_agents",
            "fastapi",
            "starlette",
            "uvicorn",
        }:
            fail("the server is not installed: pip install 'aztp-agents[server]'", EXIT_USAGE)
        raise
    return run


def server_main(argv: Sequence[str] | None = None) -> int:
    """``python -m aztp_agents.server [OPTIONS]``: the ``serve`` command without the group.

    The global ``$AZTP_URL`` does not apply here (this launcher always serves a local store),
    and failures are reported exactly as ``aztp-agents serve`` reports them.
    """
    group: Any = typer.main.get_command(app)
    command = group.commands["serve"]
    state = State()
    return exit_code_of(
        lambda: command.main(
            args=list(argv) if argv is not None else None,
            prog_name=LAUNCHER,
            standalone_mode=False,
            obj=state,
            help_option_names=["-h", "--help"],
        ),
        state,
    )
