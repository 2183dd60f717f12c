"""Who is secured, by which guard: the adapter's in-process registry.

CrewAI objects are pydantic models that CrewAI copies (``Crew.copy()`` for
``kickoff_for_each``, ``train``, ``test``) and partly rewrites at run time (an agent's
fingerprint is replaced on every ReAct tool call). So:

* a **crew** carries an opaque token in its fingerprint metadata, which ``Crew.copy()`` keeps;
* an **agent** is known by object identity (a weak map); a copy of a secured agent is adopted
  on its first tool call when it provably is one (same position and role in a copy of the
  secured crew, or same role and the very same tool objects as a secured agent);
* a **tool** object is known by identity too (for ``identity_of`` and for denying agents
  without identity that call a secured tool); at call time tools are matched by name.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from aztp_agents.ids import sanitize_name

CREW_KEY = "aztp_crew"

#: The longest AZTP name (``sanitize_name`` truncates past it).
_MAX_NAME = 64


def tool_aztp_name(tool_name: str, prefix: str | None) -> str:
    """The AZTP name of a tool, from the name CrewAI's hooks see (already sanitized by CrewAI).

    A name too long for an AZTP name is shortened with a digest of the whole name, so two long
    names that share a beginning (the tools of one MCP server, named after its command line)
    never collapse into one identity."""
    raw = f"tool/{tool_name}".lower()
    raw = f"{prefix}/{raw}" if prefix else raw
    if len(raw) <= _MAX_NAME:
        return sanitize_name(raw)
    digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
    return sanitize_name(f"{raw[: _MAX_NAME - len(digest) - 1]}-{digest}")


@dataclass(frozen=True)
class AgentEntry:
    """One agent's identity and the identities of the tools it may be handed."""

    aztp_id: str
    name: str
    role: str
    #: CrewAI tool name (as sanitized by CrewAI, the name hooks see) -> tool AZTP ID
    tools: dict[str, str] = field(default_factory=dict)
    #: id() of the tool objects it was given (to recognise its copies)
    tool_objects: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SecuredCrew:
    token: str
    guard: Any
    name: str
    #: agent token -> entry
    agents: dict[str, AgentEntry]
    #: every tool enrolled for this crew: CrewAI tool name -> AZTP ID
    tools: dict[str, str]
    #: agent tokens in ``crew.agents`` order, and the manager's (to adopt copies)
    order: tuple[str, ...] = ()
    manager: str | None = None
    #: the ``prefix`` option it was secured with (names of tools enrolled later use it too)
    prefix: str | None = None


@dataclass(frozen=True)
class SecuredAgent:
    token: str
    guard: Any
    entry: AgentEntry
    prefix: str | None = None


@dataclass(frozen=True)
class ToolInfo:
    aztp_id: str
    guard: Any
    owners: tuple[str, ...]  # agent tokens


_lock = threading.RLock()
#: Bumped by every change below, so callers can cache what they derived from the registry.
generation = 0
_crews: dict[str, SecuredCrew] = {}
_agents: dict[str, SecuredAgent] = {}
#: agent token -> token of the crew that enrolled it last
_agent_last_crew: dict[str, str] = {}
#: id(agent) -> (weak reference, agent token)
_agent_tokens: dict[int, tuple[weakref.ref[Any], str]] = {}
#: id(tool object) -> (weak reference, info)
_tools: dict[int, tuple[weakref.ref[Any], ToolInfo]] = {}


def _changed() -> None:
    """Call with ``_lock`` held after any change."""
    global generation
    generation += 1


def _weak(obj: Any, table: dict[int, Any]) -> weakref.ref[Any]:
    key = id(obj)

    def forget(ref: weakref.ref[Any], key: int = key) -> None:
        with _lock:
            item = table.get(key)
            if item is not None and item[0] is ref:
                del table[key]
                _changed()

    return weakref.ref(obj, forget)


# --- crews ----------------------------------------------------------------------------------


def crew_token(crew: Any) -> str | None:
    try:
        meta = crew.security_config.fingerprint.metadata
    except AttributeError:
        return None
    token = meta.get(CREW_KEY) if isinstance(meta, dict) else None
    return token if isinstance(token, str) else None


