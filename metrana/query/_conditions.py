"""Typed filters and orderings, built with Python operators, sent as JSON trees.

``AttrFilter("config/lr") < 0.01`` builds a :class:`Condition`; ``&`` and ``|`` combine them.
A condition refuses to be truthy: ``a and b`` would silently keep only ``b``, and
``0 < AttrFilter("x") < 1`` would silently drop a bound, so both raise instead. Nothing here is
evaluated in Python: the server validates the tree against the project (unknown attribute,
wrong type: an error naming it) and compiles it into SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["AttrFilter", "AttrOrderBy", "Condition", "OrderBy", "SeriesFilter",
           "SeriesOrderBy", "SeriesSummary", "SeriesValue", "series_node"]

FUNCTIONS = ("last", "min", "max", "mean", "count")
_NO_TRUTH = ("a condition has no truth value: combine conditions with & (and) and | (or), not "
             "`and`/`or`, and write 0 < x < 1 as (x > 0) & (x < 1)")


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    # numpy scalars and the like: their Python value, if they have one of these types
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
        if isinstance(value, (bool, int, float, str)):
            return value
    raise TypeError(f"{where}: compare with a number, a string or a bool, got "
                    f"{type(value).__name__}")


def series_node(metric: str, scale: str | None, labels: Mapping[str, str] | None
                ) -> dict[str, Any]:
    """A standard series as the server names it."""
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"a metric name is a non-empty string, got {metric!r}")
    node: dict[str, Any] = {"metric": metric}
    if scale is not None:
        node["scale"] = scale
    if labels:
        node["labels"] = dict(labels)
    return node


class Condition:
    """A filter on runs; combine with ``&`` and ``|``. Has no truth value."""

    __slots__ = ("tree",)

    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree = tree

    def __and__(self, other: Condition) -> Condition:
        return self._join("and", other)

    def __or__(self, other: Condition) -> Condition:
        return self._join("or", other)

    def _join(self, joiner: str, other: Any) -> Condition:
        if not isinstance(other, Condition):
            raise TypeError(f"{'&' if joiner == 'and' else '|'} combines two conditions; the "
                            f"other side is a {type(other).__name__} (missing parentheses? "
                            "write (AttrFilter('a') < 1) & (AttrFilter('b') > 2))")
        left = self.tree[joiner] if list(self.tree) == [joiner] else [self.tree]
        right = other.tree[joiner] if list(other.tree) == [joiner] else [other.tree]
        return Condition({joiner: [*left, *right]})

    def __bool__(self) -> bool:
        raise TypeError(_NO_TRUTH)

    def __repr__(self) -> str:
        return f"Condition({self.tree!r})"


class _Comparable:
    """``==``, ``<``, ... and named methods, each making a :class:`Condition`."""

    __slots__ = ()

    def _node(self, op: str, value: Any) -> dict[str, Any]:
        raise NotImplementedError

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return Condition(self._node("==", value))

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return Condition(self._node("!=", value))

    def __lt__(self, value: object) -> Condition:
        return Condition(self._node("<", value))

    def __le__(self, value: object) -> Condition:
        return Condition(self._node("<=", value))

    def __gt__(self, value: object) -> Condition:
        return Condition(self._node(">", value))

    def __ge__(self, value: object) -> Condition:
        return Condition(self._node(">=", value))

    __hash__ = None  # type: ignore[assignment]  # == builds a condition: not a dict key

    def is_in(self, values: Sequence[Any]) -> Condition:
        """Runs whose value is one of ``values``."""
        return Condition(self._node("in", list(values)))

    def not_in(self, values: Sequence[Any]) -> Condition:
        """Runs whose value is none of ``values`` (a run without it matches no comparison)."""
        return Condition(self._node("not_in", list(values)))

    def __bool__(self) -> bool:
        raise TypeError(_NO_TRUTH)


class AttrFilter(_Comparable):
    """A run attribute in a filter: ``AttrFilter("config/lr") < 0.01``.

    Paths are ``config/<key>/<subkey>`` (the flattened ``init(config=...)``), ``context/…``,
    ``sys/tags`` and ``sys/notes``, or a run's own fields: ``sys/name``, ``sys/experiment``,
    ``sys/created`` (ns since the epoch), ``sys/status`` (running, finished, crashed). A run
    without the attribute matches no comparison (``!=`` and ``not_in`` included).
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        if not isinstance(path, str) or not path:
            raise TypeError(f"an attribute path is a non-empty string, got {path!r}")
        self.path = path

    def _node(self, op: str, value: Any) -> dict[str, Any]:
        where = f"AttrFilter({self.path!r}) {op}"
        if op in ("in", "not_in"):
            return {"attr": self.path, "op": op, "value": [_scalar(v, where) for v in value]}
        return {"attr": self.path, "op": op, "value": _scalar(value, where)}

    def exists(self) -> Condition:
        """Runs that have this attribute, whatever its value."""
        return Condition({"attr": self.path, "op": "exists"})

    def contains(self, value: str) -> Condition:
        """A string set holding ``value`` (``AttrFilter("sys/tags").contains("baseline")``),
        or a string with ``value`` in it (``AttrFilter("sys/notes").contains("retry")``)."""
        if not isinstance(value, str) or not value:
            raise TypeError(f"AttrFilter({self.path!r}).contains() takes a non-empty string, "
                            f"got {value!r}")
        return Condition({"attr": self.path, "op": "contains", "value": value})

    def __repr__(self) -> str:
        return f"AttrFilter({self.path!r})"


