"""The module-level API (``metrana.init/log/close`` and the RL helpers) over one global
session, plus the session constructors, fork handling and the at-exit close."""

from __future__ import annotations

import atexit
import difflib
import inspect
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ._config import (
    LIKELY_MEANT,
    SPOOL_DIR_DEFAULT,
    AggregationRule,
    SpoolDirDefault,
    resolve_settings,
)
from ._disabled_session import DisabledSession
from ._distributed import process_rank
from ._engine import EngineOptions
from ._enums import Distributed
from ._exceptions import MetranaNotInitializedError
from ._flatten import flatten_config
from ._orchestration import export_orchestration_id
from ._run_attributes import run_attributes
from ._session_types import AsyncSession, Session
from ._stats import Counters, Metrics
from ._thread_session import DEFAULT_INIT_TIMEOUT, ThreadSession, live_sessions
from ._trio_session import TrioSession
from ._vector import ArrayLike, Steps

__all__ = [
    "add_tags",
    "close",
    "flush",
    "get_metrics",
    "init",
    "log",
    "log_distributed",
    "log_rl_environment_step",
    "log_rl_episode",
    "log_rl_step",
    "open_session",
    "remove_tags",
    "session",
    "set_notes",
]

_session: ThreadSession | DisabledSession | None = None
_lock = threading.Lock()


# Keyword arguments beyond init()'s: test and benchmark hooks, plus ``compress`` (gzip request
# bodies: True, False, or None = only for non-loopback services). See EngineOptions.
_SESSION_OPTIONS = tuple(field.name for field in attrs.fields(EngineOptions))

def _public_arguments() -> list[str]:
    return [*_init_parameters(), "compress"]


def _unknown_keywords_message(caller: str, unknown: list[str]) -> str:
    """``init() got an unexpected keyword argument 'workspace' (did you mean workspace_name?)``"""
    known = _public_arguments()
    parts = []
    for name in unknown:
        guess = LIKELY_MEANT.get(name.lower())
        if guess is None:
            close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
            guess = close[0] if close else None
        if guess == "mode":
            guess = 'mode="offline"'
        hint = f" (did you mean {guess}?)" if guess else ""
        parts.append(f"{name!r}{hint}")
    noun = "argument" if len(unknown) == 1 else "arguments"
    return (f"{caller}() got an unexpected keyword {noun} {', '.join(parts)}; "
            f"its arguments are: {', '.join(known)}")


def _build(arguments: dict[str, Any], cls: type[ThreadSession] | type[TrioSession], caller: str,
           attributes: Sequence[dict[str, Any]] = (),
           ) -> tuple[ThreadSession | TrioSession | DisabledSession, float]:
    """Validate init()-style arguments into a (not yet started) session.

    ``caller`` names the public function (``init``, ``session``, ``open_session``) in errors;
    ``attributes``: wire attribute updates sent besides the config's (``metrana import``'s
    ``import/source`` and ``tags/...``).
    """
    arguments = dict(arguments)
    options = arguments.pop("options", {}) or {}
    unknown = set(options) - set(_SESSION_OPTIONS) - {"init_timeout"}
    if unknown:
        raise TypeError(_unknown_keywords_message(caller, sorted(unknown)))
    init_timeout = float(options.pop("init_timeout", DEFAULT_INIT_TIMEOUT))
    config = arguments.pop("config", None)
    settings = resolve_settings(arguments)
    export_orchestration_id(settings.orchestration_id)  # children join the same run
    attributes = [*(flatten_config(config) if config is not None else []), *attributes]
    rank = process_rank()
    if settings.distributed is Distributed.rank0 and rank is not None and rank[0] != 0:
        return DisabledSession(settings, rank[0]), init_timeout
    attributes += run_attributes(settings)
    return cls(settings, attributes, options=EngineOptions(**options)), init_timeout


