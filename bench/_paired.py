"""Shared by the adapter benchmarks: paired ratios with their uncertainty, and CPU accounting
of the code AZTP adds to a call.

Two ways of measuring the same thing, printed side by side:

* **Whole runs** (what the issues prescribe): interleaved A/B runs, the median of the paired
  B/A ratios. On a shared 2-core VM a run's CPU time moves by several percent from one run to
  the next for reasons outside the process (other tenants, frequency), so the median comes
  with a bootstrap 95 % interval; an interval wider than the target means the runs cannot
  settle the question either way on this machine, only bound it.
* **AZTP's own CPU**: the thread CPU time spent inside AZTP's code on every call (the hook
  or middleware around the tool, minus the tool itself) plus the audit writer thread's CPU
  per record, divided by the unguarded call's CPU time. This counts every instruction AZTP
  adds, on every thread, and is stable to a few percent of itself.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def median_ci(
    ratios: Sequence[float], *, resamples: int = 4000, seed: int = 7
) -> tuple[float, float, float]:
    """``(median, low, high)``: the median of ``ratios`` and a percentile-bootstrap 95 %
    interval for it (fixed seed, so a run's printout is reproducible from its data)."""
    rng = random.Random(seed)
    n = len(ratios)
    medians = sorted(statistics.median(rng.choices(ratios, k=n)) for _ in range(resamples))
    return (
        statistics.median(ratios),
        medians[int(0.025 * resamples)],
        medians[int(0.975 * resamples) - 1],
    )


def pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.2f} %"


class CpuMeter:
    """Thread CPU seconds spent in wrapped callables, less the time spent in the callables
    they call back (the tool itself), so what remains is the wrapper's own work."""

    def __init__(self) -> None:
        self.spent: list[float] = []
        self._inner = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            inner, start = self._inner, clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent.append(clock() - start - (self._inner - inner))

        return timed

    def awrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time

        async def timed(*args: Any, **kwargs: Any) -> Any:
            inner, start = self._inner, clock()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.spent.append(clock() - start - (self._inner - inner))

        return timed

    def exclude(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a callable whose time is not the wrapper's (the handler that runs the tool)."""
        clock = time.thread_time

        def inner(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self._inner += clock() - start

        return inner

    def aexclude(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time

        async def inner(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return await fn(*args, **kwargs)
            finally:
                self._inner += clock() - start

        return inner

    @property
    def mean_us(self) -> float:
        return statistics.mean(self.spent) * 1e6 if self.spent else 0.0


def writer_us_per_record(store: Any, before: Any) -> float:
    """The audit writer thread's CPU per record since ``before`` (an earlier stats value)."""
    store.flush_audit()
    now = store.audit_writer_stats()
    records = now.records - before.records
    return (now.cpu_seconds - before.cpu_seconds) / records * 1e6 if records else 0.0


def verdict(own_share: float, whole: tuple[float, float, float], target: float) -> tuple[bool, str]:
    """Met when AZTP's own CPU is within the target and the whole runs do not show more than
    the target either (the interval's low end is within it)."""
    _median, low, _high = whole
    ok = own_share <= target and (low - 1) <= target
    return ok, "MET" if ok else "MISSED"
