"""``secured(flow=...)``: one decorator for every supported framework.

It looks at the object it is given (or that the decorated function returns) and hands it to
the adapter that registered for that object's framework (:mod:`aztp_agents.frameworks`).
Adapters are imported lazily, so the core never imports CrewAI or LangChain.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ValidationError
from .frameworks import FrameworkAdapter, adapter_for

__all__ = ["adapter_for", "identity_of", "secured"]

F = TypeVar("F", bound=Callable[..., Any])


def _secure_object(obj: Any, options: dict[str, Any]) -> Any:
    adapter = adapter_for(obj)
    if adapter is None:
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        raise ValidationError(
            f"secured() does not know how to secure a {kind}; it supports CrewAI agents and "
            "crews and LangChain agents, tools and tool lists"
        )
    return adapter.secure(obj, **options)


def _securing_results(fn: F, options: dict[str, Any]) -> F:
    """``fn`` wrapped so that what it returns (or awaits to) is secured on each call."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            return _secure_object(await fn(*args, **kwargs), options)

        return awrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _secure_object(fn(*args, **kwargs), options)

    return wrapper  # type: ignore[return-value]


def secured(target: Any = None, /, *, flow: str, **options: Any) -> Any:
    """Secure an agent definition.

    ``@secured(flow="prod")`` on a function (or ``@CrewBase`` method) returning a framework
    object secures what it returns; ``secured(obj, flow="prod")`` secures ``obj`` directly.
    Options go to the adapter: ``client``, ``mode``, ``environment``, ``trust_domain``,
    ``discoverable`` and framework-specific ones.
    """
    options = {"flow": flow, **options}

    def decorate(fn: F) -> F:
        adapter: FrameworkAdapter | None = None if inspect.isfunction(fn) else adapter_for(fn)
        if adapter is not None:  # a framework's own definition object (e.g. CrewBase @agent)
            return adapter.secure(fn, **options)  # type: ignore[no-any-return]
        return _securing_results(fn, options)

    if target is None:
        return decorate
    if inspect.isfunction(target):  # a plain function: secure what it returns
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
