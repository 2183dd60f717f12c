"""``AztpMiddleware``: the AZTP tool-call decision inside ``langchain.agents.create_agent``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import ToolCallRequest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.types import Command

from aztp_agents.audit import CallContext
from aztp_agents.decisions import Decision
from aztp_agents.guard import Guard

from ._common import (
    DEFAULT_AGENT_NAME,
    cannot_run_sync,
    check_options,
    denied_error,
    denied_text,
    failure_decision,
    make_guard,
    note_observed,
)
from ._context import enter_call, pop

__all__ = ["AztpMiddleware"]

ToolResult = ToolMessage | Command[Any]


class AztpMiddleware(AgentMiddleware):
    """Checks every tool call of a LangChain v1 agent against the AZTP authority.

    ::

        agent = create_agent(model, tools, middleware=[AztpMiddleware(flow="prod",
                                                                      agent_name="researcher")])

    On first use the agent gets an identity, so does every tool the agent knows (the tools of
    its ``ToolNode``); all are enrolled in ``flow`` and the agent is linked to each tool. Before
    each tool call (sync ``invoke`` and async ``ainvoke`` alike) the guard decides; a denied
    call never runs: the model receives a ``ToolMessage(status="error")`` naming the reason
    code, or ``ToolCallDenied`` is raised when ``on_deny="raise"``. Any error while deciding
    denies (fail closed). ``mode="observe"`` records decisions without blocking.

    Put it last in the ``middleware`` list so it sees the request that will actually run.
    """

    def __init__(
        self,
        flow: str,
        *,
        agent_name: str = DEFAULT_AGENT_NAME,
        client: Any = None,
        mode: str = "enforce",
        on_deny: str = "message",
        guard: Guard | None = None,
        context: dict[str, str] | None = None,
        **guard_options: Any,
    ) -> None:
        super().__init__()
        check_options(mode, on_deny)
        if not isinstance(agent_name, str) or not agent_name.strip():
            raise ValueError("agent_name must be a non-empty string")
        self.flow = flow
        self.agent_name = agent_name
        self.mode = mode
        self.on_deny = on_deny
        self.guard = make_guard(flow=flow, client=client, mode=mode, guard=guard, **guard_options)
        self._context = CallContext(
            {"framework": "langchain", "agent": agent_name, **(context or {})}
        )
        self._lock = threading.Lock()
        self._agent_id: str | None = None
        self._flow_id: str | None = None
        self._tool_ids: dict[str, str] = {}

    @property
    def name(self) -> str:  # unique per flow and agent, so several can share a list
        return f"AztpMiddleware[{self.flow}:{self.agent_name}]"

    # --- identities -----------------------------------------------------------------------

    @property
    def agent_id(self) -> str | None:
        """The agent's AZTP ID once issued (``None`` before first use)."""
        return self._agent_id

    @property
    def tool_ids(self) -> dict[str, str]:
        """Tool name -> AZTP ID of every tool enrolled so far."""
        return dict(self._tool_ids)

    def enroll(self, tools: Iterable[BaseTool | str] = ()) -> str:
        """Issue the identities now instead of at first use; returns the agent's AZTP ID."""
        self._enroll([t if isinstance(t, str) else t.name for t in tools])
        if self._agent_id is None:  # pragma: no cover - _enroll sets it or raises
            raise RuntimeError("enrollment returned no agent identity")
        return self._agent_id

    def _missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self._tool_ids]

    def _enroll(self, names: list[str]) -> None:
        # Called from the sync path, or from a worker thread by the async path.
        with self._lock:
            missing = list(dict.fromkeys(self._missing(names)))
            if self._agent_id is not None and not missing:
                return
            enrollment = self.guard.enroll(self.agent_name, missing)
            self._flow_id = self.guard.flow_id
            self._tool_ids.update(enrollment.tools)
            self._agent_id = enrollment.agent_id

    @staticmethod
    def _tool_name(request: ToolCallRequest) -> str:
        """The name of the tool about to run."""
        tool = request.tool
        return tool.name if tool is not None else request.tool_call["name"]

    def _to_enroll(self, request: ToolCallRequest, name: str) -> list[str] | None:
        """Tool names to issue identities for first (``None``: nothing, the fast path).

        Every tool the agent knows (its ``ToolNode``'s tools, from the tool runtime) and the
        tool about to run if a middleware put another one in the request."""
        if self._agent_id is not None and name in self._tool_ids:
            return None
        runtime = getattr(request, "runtime", None)
        known = [t.name for t in (getattr(runtime, "tools", None) or ()) if isinstance(t, BaseTool)]
        if request.tool is not None:
            known.append(name)
        return known

    # --- decisions ------------------------------------------------------------------------

    def _context_for(self, request: ToolCallRequest) -> CallContext:
        return CallContext(
            {**self._context, "tool_call_id": str(request.tool_call.get("id") or "")}
        )

    def _failure(self, name: str, exc: BaseException) -> Decision:
        return failure_decision(
            mode=self.mode,
            agent=self._agent_id,
            tool=self._tool_ids.get(name),
            tool_name=name,
            flow=self._flow_id,
            exc=exc,
        )

    def _decide(self, request: ToolCallRequest) -> Decision:
        name = request.tool_call.get("name", "?")
        try:
            name = self._tool_name(request)
            known = self._to_enroll(request, name)
            if known is not None:
                self._enroll(known)
            return self.guard.check(
                self._agent_id, self._tool_ids.get(name), name, self._context_for(request)
            )
        except Exception as exc:
            return self._failure(name, exc)

    def _decide_now(self, request: ToolCallRequest) -> Decision | None:
        """The decision without I/O when everything is known and in memory, else ``None``
        (then :meth:`_decide` / :meth:`_adecide` take it, and fail closed). The usual call;
        kept to few Python calls, since each costs more than its instructions here."""
        try:
            tool = request.tool
            tool_call = request.tool_call
            name = tool.name if tool is not None else tool_call["name"]
            tool_id = self._tool_ids.get(name)
            if tool_id is None or self._agent_id is None:  # identities to issue first
                return None
            flat = (*self._context.flat, "tool_call_id", str(tool_call.get("id") or ""))
            return self.guard.check_now(self._agent_id, tool_id, name, flat_context=flat)
        except Exception:
            return None

    async def _adecide(self, request: ToolCallRequest) -> Decision:
        name = request.tool_call.get("name", "?")
        try:
            name = self._tool_name(request)
            known = self._to_enroll(request, name)
            if known is not None:
                # Issuing identities writes to the store: keep it off the event loop.
                await asyncio.to_thread(self._enroll, known)
            return await self.guard.acheck(
                self._agent_id, self._tool_ids.get(name), name, self._context_for(request)
            )
        except Exception as exc:
            return self._failure(name, exc)

    def _denied(self, request: ToolCallRequest, decision: Decision) -> ToolMessage:
        if self.on_deny == "raise":
            raise denied_error(decision)
        return ToolMessage(
            content=denied_text(decision),
            name=request.tool_call.get("name"),
            tool_call_id=request.tool_call.get("id") or "",
            status="error",
            artifact={"aztp_decision": decision.to_dict()},
        )

    # --- hooks ----------------------------------------------------------------------------

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolResult],
    ) -> ToolResult:
        unsupported = cannot_run_sync(request.tool)
        if unsupported is not None:  # it cannot run on this path: nothing to decide
            raise unsupported
        decision = self._decide_now(request) or self._decide(request)
        if not decision.allowed:
            if decision.enforced:
                return self._denied(request, decision)
            note_observed(decision)
        tokens = enter_call(
            self._agent_id,
            self.agent_name,
            self._flow_id,
            decision.tool,
            request.tool_call.get("id"),
            request.tool,
        )
        try:
            return handler(request)
        finally:
            pop(tokens)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        decision = self._decide_now(request)  # no I/O: the usual case, without a coroutine
        if decision is None:
            decision = await self._adecide(request)
        if not decision.allowed:
            if decision.enforced:
                return self._denied(request, decision)
            note_observed(decision)
        tokens = enter_call(
            self._agent_id,
            self.agent_name,
            self._flow_id,
            decision.tool,
            request.tool_call.get("id"),
            request.tool,
        )
        try:
            return await handler(request)
        finally:
            pop(tokens)
