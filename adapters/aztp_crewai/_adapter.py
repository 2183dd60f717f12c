"""Give CrewAI agents and tools AZTP identities, enroll them in a flow, link agents to tools."""

from __future__ import annotations

import functools
import inspect
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from crewai import Crew
from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.utilities.string_utils import sanitize_tool_name

from aztp_agents.ids import sanitize_name

from . import _hooks
from . import _registry as reg

__all__ = [
    "guard_of",
    "identity_of",
    "secure",
    "secure_agent",
    "secure_crew",
    "secured",
    "supports",
]

_GUARD_OPTIONS = ("client", "mode", "environment", "trust_domain", "discoverable", "timeout")
_OPTIONS = (*_GUARD_OPTIONS, "guard", "prefix")

#: Tools CrewAI hands to agents with ``allow_delegation=True`` in a crew of several agents.
DELEGATION_TOOLS = ("Delegate work to coworker", "Ask question to coworker")


def _check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; aztp_crewai accepts {', '.join(_OPTIONS)}"
        )
    mode = options.get("mode", "enforce")
    if mode not in ("enforce", "observe"):
        raise ValueError(f"mode must be 'enforce' or 'observe', not {mode!r}")


_guards: dict[tuple[Any, ...], Any] = {}
_guards_lock = threading.Lock()


def _make_guard(flow: str, options: dict[str, Any]) -> Any:
    """The guard for these options: the one given, or one shared by every object secured in
    the same flow with the same client and settings (so securing again is cheap)."""
    guard = options.get("guard")
    if guard is not None:
        return guard
    if not isinstance(flow, str) or not flow.strip():
        raise ValueError("flow must be a non-empty flow name, e.g. secure_crew(crew, flow='prod')")
    from aztp_agents.guard import Guard

    kwargs = {k: options[k] for k in _GUARD_OPTIONS if options.get(k) is not None}
    client = kwargs.get("client")
    key = (flow, id(client), *(kwargs.get(k) for k in _GUARD_OPTIONS[1:]))
    with _guards_lock:
        cached = _guards.get(key)
        if cached is not None and cached.client is (
            client if client is not None else cached.client
        ):
            return cached
        guard = Guard(flow=flow, **kwargs)
        _guards[key] = guard
        return guard


#: ``{topic}``-style placeholders CrewAI fills from ``kickoff(inputs=...)``.
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _crewbase_agent_method(agent: Any) -> str | None:
    """The name of the ``@agent`` method of a ``@CrewBase`` project that built ``agent`` (by
    convention its YAML key), or ``None``. CrewAI keeps no link from an agent to its method;
    ``crewai.project`` memoizes each method's result in one cache keyed
    ``"<method name>-<arguments>"``, where this agent is found when a project built it."""
    try:
        from crewai.project import utils

        entries = list(utils.cache._cache.items())
    except Exception:  # another CrewAI layout: fall back to the role
        return None
    for key, value in entries:
        if value is agent:
            name = key.split("-", 1)[0]
            return name if name.isidentifier() else None
    return None


def _agent_base_name(agent: Any, prefix: str | None, method: str | None = None) -> str:
    """``agent/<YAML key>`` for an agent of a ``@CrewBase`` project, else ``agent/<role>``.
    Roles may be templates (``{topic} Researcher``), filled at each kickoff: the name is the
    same for every input, so the placeholders are left out of it."""
    method = method or _crewbase_agent_method(agent)
    if method is not None:
        role = method.replace("_", "-")
    else:
        role = str(getattr(agent, "_original_role", None) or getattr(agent, "role", None) or "")
        if _PLACEHOLDER.search(role):  # only then: other names stay as they always were
            role = " ".join(_PLACEHOLDER.sub(" ", role).split())
        role = role or "agent"
    raw = f"agent/{role}".lower()
    return sanitize_name(f"{prefix}/{raw}" if prefix else raw)


def _tool_aztp_name(tool_name: str, prefix: str | None) -> str:
    return reg.tool_aztp_name(sanitize_tool_name(tool_name), prefix)


def _unique(name: str, used: set[str]) -> str:
    if name not in used:
        used.add(name)
        return name
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = sanitize_name(name[: 64 - len(suffix)].rstrip("-/") + suffix)
        if candidate not in used:
            used.add(candidate)
            return candidate
        n += 1


