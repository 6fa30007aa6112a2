"""Parcels: the points of one request, and delivering them so a refusal costs only bad points.

A parcel is a list of ``(series, spans)``; ``spans`` are ``(first step or None, items)`` as the
StepCounter made them (with a first step, item ``i`` has step ``first + i``; with None each
item carries its own step). The dispatcher sends a lane's batch as one parcel, the recovery
actor and ``metrana sync`` send merged spool records as parcels.

When the service refuses a parcel for its content (400, 413, 422), the parcel is split — by
series first, then by points — and the halves are sent again, until the refused points are
isolated: one bad timestamp costs one point, not the 9,999 others of its batch. The number of
extra requests is bounded, so a parcel whose every point is refused (a bad series name) costs a
few dozen requests, not thousands.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import httpx

from .._exceptions import MetranaConnectionError
from .._items import Point
from .._wire import is_ok

__all__ = [
    "Progress",
    "InFlight",
    "Parcel",
    "Span",
    "Spans",
    "deliver_isolating",
    "parcel_count",
    "span_count",
    "spool_points",
    "split_parcel",
]

# A span: consecutive points of one series as the StepCounter numbered them, ``(first step or
# None, items)`` (not a run: "run" is the ML run). A series' spans are in step order.
Span = tuple["int | None", Sequence[Any]]
Spans = list[Span]
Parcel = list[tuple[Any, Spans]]  # (series state, its spans): the points of one request

# Refusals about the content of the request: a part of it may be acceptable.
SPLITTABLE = frozenset({400, 413, 422})


def span_count(spans: Spans) -> int:
    return sum(len(items) for _, items in spans)


def parcel_count(parcel: Parcel) -> int:
    return sum(span_count(spans) for _, spans in parcel)


def spool_points(spans: Spans) -> list[Point]:
    """One series' points as the spool stores them: ``(step, major, value, ts)``."""
    out: list[Point] = []
    for first, items in spans:
        for index, (_, given, major, value, ts) in enumerate(items):
            out.append((given if first is None else first + index, major, value, ts))
    return out


def _split_spans(spans: Spans, keep: int) -> tuple[Spans, Spans]:
    """The first ``keep`` points of a series and the rest, each still in step order."""
    head: Spans = []
    tail: Spans = []
    for first, items in spans:
        if keep >= len(items):
            head.append((first, items))
            keep -= len(items)
        elif keep <= 0:
            tail.append((first, items))
        else:
            head.append((first, items[:keep]))
            tail.append((None if first is None else first + keep, items[keep:]))
            keep = 0
    return head, tail


def split_parcel(parcel: Parcel) -> tuple[Parcel, Parcel]:
    """Two non-empty halves of a parcel of two or more points, earlier points first."""
    if len(parcel) > 1:
        total = parcel_count(parcel)
        running = 0
        for index, (_, spans) in enumerate(parcel):
            running += span_count(spans)
            if running * 2 >= total or index == len(parcel) - 2:
                return parcel[:index + 1], parcel[index + 1:]
    series, spans = parcel[0]
    head, tail = _split_spans(spans, span_count(spans) // 2)
    return [(series, head)], [(series, tail)]


@attrs.define
class InFlight:
    """Whether a request is on the wire right now: its points are in doubt if it is cut off
    (the service may have stored them), not when it is cut off between attempts."""

    outstanding: bool = False


@attrs.define
class Progress:
    """Progress of one :func:`deliver_isolating` call, readable after it was cancelled."""

    todo: list[Parcel] = attrs.field(factory=list)  # a stack: the next part is at the end
    current: Parcel | None = None  # the part being posted
    current_count: int = 0
    error: MetranaConnectionError | None = None
    flight: InFlight = attrs.field(factory=InFlight)

    def remaining(self) -> list[Parcel]:
        """What was not delivered or refused, in order (the part in flight first)."""
        head = [self.current] if self.current is not None else []
        return head + list(reversed(self.todo))


def split_budget(count: int) -> int:
    """Extra requests allowed to isolate refused points of a parcel of ``count`` points."""
    return max(16, 8 * math.ceil(math.log2(count + 1)))


async def deliver_isolating(
    parcel: Parcel,
    post: Callable[[Parcel, InFlight], Awaitable[httpx.Response]],
    progress: Progress,
    *,
    on_sent: Callable[[int], None],
    on_refused: Callable[[int, httpx.Response], None],
    stop: Callable[[], bool] = lambda: False,
    splittable: frozenset[int] = SPLITTABLE,
) -> None:
    """Send ``parcel``; on a content refusal, split and resend until the bad points are alone.

    ``post`` raises :class:`MetranaConnectionError` when the service cannot be reached: the
    call then returns with ``progress.error`` set and :meth:`Progress.remaining` holding what
    was not delivered, in order, for the caller to keep. ``stop()`` is asked before each
    request; True hands the rest back the same way (without an error).
    """
    progress.todo = [parcel]
    budget = split_budget(parcel_count(parcel))
    while progress.todo:
        if stop():
            return
        part = progress.todo.pop()
        count = parcel_count(part)
        progress.current, progress.current_count = part, count
        try:
            response = await post(part, progress.flight)
        except MetranaConnectionError as exc:
            progress.error = exc
            return
        progress.current, progress.current_count = None, 0
        if is_ok(response.status_code):
            on_sent(count)
        elif response.status_code in splittable and count > 1 and budget >= 2:
            budget -= 2
            left, right = split_parcel(part)
            progress.todo += [right, left]
        else:
            on_refused(count, response)
