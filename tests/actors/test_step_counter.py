"""StepCounter: automatic steps from 0, manual steps strictly increasing, no mixing."""

from __future__ import annotations

from typing import Any

import pytest

import metrana
from metrana._actors.step_counter import StepCounter
from metrana._series import SeriesKey
from metrana._stats import Counters


def keys() -> tuple[SeriesKey, SeriesKey, SeriesKey]:
    return (SeriesKey(False, "loss", "ML_STEP", ()), SeriesKey(False, "acc", "ML_STEP", ()),
            SeriesKey(True, "reward", "EPISODE", (), "env-1"))


class Errors:
    def __init__(self) -> None:
        self.reported: list[BaseException] = []

    def report(self, error: BaseException) -> None:
        self.reported.append(error)


TABLE: list[SeriesKey] = []


def points(*items: tuple[SeriesKey, Any, Any, float, int]) -> list[Any]:
    """Inbox items as Session.log makes them: the key's index in the series table, and a key
    that got a manual step says so."""
    out = []
    for key, step, *rest in items:
        if key.index < 0:
            key.index = len(TABLE)
            TABLE.append(key)
        if step is not None:
            key.manual_seen = True
        out.append((key.index, step, *rest))
    return out


def counter() -> tuple[StepCounter, Errors, Counters]:
    errors, counters = Errors(), Counters()
    sc = StepCounter(None, None, errors, counters, TABLE)  # type: ignore[arg-type]
    return sc, errors, counters


def steps(out: list[Any]) -> list[tuple[str, int, Any]]:
    """(series, step, major) of every point, in output order."""
    points = []
    for state, first, items in out:
        for index, item in enumerate(items):
            points.append((state.key.name, item[1] if first is None else first + index, item[2]))
    return points


def test_automatic_steps_start_at_zero_per_series() -> None:
    """Each series counts its own steps from 0, interleaving freely."""
    sc, errors, _ = counter()
    LOSS, ACC, REWARD = keys()
    out = sc.assign(points((LOSS, None, None, 1.0, 0), (ACC, None, None, 1.0, 0),
                     (LOSS, None, None, 1.0, 0)))
    out += sc.assign(points((LOSS, None, None, 1.0, 0)))
    assert sorted(steps(out)) == [("acc", 0, None), ("loss", 0, None), ("loss", 1, None),
                                  ("loss", 2, None)]
    assert not errors.reported


def test_manual_steps_must_strictly_increase() -> None:
    """5, 7 ok; 7 again or 6 refused with a step error; the series continues after 7."""
    sc, errors, counters = counter()
    LOSS, ACC, REWARD = keys()
    out = sc.assign(points((LOSS, 5, None, 1.0, 0), (LOSS, 7, None, 1.0, 0), (LOSS, 7, None, 1.0, 0),
                     (LOSS, 6, None, 1.0, 0), (LOSS, 8, None, 1.0, 0)))
    assert steps(out) == [("loss", 5, None), ("loss", 7, None), ("loss", 8, None)]
    assert counters.invalid == 2
    assert all(isinstance(e, metrana.MetranaMetricStepError) for e in errors.reported)
    assert "step 6 does not increase (last step was 7)" in str(errors.reported[1])
    assert out[0][0].manual


@pytest.mark.parametrize("first,second", [(None, 3), (3, None)])
def test_manual_and_automatic_steps_do_not_mix(first: int | None, second: int | None) -> None:
    """A series is automatic or manual for life; the other kind is refused."""
    sc, errors, counters = counter()
    LOSS, ACC, REWARD = keys()
    out = sc.assign(points((LOSS, first, None, 1.0, 0), (LOSS, second, None, 1.0, 0)))
    assert len(steps(out)) == 1 and counters.invalid == 1
    assert "series loss/ML_STEP" in str(errors.reported[0])


def test_rl_step_may_not_decrease_and_minor_steps_auto_increment() -> None:
    """Episodes number 0,1,2 per series; a lower rl_step is refused without using a number."""
    sc, errors, _ = counter()
    LOSS, ACC, REWARD = keys()
    out = sc.assign(points((REWARD, None, 10, 1.0, 0), (REWARD, None, 10, 1.0, 0),
                     (REWARD, None, 9, 1.0, 0), (REWARD, None, 12, 1.0, 0)))
    assert steps(out) == [("reward", 0, 10), ("reward", 1, 10), ("reward", 2, 12)]
    assert "rl_step 9 is lower than the previous 10" in str(errors.reported[0])


def test_a_resumed_runs_stored_ends_bound_rl_steps_and_manual_steps() -> None:
    """Where the run's series end on the server: an rl_step lower than the stored last one is
    refused (an equal one is not), a manual step must go after the stored last one; the
    refusals are counted invalid, told apart from a session's own decreasing step, and the
    first is kept for the close summary. Automatic steps are not bounded."""
    from metrana._actors.step_counter import StoredEnds

    rl_key = SeriesKey(True, "ret", "EPISODE", (), "env-0")
    manual = SeriesKey(False, "score", "ML_STEP", ())
    auto = SeriesKey(False, "auto", "ML_STEP", ())
    ends = StoredEnds(by_series={rl_key.identity: 100, manual.identity: 9, auto.identity: 50})
    errors, counters = Errors(), Counters()
    sc = StepCounter(None, None, errors, counters, TABLE, ends)  # type: ignore[arg-type]
    out = sc.assign(points((rl_key, None, 99, 1.0, 0), (rl_key, None, 100, 2.0, 0),
                           (rl_key, None, 99, 3.0, 0), (manual, 9, None, 1.0, 0),
                           (manual, 10, None, 2.0, 0), (auto, None, None, 1.0, 0)))
    assert sorted(steps(out)) == [("auto", 0, None), ("ret", 0, 100), ("score", 10, None)]
    assert counters.invalid == 3 and ends.refused == 2
    messages = [str(e) for e in errors.reported]
    assert "rl_step 99 is lower than 100, the last rl_step the run already stores" in messages[0]
    assert "rl_step 99 is lower than the previous 100" in messages[1]  # this session's own
    assert "step 9 is not after 9, the last step the run already stores" in messages[2]
    assert "resume_strategy='Never'" in messages[0] and "new run_name" in messages[2]
    assert ends.first_refusal == ("series ret/EPISODE/env=env-0: rl_step 99 is lower than 100, "
                                  "the last rl_step the run already stores for it")
