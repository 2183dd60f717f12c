"""``aztp-agents verify``: is an identity valid (globally, in a flow, or towards a target)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import app
from ._client import authorize_connection, run
from ._errors import EXIT_NEGATIVE, EXIT_OK, UsageProblem
from ._options import IdentityArg, JsonOpt
from ._output import console, emit
from ._resolve import aztp_id, find_flow

if TYPE_CHECKING:
    from ..client import Aztp


@app.command("verify")
def verify(
    ctx: typer.Context,
    identity: IdentityArg,
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
    """Verify an identity: globally, in a flow (--flow), or towards a target (--to).

    Exit codes: 0 valid; 1 invalid (revoked, not in the flow, not linked, refused by the
    policy); 2 bad usage or input (a bad flag, a malformed ID); 3 not found (the identity,
    the flow or the target); 4 authentication or permission refused; 5 the authority is
    unavailable (server unreachable, store locked or unreadable).
    """
    if to is None and policy is not None:
        raise UsageProblem("--policy needs --to TARGET")
    if to is not None and flow is not None:
        raise UsageProblem("use either --flow or --to, not both")

    async def go(client: Aztp) -> dict[str, Any]:
        aztp = await aztp_id(client, identity)
        if to is not None:
            dst = await aztp_id(client, to)
            answer = await authorize_connection(client, aztp, dst, policy)
            return {**answer, "from": aztp, "to": dst, "policyCode": policy}
        flow_id = None if flow is None else (await find_flow(client, flow))["_id"]
        return await client.verify(aztp, flow_id)

    answer = run(ctx, go)
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
        console().print(line)

    emit(ctx, as_json, answer, human)
    raise typer.Exit(EXIT_OK if valid else EXIT_NEGATIVE)
