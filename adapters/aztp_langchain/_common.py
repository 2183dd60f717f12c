"""Pieces shared by the middleware and the secured tools."""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, Tool

from aztp_agents.decisions import Decision, denial
from aztp_agents.errors import ToolCallDenied
from aztp_agents.guard import Guard

logger = logging.getLogger("aztp_langchain")

MODES = ("enforce", "observe")
ON_DENY = ("message", "raise")
DEFAULT_AGENT_NAME = "langchain-agent"


def check_options(mode: str, on_deny: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if on_deny not in ON_DENY:
        raise ValueError(f"on_deny must be one of {ON_DENY}, got {on_deny!r}")


def make_guard(
    *,
    flow: str,
    client: Any = None,
    mode: str = "enforce",
    guard: Guard | None = None,
    **guard_options: Any,
) -> Guard:
    """The caller's Guard, or a new one for ``flow`` (client ``None`` -> shared ``Aztp()``)."""
    if guard is not None:
        return guard
    if not isinstance(flow, str) or not flow:
        raise ValueError("flow must be a non-empty flow name, e.g. flow='prod'")
    return Guard(flow=flow, client=client, mode=mode, **guard_options)


def failure_decision(
    *,
    mode: str,
    agent: str | None,
    tool: str | None,
    tool_name: str | None,
    flow: str | None,
    exc: BaseException,
) -> Decision:
    """Fail closed: an error on the decision path is an ``authority_unavailable`` denial."""
    # ERROR: the authority could not be consulted (the guard logs such denials the same way).
    logger.error(
        "AZTP decision for tool %r failed (%s); the call is denied (fail closed)",
        tool_name,
        type(exc).__name__,
    )
    return denial(
        agent=agent,
        tool=tool,
        tool_name=tool_name,
        flow=flow,
        enforced=mode == "enforce",
        detail=type(exc).__name__,
    )


def note_observed(decision: Decision) -> None:
    """Observe mode: the call goes on. The guard already logged the would-be denial at
    WARNING (or ERROR when the authority failed); this only notes that the call ran."""
    if not decision.allowed and not decision.blocks:
        logger.debug("observe mode, not blocking: %s", decision.describe())


def denied_text(decision: Decision) -> str:
    """What the model reads when a call is denied: the reason code first, then the details."""
    return (
        f"Tool call denied by AZTP [{decision.reason.value}]: {decision.explanation} "
        f"(tool={decision.tool_name or decision.tool}, agent={decision.agent}, "
        f"flow={decision.flow})"
    )


def denied_error(decision: Decision) -> ToolCallDenied:
    return ToolCallDenied(denied_text(decision), decision=decision)


#: LangChain's tools made from functions: ``func`` (sync body) and ``coroutine`` (async body).
_FUNCTION_TOOLS = (StructuredTool, Tool)


def cannot_run_sync(tool: Any) -> NotImplementedError | None:
    """The error a sync call of ``tool`` ends in before its body could run, when the tool has
    only an async body (a ``StructuredTool`` / ``Tool`` made with ``coroutine=`` and no
    ``func``, as langchain-mcp-adapters makes them); else ``None``.

    Such a call is not decided: an ``allowed`` record for a call that cannot run would be
    false. The caller raises this error (LangChain's own) instead; ``ainvoke`` decides and runs.
    """
    if not isinstance(tool, _FUNCTION_TOOLS):
        # A SecuredTool: what it wraps is what runs. (Its pydantic field, read from __dict__:
        # a missing attribute on a pydantic model costs an exception, on every sync call.)
        inner = tool.__dict__.get("inner") if isinstance(tool, BaseTool) else None
        if not isinstance(inner, _FUNCTION_TOOLS):
            return None
        tool = inner
    if tool.func is None and tool.coroutine is not None:
        return NotImplementedError(
            f"{type(tool).__name__} {tool.name!r} does not support sync invocation (it has "
            "only an async body): call it with ainvoke. Not decided by AZTP."
        )
    return None
