"""Code run in another OS process, as something outside the process under test does it."""

from __future__ import annotations

import subprocess
import sys

__all__ = ["in_another_process"]


def in_another_process(code: str, timeout: float = 120, **names: str) -> None:
    """Run ``code`` in a fresh interpreter, with ``names`` bound to the given strings first."""
    prelude = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    subprocess.run([sys.executable, "-c", prelude + code], check=True, timeout=timeout)
