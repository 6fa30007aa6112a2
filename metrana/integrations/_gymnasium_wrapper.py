"""``MetranaEpisodeStatistics``: the gymnasium wrapper (imports gymnasium)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:
    import gymnasium as gym
    from gymnasium.vector import VectorEnv, VectorWrapper
    from gymnasium.wrappers import RecordEpisodeStatistics
    from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecordEpisodeStatistics
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("MetranaEpisodeStatistics needs gymnasium>=1.0: "
                      "pip install 'metrana[integrations]' (or gymnasium)") from exc

from .._session_types import Session
from ._common import current_session, global_rank
from ._episodes import episode_statistics, log_episodes

__all__ = ["MetranaEpisodeStatistics"]

# The wrapper records statistics under its own key, so an env that already has a
# RecordEpisodeStatistics (key "episode") keeps it, and the user's infos look as before.
_KEY = "metrana_episode"


class _Logging:
    """What both wrappers share: where to log, and the RL step."""

    env_steps: int

    def _setup(self, session: Session | None, rl_step: Callable[[], int] | None, prefix: str,
               env_ids: Sequence[str] | None, evaluation: bool, labels: Mapping[str, str] | None,
               rank_zero_only: bool) -> None:
        self.env_steps = 0
        self._session = session
        self._rl_step = rl_step
        self._prefix = prefix
        self._env_ids = env_ids
        self._evaluation = evaluation
        self._labels = labels
        self._rank_zero_only = rank_zero_only
        self.episodes_logged = 0

    def _log(self, infos: dict[str, Any], vector: bool) -> None:
        stats = infos.pop(_KEY, None)
        mask = infos.pop(f"_{_KEY}", None)
        if stats is None or (self._rank_zero_only and global_rank() != 0):
            return
        form: dict[str, Any] = {"episode": stats}
        if vector:
            form["_episode"] = mask
        episodes = episode_statistics(form)
        if episodes:
            rl_step = self.env_steps if self._rl_step is None else int(self._rl_step())
            self.episodes_logged += log_episodes(
                current_session(self._session, "MetranaEpisodeStatistics"), episodes, rl_step,
                prefix=self._prefix, env_ids=self._env_ids, evaluation=self._evaluation,
                labels=self._labels)


class MetranaEpisodeStatistics(gym.Wrapper[Any, Any, Any, Any], _Logging):
    """Records episode statistics and logs each finished episode to metrana.

    ``MetranaEpisodeStatistics(env)`` for a ``gymnasium.Env`` or a ``gymnasium.vector.VectorEnv``
    (then it returns a vector wrapper doing the same for every sub-env). Each finished episode
    of env ``i`` logs ``<prefix>/return``, ``<prefix>/length`` and ``<prefix>/time`` with
    ``env_id=str(i)`` (or ``env_ids[i]``), at ``rl_step`` = the environment steps taken through
    this wrapper (``num_envs`` per vector step), unless ``rl_step`` is given as a function
    returning the current RL step. The env's infos are left as they were.

    Keyword arguments: ``session`` (default: the run of ``metrana.init()``), ``rl_step``,
    ``prefix`` (default ``"episode"``), ``env_ids``, ``evaluation``, ``labels``,
    ``rank_zero_only`` (default True: in a distributed job only rank 0 logs).
    """

    def __new__(cls, env: Any, **kwargs: Any) -> Any:
        if isinstance(env, VectorEnv):
            return _VectorMetranaEpisodeStatistics(env, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        env: Any,  # a gymnasium.Env (a VectorEnv is taken by __new__)
        *,
        session: Session | None = None,
        rl_step: Callable[[], int] | None = None,
        prefix: str = "episode",
        env_ids: Sequence[str] | None = None,
        evaluation: bool = False,
        labels: Mapping[str, str] | None = None,
        rank_zero_only: bool = True,
    ) -> None:
        super().__init__(RecordEpisodeStatistics(env, stats_key=_KEY))
        self._setup(session, rl_step, prefix, env_ids, evaluation, labels, rank_zero_only)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        """Step the env and log the episodes it finished."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.env_steps += 1
        self._log(info, vector=False)
        return obs, reward, terminated, truncated, info


class _VectorMetranaEpisodeStatistics(VectorWrapper, _Logging):
    """``MetranaEpisodeStatistics`` of a vector env."""

    def __init__(
        self,
        env: VectorEnv[Any, Any, Any],
        *,
        session: Session | None = None,
        rl_step: Callable[[], int] | None = None,
        prefix: str = "episode",
        env_ids: Sequence[str] | None = None,
        evaluation: bool = False,
        labels: Mapping[str, str] | None = None,
        rank_zero_only: bool = True,
    ) -> None:
        super().__init__(VectorRecordEpisodeStatistics(env, stats_key=_KEY))
        self._setup(session, rl_step, prefix, env_ids, evaluation, labels, rank_zero_only)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step the envs and log the episodes they finished."""
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self.env_steps += self.num_envs
        self._log(infos, vector=True)
        return obs, rewards, terminations, truncations, infos
