"""The ``log*`` methods users call, over one engine: what every kind of session shares.

:class:`~metrana._thread_session.Session` runs its engine on a background thread
(``metrana.init()``, ``with metrana.session(...)``); :class:`~metrana._trio_session.TrioSession`
runs it in the caller's trio nursery (``async with metrana.open_session(...)``). Both inherit
this base — as httpx's ``Client`` and ``AsyncClient`` share ``BaseClient`` — and differ only in
how the engine starts, is waited for, and stops.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._config import Settings, check_notes, check_tags
from ._distributed import process_rank
from ._engine import Engine, EngineOptions
from ._enums import CloseStrategy, Distributed, ErrorStrategy, parse_choice
from ._exceptions import MetranaLoggerClosedError
from ._flatten import flatten_config
from ._inbox import Inbox
from ._job_summary import run_total
from ._log import say
from ._run_attributes import notes_change, tag_changes
from ._series import (
    MAX_STEP,
    PLAUSIBLE_NS,
    SeriesKey,
    SeriesTable,
    check_int,
    check_timestamp,
    coerce_value,
)
from ._stats import Counters, Metrics, close_advice
from ._values import HISTOGRAM, SCATTER, SCATTER3D, Histogram, as_histogram, make_scatter
from ._vector import (
    ArrayLike,
    Block,
    Steps,
    as_values,
    is_vector,
    one_each,
    per_env,
    rows,
    steps_for,
    timestamps_for,
)

__all__ = ["BaseSession", "State"]

_time_ns = time.time_ns


def _titles(**titles: str | None) -> tuple[tuple[str, str], ...]:
    """Axis titles as a scatter series keeps them (``x_title`` ... as metadata labels)."""
    out = []
    for axis, title in titles.items():
        if title is not None:
            if not isinstance(title, str):
                raise TypeError(f"{axis}_title must be a str, got {type(title).__name__}")
            out.append((f"{axis}_title", title))
    return tuple(out)


class State(enum.Enum):
    OPEN = "open"  # accepting points
    CLOSING = "closing"  # close() is running; log() raises
    CLOSED = "closed"  # finished; log() raises MetranaLoggerClosedError
    FORKED = "forked"  # inherited by a forked child: restarts on first use (thread sessions)


class BaseSession:
    """A run being logged: thread-safe ``log*`` calls, each cheap and never waiting on I/O."""

    def __init__(self, settings: Settings, attributes: list[dict[str, Any]] | None = None, *,
                 options: EngineOptions | None = None, can_block: bool = True) -> None:
        self.settings = settings
        self._attributes = attributes or []
        self._options = options or EngineOptions()
        self._can_block = can_block
        self._warned_timestamp = False
        self._final: Metrics | None = None
        self._closed_with: CloseStrategy | None = None
        self._close_timeout = settings.close_timeout
        rank = process_rank() if settings.distributed is Distributed.auto else None
        # Kept across a forked child's restart: items already built name its indices.
        self._table = SeriesTable(("rank", str(rank[0])) if rank is not None else None)
        self._check_reruns = True  # a forked child's restart logs alongside its parent
        self._build_engine()

    def _build_engine(self) -> None:
        """A fresh inbox, counters and engine (also a forked child's restart)."""
        s = self.settings
        self._counters = Counters()
        self._inbox = Inbox(self._counters, plain_names=self._table.plain_index,
                            maxsize=s.event_queue_max_size, strategy=s.backpressure_strategy,
                            can_block=self._can_block)
        self._engine = Engine(s, self._inbox, self._counters, self._table.keys, say=self._say,
                              attributes=self._attributes, options=self._options,
                              emit_system=self._log_system, check_reruns=self._check_reruns)
        self._errors = self._engine.errors
        self._append = self._inbox.append
        # The inbox's columns by plain name: what log("loss", 0.5) appends to (see log()).
        self._named = self._inbox.named
        self._inbox.on_change = self._refresh_fast
        self._errors.on_pending = self._refresh_fast
        self._state = State.OPEN

    @property
    def _state(self) -> State:
        return self._lifecycle

    @_state.setter
    def _state(self, value: State) -> None:
        self._lifecycle = value
        self._refresh_fast()

    @property
    def is_open(self) -> bool:
        """True while points are accepted (not closing, not closed)."""
        return self._state is State.OPEN

    @property
    def is_closed(self) -> bool:
        """True once close() has finished."""
        return self._state is State.CLOSED

    def __repr__(self) -> str:
        s = self.settings
        return (f"<metrana.{type(self).__name__} {s.workspace_name}/{s.project_name}/"
                f"{s.run_name} {self._state.value} at {s.ingestion_url}>")

    @property
    def run_name(self) -> str:
        """The run's name, as given to ``init()``."""
        return self.settings.run_name

    @property
    def resumed(self) -> bool:
        """True when the run existed and this session resumed it."""
        return self._engine.resumed

    def _say(self, level: str, message: str) -> None:
        say(self.settings.log_level, level, message)

    # ------------------------------------------------------------- tags and notes

    def add_tags(self, *tags: str) -> None:
        """Add tags to the run (``run.add_tags("baseline", "gpu")``); sent in the background.

        Raises:
            TypeError: a tag is not a string.
            MetranaConfigError: a tag is empty or longer than 200 characters.
            MetranaLoggerClosedError: the run is closed.
        """
        self._change_attributes(tag_changes(added=check_tags(list(tags), "add_tags()")))

    def remove_tags(self, *tags: str) -> None:
        """Remove tags from the run (those it does not have are ignored)."""
        self._change_attributes(tag_changes(removed=check_tags(list(tags), "remove_tags()")))

    def set_notes(self, notes: str) -> None:
        """Set the run's notes (a free text, shown and editable on its dashboard page)."""
        self._change_attributes(notes_change(check_notes(notes, "set_notes()")))

    def _update_config(self, config: Mapping[str, Any]) -> None:
        """Send more config (``config/…`` attributes) to the open run: what integrations learn
        only once training starts (SB3's hyper-parameters, a Trainer's arguments). A key sent
        before is overwritten."""
        self._change_attributes(flatten_config(config))

    def _change_attributes(self, attributes: list[dict[str, Any]]) -> None:
        if self._state is not State.OPEN:
            self._not_open()
        if attributes:
            self._engine.change_attributes(attributes)
            self._inbox.wake()

    # ------------------------------------------------------------ system metrics

    def _log_system(self, values: list[tuple[str, float]], ts: int) -> None:
        """Engine side: a reading of the system metrics, queued as points of ``system/…``
        series (see :mod:`metrana._actors.system_sampler`)."""
        table = self._table
        self._inbox.put_internal([(table.standard(name, None, None, False), value)
                                  for name, value in values], ts)

    # ----------------------------------------------------------- closing, counting

    def _close_plan(self, timeout: float | None, strategy: Any) -> tuple[CloseStrategy, float]:
        chosen = (self.settings.close_strategy if strategy is None
                  else parse_choice(CloseStrategy, strategy, "close(strategy=...)"))
        self._closed_with = chosen
        self._close_timeout = self.settings.close_timeout if timeout is None else float(timeout)
        return chosen, self._close_timeout

    def _finish(self, ended_by: str | None = None) -> None:
        """The engine has stopped: freeze the counters and say what happened to every point.
        ``ended_by``: the signal that is ending the process (the summary says so)."""
        self._state = State.CLOSED
        self._final = self._snapshot() if ended_by is None else self._inbox.snapshot(wait=0.1)
        final = self._final
        s = self.settings
        who = (f" (writer {s.logger_id} of job {s.orchestration_id}: this process's points)"
               if s.orchestration_id is not None else "")
        message = f"closed run {s.run_name}{who}: {final.summary()}"
        if ended_by is not None:
            message = f"{ended_by}: {message}"
            if final.pending:
                message += (f". {final.pending:,} points were still in memory when the process "
                            "ended (they could not be written to the spool in time)")
        level = "WARNING" if final.dropped or final.pending or final.spooled else "SUCCESS"
        for advice in close_advice(final, self.settings, self._closed_with, self._close_timeout,
                                   self._inbox.failure):
            message += f". {advice}"
        if self._engine.from_others:
            message += (f". {self._engine.from_others:,} points other processes of this run "
                        "left in its spool were delivered too")
        ends = self._engine.ends
        if ends.refused:
            message += (f". {ends.refused:,} of the invalid points would have gone before the "
                        f"points run {self.settings.run_name} already stores (the first: "
                        f"{ends.first_refusal}); log a rerun to a new run_name, or pass "
                        "resume_strategy='Never' to refuse reruns")
        if final.spooled:
            by = ("the close() of this run in the process that started it (or another), "
                  if ended_by is not None else "")
            message += (f". {final.spooled:,} points wait in {self._engine.spool_dir}: they are "
                        f"delivered by {by}the next init() of this run, or by `metrana sync "
                        f"{self._engine.spool_dir}`")
        if who and ended_by is None and not final.spooled:
            total = run_total(s)  # rank 0 only: the whole run, as the server has it
            if total is not None:
                message += f". {total}"
        self._say(level, message)

    def _checked_final(self) -> Metrics:
        assert self._final is not None
        if self._errors.strategy is ErrorStrategy.RaiseOnClose:
            group = self._errors.take()
            if group is not None:
                raise group
        return self._final

    def get_metrics(self) -> Metrics:
        """A snapshot of this session's counters."""
        return self._final if self._final is not None else self._snapshot()

    def _snapshot(self) -> Metrics:
        return self._inbox.snapshot()

    # ------------------------------------------------------------- the log path

    def _refresh_fast(self) -> None:
        """Recompute the one flag the hot paths read (see :meth:`log`)."""
        self._fast = (
            self._lifecycle is State.OPEN
            and self._inbox.open
            and not self._inbox.bounded
            and not self._errors.raise_pending
        )

    def _queue(self, item: Any) -> None:
        """Queue one checked item: lock-free when open and unbounded, else the general path."""
        if self._fast:
            self._append(item)
        else:
            self._put(item)

    def _put(self, item: Any) -> None:
        """The general path: state checks, held errors, backpressure."""
        self._admit()
        self._inbox.put(item)

    def _admit(self) -> None:
        """What the general path checks before the inbox takes a point: the session is open
        (a forked child restarts here, with a fresh inbox), and held errors are raised."""
        if self._state is not State.OPEN:
            self._not_open()
        if self._errors.raise_pending:
            self._raise_held()

    def _put_point(self, key: SeriesKey, step: int | None, value: float, ts: int) -> None:
        """One checked point of a standard scalar series, to the inbox (which decides between
        the series' column and the deque)."""
        if not self._fast:
            self._admit()
        self._inbox.put_point(key, step, value, ts)

    def _not_open(self) -> None:
        raise MetranaLoggerClosedError(
            f"the logger is {self._state.value}; call metrana.init() to start another run")

    def _raise_held(self) -> None:
        group = self._errors.take()
        self._refresh_fast()
        if group is not None:
            raise group

    def _timestamp(self, value: Any) -> int:
        """A given timestamp, checked; one that looks like seconds or milliseconds warns once."""
        ns = check_timestamp(value)
        if ns < PLAUSIBLE_NS and not self._warned_timestamp:
            self._warned_timestamp = True
            self._say("WARNING", f"timestamp {ns} is before 1973 as Unix nanoseconds: it looks "
                                 "like seconds or milliseconds. Timestamps are integer "
                                 "nanoseconds (time.time_ns(), or int(seconds * 1e9)); it is "
                                 "stored as given")
        return ns

    def log(
        self,
        metric_name: str | Mapping[str, Any],
        value: Any = None,
        scale: Any = None,
        step: Steps = None,
        labels: Mapping[str, str] | None = None,
        evaluation: bool = False,
        timestamp: Steps = None,
    ) -> None:
        """Log one value (``log("loss", 0.5)``) or several (``log({"loss": 0.5, "acc": 0.9})``).

        With a 1-D sequence or array of values, ``step`` is the first step or one per value,
        and ``timestamp`` one for all or one per value (Unix ns).

        Raises:
            TypeError: the value or labels have the wrong type.
            MetranaMetricNameError: the name is empty or has whitespace.
            MetranaEventQueueFullError: the queue is full and backpressure is Raise.
        """
        # The call users make millions of times — a known name, a float, nothing else — is a
        # few identity checks, one dict lookup (the name's column in the inbox), a clock read
        # and one list.extend. Everything else takes the general path below, which validates,
        # explains errors and applies backpressure. (metrana.log is this very method, bound to
        # the global session: see metrana._api._bind_log.)
        if (self._fast and value.__class__ is float and scale is None and labels is None
                and step is None and timestamp is None and not evaluation):
            try:
                self._named[metric_name]((value, _time_ns()))
                return
            except (KeyError, TypeError):
                pass  # a name without a column yet (or not a name): the general path
        if type(metric_name) is dict:
            if (value is None and scale is None and step is None and labels is None
                    and timestamp is None and not evaluation and self._fast):
                columns = self._named
                pairs = []
                try:  # every name and value checked before any point is appended
                    # (a loop, not a comprehension: one would make `columns` a cell, built
                    # on every call of log(), the scalar calls too)
                    for name, raw in metric_name.items():
                        pairs.append((columns[name], raw if type(raw) is float
                                      else coerce_value(raw, name)))
                except (KeyError, TypeError):
                    pass  # a new or bad name: the general path says what is wrong
                else:
                    now = _time_ns()
                    for append, number in pairs:
                        append((number, now))
                    return
            self._log_many(metric_name, value, scale, step, labels, evaluation, timestamp)
            return
        key = None
        if labels is None and scale is None and type(metric_name) is str:
            key = (self._table.eval_by_name if evaluation else self._table.by_name).get(metric_name)
        if key is None:
            if type(metric_name) is dict or isinstance(metric_name, Mapping):
                self._log_many(metric_name, value, scale, step, labels, evaluation, timestamp)
                return
            if labels is None and type(metric_name) is str:
                key = self._table.other.get((metric_name, scale, evaluation))
            if key is None:
                key = self._table.standard(metric_name, scale, labels, evaluation)
        if type(value) is not float:
            if is_vector(value):
                self._log_block(key, value, step, timestamp)
                return
            value = coerce_value(value, key.name)
        if step is not None:
            step = check_int(step, "step")
        self._put_point(key, step, value,
                        _time_ns() if timestamp is None else self._timestamp(timestamp))

    def log_distributed(
        self,
        metric_name: str,
        value: Any,
        step: int,
        *,
        labels: Mapping[str, str] | None = None,
        scale: Any = None,
        evaluation: bool = False,
        timestamp: int | None = None,
    ) -> None:
        """Log one value of a series every process of the job writes, at a global ``step``
        they agree on (``log_distributed("loss", loss, step=global_step)`` in each rank).

        Each process's point is kept under its ``logger_id`` (the rank, else ``host:pid``);
        the server serves the series merged: per step the mean across the writers, with min,
        max and count (the dashboard's merged curve and band; ``metrana.query``'s
        ``fetch_distributed_series``). Steps are absolute and strictly increasing per process.

        Raises:
            TypeError: the value, step or labels have the wrong type (``step`` is required).
            ValueError: the labels use ``writer`` (metrana sets it).
            MetranaMetricNameError: the name is empty or has whitespace.
        """
        if step is None:
            raise TypeError(f"log_distributed({metric_name!r}, ...) needs step=: the global "
                            "step every process of the job logs this value at")
        if self._state is State.FORKED:
            self._not_open()  # a forked child's engine, and its own logger_id, first
        key = self._table.distributed(metric_name, scale, labels, evaluation,
                                      self.settings.logger_id)
        if type(value) is not float:
            value = coerce_value(value, key.name)
        self._put_point(key, check_int(step, "step"), value,
                        _time_ns() if timestamp is None else self._timestamp(timestamp))

    @property
    def logger_id(self) -> str:
        """This process's name among the run's writers (``init(logger_id=...)``)."""
        return self.settings.logger_id

    @property
    def orchestration_id(self) -> str | None:
        """The job this process belongs to (None: not part of one); see ``init()``."""
        return self.settings.orchestration_id

    @property
    def joined(self) -> bool:
        """True when another process of the same job had created the run and this one
        joined it (not a rerun)."""
        creator = self._engine.creator
        return creator is not None and creator.joined

    def log_histogram(
        self,
        metric_name: str,
        histogram: Histogram | ArrayLike,
        step: int | None = None,
        *,
        scale: Any = None,
        labels: Mapping[str, str] | None = None,
        evaluation: bool = False,
        timestamp: int | None = None,
    ) -> None:
        """Log one histogram: a :class:`metrana.Histogram`, or an array of values binned by
        ``Histogram.from_values`` (64 bins over their range).

        ``step``: automatic per series (as ``log``), or given; a given step that is already
        stored is overwritten (the last write wins).

        Raises:
            TypeError: not a Histogram or array; the metric already holds another kind.
            ValueError: a bad histogram (see :class:`metrana.Histogram`).
        """
        key = self._table.valued(metric_name, HISTOGRAM, scale, labels, evaluation)
        self._queue_value(key, step, as_histogram(histogram, key.name), timestamp)

    def log_scatter(
        self,
        metric_name: str,
        xs: ArrayLike,
        ys: ArrayLike,
        step: int | None = None,
        *,
        x_title: str | None = None,
        y_title: str | None = None,
        labels: Mapping[str, str] | None = None,
        evaluation: bool = False,
        timestamp: int | None = None,
    ) -> None:
        """Log one step's 2-D point cloud: ``xs`` and ``ys`` of equal length, 0 to 32,768
        finite points. Axis titles are the series' own, fixed at its first call. Steps as
        :meth:`log_histogram` (a given step already stored is overwritten)."""
        key = self._table.valued(metric_name, SCATTER, None, labels, evaluation,
                                 _titles(x=x_title, y=y_title))
        self._queue_value(key, step, make_scatter(key.name, xs, ys), timestamp)

    def log_scatter3d(
        self,
        metric_name: str,
        xs: ArrayLike,
        ys: ArrayLike,
        zs: ArrayLike,
        step: int | None = None,
        *,
        x_title: str | None = None,
        y_title: str | None = None,
        z_title: str | None = None,
        labels: Mapping[str, str] | None = None,
        evaluation: bool = False,
        timestamp: int | None = None,
    ) -> None:
        """Log one step's 3-D point cloud; see :meth:`log_scatter`."""
        key = self._table.valued(metric_name, SCATTER3D, None, labels, evaluation,
                                 _titles(x=x_title, y=y_title, z=z_title))
        self._queue_value(key, step, make_scatter(key.name, xs, ys, zs, three_d=True), timestamp)

    def _queue_value(self, key: SeriesKey, step: Any, value: Any, timestamp: Any) -> None:
        """A checked histogram or cloud into the deque, as a scalar point with a manual or
        automatic step goes (never a column: its value is not a float)."""
        if step is not None:
            step = check_int(step, "step")
        ts = _time_ns() if timestamp is None else self._timestamp(timestamp)
        if step is not None:
            key.manual_seen = True
        self._queue((key.index, step, None, value, ts))

    def _log_block(self, key: SeriesKey, values: Any, step: Any, timestamp: Any) -> None:
        """``log(name, [v0, v1, ...])``: consecutive points of one series in one call;
        ``timestamp`` one for all, or one per value (points recorded earlier, e.g. imported)."""
        floats = as_values(values, key.name)
        steps = steps_for(step, len(floats), "step")
        stamps: int | list[int]
        if timestamp is not None and is_vector(timestamp):
            stamps = timestamps_for(timestamp, len(floats))
            if stamps:
                self._timestamp(min(stamps))  # warns once if they look like seconds
        else:
            stamps = _time_ns() if timestamp is None else self._timestamp(timestamp)
        self._put_blocks([self._block(key, steps, None, floats, stamps)], len(floats))

    def _block(self, key: SeriesKey, steps: Any, major: int | None, floats: list[float],
               ts: int | list[int]) -> Block:
        self._inbox.demote(key)
        if steps is not None:
            key.manual_seen = True
        key.vector_seen = True
        return Block(key, steps, major, floats, ts)

    def _put_blocks(self, blocks: list[Block], points: int) -> None:
        if self._state is not State.OPEN:
            self._not_open()
        if self._errors.raise_pending:
            self._raise_held()
        self._inbox.put_blocks(blocks, points)

    def _log_many(
        self,
        values: Mapping[str, Any],
        value: Any,
        scale: Any,
        step: Steps,
        labels: Mapping[str, str] | None,
        evaluation: bool,
        timestamp: Steps,
    ) -> None:
        if value is not None:
            raise TypeError("log(dict) takes no separate value; put the values in the dict")
        if step is not None:
            step = check_int(step, "step")
        ts = _time_ns() if timestamp is None else self._timestamp(timestamp)
        points: list[tuple[SeriesKey, float]] = []
        cache = ((self._table.eval_by_name if evaluation else self._table.by_name)
                 if labels is None and scale is None else None)
        for name, raw in values.items():
            key = cache.get(name) if cache is not None and type(name) is str else None
            if key is None:
                key = self._table.standard(name, scale, labels, evaluation)
            points.append((key, raw if type(raw) is float else coerce_value(raw, name)))
        # All values are checked before any is queued: a bad one loses nothing else.
        for key, number in points:
            self._put_point(key, step, number, ts)

    def log_rl_step(
        self,
        metric_name: str,
        value: Any,
        evaluation: bool = False,
        step: int | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """A per-gradient-update metric (scale ML_STEP)."""
        self.log(metric_name, value, None, step, labels, evaluation, timestamp)

    def log_rl_episode(
        self,
        metric_name: str,
        value: Any,
        rl_step: int,
        evaluation: bool = False,
        episode: Steps = None,
        env_id: str | int | Sequence[str | int] | ArrayLike | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """A per-episode metric (scale EPISODE); ``episode`` is the step, auto-incremented
        per (metric, env, labels) series.

        Vectorized: ``env_id=[...]`` (M environments) with ``value`` of shape ``[M]``, one
        finished episode each; ``episode`` an int or M ints (automatic per environment when
        left out).
        """
        key = None
        if labels is None and (env_id is None or type(env_id) is str):
            key = self._table.other.get((metric_name, "EPISODE", env_id, None, evaluation))
        if key is None:
            if is_vector(env_id):
                self._log_episodes(metric_name, value, rl_step, evaluation, episode, env_id,
                                   labels, timestamp)
                return
            key = self._table.rl(metric_name, "EPISODE", env_id, None, labels, evaluation)
        if type(rl_step) is not int or not 0 <= rl_step <= MAX_STEP:
            rl_step = check_int(rl_step, "rl_step")
        if episode is not None:
            episode = check_int(episode, "episode")
        if type(value) is not float:
            value = coerce_value(value, metric_name)
        self._queue((key.index, episode, rl_step, value,
                     _time_ns() if timestamp is None else self._timestamp(timestamp)))

    def log_rl_environment_step(
        self,
        metric_name: str,
        value: Any,
        rl_step: int,
        evaluation: bool = False,
        env_step: Steps = None,
        episode: Steps = None,
        env_id: str | int | Sequence[str | int] | ArrayLike | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """A per-environment-interaction metric (scale ENVIRONMENT_STEP); ``env_step`` is the
        step, auto-incremented per (metric, env, episode, labels) series.

        Vectorized: ``env_id=[...]`` (M environments) with ``value`` of shape ``[M]`` or
        ``[M, T]`` (T consecutive steps per environment), ``episode`` an int or M ints; or one
        ``env_id`` with a 1-D ``value`` of T steps. ``env_step`` is then the first step.
        """
        key = None
        if (labels is None and type(value) is float and (env_id is None or type(env_id) is str)
                and (episode is None or type(episode) is int)):
            key = self._table.other.get((metric_name, "ENVIRONMENT_STEP", env_id, episode,
                                        evaluation))
        if key is None:
            if is_vector(env_id) or is_vector(value):
                self._log_env_steps(metric_name, value, rl_step, evaluation, env_step, episode,
                                    env_id, labels, timestamp)
                return
            if episode is not None:
                episode = check_int(episode, "episode")
            key = self._table.rl(metric_name, "ENVIRONMENT_STEP", env_id, episode, labels,
                               evaluation)
        if type(rl_step) is not int or not 0 <= rl_step <= MAX_STEP:
            rl_step = check_int(rl_step, "rl_step")
        if env_step is not None:
            env_step = check_int(env_step, "env_step")
        if type(value) is not float:
            value = coerce_value(value, metric_name)
        self._queue((key.index, env_step, rl_step, value,
                     _time_ns() if timestamp is None else self._timestamp(timestamp)))

    def _log_episodes(self, name: str, values: Any, rl_step: Any, evaluation: bool,
                      episode: Any, env_id: Any, labels: Any, timestamp: int | None) -> None:
        """``log_rl_episode`` for M environments: every argument checked, then the M points
        queued as M scalar calls would queue them (one finished episode is one point, so a
        :class:`Block` per environment would only cost more, here and in the engine)."""
        rl_step = check_int(rl_step, "rl_step")
        envs = env_id.tolist() if hasattr(env_id, "tolist") else list(env_id)
        floats = one_each(values, len(envs), name)
        episodes = [None if ep is None else check_int(ep, "episode")
                    for ep in per_env(episode, len(envs), "episode")]
        table = self._table
        cache = table.other if labels is None and type(name) is str else {}
        keys = []
        for env in envs:
            key = cache.get((name, "EPISODE", env, None, evaluation))
            keys.append(key if key is not None
                        else table.rl(name, "EPISODE", env, None, labels, evaluation))
        ts = _time_ns() if timestamp is None else self._timestamp(timestamp)
        items = [(key.index, ep, rl_step, value, ts)
                 for key, ep, value in zip(keys, episodes, floats, strict=True)]
        if self._fast:
            self._inbox.extend(items)
        else:
            for item in items:
                self._put(item)

    def _log_env_steps(self, name: str, values: Any, rl_step: Any, evaluation: bool,
                       env_step: Any, episode: Any, env_id: Any, labels: Any,
                       timestamp: int | None) -> None:
        rl_step = check_int(rl_step, "rl_step")
        if is_vector(env_id):
            envs = env_id.tolist() if hasattr(env_id, "tolist") else list(env_id)
            value_rows = rows(values, len(envs), name)
            episodes = per_env(episode, len(envs), "episode")
        else:
            envs, value_rows, episodes = [env_id], [as_values(values, name)], [episode]
        stamp = _time_ns() if timestamp is None else self._timestamp(timestamp)
        blocks = []
        points = 0
        for env, ep, floats in zip(envs, episodes, value_rows, strict=True):
            ep = None if ep is None else check_int(ep, "episode")
            key = self._table.rl(name, "ENVIRONMENT_STEP", env, ep, labels, evaluation)
            steps = steps_for(env_step, len(floats), "env_step")
            blocks.append(self._block(key, steps, rl_step, floats, stamp))
            points += len(floats)
        self._put_blocks(blocks, points)
