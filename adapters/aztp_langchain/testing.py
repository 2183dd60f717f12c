"""A deterministic, offline chat model that emits scripted tool calls (for tests and examples).

It needs the ``langchain`` extra; ``aztp_agents.testing_langchain`` re-exports these names
lazily (the core imports no framework).

:class:`ScriptedChatModel` supports ``bind_tools`` (so ``langchain.agents.create_agent`` and
LangGraph's prebuilt agents accept it) and answers turn by turn from a script. The turn is the
number of ``AIMessage`` already in the conversation, so the model holds no mutable state: one
instance can serve many concurrent runs and every run sees the same script.

    model = ScriptedChatModel(script=[
        [call("add", a=1, b=2)],            # turn 0: one tool call
        [call("add", a=3, b=4), call("mul", a=2, b=5)],   # turn 1: two tool calls
        "done",                              # turn 2: final answer, the agent stops
    ])

A step may also be an ``AIMessage`` or a callable ``(messages) -> step`` (to build tool calls
from what the run has seen so far). Past the end of the script the model answers ``final``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = ["ScriptedChatModel", "Step", "call"]

#: One model turn: a final answer (str), tool calls (list of ToolCall), a ready AIMessage,
#: or a callable that receives the conversation and returns one of those.
Step = str | Sequence[ToolCall] | AIMessage | Callable[[list[BaseMessage]], Any]


def call(name: str, /, **args: Any) -> ToolCall:
    """A tool call for a script step (its ``id`` is filled in per turn)."""
    return ToolCall(name=name, args=args, id=None, type="tool_call")


class ScriptedChatModel(BaseChatModel):
    """Fake chat model: deterministic, no network, supports ``bind_tools``."""

    script: list[Any]
    """Steps, one per model turn (see module docstring)."""
    final: str = "done"
    """Answer given once the script is exhausted."""

    @property
    def _llm_type(self) -> str:
        return "aztp-scripted-chat-model"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        # Convert like a real provider integration would, so broken schemas fail here too.
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _respond(self, messages: list[BaseMessage]) -> AIMessage:
        turn = sum(1 for m in messages if isinstance(m, AIMessage))
        step: Any = self.script[turn] if turn < len(self.script) else self.final
        if callable(step) and not isinstance(step, AIMessage):
            step = step(messages)
        if isinstance(step, AIMessage):
            return step
        if isinstance(step, str):
            return AIMessage(content=step)
        calls = [
            ToolCall(
                name=c["name"],
                args=dict(c.get("args") or {}),
                id=c.get("id") or f"call_{turn}_{i}",
                type="tool_call",
            )
            for i, c in enumerate(step)
        ]
        return AIMessage(content="", tool_calls=calls)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._respond(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._respond(messages))])
