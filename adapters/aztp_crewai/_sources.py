"""Tools that CrewAI resolves at kickoff from an agent's own declarations.

An agent's ``mcps=`` (MCP servers) and ``apps=`` (platform apps) are resolved into tools only
inside ``kickoff``, after ``secure_crew`` ran, so they have no identity yet when the agent
first calls them. They are the agent's declared grant, exactly as its ``tools=`` are: the
user named their source on the agent. Any other tool that shows up at call time (injected by
someone, or handed over from another agent) is not.

To tell the two apart exactly, this module records which objects the agent's declarations
produced: it wraps ``Agent.get_mcp_tools`` and ``Agent.get_platform_tools`` (the two methods
every CrewAI path resolves them through: ``Crew._prepare_tools`` and ``Agent.kickoff``) and
remembers, weakly, each tool object returned and the agent it was resolved for. The hook
(``_hooks``) enrolls such a tool on its first call. A subclass that overrides these methods
bypasses the record, and its tools stay denied (fail closed).

Recording never raises into CrewAI: if it fails, the tools are simply not recorded and their
calls are denied as ``tool_unknown``.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("aztp_crewai")

#: The resolver methods wrapped, and the source each stands for (shown in logs).
RESOLVERS = {"get_mcp_tools": "mcps", "get_platform_tools": "apps"}

_lock = threading.Lock()
#: Told ``(agent, tools)`` after each recording (the hooks start enrolling them).
_listener: Callable[[Any, list[Any]], None] | None = None
#: id(tool object) -> (weak ref to the tool, weak ref to the agent it was resolved for, source)
_declared: dict[int, tuple[weakref.ref[Any], weakref.ref[Any], str]] = {}


def _forget(key: int) -> Callable[[weakref.ref[Any]], None]:
    def forget(ref: weakref.ref[Any]) -> None:
        with _lock:
            item = _declared.get(key)
            if item is not None and item[0] is ref:
                del _declared[key]

    return forget


def record(agent: Any, tools: Any, source: str) -> None:
    """Remember that ``agent``'s declaration ``source`` produced ``tools``."""
    try:
        agent_ref = weakref.ref(agent)
        recorded = list(tools or ())
        for tool in recorded:
            key = id(tool)
            with _lock:
                _declared[key] = (weakref.ref(tool, _forget(key)), agent_ref, source)
    except Exception:  # never break CrewAI's resolution; unrecorded tools stay denied
        logger.warning("could not record the tools %s resolved at kickoff", source, exc_info=True)
        return
    listener = _listener
    if listener is not None and recorded:
        try:
            listener(agent, recorded)
        except Exception:  # only a head start: the first call enrolls them otherwise
            logger.warning("could not start enrolling the tools %s resolved", source, exc_info=True)


def declared_source(tool: Any, agent: Any) -> str | None:
    """The declaration of ``agent`` that produced ``tool`` (``"mcps"``, ``"apps"``), or ``None``.

    ``tool`` may be the ``CrewStructuredTool`` a hook sees: its ``_original_tool`` is checked."""
    if tool is None or agent is None:
        return None
    for candidate in (getattr(tool, "_original_tool", None), tool):
        if candidate is None:
            continue
        item = _declared.get(id(candidate))
        if item is not None and item[0]() is candidate and item[1]() is agent:
            return item[2]
    return None


def _wrap(cls: type, method: str, source: str) -> None:
    original = cls.__dict__.get(method)
    if original is None or getattr(original, "_aztp_records", False):
        return

    @functools.wraps(original)
    def resolve(self: Any, *args: Any, **kwargs: Any) -> Any:
        tools = original(self, *args, **kwargs)
        record(self, tools, source)
        return tools

    resolve._aztp_records = True  # type: ignore[attr-defined]
    setattr(cls, method, resolve)


_installed = False


def install(listener: Callable[[Any, list[Any]], None] | None = None) -> None:
    """Wrap CrewAI's resolvers once (idempotent); ``listener`` is told of each recording."""
    global _installed, _listener
    if listener is not None:
        _listener = listener
    if _installed:
        return
    with _lock:
        if _installed:
            return
        from crewai.agent.core import Agent

        for method, source in RESOLVERS.items():
            _wrap(Agent, method, source)
        _installed = True