def _tools_of(agent: Any) -> list[Any]:
    return [t for t in (getattr(agent, "tools", None) or []) if getattr(t, "name", None)]


def _enroll(
    guard: Any,
    agent: Any,
    agent_name: str,
    tools: Iterable[Any],
    extra_tool_names: Iterable[str],
    prefix: str | None,
    token: str,
) -> reg.AgentEntry:
    """Issue + enroll the agent and its tools, link agent -> each tool; return the entry."""
    by_crewai_name: dict[str, Any] = {}
    for tool in tools:
        by_crewai_name.setdefault(sanitize_tool_name(tool.name), tool)
    for name in extra_tool_names:
        by_crewai_name.setdefault(sanitize_tool_name(name), None)
    aztp_names = {
        crewai_name: _tool_aztp_name(crewai_name, prefix) for crewai_name in by_crewai_name
    }
    enrollment = guard.enroll(agent_name, sorted(set(aztp_names.values())))
    tool_ids = {
        crewai_name: enrollment.tools[aztp_name] for crewai_name, aztp_name in aztp_names.items()
    }
    for crewai_name, tool in by_crewai_name.items():
        if tool is not None:
            reg.remember_tool(tool, tool_ids[crewai_name], guard, token)
    return reg.AgentEntry(
        aztp_id=enrollment.agent_id,
        name=agent_name,
        role=str(getattr(agent, "role", "") or ""),
        tools=tool_ids,
        tool_objects=frozenset(id(t) for t in _tools_of(agent)),
    )


def secure_agent(agent: Any, *, flow: str, **options: Any) -> Any:
    """Give ``agent`` (a ``crewai.Agent``) and its tools AZTP identities in ``flow``.

    The agent is linked to each of its tools. Its tool calls are checked by a guard of this
    flow wherever it runs, unless it runs inside a crew secured with :func:`secure_crew` (then
    the crew's flow applies). Returns the same agent.

    Options: ``client`` (an ``Aztp``; the shared embedded default if omitted), ``mode``
    (``"enforce"`` | ``"observe"``), ``environment``, ``trust_domain``, ``discoverable`` (for a
    flow created here), ``guard`` (a ready ``Guard``), ``prefix`` (namespace for the names).
    """
    return _secure_agent(agent, flow, None, options)


def _secure_agent(agent: Any, flow: str, method: str | None, options: dict[str, Any]) -> Any:
    """``secure_agent``; ``method``: the ``@CrewBase`` method that returned the agent (its
    name names the agent), when the caller knows it."""
    if not isinstance(agent, BaseAgent):
        raise TypeError(f"secure_agent() takes a crewai Agent, not {type(agent).__name__}")
    _check_options(options)
    guard = _make_guard(flow, options)
    token = reg.ensure_agent_token(agent)
    prefix = options.get("prefix")
    existing = reg.agent_by_token(token)
    if (
        existing is not None
        and existing.guard is guard
        and existing.entry.name == _agent_base_name(agent, prefix, method)
        and set(existing.entry.tools) >= {sanitize_tool_name(t.name) for t in _tools_of(agent)}
    ):
        return agent  # already secured by this guard, same tools: nothing to do
    extra = DELEGATION_TOOLS if getattr(agent, "allow_delegation", False) else ()
    entry = _enroll(
        guard,
        agent,
        _agent_base_name(agent, prefix, method),
        _tools_of(agent),
        extra,
        prefix,
        token,
    )
    reg.register_agent(reg.SecuredAgent(token=token, guard=guard, entry=entry, prefix=prefix))
    _hooks.install()
    return agent


