"""Arguments and options that several commands share, declared once so their help agrees."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["FlowArg", "IdentityArg", "JsonOpt", "OrgOpt"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]

IdentityArg = Annotated[str, typer.Argument(metavar="ID", help="AZTP ID, SPIFFE ID or name.")]

FlowArg = Annotated[str, typer.Argument(metavar="FLOW", help="Flow id or name.")]

OrgOpt = Annotated[
    str | None, typer.Option("--org", help="Organization name (default: the local one).")
]
