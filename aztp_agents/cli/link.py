"""``aztp-agents link``, ``unlink`` and ``links``: which identities may connect to which."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import app
from ._client import run
from ._options import JsonOpt
from ._output import console, emit, say, table
from ._resolve import aztp_id, json_object

if TYPE_CHECKING:
    from ..client import Aztp

SourceArg = Annotated[str, typer.Argument(metavar="SOURCE", help="AZTP ID, SPIFFE ID or name.")]
TargetArg = Annotated[str, typer.Argument(metavar="TARGET", help="AZTP ID, SPIFFE ID or name.")]


async def _ends(client: Aztp, source: str, target: str) -> tuple[str, str]:
    """The AZTP IDs of a link's two ends, in order (so a missing source is reported first)."""
    return await aztp_id(client, source), await aztp_id(client, target)


@app.command("link")
def link(
    ctx: typer.Context,
    source: SourceArg,
    target: TargetArg,
    rel_type: Annotated[
        str, typer.Option("--type", help="Relationship type, [a-z_]+ ('linked' is symmetric).")
    ] = "linked",
    metadata: Annotated[
        str | None, typer.Option("--metadata", metavar="JSON", help="Metadata as a JSON object.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Link two identities: SOURCE may connect to TARGET."""
    meta = json_object(metadata, "--metadata")

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.link_identities(*await _ends(client, source, target), rel_type, meta)

    answer = run(ctx, go)
    arrow = "<->" if answer.get("relationshipType") == "linked" else "->"
    emit(
        ctx,
        as_json,
        answer,
        lambda: say(
            f"linked {answer['sourceIdentity']} {arrow} {answer['targetIdentity']} ({answer['relationshipType']})",
            "green",
        ),
    )


@app.command("unlink")
def unlink(
    ctx: typer.Context,
    source: SourceArg,
    target: TargetArg,
    rel_type: Annotated[
        str | None, typer.Option("--type", help="Only links of this type (default: all).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept with the removal record).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the link(s) from SOURCE to TARGET. The removal is operator intent: an adapter
    that declares the link again (its next process start) does not re-create it; only
    `restore-link` (or an explicit `link`) does."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.unlink_identities(
            *await _ends(client, source, target), rel_type, reason
        )

    answer = run(ctx, go)
    emit(
        ctx,
        as_json,
        answer,
        lambda: say(
            f"removed {answer['removed']} link(s) {answer['sourceIdentity']} -> {answer['targetIdentity']}"
        ),
    )


@app.command("restore-link")
def restore_link(
    ctx: typer.Context,
    source: SourceArg,
    target: TargetArg,
    rel_type: Annotated[
        str | None, typer.Option("--type", help="Only links of this type (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Undo an `unlink`: the link comes back with the scope it had, and adapters may declare
    it again."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.restore_link(*await _ends(client, source, target), rel_type)

    answer = run(ctx, go)
    emit(
        ctx,
        as_json,
        answer,
        lambda: say(
            f"restored {answer['restored']} link(s) {answer['sourceIdentity']} -> {answer['targetIdentity']}",
            "green",
        ),
    )


@app.command("links")
def links(
    ctx: typer.Context,
    identity: Annotated[
        str | None,
        typer.Argument(metavar="[IDENTITY]", help="Only the links of this identity (ID or name)."),
    ] = None,
    removed: Annotated[
        bool,
        typer.Option("--removed", help="Only the links operators removed (with who and when)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List links and the scope of each: 'organization' (made through the API or `link`;
    holds everywhere) or 'flow' (a grant an adapter declared for a crew; holds in those flows
    only); then the links operators removed, which adapters do not re-create."""

    async def go(
        client: Aztp,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
        aztp = None if identity is None else await aztp_id(client, identity)
        found = [] if removed else await client.list_links(aztp)
        gone = await client.list_link_removals(aztp)
        names = {}
        if any(x["identityFlowIds"] for x in [*found, *gone]):
            names = {f["_id"]: f["name"] for f in await client.list_flows()}
        return found, gone, names

    found, gone, names = run(ctx, go)

    def flows_of(x: dict[str, Any]) -> str:
        return ", ".join(names.get(f, f) for f in x["identityFlowIds"]) or "-"

    def human() -> None:
        if not found and not gone:
            say("no links")
            return
        if found:
            rows = [
                (
                    x["sourceIdentity"],
                    x["targetIdentity"],
                    x["relationshipType"],
                    x["scope"],
                    flows_of(x),
                )
                for x in found
            ]
            console().print(table("links", ["source", "target", "type", "scope", "flows"], rows))
        if gone:
            rows = [
                (
                    x["sourceIdentity"],
                    x["targetIdentity"],
                    x["relationshipType"],
                    flows_of(x),
                    x["removedBy"] or "-",
                    x["removedAt"],
                    x["reason"] or "-",
                )
                for x in gone
            ]
            console().print(
                table(
                    "removed by operator (restore with `restore-link`)",
                    ["source", "target", "type", "flows", "by", "at", "reason"],
                    rows,
                )
            )

    # --json keeps its shape: the links, or with --removed the removals.
    emit(ctx, as_json, gone if removed else found, human)
