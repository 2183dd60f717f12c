"""The ``aztp-agents`` command: identities, flows, links, policies, audit, keys, server, demo.

Works on the embedded authority (``--home DIR`` / ``$AZTP_HOME``) or on a server
(``--url URL --api-key KEY`` / ``$AZTP_URL``, ``$AZTP_API_KEY``); every AZTP operation goes
through the :class:`~aztp_agents.Aztp` facade, so both behave the same.

Tables for people, ``--json`` for scripts. Exit codes:

* 0 ok
* 1 a negative answer (verification invalid, audit chain broken) or an unexpected failure
* 2 usage error or bad input (bad flag, malformed ID, invalid JSON, conflict)
* 3 not found (identity, flow, policy, organization, key)
* 4 authentication or permission refused
* 5 the authority is unavailable (server unreachable, store locked or unreadable)

Errors are one line on stderr, ``error: <message>``; ``--debug`` adds the traceback.
Secrets are never printed, except the one-time API key of ``org create`` / ``keys create``
/ ``keys rotate`` (and the JWT-SVID that ``svid jwt`` exists to print).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from .errors import (
    AuditChainError,
    AuthenticationError,
    AuthorityUnavailableError,
    AztpError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    StoreError,
    ToolCallDenied,
    ValidationError,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from .authority import Authority, Principal
    from .client import Aztp

__all__ = ["app", "main"]

T = TypeVar("T")

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DENIED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5

_FLOW_ID = re.compile(r"[0-9a-f]{24}")


# ============================================================================ plumbing


class UsageProblem(AztpError):
    """Bad use of the command line that the parser cannot see (exit code 2)."""

    code = "usage"


@dataclass
class State:
    """Global options, shared by every command through ``ctx.obj``."""

    home: str | None = None
    url: str | None = None
    api_key: str | None = None  # never printed
    json: bool = False
    debug: bool = False
    url_from_env: bool = False
    home_explicit: bool = False

    def __repr__(self) -> str:  # keep the key out of any debug output
        return f"State(home={self.home!r}, url={self.url!r}, json={self.json}, debug={self.debug})"


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, AuditChainError):
        return EXIT_NEGATIVE
    if isinstance(exc, AuthenticationError | PermissionDeniedError | ToolCallDenied):
        return EXIT_DENIED
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, AuthorityUnavailableError | StoreError | RateLimitedError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, AztpError):
        status = getattr(exc, "status_code", 400)
        if status in (401, 403):
            return EXIT_DENIED
        if status == 404:
            return EXIT_NOT_FOUND
        if status == 429 or status >= 500:
            return EXIT_UNAVAILABLE
        return EXIT_USAGE
    return EXIT_NEGATIVE


def _is_transport_error(exc: BaseException) -> bool:
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


def _describe(exc: BaseException, state: State) -> tuple[str, int]:
    """The one-line message and exit code for an exception."""
    if isinstance(exc, AztpError):
        return _one_line(exc.message), _exit_code(exc)
    if _is_transport_error(exc):
        where = state.url or "the authority"
        return _one_line(f"cannot reach {where}: {exc.__class__.__name__}: {exc}"), EXIT_UNAVAILABLE
    if isinstance(exc, OSError):
        where = exc.filename or state.home or "the AZTP home"
        hint = (
            " (--home must be a folder you can write)"
            if state.home and str(where).startswith(state.home)
            else ""
        )
        return _one_line(f"cannot use {where}: {exc.strerror or exc}{hint}"), EXIT_UNAVAILABLE
    return _one_line(
        f"unexpected {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)"
    ), EXIT_NEGATIVE


def _is_a(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code)


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
        try:
            rv = super().main(
                args,
                prog_name or "aztp-agents",
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                obj=state,
                **extra,
            )
            code = rv if isinstance(rv, int) else EXIT_OK
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            code = 130
        except Exception as exc:
            code = self._handle(exc, state)
        if not standalone_mode:
            return code
        sys.exit(code)

    @staticmethod
    def _handle(exc: Exception, state: State) -> int:
        # Typer >= 0.20 vendors click (typer._click); older versions use click: match by name.
        if _is_a(exc, "NoArgsIsHelpError"):
            ctx = getattr(exc, "ctx", None)
            typer.echo(ctx.get_help() if ctx is not None else str(exc))
            return EXIT_USAGE
        if _is_a(exc, "UsageError"):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)  # type: ignore[attr-defined]
            return EXIT_USAGE
        if _is_a(exc, "ClickException"):
            typer.echo(f"error: {_one_line(exc.format_message())}", err=True)  # type: ignore[attr-defined]
            return int(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
        if _is_a(exc, "Abort") and not isinstance(exc, AztpError):
            typer.echo("error: aborted", err=True)
            return 130
        if state.debug:
            traceback.print_exc(file=sys.stderr)
        message, code = _describe(exc, state)
        typer.echo(f"error: {message}", err=True)
        return code


app = typer.Typer(
    cls=AztpGroup,
    name="aztp-agents",
    help="Verifiable AZTP/SPIFFE identities for AI agents and their tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _subapp(name: str, help: str) -> typer.Typer:
    sub = typer.Typer(name=name, help=help, no_args_is_help=True, pretty_exceptions_enable=False)
    app.add_typer(sub, name=name)
    return sub


identity_app = _subapp("identity", "Issue, list, show, revoke and reissue identities.")
flow_app = _subapp("flow", "Identity flows: create, membership, flow-scoped revocation, health.")
policy_app = _subapp("policy", "IAM-style policies: create, attach, detach, show.")
svid_app = _subapp("svid", "Credentials (SVIDs) for an identity.")
audit_app = _subapp("audit", "The hash-chained audit log.")
org_app = _subapp("org", "Organizations (tenants) of the embedded store.")
keys_app = _subapp("keys", "API keys of the embedded store (shown once, stored hashed).")
user_app = _subapp("user", "Users of an organization in the embedded store.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


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
    state.json, state.debug = as_json, debug
    state.url_from_env = _source(ctx, "url") == "ENVIRONMENT"
    state.home_explicit = _source(ctx, "home") == "COMMANDLINE"
    if debug:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("aztp_agents").setLevel(logging.DEBUG)


def _source(ctx: typer.Context, param: str) -> str | None:
    source = ctx.get_parameter_source(param)
    return None if source is None else str(getattr(source, "name", source))


def _state(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    if state is None:  # only when a command is invoked without the group
        state = ctx.ensure_object(State)
    return state


def _wants_json(ctx: typer.Context, as_json: bool) -> bool:
    return as_json or _state(ctx).json


def _client(state: State) -> Aztp:
    from .client import Aztp

    if state.url:
        try:
            return Aztp(api_key=state.api_key, base_url=state.url)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("aztp_agents"):
                raise AuthorityUnavailableError(
                    "remote mode is not available in this installation (aztp_agents.remote is missing)"
                ) from None
            raise
    return Aztp(api_key=state.api_key, home=state.home)


def _run(ctx: typer.Context, fn: Callable[[Aztp], Awaitable[T]]) -> T:
    """Run one command's coroutine against a fresh client (the CLI is not inside a loop)."""
    client = _client(_state(ctx))

    async def go() -> T:
        try:
            return await fn(client)
        finally:
            client.close()

    return asyncio.run(go())


