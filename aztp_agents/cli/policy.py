"""``aztp-agents policy``: IAM-style policies, created from a document and attached to identities."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ValidationError
from ._app import sub_app
from ._client import run
from ._errors import UsageProblem
from ._options import IdentityArg, JsonOpt
from ._output import console, emit, say, table, wants_json
from ._resolve import aztp_id, parse_json

if TYPE_CHECKING:
    from ..client import Aztp

policy_app = sub_app("policy", "IAM-style policies: create, list, attach, detach, show.")

CodeArg = Annotated[str, typer.Argument(metavar="CODE", help="Policy code, 'policy:...'.")]


def _policy_document(file: Path | None, statement: str | None) -> dict[str, Any]:
    """A policy document from ``--file`` or ``--statement`` (a document, a statement or a list)."""
    if (file is None) == (statement is None):
        raise UsageProblem("give exactly one of --file F.json or --statement JSON")
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise ValidationError(f"cannot read {file}: {exc.strerror or exc}") from None
        value = parse_json(text, str(file))
    else:
        value = parse_json(statement or "", "--statement")
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
    answer = run(ctx, lambda c: c.create_policy(name, document, code))
    emit(
        ctx,
        as_json,
        answer,
        lambda: say(f"created policy {answer['policyName']} (code {answer['code']})", "green"),
    )


@policy_app.command("attach")
def policy_attach(
    ctx: typer.Context, identity: IdentityArg, code: CodeArg, as_json: JsonOpt = False
) -> None:
    """Attach a policy to an identity."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.attach_policy(await aztp_id(client, identity), code)

    answer = run(ctx, go)
    emit(
        ctx,
        as_json,
        answer,
        lambda: say(f"attached {answer['code']} to {answer['aztpId']}", "green"),
    )


@policy_app.command("detach")
def policy_detach(
    ctx: typer.Context, identity: IdentityArg, code: CodeArg, as_json: JsonOpt = False
) -> None:
    """Detach a policy from an identity."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.detach_policy(await aztp_id(client, identity), code)

    answer = run(ctx, go)
    emit(ctx, as_json, answer, lambda: say(f"detached {answer['code']} from {answer['aztpId']}"))


@policy_app.command("list")
def policy_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the organization's policies and the identities each is attached to."""

    async def go(client: Aztp) -> tuple[list[dict[str, Any]], dict[str, str]]:
        policies = await client.list_policies()
        names = {}
        if policies and not wants_json(ctx, as_json):
            names = {i["aztpId"]: i["name"] for i in await client.list_identities()}
        return policies, names

    policies, names = run(ctx, go)

    def human() -> None:
        if not policies:
            say("no policies: create one with 'aztp-agents policy create NAME --statement JSON'")
            return
        rows = [
            (
                p["code"],
                p["policyName"],
                len((p.get("policyStatement") or {}).get("Statement", [])),
                [names.get(a, a) for a in p["attachedTo"]],
                p["createdAt"],
            )
            for p in policies
        ]
        console().print(
            table(
                f"{len(policies)} policies",
                ["code", "name", "statements", "attached to", "created"],
                rows,
            )
        )

    emit(ctx, as_json, policies, human)


@policy_app.command("show")
def policy_show(ctx: typer.Context, identity: IdentityArg, as_json: JsonOpt = False) -> None:
    """Show the policies attached to an identity."""

    async def go(client: Aztp) -> tuple[str, list[dict[str, Any]]]:
        aztp = await aztp_id(client, identity)
        return aztp, await client.get_policy(aztp)

    aztp, policies = run(ctx, go)

    def human() -> None:
        if not policies:
            say(f"no policies attached to {aztp}")
            return
        rows = [
            (
                p["code"],
                p["policyName"],
                st.get("Effect"),
                st.get("Action"),
                st.get("Resource"),
                st.get("Condition") or None,
            )
            for p in policies
            for st in (p.get("policyStatement") or {}).get("Statement", [])
        ]
        console().print(
            table(
                f"policies of {aztp}",
                ["code", "name", "effect", "action", "resource", "condition"],
                rows,
            )
        )

    emit(ctx, as_json, policies, human)
