"""Hugging Face transformers: a ``TrainerCallback`` that logs to metrana.

``Trainer(..., callbacks=[MetranaCallback()])`` logs to the run of ``metrana.init()`` (or
``session=``); ``MetranaCallback(workspace_name=..., project_name=..., run_name=...)`` opens
its own run on the main process, with the training arguments and the model's config as the
run's config, and closes it when training ends. ``report_to`` only takes the integrations
transformers ships, so pass the callback in ``callbacks=``.
"""

from __future__ import annotations

from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("metrana.integrations.transformers needs transformers: "
                      "pip install 'metrana[integrations]' (or transformers)") from exc

from .._session_types import Session
from ._trainer_hooks import TrainerHooks

__all__ = ["MetranaCallback"]


class MetranaCallback(TrainerHooks, TrainerCallback):
    """Logs a ``Trainer``'s metrics to metrana, from the main process only
    (``state.is_world_process_zero``).

    - training logs (``loss``, ``learning_rate``, ``grad_norm``, ``epoch``, the final
      ``train_*``...) at step ``state.global_step``;
    - evaluation metrics as ``evaluation=True`` series without the ``eval_`` prefix
      (``eval_loss`` -> ``loss{evaluation=true}``) at ``state.global_step``;
    - non-numeric values are skipped; a key logged twice at one step keeps its first value.

    Args:
        session: the run to log to; default the one of ``metrana.init()``.
        **init_kwargs: instead, the keyword arguments of ``metrana.init()``: the callback opens
            its own run at ``on_train_begin`` with config ``args/<name>`` (from
            ``TrainingArguments.to_dict()``) and ``model/<name>`` (the model's config), plus
            your ``config=``, and closes it at ``on_train_end`` (an ``evaluate()`` after that
            resumes it).
        log_weight_histograms_every: off by default; N logs a 64-bin histogram of every
            parameter tensor of the model as ``weights/<parameter name>`` every N steps.
    """

    def __init__(self, session: Session | None = None, *,
                 log_weight_histograms_every: int | None = None, **init_kwargs: Any) -> None:
        TrainerHooks.__init__(self, session,
                              log_weight_histograms_every=log_weight_histograms_every,
                              **init_kwargs)
