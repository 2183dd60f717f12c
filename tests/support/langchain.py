"""Shared helpers of the LangChain adapter tests (no tests here).

Tool bodies count their executions, so "blocked" always means "the tool body did not run".
Every tool has a sync and an async body, so the same tool serves ``invoke`` and ``ainvoke``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from aztp_agents import Aztp

MODES = ("sync", "async")
USER = {"messages": [{"role": "user", "content": "go"}]}


def run(coro: Awaitable[Any]) -> Any:
    """Run a client coroutine from anywhere (a test, or a tool body inside a running graph)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    if "error" in box:
        raise box["error"]
    return box.get("value")


class QueryArgs(BaseModel):
    query: str = Field(description="What to look for.")
    limit: int = Field(default=3, description="How many results.")


class Counter:
    """Execution counts per tool name."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def counting_tool(
    name: str,
    counter: Counter,
    *,
    on_call: Callable[[], Awaitable[Any]] | None = None,
    return_direct: bool = False,
) -> BaseTool:
    """A structured tool (``query``, ``limit``) with sync and async bodies that count runs.

    ``on_call`` is a coroutine function run inside the body before it answers (a revocation
    between two tool calls of one run, for instance)."""

    def body(query: str, limit: int = 3) -> str:
        counter.hit(name)
        if on_call is not None:
            run(on_call())
        return f"{name}: {limit} results for {query}"

    async def abody(query: str, limit: int = 3) -> str:
        counter.hit(name)
        if on_call is not None:
            await on_call()
        return f"{name}: {limit} results for {query}"

    return StructuredTool.from_function(
        func=body,
        coroutine=abody,
        name=name,
        description=f"The {name} tool.",
        args_schema=QueryArgs,
        return_direct=return_direct,
    )


def invoke(graph: Any, mode: str, inputs: Any = None, **kwargs: Any) -> dict[str, Any]:
    inputs = USER if inputs is None else inputs
    if mode == "sync":
        return graph.invoke(inputs, **kwargs)
    return asyncio.run(graph.ainvoke(inputs, **kwargs))


def tool_messages(result: dict[str, Any], name: str | None = None) -> list[ToolMessage]:
    return [
        m
        for m in result["messages"]
        if isinstance(m, ToolMessage) and (name is None or m.name == name)
    ]


def decisions(client: Aztp) -> list[dict[str, Any]]:
    """Every tool-call decision in the audit log, oldest first."""
    return run(client.audit(action="decision.tool_call"))


def reasons(client: Aztp) -> list[str]:
    return [e["data"]["reason"] for e in decisions(client)]


class BrokenBackend:
    """A backend in front of a real one that fails on demand: every operation raises."""

    is_remote = False

    def __init__(self, real: Any, *, broken: bool = True) -> None:
        self.real = real
        self.broken = broken
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.broken:
            raise ConnectionError("authority unreachable (injected)")

    def call(self, op: str, /, **kwargs: Any) -> Any:
        self._maybe_fail()
        return self.real.call(op, **kwargs)

    async def acall(self, op: str, /, **kwargs: Any) -> Any:
        self._maybe_fail()
        return await self.real.acall(op, **kwargs)

    def decide(self, **kwargs: Any) -> Any:
        self._maybe_fail()
        return self.real.decide(**kwargs)

    async def adecide(self, **kwargs: Any) -> Any:
        self._maybe_fail()
        return await self.real.adecide(**kwargs)

    def close(self) -> None:
        self.real.close()


def broken_client(tmp_path: Any, *, broken: bool = True) -> tuple[Aztp, BrokenBackend]:
    """A client whose backend (the boundary to the authority) fails while ``broken``."""
    real = Aztp(home=tmp_path)
    backend = BrokenBackend(real.backend, broken=broken)
    return Aztp(backend=backend), backend


async def deny_policy(client: Aztp, aztp_id: str, tool_name: str) -> None:
    policy = await client.create_policy(
        f"deny-{tool_name}",
        {
            "Statement": [
                {"Effect": "Allow", "Action": "tool:*"},
                {"Effect": "Deny", "Action": f"tool:{tool_name}"},
            ]
        },
    )
    await client.attach_policy(aztp_id, policy["code"])
