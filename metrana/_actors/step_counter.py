"""StepCounter: assigns automatic steps and checks manual ones, per series, in arrival order."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import attrs
import numpy as np
import trio

from .._exceptions import MetranaMetricStepError
from .._items import SERIES, Columns, Item
from .._series import SeriesKey
from .._stats import Counters
from .._vector import Block
from .error_collector import ErrorCollector
from .flush import FlushMarker
from .pump import Intake

__all__ = ["Identity", "Numbered", "SeriesSpan", "SeriesState", "StepCounter", "StoredEnds"]

_UNSET, _AUTO, _MANUAL = 0, 1, 2


Identity = tuple[object, ...]  # SeriesKey.identity: (rl, name, scale, labels, env_id, episode)


@attrs.define(eq=False)
class StoredEnds:
    """Where a resumed run's series end on the service (see :mod:`.series_ends`): filled by
    the run creator, read by the StepCounter once ``ready`` is set; and what the check
    refused, for the close summary."""

    ready: trio.Event = attrs.field(factory=trio.Event)
    by_series: dict[Identity, int] = attrs.field(factory=dict)
    refused: int = 0
    first_refusal: str | None = None

    def refuse(self, message: str) -> None:
        self.refused += 1
        if self.first_refusal is None:
            self.first_refusal = message


@attrs.define(eq=False)
class SeriesState:
    """Per-series bookkeeping; compared by identity so it is a cheap dict key."""

    key: SeriesKey
    mode: int = _UNSET
    next_step: int = 0
    last_major: int = -1
    # A resumed run's last stored step of this (standard) series: a manual step must go after
    # it (an RL series' stored last rl_step starts ``last_major`` instead; see .series_ends).
    stored_end: int = -1

    @property
    def manual(self) -> bool:
        return self.mode == _MANUAL


# A span of one series' points with its series: (state, first step or None, inbox items).
# With a first step, item i has step first + i; with None, each item carries its own step at
# index 1 (see .parcel's Span; "segment" is the spool's file).
SeriesSpan = tuple[SeriesState, "int | None", Sequence[Any]]
# What the StepCounter sends the Batcher: a chunk's points numbered, or a flush marker.
Numbered = list[SeriesSpan] | FlushMarker


_SERIES = itemgetter(SERIES)
_BY_SORT = 256  # from this many items, grouping by a stable argsort beats a dict of lists


def _group(chunk: list[Any]) -> dict[int, Sequence[Any]]:
    """Items by series index, each series' items in their order.

    A chunk is up to 10,000 items of a few series: a stable argsort of their indices and one
    ``itemgetter`` per series does in C what a Python loop over the items costs ~2x more for.
    """
    if len(chunk) < _BY_SORT:
        groups: dict[int, list[Any]] = {}
        get = groups.get
        for item in chunk:
            group = get(item[SERIES])
            if group is None:
                groups[item[SERIES]] = [item]
            else:
                group.append(item)
        return groups  # type: ignore[return-value]
    keys = np.fromiter(map(_SERIES, chunk), np.int64, len(chunk))
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]).tolist()
    positions = order.tolist()
    out: dict[int, Sequence[Any]] = {}
    for a, b in zip(starts, [*starts[1:], len(chunk)], strict=True):
        index = positions[a:b]
        out[int(ordered[a])] = (itemgetter(*index)(chunk) if b - a > 1
                                else (chunk[index[0]],))
    return out


class StepCounter:
    """Inbox chunks of ``(key, step|None, major|None, value, ts)`` (or :class:`Columns`) in;
    lists of series spans out.
    Bad steps go to the ErrorCollector, not the wire."""

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[Intake],
        send: trio.MemorySendChannel[Numbered],
        errors: ErrorCollector,
        counters: Counters,
        series: list[SeriesKey],
        ends: StoredEnds | None = None,
    ) -> None:
        self._receive = receive
        self._send = send
        self._errors = errors
        self._counters = counters
        self._series = series  # index -> key, filled by the session before items are queued
        self._ends = ends  # where a resumed run's series end; None: nothing to check
        self.states: dict[int, SeriesState] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._send, self._receive:
            task_status.started()
            # Nothing is numbered before it is known where a resumed run's series end (the run
            # creator sets this however its creation ends, bounded in time).
            if self._ends is not None:
                await self._ends.ready.wait()
            async for chunk in self._receive:
                if type(chunk) is FlushMarker:
                    await self._send.send(chunk)
                    continue
                out = self.assign(chunk)
                if out:
                    await self._send.send(out)

    def assign(self, chunk: Columns | list[Item | Block]) -> list[SeriesSpan]:
        """Group a chunk by series and number its points.

        The common case — a standard series with automatic steps — numbers a whole group with
        one addition; manual steps and RL series check point by point.
        """
        groups: Any = ({points.series: points for points in chunk}
                       if isinstance(chunk, Columns) else _group(chunk))
        states = self.states
        out: list[SeriesSpan] = []
        for index, items in groups.items():
            state = states.get(index)
            if state is None:
                state = states[index] = self._new_state(self._series[index])
            key = state.key
            if not key.rl and not key.manual_seen and not key.vector_seen:
                first = state.next_step
                state.mode = _AUTO
                state.next_step = first + len(items)
                out.append((state, first, items))
            else:
                checked = self._assign_each(state, items)
                if checked:
                    out.append((state, None, checked))
        return out

    def _new_state(self, key: SeriesKey) -> SeriesState:
        state = SeriesState(key)
        end = self._ends.by_series.get(key.identity) if self._ends is not None else None
        if end is not None:
            if key.rl:
                state.last_major = end
            else:
                state.stored_end = end
        return state

    def _assign_each(self, state: SeriesState, items: Sequence[Any]) -> list[Any]:
        if state.key.vector_seen:
            expanded: list[Any] = []
            for item in items:
                if type(item) is Block:
                    expanded.extend(item.expand())
                else:
                    expanded.append(item)
            items = expanded
        out = []
        for key, step, major, value, ts in items:
            if major is not None and major < state.last_major:
                if state.mode == _UNSET:  # nothing taken yet: the bound is the stored one
                    self._rerun(state, f"rl_step {major} is lower than {state.last_major}, the "
                                       "last rl_step the run already stores for it")
                else:
                    self._reject(state, f"rl_step {major} is lower than the previous "
                                        f"{state.last_major}")
                continue
            if step is None:
                if state.mode == _MANUAL:
                    self._reject(state, "mixes automatic steps into a series with manual steps")
                    continue
                state.mode = _AUTO
                step = state.next_step
                state.next_step = step + 1
            else:
                if state.mode == _AUTO:
                    self._reject(state, f"got manual step {step} in a series with automatic steps")
                    continue
                if step < state.next_step and not state.key.kind:
                    self._reject(
                        state,
                        f"step {step} does not increase (last step was {state.next_step - 1}); "
                        "manual steps must strictly increase",
                    )
                    continue
                if step <= state.stored_end:
                    self._rerun(state, f"step {step} is not after {state.stored_end}, the last "
                                       "step the run already stores for it")
                    continue
                state.mode = _MANUAL
                # A histogram or cloud at a step already logged overwrites it (the store keeps
                # the last one); a scalar's steps must increase (checked above).
                state.next_step = max(state.next_step, step + 1)
            if major is not None:
                state.last_major = major
            out.append((key, step, major, value, ts))
        return out

    def _rerun(self, state: SeriesState, reason: str) -> None:
        """A point of a resumed run that would go among the points it already stores."""
        where = f"series {state.key.describe()}: {reason}"
        message = (f"{where} (a rerun or resume of an existing run); point dropped. Log to a "
                   "new run_name, or pass resume_strategy='Never' to refuse reruns")
        if self._ends is not None:
            self._ends.refuse(where)
        self._counters.invalid += 1
        self._errors.report(MetranaMetricStepError(message))

    def _reject(self, state: SeriesState, reason: str) -> None:
        self._counters.invalid += 1
        series = state.key.describe()
        self._errors.report(
            MetranaMetricStepError(f"series {series}: {reason}; point dropped", series=series))
