"""A tiny MCP server for the MCP tests (stdio, offline): ``python mcp_server.py MARKER_DIR``.

Two tools. ``lookup`` answers a text. ``wipe`` writes ``MARKER_DIR/wipe-ran`` when its body
runs, so a test can prove a denied call never reached the server: the marker file is absent.
Both bodies append their name to ``MARKER_DIR/calls`` (one line per run on the server).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.fastmcp import FastMCP

MARKER_DIR = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
WIPE_MARKER = "wipe-ran"

server = FastMCP("aztp-test")


def _ran(name: str) -> None:
    with (MARKER_DIR / "calls").open("a", encoding="utf-8") as f:
        f.write(name + "\n")


@server.tool()
def lookup(query: str) -> str:
    """Look something up (harmless)."""
    _ran("lookup")
    return f"found: {query}"


@server.tool()
def wipe(target: str) -> str:
    """Wipe a target (the dangerous one: leaves a marker file when its body runs)."""
    _ran("wipe")
    (MARKER_DIR / WIPE_MARKER).write_text(target, encoding="utf-8")
    return f"wiped: {target}"


if __name__ == "__main__":
    server.run("stdio")
