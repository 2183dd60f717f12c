"""Operation plans: each client method's logic written once, run blocking or on a loop.

A plan is a generator that yields the backend operations it needs (:class:`Call`) and
returns the method's typed result; it does no I/O itself. :func:`run_sync` runs it with the
backend's blocking ``call`` (for :class:`~aztp_agents.client.SyncAztp`), :func:`run_async`
with its ``acall`` (for :class:`~aztp_agents.Aztp`). Argument checks happen when the plan is
first advanced, before any operation is sent.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from ._backend import Backend

__all__ = ["Call", "Plan", "run_async", "run_sync"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One backend operation a plan needs: ``backend.call(op, **kwargs)``."""

    op: str
    kwargs: dict[str, Any]


#: A plan: yields :class:`Call` steps, is sent each step's answer, returns the result.
Plan = Generator[Call, Any, T]


def run_sync(backend: Backend, plan: Plan[T]) -> T:
    """Run ``plan`` with blocking backend calls."""
    try:
        step = next(plan)
        while True:
            step = plan.send(backend.call(step.op, **step.kwargs))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(backend: Backend, plan: Plan[T]) -> T:
    """Run ``plan`` with the backend's coroutine calls (never blocking the loop)."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await backend.acall(step.op, **step.kwargs))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
