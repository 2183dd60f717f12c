"""A scripted CrewAI LLM for tests and examples: deterministic, offline, no API key.

    from aztp_crewai.testing import ScriptedCrewLLM, tool_call

    llm = ScriptedCrewLLM([tool_call("web_search", query="aztp"), "done"])

A script is a list of steps, one per model turn of one agent run (one task):

* ``tool_call("web_search", query="aztp")``  -> the agent calls that tool;
* a list of tool calls                       -> several calls in one turn (native mode only);
* a ``str``                                  -> the final answer (raw ReAct text such as
                                                ``"Thought: ...\\nAction: ..."`` passes as is);
* an ``Exception`` instance                  -> raised from the model call;
* a callable ``(messages) -> step``          -> builds the step from the conversation.

The turn is the number of assistant messages already in the conversation, so the model keeps
no per-run state: one instance can serve many agents, tasks and concurrent crews, and every
run sees its script from the start. Past the end of the script it answers ``final``.

``native=False`` (default) answers in CrewAI's ReAct text format (``Action:`` /
``Action Input:`` / ``Final Answer:``); ``native=True`` declares function-calling support and
answers with OpenAI-style tool calls, which drives CrewAI's native tool-call path.

``aztp_agents.testing`` re-exports these names lazily (the core imports no framework).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crewai.llms.base_llm import BaseLLM
from pydantic import Field, PrivateAttr

__all__ = ["ScriptedCrewLLM", "ScriptedToolCall", "scripted_crew_llm", "tool_call"]


@dataclass(frozen=True)
class ScriptedToolCall:
    """One scripted tool call: the tool's name (as the agent sees it) and its arguments."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


def tool_call(name: str, /, **args: Any) -> ScriptedToolCall:
    """A tool call for a script step: ``tool_call("web_search", query="aztp")``."""
    return ScriptedToolCall(name=name, args=dict(args))


def _react_action(call: ScriptedToolCall) -> str:
    return (
        f"Thought: I should use the {call.name} tool.\n"
        f"Action: {call.name}\n"
        f"Action Input: {json.dumps(call.args, sort_keys=True)}"
    )


def _react_final(text: str) -> str:
    if "Final Answer:" in text or "\nAction:" in text or text.startswith("Action:"):
        return text  # already ReAct text
    return f"Thought: I now know the final answer.\nFinal Answer: {text}"


def _native_calls(calls: Sequence[ScriptedToolCall], turn: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{turn}_{i}",
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.args, sort_keys=True)},
        }
        for i, c in enumerate(calls)
    ]


def _count_assistant_turns(messages: Any) -> int:
    if isinstance(messages, str):
        return 0
    turns = 0
    for message in messages or ():
        role = message.get("role") if isinstance(message, dict) else getattr(message, "role", None)
        if role == "assistant":
            turns += 1
    return turns


def _render_step(step: Any, *, turn: int, native: bool, messages: Any) -> Any:
    if callable(step) and not isinstance(step, ScriptedToolCall | BaseException):
        step = step(messages)
    if isinstance(step, BaseException):
        raise step
    if isinstance(step, ScriptedToolCall):
        step = [step]
    if isinstance(step, str):
        return step if native else _react_final(step)
    if isinstance(step, Sequence) and step and all(isinstance(s, ScriptedToolCall) for s in step):
        if native:
            return _native_calls(step, turn)
        if len(step) != 1:
            raise ValueError(
                "ScriptedCrewLLM: the ReAct text format carries one tool call per turn; "
                "use native=True for several calls in one turn"
            )
        return _react_action(step[0])
    raise TypeError(
        f"ScriptedCrewLLM: unsupported script step {step!r}; use tool_call(...), a list of "
        "tool calls, a str (final answer), an exception or a callable returning one of those"
    )


class ScriptedCrewLLM(BaseLLM):
    """A CrewAI LLM that answers from a script: deterministic, offline, thread-safe.

    >>> llm = ScriptedCrewLLM(script=[tool_call("web_search", query="aztp"), "done"])
    >>> agent = Agent(role="Researcher", goal="...", backstory="...",
    ...               tools=[web_search], llm=llm)
    """

    llm_type: str = "aztp-scripted"
    model: str = "aztp-scripted"
    script: list[Any] = Field(default_factory=list)
    final: str = "done"
    native: bool = False

    _calls: int = PrivateAttr(default=0)
    _stats_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, script: Sequence[Any] | None = None, **data: Any) -> None:
        data.setdefault("model", "aztp-scripted")
        super().__init__(script=list(script or ()), **data)

    @property
    def calls(self) -> int:
        """How many times the model was called (all runs together)."""
        return self._calls

    def supports_function_calling(self) -> bool:
        return self.native

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 128_000

    def get_input_tokens_count(
        self, messages: Any, tools: Any = None, response_model: Any = None
    ) -> int:
        # The base class logs a warning on every call before estimating; stay quiet.
        if isinstance(messages, str):
            return (len(messages) + 3) // 4
        total = 0
        for m in messages or ():
            content = m.get("content") if isinstance(m, dict) else None
            total += len(content) if isinstance(content, str) else 0
        return (total + 3) // 4

    def respond(self, messages: Any) -> Any:
        """The answer for this conversation (what :meth:`call` returns)."""
        with self._stats_lock:
            self._calls += 1
        turn = _count_assistant_turns(messages)
        step = self.script[turn] if turn < len(self.script) else self.final
        return _render_step(step, turn=turn, native=self.native, messages=messages)

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> Any:
        return self.respond(messages)

    async def acall(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> Any:
        return self.respond(messages)


def scripted_crew_llm(
    *calls: ScriptedToolCall | tuple[str, dict[str, Any]] | str,
    final: str = "done",
    native: bool = False,
) -> ScriptedCrewLLM:
    """A :class:`ScriptedCrewLLM` that calls the given tools in order, then answers ``final``.

    ``scripted_crew_llm(("web_search", {"query": "aztp"}), ("summarize", {"text": "..."}),
    final="Report written")`` - each call is a :func:`tool_call`, a ``(name, args)`` pair or a
    bare tool name (no arguments).
    """
    steps: list[Any] = []
    for c in calls:
        if isinstance(c, ScriptedToolCall):
            steps.append(c)
        elif isinstance(c, str):
            steps.append(ScriptedToolCall(c))
        else:
            name, args = c
            steps.append(ScriptedToolCall(name, dict(args)))
    steps.append(final)
    return ScriptedCrewLLM(script=steps, final=final, native=native)
