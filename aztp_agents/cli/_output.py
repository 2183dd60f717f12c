"""What commands print: rich tables and field lists for people, JSON for scripts.

rich is imported inside the helpers, so only a command that prints for people loads it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import typer

from ._state import state_of

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = [
    "console",
    "emit",
    "fields",
    "print_json",
    "say",
    "status_text",
    "table",
    "wants_json",
]

_STATUS_STYLES = {
    "active": "green",
    "valid": "green",
    "healthy": "green",
    "warning": "yellow",
    "revoked": "red",
    "invalid": "red",
    "critical": "red",
}


def console(stderr: bool = False) -> Console:
    """A console that does not cut IDs when the output is piped or captured."""
    from rich.console import Console

    width = None
    stream = sys.stderr if stderr else sys.stdout
    if not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ:
        width = 200  # piped or captured: do not cut IDs at 80 columns
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def wants_json(ctx: typer.Context, as_json: bool) -> bool:
    """``--json`` on the command or before it."""
    return as_json or state_of(ctx).json


def emit(ctx: typer.Context, as_json: bool, data: Any, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON when asked to, else call ``human`` to print it for people."""
    if wants_json(ctx, as_json):
        print_json(data)
    else:
        human()


def say(message: str, style: str | None = None) -> None:
    from rich.text import Text

    console().print(Text(message, style=style or ""))


def status_text(status: str | None) -> Text:
    """A status word coloured by what it means (green good, yellow warning, red bad)."""
    from rich.text import Text

    return Text(str(status or "-"), style=_STATUS_STYLES.get(str(status), ""))


def table(title: str | None, columns: Iterable[str], rows: Iterable[Sequence[Any]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    result = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        result.add_column(col, overflow="fold")
    for row in rows:
        result.add_row(*(cell if isinstance(cell, Text) else _text(cell) for cell in row))
    return result


def fields(title: str | None, pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column ``field value`` list without borders, for one record."""
    from rich.table import Table
    from rich.text import Text

    result = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    result.add_column("field", style="bold", no_wrap=True)
    result.add_column("value", overflow="fold")
    for key, value in pairs:
        result.add_row(key, value if isinstance(value, Text) else _text(value))
    return result


def _text(value: Any) -> Text:
    from rich.text import Text

    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, list | tuple):
        return Text(", ".join(str(v) for v in value) or "-")
    if isinstance(value, Mapping):
        return Text(json.dumps(value, default=str, ensure_ascii=False))
    return Text(str(value))
