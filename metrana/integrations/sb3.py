"""Stable-Baselines3: episode returns per environment, and SB3's own logger, into metrana.

``model.learn(..., callback=MetranaCallback())`` logs every finished episode (from the
``Monitor``/``VecMonitor`` infos) as RL episode series ``episode/return``, ``episode/length``,
``episode/time`` with ``env_id`` = the env's index in the VecEnv and ``rl_step`` =
``num_timesteps``; it also adds a :class:`MetranaOutputFormat` to the model's logger, so what
SB3 reports (``rollout/ep_rew_mean``, ``train/*``, ``time/*``...) arrives too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import KVWriter
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("metrana.integrations.sb3 needs stable-baselines3: "
                      "pip install 'metrana[integrations]' (or stable-baselines3)") from exc

from .._session_types import Session
from ._common import (
    StepFilter,
    as_number,
    current_session,
    global_rank,
    metric_name,
    safe_config,
)
from ._episodes import episode_statistics, log_episodes

__all__ = ["MetranaCallback", "MetranaOutputFormat", "hyperparameters"]

# What SB3's algorithms keep as attributes of the model, as their constructors name them.
_HYPERPARAMETERS = (
    "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef",
    "vf_coef", "max_grad_norm", "clip_range", "clip_range_vf", "normalize_advantage",
    "target_kl", "use_sde", "sde_sample_freq", "buffer_size", "learning_starts", "tau",
    "train_freq", "gradient_steps", "target_update_interval", "target_policy_noise",
    "target_noise_clip", "policy_delay", "exploration_fraction", "exploration_initial_eps",
    "exploration_final_eps", "optimize_memory_usage", "seed", "n_envs", "rms_prop_eps",
    "use_rms_prop", "policy_kwargs",
)


def hyperparameters(model: Any) -> dict[str, Any]:
    """An SB3 model's hyper-parameters as config: ``algorithm`` (its class), ``policy`` (the
    policy's class), ``device``, and each of the usual constructor arguments the model has
    (``learning_rate``, ``n_steps``, ``batch_size``, ``gamma``, ``gae_lambda``,
    ``ent_coef``, ...). A schedule (``learning_rate=linear_schedule(3e-4)``, PPO's
    ``clip_range``) is its value at the start of training plus ``<name>_schedule``, the
    schedule's name."""
    out: dict[str, Any] = {"algorithm": type(model).__name__}
    policy = getattr(model, "policy_class", None) or type(getattr(model, "policy", None))
    if isinstance(policy, type):
        out["policy"] = policy.__name__
    device = getattr(model, "device", None)
    if device is not None:
        out["device"] = str(device)
    for name in _HYPERPARAMETERS:
        value = getattr(model, name, None)
        if value is None:
            continue
        if callable(value):
            schedule = getattr(value, "__qualname__", None) or type(value).__name__
            out[f"{name}_schedule"] = schedule
            try:
                value = value(1.0)  # SB3 schedules take the remaining progress: 1 at the start
            except Exception:  # noqa: BLE001 - a schedule we cannot call: its name says enough
                continue
        if hasattr(value, "_asdict"):  # TrainFreq(frequency, unit)
            value = {k: getattr(v, "value", v) for k, v in value._asdict().items()}
        out[name] = value
    return out


