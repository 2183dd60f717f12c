"""Secured ``BaseTool``s: the same enforcement for every runner (ToolNode, prebuilt agents,
direct ``tool.invoke``), not only for ``create_agent`` with :class:`AztpMiddleware`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from pydantic import ConfigDict, PrivateAttr

from aztp_agents.decisions import Decision
from aztp_agents.guard import Guard

from ._common import (
    cannot_run_sync,
    check_options,
    denied_error,
    denied_text,
    failure_decision,
    make_guard,
    note_observed,
)
from ._context import Caller, current_caller, pop, push

__all__ = ["SecuredTool", "secure_tool", "secure_tools"]


class _Binding:
    """What the tools of one ``secure_tools`` call share: guard, agent, identities."""

    def __init__(
        self,
        guard: Guard,
        *,
        agent: str | None,
        mode: str,
        on_deny: str,
        context: dict[str, str] | None,
    ) -> None:
        self.guard = guard
        self.agent_name = agent
        self.mode = mode
        self.on_deny = on_deny
        self.context = {"framework": "langchain", **({"agent": agent} if agent else {})}
        self.context.update(context or {})
        self.agent_id: str | None = None
        self.flow_id: str | None = None
        self.tool_ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def enroll(self, names: list[str]) -> None:
        """Issue identities, enroll them in the flow, link agent -> tools (at construction)."""
        with self._lock:
            if self.agent_name is not None:
                enrollment = self.guard.enroll(self.agent_name, names)
                self.agent_id = enrollment.agent_id
                self.tool_ids.update(enrollment.tools)
            else:  # tools only: the agent comes from the context (middleware or acting_as)
                for name in names:
                    self.tool_ids[name] = self.guard.ensure_identity(name)
            self.flow_id = self.guard.flow_id

    # -- one decision --

    def _who(
        self, tool: BaseTool, tool_name: str, tool_call_id: str | None
    ) -> tuple[Caller | None, bool]:
        """The caller in the context, and whether its decision already covers this call."""
        caller = current_caller()
        covered = caller is not None and caller.covers(
            self.flow_id, self.tool_ids.get(tool_name), tool_call_id, tool
        )
        return caller, covered

    def _decider(self, caller: Caller | None) -> tuple[str | None, str | None]:
        """``(agent ID, agent name)`` that decides the call (the rule is in ``_context``): an
        explicit ``acting_as`` caller, else the agent the tools were secured for, else the
        caller in the context (tools with no agent of their own)."""
        if caller is not None and (caller.explicit or self.agent_id is None):
            return caller.agent_id, caller.agent_name
        return self.agent_id, self.agent_name

    def _ctx(self, agent_name: str | None, tool_call_id: str | None) -> dict[str, str]:
        ctx = dict(self.context)
        if agent_name:
            ctx["agent"] = agent_name
        if tool_call_id:
            ctx["tool_call_id"] = tool_call_id
        return ctx

    def _failure(self, agent: str | None, tool_name: str, exc: BaseException) -> Decision:
        return failure_decision(
            mode=self.mode,
            agent=agent,
            tool=self.tool_ids.get(tool_name),
            tool_name=tool_name,
            flow=self.flow_id,
            exc=exc,
        )

    def decide(
        self, tool: BaseTool, tool_name: str, tool_call_id: str | None
    ) -> tuple[Decision | None, Caller]:
        agent: str | None = None
        try:
            caller, covered = self._who(tool, tool_name, tool_call_id)
            if covered and caller is not None:
                return None, _consumed(caller)
            agent, agent_name = self._decider(caller)
            decision = self.guard.check(
                agent, self.tool_ids.get(tool_name), tool_name, self._ctx(agent_name, tool_call_id)
            )
        except Exception as exc:
            decision = self._failure(agent, tool_name, exc)
            agent_name = None
        return decision, self._running(decision, agent_name, tool_call_id)

    async def adecide(
        self, tool: BaseTool, tool_name: str, tool_call_id: str | None
    ) -> tuple[Decision | None, Caller]:
        agent: str | None = None
        try:
            caller, covered = self._who(tool, tool_name, tool_call_id)
            if covered and caller is not None:
                return None, _consumed(caller)
            agent, agent_name = self._decider(caller)
            decision = await self.guard.acheck(
                agent, self.tool_ids.get(tool_name), tool_name, self._ctx(agent_name, tool_call_id)
            )
        except Exception as exc:
            decision = self._failure(agent, tool_name, exc)
            agent_name = None
        return decision, self._running(decision, agent_name, tool_call_id)

    def _running(
        self, decision: Decision, agent_name: str | None, tool_call_id: str | None
    ) -> Caller:
        """The caller bound while the tool body runs: the agent that was decided, as an
        implicit caller (it overrides no tool's own agent in the runs nested below)."""
        return Caller(
            agent_id=decision.agent,
            agent_name=agent_name,
            flow_id=self.flow_id,
            tool_id=decision.tool,
            tool_call_id=tool_call_id,
        )

    def denied(self, tool: BaseTool, decision: Decision, tool_call_id: str | None) -> Any:
        # Without a tool-call id there is no message to give back: the caller invoked the tool
        # directly and a returned string would read as a result. Raise.
        if self.on_deny == "raise" or not tool_call_id:
            raise denied_error(decision)
        return ToolMessage(
            content=denied_text(decision),
            name=tool.name,
            tool_call_id=tool_call_id,
            status="error",
            artifact={"aztp_decision": decision.to_dict()},
        )


def _consumed(caller: Caller) -> Caller:
    """A covering caller once its one call has started: it covers nothing nested below."""
    return caller._replace(tool_call_id=None, tool=None)


class SecuredTool(BaseTool):
    """A ``BaseTool`` that asks the AZTP guard before every call of the tool it wraps.

    Everything else is the wrapped tool's: name, description, argument schema (injected
    arguments such as ``ToolRuntime`` / ``InjectedToolArg`` / ``InjectedState`` stay hidden
    from the model and are still injected), ``return_direct``, ``response_format``, callbacks,
    error handling. An allowed call runs the wrapped tool exactly as if it were called itself.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseTool
    """The wrapped tool."""

    _aztp: _Binding = PrivateAttr()

    # -- delegate the schema side, so the model and the ToolNode see the wrapped tool --

    @property
    def tool_call_schema(self) -> Any:  # type: ignore[override]
        return self.inner.tool_call_schema

    @property
    def args(self) -> dict[str, Any]:  # type: ignore[override]
        return self.inner.args

    @property
    def is_single_input(self) -> bool:  # type: ignore[override]
        return self.inner.is_single_input

    @property
    def func(self) -> Callable[..., Any] | None:
        """The wrapped tool's function (LangGraph reads it to find injected arguments)."""
        return getattr(self.inner, "func", None)

    @property
    def coroutine(self) -> Callable[..., Any] | None:
        return getattr(self.inner, "coroutine", None)

    def get_input_schema(self, config: Any = None) -> Any:
        return self.inner.get_input_schema(config)

    def get_output_schema(self, config: Any = None) -> Any:
        return self.inner.get_output_schema(config)

    # -- identity --

    @property
    def aztp_id(self) -> str | None:
        """This tool's AZTP ID."""
        return self._aztp.tool_ids.get(self.name)

    @property
    def agent_id(self) -> str | None:
        """The AZTP ID of the agent the tool was secured for (``None`` if none)."""
        return self._aztp.agent_id

    @property
    def guard(self) -> Guard:
        """The enforcement point deciding this tool's calls."""
        return self._aztp.guard

    # -- calls: ``invoke``/``ainvoke`` end here too, through BaseTool.run/arun --

    def run(self, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        unsupported = cannot_run_sync(self.inner)
        if unsupported is not None:  # it cannot run on this path: nothing to decide
            raise unsupported
        tool_call_id = kwargs.get("tool_call_id")
        decision, caller = self._aztp.decide(self, self.name, tool_call_id)
        if decision is not None:
            if decision.blocks:
                return self._aztp.denied(self, decision, tool_call_id)
            note_observed(decision)
        tokens = push(caller)
        try:
            return self.inner.run(tool_input, *args, **kwargs)
        finally:
            pop(tokens)

    async def arun(self, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        tool_call_id = kwargs.get("tool_call_id")
        decision, caller = await self._aztp.adecide(self, self.name, tool_call_id)
        if decision is not None:
            if decision.blocks:
                return self._aztp.denied(self, decision, tool_call_id)
            note_observed(decision)
        tokens = push(caller)
        try:
            return await self.inner.arun(tool_input, *args, **kwargs)
        finally:
            pop(tokens)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        # Only reached by code that calls ``_run`` directly; still decided first.
        unsupported = cannot_run_sync(self.inner)
        if unsupported is not None:
            raise unsupported
        decision, caller = self._aztp.decide(self, self.name, None)
        if decision is not None and decision.blocks:
            raise denied_error(decision)
        tokens = push(caller)
        try:
            return self.inner._run(*args, **kwargs)
        finally:
            pop(tokens)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        decision, caller = await self._aztp.adecide(self, self.name, None)
        if decision is not None and decision.blocks:
            raise denied_error(decision)
        tokens = push(caller)
        try:
            return await self.inner._arun(*args, **kwargs)
        finally:
            pop(tokens)


def _as_base_tool(obj: Any) -> BaseTool:
    if isinstance(obj, SecuredTool):
        return obj.inner  # re-securing re-binds: one decision per call, never two bindings
    if isinstance(obj, BaseTool):
        return obj
    if isinstance(obj, dict):
        raise TypeError(
            f"{obj.get('name') or obj.get('type') or obj!r} is a provider built-in tool: the model "
            "provider runs it, so no client-side guard can check its calls. Remove it from the "
            "list or run it unsecured deliberately."
        )
    if callable(obj):
        return as_tool(obj)
    raise TypeError(f"cannot secure {type(obj).__name__}: expected a BaseTool or a function")


def secure_tools(
    tools: Iterable[Any],
    *,
    flow: str,
    agent: str | None = None,
    client: Any = None,
    mode: str = "enforce",
    on_deny: str = "message",
    guard: Guard | None = None,
    context: dict[str, str] | None = None,
    **guard_options: Any,
) -> list[SecuredTool]:
    """Wrap tools so that every call is decided by the AZTP guard first.

    With ``agent="researcher"`` the agent and each tool get identities now, are enrolled in
    ``flow`` and the agent is linked to every tool; calls are decided for that agent, also when
    another agent's tool call runs them (a supervisor's tool that runs this agent), unless
    :func:`acting_as` names the caller explicitly or the agent's :class:`AztpMiddleware`
    already decided the call. Without ``agent`` only the tools get identities and every call
    decides as the caller in the context (none: ``agent_unknown``).

    A denied call does not run. Called as a tool call (from a ``ToolNode``, an agent, or
    ``tool.invoke(tool_call)``) it answers ``ToolMessage(status="error")`` naming the reason
    code; called with plain arguments, or with ``on_deny="raise"``, it raises ``ToolCallDenied``.
    """
    check_options(mode, on_deny)
    inners = [_as_base_tool(t) for t in tools]
    names = [t.name for t in inners]
    if len(set(names)) != len(names):
        raise ValueError(f"tool names must be unique, got {names}")
    binding = _Binding(
        make_guard(flow=flow, client=client, mode=mode, guard=guard, **guard_options),
        agent=agent,
        mode=mode,
        on_deny=on_deny,
        context=context,
    )
    binding.enroll(names)
    secured = []
    for inner in inners:
        wrapper = SecuredTool(
            inner=inner,
            name=inner.name,
            description=inner.description,
            args_schema=inner.args_schema,
            return_direct=inner.return_direct,
            response_format=inner.response_format,
            extras=inner.extras,
            tags=inner.tags,
            metadata={**(inner.metadata or {}), "aztp_id": binding.tool_ids.get(inner.name)},
        )
        wrapper._aztp = binding
        secured.append(wrapper)
    return secured


def secure_tool(tool: Any, **options: Any) -> SecuredTool:
    """One tool; same options as :func:`secure_tools`."""
    return secure_tools([tool], **options)[0]


async def asecure_tools(tools: Iterable[Any], **options: Any) -> list[SecuredTool]:
    """:func:`secure_tools` from async code: identities are issued off the event loop."""
    return await asyncio.to_thread(secure_tools, list(tools), **options)