def secure_crew(crew: Any, *, flow: str, **options: Any) -> Any:
    """Secure every agent of ``crew`` (and the tools of its agents and tasks) in ``flow``.

    Each agent gets an identity named after its role (unique within the crew), each tool one
    named after the tool; all are enrolled in the flow (created if missing) and each agent is
    linked to the tools it was given (its own, its tasks', CrewAI's delegation tools when it
    may delegate; in a hierarchical crew, the manager to the tools of every task, which CrewAI
    hands it). Every tool call of the crew then passes the guard; an agent or a tool that
    has no identity in this crew is denied. Returns the same crew, ready to ``kickoff()``.
    Options as for :func:`secure_agent`.
    """
    if not isinstance(crew, Crew):
        raise TypeError(f"secure_crew() takes a crewai Crew, not {type(crew).__name__}")
    _check_options(options)
    guard = _make_guard(flow, options)
    prefix = options.get("prefix")

    agents: list[Any] = []
    seen: set[int] = set()
    candidates = [*crew.agents, getattr(crew, "manager_agent", None)]
    candidates += [getattr(t, "agent", None) for t in crew.tasks]
    for agent in candidates:
        if isinstance(agent, BaseAgent) and id(agent) not in seen:
            seen.add(id(agent))
            agents.append(agent)

    task_tools: dict[int, list[Any]] = {id(a): [] for a in agents}
    unassigned_tools: list[Any] = []
    every_task_tool: list[Any] = []
    for task in crew.tasks:
        tools = [t for t in (getattr(task, "tools", None) or []) if getattr(t, "name", None)]
        every_task_tool.extend(tools)
        owner = getattr(task, "agent", None)
        if owner is not None and id(owner) in task_tools:
            task_tools[id(owner)].extend(tools)
        else:
            unassigned_tools.extend(tools)

    manager = getattr(crew, "manager_agent", None)
    can_delegate = len(agents) > 1 or manager is not None
    hierarchical = str(getattr(crew, "process", "")).endswith("hierarchical")
    # In a hierarchical crew CrewAI runs every task through the manager and hands it the
    # task's tools (assigned to a worker or not): the manager is linked to all of them.
    manager_task_tools = every_task_tool if hierarchical else []
    used: set[str] = set()
    entries: dict[str, reg.AgentEntry] = {}
    tokens: dict[int, str] = {}
    all_tools: dict[str, str] = {}
    for agent in agents:
        name = _unique(_agent_base_name(agent, prefix), used)
        tools = [*_tools_of(agent), *task_tools[id(agent)], *unassigned_tools]
        if manager is not None and agent is manager:
            tools += manager_task_tools
        delegates = getattr(agent, "allow_delegation", False) or (hierarchical and agent is manager)
        extra = DELEGATION_TOOLS if (delegates and can_delegate) else ()
        agent_token = reg.ensure_agent_token(agent)
        entry = _enroll(guard, agent, name, tools, extra, prefix, agent_token)
        entries[agent_token] = entry
        tokens[id(agent)] = agent_token
        all_tools.update(entry.tools)

    manager_token = tokens.get(id(manager)) if manager is not None else None
    if hierarchical and manager is None:
        # CrewAI creates the manager at kickoff ("Crew Manager": the delegation tools, and the
        # tools of the task it runs); its identity is made now and given to that agent on its
        # first tool call.
        from crewai.utilities.i18n import get_i18n

        role = get_i18n(prompt_file=getattr(crew, "prompt_file", None)).retrieve(
            "hierarchical_manager_agent", "role"
        )
        future_manager = SimpleNamespace(role=role, tools=[])
        manager_token = uuid.uuid4().hex
        name = _unique(_agent_base_name(future_manager, prefix), used)
        entries[manager_token] = _enroll(
            guard, future_manager, name, manager_task_tools, DELEGATION_TOOLS, prefix, manager_token
        )
        all_tools.update(entries[manager_token].tools)
    reg.register_crew(
        reg.SecuredCrew(
            token=reg.ensure_crew_token(crew),
            guard=guard,
            name=str(getattr(crew, "name", None) or "crew"),
            agents=entries,
            tools=all_tools,
            order=tuple(tokens.get(id(a), "") for a in crew.agents),
            manager=manager_token,
            prefix=prefix,
        )
    )
    _hooks.install()
    if not any(cb is _hooks.ensure_hooks_before_kickoff for cb in crew.before_kickoff_callbacks):
        crew.before_kickoff_callbacks.append(_hooks.ensure_hooks_before_kickoff)
    return crew


def identity_of(obj: Any) -> str | None:
    """The AZTP ID given to a secured agent or tool, or ``None`` if it has none."""
    if isinstance(obj, BaseAgent):
        token = reg.agent_token(obj)
        standalone = reg.agent_by_token(token)
        if standalone is not None:
            return standalone.entry.aztp_id
        crew = reg.last_crew_of_agent(token)
        return crew.agents[token].aztp_id if crew is not None and token is not None else None
    original = getattr(obj, "_original_tool", None)  # CrewStructuredTool -> its BaseTool
    info = reg.tool_info(original if original is not None else obj)
    return info.aztp_id if info is not None else None


