"""What the transformers callback does, with no transformers import (duck-typed ``args``,
``state`` and ``model``), so it can be tested on its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._session_types import Session
from ._common import (
    OwnRun,
    StepFilter,
    as_number,
    current_session,
    flush_quietly,
    histogram_every,
    log_weight_histograms,
    metric_name,
    safe_config,
)

__all__ = ["TrainerHooks"]

WHO = "metrana.integrations.transformers.MetranaCallback"
_EVAL_PREFIX = "eval_"


class TrainerHooks:
    """Trainer events to metrana calls; only the world's process zero logs.

    - ``on_train_begin``: opens the callback's own run (when given ``metrana.init`` keyword
      arguments) with config ``args/...`` from ``TrainingArguments.to_dict()`` and ``model/...``
      from the model's config; otherwise checks that there is a run to log to.
    - ``on_log``: every numeric value at step ``state.global_step`` (manual steps); a key
      ``eval_<name>`` is logged as ``<name>`` with ``evaluation=True``.
    - ``on_evaluate``: the evaluation metrics, ``evaluation=True`` (those ``on_log`` already
      logged at this step are not logged twice).
    - ``on_step_end``: with ``log_weight_histograms_every=N`` (off by default), a 64-bin
      histogram of every parameter tensor (``weights/<parameter name>``) at each global step
      that N divides.
    - ``on_train_end``: flushes, and closes the run if the callback opened it.
    """

    def __init__(self, session: Session | None = None, *,
                 log_weight_histograms_every: int | None = None, **init_kwargs: Any) -> None:
        if session is not None and init_kwargs:
            raise TypeError(f"{WHO}: pass either session= or metrana.init() keyword arguments")
        self._histograms_every = histogram_every(log_weight_histograms_every, WHO)
        self._session = session
        self._own = OwnRun(WHO, init_kwargs) if init_kwargs else None
        self._steps = StepFilter(WHO)
        self._logged_at: tuple[int, frozenset[str]] = (-1, frozenset())

    @property
    def session(self) -> Session | None:
        """The run this callback logs to (None before it is known)."""
        if self._own is not None:
            return self._own.session
        if self._session is not None:
            return self._session
        from .. import _api

        return _api._session

    def _target(self, args: Any, model: Any) -> Session:
        if self._own is not None:
            own = self._own.session
            if own is None or own.is_closed:
                return self._own.open(self._config(args, model))
            return own
        return current_session(self._session, WHO)

    def _config(self, args: Any, model: Any) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if args is not None:
            config["args"] = args
        model_config = getattr(model, "config", None)
        if model_config is not None:
            config["model"] = model_config
        return safe_config(config, who=WHO,
                           reserve=self._own.user_config if self._own is not None else None)

    def _log(self, session: Session, name: str, value: float, step: int, evaluation: bool) -> None:
        if self._steps.accept(("eval:" if evaluation else "") + name, step, value, session):
            session.log(name, value, step=step, evaluation=evaluation)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        """Open the callback's own run (given ``metrana.init`` arguments), with the trainer's config."""
        if state.is_world_process_zero:
            session = self._target(args, model)
            if self._own is None:  # the run of metrana.init: its config gains the arguments
                session._update_config(self._config(args, model))

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    **kwargs: Any) -> None:
        """Every ``log_weight_histograms_every`` steps, log a histogram of each parameter tensor."""
        every = self._histograms_every
        if (every is None or model is None or not state.is_world_process_zero
                or int(state.global_step) % every):
            return
        log_weight_histograms(self._target(args, model), model, int(state.global_step))

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               model: Any = None, **kwargs: Any) -> None:
        """Log the trainer's numeric logs at ``state.global_step`` (``eval_*`` as evaluation series)."""
        if not state.is_world_process_zero or not logs:
            return
        session = self._target(args, model)
        step = int(state.global_step)
        for key, value in logs.items():
            number = as_number(value)
            if number is None:
                continue
            evaluation = key.startswith(_EVAL_PREFIX) and len(key) > len(_EVAL_PREFIX)
            name = metric_name(key[len(_EVAL_PREFIX):] if evaluation else key)
            self._log(session, name, number, step, evaluation)
        self._logged_at = (step, frozenset(logs))

    def on_evaluate(self, args: Any, state: Any, control: Any,
                    metrics: Mapping[str, Any] | None = None, model: Any = None,
                    **kwargs: Any) -> None:
        """Log evaluation metrics the trainer did not already pass to ``on_log`` at this step."""
        if not state.is_world_process_zero or not metrics:
            return
        session = self._target(args, model)
        step = int(state.global_step)
        seen = self._logged_at[1] if self._logged_at[0] == step else frozenset()
        for key, value in metrics.items():
            number = as_number(value)
            if number is None or key == "epoch" or key in seen:
                continue
            name = key[len(_EVAL_PREFIX):] if key.startswith(_EVAL_PREFIX) else key
            self._log(session, metric_name(name or key), number, step, True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Flush the run, and close it if the callback opened it (a later ``evaluate()`` resumes it)."""
        if not state.is_world_process_zero:
            return
        session = self.session
        if session is not None:
            flush_quietly(session, WHO)
        if self._own is not None:
            self._own.close()
