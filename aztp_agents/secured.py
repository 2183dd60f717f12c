"""``secured(flow=...)``: one decorator for every supported framework.

It looks at the object it is given (or that the decorated function returns) and hands it to
the adapter of the framework that owns its type. Adapters are imported lazily, so the core
never imports CrewAI or LangChain.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ValidationError

__all__ = ["adapter_for", "identity_of", "secured"]

F = TypeVar("F", bound=Callable[..., Any])

# (module prefix of the object's type, adapter module)
_ADAPTERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("crewai",), "aztp_crewai"),
    (("langchain", "langchain_core", "langgraph"), "aztp_langchain"),
)


def _owner_modules(obj: Any) -> list[str]:
    if isinstance(obj, (list, tuple)) and obj:
        obj = obj[0]
    return [getattr(k, "__module__", "") or "" for k in type(obj).__mro__]


def adapter_for(obj: Any) -> Any | None:
    """The adapter module that can secure ``obj`` (imported on demand), or None."""
    modules = _owner_modules(obj)
    for prefixes, adapter_name in _ADAPTERS:
        if any(m.split(".")[0] in prefixes for m in modules):
            adapter = importlib.import_module(adapter_name)
            if adapter.supports(obj):
                return adapter
    return None


def _secure_object(obj: Any, options: dict[str, Any]) -> Any:
    adapter = adapter_for(obj)
    if adapter is None:
        raise ValidationError(
            f"secured() does not know how to secure a {type(obj).__module__}.{type(obj).__qualname__}; "
            "it supports CrewAI agents and crews and LangChain agents, tools and tool lists"
        )
    return adapter.secure(obj, **options)


def secured(target: Any = None, /, *, flow: str, **options: Any) -> Any:
    """Secure an agent definition.

    ``@secured(flow="prod")`` on a function (or ``@CrewBase`` method) returning a framework
    object secures what it returns; ``secured(obj, flow="prod")`` secures ``obj`` directly.
    Options go to the adapter: ``client``, ``mode``, ``environment``, ``trust_domain``,
    ``discoverable`` and framework-specific ones.
    """
    options = {"flow": flow, **options}

    def decorate(fn: F) -> F:
        adapter = None if inspect.isfunction(fn) else adapter_for(fn)
        if adapter is not None:  # a framework's own definition object (e.g. CrewBase @agent)
            return adapter.secure(fn, **options)  # type: ignore[no-any-return]
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                return _secure_object(await fn(*args, **kwargs), options)
            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return _secure_object(fn(*args, **kwargs), options)
        return wrapper  # type: ignore[return-value]

    if target is None:
        return decorate
    if callable(target) and not _owner_modules(target)[0].startswith(("crewai", "langchain", "langgraph")) and inspect.isfunction(target):
        return decorate(target)
    return _secure_object(target, options)


def identity_of(obj: Any) -> str | None:
    """The AZTP ID given to a secured agent or tool, or None."""
    identity = getattr(obj, "identity", None)
    aztp_id = getattr(identity, "aztp_id", None)
    if isinstance(aztp_id, str):
        return aztp_id
    try:
        adapter = adapter_for(obj)
    except ImportError:
        return None
    return adapter.identity_of(obj) if adapter is not None else None
