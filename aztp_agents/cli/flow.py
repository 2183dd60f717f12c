"""``aztp-agents flow``: identity flows, their membership, flow-scoped revocation and health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import sub_app
from ._client import run
from ._errors import UsageProblem
from ._options import FlowArg, IdentityArg, JsonOpt
from ._output import console, emit, fields, say, status_text, table
from ._resolve import aztp_id, find_flow, json_object

if TYPE_CHECKING:
    from ..client import Aztp

flow_app = sub_app("flow", "Identity flows: create, membership, flow-scoped revocation, health.")

# One membership operation: (client, flow id, AZTP ID) -> the API's answer.
MemberOp = Callable[["Aztp", str, str], Awaitable[dict[str, Any]]]


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
    meta = json_object(metadata, "--metadata")
    flow = run(
        ctx,
        lambda c: c.create_flow(
            name,
            description=description,
            discoverable="private" if private else "public",
            tags=list(tag or []),
            metadata=meta,
        ),
    )
    emit(
        ctx,
        as_json,
        flow,
        lambda: say(
            f"created {flow['discoverable']} flow {flow['name']} (id {flow['_id']})", "green"
        ),
    )


def _member_counts(flow: Mapping[str, Any]) -> tuple[int, int]:
    """(members, members revoked in the flow)."""
    members = flow.get("identities") or []
    return len(members), sum(1 for m in members if m.get("status") == "revoked")


@flow_app.command("list")
def flow_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the flows you can see."""
    flows = run(ctx, lambda c: c.list_flows())

    def human() -> None:
        if not flows:
            say("no flows yet: create one with 'aztp-agents flow create NAME'")
            return
        rows = [
            (
                f["_id"],
                f["name"],
                f["discoverable"],
                *_member_counts(f),
                f.get("tags") or [],
                f.get("description"),
            )
            for f in flows
        ]
        console().print(
            table(
                f"{len(flows)} flows",
                ["id", "name", "visibility", "members", "revoked", "tags", "description"],
                rows,
            )
        )

    emit(ctx, as_json, flows, human)


