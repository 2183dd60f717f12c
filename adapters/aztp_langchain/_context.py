"""Who is calling: the agent identity of the running tool call, carried in a ContextVar.

The identity never travels in tool arguments (the model writes those). LangGraph copies the
context into every node, worker thread and task it starts, so concurrent runs in one event
loop each see their own caller and never swap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from aztp_agents import guard as _core
from aztp_agents.ids import is_valid_aztp_id

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

    def covers(self, flow_id: str | None, tool_id: str | None, tool_call_id: str | None) -> bool:
        """Whether this caller's decision already covers that exact tool call."""
        return (
            tool_call_id is not None
            and self.tool_call_id == tool_call_id
            and self.tool_id is not None
            and self.tool_id == tool_id
            and self.flow_id is not None
            and self.flow_id == flow_id
        )


#: The caller of the running tool call (set with the core's ``current_agent``: see :func:`push`).
CALLER: ContextVar[Caller | None] = ContextVar("aztp_langchain_caller", default=None)


def current_caller() -> Caller | None:
    """The caller in the context: ours, else the core's ``aztp_agents.guard.bind_agent``."""
    caller = CALLER.get()
    if caller is None:
        agent_id = _core.current_agent.get()
        if agent_id:
            return Caller(agent_id=agent_id)
    return caller


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
) -> tuple[Any, Any]:
    """:func:`push` of the caller of a tool call an enforcement point allowed; undo with
    :func:`pop`. Made for the per-call path: the Caller is built with ``tuple.__new__`` and
    the contextvars are set through bound methods (each Python call there costs more than its
    instructions)."""
    caller = _new_tuple(Caller, (agent_id, agent_name, flow_id, tool_id, tool_call_id))
    return _set_caller(caller), _set_agent(agent_id)


@contextmanager
def acting_as(agent: Any) -> Iterator[str]:
    """Run the enclosed block as ``agent`` (an AZTP ID, or an object :func:`identity_of` knows).

    Secured tools invoked inside the block decide for this agent instead of the agent they were
    secured for. The value is bound to the current context only (thread or asyncio task)::

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
    tokens = push(Caller(agent_id=agent_id))
    try:
        yield agent_id
    finally:
        pop(tokens)