def ensure_crew_token(crew: Any) -> str:
    token = crew_token(crew)
    if token is None:
        token = uuid.uuid4().hex
        crew.security_config.fingerprint.metadata[CREW_KEY] = token
    return token


def register_crew(crew: SecuredCrew) -> None:
    with _lock:
        _crews[crew.token] = crew
        for agent_token in crew.agents:
            _agent_last_crew[agent_token] = crew.token
        _changed()


def crew_by_token(token: str | None) -> SecuredCrew | None:
    return _crews.get(token) if token is not None else None


def secured_crew_of(crew: Any) -> SecuredCrew | None:
    return crew_by_token(crew_token(crew)) if crew is not None else None


# --- agents ---------------------------------------------------------------------------------


def agent_token(agent: Any) -> str | None:
    item = _agent_tokens.get(id(agent))
    if item is None or item[0]() is not agent:
        return None
    return item[1]


def set_agent_token(agent: Any, token: str) -> None:
    with _lock:
        _agent_tokens[id(agent)] = (_weak(agent, _agent_tokens), token)
        _changed()


def ensure_agent_token(agent: Any) -> str:
    with _lock:
        token = agent_token(agent)
        if token is None:
            token = uuid.uuid4().hex
            set_agent_token(agent, token)
        return token


def register_agent(agent: SecuredAgent) -> None:
    with _lock:
        _agents[agent.token] = agent
        _changed()


def agent_by_token(token: str | None) -> SecuredAgent | None:
    return _agents.get(token) if token is not None else None


def last_crew_of_agent(token: str | None) -> SecuredCrew | None:
    if token is None:
        return None
    crew_tok = _agent_last_crew.get(token)
    return _crews.get(crew_tok) if crew_tok is not None else None


def _roles(agent: Any) -> tuple[Any, ...]:
    return (getattr(agent, "role", None), getattr(agent, "_original_role", None))


def adopt_in_crew(secured: SecuredCrew, crew: Any, agent: Any) -> AgentEntry | None:
    """An agent of a copy of a secured crew: the one at the same position with the same role."""
    token: str | None = None
    if secured.manager is not None and agent is getattr(crew, "manager_agent", None):
        token = secured.manager
    else:
        for index, candidate in enumerate(getattr(crew, "agents", None) or ()):
            if candidate is agent:
                token = secured.order[index] if index < len(secured.order) else None
                break
    entry = secured.agents.get(token) if token is not None else None
    if entry is None or entry.role not in _roles(agent):
        return None
    set_agent_token(agent, token)  # type: ignore[arg-type]
    return entry


def adopt_standalone(agent: Any) -> str | None:
    """A copy of a secured agent: same role and exactly the same tool objects."""
    tools = [t for t in (getattr(agent, "tools", None) or ()) if t is not None]
    if not tools:
        return None
    info = tool_info(tools[0])
    if info is None:
        return None
    tool_ids = frozenset(id(t) for t in tools)
    for token in info.owners:
        secured = _agents.get(token)
        if (
            secured is not None
            and secured.entry.tool_objects == tool_ids
            and secured.entry.role in _roles(agent)
        ):
            set_agent_token(agent, token)
            return token
    return None


# --- tools ----------------------------------------------------------------------------------


def remember_tool(tool: Any, aztp_id: str, guard: Any, owner: str) -> None:
    with _lock:
        item = _tools.get(id(tool))
        owners: tuple[str, ...] = ()
        if item is not None and item[0]() is tool:
            owners = tuple(o for o in item[1].owners if o != owner)
        try:
            ref = _weak(tool, _tools)
        except TypeError:  # not weak-referenceable: no identity_of for it
            return
        _tools[id(tool)] = (ref, ToolInfo(aztp_id, guard, (*owners, owner)))
        _changed()


def grant_appeared(
    entry: AgentEntry, crew: SecuredCrew | None, tool_name: str, tool_id: str
) -> None:
    """A tool that appeared at kickoff from the agent's declarations joins its entry (and the
    crew's tools): later calls route to it like to any tool the agent was secured with."""
    with _lock:
        entry.tools[tool_name] = tool_id
        if crew is not None:
            crew.tools.setdefault(tool_name, tool_id)
        _changed()


def tool_info(tool: Any) -> ToolInfo | None:
    item = _tools.get(id(tool))
    if item is None or item[0]() is not tool:
        return None
    return item[1]
