"""The session a rank other than 0 gets with ``distributed="rank0"`` (see
:mod:`metrana._distributed`): every call accepted, nothing done, nothing waited on."""

from __future__ import annotations

from typing import Any

from ._config import Settings
from ._session import State
from ._stats import Counters, Metrics
from ._thread_session import Session

__all__ = ["DisabledSession"]


class DisabledSession(Session):
    """What ``init()`` returns on ranks other than 0 with ``distributed="rank0"``.

    Every call is accepted and does nothing: no engine, no thread, no network, so a rank that
    is told not to log can never stall the job. ``get_metrics()`` stays all zero.
    """

    def __init__(self, settings: Settings, rank: int) -> None:  # noqa: D107 - no engine
        # A Session's public surface without its engine: nothing of BaseSession.__init__ is
        # built (no inbox, no engine, no client), so nothing here may reach for them.
        self.settings = settings
        self.rank = rank
        self._state = State.OPEN
        self._final = None

    def _refresh_fast(self) -> None:
        return None  # no inbox: there is no fast path to switch

    def __repr__(self) -> str:
        s = self.settings
        return (f"<metrana.Session {s.workspace_name}/{s.project_name}/{s.run_name} "
                f"disabled on rank {self.rank} (distributed='rank0')>")

    @property
    def resumed(self) -> bool:
        return False

    def start(self, init_timeout: float = 0.0) -> None:
        return None

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        return None

    # Every log call: accepted, unchecked, dropped.
    log = log_rl_step = log_rl_episode = log_rl_environment_step = _ignore
    log_histogram = log_scatter = log_scatter3d = log_distributed = _ignore

    @property
    def joined(self) -> bool:
        return False

    def _change_attributes(self, attributes: list[dict[str, Any]]) -> None:
        return

    def flush(self, timeout: float | None = None) -> None:
        return None

    async def aflush(self) -> None:
        return None

    async def wait_for_room(self) -> None:
        return None

    def get_metrics(self) -> Metrics:
        return Counters().snapshot()

    def close(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        self._state = State.CLOSED
        return self.get_metrics()

    async def aclose(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        return self.close()

    def _close_at_exit(self) -> None:
        return None

    def _after_fork_in_child(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self.close()
