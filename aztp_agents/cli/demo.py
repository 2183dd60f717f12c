"""``aztp-agents demo``: the offline CrewAI demo (aztp_agents.demo), loaded only when it runs."""

from __future__ import annotations

import typer

from ._app import app
from ._errors import EXIT_OK, EXIT_USAGE, fail
from ._state import state_of


@app.command("demo")
def demo(ctx: typer.Context) -> None:
    """A secured CrewAI crew, offline: decisions live, a revocation mid-run, the audit trail."""
    try:
        from ..demo import main as demo_main
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("aztp_agents"):
            fail(
                "the demo is not part of this installation (aztp_agents.demo is missing)",
                EXIT_USAGE,
            )
        if exc.name:
            fail(
                f"the demo needs {exc.name.split('.')[0]!r}: pip install 'aztp-agents[crewai]'",
                EXIT_USAGE,
            )
        raise
    state = state_of(ctx)
    rv = demo_main(state.home) if state.home else demo_main()  # default: a fresh temporary home
    raise typer.Exit(rv if isinstance(rv, int) else EXIT_OK)
