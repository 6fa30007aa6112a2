"""The session a rank other than 0 gets with ``distributed="rank0"`` (see
:mod:`metrana._distributed`): every call accepted, nothing done, nothing waited on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._config import Settings
from ._stats import Counters, Metrics

__all__ = ["DisabledSession"]


class DisabledSession:
    """What ``init()``, ``session()`` and ``open_session()`` give ranks other than 0 with
    ``distributed="rank0"``: a null object with a session's surface
    (:class:`metrana.Session` and :class:`metrana.AsyncSession`, so it stands wherever a real
    run does).

    Every call is accepted and does nothing: no engine, no thread, no network, so a rank that
    is told not to log can never stall the job. ``get_metrics()`` stays all zero. Its calls
    are not checked either: a rank that does not log has nothing to say about its values.
    """

    def __init__(self, settings: Settings, rank: int) -> None:
        self.settings = settings
        self.rank = rank
        self._closed = False

    def __repr__(self) -> str:
        s = self.settings
        return (f"<metrana.Session {s.workspace_name}/{s.project_name}/{s.run_name} "
                f"disabled on rank {self.rank} (distributed='rank0')>")

    @property
    def run_name(self) -> str:
        return self.settings.run_name

    @property
    def is_open(self) -> bool:
        return not self._closed

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def resumed(self) -> bool:
        return False

    def start(self, init_timeout: float = 0.0) -> None:
        return None

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        return None

    # Every log call, and the run's tags, notes and config: accepted, dropped.
    log = log_rl_step = log_rl_episode = log_rl_environment_step = _ignore
    log_histogram = log_scatter = log_scatter3d = log_distributed = _ignore
    add_tags = remove_tags = set_notes = _ignore

    @property
    def joined(self) -> bool:
        return False

    @property
    def orchestration_id(self) -> str | None:
        return self.settings.orchestration_id

    @property
    def logger_id(self) -> str:
        return self.settings.logger_id

    def _update_config(self, config: Mapping[str, Any]) -> None:
        return None

    def flush(self, timeout: float | None = None) -> None:
        return None

    async def aflush(self) -> None:
        return None

    async def wait_for_room(self) -> None:
        return None

    def get_metrics(self) -> Metrics:
        return Counters().snapshot()

    def close(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        self._closed = True
        return self.get_metrics()

    async def aclose(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        return self.close()

    def __enter__(self) -> DisabledSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