class SeriesValue(_Comparable):
    """A summary of a run's series, to compare: ``SeriesFilter("loss").last() < 0.1``."""

    __slots__ = ("fn", "series")

    def __init__(self, series: dict[str, Any], fn: str) -> None:
        self.series = series
        self.fn = fn

    def _node(self, op: str, value: Any) -> dict[str, Any]:
        where = f"SeriesFilter({self.series['metric']!r}).{self.fn}() {op}"
        if op in ("in", "not_in"):
            return {"series": self.series, "fn": self.fn, "op": op,
                    "value": [_scalar(v, where) for v in value]}
        return {"series": self.series, "fn": self.fn, "op": op, "value": _scalar(value, where)}

    def __repr__(self) -> str:
        return f"SeriesFilter({self.series['metric']!r}).{self.fn}()"


class SeriesFilter:
    """A run's standard series in a filter, by metric name (and scale and labels if it has
    them): ``SeriesFilter("loss").last() < 0.1``, ``SeriesFilter("loss").exists()``."""

    __slots__ = ("series",)

    def __init__(self, metric: str, *, scale: str | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.series = series_node(metric, scale, labels)

    def function(self, fn: str) -> SeriesValue:
        """The summary ``fn`` (``last``, ``min``, ``max``, ``mean``, ``count``) of the series, to compare."""
        if fn not in FUNCTIONS:
            raise ValueError(f"unknown summary function {fn!r}; one of {', '.join(FUNCTIONS)}")
        return SeriesValue(self.series, fn)

    def last(self) -> SeriesValue:
        """The series' last value (for an RL metric: the mean of each environment's last 10 episodes)."""
        return self.function("last")

    def min(self) -> SeriesValue:
        """The smallest value of the series."""
        return self.function("min")

    def max(self) -> SeriesValue:
        """The largest value of the series."""
        return self.function("max")

    def mean(self) -> SeriesValue:
        """The mean of the series' values (over the points with a number)."""
        return self.function("mean")

    def count(self) -> SeriesValue:
        """The number of points logged to the series."""
        return self.function("count")

    def exists(self) -> Condition:
        """Runs that have this series."""
        return Condition({"series": self.series, "op": "exists"})

    def __repr__(self) -> str:
        return f"SeriesFilter({self.series['metric']!r})"


class OrderBy:
    """An ordering of runs (runs without the key come last)."""

    __slots__ = ("tree",)

    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree = tree

    def __repr__(self) -> str:
        return f"OrderBy({self.tree!r})"


class AttrOrderBy:
    """Order runs by an attribute: ``AttrOrderBy("config/lr").desc()``."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        if not isinstance(path, str) or not path:
            raise TypeError(f"an attribute path is a non-empty string, got {path!r}")
        self.path = path

    def asc(self) -> OrderBy:
        """Smallest first."""
        return OrderBy({"attr": self.path, "dir": "asc"})

    def desc(self) -> OrderBy:
        """Largest first."""
        return OrderBy({"attr": self.path, "dir": "desc"})


class _OfSeries:
    """A summary function of one series (metric, scale, labels), checked when written."""

    __slots__ = ("fn", "series")

    def __init__(self, metric: str, fn: str = "last", *, scale: str | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        if fn not in FUNCTIONS:
            raise ValueError(f"unknown summary function {fn!r}; one of {', '.join(FUNCTIONS)}")
        self.series = series_node(metric, scale, labels)
        self.fn = fn


class SeriesOrderBy(_OfSeries):
    """Order runs by a series summary: ``SeriesOrderBy("acc", "max").desc()``."""

    __slots__ = ()

    def asc(self) -> OrderBy:
        """Smallest first."""
        return OrderBy({"series": self.series, "fn": self.fn, "dir": "asc"})

    def desc(self) -> OrderBy:
        """Largest first."""
        return OrderBy({"series": self.series, "fn": self.fn, "dir": "desc"})


class SeriesSummary(_OfSeries):
    """A summary column of :meth:`QueryClient.fetch_runs`: ``SeriesSummary("loss", "min")``
    (a ``(metric, fn)`` tuple or ``"loss:min"`` works too). Its column is ``"loss:min"``."""

    __slots__ = ()

    @property
    def column(self) -> str:
        """The DataFrame column ``fetch_runs`` gives it: ``"<metric>:<fn>"``."""
        return f"{self.series['metric']}:{self.fn}"

    @staticmethod
    def of(spec: SeriesSummary | tuple[str, str] | str) -> SeriesSummary:
        """A ``SeriesSummary`` from any of its spellings: itself, ``(metric, fn)`` or ``"metric:fn"``."""
        if isinstance(spec, SeriesSummary):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            return SeriesSummary(spec[0], spec[1])
        if isinstance(spec, str) and ":" in spec:
            metric, _, fn = spec.rpartition(":")
            return SeriesSummary(metric, fn)
        raise TypeError(f"a series summary is SeriesSummary(metric, fn), (metric, fn) or "
                        f"'metric:fn', got {spec!r}")

    def __repr__(self) -> str:
        return f"SeriesSummary({self.series['metric']!r}, {self.fn!r})"
