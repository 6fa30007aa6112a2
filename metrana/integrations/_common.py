"""What every integration shares, with no framework import: which session to log to, which
process logs, which values are numbers, one value per (key, step), and a config any framework
hands us made acceptable to ``init(config=...)``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import enum
import math
import os
import re
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from .._exceptions import MetranaFlushTimeoutError
from .._flatten import MAX_CONFIG_LEAVES, flatten_config
from .._log import say
from .._session_types import Session
from .._values import Histogram

__all__ = [
    "OwnRun",
    "StepFilter",
    "as_number",
    "current_session",
    "global_rank",
    "metric_name",
    "safe_config",
    "say_for",
]

# The variables Lightning and torchrun set for a process's global rank, in Lightning's order.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's rank in a distributed job; 0 when it is not part of one.

    ``torch.distributed``'s rank once its process group is initialised (only looked up when
    something else already imported it), else the first of ``RANK``, ``LOCAL_RANK``,
    ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK`` that is set.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None:
        try:
            if dist.is_available() and dist.is_initialized():
                return int(dist.get_rank())
        except Exception:  # noqa: BLE001 - a half-initialised group: fall back to the env
            pass
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def current_session(session: Session | None, who: str) -> Session:
    """``session`` if given, else the run opened by ``metrana.init()``."""
    if session is not None:
        return session
    from .. import _api

    current = _api._session
    if current is None:
        raise _api.not_initialized(
            f"{who} logs to the run of metrana.init(...): call it first, or pass session=..."
        )
    return current


def say_for(session: Session | None, level: str, message: str) -> None:
    """Print through metrana's logger at the session's log level (INFO when unknown)."""
    from .._enums import LogLevel

    configured = session.settings.log_level if session is not None else LogLevel.Info
    say(configured, level, message)


_NAME_SPACE = re.compile(r"\s+")


def metric_name(key: str) -> str:
    """A framework's key as a metric name: whitespace (which metrana refuses) becomes ``_``."""
    name = _NAME_SPACE.sub("_", str(key).strip())
    return name or "_"


def as_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not one number.

    bool, int, float, numpy and torch scalars (and 0-d or one-element arrays and tensors), and
    anything else with ``__float__``; None for str, bytes, None, containers, images, videos,
    figures and arrays of several values.
    """
    if type(value) is float:
        return value
    if isinstance(value, (bool, int, float)):
        return float(value)
    if value is None or isinstance(value, (str, bytes, bytearray, Mapping, list, tuple, set)):
        return None
    size = getattr(value, "size", None)
    if callable(size):  # torch: size() is a method; numel() counts the elements
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else None
    if size is not None and not isinstance(size, int):
        return None
    if size is not None and size != 1:
        return None
    item = getattr(value, "item", None)
    try:
        if callable(item):
            value = item()
            return float(value) if isinstance(value, (bool, int, float)) else None
        if hasattr(value, "__float__"):
            return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return None


class StepFilter:
    """At most one point per (key, step), steps strictly increasing per key.

    A metrana series with manual steps drops a repeated or decreasing step as ``invalid``;
    frameworks do log one key twice at one step (Lightning adds ``epoch`` to every call, the
    transformers Trainer logs evaluation metrics through two hooks). A repeat of the same value
    at the same step is skipped quietly (nothing is lost); a different value at a step already
    logged, or a step that goes back, is skipped, counted in ``dropped`` and reported once per
    key as a warning.
    """

    def __init__(self, who: str) -> None:
        self.who = who
        self._last: dict[str, tuple[int, float]] = {}
        self._reported: set[str] = set()
        self.dropped = 0

    def accept(self, key: str, step: int, value: float, session: Session | None = None) -> bool:
        last = self._last.get(key)
        if last is None or step > last[0]:
            self._last[key] = (step, value)
            return True
        if step == last[0] and (value == last[1] or (math.isnan(value) and math.isnan(last[1]))):
            return False
        self.dropped += 1
        if key not in self._reported:
            self._reported.add(key)
            what = "again at step" if step == last[0] else "at an earlier step,"
            say_for(session, "WARNING",
                    f"{self.who}: {key!r} was logged {what} {step} after step {last[0]}; a metrana "
                    f"series keeps one value per step, so {value!r} was not logged (further "
                    "such values of this key are counted, not reported)")
        return False

    def next_step(self, key: str) -> int:
        """The step after the last accepted one of ``key`` (0 for a new key)."""
        last = self._last.get(key)
        return 0 if last is None else last[0] + 1


_CONFIG_KEY_BAD = re.compile(r"[^a-zA-Z0-9._\-:]")
_MAX_DEPTH = 16
_INT64 = (-(2**63), 2**63 - 1)


def safe_config(config: Any, *, who: str, session: Session | None = None,
                reserve: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A framework's settings (dicts, lists, enums, dataclasses, paths, callables...) turned
    into a dict ``init(config=...)`` accepts: keys made valid and distinct, enums by value,
    numpy/torch scalars by ``.item()``, anything else as ``str()``; ``None`` dropped by init.
    At most ``MAX_CONFIG_LEAVES`` values, less those of ``reserve`` (the user's own
    ``config=``, which goes with it); beyond that the rest is left out with a warning.
    """
    room = MAX_CONFIG_LEAVES - (len(flatten_config(reserve)) if reserve else 0)
    budget = [room]
    out = _safe(config, budget, 0)
    if budget[0] < 0:
        say_for(session, "WARNING", f"{who}: the configuration has more than {room} values; "
                                    "the rest was not sent")
    return out if isinstance(out, dict) else {"value": out}


