"""Metrana: metrics for ML and RL training loops.

``metrana.init(...)``, ``metrana.log(...)``, ``metrana.close()``; or a scoped
``with metrana.session(...) as run``; or, in trio, ``async with metrana.open_session(...)``.
"""

from ._api import (
    add_tags as add_tags,
    close as close,
    flush as flush,
    get_metrics as get_metrics,
    init as init,
    log as log,
    log_distributed as log_distributed,
    log_histogram as log_histogram,
    log_rl_environment_step as log_rl_environment_step,
    log_rl_episode as log_rl_episode,
    log_rl_step as log_rl_step,
    log_scatter as log_scatter,
    log_scatter3d as log_scatter3d,
    open_session as open_session,
    remove_tags as remove_tags,
    session as session,
    set_notes as set_notes,
)
from ._config import AggregationRule as AggregationRule
from ._enums import (
    AggregationFn as AggregationFn,
    BackpressureStrategy as BackpressureStrategy,
    CloseStrategy as CloseStrategy,
    ErrorStrategy as ErrorStrategy,
    LogLevel as LogLevel,
    ResumeStrategy as ResumeStrategy,
    StandardMetricScale as StandardMetricScale,
)
from ._exceptions import (
    MetranaApiError as MetranaApiError,
    MetranaConfigError as MetranaConfigError,
    MetranaConnectionError as MetranaConnectionError,
    MetranaError as MetranaError,
    MetranaEventQueueFullError as MetranaEventQueueFullError,
    MetranaFlushTimeoutError as MetranaFlushTimeoutError,
    MetranaLoggerClosedError as MetranaLoggerClosedError,
    MetranaMetricNameError as MetranaMetricNameError,
    MetranaMetricStepError as MetranaMetricStepError,
    MetranaNotInitializedError as MetranaNotInitializedError,
    MetranaOrchestrationIdMismatchError as MetranaOrchestrationIdMismatchError,
    MetranaRunAlreadyExistsError as MetranaRunAlreadyExistsError,
    MetranaSpoolError as MetranaSpoolError,
    NoMetranaApiKeyError as NoMetranaApiKeyError,
)
from ._session_types import AsyncSession as AsyncSession, Session as Session
from ._stats import Metrics as Metrics
from ._sync import SyncReport as SyncReport, sync as sync
from ._trio_session import TrioSession as TrioSession
from ._values import Histogram as Histogram
from ._version import __version__ as __version__

__all__ = [
    "AggregationFn",
    "AggregationRule",
    "AsyncSession",
    "BackpressureStrategy",
    "CloseStrategy",
    "ErrorStrategy",
    "Histogram",
    "LogLevel",
    "MetranaApiError",
    "MetranaConfigError",
    "MetranaConnectionError",
    "MetranaError",
    "MetranaEventQueueFullError",
    "MetranaFlushTimeoutError",
    "MetranaLoggerClosedError",
    "MetranaMetricNameError",
    "MetranaMetricStepError",
    "MetranaNotInitializedError",
    "MetranaOrchestrationIdMismatchError",
    "MetranaRunAlreadyExistsError",
    "MetranaSpoolError",
    "Metrics",
    "NoMetranaApiKeyError",
    "ResumeStrategy",
    "Session",
    "StandardMetricScale",
    "SyncReport",
    "TrioSession",
    "add_tags",
    "close",
    "flush",
    "get_metrics",
    "init",
    "log",
    "log_distributed",
    "log_histogram",
    "log_rl_environment_step",
    "log_rl_episode",
    "log_rl_step",
    "log_scatter",
    "log_scatter3d",
    "open_session",
    "remove_tags",
    "session",
    "set_notes",
    "sync",
]
