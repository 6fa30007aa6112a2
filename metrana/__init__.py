"""Metrana: metrics for ML and RL training loops.

``metrana.init(...)``, ``metrana.log(...)``, ``metrana.close()``; or a scoped
``with metrana.session(...) as run``; or, in trio, ``async with metrana.open_session(...)``.
"""

from ._api import (
    close as close,
)
from ._api import (
    get_metrics as get_metrics,
)
from ._api import (
    init as init,
)
from ._api import (
    log as log,
)
from ._api import (
    log_rl_environment_step as log_rl_environment_step,
)
from ._api import (
    log_rl_episode as log_rl_episode,
)
from ._api import (
    log_rl_step as log_rl_step,
)
from ._api import (
    open_session as open_session,
)
from ._api import (
    session as session,
)
from ._config import AggregationRule as AggregationRule
from ._enums import (
    AggregationFn as AggregationFn,
)
from ._enums import (
    BackpressureStrategy as BackpressureStrategy,
)
from ._enums import (
    CloseStrategy as CloseStrategy,
)
from ._enums import (
    ErrorStrategy as ErrorStrategy,
)
from ._enums import (
    LogLevel as LogLevel,
)
from ._enums import (
    ResumeStrategy as ResumeStrategy,
)
from ._enums import (
    StandardMetricScale as StandardMetricScale,
)
from ._exceptions import (
    MetranaApiError as MetranaApiError,
)
from ._exceptions import (
    MetranaConfigError as MetranaConfigError,
)
from ._exceptions import (
    MetranaConnectionError as MetranaConnectionError,
)
from ._exceptions import (
    MetranaError as MetranaError,
)
from ._exceptions import (
    MetranaEventQueueFullError as MetranaEventQueueFullError,
)
from ._exceptions import (
    MetranaFlushTimeoutError as MetranaFlushTimeoutError,
)
from ._exceptions import (
    MetranaLoggerClosedError as MetranaLoggerClosedError,
)
from ._exceptions import (
    MetranaMetricNameError as MetranaMetricNameError,
)
from ._exceptions import (
    MetranaMetricStepError as MetranaMetricStepError,
)
from ._exceptions import (
    MetranaNotInitializedError as MetranaNotInitializedError,
)
from ._exceptions import (
    MetranaRunAlreadyExistsError as MetranaRunAlreadyExistsError,
)
from ._exceptions import (
    NoMetranaApiKeyError as NoMetranaApiKeyError,
)
from ._session import Session as Session
from ._session import TrioSession as TrioSession
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
