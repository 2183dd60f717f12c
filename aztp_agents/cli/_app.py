"""The root ``aztp-agents`` typer app: global options, command groups, the entry point."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ._errors import exit_code_of
from ._options import JsonOpt
from ._state import State

__all__ = ["app", "main", "sub_app"]

PROG = "aztp-agents"


class AztpGroup(TyperGroup):
    """Top-level group: turns every failure into one line on stderr and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        state = extra.pop("obj", None)
        if not isinstance(state, State):
            state = State()
        code = exit_code_of(
            lambda: super(AztpGroup, self).main(
                args,
                prog_name or PROG,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                obj=state,
                **extra,
            ),
            state,
        )
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    cls=AztpGroup,
    name=PROG,
    help="Verifiable AZTP/SPIFFE identities for AI agents and their tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def sub_app(name: str, help: str) -> typer.Typer:
    """A command group ``aztp-agents NAME ...`` (groups list in the order they are made)."""
    sub = typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.add_typer(sub, name=name)
    return sub


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option(
            "--home",
            envvar="AZTP_HOME",
            metavar="DIR",
            help="Embedded store folder (default ~/.aztp).",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="AZTP_URL",
            metavar="URL",
            help="Talk to an aztp-agents server instead of the embedded store.",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="AZTP_DATABASE_URL",
            metavar="URL",
            show_default=False,
            help="Embedded store on this database (postgresql://...) instead of --home's file.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="AZTP_API_KEY",
            metavar="KEY",
            show_default=False,
            help="API key for the server (or an org's key on the embedded store).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    state = ctx.ensure_object(State)
    state.home, state.url, state.api_key = home or None, url or None, api_key or None
    state.database_url = database_url or None
    state.json, state.debug = as_json, debug
    state.url_from_env = _source(ctx, "url") == "ENVIRONMENT"
    state.home_explicit = _source(ctx, "home") == "COMMANDLINE"
    state.database_explicit = _source(ctx, "database_url") == "COMMANDLINE"
    if debug:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("aztp_agents").setLevel(logging.DEBUG)


def _source(ctx: typer.Context, param: str) -> str | None:
    source = ctx.get_parameter_source(param)
    return None if source is None else str(getattr(source, "name", source))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aztp-agents`` script."""
    command = typer.main.get_command(app)
    return int(
        command.main(
            args=list(argv) if argv is not None else None,
            prog_name=PROG,
            standalone_mode=False,
        )
    )
