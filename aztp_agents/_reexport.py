"""Lazy re-exports: names a core module offers but another package defines.

Used where a name's home moved out of the core (the framework test doubles now live in their
adapters) and the old import path must keep working without the core importing the framework:
the target module is imported on first attribute access, never at import time.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_reexport"]


def lazy_reexport(
    module: str, target: str, names: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that fetch ``names`` from ``target`` on demand.

    Each name is fetched once, then stored in ``module`` itself, so later lookups are plain
    attribute reads.
    """
    exported = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name not in exported:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(target), name)
        setattr(sys.modules[module], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module])) | exported)

    return __getattr__, __dir__
