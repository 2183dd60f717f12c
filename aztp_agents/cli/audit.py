"""``aztp-agents audit``: read the hash-chained audit log and check its chain."""

from __future__ import annotations

from typing import Annotated

import typer

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
    """Show the latest audit entries."""
    entries = run(ctx, lambda c: c.audit(limit=lines or None, action=action))

    def human() -> None:
        if not entries:
            say("no audit entries" + (f" matching {action!r}" if action else ""))
            return
        console().print(
            table(
                None,
                ["seq", "time", "action", "subject", "details"],
                [
                    (
                        e["seq"],
                        e["ts"],
                        e["action"],
                        e.get("subject"),
                        e.get("problem") or e.get("data") or None,
                    )
                    for e in entries
                ],
            )
        )

    emit(ctx, as_json, entries, human)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Check the audit hash chain. Exit code 0 intact, 1 broken."""
    report = run(ctx, lambda c: c.verify_audit())
    ok = bool(report.get("ok"))
    if wants_json(ctx, as_json):
        print_json(report)
    elif ok:
        say(f"audit chain intact: {report['entries']} entries verified", "green")
    else:
        problem = one_line(report.get("problem") or "unknown problem")
        typer.echo(f"audit chain broken: {problem}", err=True)
    raise typer.Exit(EXIT_OK if ok else EXIT_NEGATIVE)
