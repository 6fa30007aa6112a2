"""Episode statistics as environments report them, read without importing any framework.

Forms understood (``r`` return, ``l`` length, ``t`` seconds):

- gymnasium's ``RecordEpisodeStatistics`` on one env: ``info["episode"] = {"r": 1.0, "l": 3,
  "t": 0.01}`` (env index 0);
- gymnasium's vector ``RecordEpisodeStatistics``: ``infos["episode"] = {"r": array, "l": array,
  "t": array}`` with the mask ``infos["_episode"]`` (only True entries are finished episodes);
  a sub-env's own statistics merged by a vector env carry their mask as ``infos["episode"]["_r"]``;
- Stable-Baselines3 (``Monitor`` / ``VecMonitor``): a list of per-env info dicts, finished ones
  with ``info["episode"] = {"r", "l", "t"}``;
- gymnasium < 1.0 vector envs: ``infos["final_info"]`` (per-env dicts or None) with the mask
  ``infos["_final_info"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._session_types import Session

__all__ = ["FIELDS", "Episode", "episode_statistics", "log_episodes"]

# info field -> metric name suffix
FIELDS = {"r": "return", "l": "length", "t": "time"}

Episode = tuple[int, dict[str, float]]


def _as_list(value: Any) -> list[Any]:
    if hasattr(value, "tolist"):
        out = value.tolist()
        return out if isinstance(out, list) else [out]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _is_scalar(value: Any) -> bool:
    if hasattr(value, "ndim"):
        return bool(value.ndim == 0)
    return not isinstance(value, (list, tuple))


def _fields(stats: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(stats[key]) for key in FIELDS if key in stats}


def episode_statistics(infos: Any) -> list[Episode]:
    """``(env index, {"r": ..., "l": ..., "t": ...})`` for every episode finished in ``infos``.

    Raises:
        TypeError: ``infos`` is neither an info dict nor a sequence of them.
    """
    if isinstance(infos, Mapping):
        return _from_dict(infos)
    if isinstance(infos, Sequence) and not isinstance(infos, (str, bytes)):
        return _from_list(infos)
    if hasattr(infos, "tolist"):  # an object array of per-env dicts
        return _from_list(infos.tolist())
    raise TypeError(f"infos must be an info dict or a list of them, got {type(infos).__name__}")


def _from_list(infos: Sequence[Any], mask: Any = None) -> list[Episode]:
    done = [True] * len(infos) if mask is None else [bool(m) for m in _as_list(mask)]
    out: list[Episode] = []
    for index, info in enumerate(infos):
        if not done[index] or not isinstance(info, Mapping):
            continue
        stats = info.get("episode")
        if isinstance(stats, Mapping) and stats:
            out.append((index, _fields(stats)))
    return out


def _from_dict(infos: Mapping[str, Any]) -> list[Episode]:
    stats = infos.get("episode")
    if stats is None:
        final = infos.get("final_info")
        if final is not None and not isinstance(final, Mapping):
            return _from_list(_as_list(final), infos.get("_final_info"))
        return []
    if not isinstance(stats, Mapping):
        raise TypeError(f"info['episode'] must be a dict, got {type(stats).__name__}")
    present = [key for key in FIELDS if key in stats]
    if not present:
        return []
    if _is_scalar(stats[present[0]]):
        return [(0, _fields(stats))]
    columns = {key: _as_list(stats[key]) for key in present}
    count = len(columns[present[0]])
    mask = infos.get("_episode")
    if mask is None:
        mask = stats.get(f"_{present[0]}")
    done = [True] * count if mask is None else [bool(m) for m in _as_list(mask)]
    if len(done) != count:
        raise ValueError(f"info['_episode'] has {len(done)} entries for {count} environments")
    return [(index, {key: float(columns[key][index]) for key in present})
            for index in range(count) if done[index]]


def log_episodes(session: Session, episodes: list[Episode], rl_step: int, *, prefix: str,
                 env_ids: Sequence[str] | None = None, evaluation: bool = False,
                 labels: Mapping[str, str] | None = None) -> int:
    """One ``log_rl_episode`` per finished episode and statistic; returns the episode count."""
    for index, stats in episodes:
        env_id = str(index) if env_ids is None else env_ids[index]
        for key, value in stats.items():
            session.log_rl_episode(f"{prefix}/{FIELDS[key]}", value, rl_step=rl_step,
                                   evaluation=evaluation, env_id=env_id, labels=labels)
    return len(episodes)