def _as_mapping(value: Any) -> Mapping[Any, Any] | None:
    """Settings objects as dicts: ``to_dict()`` (transformers' arguments and model configs),
    dataclasses and namespaces; None for anything else."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, type):
        return None
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            out = to_dict()
        except Exception:  # noqa: BLE001 - then its text
            return None
        return out if isinstance(out, Mapping) else None
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    if isinstance(value, (argparse.Namespace, types.SimpleNamespace)):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return None


def _safe(value: Any, budget: list[int], depth: int) -> Any:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, (str, bytes, list, tuple, set, frozenset)):
        value = _as_mapping(value) or value
    if isinstance(value, Mapping):
        if depth >= _MAX_DEPTH:
            return _leaf(str(value), budget)
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _CONFIG_KEY_BAD.sub("_", str(key.value if isinstance(key, enum.Enum) else key))
            name = name or "_"
            unique, n = name, 2
            while unique in out:
                unique, n = f"{name}_{n}", n + 1
            safe = _safe(item, budget, depth + 1)
            if safe is not None:
                out[unique] = safe
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        if depth >= _MAX_DEPTH:
            return _leaf(str(items), budget)
        return [_safe(item, budget, depth + 1) for item in items]
    if isinstance(value, bool) or isinstance(value, (float, str, datetime.date)):
        return _leaf(value, budget)
    if isinstance(value, int):
        return _leaf(value if _INT64[0] <= value <= _INT64[1] else str(value), budget)
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if callable(item) and (shape is None or tuple(shape) == ()):
        try:
            return _safe(item(), budget, depth + 1)
        except Exception:  # noqa: BLE001 - then its text
            pass
    return _leaf(str(value), budget)


def _leaf(value: Any, budget: list[int]) -> Any:
    budget[0] -= 1
    return value if budget[0] >= 0 else None


class OwnRun:
    """A run an integration opens itself from ``metrana.init`` keyword arguments, and closes.

    Opened on first use (so a framework's configuration can still go with it), closed at the
    end of training; used again after that (``trainer.test()`` after ``fit()``), it resumes the
    same run.
    """

    def __init__(self, who: str, arguments: Mapping[str, Any]) -> None:
        from .._api import _SESSION_OPTIONS, init

        code = init.__code__
        known = {*code.co_varnames[:code.co_argcount + code.co_kwonlyargcount],
                 *_SESSION_OPTIONS, "init_timeout"}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise TypeError(f"{who}: unexpected keyword argument(s) {', '.join(unknown)}; it takes "
                            "session= or the keyword arguments of metrana.init()")
        self.who = who
        self.arguments = dict(arguments)
        self.session: Session | None = None
        self._opened_before = False

    @property
    def user_config(self) -> Mapping[str, Any] | None:
        """The ``config=`` given with the keyword arguments."""
        config = self.arguments.get("config")
        return config if isinstance(config, Mapping) else None

    def open(self, config: Mapping[str, Any] | None = None) -> Session:
        """The run's session, opening (or resuming) it if needed."""
        session = self.session
        if session is not None and not session.is_closed:
            return session
        from .._api import session as open_session

        arguments = dict(self.arguments)
        if config:
            arguments["config"] = {**config, **(arguments.get("config") or {})}
        if self._opened_before:
            arguments["resume_strategy"] = "Allow"
        self.session = open_session(**arguments)
        self._opened_before = True
        return self.session

    def close(self) -> None:
        if self.session is not None and self.session.is_open:
            self.session.close()


def flush_quietly(session: Session, who: str, timeout: float | None = None) -> None:
    """Flush, bounded by the close timeout; a timeout is reported, never raised into training."""
    if not session.is_open:
        return
    try:
        session.flush(session.settings.close_timeout if timeout is None else timeout)
    except MetranaFlushTimeoutError as exc:
        say_for(session, "WARNING", f"{who}: {exc}")


def rank_guard(rank_zero_only: bool) -> Callable[[], bool]:
    """A check that says whether this process logs."""
    if not rank_zero_only:
        return lambda: True
    return lambda: global_rank() == 0


def histogram_every(value: Any, who: str) -> int | None:
    """``log_weight_histograms_every=``: None (off) or a positive int of steps."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: log_weight_histograms_every must be a positive int of steps "
                         f"(or None, off), got {value!r}")
    return value


def log_weight_histograms(session: Session, model: Any, step: int) -> int:
    """A histogram (64 bins) of each parameter tensor of ``model`` as ``weights/<name>`` at
    ``step``; returns how many. Duck-typed ``named_parameters()``: torch is never imported."""
    count = 0
    for name, parameter in model.named_parameters():
        if getattr(parameter, "numel", lambda: 1)() == 0:
            continue
        session.log_histogram(metric_name(f"weights/{name}"),
                              Histogram.from_values(parameter), step=step)
        count += 1
    return count
