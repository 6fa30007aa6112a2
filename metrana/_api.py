"""The module-level API (``metrana.init/log/close`` and the RL helpers) over one global
session, plus the session constructors, fork handling and the at-exit close."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._config import AggregationRule, resolve_settings
from ._exceptions import MetranaNotInitializedError
from ._flatten import flatten_config
from ._session import Session, State, TrioSession, live_sessions
from ._stats import Metrics

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "close",
    "get_metrics",
    "init",
    "log",
    "log_rl_environment_step",
    "log_rl_episode",
    "log_rl_step",
    "open_session",
    "session",
]

_session: Session | None = None
_lock = threading.Lock()


def _build(
    api_key: str | None,
    workspace_name: str,
    project_name: str,
    run_name: str,
    experiment_name: str | None,
    resume_strategy: Any,
    backpressure_strategy: Any,
    error_strategy: Any,
    close_strategy: Any,
    log_level: Any,
    aggregation_rules: Sequence[AggregationRule | Mapping[str, Any]] | None,
    config: Mapping[str, Any] | None,
    num_dispatch_workers: int | None,
    ingestion_url: str | None,
    event_queue_max_size: int | None,
    dispatch_queue_max_size: int | None,
    error_queue_max_size: int | None,
    close_timeout: float | None,
    options: dict[str, Any],
    cls: type[Session],
) -> Session:
    settings = resolve_settings({
        "api_key": api_key,
        "workspace_name": workspace_name,
        "project_name": project_name,
        "run_name": run_name,
        "experiment_name": experiment_name,
        "resume_strategy": resume_strategy,
        "backpressure_strategy": backpressure_strategy,
        "error_strategy": error_strategy,
        "close_strategy": close_strategy,
        "log_level": log_level,
        "aggregation_rules": aggregation_rules,
        "num_dispatch_workers": num_dispatch_workers,
        "ingestion_url": ingestion_url,
        "event_queue_max_size": event_queue_max_size,
        "dispatch_queue_max_size": dispatch_queue_max_size,
        "error_queue_max_size": error_queue_max_size,
        "close_timeout": close_timeout,
    })
    attributes = flatten_config(config) if config is not None else []
    return cls(settings, attributes, in_trio=cls is TrioSession, **options)


def session(
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
    **options: Any,
) -> Session:
    """Start a run and return its :class:`Session`; use it as ``with metrana.session(...) as run``.

    Arguments are those of :func:`init`. The block's exit closes the run (also on an exception).
    """
    init_timeout = options.pop("init_timeout", None)
    created = _build(
        api_key, workspace_name, project_name, run_name, experiment_name, resume_strategy,
        backpressure_strategy, error_strategy, close_strategy, log_level, aggregation_rules,
        config, num_dispatch_workers, ingestion_url, event_queue_max_size,
        dispatch_queue_max_size, error_queue_max_size, close_timeout, options, Session,
    )
    if init_timeout is None:
        created._start_thread()
    else:
        created._start_thread(init_timeout)
    return created


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
    **options: Any,
) -> Session:
    """Start logging a run; every argument left as None is read from its environment variable.

    Returns the global :class:`Session` (the module functions log to it). Calling ``init()``
    again while a run is open warns and keeps the first run.

    Raises:
        MetranaConfigError: a strategy, size or URL is invalid (the message lists the choices).
        NoMetranaApiKeyError: no API key for a non-loopback service.
        TypeError: ``config`` holds a value of an unsupported type.
        MetranaRunAlreadyExistsError: the run exists and ``resume_strategy="Never"``.
        MetranaApiError: the service refused to create the run (e.g. HTTP 401).
    """
    global _session
    with _lock:
        current = _session
        if current is not None and current._state in (State.OPEN, State.CLOSING):
            warnings.warn(
                f"metrana.init() called while run {current.run_name!r} is open; keeping it "
                "(call metrana.close() first to start another run)",
                stacklevel=2,
            )
            return current
        _session = session(
            api_key, workspace_name, project_name, run_name, experiment_name, resume_strategy,
            backpressure_strategy, error_strategy, close_strategy, log_level, aggregation_rules,
            config, num_dispatch_workers, ingestion_url,
            event_queue_max_size=event_queue_max_size,
            dispatch_queue_max_size=dispatch_queue_max_size,
            error_queue_max_size=error_queue_max_size, close_timeout=close_timeout, **options,
        )
        return _session


@asynccontextmanager
async def open_session(
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
    **options: Any,
) -> AsyncIterator[TrioSession]:
    """In a trio program: ``async with metrana.open_session(...) as run:``.

    The engine runs in this task's nursery (no thread); ``run.log(...)`` stays synchronous.
    Leaving the block closes the run per the close strategy, also when the body raises.
    """
    init_timeout = options.pop("init_timeout", 10.0)
    run = _build(
        api_key, workspace_name, project_name, run_name, experiment_name, resume_strategy,
        backpressure_strategy, error_strategy, close_strategy, log_level, aggregation_rules,
        config, num_dispatch_workers, ingestion_url, event_queue_max_size,
        dispatch_queue_max_size, error_queue_max_size, close_timeout, options, TrioSession,
    )
    assert isinstance(run, TrioSession)
    engine = run._engine
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            run._inbox.wake = engine.wake
            await nursery.start(engine.run)
            with trio.move_on_after(init_timeout):
                await engine.creation_done.wait()
            if engine.creation_error is not None:
                await engine.finished.wait()
                run._state = State.CLOSED
                body_error = engine.creation_error
                raise body_error
            try:
                yield run
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await run.aclose()
    except BaseExceptionGroup as group:
        # The nursery wraps what the body raised; hand the user their own exception back.
        if body_error is not None and list(group.exceptions) == [body_error]:
            raise body_error from None
        raise


def _current() -> Session:
    current = _session
    if current is None:
        raise MetranaNotInitializedError("call metrana.init(...) before logging")
    return current


def log(
    metric_name: Any,
    value: Any = None,
    scale: Any = None,
    step: int | None = None,
    labels: Mapping[str, str] | None = None,
    evaluation: bool = False,
    timestamp: int | None = None,
) -> None:
    """Log a metric value, or a dict of them, to the run started by :func:`init`.

    See :meth:`Session.log`.
    """
    current = _session
    if current is None:
        raise MetranaNotInitializedError("call metrana.init(...) before metrana.log()")
    current.log(metric_name, value, scale, step, labels, evaluation, timestamp)


def log_rl_step(metric_name: str, value: Any, evaluation: bool = False, step: int | None = None,
                labels: Mapping[str, str] | None = None, timestamp: int | None = None) -> None:
    """A per-gradient-update metric. See :meth:`Session.log_rl_step`."""
    _current().log(metric_name, value, None, step, labels, evaluation, timestamp)


def log_rl_episode(metric_name: str, value: Any, rl_step: int, evaluation: bool = False,
                   episode: int | None = None, env_id: str | None = None,
                   labels: Mapping[str, str] | None = None, timestamp: int | None = None) -> None:
    """A per-episode metric. See :meth:`Session.log_rl_episode`."""
    _current().log_rl_episode(metric_name, value, rl_step, evaluation, episode, env_id, labels,
                              timestamp)


def log_rl_environment_step(metric_name: str, value: Any, rl_step: int, evaluation: bool = False,
                            env_step: int | None = None, episode: int | None = None,
                            env_id: str | None = None, labels: Mapping[str, str] | None = None,
                            timestamp: int | None = None) -> None:
    """A per-environment-step metric. See :meth:`Session.log_rl_environment_step`."""
    _current().log_rl_environment_step(metric_name, value, rl_step, evaluation, env_step,
                                       episode, env_id, labels, timestamp)


def close(timeout: float | None = None, *, strategy: Any = None) -> Metrics:
    """Close the run started by :func:`init`. See :meth:`Session.close`."""
    return _current().close(timeout, strategy=strategy)


def get_metrics() -> Metrics:
    """Counters of the run started by :func:`init` (logged, sent, dropped, ...)."""
    return _current().get_metrics()


def _after_fork_in_child() -> None:
    for live in list(live_sessions):
        live._after_fork_in_child()


def _close_at_exit() -> None:
    for live in list(live_sessions):
        if live._state is State.OPEN and not live._in_trio:
            timeout = min(live.settings.close_timeout, 30.0)
            warnings.warn(
                f"metrana: run {live.run_name!r} was not closed; delivering what is queued "
                f"(up to {timeout:g}s) before exit — call metrana.close() yourself to choose",
                stacklevel=1,
            )
            try:
                # The user did not choose to discard anything: deliver all, bounded in time.
                live.close(timeout=timeout, strategy="CompleteAll")
            except Exception as exc:  # noqa: BLE001 - never turn exit into a traceback
                warnings.warn(f"metrana: closing at exit failed: {exc!r}", stacklevel=1)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