def init(
    api_key: str | None = None,
    workspace_name: str = "",
    project_name: str = "",
    run_name: str = "",
    experiment_name: str | None = None,
    resume_strategy: Any = None,
    backpressure_strategy: Any = None,
    error_strategy: Any = None,
    close_strategy: Any = None,
    log_level: Any = None,
    aggregation_rules: Sequence[AggregationRule | Mapping[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    num_dispatch_workers: int | None = None,
    ingestion_url: str | None = None,
    *,
    event_queue_max_size: int | None = None,
    dispatch_queue_max_size: int | None = None,
    error_queue_max_size: int | None = None,
    close_timeout: float | None = None,
    spool_dir: str | os.PathLike[str] | SpoolDirDefault | None = SPOOL_DIR_DEFAULT,
    spool_max_bytes: int | None = None,
    mode: str | None = None,
    distributed: str | None = None,
    tags: Sequence[str] | None = None,
    notes: str | None = None,
    capture_context: bool | None = None,
    system_metrics_interval: float | None = None,
    orchestration_id: str | None = None,
    logger_id: str | None = None,
    **options: Any,
) -> Session:
    """Start logging a run; every argument left as None is read from its environment variable.

    Returns the global :class:`Session` (the module functions log to it). Calling ``init()``
    again while a run is open warns and keeps the first run.

    ``spool_dir`` (default ``~/.metrana/spool``, env ``METRANA_SPOOL_DIR``) is where points wait
    on disk when the service cannot take them; ``None`` or ``"off"`` switches the spool off.
    ``mode="offline"`` (env ``METRANA_MODE``) sends nothing: every point goes to the spool, for
    ``metrana sync`` to deliver later. ``distributed`` (env ``METRANA_DISTRIBUTED``) says what
    each process of a distributed job does: ``"auto"`` labels its series ``rank=<RANK>``,
    ``"rank0"`` logs from rank 0 only, ``"off"`` ignores the launcher's environment.
    ``orchestration_id`` (env ``METRANA_ORCHESTRATION_ID``; else torchrun's, Slurm's or Ray's
    job id) makes every process of one job that calls ``init()`` with the same names write one
    run: the first creates it, the others join it; ``logger_id`` (default: the rank, else
    ``host:pid``) names this process among the run's writers (see :func:`log_distributed`).

    ``tags`` (strings) are added to the run's tags and ``notes`` set its notes (the run
    attributes ``sys/tags`` and ``sys/notes``; change them later with :func:`add_tags`,
    :func:`remove_tags`, :func:`set_notes`, or in the dashboard). ``capture_context`` (default
    True, env ``METRANA_CAPTURE_CONTEXT``) records what produced the run under ``context/``:
    the git commit, branch, dirty flag and remote, the command line, working directory, host,
    user, Python, OS and versions of frameworks already imported (never an environment
    variable's value or a key). ``system_metrics_interval`` (default 15 s, env
    ``METRANA_SYSTEM_METRICS_INTERVAL``; 0 turns it off) samples CPU, memory, disk, network
    and GPUs into ``system/…`` series, on the engine's thread.

    Raises:
        MetranaConfigError: a strategy, size or URL is invalid (the message lists the choices).
        NoMetranaApiKeyError: no API key for a non-loopback service.
        TypeError: ``config`` holds a value of an unsupported type.
        MetranaRunAlreadyExistsError: the run exists and ``resume_strategy="Never"``.
        MetranaApiError: the service refused to create the run (e.g. HTTP 401).
    """
    global _session
    arguments = dict(locals())
    with _lock:
        current = _session
        if current is not None and current.is_open:
            warnings.warn(
                f"metrana.init() called while run {current.run_name!r} is open; keeping it "
                "(call metrana.close() first to start another run)",
                stacklevel=2,
            )
            return current
        created, init_timeout = _build(arguments, ThreadSession, "init")
        assert not isinstance(created, TrioSession)
        created.start(init_timeout)
        _session = created
        _bind_log(created)
        return created


def session(**arguments: Any) -> Session:
    """Start a run and return its :class:`Session`: ``with metrana.session(...) as run:``.

    Takes the keyword arguments of :func:`init`. The block's exit closes the run (also when
    the body raises). Independent of the global run of :func:`init`.
    """
    created, init_timeout = _build(_with_options(arguments), ThreadSession, "session")
    assert not isinstance(created, TrioSession)
    created.start(init_timeout)
    return created


def _init_parameters() -> tuple[str, ...]:
    """init()'s named parameters (not ``**options``), in order."""
    return tuple(name for name, parameter in inspect.signature(init).parameters.items()
                 if parameter.kind is not inspect.Parameter.VAR_KEYWORD)


def _with_options(arguments: dict[str, Any]) -> dict[str, Any]:
    known = set(_init_parameters())
    out = {name: value for name, value in arguments.items() if name in known}
    out.setdefault("spool_dir", SPOOL_DIR_DEFAULT)
    out["options"] = {name: value for name, value in arguments.items() if name not in known}
    return out


@asynccontextmanager
async def open_session(**arguments: Any) -> AsyncIterator[AsyncSession]:
    """In a trio program: ``async with metrana.open_session(...) as run:``.

    Takes the keyword arguments of :func:`init`. The engine runs in this task's nursery (no
    thread); ``run.log(...)`` stays synchronous. Leaving the block closes the run per the close
    strategy, also when the body raises.

    Raises:
        RuntimeError: not called from trio (e.g. from asyncio): use ``metrana.session()``.
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(
            "metrana.open_session() runs its engine in a trio nursery and must be used from a "
            "trio program; from asyncio (or any other event loop, or no loop) use "
            "`with metrana.session(...) as run:`, whose engine runs on its own thread, and "
            "call run.log(...) as usual") from None
    built, init_timeout = _build(_with_options(arguments), TrioSession, "open_session")
    if isinstance(built, DisabledSession):
        try:
            yield built
        finally:
            await built.aclose()  # closed when the block ends, as a real run is
        return
    assert isinstance(built, TrioSession)
    async with built.running(init_timeout) as run:
        yield run


def _bind_log(target: ThreadSession | DisabledSession | None) -> None:
    """Point ``metrana.log`` at the global run's bound ``log`` method: the one way ``log`` is
    bound (a session's ``log`` is always :meth:`BaseSession.log`, whose first lines are the
    fast path; nothing replaces it per instance).

    ``metrana.log(...)`` is the call users make millions of times; going through the module
    function below costs one more Python frame (~0.1 µs, a third of the call). The module
    function stays the fallback: before ``init()``, and for ``from metrana import log``. A
    forked child's restart keeps the same session object, so the binding holds there too.
    """
    package = sys.modules.get("metrana")
    if package is not None:
        package.log = target.log if target is not None else log  # type: ignore[attr-defined]


def _reset() -> None:
    """Forget the global run (tests)."""
    global _session
    _session = None
    _bind_log(None)


def _current() -> ThreadSession | DisabledSession:
    current = _session
    if current is None:
        raise not_initialized("call metrana.init(...) before logging")
    return current


def not_initialized(message: str) -> MetranaNotInitializedError:
    """The error for a call that needs ``init()`` first; in a worker process it says why
    the parent's ``init()`` does not count: a spawned (or forkserver) worker is a fresh
    interpreter, and only a forked one inherits the parent's run."""
    if multiprocessing.parent_process() is not None:
        message += (". This is a worker process, and a spawned worker starts empty, without "
                    "its parent's run: call metrana.init(...) in the worker with the same "
                    "workspace_name, project_name and run_name to log to the same run (see "
                    "'Worker processes' in docs/guarantees.md)")
    return MetranaNotInitializedError(message)


def log(
    metric_name: Any,
    value: Any = None,
    scale: Any = None,
    step: Steps = None,
    labels: Mapping[str, str] | None = None,
    evaluation: bool = False,
    timestamp: Steps = None,
) -> None:
    """Log a metric value, or a dict of them, to the run started by :func:`init`.

    See :meth:`Session.log`.
    """
    current = _session
    if current is None:
        raise not_initialized("call metrana.init(...) before metrana.log()")
    current.log(metric_name, value, scale, step, labels, evaluation, timestamp)


def log_rl_step(metric_name: str, value: Any, evaluation: bool = False, step: int | None = None,
                labels: Mapping[str, str] | None = None, timestamp: int | None = None) -> None:
    """A per-gradient-update metric. See :meth:`Session.log_rl_step`."""
    _current().log(metric_name, value, None, step, labels, evaluation, timestamp)


def log_rl_episode(metric_name: str, value: Any, rl_step: int, evaluation: bool = False,
                   episode: Steps = None,
                   env_id: str | int | Sequence[str | int] | ArrayLike | None = None,
                   labels: Mapping[str, str] | None = None, timestamp: int | None = None) -> None:
    """A per-episode metric, or one per environment (``env_id=[...]``, values ``[M]``).
    See :meth:`Session.log_rl_episode`."""
    _current().log_rl_episode(metric_name, value, rl_step, evaluation, episode, env_id, labels,
                              timestamp)


def log_rl_environment_step(metric_name: str, value: Any, rl_step: int, evaluation: bool = False,
                            env_step: Steps = None, episode: Steps = None,
                            env_id: str | int | Sequence[str | int] | ArrayLike | None = None,
                            labels: Mapping[str, str] | None = None,
                            timestamp: int | None = None) -> None:
    """A per-environment-step metric. See :meth:`Session.log_rl_environment_step`."""
    _current().log_rl_environment_step(metric_name, value, rl_step, evaluation, env_step,
                                       episode, env_id, labels, timestamp)


def log_distributed(metric_name: str, value: Any, step: int, *,
                    labels: Mapping[str, str] | None = None, scale: Any = None,
                    evaluation: bool = False, timestamp: int | None = None) -> None:
    """One value of a series every process of the job writes at a global step, merged by
    the server across the processes. See :meth:`Session.log_distributed`."""
    _current().log_distributed(metric_name, value, step, labels=labels, scale=scale,
                               evaluation=evaluation, timestamp=timestamp)


def log_histogram(metric_name: str, histogram: Any, step: int | None = None, *,
                  scale: Any = None, labels: Mapping[str, str] | None = None,
                  evaluation: bool = False, timestamp: int | None = None) -> None:
    """Log a histogram (a :class:`metrana.Histogram`, or values to bin).
    See :meth:`Session.log_histogram`."""
    _current().log_histogram(metric_name, histogram, step, scale=scale, labels=labels,
                             evaluation=evaluation, timestamp=timestamp)


def log_scatter(metric_name: str, xs: Any, ys: Any, step: int | None = None, *,
                x_title: str | None = None, y_title: str | None = None,
                labels: Mapping[str, str] | None = None, evaluation: bool = False,
                timestamp: int | None = None) -> None:
    """Log one step's 2-D point cloud. See :meth:`Session.log_scatter`."""
    _current().log_scatter(metric_name, xs, ys, step, x_title=x_title, y_title=y_title,
                           labels=labels, evaluation=evaluation, timestamp=timestamp)


def log_scatter3d(metric_name: str, xs: Any, ys: Any, zs: Any, step: int | None = None, *,
                  x_title: str | None = None, y_title: str | None = None,
                  z_title: str | None = None, labels: Mapping[str, str] | None = None,
                  evaluation: bool = False, timestamp: int | None = None) -> None:
    """Log one step's 3-D point cloud. See :meth:`Session.log_scatter3d`."""
    _current().log_scatter3d(metric_name, xs, ys, zs, step, x_title=x_title, y_title=y_title,
                             z_title=z_title, labels=labels, evaluation=evaluation,
                             timestamp=timestamp)


def close(timeout: float | None = None, *, strategy: Any = None) -> Metrics:
    """Close the run started by :func:`init`. See :meth:`Session.close`.

    With no run started (``init()`` was never called, or it raised), there is nothing to
    close: this returns all-zero metrics instead of raising. ``close()`` often sits in a
    ``finally:`` after ``init()``; raising there would hide the error that ``init()`` raised.
    """
    current = _session
    if current is None:
        return Counters().snapshot()
    return current.close(timeout, strategy=strategy)


def add_tags(*tags: str) -> None:
    """Add tags to the run started by :func:`init`. See :meth:`Session.add_tags`."""
    _current().add_tags(*tags)


def remove_tags(*tags: str) -> None:
    """Remove tags from the run started by :func:`init`."""
    _current().remove_tags(*tags)


def set_notes(notes: str) -> None:
    """Set the notes of the run started by :func:`init`."""
    _current().set_notes(notes)


def flush(timeout: float | None = None) -> None:
    """Wait until every point logged so far is acknowledged or durable in the spool.

    Raises:
        MetranaFlushTimeoutError: not done within ``timeout`` seconds; nothing is dropped.
    """
    _current().flush(timeout)


def get_metrics() -> Metrics:
    """Counters of the run started by :func:`init` (logged, sent, dropped, ...)."""
    return _current().get_metrics()


def _after_fork_in_child() -> None:
    for live in list(live_sessions):
        live._after_fork_in_child()


def _close_at_exit() -> None:
    """Deliver what runs left open still hold, and say so in metrana's voice.

    Not ``warnings.warn``: at exit there is no user line to point at, and Python would print
    the ``warnings.warn(`` line of this function instead. The message goes through the run's
    own logger (and its ``log_level``), like every other metrana message.
    """
    for live in list(live_sessions):
        live._close_at_exit()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