def _embedded(ctx: typer.Context, what: str) -> tuple[Authority, Principal]:
    """The embedded authority and the default principal, for admin commands."""
    state = _state(ctx)
    if state.url and not (state.url_from_env and state.home_explicit):
        raise UsageProblem(
            f"'{what}' manages the embedded store directly: run it on the server's host with "
            "--home DIR and without --url"
            + (" (AZTP_URL is set: unset it or pass --home)" if state.url_from_env else "")
        )
    client = _client(State(home=state.home, api_key=None if state.url else state.api_key))
    backend: Any = client.backend
    return backend.authority, backend.principal


# ---------------------------------------------------------------------------- output


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    width = None
    stream = sys.stderr if stderr else sys.stdout
    if not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ:
        width = 200  # piped or captured: do not cut IDs at 80 columns
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _text(value: Any) -> Any:
    from rich.text import Text

    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, list | tuple):
        return Text(", ".join(str(v) for v in value) or "-")
    if isinstance(value, Mapping):
        return Text(json.dumps(value, default=str, ensure_ascii=False))
    return Text(str(value))


def _status_text(status: str | None) -> Any:
    from rich.text import Text

    styles = {
        "active": "green",
        "valid": "green",
        "healthy": "green",
        "warning": "yellow",
        "revoked": "red",
        "invalid": "red",
        "critical": "red",
    }
    return Text(str(status or "-"), style=styles.get(str(status), ""))


def _table(title: str | None, columns: Iterable[str], rows: Iterable[Sequence[Any]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else _text(cell) for cell in row))
    return table


