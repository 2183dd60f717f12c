"""``aztp-agents audit``: read the hash-chained audit log and check its chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..private_files import write_file
from ._app import sub_app
from ._client import run
from ._errors import EXIT_NEGATIVE, EXIT_OK, one_line
from ._options import JsonOpt
from ._output import console, emit, print_json, say, table, wants_json
from ._resolve import aztp_id, find_flow

if TYPE_CHECKING:
    from ..client import Aztp

audit_app = sub_app("audit", "The hash-chained audit log.")


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
    flow: Annotated[
        str | None,
        typer.Option(
            "--flow",
            metavar="FLOW",
            help="Only entries about this flow (id or name): its changes, memberships and "
            "decisions.",
        ),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            metavar="ID",
            help="Only entries about this identity (AZTP ID or name; as the subject, a "
            "decision's tool or a link's target) or this policy code.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the latest audit entries: when each was taken (a decision: when it was decided,
    also at a remote enforcement point) and on which state revision. Identities and flows
    are shown by name; --json keeps the entries as they are."""

    async def go(client: Aztp) -> tuple[list[dict[str, Any]], dict[str, str]]:
        flow_id = None if flow is None else (await find_flow(client, flow))["_id"]
        about = None
        if subject is not None:
            about = subject if subject.startswith("policy:") else await aztp_id(client, subject)
        filtered = flow_id is not None or about is not None
        # The filters below run here: fetch every entry matching --action, then keep the last n.
        entries = await client.audit(limit=None if filtered else lines or None, action=action)
        if filtered:
            entries = [e for e in entries if _about(e, flow_id, about)]
            if lines:
                entries = entries[-lines:]
        names: dict[str, str] = {}
        if entries and not wants_json(ctx, as_json):
            names = {i["aztpId"]: i["name"] for i in await client.list_identities()}
            names.update({f["_id"]: f["name"] for f in await client.list_flows()})
        return entries, names

    entries, names = run(ctx, go)

    def human() -> None:
        if not entries:
            wanted = [
                f"{opt} {value!r}"
                for opt, value in (("--action", action), ("--flow", flow), ("--subject", subject))
                if value
            ]
            say("no audit entries" + (f" matching {', '.join(wanted)}" if wanted else ""))
            return
        console().print(
            table(
                None,
                ["seq", "time", "revision", "action", "subject", "details"],
                [
                    (
                        e["seq"],
                        e["ts"],
                        (e.get("data") or {}).get("revision"),
                        e["action"],
                        _name(e.get("subject"), names),
                        e.get("problem") or _details(e, names),
                    )
                    for e in entries
                ],
            )
        )

    emit(ctx, as_json, entries, human)


def _about(entry: dict[str, Any], flow_id: str | None, about: str | None) -> bool:
    """Whether an entry concerns the flow and the identity (or policy) asked for."""
    data = entry.get("data") or {}
    if flow_id is not None and flow_id not in (entry.get("subject"), data.get("flowId")):
        return False
    if about is not None:
        involved = (entry.get("subject"), data.get("tool"), data.get("target"), data.get("code"))
        if about not in involved:
            return False
    return True


def _name(value: Any, names: dict[str, str]) -> Any:
    """An identity or flow by its name (the id stays in --json)."""
    if isinstance(value, str) and value in names:
        return names[value]
    return value


def _details(entry: dict[str, Any], names: dict[str, str]) -> str | None:
    """An entry's data for people: a decision as one sentence, the rest as key=value with
    identities and flows named."""
    data = {k: v for k, v in (entry.get("data") or {}).items() if k != "revision"}
    if not data:
        return None
    if entry["action"] == "decision.tool_call":
        verdict = "allowed" if data.get("allowed") else "DENIED"
        tool = _name(data.get("tool"), names)
        if data.get("toolName"):
            tool = f"{tool} ({data['toolName']})"
        observed = "" if data.get("enforced", True) else " (observe mode: not blocked)"
        where = f" in flow {_name(data['flowId'], names)}" if data.get("flowId") else ""
        return f"{verdict} [{data.get('reason')}] tool {tool}{where}{observed}"
    parts = []
    for key, value in data.items():
        if key == "flowId":
            key = "flow"
        text = _name(value, names)
        parts.append(f"{key}={text if isinstance(text, str) else json.dumps(text, default=str)}")
    return " ".join(parts)


