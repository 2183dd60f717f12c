"""``aztp-agents audit``: read the hash-chained audit log and check its chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..private_files import write_file
from ._app import sub_app
from ._client import run
from ._errors import EXIT_NEGATIVE, EXIT_OK, one_line
from ._options import JsonOpt
from ._output import console, emit, print_json, say, table, wants_json

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
    as_json: JsonOpt = False,
) -> None:
    """Show the latest audit entries: when each was taken (a decision: when it was decided,
    also at a remote enforcement point) and on which state revision."""
    entries = run(ctx, lambda c: c.audit(limit=lines or None, action=action))

    def human() -> None:
        if not entries:
            say("no audit entries" + (f" matching {action!r}" if action else ""))
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
                        e.get("subject"),
                        e.get("problem")
                        or {k: v for k, v in (e.get("data") or {}).items() if k != "revision"}
                        or None,
                    )
                    for e in entries
                ],
            )
        )

    emit(ctx, as_json, entries, human)


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
