"""What every in-process benchmark in ``scripts/`` times with: the median of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["timed"]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The median of ``repeat`` calls (ms), and the last result."""
    times: list[float] = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result