@audit_app.command("checkpoint")
def audit_checkpoint(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write it to FILE instead of printing it (keep it outside the store).",
        ),
    ] = None,
    public_key: Annotated[
        bool,
        typer.Option(
            "--public-key",
            help="The checkpoint public key (PEM) instead, for 'audit verify --public-key'.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sign a checkpoint of the audit chain's head, for 'audit verify --checkpoint'."""
    if public_key:
        key = run(ctx, lambda c: c.audit_checkpoint_key())
        if out is not None:
            write_file(out, key["public_key"].encode("ascii"), 0o644)
            emit(
                ctx,
                as_json,
                {**key, "file": str(out)},
                lambda: say(f"checkpoint public key {key['kid']} written to {out}"),
            )
        elif wants_json(ctx, as_json):
            print_json(key)
        else:
            typer.echo(key["public_key"], nl=False)
        return
    checkpoint = run(ctx, lambda c: c.audit_checkpoint())
    if out is None:
        print_json(checkpoint)  # the document itself, whatever the output mode
        return
    write_file(out, (json.dumps(checkpoint, indent=2) + "\n").encode(), 0o644)
    body = checkpoint["checkpoint"]
    emit(
        ctx,
        as_json,
        {**body, "file": str(out)},
        lambda: say(f"checkpoint of entry {body['seq']} ({body['ts']}) written to {out}"),
    )


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            metavar="FILE",
            help="Also prove the chain still holds this checkpoint's history "
            "(not truncated, rewritten or forked).",
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            metavar="FILE",
            help="Check the checkpoint's signature with this key (PEM) instead of the store's.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the audit hash chain. Exit code 0 intact, 1 broken."""
    if public_key is not None and checkpoint is None:
        raise typer.BadParameter("--public-key needs --checkpoint", param_hint="--public-key")
    doc = _read_text(checkpoint, "--checkpoint") if checkpoint is not None else None
    pem = _read_text(public_key, "--public-key") if public_key is not None else None
    report = run(ctx, lambda c: c.verify_audit(doc, pem) if doc is not None else c.verify_audit())
    ok = bool(report.get("ok"))
    if wants_json(ctx, as_json):
        print_json(report)
    elif ok:
        cp = report.get("checkpoint")
        held = f"; checkpoint of entry {cp['seq']} ({cp['ts']}) holds" if cp else ""
        say(f"audit chain intact: {report['entries']} entries verified{held}", "green")
    else:
        problem = one_line(report.get("problem") or "unknown problem")
        typer.echo(f"audit chain broken: {problem}", err=True)
    raise typer.Exit(EXIT_OK if ok else EXIT_NEGATIVE)


def _read_text(path: Path, option: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}",
            param_hint=option,
        ) from None


@audit_app.command("check")
def audit_check(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Prove from the log that no tool call was allowed on a state revision at or after a
    revocation of its agent, tool, flow membership or link. Exit code 0 none, 1 some."""
    from ..audit_check import check_decision_order

    report = check_decision_order(run(ctx, lambda c: c.audit()))
    if wants_json(ctx, as_json):
        print_json(report.to_dict())
    elif report.ok:
        say(
            f"audit check passed: {report.allowed} of {report.decisions} decisions allowed, none "
            f"on a revision at or after a revocation ({report.revocations} revocations checked)",
            "green",
        )
    else:
        for v in report.violations:
            by = v["revokedBy"]
            typer.echo(
                f"allowed at revision {v['revision']} (entry {v['seq']}, {v['ts']}): agent "
                f"{v['agent']} tool {v['tool']} flow {v['flowId']}, after {by['action']} "
                f"{by['subject']} at revision {by['revision']} (entry {by['seq']}, {by['ts']})",
                err=True,
            )
        typer.echo(
            f"audit check failed: {len(report.violations)} allows decided on a revision at or "
            "after a revocation",
            err=True,
        )
    if report.unrevisioned and not wants_json(ctx, as_json):
        typer.echo(
            f"note: {report.unrevisioned} state changes were written before revisions were "
            "recorded and could not be checked",
            err=True,
        )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_NEGATIVE)
