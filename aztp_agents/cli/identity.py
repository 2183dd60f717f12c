"""``aztp-agents identity``: issue, list, show, revoke and reissue identities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ValidationError
from ..private_files import write_file
from ._app import sub_app
from ._client import embedded_authority, run
from ._errors import EXIT_NEGATIVE, fail
from ._options import IdentityArg, JsonOpt
from ._output import console, emit, fields, say, status_text, table
from ._resolve import aztp_id

if TYPE_CHECKING:
    from .. import Identity
    from ..client import Aztp

identity_app = sub_app("identity", "Issue, list, show, revoke and reissue identities.")


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

    async def go(client: Aztp) -> tuple[Identity, dict[str, Any]]:
        config: dict[str, Any] = {"isGlobalIdentity": is_global}
        if trust_domain:
            config["trustDomain"] = trust_domain
        if environment:
            config["environment"] = environment
        if parent:
            config["parentIdentity"] = await aztp_id(client, parent)
        secured = await client.secure_connect(None, name, config)
        doc = json.loads(await client.get_identity_by_aztp_id(secured.identity.aztp_id))["data"]
        return secured.identity, doc

    identity, doc = run(ctx, go)
    if not identity.valid:
        fail(
            f"{identity.aztp_id} is revoked; no credential issued. Reissue it with "
            f"'aztp-agents identity reissue {identity.aztp_id}'",
            EXIT_NEGATIVE,
        )
    written = _write_credentials(out, identity) if out is not None else []
    result = {**doc, "spiffeId": identity.spiffe_id, "credentialExpiresAt": identity.expires_at}
    if written:
        result["files"] = written
    emit(ctx, as_json, result, lambda: _print_issued(doc, identity, written))


def _print_issued(doc: dict[str, Any], identity: Identity, written: list[str]) -> None:
    """The issued identity and its credential, for people."""
    credential = f"X.509-SVID until {identity.expires_at}" if identity.certificate else "none"
    console().print(
        fields(
            None,
            [
                ("aztp id", doc["aztpId"]),
                ("spiffe id", identity.spiffe_id),
                ("name", doc["name"]),
                ("status", status_text(doc["status"])),
                ("type", doc.get("identityType")),
                ("environment", doc.get("environment")),
                ("parent", doc.get("parentIdentity")),
                ("credential", credential),
                *([("files", written)] if written else []),
            ],
        )
    )


def _write_credentials(out: Path, identity: Identity) -> list[str]:
    """Write the credential as PEM files under ``out`` (the key readable by its owner only)."""
    if not identity.certificate:
        raise ValidationError("no credential was issued, nothing to write")
    out.mkdir(parents=True, exist_ok=True)
    files = {"svid.pem": identity.certificate, "bundle.pem": identity.ca_certificate}
    written = []
    for fname, content in files.items():
        write_file(out / fname, content.encode("ascii"), 0o644)
        written.append(str(out / fname))
    if identity.private_key:
        # Mode 600 from creation on, never through a symlink planted at svid.key.
        write_file(out / "svid.key", identity.private_key.encode("ascii"), 0o600)
        written.append(str(out / "svid.key"))
    return written


@identity_app.command("list")
def identity_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the organization's identities."""
    docs = run(ctx, lambda c: c.list_identities())

    def human() -> None:
        if not docs:
            say("no identities yet: issue one with 'aztp-agents identity issue NAME'")
            return
        console().print(
            table(
                f"{len(docs)} identities",
                ["name", "aztp id", "type", "status", "environment", "created"],
                [
                    (
                        d["name"],
                        d["aztpId"],
                        d.get("identityType"),
                        status_text(d["status"]),
                        d.get("environment"),
                        d.get("createdAt"),
                    )
                    for d in docs
                ],
            )
        )

    emit(ctx, as_json, docs, human)


@identity_app.command("show")
def identity_show(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(metavar="ID|NAME", help="AZTP ID, SPIFFE ID or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one identity and the flows it belongs to."""

    async def go(client: Aztp) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        aztp = await aztp_id(client, identity)
        doc = json.loads(await client.get_identity_by_aztp_id(aztp))["data"]
        return doc, _memberships(await client.list_flows(), aztp)

    doc, flows = run(ctx, go)

    def human() -> None:
        from ..ids import AztpId

        pairs: list[tuple[str, Any]] = [
            ("aztp id", doc["aztpId"]),
            ("spiffe id", AztpId.parse(doc["aztpId"]).spiffe_id),
            ("name", doc["name"]),
            ("status", status_text(doc["status"])),
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
        console().print(fields(None, pairs))

    emit(ctx, as_json, {**doc, "flows": flows}, human)


def _memberships(flows: list[dict[str, Any]], aztp: str) -> list[dict[str, Any]]:
    """The flows ``aztp`` is a member of, with its in-flow status."""
    return [
        {
            "_id": flow["_id"],
            "name": flow["name"],
            "status": member["status"],
            "revocationReason": member.get("revocationReason"),
        }
        for flow in flows
        for member in flow["identities"]
        if member["aztpId"] == aztp
    ]


@identity_app.command("revoke")
def identity_revoke(
    ctx: typer.Context,
    identity: IdentityArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the audit log).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an identity everywhere at once (undo with 'identity reissue')."""

    async def go(client: Aztp) -> dict[str, Any]:
        return json.loads(await client.revoke_identity(await aztp_id(client, identity), reason))

    answer = run(ctx, go)
    suffix = f" ({reason})" if reason else ""
    emit(ctx, as_json, answer, lambda: say(f"revoked {answer['aztpId']}{suffix}", "red"))


@identity_app.command("reissue")
def identity_reissue(ctx: typer.Context, identity: IdentityArg, as_json: JsonOpt = False) -> None:
    """Make a revoked identity valid again with a new credential (old credentials stay dead)."""

    async def go(client: Aztp) -> dict[str, Any]:
        return json.loads(await client.reissue_identity(await aztp_id(client, identity)))

    answer = run(ctx, go)
    expires = f" (new credential until {answer['expiresAt']})" if answer.get("expiresAt") else ""
    emit(ctx, as_json, answer, lambda: say(f"reissued {answer['aztpId']}{expires}", "green"))


@identity_app.command("import")
def identity_import(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="Identity names, one per line ('-' reads standard input)."
        ),
    ],
    flow: Annotated[
        str | None,
        typer.Option("--flow", help="Also make each a member of this flow (name or id)."),
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", help="Environment segment (default production).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue many identities at once, without credentials (each gets its X.509-SVID when its
    workload connects by name). Idempotent: names already issued count as existing. On the
    embedded store (or the server's host): one write per 10,000 names."""
    import sys

    authority, principal = embedded_authority(ctx, "identity import")
    flow_id = None
    if flow is not None:
        found = authority.find_flow(principal, flow)
        flow_id = flow if found is None else found["_id"]
    lines = sys.stdin if str(source) == "-" else source.open(encoding="utf-8")
    try:
        names = (line.strip() for line in lines if line.strip() and not line.startswith("#"))
        answer = authority.import_identities(
            principal, names, environment=environment or "production", flow_id=flow_id
        )
    finally:
        if lines is not sys.stdin:
            lines.close()
    emit(
        ctx,
        as_json,
        answer,
        lambda: say(
            f"imported {answer['issued']} identities ({answer['existing']} already existed)"
            + (f" into flow {flow}" if flow else ""),
            "green",
        ),
    )
