"""Strategy and scale enums, and the one parser that reads them from users and env vars.

Every strategy accepts the seed README spelling (``DropNew``, ``CompletePending``) and snake
case (``drop_new``, ``complete_pending``), case-insensitively.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from ._exceptions import MetranaConfigError

__all__ = [
    "AggregationFn",
    "BackpressureStrategy",
    "CloseStrategy",
    "Distributed",
    "ErrorStrategy",
    "LogLevel",
    "ResumeStrategy",
    "StandardMetricScale",
    "parse_choice",
]


class _Choice(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class BackpressureStrategy(_Choice):
    """What ``log()`` does when the event queue is full."""

    DropNew = "DropNew"  # discard the new point and count it
    Block = "Block"  # wait in the caller's thread until there is room
    Raise = "Raise"  # raise MetranaEventQueueFullError


class ErrorStrategy(_Choice):
    """How errors from the background (rejected batches, step errors) reach the user."""

    Silent = "Silent"
    Warn = "Warn"
    RaiseOnLog = "RaiseOnLog"
    RaiseOnClose = "RaiseOnClose"


class ResumeStrategy(_Choice):
    """What ``init()`` does when the run already exists."""

    Allow = "Allow"
    Never = "Never"


class CloseStrategy(_Choice):
    """What ``close()`` does with points not yet delivered."""

    Immediate = "Immediate"
    CompletePending = "CompletePending"
    CompleteAll = "CompleteAll"


class Distributed(_Choice):
    """What ``init()`` does in one process of a distributed job (see ``metrana._distributed``)."""

    auto = "auto"  # each rank's series get a rank=<RANK> label
    rank0 = "rank0"  # only rank 0 logs; other ranks get a session that does nothing
    off = "off"  # ignore the environment


class LogLevel(_Choice):
    """The least severe message metrana prints (through loguru)."""

    Trace = "Trace"
    Debug = "Debug"
    Info = "Info"
    Success = "Success"
    Warn = "Warn"
    Error = "Error"
    Critical = "Critical"
    Off = "Off"


class StandardMetricScale(_Choice):
    """The x-axis of a series."""

    ML_STEP = "ML_STEP"
    EPISODE = "EPISODE"
    ENVIRONMENT_STEP = "ENVIRONMENT_STEP"


class AggregationFn(_Choice):
    """Aggregation functions for :class:`metrana.AggregationRule` (wire names)."""

    AGGREGATION_FN_MEAN = "AGGREGATION_FN_MEAN"
    AGGREGATION_FN_MAX = "AGGREGATION_FN_MAX"
    AGGREGATION_FN_SUM = "AGGREGATION_FN_SUM"
    AGGREGATION_FN_MIN = "AGGREGATION_FN_MIN"
    AGGREGATION_FN_STD_DEV = "AGGREGATION_FN_STD_DEV"
    AGGREGATION_FN_COUNT = "AGGREGATION_FN_COUNT"


E = TypeVar("E", bound=_Choice)


def _fold(text: str) -> str:
    return text.replace("_", "").replace("-", "").lower()


_ALIASES: dict[type[_Choice], dict[str, str]] = {LogLevel: {"warning": "Warn"}}


def parse_choice(kind: type[E], value: object, source: str) -> E:
    """Read ``value`` as a member of ``kind``; ``source`` names where it came from."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        folded = _fold(value)
        for member in kind:
            if _fold(member.value) == folded:
                return member
        alias = _ALIASES.get(kind, {}).get(folded)
        if alias is not None:
            return kind(alias)
    choices = ", ".join(m.value for m in kind)
    raise MetranaConfigError(
        f"{source}={value!r} is not a valid {kind.__name__}; choose one of: {choices} "
        "(snake_case and any letter case also work)"
    )
