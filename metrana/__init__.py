"""Metrana: metrics for ML and RL training loops.

``metrana.init(...)``, ``metrana.log(...)``, ``metrana.close()``; or a scoped
``with metrana.session(...) as run``; or, in trio, ``async with metrana.open_session(...)``.
"""

from ._api import (
    close as close,
    get_metrics as get_metrics,
    init as init,
    log as log,
    log_rl_environment_step as log_rl_environment_step,
    log_rl_episode as log_rl_episode,
    log_rl_step as log_rl_step,
    open_session as open_session,
    session as session,
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
    MetranaRunAlreadyExistsError as MetranaRunAlreadyExistsError,
    NoMetranaApiKeyError as NoMetranaApiKeyError,
)
from ._session import Session as Session, TrioSession as TrioSession
from ._stats import Metrics as Metrics

__version__ = "0.3.0.dev0"

__all__ = [
    "AggregationFn",
    "AggregationRule",
    "BackpressureStrategy",
    "CloseStrategy",
    "ErrorStrategy",
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
    "MetranaRunAlreadyExistsError",
    "Metrics",
    "NoMetranaApiKeyError",
    "ResumeStrategy",
    "Session",
    "StandardMetricScale",
    "TrioSession",
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
