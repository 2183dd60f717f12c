"""Per-key token buckets (pure, thread-safe): protects the authority from issuance floods."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import RateLimitedError

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """``rate`` tokens per second, at most ``burst`` banked, one bucket per key."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def take(self, key: str, what: str = "requests") -> None:
        """Spend one token of ``key``'s bucket or raise :class:`RateLimitedError`."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                retry = (1.0 - tokens) / self.rate
                self._buckets[key] = (tokens, now)
                raise RateLimitedError(
                    f"too many {what} for this organization (limit {self.rate:g}/s, burst {self.burst}); "
                    f"retry in {retry:.2f} s",
                    retry_after=retry,
                )
            self._buckets[key] = (tokens - 1.0, now)
