"""Gymnasium episode statistics as metrana RL episode series.

``log_episode_statistics(infos, rl_step=...)`` works on the infos of any env that reports
episode statistics (gymnasium's ``RecordEpisodeStatistics``, single or vector; SB3's
``Monitor``) and needs no framework. ``MetranaEpisodeStatistics(env)`` is a gymnasium wrapper
that records and logs them itself; it imports gymnasium when first used.

Each finished episode of environment ``i`` becomes one point in each of ``episode/return``,
``episode/length`` and ``episode/time`` (seconds), ``env_id=str(i)``, numbered by episode per
environment, at ``rl_step``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._session_types import Session
from ._common import current_session, global_rank
from ._episodes import episode_statistics, log_episodes

if TYPE_CHECKING:
    from ._gymnasium_wrapper import MetranaEpisodeStatistics as MetranaEpisodeStatistics

__all__ = ["MetranaEpisodeStatistics", "log_episode_statistics"]


def log_episode_statistics(
    infos: Any,
    rl_step: int,
    *,
    session: Session | None = None,
    prefix: str = "episode",
    env_ids: Sequence[str] | None = None,
    evaluation: bool = False,
    labels: Mapping[str, str] | None = None,
    rank_zero_only: bool = True,
) -> int:
    """Log the episodes finished in ``infos`` (what ``env.step`` returned) at ``rl_step``.

    Args:
        infos: one env's info dict, a vector env's info dict (``_episode`` masks the finished
            envs), or a list of per-env info dicts (Stable-Baselines3).
        rl_step: the RL step of these episodes (e.g. the environment steps taken so far); it
            must not decrease from one call to the next.
        session: the run to log to; default the one of ``metrana.init()``.
        prefix: metric names are ``<prefix>/return``, ``<prefix>/length``, ``<prefix>/time``.
        env_ids: names of the environments by index (default ``"0"``, ``"1"``, ...).
        evaluation: mark the series as evaluation (label ``evaluation=true``).
        labels: extra labels of the series.
        rank_zero_only: in a distributed job, only the process of rank 0 logs (the default);
            False logs from every process (give each its own ``env_ids`` or labels).

    Returns:
        The number of episodes logged (0 on other ranks).
    """
    episodes = episode_statistics(infos)
    if not episodes or (rank_zero_only and global_rank() != 0):
        return 0
    target = current_session(session, "log_episode_statistics")
    return log_episodes(target, episodes, rl_step, prefix=prefix, env_ids=env_ids,
                        evaluation=evaluation, labels=labels)


def __getattr__(name: str) -> Any:
    if name == "MetranaEpisodeStatistics":
        from ._gymnasium_wrapper import MetranaEpisodeStatistics

        return MetranaEpisodeStatistics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
