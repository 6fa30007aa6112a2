"""A series' points as numpy arrays: what a request's points become (:mod:`.ingest`), what a
chunk holds (:mod:`.store.chunks`), and what a read of points returns.

(The client's ``_items.Columns`` are something else: its per-series lists of logged values.)
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["PointArrays"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


@attrs.define
class PointArrays:
    """Points of one series, one array per field.

    ``x`` is the step (RL: the major step, ``rl_step``), ``minor`` the RL minor step (0 for a
    standard series), ``t`` the timestamp in ns, ``v`` the value, and ``missing`` marks points
    that carry no value at all (their ``v`` is NaN).
    """

    x: I64
    minor: I64
    t: I64
    v: F64
    missing: B

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: Any) -> PointArrays:
        return PointArrays(self.x[index], self.minor[index], self.t[index], self.v[index],
                           self.missing[index])

    @staticmethod
    def concat(parts: list[PointArrays]) -> PointArrays:
        if len(parts) == 1:
            return parts[0]
        return PointArrays(*(np.concatenate([getattr(p, f) for p in parts])
                             for f in ("x", "minor", "t", "v", "missing")))

    @staticmethod
    def empty() -> PointArrays:
        return PointArrays(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                           np.empty(0, np.float64), np.empty(0, np.bool_))

    def in_step_order(self) -> PointArrays:
        """The same points sorted by (x, minor), unless they already are."""
        if self.n > 1:
            dx = np.diff(self.x)
            if not np.all((dx > 0) | ((dx == 0) & (np.diff(self.minor) >= 0))):
                return self.take(np.lexsort((self.minor, self.x)))
        return self
