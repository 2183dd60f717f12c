"""``python -m aztp_agents.server [--home DIR] [--host H] [--port N] [...]``.

The same launcher as ``aztp-agents serve`` (options, defaults and errors are defined once, in
:mod:`aztp_agents.cli.serve`); this module only keeps the ``-m`` form working.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..cli.serve import server_main


def main(argv: Sequence[str] | None = None) -> int:
    return server_main(argv)


if __name__ == "__main__":
    sys.exit(main())
