"""The public API is what ``metrana.__all__`` says, and covers every name of the seed."""

from __future__ import annotations

import metrana

SEED_NAMES = {
    "init", "log", "close", "log_rl_step", "log_rl_episode", "log_rl_environment_step",
    "StandardMetricScale", "AggregationRule", "AggregationFn", "MetranaNotInitializedError",
    "MetranaLoggerClosedError", "MetranaRunAlreadyExistsError", "MetranaEventQueueFullError",
    "MetranaMetricStepError", "MetranaMetricNameError", "NoMetranaApiKeyError",
}


def test_all_lists_exactly_the_public_names() -> None:
    """Everything public is in __all__ (sorted), and everything in __all__ exists."""
    public = {n for n in dir(metrana) if not n.startswith("_")}
    assert sorted(metrana.__all__) == metrana.__all__
    # the server, the integrations and the query client are subpackages of their own
    # (attributes once imported)
    assert set(metrana.__all__) == public - {"server", "integrations", "query"}
    assert SEED_NAMES <= set(metrana.__all__)


def test_every_error_is_a_metrana_error() -> None:
    """One base class catches everything metrana raises."""
    errors = [getattr(metrana, n) for n in metrana.__all__ if n.endswith("Error")]
    assert all(issubclass(e, metrana.MetranaError) for e in errors)
