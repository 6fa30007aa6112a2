"""Read runs back from ``metrana serve`` (SQLite or PostgreSQL) as pandas DataFrames.

::

    from metrana.query import AttrFilter, QueryClient, SeriesFilter, SeriesOrderBy

    client = QueryClient(workspace_name="me", project_name="mnist")
    runs = client.fetch_runs(
        filter=(AttrFilter("config/lr") < 0.01) & (SeriesFilter("loss").last() < 0.1),
        order_by=SeriesOrderBy("acc", "max").desc(),
        attributes=["config/lr"], series_summaries=["loss:last", "acc:max"])
    losses = client.fetch_float_series(runs["name"], "loss")

Filters and orderings are evaluated by the server's database, never by loading runs into
pandas. Not imported by ``import metrana``: it needs pandas, the ``query`` extra
(``pip install 'metrana[query]'``).
"""

from __future__ import annotations

try:
    import pandas  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "metrana.query returns pandas DataFrames and needs pandas: "
        "pip install 'metrana[query]'") from exc

from ._client import DEFAULT_URL as DEFAULT_URL, QueryClient as QueryClient
from ._conditions import (
    AttrFilter as AttrFilter,
    AttrOrderBy as AttrOrderBy,
    Condition as Condition,
    OrderBy as OrderBy,
    SeriesFilter as SeriesFilter,
    SeriesOrderBy as SeriesOrderBy,
    SeriesSummary as SeriesSummary,
)
from ._exceptions import MetranaQueryError as MetranaQueryError, QueryRequestError as QueryRequestError

__all__ = [
    "AttrFilter",
    "AttrOrderBy",
    "Condition",
    "DEFAULT_URL",
    "MetranaQueryError",
    "OrderBy",
    "QueryClient",
    "QueryRequestError",
    "SeriesFilter",
    "SeriesOrderBy",
    "SeriesSummary",
]
