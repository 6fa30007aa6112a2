"""Parcels: splitting a refused request until the refused points are alone, with every other
point delivered once, in order, and counted only once the service said yes.

Pure unit tests: ``post`` is a function of the test that answers from the parcel's content.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from metrana._actors.parcel import (
    SPLITTABLE,
    InFlight,
    Parcel,
    Progress,
    Spans,
    _split_spans,
    deliver_isolating,
    parcel_count,
    span_count,
    split_budget,
    split_parcel,
    spool_points,
)
from metrana._exceptions import MetranaConnectionError


def items(values: range | list[int], major: int | None = None) -> list[Any]:
    """Inbox items of one series: (series, given step, major, value, ts); no given step."""
    return [(0, None, major, float(v), 10**18 + v) for v in values]


def values_of(parcel: Parcel) -> list[float]:
    return [item[3] for _, spans in parcel for _, chunk in spans for item in chunk]


def steps_of(spans: Spans) -> list[int]:
    return [point[0] for point in spool_points(spans)]


def test_spool_points_number_a_span_from_its_first_step_or_keep_given_steps() -> None:
    """A span with a first step numbers its items first, first+1...; without one, each item
    keeps the step it was given. Major steps, values and timestamps pass through."""
    given = [(0, 7, 3, 1.5, 11), (0, 9, 4, 2.5, 12)]
    spans: Spans = [(100, items(range(3), major=5)), (None, given)]
    assert spool_points(spans) == [(100, 5, 0.0, 10**18), (101, 5, 1.0, 10**18 + 1),
                                (102, 5, 2.0, 10**18 + 2), (7, 3, 1.5, 11), (9, 4, 2.5, 12)]
    assert span_count(spans) == 5
    assert parcel_count([("a", spans), ("b", [(0, items(range(4)))])]) == 9


@pytest.mark.parametrize(("keep", "head", "tail"), [
    (0, [], [(10, [10, 11, 12, 13, 14]), (None, [0, 1])]),
    (2, [(10, [10, 11])], [(12, [12, 13, 14]), (None, [0, 1])]),
    (5, [(10, [10, 11, 12, 13, 14])], [(None, [0, 1])]),
    (6, [(10, [10, 11, 12, 13, 14]), (None, [0])], [(None, [1])]),
    (7, [(10, [10, 11, 12, 13, 14]), (None, [0, 1])], []),
])
def test_split_runs_keeps_steps_and_order(keep: int, head: list[tuple[int | None, list[int]]],
                                          tail: list[tuple[int | None, list[int]]]) -> None:
    """The first ``keep`` points and the rest: a run cut in two keeps its steps (the tail's
    first step moves on), a run of given steps is cut without renumbering, and no run is
    left empty on either side (it would be a series without points in a request)."""
    spans: Spans = [(10, items(range(5))), (None, [(0, 0, None, 5.0, 1), (0, 1, None, 6.0, 2)])]
    first, rest = _split_spans(spans, keep)
    assert [(start, steps_of([(start, chunk)])) for start, chunk in first] == head
    assert [(start, steps_of([(start, chunk)])) for start, chunk in rest] == tail


@pytest.mark.parametrize(("sizes", "left"), [
    ([3, 3], 1),            # half the points: the first series
    ([10, 1, 1], 1),        # the first series already holds half
    ([1, 1, 10], 2),        # never everything on one side: the last series stays alone
    ([1, 2, 1, 2], 2),      # 3 of 6 points
    ([1, 1, 1, 1, 1], 3),   # 3 of 5
])
def test_split_parcel_cuts_between_series_near_the_middle(sizes: list[int], left: int) -> None:
    parcel: Parcel = [(f"s{i}", [(0, items(range(n)))]) for i, n in enumerate(sizes)]
    head, tail = split_parcel(parcel)
    assert [s for s, _ in head] == [f"s{i}" for i in range(left)]
    assert [s for s, _ in tail] == [f"s{i}" for i in range(left, len(sizes))]


def test_split_parcel_of_one_series_halves_its_points() -> None:
    """One series of 5 points: 2 and 3, earlier points first, steps kept."""
    head, tail = split_parcel([("s", [(40, items(range(5)))])])
    assert [(s, steps_of(spans)) for s, spans in head] == [("s", [40, 41])]
    assert [(s, steps_of(spans)) for s, spans in tail] == [("s", [42, 43, 44])]
    head, tail = split_parcel([("s", [(0, items(range(2)))])])
    assert (values_of(head), values_of(tail)) == ([0.0], [1.0])


@pytest.mark.parametrize(("count", "budget"), [
    (1, 16), (2, 16), (3, 16), (4, 24), (10_000, 112), (2**20 - 1, 160), (2**20, 168)])
def test_split_budget(count: int, budget: int) -> None:
    """Extra requests to isolate refusals: 8 per halving of the parcel, at least 16."""
    assert split_budget(count) == budget


def test_progress_hands_back_the_part_in_flight_first_then_the_stack_in_order() -> None:
    a, b, c = (one_series(n) for n in (1, 2, 3))
    assert Progress(todo=[c, b], current=a).remaining() == [a, b, c]
    assert Progress(todo=[b]).remaining() == [b]
    assert Progress().flight.outstanding is False


class Service:
    """Answers each post from the values it carries; records what it was sent."""

    def __init__(self, refuse: set[float] | None = None, status: int = 422,
                 down_after: int | None = None) -> None:
        self.refuse = refuse or set()
        self.status = status
        self.down_after = down_after
        self.posted: list[list[float]] = []
        self.sent: list[int] = []
        self.refused: list[tuple[int, int]] = []
        self.flights: list[bool] = []

    async def post(self, part: Parcel, flight: InFlight) -> httpx.Response:
        if self.down_after is not None and len(self.posted) >= self.down_after:
            raise MetranaConnectionError("down")
        values = values_of(part)
        self.posted.append(values)
        self.flights.append(isinstance(flight, InFlight))
        # Nothing is counted while the request is on its way.
        assert sum(self.sent) + sum(n for n, _ in self.refused) <= sum(map(len, self.posted[:-1]))
        return httpx.Response(self.status if self.refuse & set(values) else 200)

    async def deliver(self, parcel: Parcel, progress: Progress | None = None, **kw: Any) -> Progress:
        progress = progress or Progress()
        await deliver_isolating(parcel, self.post, progress, on_sent=self.sent.append,
                                on_refused=lambda n, r: self.refused.append((n, r.status_code)),
                                **kw)
        return progress


def one_series(n: int) -> Parcel:
    return [("loss", [(0, items(range(n)))])]


async def test_an_accepted_parcel_is_counted_once_after_its_answer() -> None:
    service = Service()
    progress = await service.deliver(one_series(100))
    assert service.posted == [[float(i) for i in range(100)]]
    assert service.sent == [100] and service.refused == []
    assert progress.remaining() == [] and progress.error is None and service.flights == [True]


async def test_a_refused_point_is_isolated_and_everything_else_delivered_in_order() -> None:
    """16 points, the one with value 5 refused: it alone is rejected; the others are sent,
    earlier points first, each once."""
    service = Service(refuse={5.0})
    await service.deliver(one_series(16))
    assert service.refused == [(1, 422)]
    assert sum(service.sent) == 15
    delivered = [v for part in service.posted if 5.0 not in part for v in part]
    assert delivered == [float(i) for i in range(16) if i != 5]
    # halving: [0..15] ✗, [0..7] ✗, [0..3] ✓, [4..7] ✗, [4,5] ✗, [4] ✓, [5] ✗, [6,7] ✓, [8..15] ✓
    assert len(service.posted) == 9


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_each_content_refusal_is_split(status: int) -> None:
    service = Service(refuse={3.0}, status=status)
    await service.deliver(one_series(4))
    assert (sum(service.sent), service.refused) == (3, [(1, status)])


@pytest.mark.parametrize("status", [401, 403, 404, 409, 412, 414, 421, 423, 500])
async def test_other_refusals_reject_the_whole_parcel_at_once(status: int) -> None:
    service = Service(refuse={3.0}, status=status)
    await service.deliver(one_series(10))
    assert service.refused == [(10, status)] and service.sent == [] and len(service.posted) == 1


async def test_a_caller_may_split_on_other_statuses() -> None:
    """Replay treats a 5xx that persists while the service answers others as a refusal."""
    service = Service(refuse={3.0}, status=500)
    await service.deliver(one_series(4), splittable=SPLITTABLE | {500})
    assert (sum(service.sent), service.refused) == (3, [(1, 500)])


async def test_splitting_is_bounded_when_everything_is_refused() -> None:
    """1,000 points all refused: 1 request, then 80 more (the budget), never a request per
    point; every point is counted rejected exactly once."""
    service = Service(refuse={float(i) for i in range(1000)})
    await service.deliver(one_series(1000))
    assert len(service.posted) == 1 + split_budget(1000) == 81
    assert sum(n for n, _ in service.refused) == 1000 and service.sent == []


async def test_a_single_refused_point_is_not_split() -> None:
    service = Service(refuse={0.0})
    await service.deliver(one_series(1))
    assert service.refused == [(1, 422)] and len(service.posted) == 1


async def test_an_unreachable_service_hands_back_what_was_not_delivered_in_order() -> None:
    """The service goes away mid-isolation: what was delivered is counted, the rest (the part
    that was on its way first) is handed back in order, nothing twice, nothing missing."""
    service = Service(refuse={5.0}, down_after=4)
    progress = await service.deliver(one_series(16))
    assert isinstance(progress.error, MetranaConnectionError)
    delivered = [v for part in service.posted if 5.0 not in part for v in part]
    assert delivered == [0.0, 1.0, 2.0, 3.0]
    left = [v for part in progress.remaining() for v in values_of(part)]
    assert left == [float(i) for i in range(4, 16)]
    assert progress.current_count == 2 and values_of(progress.current or []) == [4.0, 5.0]


async def test_stop_hands_back_the_rest_without_an_error() -> None:
    """Asked before each request: True leaves everything not yet sent to the caller."""
    service = Service(refuse={5.0})
    asked: list[int] = []

    def stop() -> bool:
        asked.append(len(service.posted))
        return len(service.posted) == 3

    progress = await service.deliver(one_series(16), stop=stop)
    assert asked == [0, 1, 2, 3] and progress.error is None
    assert [v for part in progress.remaining() for v in values_of(part)] == [
        float(i) for i in range(4, 16)]
    assert service.sent == [4] and service.refused == []