@flow_app.command("show")
def flow_show(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(metavar="ID|NAME", help="Flow id or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a flow and its members."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.get_flow((await find_flow(client, flow))["_id"])

    doc = run(ctx, go)

    def human() -> None:
        con = console()
        con.print(
            fields(
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
        if not members:
            say(f"no members: add one with 'aztp-agents flow add {doc['name']} ID'")
            return
        con.print(
            table(
                "members",
                ["aztp id", "in-flow status", "added", "revocation reason"],
                [
                    (
                        m["aztpId"],
                        status_text(m["status"]),
                        m.get("addedAt"),
                        m.get("revocationReason"),
                    )
                    for m in members
                ],
            )
        )

    emit(ctx, as_json, doc, human)


def _change_membership(
    ctx: typer.Context,
    as_json: bool,
    flow: str,
    identity: str,
    op: MemberOp,
    message: Callable[[str, str], str],
    style: str | None,
) -> None:
    """Resolve ``flow`` and ``identity``, run ``op`` on them and print its answer.

    ``message(aztp_id, flow_name)`` is the line printed for people.
    """

    async def go(client: Aztp) -> tuple[dict[str, Any], str, dict[str, Any]]:
        found = await find_flow(client, flow)
        aztp = await aztp_id(client, identity)
        return found, aztp, await op(client, found["_id"], aztp)

    found, aztp, answer = run(ctx, go)
    emit(ctx, as_json, answer, lambda: say(message(aztp, found["name"]), style))


def _membership_command(
    name: str, help: str, op: MemberOp, message: Callable[[str, str], str], style: str | None
) -> None:
    """Register ``flow NAME FLOW ID``: a membership change with no option but ``--json``."""

    @flow_app.command(name, help=help)
    def command(
        ctx: typer.Context, flow: FlowArg, identity: IdentityArg, as_json: JsonOpt = False
    ) -> None:
        _change_membership(ctx, as_json, flow, identity, op, message, style)


_membership_command(
    "add",
    "Add an identity to a flow (idempotent).",
    lambda c, f, a: c.add_identity_to_flow(f, a),
    lambda aztp, name: f"added {aztp} to flow {name}",
    "green",
)
_membership_command(
    "remove",
    "Remove an identity from a flow (idempotent; a flow revocation survives it).",
    lambda c, f, a: c.remove_identity_from_flow(f, a),
    lambda aztp, name: f"removed {aztp} from flow {name}",
    None,
)


@flow_app.command("revoke")
def flow_revoke(
    ctx: typer.Context,
    flow: FlowArg,
    identity: IdentityArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the flow and the audit log).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an identity in one flow only (still valid globally and in other flows)."""
    suffix = f" ({reason})" if reason else ""
    _change_membership(
        ctx,
        as_json,
        flow,
        identity,
        lambda c, f, a: c.revoke_flow_identity(a, f, reason),
        lambda aztp, name: f"revoked {aztp} in flow {name}{suffix}",
        "red",
    )


_membership_command(
    "reinstate",
    "Undo a flow revocation.",
    lambda c, f, a: c.reinstate_flow_identity(a, f),
    lambda aztp, name: f"reinstated {aztp} in flow {name}",
    "green",
)


@flow_app.command("health")
def flow_health(ctx: typer.Context, flow: FlowArg, as_json: JsonOpt = False) -> None:
    """Share of members valid in the flow: healthy >= 90 %, warning >= 70 %, else critical."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.get_flow_health((await find_flow(client, flow))["_id"])

    report = run(ctx, go)

    def human() -> None:
        from rich.text import Text

        con = console()
        line = Text(f"flow {report['name']}: ")
        line.append(str(report["status"]), style=status_text(report["status"]).style)
        line.append(
            f" ({report['valid']}/{report['total']} valid, score {report['securityScore']} %)"
        )
        con.print(line)
        if report.get("identities"):
            con.print(
                table(
                    None,
                    ["aztp id", "valid", "reason"],
                    [
                        (
                            r["aztpId"],
                            status_text("valid" if r["valid"] else "invalid"),
                            r["reason"],
                        )
                        for r in report["identities"]
                    ],
                )
            )

    emit(ctx, as_json, report, human)


@flow_app.command("update")
def flow_update(
    ctx: typer.Context,
    flow: FlowArg,
    name: Annotated[str | None, typer.Option("--name", help="A new name (unique).")] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="A new description.")
    ] = None,
    private: Annotated[
        bool | None,
        typer.Option(
            "--private/--public",
            help="Private: visible to you only. Public: to the whole organization.",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="A tag (repeatable): the flow's tags become exactly these."),
    ] = None,
    no_tags: Annotated[bool, typer.Option("--no-tags", help="Remove every tag.")] = False,
    metadata: Annotated[
        str | None,
        typer.Option("--metadata", metavar="JSON", help="New metadata (a JSON object)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a flow's name, description, visibility, tags or metadata (what is not given
    stays as it is)."""
    if tag and no_tags:
        raise UsageProblem("use either --tag or --no-tags, not both")
    meta = json_object(metadata, "--metadata")
    tags = [] if no_tags else (list(tag) if tag else None)
    if name is None and description is None and private is None and tags is None and meta is None:
        raise UsageProblem(
            "nothing to change: give --name, --description, --private/--public, --tag, "
            "--no-tags or --metadata"
        )

    async def go(client: Aztp) -> dict[str, Any]:
        flow_id = (await find_flow(client, flow))["_id"]
        return await client.update_flow(
            flow_id,
            name=name,
            description=description,
            discoverable=None if private is None else ("private" if private else "public"),
            tags=tags,
            metadata=meta,
        )

    answer = run(ctx, go)
    emit(
        ctx,
        as_json,
        answer,
        lambda: say(f"updated flow {answer['name']} (id {answer['_id']})", "green"),
    )


@flow_app.command("delete")
def flow_delete(ctx: typer.Context, flow: FlowArg, as_json: JsonOpt = False) -> None:
    """Delete a flow (its memberships go; the identities stay)."""

    async def go(client: Aztp) -> dict[str, Any]:
        return await client.delete_flow((await find_flow(client, flow))["_id"])

    answer = run(ctx, go)
    emit(ctx, as_json, answer, lambda: say(f"deleted flow {answer['name']} (id {answer['_id']})"))
