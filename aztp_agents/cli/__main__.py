"""``python -m aztp_agents.cli``: the ``aztp-agents`` script."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
