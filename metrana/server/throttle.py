"""Failed authentications counted per client address: past a limit in a sliding window, the
address must wait (HTTP 429 with ``Retry-After``) before a key it sends is even looked at.

Guessing a 256-bit key is hopeless anyway; what this stops is a misconfigured job hammering
the server with a revoked key, and a scan costing the server a scrypt (~70 ms) per attempt.
Requests without a key are not counted (a dashboard opening before sign-in makes several),
and neither is a stale dashboard cookie. Memory is bounded: at most :data:`MAX_ADDRESSES`
addresses are remembered, the longest quiet forgotten first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["DEFAULT_FAILURES", "DEFAULT_WINDOW_S", "MAX_ADDRESSES", "FailureLimiter"]

DEFAULT_FAILURES = 10  # failed authentications an address may make ...
DEFAULT_WINDOW_S = 60.0  # ... in this many seconds
MAX_ADDRESSES = 4096


class FailureLimiter:
    """At most ``limit`` failures per address in any ``window`` seconds. Thread-safe: the
    server authenticates in worker threads."""

    def __init__(self, limit: int = DEFAULT_FAILURES, window: float = DEFAULT_WINDOW_S, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"FailureLimiter({self.limit} per {self.window:g} s)"

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try a key again, or None if it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if times is None or len(times) < self.limit:
                return None
            return max(1, math.ceil(times[len(times) - self.limit] + self.window - now))

    def failed(self, address: str) -> bool:
        """Count a failure; True when it is the one that reached the limit (log that once)."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if times is None:
                times = self._failures[address] = deque(maxlen=self.limit)
                while len(self._failures) > MAX_ADDRESSES:
                    self._failures.popitem(last=False)
            else:
                self._failures.move_to_end(address)
            times.append(now)
            return len(times) == self.limit
