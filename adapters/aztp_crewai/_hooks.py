"""Enforcement: one CrewAI ``before_tool_call`` hook that routes each call to the right guard.

CrewAI 1.x has no per-crew hook registry that a library can enter around ``kickoff()``:
``@before_tool_call`` methods of a ``@CrewBase`` class are registered globally too, and the
dispatcher's ``scoped_hooks`` context is not opened by ``kickoff()``. So this module registers
one global hook, once, and routes each call by the hook context's crew and agent (their
tokens) to the guard of the crew or agent that was secured. Calls of crews and agents that
were not secured pass untouched; inside a secured crew, an agent or tool without an AZTP
identity is denied.

CrewAI swallows every exception a hook raises except ``HookAborted`` and then runs the tool
(fail open). Every failure on this path is therefore turned into ``HookAborted`` here.

When a call is blocked, CrewAI shows the agent a generic "Tool execution blocked by hook"
text; the ``after_tool_call`` hook below replaces it with the guard's denial text, so the
model learns the reason code.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from crewai.hooks import (
    HookAborted,
    get_after_tool_call_hooks,
    get_before_tool_call_hooks,
    register_after_tool_call_hook,
    register_before_tool_call_hook,
)
from crewai.utilities.string_utils import sanitize_tool_name as _crewai_sanitize

from aztp_agents.decisions import Decision

from . import _registry as reg

logger = logging.getLogger("aztp_crewai")

#: AZTP-ID-shaped placeholders for callers without an identity. They are never issued (the
#: trust domain ``unidentified.invalid`` cannot be claimed), so the guard's decision is
#: ``agent_unknown`` / ``tool_unknown`` and it is audited like any other decision.
UNIDENTIFIED_AGENT = "aztp://unidentified.invalid/workload/none/node/crewai-agent"
UNIDENTIFIED_TOOL = "aztp://unidentified.invalid/workload/none/node/crewai-tool"

_install_lock = threading.Lock()

#: CrewAI's tool-name normalisation, memoized: it runs on every tool call and tool names repeat.
sanitize_tool_name = functools.lru_cache(maxsize=4096)(_crewai_sanitize)
_local = threading.local()


def _text(value: Any, limit: int = 200) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _task_label(task: Any) -> str:
    if task is None:
        return ""
    name = getattr(task, "name", None)
    return _text(name) if name else _text(getattr(task, "description", None), 120)


def _route(ctx: Any) -> tuple[Any, str, str, str] | None:
    """``(guard, agent_id, tool_id, crew_name)`` for this call, or ``None`` if not secured."""
    agent = ctx.agent
    token = reg.agent_token(agent) if agent is not None else None
    crew = ctx.crew
    tool_name = sanitize_tool_name(ctx.tool_name or "")
    secured = reg.secured_crew_of(crew)
    if secured is not None:
        entry = secured.agents.get(token) if token is not None else None
        if entry is None and agent is not None:
            entry = reg.adopt_in_crew(secured, crew, agent)  # an agent of a copy of the crew
        if entry is None:
            return secured.guard, UNIDENTIFIED_AGENT, secured.tools.get(tool_name, UNIDENTIFIED_TOOL), secured.name
        tool_id = entry.tools.get(tool_name) or secured.tools.get(tool_name, UNIDENTIFIED_TOOL)
        return secured.guard, entry.aztp_id, tool_id, secured.name
    crew_name = _text(getattr(crew, "name", None))
    if token is None and agent is not None:
        token = reg.adopt_standalone(agent)  # a copy of a secured agent
    # Not in a secured crew: a secured agent is still checked, by its own guard ...
    standalone = reg.agent_by_token(token)
    if standalone is not None:
        return standalone.guard, standalone.entry.aztp_id, standalone.entry.tools.get(tool_name, UNIDENTIFIED_TOOL), crew_name
    # ... an agent enrolled through a crew by that crew's guard ...
    last = reg.last_crew_of_agent(token)
    if last is not None:
        entry = last.agents[token]  # type: ignore[index]
        return last.guard, entry.aztp_id, entry.tools.get(tool_name) or last.tools.get(tool_name, UNIDENTIFIED_TOOL), last.name
    # ... and a secured tool only serves agents that have an identity.
    tool = getattr(ctx.tool, "_original_tool", None) or ctx.tool
    info = reg.tool_info(tool) if tool is not None else None
    if info is not None:
        return info.guard, UNIDENTIFIED_AGENT, info.aztp_id, crew_name
    return None


def _deny(ctx: Any, text: str, source: str = "aztp") -> HookAborted:
    _local.denied = (ctx.tool_input, f"{text.rstrip('.')}. The tool was not run.")
    return HookAborted(text, source=source)


def before_tool_call(ctx: Any) -> None:
    """The PRE_TOOL_CALL hook: decide, audit, and block unless allowed."""
    tool_name = getattr(ctx, "tool_name", None)
    try:
        route = _route(ctx)
        if route is None:
            return None
        guard, agent_id, tool_id, crew_name = route
        agent = ctx.agent
        context = {
            "framework": "crewai",
            "crew": crew_name,
            "task": _task_label(ctx.task),
            "agent": _text(getattr(agent, "role", None)),
            "tool": _text(tool_name),
        }
        decision = guard.check(agent_id, tool_id, sanitize_tool_name(tool_name or ""), context)
        if not isinstance(decision, Decision) or not isinstance(decision.allowed, bool):
            raise TypeError(f"guard returned {type(decision).__name__}, not a Decision")
    except Exception as exc:  # fail closed: CrewAI would swallow it and run the tool
        logger.error("AZTP guard error on tool %r, call blocked: %s: %s", tool_name, type(exc).__name__, exc)
        raise _deny(
            ctx,
            f"AZTP DENIED [authority_unavailable] tool={tool_name}: the guard failed "
            f"({type(exc).__name__}); fail closed.",
        ) from None
    if decision.blocks:
        raise _deny(ctx, decision.describe())
    return None  # allowed, or observe mode (the guard logged the would-be denial)


def after_tool_call(ctx: Any) -> str | None:
    """The POST_TOOL_CALL hook: give the agent the denial text instead of CrewAI's generic one."""
    denied = getattr(_local, "denied", None)
    if denied is None:
        return None
    tool_input, text = denied
    if ctx.tool_input is not tool_input:
        return None
    _local.denied = None
    return text


def install() -> None:
    """Register the hooks with CrewAI unless they are registered already (idempotent)."""
    with _install_lock:
        if not any(h is before_tool_call for h in get_before_tool_call_hooks()):
            register_before_tool_call_hook(before_tool_call)
        if not any(h is after_tool_call for h in get_after_tool_call_hooks()):
            register_after_tool_call_hook(after_tool_call)


def ensure_hooks_before_kickoff(inputs: Any) -> Any:
    """``before_kickoff_callbacks`` entry of secured crews: re-install the hooks if cleared."""
    install()
    return inputs
