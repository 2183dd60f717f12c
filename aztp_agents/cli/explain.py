"""``aztp-agents explain``: why a tool call is (or would be) allowed or denied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import app
from ._client import run
from ._errors import EXIT_NEGATIVE, EXIT_OK
from ._options import JsonOpt
from ._output import console, emit
from ._resolve import aztp_id, find_flow, json_object

if TYPE_CHECKING:
    from ..client import Aztp

_STATUS_STYLES = {"pass": "green", "fail": "bold red", "skip": "dim"}


@app.command("explain")
def explain(
    ctx: typer.Context,
    agent: Annotated[
        str, typer.Argument(metavar="AGENT", help="The agent: AZTP ID, SPIFFE ID or name.")
    ],
    tool: Annotated[
        str, typer.Argument(metavar="TOOL", help="The tool: AZTP ID, SPIFFE ID or name.")
    ],
    flow: Annotated[
        str, typer.Option("--flow", metavar="FLOW", help="The flow of the call (id or name).")
    ],
    tool_name: Annotated[
        str | None,
        typer.Option(
            "--tool-name",
            metavar="NAME",
            help="The tool's name as the agent calls it: policies on tool:NAME are asked too "
            "(without it, only tool:invoke).",
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            metavar="JSON",
            help="The call's context, for policy Conditions (a JSON object).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Why AGENT's call of TOOL in a flow is allowed or denied: every check in order (flow,
    agent, tool, link, policy) with pass or fail, the missing link or membership and the
    command that adds it, and the policy statement that denied.

    Exit codes: 0 allowed; 1 denied; 2 bad usage or input; 3 not found (an identity given by
    name, or the flow); 4 authentication or permission refused; 5 the authority is
    unavailable.
    """
    ctx_doc = json_object(context, "--context")

    async def go(client: Aztp) -> dict[str, Any]:
        agent_id = await aztp_id(client, agent)
        tool_id = await aztp_id(client, tool)
        flow_id = (await find_flow(client, flow))["_id"]
        return await client.explain(agent_id, tool_id, flow_id, tool_name, ctx_doc)

    answer = run(ctx, go)
    emit(ctx, as_json, answer, lambda: _print(answer))
    raise typer.Exit(EXIT_OK if answer["allowed"] else EXIT_NEGATIVE)


def _print(answer: dict[str, Any]) -> None:
    from rich.text import Text

    out = console()
    names: dict[str, str] = answer.get("names") or {}
    allowed = answer["allowed"]
    head = Text()
    head.append("ALLOWED" if allowed else "DENIED", style="bold green" if allowed else "bold red")
    head.append(f" [{answer['reason']}]: {answer['detail']}")
    out.print(head)

    def who(aztp: str) -> str:
        return f"{names[aztp]} ({aztp})" if aztp in names else aztp

    flow = answer["flowId"]
    out.print(f"agent:   {who(answer['agent'])}")
    out.print(f"tool:    {who(answer['tool'])}")
    out.print(
        f"flow:    {answer['flowName']} ({flow})" if answer["flowName"] else f"flow:    {flow}"
    )
    actions = ", ".join(answer["actions"])
    if not answer.get("toolName"):
        actions += " (give --tool-name NAME to ask tool:NAME too)"
    out.print(f"actions: {actions}")
    out.print(f"state:   revision {answer['revision']}")
    width = max(len(c["check"]) for c in answer["checks"])
    for c in answer["checks"]:
        line = Text("  ")
        line.append(f"{c['status']:<4}", style=_STATUS_STYLES.get(c["status"], ""))
        line.append(f"  {c['check']:<{width}}  {c['message']}")
        out.print(line)
        if c["status"] == "fail" and c.get("fix"):
            out.print(Text(f"        {'':<{width}}  fix: {c['fix']}", style="yellow"))
