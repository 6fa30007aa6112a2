"""What a run handle promises, apart from how it is built: the public ``Session`` type.

``init()`` and ``session()`` return a :class:`Session`; ``open_session()`` yields an
:class:`AsyncSession`. Each has two implementations: the real one (``ThreadSession``, whose
engine runs on a thread; ``TrioSession``, in the caller's nursery) and ``DisabledSession``, the
null object a rank other than 0 gets with ``distributed="rank0"``. Users annotate with these
protocols (``run: metrana.Session = metrana.init(...)``) and ``isinstance(run, metrana.Session)``
holds for both implementations, so a rank that does not log needs no special case.

Only the public surface is here: the module functions (``metrana.log`` & co.) call the same
methods, so a null object that satisfies this protocol satisfies them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._config import Settings
from ._stats import Metrics
from ._values import Histogram
from ._vector import ArrayLike, Steps

__all__ = ["AsyncSession", "RunLog", "Session"]


@runtime_checkable
class RunLog(Protocol):
    """The calls every run handle takes, thread or trio, real or disabled."""

    settings: Settings  # what init() resolved from its arguments and the environment

    @property
    def run_name(self) -> str:
        """The run's name (generated when none was given)."""

    @property
    def is_open(self) -> bool:
        """True until ``close()`` starts."""

    @property
    def is_closed(self) -> bool:
        """True once ``close()`` has finished."""

    @property
    def resumed(self) -> bool:
        """True when this process continued a run that already existed."""

    def log(self, metric_name: str | Mapping[str, Any], value: Any = None, scale: Any = None,
            step: Steps = None, labels: Mapping[str, str] | None = None,
            evaluation: bool = False, timestamp: Steps = None) -> None:
        """Log one value or a dict of them (see :func:`metrana.log`)."""

    @property
    def joined(self) -> bool:
        """True when another process of the same job had created the run and this one
        joined it (not a rerun)."""

    @property
    def orchestration_id(self) -> str | None:
        """The job this process belongs to (None: not part of one); see ``init()``."""

    @property
    def logger_id(self) -> str:
        """This process's name among the run's writers (``init(logger_id=...)``)."""

    def log_distributed(self, metric_name: str, value: Any, step: int, *,
                        labels: Mapping[str, str] | None = None, scale: Any = None,
                        evaluation: bool = False, timestamp: int | None = None) -> None:
        """One value of a series every process of the job writes at a global ``step``,
        served merged across the processes (see :func:`metrana.log_distributed`)."""

    def log_histogram(self, metric_name: str, histogram: Histogram | ArrayLike,
                      step: int | None = None, *, scale: Any = None,
                      labels: Mapping[str, str] | None = None, evaluation: bool = False,
                      timestamp: int | None = None) -> None:
        """Log one histogram (see :func:`metrana.log_histogram`)."""

    def log_scatter(self, metric_name: str, xs: ArrayLike, ys: ArrayLike,
                    step: int | None = None, *, x_title: str | None = None,
                    y_title: str | None = None, labels: Mapping[str, str] | None = None,
                    evaluation: bool = False, timestamp: int | None = None) -> None:
        """Log one 2-D point cloud (see :func:`metrana.log_scatter`)."""

    def log_scatter3d(self, metric_name: str, xs: ArrayLike, ys: ArrayLike, zs: ArrayLike,
                      step: int | None = None, *, x_title: str | None = None,
                      y_title: str | None = None, z_title: str | None = None,
                      labels: Mapping[str, str] | None = None, evaluation: bool = False,
                      timestamp: int | None = None) -> None:
        """Log one 3-D point cloud (see :func:`metrana.log_scatter3d`)."""

    def log_rl_step(self, metric_name: str, value: Any, evaluation: bool = False,
                    step: int | None = None, labels: Mapping[str, str] | None = None,
                    timestamp: int | None = None) -> None:
        """A per-gradient-update metric (see :func:`metrana.log_rl_step`)."""

    def log_rl_episode(self, metric_name: str, value: Any, rl_step: int,
                       evaluation: bool = False, episode: Steps = None,
                       env_id: str | int | Sequence[str | int] | ArrayLike | None = None,
                       labels: Mapping[str, str] | None = None,
                       timestamp: int | None = None) -> None:
        """A per-episode metric (see :func:`metrana.log_rl_episode`)."""

    def log_rl_environment_step(self, metric_name: str, value: Any, rl_step: int,
                                evaluation: bool = False, env_step: Steps = None,
                                episode: Steps = None,
                                env_id: str | int | Sequence[str | int] | ArrayLike | None = None,
                                labels: Mapping[str, str] | None = None,
                                timestamp: int | None = None) -> None:
        """A per-environment-step metric (see :func:`metrana.log_rl_environment_step`)."""

    def add_tags(self, *tags: str) -> None:
        """Add tags to the run."""

    def remove_tags(self, *tags: str) -> None:
        """Remove tags from the run."""

    def set_notes(self, notes: str) -> None:
        """Set the run's notes."""

    def get_metrics(self) -> Metrics:
        """Counters of this run (logged, sent, dropped, ...)."""

    # Not public: how the framework integrations record the config they find (hyperparameters
    # of a trainer) on whichever run handle they were given.
    def _update_config(self, config: Mapping[str, Any]) -> None:
        """Add config values to the run."""


@runtime_checkable
class Session(RunLog, Protocol):
    """A run being logged from ordinary (threaded) code: what ``init()``/``session()`` return.

    Thread-safe. ``with metrana.session(...) as run:`` closes it when the block ends.
    """

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every point logged so far is acknowledged or durable in the spool."""

    def close(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        """Close the run per the close strategy; return its final counters."""

    def __enter__(self) -> Session:
        """The run itself, for ``with``."""

    def __exit__(self, *exc_info: object) -> None:
        """Close the run when the block ends."""


@runtime_checkable
class AsyncSession(RunLog, Protocol):
    """A run being logged from a trio program: what ``open_session()`` yields.

    ``log()`` stays synchronous; closing, flushing and waiting for room are awaited.
    """

    async def aclose(self, timeout: float | None = None, *,
                     strategy: Any = None) -> Metrics:
        """Close the run per the close strategy, waiting in trio."""

    async def aflush(self) -> None:
        """Wait in trio until every point logged so far is acknowledged or durable."""

    async def wait_for_room(self) -> None:
        """With a bounded queue: wait until ``log()`` would not hit backpressure."""
