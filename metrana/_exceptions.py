"""Every error metrana raises derives from :class:`MetranaError`.

::

    MetranaError
    ├── MetranaConfigError          bad init() argument or environment variable (also ValueError)
    ├── NoMetranaApiKeyError        no API key for a service that needs one
    ├── MetranaNotInitializedError  log() before init()
    ├── MetranaLoggerClosedError    log() after close()
    ├── MetranaRunAlreadyExistsError  resume_strategy=Never and the run exists
    │   └── MetranaOrchestrationIdMismatchError  ... created by another job (another id)
    ├── MetranaEventQueueFullError  backpressure_strategy=Raise and the queue is full
    ├── MetranaMetricNameError      empty name or a name with whitespace (also ValueError)
    ├── MetranaMetricStepError      a step that goes backwards or mixes manual and automatic
    ├── MetranaApiError             the service refused a request (status and body attached)
    ├── MetranaConnectionError      the service could not be reached within the retry budget
    ├── MetranaSpoolError           the disk spool is full, unwritable, or a segment is damaged
    └── MetranaFlushTimeoutError    flush() did not finish in time (nothing is dropped)

``TypeError`` (not a MetranaError) is raised for values and labels of the wrong type.
"""

from __future__ import annotations

__all__ = [
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
    "NoMetranaApiKeyError",
]


class MetranaError(Exception):
    """Base class of every metrana error."""


class MetranaConfigError(MetranaError, ValueError):
    """An init() argument or environment variable has an invalid value."""


class NoMetranaApiKeyError(MetranaError):
    """No API key was given for a service that needs one."""


class MetranaNotInitializedError(MetranaError):
    """A logging call was made before ``metrana.init()``."""


class MetranaLoggerClosedError(MetranaError):
    """A logging call was made after ``close()``."""


class MetranaRunAlreadyExistsError(MetranaError):
    """The run exists and ``resume_strategy`` is ``Never``."""


class MetranaOrchestrationIdMismatchError(MetranaRunAlreadyExistsError):
    """The run exists, created by another job (its orchestration id differs from this
    process's), and ``resume_strategy`` is ``Never``; the message names both ids."""


class MetranaEventQueueFullError(MetranaError):
    """The event queue is full and ``backpressure_strategy`` is ``Raise``."""


class MetranaMetricNameError(MetranaError, ValueError):
    """A metric name is empty or contains whitespace."""


class MetranaMetricStepError(MetranaError, ValueError):
    """A step is not strictly increasing, or a series mixes manual and automatic steps.

    ``series`` names the series (``loss/ML_STEP``), when known.
    """

    def __init__(self, message: str, *, series: str | None = None) -> None:
        super().__init__(message)
        self.series = series


class MetranaApiError(MetranaError):
    """The ingestion service refused a request; the batch was not stored."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "",
                 points: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.points = points


class MetranaConnectionError(MetranaError):
    """The ingestion service could not be reached within the retry budget.

    ``unreachable`` is True when nothing answered at all (e.g. connection refused), False when
    the service answered with transient errors (5xx, 429, 408) until the budget ran out.
    ``definite`` is True when the attempt got a definite "nothing is there" (connection
    refused, no route, unknown host) and was not retried.
    """

    def __init__(self, message: str, *, points: int = 0, unreachable: bool = False,
                 definite: bool = False) -> None:
        super().__init__(message)
        self.points = points
        self.unreachable = unreachable
        self.definite = definite


class MetranaSpoolError(MetranaError):
    """The spool could not take points (full or unwritable), or a segment is damaged."""


class MetranaFlushTimeoutError(MetranaError, TimeoutError):
    """``flush()`` timed out; the points are still queued, nothing was dropped."""