def _fields(title: str | None, pairs: Iterable[tuple[str, Any]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in pairs:
        table.add_row(key, value if isinstance(value, Text) else _text(value))
    return table


def _say(message: str, style: str | None = None) -> None:
    from rich.text import Text

    _console().print(Text(message, style=style or ""))


def _emit(ctx: typer.Context, as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if _wants_json(ctx, as_json):
        _print_json(data)
    else:
        human()


# ---------------------------------------------------------------------------- resolving


async def _aztp_id(client: Aztp, value: str) -> str:
    """An AZTP ID from an AZTP ID, a SPIFFE ID or an identity name."""
    from .ids import AztpId, validate_name

    value = value.strip()
    if value.startswith("aztp://"):
        return str(AztpId.parse(value))
    if value.startswith("spiffe://"):
        return str(AztpId.from_spiffe(value))
    if "://" in value:
        raise ValidationError(
            f"expected an AZTP ID (aztp://...), a SPIFFE ID or an identity name, got {value!r}"
        )
    validate_name(value)
    answer = json.loads(await client.get_identity_by_name(value))
    return str(answer["data"]["aztpId"])


async def _flow(client: Aztp, value: str) -> dict[str, Any]:
    """A visible flow by id or name (an id wins over a name)."""
    flows = await client.list_flows()
    for flow in flows:
        if flow["_id"] == value:
            return flow
    for flow in flows:
        if flow["name"] == value:
            return flow
    what = "id" if _FLOW_ID.fullmatch(value) else "name"
    raise NotFoundError(f"no identity flow with {what} {value!r}; see 'aztp-agents flow list'")


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _json_object(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = _parse_json(text, what)
    if not isinstance(value, dict):
        raise ValidationError(f'{what} must be a JSON object like \'{{"team": "research"}}\'')
    return value


# ============================================================================ identities


@identity_app.command("issue")
def identity_issue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Identity name: 2-64 of [A-Za-z0-9-/].")],
    is_global: Annotated[
        bool, typer.Option("--global", help="Organization-wide, discoverable identity.")
    ] = False,
    trust_domain: Annotated[
        str | None,
        typer.Option("--trust-domain", help="Trust domain (default: the organization's)."),
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", help="Environment segment (default production).")
    ] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Parent identity (AZTP ID or name).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Write svid.pem, svid.key (mode 600) and bundle.pem to DIR.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue an identity (idempotent by name: the same AZTP ID with a fresh credential)."""

    async def go(client: Aztp) -> tuple[Any, dict[str, Any]]:
        config: dict[str, Any] = {"isGlobalIdentity": is_global}
        if trust_domain:
            config["trustDomain"] = trust_domain
        if environment:
            config["environment"] = environment
        if parent:
            config["parentIdentity"] = await _aztp_id(client, parent)
        secured = await client.secure_connect(None, name, config)
        doc = json.loads(await client.get_identity_by_aztp_id(secured.identity.aztp_id))["data"]
        return secured.identity, doc

    identity, doc = _run(ctx, go)
    if not identity.valid:
        _fail(
            f"{identity.aztp_id} is revoked; no credential issued. Reissue it with "
            f"'aztp-agents identity reissue {identity.aztp_id}'",
            EXIT_NEGATIVE,
        )
    written: list[str] = []
    if out is not None:
        written = _write_credentials(out, identity)
    result = {**doc, "spiffeId": identity.spiffe_id, "credentialExpiresAt": identity.expires_at}
    if written:
        result["files"] = written

    def human() -> None:
        con = _console()
        con.print(
            _fields(
                None,
                [
                    ("aztp id", doc["aztpId"]),
                    ("spiffe id", identity.spiffe_id),
                    ("name", doc["name"]),
                    ("status", _status_text(doc["status"])),
                    ("type", doc.get("identityType")),
                    ("environment", doc.get("environment")),
                    ("parent", doc.get("parentIdentity")),
                    (
                        "credential",
                        f"X.509-SVID until {identity.expires_at}"
                        if identity.certificate
                        else "none",
                    ),
                    *([("files", written)] if written else []),
                ],
            )
        )

    _emit(ctx, as_json, result, human)


def _write_credentials(out: Path, identity: Any) -> list[str]:
    if not identity.certificate:
        raise ValidationError("no credential was issued, nothing to write")
    out.mkdir(parents=True, exist_ok=True)
    files = {"svid.pem": identity.certificate, "bundle.pem": identity.ca_certificate}
    written = []
    for fname, content in files.items():
        (out / fname).write_text(content)
        written.append(str(out / fname))
    if identity.private_key:
        key_path = out / "svid.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(identity.private_key)
        os.chmod(key_path, 0o600)
        written.append(str(key_path))
    return written


@identity_app.command("list")
def identity_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the organization's identities."""
    docs = _run(ctx, lambda c: c.list_identities())

    def human() -> None:
        if not docs:
            _say("no identities yet: issue one with 'aztp-agents identity issue NAME'")
            return
        _console().print(
            _table(
                f"{len(docs)} identities",
                ["name", "aztp id", "type", "status", "environment", "created"],
                [
                    (
                        d["name"],
                        d["aztpId"],
                        d.get("identityType"),
                        _status_text(d["status"]),
                        d.get("environment"),
                        d.get("createdAt"),
                    )
                    for d in docs
                ],
            )
        )

    _emit(ctx, as_json, docs, human)


@identity_app.command("show")
def identity_show(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID|NAME", help="AZTP ID, SPIFFE ID or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one identity and the flows it belongs to."""

    async def go(client: Aztp) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        aztp = await _aztp_id(client, identity)
        doc = json.loads(await client.get_identity_by_aztp_id(aztp))["data"]
        flows = []
        for flow in await client.list_flows():
            for member in flow["identities"]:
                if member["aztpId"] == aztp:
                    flows.append(
                        {
                            "_id": flow["_id"],
                            "name": flow["name"],
                            "status": member["status"],
                            "revocationReason": member.get("revocationReason"),
                        }
                    )
        return doc, flows

    doc, flows = _run(ctx, go)

    def human() -> None:
        from .ids import AztpId

        pairs: list[tuple[str, Any]] = [
            ("aztp id", doc["aztpId"]),
            ("spiffe id", AztpId.parse(doc["aztpId"]).spiffe_id),
            ("name", doc["name"]),
            ("status", _status_text(doc["status"])),
            ("type", doc.get("identityType")),
            ("trust domain", doc.get("trustDomain")),
            ("environment", doc.get("environment")),
            ("parent", doc.get("parentIdentity")),
            ("created", doc.get("createdAt")),
            ("updated", doc.get("updatedAt")),
        ]
        if doc["status"] == "revoked":
            pairs += [("revoked", doc.get("revokedAt")), ("reason", doc.get("revocationReason"))]
        pairs.append(("flows", [f"{f['name']} ({f['status']})" for f in flows]))
        _console().print(_fields(None, pairs))

    _emit(ctx, as_json, {**doc, "flows": flows}, human)


@identity_app.command("revoke")
def identity_revoke(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the audit log).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an identity everywhere at once (undo with 'identity reissue')."""

    async def go(client: Aztp) -> dict[str, Any]:
        return json.loads(await client.revoke_identity(await _aztp_id(client, identity), reason))

    answer = _run(ctx, go)
    _emit(
        ctx,
        as_json,
        answer,
        lambda: _say(f"revoked {answer['aztpId']}" + (f" ({reason})" if reason else ""), "red"),
    )


@identity_app.command("reissue")
def identity_reissue(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Make a revoked identity valid again with a new credential (old credentials stay dead)."""

    async def go(client: Aztp) -> dict[str, Any]:
        return json.loads(await client.reissue_identity(await _aztp_id(client, identity)))

    answer = _run(ctx, go)
    expires = f" (new credential until {answer['expiresAt']})" if answer.get("expiresAt") else ""
    _emit(ctx, as_json, answer, lambda: _say(f"reissued {answer['aztpId']}{expires}", "green"))


# ============================================================================ flows


def _flow_summary(flow: Mapping[str, Any]) -> tuple[int, int]:
    members = flow.get("identities") or []
    return len(members), sum(1 for m in members if m.get("status") == "revoked")


@flow_app.command("create")
def flow_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Flow name, unique in the organization.")],
    description: Annotated[
        str | None, typer.Option("--description", help="What the flow is for.")
    ] = None,
    private: Annotated[
        bool,
        typer.Option(
            "--private/--public",
            help="Private: visible to you only. Public: to the whole organization.",
        ),
    ] = True,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", metavar="JSON", help="Metadata as a JSON object.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an identity flow."""
    meta = _json_object(metadata, "--metadata")
    flow = _run(
        ctx,
        lambda c: c.create_flow(
            name,
            description=description,
            discoverable="private" if private else "public",
            tags=list(tag or []),
            metadata=meta,
        ),
    )
    _emit(
        ctx,
        as_json,
        flow,
        lambda: _say(
            f"created {flow['discoverable']} flow {flow['name']} (id {flow['_id']})", "green"
        ),
    )


@flow_app.command("list")
def flow_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the flows you can see."""
    flows = _run(ctx, lambda c: c.list_flows())

    def human() -> None:
        if not flows:
            _say("no flows yet: create one with 'aztp-agents flow create NAME'")
            return
        rows = []
        for f in flows:
            total, revoked = _flow_summary(f)
            rows.append(
                (
                    f["_id"],
                    f["name"],
                    f["discoverable"],
                    total,
                    revoked,
                    f.get("tags") or [],
                    f.get("description"),
                )
            )
        _console().print(
            _table(
                f"{len(flows)} flows",
                ["id", "name", "visibility", "members", "revoked", "tags", "description"],
                rows,
            )
        )

    _emit(ctx, as_json, flows, human)


@flow_app.command("show")
def flow_show(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="ID|NAME", help="Flow id or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a flow and its members."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.get_flow((await _flow(client, flow))["_id"])

    doc = _run(ctx, go)

    def human() -> None:
        con = _console()
        con.print(
            _fields(
                None,
                [
                    ("id", doc["_id"]),
                    ("name", doc["name"]),
                    ("visibility", doc["discoverable"]),
                    ("description", doc.get("description")),
                    ("tags", doc.get("tags") or []),
                    ("metadata", doc.get("metadata") or None),
                    ("created", doc.get("createdAt")),
                ],
            )
        )
        members = doc.get("identities") or []
        if members:
            con.print(
                _table(
                    "members",
                    ["aztp id", "in-flow status", "added", "revocation reason"],
                    [
                        (
                            m["aztpId"],
                            _status_text(m["status"]),
                            m.get("addedAt"),
                            m.get("revocationReason"),
                        )
                        for m in members
                    ],
                )
            )
        else:
            _say(f"no members: add one with 'aztp-agents flow add {doc['name']} ID'")

    _emit(ctx, as_json, doc, human)


def _flow_op(
    ctx: typer.Context,
    flow: str,
    identity: str,
    op: Callable[[Aztp, str, str], Awaitable[dict[str, Any]]],
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    async def go(client: Aztp) -> tuple[dict[str, Any], str, dict[str, Any]]:
        found = await _flow(client, flow)
        aztp = await _aztp_id(client, identity)
        return found, aztp, await op(client, found["_id"], aztp)

    return _run(ctx, go)


@flow_app.command("add")
def flow_add(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow id or name.")],
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Add an identity to a flow (idempotent)."""
    found, aztp, answer = _flow_op(
        ctx, flow, identity, lambda c, f, a: c.add_identity_to_flow(f, a)
    )
    _emit(ctx, as_json, answer, lambda: _say(f"added {aztp} to flow {found['name']}", "green"))


@flow_app.command("remove")
def flow_remove(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow id or name.")],
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove an identity from a flow (idempotent; a flow revocation survives it)."""
    found, aztp, answer = _flow_op(
        ctx, flow, identity, lambda c, f, a: c.remove_identity_from_flow(f, a)
    )
    _emit(ctx, as_json, answer, lambda: _say(f"removed {aztp} from flow {found['name']}"))


@flow_app.command("revoke")
def flow_revoke(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow id or name.")],
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the flow and the audit log).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an identity in one flow only (still valid globally and in other flows)."""
    found, aztp, answer = _flow_op(
        ctx, flow, identity, lambda c, f, a: c.revoke_flow_identity(a, f, reason)
    )
    _emit(
        ctx,
        as_json,
        answer,
        lambda: _say(
            f"revoked {aztp} in flow {found['name']}" + (f" ({reason})" if reason else ""), "red"
        ),
    )


@flow_app.command("reinstate")
def flow_reinstate(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow id or name.")],
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Undo a flow revocation."""
    found, aztp, answer = _flow_op(
        ctx, flow, identity, lambda c, f, a: c.reinstate_flow_identity(a, f)
    )
    _emit(ctx, as_json, answer, lambda: _say(f"reinstated {aztp} in flow {found['name']}", "green"))


@flow_app.command("health")
def flow_health(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow id or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Share of members valid in the flow: healthy >= 90 %, warning >= 70 %, else critical."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.get_flow_health((await _flow(client, flow))["_id"])

    report = _run(ctx, go)

    def human() -> None:
        from rich.text import Text

        con = _console()
        line = Text(f"flow {report['name']}: ")
        line.append(str(report["status"]), style=_status_text(report["status"]).style)
        line.append(
            f" ({report['valid']}/{report['total']} valid, score {report['securityScore']} %)"
        )
        con.print(line)
        if report.get("identities"):
            con.print(
                _table(
                    None,
                    ["aztp id", "valid", "reason"],
                    [
                        (
                            r["aztpId"],
                            _status_text("valid" if r["valid"] else "invalid"),
                            r["reason"],
                        )
                        for r in report["identities"]
                    ],
                )
            )

    _emit(ctx, as_json, report, human)


@flow_app.command("delete")
def flow_delete(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow id or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete a flow (its memberships go; the identities stay)."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.delete_flow((await _flow(client, flow))["_id"])

    answer = _run(ctx, go)
    _emit(ctx, as_json, answer, lambda: _say(f"deleted flow {answer['name']} (id {answer['_id']})"))


# ============================================================================ links, verify


@app.command("link")
def link(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="AZTP ID, SPIFFE ID or name.")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="AZTP ID, SPIFFE ID or name.")],
    rel_type: Annotated[
        str, typer.Option("--type", help="Relationship type, [a-z_]+ ('linked' is symmetric).")
    ] = "linked",
    metadata: Annotated[
        str | None, typer.Option("--metadata", metavar="JSON", help="Metadata as a JSON object.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Link two identities: SOURCE may connect to TARGET."""
    meta = _json_object(metadata, "--metadata")

    async def go(client: Aztp) -> dict[str, Any]:
        src, dst = await _aztp_id(client, source), await _aztp_id(client, target)
        return await client.link_identities(src, dst, rel_type, meta)

    answer = _run(ctx, go)
    arrow = "<->" if answer.get("relationshipType") == "linked" else "->"
    _emit(
        ctx,
        as_json,
        answer,
        lambda: _say(
            f"linked {answer['sourceIdentity']} {arrow} {answer['targetIdentity']} ({answer['relationshipType']})",
            "green",
        ),
    )


@app.command("unlink")
def unlink(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="AZTP ID, SPIFFE ID or name.")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="AZTP ID, SPIFFE ID or name.")],
    rel_type: Annotated[
        str | None, typer.Option("--type", help="Only links of this type (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the link(s) from SOURCE to TARGET."""

    async def go(client: Aztp) -> dict[str, Any]:
        src, dst = await _aztp_id(client, source), await _aztp_id(client, target)
        return await client.unlink_identities(src, dst, rel_type)

    answer = _run(ctx, go)
    _emit(
        ctx,
        as_json,
        answer,
        lambda: _say(
            f"removed {answer['removed']} link(s) {answer['sourceIdentity']} -> {answer['targetIdentity']}"
        ),
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    flow: Annotated[
        str | None,
        typer.Option("--flow", metavar="FLOW", help="Verify inside this flow (id or name)."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="TARGET", help="Instead: may ID connect to TARGET?"),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option("--policy", metavar="CODE", help="With --to: a policy that must allow it."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify an identity (globally, or in a flow). Exit code 0 valid, 1 invalid."""
    if to is None and policy is not None:
        raise UsageProblem("--policy needs --to TARGET")
    if to is not None and flow is not None:
        raise UsageProblem("use either --flow or --to, not both")

    async def go(client: Aztp) -> dict[str, Any]:
        aztp = await _aztp_id(client, identity)
        if to is not None:
            dst = await _aztp_id(client, to)
            answer = dict(
                await client.backend.acall(
                    "authorize_connection", source=aztp, target=dst, policy_code=policy
                )
            )
            return {**answer, "from": aztp, "to": dst, "policyCode": policy}
        flow_id = None if flow is None else (await _flow(client, flow))["_id"]
        return await client.verify(aztp, flow_id)

    answer = _run(ctx, go)
    valid = bool(answer.get("valid"))

    def human() -> None:
        from rich.text import Text

        line = Text()
        line.append("valid" if valid else "invalid", style="bold green" if valid else "bold red")
        subject = (
            f"{answer['from']} -> {answer['to']}" if to is not None else answer.get("aztpId", "")
        )
        scope = f" in flow {flow}" if flow else ""
        line.append(f": {subject}{scope} ({answer.get('message') or answer.get('reason')})")
        _console().print(line)

    _emit(ctx, as_json, answer, human)
    raise typer.Exit(EXIT_OK if valid else EXIT_NEGATIVE)


# ============================================================================ policies


def _policy_document(file: Path | None, statement: str | None) -> dict[str, Any]:
    if (file is None) == (statement is None):
        raise UsageProblem("give exactly one of --file F.json or --statement JSON")
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise ValidationError(f"cannot read {file}: {exc.strerror or exc}") from None
        value = _parse_json(text, str(file))
    else:
        value = _parse_json(statement or "", "--statement")
    if isinstance(value, list):
        return {"Statement": value}
    if isinstance(value, dict):
        return value if "Statement" in value else {"Statement": [value]}
    raise ValidationError(
        'a policy is a JSON object like {"Statement": [{"Effect": "Allow", "Action": "tool:*"}]}'
    )


@policy_app.command("create")
def policy_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Policy name.")],
    file: Annotated[
        Path | None, typer.Option("--file", metavar="F.json", help="Policy document file.")
    ] = None,
    statement: Annotated[
        str | None,
        typer.Option(
            "--statement", metavar="JSON", help="A document, one statement or a list of statements."
        ),
    ] = None,
    code: Annotated[
        str | None, typer.Option("--code", help="Policy code 'policy:...' (default: generated).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a policy from an IAM-style document."""
    document = _policy_document(file, statement)
    answer = _run(ctx, lambda c: c.create_policy(name, document, code))
    _emit(
        ctx,
        as_json,
        answer,
        lambda: _say(f"created policy {answer['policyName']} (code {answer['code']})", "green"),
    )


@policy_app.command("attach")
def policy_attach(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    code: Annotated[str, typer.Argument(metavar="CODE", help="Policy code, 'policy:...'.")],
    as_json: JsonOpt = False,
) -> None:
    """Attach a policy to an identity."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.attach_policy(await _aztp_id(client, identity), code)

    answer = _run(ctx, go)
    _emit(
        ctx,
        as_json,
        answer,
        lambda: _say(f"attached {answer['code']} to {answer['aztpId']}", "green"),
    )


@policy_app.command("detach")
def policy_detach(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    code: Annotated[str, typer.Argument(metavar="CODE", help="Policy code, 'policy:...'.")],
    as_json: JsonOpt = False,
) -> None:
    """Detach a policy from an identity."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.detach_policy(await _aztp_id(client, identity), code)

    answer = _run(ctx, go)
    _emit(ctx, as_json, answer, lambda: _say(f"detached {answer['code']} from {answer['aztpId']}"))


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show the policies attached to an identity."""

    async def go(client: Aztp) -> tuple[str, list[dict[str, Any]]]:
        aztp = await _aztp_id(client, identity)
        return aztp, await client.get_policy(aztp)

    aztp, policies = _run(ctx, go)

    def human() -> None:
        if not policies:
            _say(f"no policies attached to {aztp}")
            return
        rows = []
        for p in policies:
            for st in (p.get("policyStatement") or {}).get("Statement", []):
                rows.append(
                    (
                        p["code"],
                        p["policyName"],
                        st.get("Effect"),
                        st.get("Action"),
                        st.get("Resource"),
                        st.get("Condition") or None,
                    )
                )
        _console().print(
            _table(
                f"policies of {aztp}",
                ["code", "name", "effect", "action", "resource", "condition"],
                rows,
            )
        )

    _emit(ctx, as_json, policies, human)


# ============================================================================ credentials


@app.command("bundle")
def bundle(
    ctx: typer.Context,
    trust_domain: Annotated[
        str | None, typer.Option("--trust-domain", help="Which trust domain (needed if several).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the SPIFFE trust bundle (JWKS) of a trust domain."""
    bundles = _run(ctx, lambda c: c.get_trust_bundle(trust_domain))
    if trust_domain:
        if trust_domain not in bundles:
            raise NotFoundError(f"trust domain {trust_domain!r} is not one of this organization's")
        _print_json(bundles[trust_domain])
        return
    if len(bundles) == 1:
        _print_json(next(iter(bundles.values())))
        return
    if not bundles:
        raise NotFoundError("this organization has no trust domain yet")
    raise UsageProblem(
        f"this organization has {len(bundles)} trust domains ({', '.join(sorted(bundles))}): "
        "choose one with --trust-domain"
    )


@svid_app.command("jwt")
def svid_jwt(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")],
    audience: Annotated[list[str], typer.Option("--audience", help="Audience (repeatable).")],
    ttl: Annotated[int, typer.Option("--ttl", min=1, max=86400, help="Lifetime in seconds.")] = 300,
    as_json: JsonOpt = False,
) -> None:
    """Print a JWT-SVID for an identity (the token only)."""

    async def go(client: Aztp) -> tuple[str, str]:
        aztp = await _aztp_id(client, identity)
        aud: str | list[str] = audience[0] if len(audience) == 1 else list(audience)
        return aztp, await client.fetch_jwt_svid(aztp, aud, ttl=ttl)

    aztp, token = _run(ctx, go)
    if _wants_json(ctx, as_json):
        _print_json({"token": token, "aztpId": aztp, "audience": list(audience), "ttl": ttl})
    else:
        typer.echo(token)


# ============================================================================ audit


@audit_app.command("tail")
def audit_tail(
    ctx: typer.Context,
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=0, help="How many of the latest entries (0: all).")
    ] = 20,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            metavar="PATTERN",
            help="Only actions matching, e.g. 'flow.*' or 'decision.*'.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the latest audit entries."""
    entries = _run(ctx, lambda c: c.audit(limit=lines or None, action=action))

    def human() -> None:
        if not entries:
            _say("no audit entries" + (f" matching {action!r}" if action else ""))
            return
        _console().print(
            _table(
                None,
                ["seq", "time", "action", "subject", "details"],
                [
                    (e["seq"], e["ts"], e["action"], e.get("subject"), e.get("data") or None)
                    for e in entries
                ],
            )
        )

    _emit(ctx, as_json, entries, human)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Check the audit hash chain. Exit code 0 intact, 1 broken."""
    report = _run(ctx, lambda c: c.verify_audit())
    ok = bool(report.get("ok"))
    if _wants_json(ctx, as_json):
        _print_json(report)
    elif ok:
        _say(f"audit chain intact: {report['entries']} entries verified", "green")
    else:
        typer.echo(
            f"audit chain broken: {_one_line(report.get('problem') or 'unknown problem')}", err=True
        )
    raise typer.Exit(EXIT_OK if ok else EXIT_NEGATIVE)


# ============================================================================ organizations, keys, users


def _org_principal(
    ctx: typer.Context, org: str | None, user: str | None, what: str
) -> tuple[Authority, Principal]:
    authority, default = _embedded(ctx, what)
    if org is None and user is None:
        return authority, default
    org_id = default.org_id if org is None else authority.org_by_name(org)
    return authority, authority.principal_for(org_id, user)


def _warn_once() -> None:
    typer.echo(
        "note: the API key is shown only this once; store it now (only its hash is kept).", err=True
    )


@org_app.command("create")
def org_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Organization name.")],
    trust_domain: Annotated[
        str, typer.Option("--trust-domain", help="Trust domain it owns (unique).")
    ],
    user: Annotated[str, typer.Option("--user", help="Name of its first user.")] = "admin",
    as_json: JsonOpt = False,
) -> None:
    """Create an organization with its own CA and a first user's API key."""
    authority, _ = _embedded(ctx, "org create")
    principal, key = authority.create_org(name, trust_domain, user_name=user)
    keys = authority.list_api_keys(principal.org_id)
    result = {
        "org": principal.org_name,
        "org_id": principal.org_id,
        "trust_domain": principal.default_trust_domain,
        "user": principal.user_name,
        "key_id": keys[0]["id"] if keys else None,
        "api_key": key,
    }

    def human() -> None:
        _console().print(_fields(None, [(k, v) for k, v in result.items()]))
        _warn_once()

    _emit(ctx, as_json, result, human)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    org: Annotated[
        str | None, typer.Option("--org", help="Organization name (default: the local one).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="User name (default: the organization's first).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key (shown once)."""
    authority, principal = _org_principal(ctx, org, user, "keys create")
    key_id, key = authority.create_api_key(principal.org_id, principal.user_id)
    result = {"api_key": key, "id": key_id, "org": principal.org_name, "user": principal.user_name}

    def human() -> None:
        _console().print(_fields(None, [(k, v) for k, v in result.items()]))
        _warn_once()

    _emit(ctx, as_json, result, human)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    org: Annotated[
        str | None, typer.Option("--org", help="Organization name (default: the local one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (prefixes only; the keys themselves are not stored)."""
    authority, principal = _org_principal(ctx, org, None, "keys list")
    keys = authority.list_api_keys(principal.org_id)

    def human() -> None:
        if not keys:
            _say(
                f"no API keys in organization {principal.org_name}: create one with 'aztp-agents keys create'"
            )
            return
        _console().print(
            _table(
                f"API keys of {principal.org_name}",
                ["id", "prefix", "user id", "created", "status"],
                [
                    (
                        k["id"],
                        k["prefix"],
                        k["userId"],
                        k["createdAt"],
                        _status_text("revoked") if k.get("revokedAt") else _status_text("active"),
                    )
                    for k in keys
                ],
            )
        )

    _emit(ctx, as_json, keys, human)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key's id (see 'keys list').")
    ],
    org: Annotated[
        str | None, typer.Option("--org", help="Organization name (default: the local one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key (refused at once)."""
    authority, principal = _org_principal(ctx, org, None, "keys revoke")
    authority.revoke_api_key(principal.org_id, key_id)
    result = {"id": key_id, "org": principal.org_name, "revoked": True}
    _emit(ctx, as_json, result, lambda: _say(f"revoked API key {key_id}", "red"))


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key's id (see 'keys list').")
    ],
    org: Annotated[
        str | None, typer.Option("--org", help="Organization name (default: the local one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace an API key: a new key for the same user (shown once); the old one is revoked."""
    authority, principal = _org_principal(ctx, org, None, "keys rotate")
    new_id, key = authority.rotate_api_key(principal.org_id, key_id)  # one transaction
    result = {"api_key": key, "id": new_id, "org": principal.org_name, "revoked": key_id}

    def human() -> None:
        _console().print(_fields(None, [(k, v) for k, v in result.items()]))
        _warn_once()

    _emit(ctx, as_json, result, human)


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name, unique in the organization.")],
    org: Annotated[
        str | None, typer.Option("--org", help="Organization name (default: the local one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user (give it a key with 'keys create --user NAME')."""
    authority, principal = _org_principal(ctx, org, None, "user create")
    created = authority.create_user(principal.org_id, name)
    result = {"id": created.user_id, "user": created.user_name, "org": created.org_name}
    _emit(
        ctx,
        as_json,
        result,
        lambda: _say(
            f"created user {created.user_name} in {created.org_name}; key: aztp-agents keys create "
            f"--org {created.org_name} --user {created.user_name}",
            "green",
        ),
    )


# ============================================================================ server, demo


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8700,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", metavar="F", help="TLS certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", metavar="F", help="TLS private key (PEM).")
    ] = None,
) -> None:
    """Run the authority as an HTTP server over the embedded store (--home)."""
    state = _state(ctx)
    if state.url and not (state.url_from_env and state.home_explicit):
        raise UsageProblem(
            "'serve' runs the authority on this host's store: use --home DIR, not --url"
            + (" (AZTP_URL is set: unset it or pass --home)" if state.url_from_env else "")
        )
    if (tls_cert is None) != (tls_key is None):
        raise UsageProblem("TLS needs both --tls-cert and --tls-key")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not path.is_file():
            raise ValidationError(f"{flag} {path}: no such file")
    try:
        from .server import run
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {
            "aztp_agents",
            "fastapi",
            "starlette",
            "uvicorn",
        }:
            _fail("the server is not installed: pip install 'aztp-agents[server]'", EXIT_USAGE)
        raise
    from .client import resolve_home

    home = resolve_home(state.home)
    scheme = "https" if tls_cert else "http"
    typer.echo(f"aztp-agents: serving {home} on {scheme}://{host}:{port}", err=True)
    run(home, host, port, str(tls_cert) if tls_cert else None, str(tls_key) if tls_key else None)


@app.command("demo")
def demo(ctx: typer.Context) -> None:
    """A secured CrewAI crew, offline: decisions live, a revocation mid-run, the audit trail."""
    try:
        from .demo import main as demo_main
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("aztp_agents"):
            _fail(
                "the demo is not part of this installation (aztp_agents.demo is missing)",
                EXIT_USAGE,
            )
        if exc.name:
            _fail(
                f"the demo needs {exc.name.split('.')[0]!r}: pip install 'aztp-agents[crewai]'",
                EXIT_USAGE,
            )
        raise
    state = _state(ctx)
    rv = demo_main(state.home) if state.home else demo_main()  # default: a fresh temporary home
    raise typer.Exit(rv if isinstance(rv, int) else EXIT_OK)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aztp-agents`` script."""
    command = typer.main.get_command(app)
    return int(
        command.main(
            args=list(argv) if argv is not None else None,
            prog_name="aztp-agents",
            standalone_mode=False,
        )
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
