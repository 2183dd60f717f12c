"""Enforcement: one CrewAI ``before_tool_call`` hook that routes each call to the right guard.

CrewAI 1.x has no per-crew hook registry that a library can enter around ``kickoff()``:
``@before_tool_call`` methods of a ``@CrewBase`` class are registered globally too, and the
dispatcher's ``scoped_hooks`` context is not opened by ``kickoff()``. So this module registers
one global hook, once, and routes each call by the hook context's crew and agent (their
tokens) to the guard of the crew or agent that was secured. Calls of crews and agents that
were not secured pass untouched; inside a secured crew, an agent or tool without an AZTP
identity is denied.

Tools CrewAI resolves inside ``kickoff`` from the agent's own declarations (``mcps=``,
``apps=``; see ``_sources``) are the agent's grant like its ``tools=``: each is enrolled in
the flow and linked to the agent once, when it first appears. The enrollment starts on a
worker thread as soon as CrewAI resolves the tools (while the model is asked what to do), and
the hook waits for it only if it is not done by the first call. Any other tool without an
identity stays denied (``tool_unknown``).

CrewAI swallows every exception a hook raises except ``HookAborted`` and then runs the tool
(fail open). Every failure on this path is therefore turned into ``HookAborted`` here.

When a call is blocked, CrewAI shows the agent a generic "Tool execution blocked by hook"
text; the ``after_tool_call`` hook below replaces it with the guard's denial text, so the
model learns the reason code. That hook is registered only while a denial waits for it:
CrewAI's dispatch of a hook point that has any hook costs about as much as the guard's whole
decision (it emits a telemetry event per dispatch), and allowed calls have nothing for it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from crewai.hooks import (
    HookAborted,
    get_after_tool_call_hooks,
    get_before_tool_call_hooks,
    register_after_tool_call_hook,
    register_before_tool_call_hook,
    unregister_after_tool_call_hook,
)
from crewai.utilities.string_utils import sanitize_tool_name as _crewai_sanitize

from aztp_agents.audit import CallContext
from aztp_agents.decisions import Decision

from . import _registry as reg
from . import _sources

logger = logging.getLogger("aztp_crewai")

#: AZTP-ID-shaped placeholders for callers without an identity. They are never issued (the
#: trust domain ``unidentified.invalid`` cannot be claimed), so the guard's decision is
#: ``agent_unknown`` / ``tool_unknown`` and it is audited like any other decision.
UNIDENTIFIED_AGENT = "aztp://unidentified.invalid/workload/none/node/crewai-agent"
UNIDENTIFIED_TOOL = "aztp://unidentified.invalid/workload/none/node/crewai-tool"

_install_lock = threading.Lock()

#: CrewAI's tool-name normalisation, memoized: it runs on every tool call and tool names repeat.
sanitize_tool_name = functools.lru_cache(maxsize=4096)(_crewai_sanitize)


def _text(value: Any, limit: int = 200) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- tools that appear at kickoff ---------------------------------------------------------

#: Bound on waiting for the enrollment of a tool that appeared at kickoff (it issues an
#: identity and writes a link; past this the call is denied, fail closed).
APPEARED_ENROLL_TIMEOUT = 30.0

_appeared_lock = threading.Lock()
#: (id(guard), id(entry), tool name) -> (guard, entry, the enrollment of that tool for that
#: agent). The guard and entry are held so their ids cannot be reused by other objects.
_appeared: dict[
    tuple[int, int, str], tuple[Any, reg.AgentEntry, concurrent.futures.Future[str]]
] = {}


def _enroll_appeared_now(
    guard: Any, entry: reg.AgentEntry, tool_name: str, crew: Any, prefix: Any, tool: Any, token: Any
) -> str:
    tool_id = guard.ensure_identity(reg.tool_aztp_name(tool_name, prefix))
    guard.link(entry.aztp_id, tool_id)
    reg.grant_appeared(entry, crew, tool_name, tool_id)
    if tool is not None and token is not None:
        reg.remember_tool(tool, tool_id, guard, token)
    logger.info("enrolled %s, which appeared at kickoff, for %s", tool_id, entry.aztp_id)
    return tool_id


def _start_appeared(
    guard: Any,
    entry: reg.AgentEntry,
    tool_name: str,
    crew: reg.SecuredCrew | None,
    prefix: str | None,
    tool: Any,
    token: str | None,
) -> concurrent.futures.Future[str]:
    """The enrollment of ``tool_name`` for ``entry``'s agent: started once (on a worker
    thread, so neither CrewAI's resolution nor an event loop waits for its I/O)."""
    from aztp_agents.guard import _executor

    key = (id(guard), id(entry), tool_name)
    with _appeared_lock:
        item = _appeared.get(key)
        if item is not None and item[0] is guard and item[1] is entry:
            future = item[2]
            if not (future.done() and future.exception() is not None):
                return future  # running or done: once (a failed one is tried again)
        future = _executor().submit(
            _enroll_appeared_now, guard, entry, tool_name, crew, prefix, tool, token
        )
        _appeared[key] = (guard, entry, future)
        return future


