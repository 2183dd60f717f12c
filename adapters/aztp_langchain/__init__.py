"""LangChain adapter: AZTP identities and a guard before every tool call.

* :class:`AztpMiddleware` for ``langchain.agents.create_agent`` (LangChain v1).
* :func:`secure_tools` / :func:`secure_tool` for every other runner (LangGraph ``ToolNode``,
  prebuilt agents, direct ``tool.invoke``).
* :func:`identity_of`, :func:`current_agent`, :func:`acting_as`.
* :func:`secure` / :func:`supports` for the universal ``aztp_agents.secured`` decorator;
  importing this package registers them with :mod:`aztp_agents.frameworks`.
* :mod:`aztp_langchain.testing`: the offline scripted chat model.
"""

from __future__ import annotations

import weakref
from typing import Any

from aztp_agents.frameworks import FrameworkAdapter, register_adapter

from ._common import DEFAULT_AGENT_NAME
from ._context import acting_as, current_agent
from .middleware import AztpMiddleware
from .tools import SecuredTool, asecure_tools, secure_tool, secure_tools

__all__ = [
    "AztpMiddleware",
    "SecuredTool",
    "acting_as",
    "asecure_tools",
    "current_agent",
    "identity_of",
    "secure",
    "secure_graph",
    "secure_tool",
    "secure_tools",
    "supports",
]

_GRAPH_AGENTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_AGENT_KEYS = ("agent", "agent_name", "name")


def identity_of(obj: Any) -> str | None:
    """AZTP ID of a secured tool, of the agent behind an :class:`AztpMiddleware` (once it has
    one) or of the agent of a graph secured with :func:`secure`; ``None`` otherwise."""
    if isinstance(obj, SecuredTool):
        return obj.aztp_id
    if isinstance(obj, AztpMiddleware):
        return obj.agent_id
    try:
        return _GRAPH_AGENTS.get(obj)
    except TypeError:  # unhashable or not weak-referenceable
        return None


def _tool_nodes(graph: Any) -> list[Any]:
    from langgraph.prebuilt import ToolNode

    nodes = getattr(graph, "nodes", None)
    if not isinstance(nodes, dict):
        return []
    return [n.bound for n in nodes.values() if isinstance(getattr(n, "bound", None), ToolNode)]


def secure_graph(graph: Any, *, flow: str, agent: str | None = None, **options: Any) -> Any:
    """Secure, in place, the tools of every ``ToolNode`` of a compiled LangGraph graph (a
    ``create_agent`` or prebuilt agent). The model keeps seeing the same tool schemas."""
    nodes = _tool_nodes(graph)
    if not nodes:
        raise TypeError(f"{type(graph).__name__} has no ToolNode: nothing to secure")
    if agent is None:
        name = getattr(graph, "name", None)
        agent = name if isinstance(name, str) and name and name != "LangGraph" else None
    agent = agent or DEFAULT_AGENT_NAME
    for node in nodes:
        by_name = node.tools_by_name  # the ToolNode's own dict: it runs what it finds here
        secured_tools = secure_tools(list(by_name.values()), flow=flow, agent=agent, **options)
        for original, secured in zip(list(by_name), secured_tools, strict=True):
            by_name[original] = secured
            _GRAPH_AGENTS[graph] = secured.agent_id  # type: ignore[assignment]
    return graph


def supports(obj: Any) -> bool:
    """Whether ``obj`` is a LangChain object this adapter can secure."""
    try:
        from langchain_core.tools import BaseTool
    except ImportError:  # pragma: no cover - the extra is not installed
        return False
    if isinstance(obj, (BaseTool, AztpMiddleware)):
        return True
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(isinstance(t, BaseTool) for t in obj)
    try:
        return bool(_tool_nodes(obj))
    except Exception:
        return False


def secure(obj: Any, *, flow: str, **options: Any) -> Any:
    """Entry point of the universal ``aztp_agents.secured`` decorator.

    A tool -> a :class:`SecuredTool`; a list (tuple) of tools -> a list (tuple) of them; a
    compiled graph with a ``ToolNode`` -> the same graph, its tools secured. The agent's name
    comes from ``agent=`` (or ``agent_name=`` / ``name=``), else the graph's name.
    """
    agent = None
    for key in _AGENT_KEYS:
        value = options.pop(key, None)
        if agent is None and value:
            agent = value
    if isinstance(obj, AztpMiddleware):
        return obj
    from langchain_core.tools import BaseTool

    if isinstance(obj, BaseTool):
        return secure_tool(obj, flow=flow, agent=agent or DEFAULT_AGENT_NAME, **options)
    if isinstance(obj, (list, tuple)):
        tools = secure_tools(obj, flow=flow, agent=agent or DEFAULT_AGENT_NAME, **options)
        return tuple(tools) if isinstance(obj, tuple) else tools
    return secure_graph(obj, flow=flow, agent=agent, **options)


register_adapter(
    FrameworkAdapter(
        module=__name__,
        frameworks=("langchain", "langchain_core", "langgraph"),
        supports=supports,
        secure=secure,
        identity_of=identity_of,
    )
)
