"""PyTorch Lightning: a ``Logger`` that sends ``self.log(...)`` metrics to metrana.

Works with the ``lightning`` package (``lightning.pytorch``) and, when that is not installed,
with ``pytorch_lightning``. Only the process of global rank 0 logs.
"""

from __future__ import annotations

import sys
import weakref
from argparse import Namespace
from collections.abc import Mapping
from types import FrameType
from typing import Any, cast

try:
    from lightning.fabric.loggers.logger import _DummyExperiment, rank_zero_experiment
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # pragma: no cover - depends on the environment
    try:
        from lightning_fabric.loggers.logger import (  # type: ignore[assignment, unused-ignore]
            _DummyExperiment,
            rank_zero_experiment,
        )
        from pytorch_lightning.loggers.logger import (  # type: ignore[assignment, unused-ignore]
            Logger,
        )
        from pytorch_lightning.utilities import rank_zero_only
    except ImportError as exc:
        raise ImportError("metrana.integrations.lightning needs lightning (or pytorch_lightning): "
                          "pip install 'metrana[integrations]'") from exc

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

__all__ = ["MetranaLogger"]

WHO = "metrana.integrations.lightning.MetranaLogger"


def _setup_touch() -> bool:
    """Whether Lightning's setup (``_call_setup_hook``) is what reads ``experiment``."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        if (frame.f_code.co_name == "_call_setup_hook"
                and str(frame.f_globals.get("__name__", "")).endswith("trainer.call")):
            return True
        frame = frame.f_back
    return False


class MetranaLogger(Logger):
    """``Trainer(logger=MetranaLogger(...))``: Lightning's metrics as metrana series.

    Every ``log_metrics(metrics, step)`` call logs each numeric value as a series named by its
    key (with ``prefix``), at manual step ``step`` (Lightning's global step; when ``step`` is
    None, the key's previous step + 1). Lightning reports a key more than once at one step
    (``epoch`` with every call): one value per (key, step) is kept — a repeat of the same value
    is skipped quietly, a different one is reported once per key.

    Args:
        session: the run to log to; default the one of ``metrana.init()``.
        prefix: put before every metric name (e.g. ``"lightning/"``).
        log_weight_histograms_every: off by default; N logs a 64-bin histogram of every
            parameter tensor of the model (``weights/<parameter name>``) with the metrics of
            the first logged step and then of each logged step at least N steps later (Lightning
            logs every ``log_every_n_steps``).
        **init_kwargs: instead, the keyword arguments of ``metrana.init()``: the logger opens
            its own run on rank 0 at its first use (the hyper-parameters Lightning logs first
            become the run's config, with your ``config=``), and closes it in ``finalize``; a
            later ``trainer.test()`` resumes it.

    ``experiment`` is the :class:`metrana.Session` (a no-op object on other ranks; after
    ``finalize`` it resumes the logger's own run); ``session`` is the same without opening
    anything; ``name`` is the project name and ``version`` the run name.
    """

    def __init__(self, session: Session | None = None, *, prefix: str = "",
                 log_weight_histograms_every: int | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        self._histograms_every = histogram_every(log_weight_histograms_every, WHO)
        self._model: weakref.ref[Any] | None = None
        self._histogram_step: int | None = None
        if session is not None and init_kwargs:
            raise TypeError(f"{WHO}: pass either session= or metrana.init() keyword arguments")
        self._session = session
        self._own = OwnRun(WHO, init_kwargs) if init_kwargs else None
        self._prefix = prefix
        self._steps = StepFilter(WHO)

    @property
    def session(self) -> Session | None:
        """The run this logger logs (or logged) to; None before it is known. Unlike
        ``experiment``, never opens a run."""
        return self._known()

    def _known(self) -> Session | None:
        if self._own is not None:
            return self._own.session
        if self._session is not None:
            return self._session
        from .. import _api

        return _api._session

    def _target(self, config: Mapping[str, Any] | None = None) -> Session:
        if self._own is not None:
            own = self._own.session
            if own is None or own.is_closed:
                return self._own.open(config)
            return own
        return current_session(self._session, WHO)

    @property
    def name(self) -> str | None:
        """The metrana project name."""
        known = self._known()
        if known is not None:
            return known.settings.project_name
        return self._own.arguments.get("project_name") if self._own is not None else None

    @property
    def version(self) -> str | None:
        """The metrana run name."""
        known = self._known()
        if known is not None:
            return known.settings.run_name
        return self._own.arguments.get("run_name") if self._own is not None else None

    @property
    @rank_zero_experiment
    def experiment(self) -> Session:
        """The :class:`metrana.Session` this logger logs to (opening its own run if needed)."""
        if self._own is not None and self._own.session is None and _setup_touch():
            # Lightning touches every logger's experiment at setup, before it logs the
            # hyper-parameters, only so that lazily created experiments exist. Opening the run
            # here would fix its config without them; it opens at log_hyperparams instead.
            return cast(Session, _DummyExperiment())
        return self._target()

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any,
                        **kwargs: Any) -> None:
        """The run's config: sent with the run when this logger opens it, else added to the
        open run's config (``config/<name>``)."""
        values = vars(params) if isinstance(params, Namespace) else dict(params or {})
        own = self._own.session if self._own is not None else None
        if self._own is not None and (own is None or own.is_closed):
            self._target(safe_config(values, who=WHO, reserve=self._own.user_config)
                         if values else None)
        elif values:
            self._target()._update_config(safe_config(values, who=WHO))

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Lightning hands every logger the module at the start of fit: kept (weakly) for
        ``log_weight_histograms_every``; no graph is logged."""
        if self._histograms_every is not None:
            self._model = weakref.ref(model)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log Lightning's metrics at its step (one value per key and step; see the class)."""
        session = self._target()
        model = self._model() if self._model is not None else None
        every = self._histograms_every
        if model is not None and every is not None and step is not None and (
                self._histogram_step is None or step >= self._histogram_step + every):
            self._histogram_step = int(step)
            log_weight_histograms(session, model, int(step))
        for key, value in metrics.items():
            number = as_number(value)
            if number is None:
                continue
            name = metric_name(self._prefix + key)
            at = self._steps.next_step(name) if step is None else int(step)
            if self._steps.accept(name, at, number, session):
                session.log(name, number, step=at)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End of fit/validate/test: flush; close the run if this logger opened it."""
        session = self._known()
        if session is not None:
            flush_quietly(session, WHO)
        if self._own is not None:
            self._own.close()

    def save(self) -> None:
        """Nothing to save: points are sent as they are logged."""