def _appeared_tool_id(
    ctx: Any,
    guard: Any,
    entry: reg.AgentEntry,
    tool_name: str,
    crew: reg.SecuredCrew | None,
    prefix: str | None,
    token: str | None,
) -> str | None:
    """The identity of a tool the calling agent's declarations produced at kickoff (enrolled
    now if it was not yet), or ``None`` if no declaration of this agent produced it."""
    if _sources.declared_source(ctx.tool, ctx.agent) is None:
        return None
    tool = getattr(ctx.tool, "_original_tool", None) or ctx.tool
    future = _start_appeared(guard, entry, tool_name, crew, prefix, tool, token)
    return future.result(timeout=APPEARED_ENROLL_TIMEOUT)  # raises: the hook denies


def _owner_of(agent: Any) -> tuple[Any, reg.AgentEntry, reg.SecuredCrew | None, Any, str] | None:
    """``(guard, entry, crew, prefix, token)`` of an agent already routed once, else ``None``."""
    token = reg.agent_token(agent)
    standalone = reg.agent_by_token(token)
    if standalone is not None:
        return standalone.guard, standalone.entry, None, standalone.prefix, standalone.token
    last = reg.last_crew_of_agent(token)
    if last is not None and token is not None:
        return last.guard, last.agents[token], last, last.prefix, token
    return None


def prefetch_appeared(agent: Any, tools: list[Any]) -> None:
    """``_sources`` listener: CrewAI just resolved ``tools`` from ``agent``'s declarations.
    Start their enrollment now if the agent is known (a copy is known from its first call)."""
    owner = _owner_of(agent)
    if owner is None:
        return
    guard, entry, crew, prefix, token = owner
    for tool in tools:
        name = getattr(tool, "name", None)
        if isinstance(name, str) and name:
            tool_name = sanitize_tool_name(name)
            if tool_name not in entry.tools:
                _start_appeared(guard, entry, tool_name, crew, prefix, tool, token)


def _tool_id(
    ctx: Any,
    guard: Any,
    entry: reg.AgentEntry,
    tool_name: str,
    crew: reg.SecuredCrew | None,
    prefix: str | None,
    token: str | None,
    fallback: dict[str, str] | None,
) -> str:
    """The tool's identity for this agent: one it was secured with, one its declarations
    produced at kickoff, else another agent's (the guard then denies ``no_link``), else none."""
    tool_id = entry.tools.get(tool_name)
    if tool_id is not None:
        return tool_id
    tool_id = _appeared_tool_id(ctx, guard, entry, tool_name, crew, prefix, token)
    if tool_id is not None:
        return tool_id
    return (fallback or {}).get(tool_name, UNIDENTIFIED_TOOL)


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
            token = reg.agent_token(agent) if entry is not None else None
        if entry is None:
            return (
                secured.guard,
                UNIDENTIFIED_AGENT,
                secured.tools.get(tool_name, UNIDENTIFIED_TOOL),
                secured.name,
            )
        tool_id = _tool_id(
            ctx, secured.guard, entry, tool_name, secured, secured.prefix, token, secured.tools
        )
        return secured.guard, entry.aztp_id, tool_id, secured.name
    crew_name = _text(getattr(crew, "name", None))
    if token is None and agent is not None:
        token = reg.adopt_standalone(agent)  # a copy of a secured agent
    # Not in a secured crew: a secured agent is still checked, by its own guard ...
    standalone = reg.agent_by_token(token)
    if standalone is not None:
        guard, entry = standalone.guard, standalone.entry
        tool_id = _tool_id(ctx, guard, entry, tool_name, None, standalone.prefix, token, None)
        return guard, entry.aztp_id, tool_id, crew_name
    # ... an agent enrolled through a crew by that crew's guard ...
    last = reg.last_crew_of_agent(token)
    if last is not None:
        entry = last.agents[token]  # type: ignore[index]
        tool_id = _tool_id(ctx, last.guard, entry, tool_name, last, last.prefix, token, last.tools)
        return last.guard, entry.aztp_id, tool_id, last.name
    # ... and a secured tool only serves agents that have an identity.
    tool = getattr(ctx.tool, "_original_tool", None) or ctx.tool
    info = reg.tool_info(tool) if tool is not None else None
    if info is not None:
        return info.guard, UNIDENTIFIED_AGENT, info.aztp_id, crew_name
    return None


class _Call:
    """What the hook worked out for one (crew, agent, task, tool name): the guard, the two
    identities to decide with and the audit context. Reused while the registry is unchanged
    and the crew, agent and task are the same objects with the same labels, so a repeated
    call skips routing and builds no context (it touches little memory, which matters more
    than instructions on a path that runs between two stretches of CrewAI's own work)."""

    __slots__ = (
        "agent",
        "agent_id",
        "context",
        "crew",
        "generation",
        "guard",
        "labels",
        "task",
        "tool_id",
        "tool_name",
    )

    def __init__(
        self,
        crew: Any,
        agent: Any,
        task: Any,
        route: tuple[Any, str, str, str],
        tool_name: str | None,
        labels: tuple[Any, ...],
        generation: int,
    ) -> None:
        self.crew, self.agent, self.task = _ref(crew), _ref(agent), _ref(task)
        self.generation = generation
        self.labels = labels
        self.guard, self.agent_id, self.tool_id, crew_name = route
        self.tool_name = sanitize_tool_name(tool_name or "")
        role, task_name, task_text = labels
        self.context = CallContext(
            framework="crewai",
            crew=crew_name,
            task=_text(task_name) if task_name else _text(task_text, 120),
            agent=_text(role),
            tool=_text(tool_name),
        )

    def fits(self, crew: Any, agent: Any, task: Any) -> bool:
        return (
            self.generation == reg.generation
            and self.agent() is agent
            and self.task() is task
            and self.crew() is crew
            and self.labels == _labels(agent, task)
        )