def guard_of(obj: Any) -> Any:
    """The guard enforcing a secured crew or agent (``None`` if it is not secured)."""
    if isinstance(obj, Crew):
        secured = reg.secured_crew_of(obj)
        return secured.guard if secured is not None else None
    if isinstance(obj, BaseAgent):
        token = reg.agent_token(obj)
        standalone = reg.agent_by_token(token)
        if standalone is not None:
            return standalone.guard
        crew = reg.last_crew_of_agent(token)
        return crew.guard if crew is not None else None
    return None


# --- decorators -------------------------------------------------------------------------


def _is_crewbase_method(obj: Any) -> bool:
    """A ``@CrewBase`` decorated method object (``@agent``, ``@crew`` ...), not yet bound."""
    return hasattr(obj, "_meth") and type(obj).__module__.startswith("crewai.project")


def supports(obj: Any) -> bool:
    """Whether this adapter can secure ``obj`` (a CrewAI Agent, Crew or ``@agent`` method)."""
    if not type(obj).__module__.startswith("crewai"):
        return isinstance(obj, BaseAgent | Crew)  # subclasses defined in user code
    return isinstance(obj, BaseAgent | Crew) or _is_crewbase_method(obj)


def _secure_result(
    result: Any, flow: str, options: dict[str, Any], method: str | None = None
) -> Any:
    if isinstance(result, Crew):
        return secure_crew(result, flow=flow, **options)
    if isinstance(result, BaseAgent):
        return _secure_agent(result, flow, method, options)
    raise TypeError(
        f"@secured expected the decorated function to return a crewai Agent or Crew, "
        f"got {type(result).__name__}"
    )


def _wrap_function(
    func: Callable[..., Any], flow: str, options: dict[str, Any], guard: Callable[[], Any]
) -> Callable[..., Any]:
    def _method(args: tuple[Any, ...]) -> str | None:
        # A method of a @CrewBase project (below @agent, so CrewAI has not memoized its
        # result yet): its name is the agent's YAML key. A plain function keeps role naming.
        is_project = bool(args) and getattr(args[0], "__crew_metadata__", None) is not None
        return getattr(func, "__name__", None) if is_project else None

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            result = await func(*args, **kwargs)
            return _secure_result(result, flow, {**options, "guard": guard()}, _method(args))

        return awrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        return _secure_result(result, flow, {**options, "guard": guard()}, _method(args))

    return wrapper


def _lazy_guard(flow: str, options: dict[str, Any]) -> Callable[[], Any]:
    """One guard per decorated definition, made on first use (a guard made at decoration
    time would open the default authority while modules are imported)."""
    lock = threading.Lock()
    made: list[Any] = []

    def get() -> Any:
        if not made:
            with lock:
                if not made:
                    made.append(_make_guard(flow, options))
        return made[0]

    return get


def secure(obj: Any, *, flow: str, **options: Any) -> Any:
    """Secure a CrewAI object in ``flow``: an Agent, a Crew, a ``@CrewBase`` ``@agent`` method,
    or a function returning an Agent or Crew (wrapped: the result is secured on each call,
    idempotently)."""
    _check_options(options)
    if isinstance(obj, Crew):
        return secure_crew(obj, flow=flow, **options)
    if isinstance(obj, BaseAgent):
        return secure_agent(obj, flow=flow, **options)
    if not callable(obj):
        raise TypeError(f"cannot secure {type(obj).__name__}: expected a crewai Agent or Crew")
    if not isinstance(flow, str) or not flow:
        raise ValueError("flow must be a non-empty flow name, e.g. @secured(flow='prod')")
    guard = _lazy_guard(flow, options)
    if _is_crewbase_method(obj):
        # @secured above @agent: keep the wrapper type (and its is_agent marker) and its
        # memoization; securing the memoized agent again is a no-op for the same guard.
        return type(obj)(_wrap_function(obj._meth, flow, options, guard))
    return _wrap_function(obj, flow, options, guard)


def secured(obj: Any = None, /, *, flow: str, **options: Any) -> Any:
    """Decorator: ``@secured(flow="prod")`` on a function or ``@CrewBase`` method returning a
    ``crewai.Agent`` (above or below ``@agent``) or a ``Crew``; ``secured(agent, flow=...)``
    secures an object directly."""
    _check_options(options)
    if obj is not None:
        return secure(obj, flow=flow, **options)

    def decorator(target: Any) -> Any:
        return secure(target, flow=flow, **options)

    return decorator
