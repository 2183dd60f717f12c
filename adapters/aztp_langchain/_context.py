"""Who is calling: the agent identity of the running tool call, carried in a ContextVar.

The identity never travels in tool arguments (the model writes those). LangGraph copies the
context into every node, worker thread and task it starts, so concurrent runs in one event
loop each see their own caller and never swap.

Who decides a secured tool's call (the rule; ``tools._Binding`` applies it):

1. An ``AztpMiddleware`` decides its agent's calls as that agent, whatever the context holds,
   and a secured tool it runs is not decided again. Its decision covers exactly one call: the
   tool object and tool-call id it decided, consumed by the first secured tool that runs it.
2. Inside :func:`acting_as` the named agent decides every secured tool called in the block,
   even a tool secured for another agent: an explicit override, at that level only.
3. Otherwise a tool secured for an agent decides as that agent. The caller of a tool call
   that is running around it (a supervisor whose tool runs this sub-agent) never overrides:
   each tool call binds its own caller while its body runs and restores the parent's after,
   so an ``acting_as`` or a supervisor above does not reach into the runs nested below.
4. A tool secured with no agent decides as the caller in the context (the running tool
   call's agent, :func:`acting_as`, or the core's ``bind_agent``); with none it is denied as
   ``agent_unknown``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from aztp_agents import guard as _core
from aztp_agents.ids import is_valid_aztp_id, parse_aztp_id

__all__ = [
    "CALLER",
    "Caller",
    "acting_as",
    "current_agent",
    "current_caller",
    "enter_call",
    "pop",
    "push",
]


class Caller(NamedTuple):
    """The agent on whose behalf tools run now, and the tool call already decided (if any).
    (A NamedTuple: one is made per tool call.)"""

    agent_id: str | None
    agent_name: str | None = None
    flow_id: str | None = None
    #: Set while a tool call that an enforcement point already allowed is running: the
    #: tool identity and the tool-call id that decision covered.
    tool_id: str | None = None
    tool_call_id: str | None = None
    #: The tool object that decision covers (the one the enforcement point saw run).
    tool: Any = None
    #: Bound by :func:`acting_as`: overrides the agent a tool was secured for (rule 2).
    explicit: bool = False

    def covers(
        self, flow_id: str | None, tool_id: str | None, tool_call_id: str | None, tool: Any
    ) -> bool:
        """Whether this caller's decision already covers that exact tool call."""
        return (
            tool_call_id is not None
            and self.tool is tool
            and self.tool_call_id == tool_call_id
            and self.tool_id is not None
            and self.tool_id == tool_id
            and self.flow_id is not None
            and self.flow_id == flow_id
        )


#: The caller of the running tool call (set with the core's ``current_agent``: see :func:`push`).
CALLER: ContextVar[Caller | None] = ContextVar("aztp_langchain_caller", default=None)


def current_caller() -> Caller | None:
    """The caller in the context: ours, unless the core's ``aztp_agents.guard.bind_agent``
    bound another agent inside it (then that agent, as an implicit caller: it names the
    caller of tools with no agent of their own, and overrides no tool's agent)."""
    caller = CALLER.get()
    agent_id = _core.current_agent.get()
    if caller is not None and caller.agent_id == agent_id:
        return caller
    return Caller(agent_id=agent_id) if agent_id else None


def current_agent() -> str | None:
    """AZTP ID of the agent on whose behalf the current tool call runs (``None`` outside)."""
    caller = current_caller()
    return caller.agent_id if caller is not None else None


def push(caller: Caller) -> tuple[Any, Any]:
    """Make ``caller`` current (here and in the core's contextvar); undo with :func:`pop`."""
    return CALLER.set(caller), _core.current_agent.set(caller.agent_id)


def pop(tokens: tuple[Any, Any]) -> None:
    _reset_agent(tokens[1])
    _reset_caller(tokens[0])


_set_caller, _reset_caller = CALLER.set, CALLER.reset
_set_agent, _reset_agent = _core.current_agent.set, _core.current_agent.reset
_new_tuple = tuple.__new__


def enter_call(
    agent_id: str | None,
    agent_name: str | None,
    flow_id: str | None,
    tool_id: str | None,
    tool_call_id: str | None,
    tool: Any,
) -> tuple[Any, Any]:
    """:func:`push` of the caller of a tool call an enforcement point allowed (``tool``: the
    tool object about to run); undo with :func:`pop`. Made for the per-call path: the Caller
    is built with ``tuple.__new__`` and the contextvars are set through bound methods (each
    Python call there costs more than its instructions)."""
    caller = _new_tuple(Caller, (agent_id, agent_name, flow_id, tool_id, tool_call_id, tool, False))
    return _set_caller(caller), _set_agent(agent_id)


def _name_of(agent: Any, agent_id: str) -> str:
    """The agent's name for audit contexts: its own (a middleware's ``agent_name``), else the
    name part of its AZTP ID."""
    name = getattr(agent, "agent_name", None)
    if isinstance(name, str) and name:
        return name
    return parse_aztp_id(agent_id).name


@contextmanager
def acting_as(agent: Any) -> Iterator[str]:
    """Run the enclosed block as ``agent`` (an AZTP ID, or an object :func:`identity_of` knows).

    Secured tools invoked inside the block decide for this agent instead of the agent they were
    secured for. It reaches the tool calls made in the block, not the runs nested inside them:
    a tool call binds its own caller while it runs, and a sub-agent that tool starts decides
    as itself. The value is bound to the current context only (thread or asyncio task)::

        async def run(graph, agent_id):
            with acting_as(agent_id):
                return await graph.ainvoke(inputs)
    """
    if isinstance(agent, str):
        agent_id: str | None = agent
    else:
        from . import identity_of

        agent_id = identity_of(agent)
    if not agent_id or not is_valid_aztp_id(agent_id):
        raise ValueError(
            f"acting_as needs an AZTP ID (aztp://...) or a secured object with an identity, "
            f"got {agent!r}"
        )
    tokens = push(Caller(agent_id=agent_id, agent_name=_name_of(agent, agent_id), explicit=True))
    try:
        yield agent_id
    finally:
        pop(tokens)