class MetranaOutputFormat(KVWriter):
    """An SB3 logger output format that sends every dump to metrana.

    Each key becomes a metric series with manual steps: the ``step`` SB3 dumps at, which is
    ``num_timesteps``. Add it to a logger yourself
    (``logger.output_formats.append(MetranaOutputFormat())``; ``model.set_logger(logger)``) or
    let :class:`MetranaCallback` do it.

    Values: numbers (int, float, bool, numpy and torch scalars) are logged; anything else
    (strings, ``Video``, ``Figure``, ``Image``, ``HParam``, arrays and tensors of several
    values) is skipped without a message — ``skipped`` counts them. A key excluded for
    ``"metrana"`` (``logger.record(key, value, exclude="metrana")``) is skipped too. A key
    dumped twice at one step keeps its first value; a later step lower than an earlier one
    (a second ``learn()`` with ``reset_num_timesteps=True``) is not logged, and reported once
    per key — pass ``reset_num_timesteps=False`` to continue a run.
    """

    def __init__(self, session: Session | None = None, *, rank_zero_only: bool = True) -> None:
        self._session = session
        self._rank_zero_only = rank_zero_only
        self._steps = StepFilter("MetranaOutputFormat")
        self.skipped = 0

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
              step: int = 0) -> None:
        """Log the logger's numeric values at step ``num_timesteps`` (others are skipped)."""
        if self._rank_zero_only and global_rank() != 0:
            return
        session = current_session(self._session, "MetranaOutputFormat")
        step = int(step)
        for key, value in sorted(key_values.items()):
            excluded = key_excluded.get(key)
            if excluded is not None and "metrana" in excluded:
                continue
            number = as_number(value)
            if number is None:
                self.skipped += 1
                continue
            name = metric_name(key)
            if self._steps.accept(name, step, number, session):
                session.log(name, number, step=step)

    def close(self) -> None:
        """Nothing to release: the run is closed by whoever opened it."""


class MetranaCallback(BaseCallback):
    """Logs each finished episode to metrana, per environment, at ``rl_step=num_timesteps``.

    Args:
        session: the run to log to; default the one of ``metrana.init()``.
        prefix: metric names are ``<prefix>/return``, ``<prefix>/length``, ``<prefix>/time``.
        log_sb3_metrics: also add a :class:`MetranaOutputFormat` to the model's logger, so SB3's
            aggregates (``rollout/ep_rew_mean``, ``train/loss``...) are logged (default True).
        evaluation: mark the episode series as evaluation (label ``evaluation=true``).
        labels: extra labels of the episode series.
        log_hyperparameters: add the model's hyper-parameters to the run's config when
            training starts, as ``config/sb3/<name>`` (:func:`hyperparameters`; default True).
        rank_zero_only: in a distributed job only rank 0 logs (default True).
        verbose: SB3's verbosity.

    Needs the env's infos to carry episode statistics: SB3 wraps envs in ``Monitor`` (also
    ``make_vec_env``), or use ``VecMonitor``.
    """

    def __init__(self, session: Session | None = None, *, prefix: str = "episode",
                 log_sb3_metrics: bool = True, evaluation: bool = False,
                 labels: Mapping[str, str] | None = None, log_hyperparameters: bool = True,
                 rank_zero_only: bool = True, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._log_hyperparameters = log_hyperparameters
        self._session = session
        self._prefix = prefix
        self._log_sb3_metrics = log_sb3_metrics
        self._evaluation = evaluation
        self._labels = labels
        self._rank_zero_only = rank_zero_only
        self._output: MetranaOutputFormat | None = None
        self._logs_here = True
        self.episodes_logged = 0

    def _on_training_start(self) -> None:
        # Once per learn(): _on_step runs every env step and should cost next to nothing.
        self._logs_here = not self._rank_zero_only or global_rank() == 0
        if not self._logs_here:
            return
        session = current_session(self._session, "MetranaCallback")  # fail before training
        if self._log_hyperparameters:
            session._update_config({"sb3": safe_config(hyperparameters(self.model),
                                                       who="MetranaCallback",
                                                       session=session)})
        if self._log_sb3_metrics:
            formats = self.model.logger.output_formats
            if not any(isinstance(f, MetranaOutputFormat) for f in formats):
                # One writer for the callback's lifetime: its step filter spans learn() calls.
                if self._output is None:
                    self._output = MetranaOutputFormat(self._session,
                                                       rank_zero_only=self._rank_zero_only)
                formats.append(self._output)

    def _on_step(self) -> bool:
        infos = self.locals.get("infos")
        if infos and self._logs_here:
            episodes = episode_statistics(infos)
            if episodes:
                self.episodes_logged += log_episodes(
                    current_session(self._session, "MetranaCallback"), episodes,
                    int(self.num_timesteps), prefix=self._prefix, evaluation=self._evaluation,
                    labels=self._labels)
        return True
