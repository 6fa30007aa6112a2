"""ErrorCollector: the one place that knows the error strategy — what the user hears, when."""

from __future__ import annotations

import sys

import pytest
import trio

from metrana._actors.error_collector import ErrorCollector
from metrana._enums import ErrorStrategy
from metrana._exceptions import MetranaApiError, MetranaConnectionError, MetranaMetricStepError
from metrana._stats import Counters

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


async def collect(strategy: ErrorStrategy, errors: list[BaseException], maxsize: int = 0
                  ) -> tuple[ErrorCollector, list[str], Counters]:
    """Run a collector over ``errors`` until it has handled all of them."""
    counters, warned = Counters(), list[str]()
    collector = ErrorCollector(strategy, counters, warned.append, maxsize)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        for error in errors:
            collector.report(error)
        await collector.aclose()
    return collector, warned, counters


def api_error(status: int) -> MetranaApiError:
    return MetranaApiError(f"the service refused 1 points with HTTP {status}", status=status)


async def test_silent_says_nothing_and_counts() -> None:
    """Silent: no warning at all, whatever the kind; errors are still counted."""
    collector, warned, counters = await collect(ErrorStrategy.Silent,
                                                [api_error(400), MetranaConnectionError("x")])
    assert warned == [] and counters.errors == 2 and collector.take() is None


async def test_warn_says_each_kind_once() -> None:
    """Warn: one warning per (type, status), pointing at get_metrics() for the rest."""
    _, warned, counters = await collect(ErrorStrategy.Warn, [
        api_error(400), api_error(400), api_error(422), MetranaConnectionError("down"),
        MetranaConnectionError("down again")])
    assert len(warned) == 3 and counters.errors == 5
    assert "HTTP 400" in warned[0] and "counted in get_metrics()" in warned[0]
    assert "HTTP 422" in warned[1] and "down" in warned[2]


def step_error(series: str, step: int) -> MetranaMetricStepError:
    return MetranaMetricStepError(f"series {series}: step {step} does not increase; point "
                                  "dropped", series=series)


async def test_warn_names_step_errors_once_per_series_for_ten_series_then_counts() -> None:
    """Warn: a step error in a second series is named too (not hidden behind the first
    series' "kind"); each series once; past 10 series one line says the rest are counted."""
    errors: list[BaseException] = [
        step_error("a/ML_STEP", 1), step_error("a/ML_STEP", 2), step_error("b/ML_STEP", 1),
        *[step_error(f"s{i}/ML_STEP", 0) for i in range(10)], step_error("s9/ML_STEP", 5),
        api_error(400)]
    _, warned, counters = await collect(ErrorStrategy.Warn, errors)
    named = ["a", "b", *[f"s{i}" for i in range(8)]]
    assert warned == [
        *[f"series {s}/ML_STEP: step {1 if s in 'ab' else 0} does not increase; point dropped "
          "(further errors in this series are counted in get_metrics())" for s in named],
        "MetranaMetricStepError in more than 10 series: further series are not named, only "
        "counted in get_metrics(); the 11th: series s8/ML_STEP: step 0 does not increase; "
        "point dropped",
        "the service refused 1 points with HTTP 400 (further errors of this kind are counted "
        "in get_metrics())",
    ]
    assert counters.errors == len(errors)


async def test_raise_on_log_holds_errors_and_flags_the_caller() -> None:
    """RaiseOnLog: nothing printed; the errors are held as one ExceptionGroup, taken once."""
    flagged: list[bool] = []
    counters = Counters()
    collector = ErrorCollector(ErrorStrategy.RaiseOnLog, counters, lambda m: None)
    collector.on_pending = lambda: flagged.append(collector.raise_pending)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        collector.report(api_error(400))
        collector.report(api_error(401))
        await collector.aclose()
    assert flagged == [True, True]
    group = collector.take()
    assert isinstance(group, ExceptionGroup)
    assert [getattr(e, "status", None) for e in group.exceptions] == [400, 401]
    assert collector.take() is None and not collector.raise_pending


async def test_raise_on_close_holds_without_flagging_log() -> None:
    """RaiseOnClose: held for close(), and log() is not told to raise."""
    collector, warned, _ = await collect(ErrorStrategy.RaiseOnClose, [api_error(400)])
    assert warned == [] and not collector.raise_pending
    group = collector.take()
    assert group is not None and len(group.exceptions) == 1


async def test_more_than_a_hundred_held_errors_are_counted_not_kept() -> None:
    """Memory stays bounded: 100 errors are kept, the group says how many more there were."""
    collector, _, counters = await collect(ErrorStrategy.RaiseOnClose,
                                           [api_error(400) for _ in range(130)])
    group = collector.take()
    assert group is not None and len(group.exceptions) == 100
    assert "(and 30 more)" in str(group) and counters.errors == 130


@pytest.mark.parametrize("strategy", [ErrorStrategy.Warn, ErrorStrategy.RaiseOnClose])
async def test_a_full_error_queue_counts_overflow_instead_of_blocking(
        strategy: ErrorStrategy) -> None:
    """error_queue_max_size: a report never blocks an actor; what does not fit is counted."""
    counters = Counters()
    collector = ErrorCollector(strategy, counters, lambda m: None, maxsize=2)
    for _ in range(5):  # nobody is reading yet: two fit
        collector.report(api_error(400))
    assert collector.overflow == 3