def _none() -> None:
    return None


_NEVER = object()


def _never() -> Any:
    return _NEVER


def _ref(obj: Any) -> Callable[[], Any]:
    """A weak reference to ``obj``; for an object that cannot have one, a reference that
    matches nothing (its calls are then worked out every time)."""
    if obj is None:
        return _none
    try:
        return weakref.ref(obj)
    except TypeError:
        return _never


def _labels(agent: Any, task: Any) -> tuple[Any, Any, Any]:
    """The texts an audit context is made of (CrewAI interpolates them at kickoff)."""
    return (
        getattr(agent, "role", None),
        getattr(task, "name", None),
        getattr(task, "description", None),
    )


#: (id(crew), id(agent), id(task), tool name) -> _Call. Entries are checked by ``fits``.
_calls: dict[tuple[int, int, int, str | None], _Call] = {}


def _call_for(ctx: Any, tool_name: str | None) -> _Call | None:
    crew, agent, task = ctx.crew, ctx.agent, ctx.task
    key = (id(crew), id(agent), id(task), tool_name)
    call = _calls.get(key)
    if call is not None and call.fits(crew, agent, task):
        return call
    generation = reg.generation  # read before routing: a change meanwhile invalidates the entry
    route = _route(ctx)
    if route is None:
        return None
    call = _Call(crew, agent, task, route, tool_name, _labels(agent, task), generation)
    # Only an identified agent's route is kept: whether an unknown agent is a copy of a secured
    # one is decided again on every call (its tools may change), never remembered.
    if route[1] != UNIDENTIFIED_AGENT:
        if len(_calls) >= 4096:
            _calls.clear()
        _calls[key] = call
    return call


#: id(tool input) -> (tool input, denial text): a blocked call's text for the after-hook.
_denials: dict[int, tuple[Any, str]] = {}


def _deny(ctx: Any, text: str, source: str = "aztp") -> HookAborted:
    """The exception that blocks the call. Never raises itself: anything but ``HookAborted``
    escaping the hook would be swallowed by CrewAI and the tool would run."""
    try:
        tool_input = ctx.tool_input
        with _install_lock:
            if len(_denials) >= 1024:  # after-hooks that never ran (another hook aborted first)
                _denials.clear()
            _denials[id(tool_input)] = (tool_input, f"{text.rstrip('.')}. The tool was not run.")
            _register_after()
    except Exception:  # the agent sees CrewAI's generic text instead; the call is still blocked
        logger.warning("could not pass the denial text on to the agent", exc_info=True)
    return HookAborted(text, source=source)


def _register_after() -> None:
    """With ``_install_lock`` held."""
    if not any(h is after_tool_call for h in get_after_tool_call_hooks()):
        register_after_tool_call_hook(after_tool_call)


def before_tool_call(ctx: Any) -> None:
    """The PRE_TOOL_CALL hook: decide, audit, and block unless allowed."""
    tool_name = getattr(ctx, "tool_name", None)
    try:
        call = _call_for(ctx, tool_name)
        if call is None:
            return None
        decision = call.guard.check(call.agent_id, call.tool_id, call.tool_name, call.context)
        if not isinstance(decision, Decision) or not isinstance(decision.allowed, bool):
            raise TypeError(f"guard returned {type(decision).__name__}, not a Decision")
    except Exception as exc:  # fail closed: CrewAI would swallow it and run the tool
        logger.error(
            "AZTP guard error on tool %r, call blocked: %s: %s", tool_name, type(exc).__name__, exc
        )
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
    if not _denials:
        return None
    tool_input = ctx.tool_input
    denied = _denials.get(id(tool_input))
    if denied is None or denied[0] is not tool_input:
        return None
    _denials.pop(id(tool_input), None)
    with _install_lock:
        if not _denials:  # nothing waits: allowed calls need no after-hook dispatch
            unregister_after_tool_call_hook(after_tool_call)
    return denied[1]


def install() -> None:
    """Register the hooks with CrewAI unless they are registered already (idempotent)."""
    _sources.install(prefetch_appeared)
    with _install_lock:
        if not any(h is before_tool_call for h in get_before_tool_call_hooks()):
            register_before_tool_call_hook(before_tool_call)
        if _denials:
            _register_after()


def ensure_hooks_before_kickoff(inputs: Any) -> Any:
    """``before_kickoff_callbacks`` entry of secured crews: re-install the hooks if cleared."""
    install()
    return inputs
