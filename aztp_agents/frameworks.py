"""The registry of framework adapters: which adapter secures which object.

The core imports no agent framework and calls no adapter by name. An adapter package
registers itself when it is imported (:func:`register_adapter`), declaring the frameworks it
handles (top-level module names such as ``"crewai"``) and three functions: ``supports``,
``secure`` and ``identity_of``. :func:`adapter_for` looks at the modules of an object's type
(and of its base classes) and asks the adapters of those frameworks only.

The adapters that ship with aztp-agents are found lazily through :data:`_ADAPTER_MODULES`
(framework module -> adapter module): the CrewAI adapter is imported the first time a CrewAI
object is secured, and never for anything else. Another package can add its own adapter by
importing and calling :func:`register_adapter`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FrameworkAdapter", "adapter_for", "framework_modules", "register_adapter"]


@dataclass(frozen=True)
class FrameworkAdapter:
    """One framework adapter as the core sees it."""

    #: Import name of the adapter package (``"aztp_crewai"``).
    module: str
    #: Top-level modules whose objects this adapter secures (``("crewai",)``).
    frameworks: tuple[str, ...]
    #: Whether the adapter can secure this object.
    supports: Callable[[Any], bool]
    #: ``secure(obj, *, flow, **options)``: the secured object (or a wrapping decorator).
    secure: Callable[..., Any]
    #: The AZTP ID the adapter gave a secured object, or ``None``.
    identity_of: Callable[[Any], str | None]


#: Where the bundled adapters live, by the framework they serve. Imported on first need only.
_ADAPTER_MODULES: dict[str, str] = {
    "crewai": "aztp_crewai",
    "langchain": "aztp_langchain",
    "langchain_core": "aztp_langchain",
    "langgraph": "aztp_langchain",
}

# Adapter module -> adapter, in the order adapters are asked: the bundled ones first (in
# table order, so the answer does not depend on which adapter happened to be imported first),
# then others in registration order. ``None`` marks a bundled adapter not imported yet.
_registry: dict[str, FrameworkAdapter | None] = dict.fromkeys(_ADAPTER_MODULES.values())
_lock = threading.Lock()


def register_adapter(adapter: FrameworkAdapter) -> None:
    """Make ``adapter`` available to :func:`adapter_for` (and ``aztp_agents.secured``)."""
    with _lock:
        _registry[adapter.module] = adapter


def framework_modules(obj: Any) -> frozenset[str]:
    """Top-level modules of the classes ``obj`` is an instance of (of its first item, for a
    non-empty list or tuple)."""
    if isinstance(obj, (list, tuple)) and obj:
        obj = obj[0]
    return frozenset((getattr(k, "__module__", "") or "").split(".")[0] for k in type(obj).__mro__)


def _import_adapters_for(modules: frozenset[str]) -> None:
    """Import the bundled adapters of these frameworks (each registers itself on import)."""
    for framework in modules:
        adapter_module = _ADAPTER_MODULES.get(framework)
        if adapter_module is not None and _registry.get(adapter_module) is None:
            importlib.import_module(adapter_module)


def adapter_for(obj: Any) -> FrameworkAdapter | None:
    """The adapter that can secure ``obj``, or ``None``.

    Imports a bundled adapter the first time an object of its framework is seen; an
    ``ImportError`` from that import propagates.
    """
    modules = framework_modules(obj)
    _import_adapters_for(modules)
    for adapter in list(_registry.values()):
        if (
            adapter is not None
            and not modules.isdisjoint(adapter.frameworks)
            and adapter.supports(obj)
        ):
            return adapter
    return None
