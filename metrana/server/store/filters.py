"""Filters and orderings of runs: a small JSON expression tree, validated, compiled to SQL.

``metrana.query`` sends conditions as trees rather than strings, so there is no grammar to
parse and nothing a client can inject: every name and value travels as a ``?`` parameter, and
only this module writes SQL text. The tree::

    condition := {"and": [condition, ...]} | {"or": [condition, ...]}
               | {"attr": PATH, "op": OP, "value": VALUE}          (OP "exists" takes no value)
               | {"series": SERIES, "fn": FN, "op": OP, "value": NUMBER}
               | {"series": SERIES, "op": "exists"}
    order     := {"attr": PATH, "dir": "asc" | "desc"} | {"series": SERIES, "fn": FN, "dir": ...}
    SERIES    := {"metric": NAME, "scale": SCALE, "labels": {...}, "kind": "standard" | "rl"}
    OP        := "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not_in" | "exists" | "contains"
    FN        := "last" | "min" | "max" | "mean" | "count"

A series is a standard series (one per run) or an RL metric (a series per environment, and per
episode on the ``ENVIRONMENT_STEP`` scale); without a ``kind`` it is whichever the project has,
standard first, and without a ``scale`` a standard ``ML_STEP`` series or else the RL metric at
whatever scale it was logged (``EPISODE`` first). An RL metric's ``last`` is the mean over its
environments of each environment's mean of its last 10 episodes (:data:`RL_LAST_EPISODES`; on
the ``ENVIRONMENT_STEP`` scale, of its last 10 episodes' means); ``min``, ``max``, ``mean`` and
``count`` are over every point of every environment.

A path is a run attribute (``config/lr``, ``sys/tags``) or one of the run's own fields
(:data:`SYS_FIELDS`, and ``sys/status``: running, finished or crashed, :mod:`.liveness`).
``contains`` asks whether a string set (``sys/tags``) holds a string, or a string attribute
(``sys/notes``) has it as a part.
Checked against the project before any SQL runs: an attribute no run has, a series no run has,
or a value of the wrong type (``<`` a number on a string attribute) is a :class:`QueryError`
(HTTP 400) naming it — a typo never comes back as an empty table. A run without the attribute
or series matches no comparison (``!=`` and ``not_in`` included); ``exists`` asks for it.

Series summaries come from the per-series aggregates the store keeps on every write, so a
filter on ``last(loss)`` over thousands of runs never reads a point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import attrs

from ..errors import QueryError
from ..ingest import labels_key
from .database import Tx

__all__ = ["FUNCTIONS", "RL_LAST_EPISODES", "RL_SCALES", "STATUS_PATH", "SYS_FIELDS", "Compiled",
           "Compiler", "SeriesName", "after_cursor", "parse_series"]

FUNCTIONS = ("last", "min", "max", "mean", "count")
_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "exists", "contains")
_ORDERING = ("<", "<=", ">", ">=")
_NUMERIC = frozenset({"int", "float"})
MAX_DEPTH = 32
MAX_NODES = 1000
MAX_IN = 10_000
RL_LAST_EPISODES = 10  # what "last" means for an RL metric (see write.TAIL_POINTS)
RL_SCALES = ("EPISODE", "ENVIRONMENT_STEP")

# The series columns of each summary function (the aggregates :mod:`.write` keeps).
_FN_SQL = {
    "last": "CASE WHEN s.last_kind = 0 THEN s.last_value END",
    "min": "s.vmin",
    "max": "s.vmax",
    "mean": "s.vsum / NULLIF(s.valid_count, 0)",
    "count": "s.point_count",
}

# A run's own fields, usable wherever an attribute path is: (SQL, kind). (And sys/status,
# whose SQL depends on the time of the query: Compiler(status=...).)
SYS_FIELDS = {
    "sys/name": ("runs.run_name", "string"),
    "sys/experiment": ("runs.experiment", "string"),
    "sys/created": ("runs.created_ns", "int"),
    # From creation to close, or to the last write while it is open (ns).
    "sys/duration": ("(COALESCE(runs.closed_ns, (SELECT MAX(s.last_activity_ns) FROM series s "
                     "WHERE s.run_id = runs.id), runs.created_ns) - runs.created_ns)", "int"),
}
STATUS_PATH = "sys/status"

# An RL metric's summaries over its series (environments, episodes) of one run.
_RL_FN_SQL = {
    "last": "AVG(s.tail_mean)",
    "min": "MIN(s.vmin)",
    "max": "MAX(s.vmax)",
    "mean": "SUM(s.vsum) / NULLIF(SUM(s.valid_count), 0)",
    "count": "SUM(s.point_count)",
}
_RL_WHERE = ("s.run_id = runs.id AND s.kind = 'rl' AND s.metric_name = ? AND s.scale = ? AND "
             "s.labels = ?")
# ENVIRONMENT_STEP: a series per episode; each environment's last episodes' means, averaged.
_RL_LAST_ENV_STEPS = (
    "(SELECT AVG(env_mean) FROM (SELECT AVG(episode_mean) AS env_mean FROM (SELECT "
    "s.environment_id AS env, s.vsum / NULLIF(s.valid_count, 0) AS episode_mean, ROW_NUMBER() "
    "OVER (PARTITION BY s.environment_id ORDER BY s.episode DESC) AS recent FROM series s "
    f"WHERE {_RL_WHERE}) episodes WHERE recent <= {RL_LAST_EPISODES} GROUP BY env) envs)")


@attrs.frozen
class SeriesName:
    """What names one standard series of a run in a query: its metric name, scale and labels
    (canonical JSON). (The client's ``_series.SeriesName`` is its own table's key.)"""

    metric: str
    scale: str = "ML_STEP"
    labels: str = "{}"
    kind: str | None = None  # "standard", "rl", or None: whichever the project has
    scale_given: bool = True  # False: ML_STEP if standard, else the RL metric's scale

    def describe(self) -> str:
        extra = "" if self.scale == "ML_STEP" else f" (scale {self.scale})"
        return f"{self.metric!r}{extra}" + ("" if self.labels == "{}" else f" {self.labels}")

    @property
    def rl(self) -> bool:
        return self.kind == "rl"

    @property
    def key(self) -> tuple[str, str, str, str | None]:
        return (self.metric, self.scale, self.labels, self.kind)


@attrs.frozen
class Compiled:
    """SQL text with its ``?`` arguments, in order."""

    sql: str
    args: tuple[Any, ...] = ()


def parse_series(node: Any, where: str) -> SeriesName:
    """``{"metric": ..., "scale": ..., "labels": {...}}`` as a :class:`SeriesName`."""
    if isinstance(node, str):
        node = {"metric": node}
    if not isinstance(node, dict) or not isinstance(node.get("metric"), str) or not node["metric"]:
        raise QueryError(f"{where}: a series is {{\"metric\": NAME}}, got {node!r:.80}")
    scale = node.get("scale") or "ML_STEP"
    labels = node.get("labels") or {}
    kind = node.get("kind")
    if not isinstance(scale, str) or not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise QueryError(f"{where}: a series' scale is a string and its labels map strings to "
                         "strings")
    if kind not in (None, "standard", "rl"):
        raise QueryError(f"{where}: a series' kind is \"standard\" or \"rl\", got {kind!r:.40}")
    return SeriesName(node["metric"], scale, labels_key(labels), kind,
                      bool(node.get("scale")))


def _kind_of(value: Any) -> str:
    """The attribute kind a filter value can be compared with."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    raise QueryError(f"filter values are numbers, strings or booleans, got {value!r:.80}")


def _check_number(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QueryError(f"{where} compares a number; got {value!r:.80}")
    if isinstance(value, float) and math.isnan(value):
        raise QueryError(f"{where}: NaN compares false with everything; use a number")
    return value


class Compiler:
    """Compiles conditions and orderings over the runs of one project (``runs.project_id``).

    Looks up, once per path or series, what the project holds — to refuse what cannot match
    with a message, and to pick numeric or text comparison.
    """

    def __init__(self, tx: Tx, project_id: int, project: str, *,
                 status: Compiled | None = None) -> None:
        """``status``: the SQL of ``sys/status`` at the time of the query (no arguments)."""
        self._tx = tx
        self._sys = dict(SYS_FIELDS)
        if status is not None:
            assert not status.args
            self._sys[STATUS_PATH] = (status.sql, "string")
        self._project_id = project_id
        self._project = project
        self._kinds: dict[str, frozenset[str]] = {}
        self._known_series: dict[SeriesName, SeriesName] = {}
        self._nodes = 0

    # ---------------------------------------------------------------- lookups

    def attribute_kinds(self, path: str) -> frozenset[str]:
        """The kinds ``path`` holds across the project's runs; QueryError if none has it."""
        if not isinstance(path, str) or not path:
            raise QueryError(f"an attribute path is a non-empty string, got {path!r:.80}")
        if path in self._sys:
            return frozenset({self._sys[path][1]})
        kinds = self._kinds.get(path)
        if kinds is None:
            kinds = frozenset(str(row[0]) for row in self._tx.all(
                "SELECT DISTINCT kind FROM attributes WHERE path = ? AND run_id IN "
                "(SELECT id FROM runs WHERE project_id = ?)", (path, self._project_id)))
            if not kinds:
                if path.startswith("sys/"):
                    raise QueryError(f"unknown run field {path!r}: the run fields are "
                                     f"{', '.join(self._sys)}, and no run of project "
                                     f"{self._project} has an attribute {path!r}")
                raise QueryError(f"unknown attribute {path!r}: no run of project "
                                 f"{self._project} has it (config keys are 'config/<key>')")
            self._kinds[path] = kinds
        return kinds

    def check_series(self, key: SeriesName) -> SeriesName:
        """The series as the project has it (its kind and scale found); QueryError if no run
        of the project has it."""
        known = self._known_series.get(key)
        if known is not None:
            return known
        found = None
        if key.kind != "rl":
            row = self._tx.one(
                "SELECT 1 FROM series s WHERE s.kind = 'standard' AND s.metric_name = ? AND "
                "s.scale = ? AND s.labels = ? AND s.run_id IN (SELECT id FROM runs WHERE "
                "project_id = ?) LIMIT 1", (key.metric, key.scale, key.labels, self._project_id))
            if row is not None:
                found = attrs.evolve(key, kind="standard", scale_given=True)
        if found is None and key.kind != "standard":
            scales = {str(r[0]) for r in self._tx.all(
                "SELECT DISTINCT s.scale FROM series s WHERE s.kind = 'rl' AND s.metric_name = ? "
                "AND s.labels = ? AND s.run_id IN (SELECT id FROM runs WHERE project_id = ?)",
                (key.metric, key.labels, self._project_id))}
            if key.scale_given:
                scales &= {key.scale}
            scale = next((s for s in (*RL_SCALES, *sorted(scales)) if s in scales), None)
            if scale is not None:
                found = attrs.evolve(key, kind="rl", scale=scale, scale_given=True)
        if found is None:
            what = "RL metric" if key.kind == "rl" else "series"
            raise QueryError(f"unknown {what} {key.describe()}: no run of project "
                             f"{self._project} logged it")
        self._known_series[key] = found
        return found

    # ------------------------------------------------------------ expressions

    def _text(self, column: str) -> str:
        """A JSON string attribute's text, compared and sorted byte by byte on both databases
        (PostgreSQL would otherwise sort by the server's locale)."""
        if self._tx.dialect == "postgresql":
            return f"(CAST({column} AS jsonb) #>> '{{}}') COLLATE \"C\""
        return f"json_extract({column}, '$')"

    def _number(self, column: str) -> str:
        """A numeric attribute's value. Non-finite floats are stored as JSON strings: ±inf
        compare as infinities, NaN (NULL) with nothing."""
        if self._tx.dialect == "postgresql":
            real, inf = "DOUBLE PRECISION", "CAST('Infinity' AS DOUBLE PRECISION)"
        else:
            real, inf = "REAL", "9e999"  # SQLite reads an overflowing literal as +inf
        return (f"CASE WHEN a.kind NOT IN ('int', 'float') THEN NULL "
                f"WHEN {column} NOT LIKE '\"%' THEN CAST({column} AS {real}) "
                f"WHEN {column} = '\"Infinity\"' THEN {inf} "
                f"WHEN {column} = '\"-Infinity\"' THEN -{inf} END")

    def _attr_value(self, path: str, kinds: frozenset[str], as_kind: str) -> tuple[str, str]:
        """(SQL of the value, SQL restricting the attribute row) for a comparison as
        ``as_kind`` ("number", "string", "bool" or "json": its stored JSON text)."""
        if path in self._sys:
            column = self._sys[path][0]
            if as_kind == "string" and self._tx.dialect == "postgresql":
                column = f"{column} COLLATE \"C\""
            return column, ""
        if as_kind == "number":
            return self._number("a.value"), ""
        if as_kind == "string":
            return self._text("a.value"), " AND a.kind = 'string'"
        return "a.value", ""

    def _sortable_kind(self, path: str, kinds: frozenset[str]) -> str:
        if kinds <= _NUMERIC:
            return "number"
        if kinds == {"string"}:
            return "string"
        if kinds == {"bool"}:
            return "json"  # false < true
        raise QueryError(f"attribute {path!r} holds {', '.join(sorted(kinds))} values across "
                         "runs; only numbers, strings or booleans can be ordered")

    def _series_value(self, key: SeriesName, fn: Any, where: str) -> Compiled:
        if fn not in FUNCTIONS:
            raise QueryError(f"{where}: unknown summary function {fn!r}; one of "
                             f"{', '.join(FUNCTIONS)}")
        key = self.check_series(key)
        args = (key.metric, key.scale, key.labels)
        if key.rl:
            if fn == "last" and key.scale == "ENVIRONMENT_STEP":
                return Compiled(_RL_LAST_ENV_STEPS, args)
            return Compiled(f"(SELECT {_RL_FN_SQL[fn]} FROM series s WHERE {_RL_WHERE})", args)
        return Compiled(f"(SELECT {_FN_SQL[fn]} FROM series s WHERE s.run_id = runs.id AND "
                        "s.kind = 'standard' AND s.metric_name = ? AND s.scale = ? AND "
                        "s.labels = ?)", args)

    def series_value(self, key: SeriesName, fn: str) -> Compiled:
        """A run's summary ``fn`` of a series (standard or RL), as SQL over ``runs``."""
        return self._series_value(key, fn, "summary column")

    # -------------------------------------------------------------- conditions

    def condition(self, node: Any, depth: int = 0) -> Compiled:
        """A condition tree as a SQL boolean over ``runs``."""
        self._nodes += 1
        if depth > MAX_DEPTH or self._nodes > MAX_NODES:
            raise QueryError(f"filter too large (at most {MAX_NODES} conditions, nested "
                             f"{MAX_DEPTH} deep)")
        if not isinstance(node, dict):
            raise QueryError(f"a condition is a JSON object, got {node!r:.80}")
        for joiner in ("and", "or"):
            if joiner in node:
                children = node[joiner]
                if not isinstance(children, list) or not children or len(node) != 1:
                    raise QueryError(f"{{\"{joiner}\": [...]}} takes a non-empty list of "
                                     "conditions")
                parts = [self.condition(child, depth + 1) for child in children]
                return Compiled("(" + f" {joiner.upper()} ".join(p.sql for p in parts) + ")",
                                tuple(arg for p in parts for arg in p.args))
        op = node.get("op")
        if op not in _OPS:
            raise QueryError(f"unknown operator {op!r}; one of {', '.join(_OPS)}")
        if "attr" in node:
            return self._attr_condition(node["attr"], op, node.get("value"))
        if "series" in node:
            key = parse_series(node["series"], "series filter")
            return self._series_condition(key, node.get("fn"), op, node.get("value"))
        raise QueryError(f"a condition names an \"attr\" or a \"series\", got {node!r:.80}")

    def _attr_condition(self, path: Any, op: str, value: Any) -> Compiled:
        kinds = self.attribute_kinds(path)
        if op == "exists":
            if path in self._sys:
                return Compiled(f"{self._sys[path][0]} IS NOT NULL")
            return Compiled("EXISTS (SELECT 1 FROM attributes a WHERE a.run_id = runs.id AND "
                            "a.path = ?)", (path,))
        if op == "contains":
            return self._contains(path, kinds, value)
        values = value if op in ("in", "not_in") else [value]
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or len(value) > MAX_IN:
                raise QueryError(f"{path} {op} takes a non-empty list of at most {MAX_IN:,} "
                                 "values")
        value_kinds = {_kind_of(v) for v in values}
        if len(value_kinds) != 1:
            raise QueryError(f"{path} {op}: the values mix {', '.join(sorted(value_kinds))}")
        value_kind = value_kinds.pop()
        held = {"number" if k in _NUMERIC else k for k in kinds}
        if value_kind not in held:
            raise QueryError(f"attribute {path!r} holds {', '.join(sorted(kinds))} values; it "
                             f"cannot be compared with {value_kind} {values[0]!r:.40}")
        if op in _ORDERING and value_kind == "bool":
            raise QueryError(f"attribute {path!r} is a boolean: use == or !=, not {op}")
        if value_kind == "number":
            for v in values:
                _check_number(v, f"{path} {op}")
            expr, restrict = self._attr_value(path, kinds, "number")
            args: list[Any] = list(values)
        elif value_kind == "string" and op in _ORDERING:
            expr, restrict = self._attr_value(path, kinds, "string")
            args = list(values)
        elif path in self._sys:
            expr, restrict = self._sys[path][0], ""
            args = list(values)
        else:  # equality of strings and booleans: their stored JSON text
            expr, restrict = "a.value", ""
            args = [json.dumps(v) for v in values]
        if op in ("in", "not_in"):
            test = f"{expr} {'IN' if op == 'in' else 'NOT IN'} ({', '.join('?' for _ in args)})"
        else:
            test = f"{expr} {'<>' if op == '!=' else '=' if op == '==' else op} ?"
        if path in self._sys:
            return Compiled(f"({test})", tuple(args))
        return Compiled(f"EXISTS (SELECT 1 FROM attributes a WHERE a.run_id = runs.id AND "
                        f"a.path = ?{restrict} AND {test})", (path, *args))

    def _contains(self, path: str, kinds: frozenset[str], value: Any) -> Compiled:
        """A string set holding ``value`` (``sys/tags contains "baseline"``), or a string
        with ``value`` in it (case-sensitive)."""
        if not isinstance(value, str) or not value:
            raise QueryError(f"{path} contains takes a non-empty string, got {value!r:.80}")
        if path in self._sys or not kinds & {"string_set", "string"}:
            raise QueryError(f"{path!r} holds {', '.join(sorted(kinds))} values; contains "
                             "asks a string set (sys/tags) or a string")
        postgres = self._tx.dialect == "postgresql"
        if postgres:
            member = "CAST(a.value AS jsonb) @> CAST(? AS jsonb)"
            part = f"strpos({self._text('a.value')}, ?) > 0"
        else:
            member = "EXISTS (SELECT 1 FROM json_each(a.value) j WHERE j.value = ?)"
            part = f"instr({self._text('a.value')}, ?) > 0"
        member_arg = json.dumps([value]) if postgres else value
        return Compiled(
            "EXISTS (SELECT 1 FROM attributes a WHERE a.run_id = runs.id AND a.path = ? AND "
            f"((a.kind = 'string_set' AND {member}) OR (a.kind = 'string' AND {part})))",
            (path, member_arg, value))

    def _series_condition(self, key: SeriesName, fn: Any, op: str, value: Any) -> Compiled:
        if op == "exists":
            key = self.check_series(key)
            return Compiled("EXISTS (SELECT 1 FROM series s WHERE s.run_id = runs.id AND "
                            "s.kind = ? AND s.metric_name = ? AND s.scale = ? AND "
                            "s.labels = ?)", (key.kind, key.metric, key.scale, key.labels))
        where = f"series {key.describe()}"
        target = self._series_value(key, fn, where)
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or len(value) > MAX_IN:
                raise QueryError(f"{where} {op} takes a non-empty list of numbers")
            numbers = [_check_number(v, f"{where} {fn}") for v in value]
            marks = ", ".join("?" for _ in numbers)
            return Compiled(f"{target.sql} {'IN' if op == 'in' else 'NOT IN'} ({marks})",
                            (*target.args, *numbers))
        number = _check_number(value, f"{where} {fn}")
        sql_op = "<>" if op == "!=" else "=" if op == "==" else op
        return Compiled(f"{target.sql} {sql_op} ?", (*target.args, number))

    # ---------------------------------------------------------------- ordering

    def order_key(self, node: Any) -> tuple[Compiled, bool]:
        """An ordering as (SQL of the sort key, descending)."""
        if node is None:
            return Compiled("runs.created_ns"), True
        if not isinstance(node, dict) or node.get("dir", "asc") not in ("asc", "desc"):
            raise QueryError(f"an ordering is {{\"attr\": PATH, \"dir\": \"asc\"|\"desc\"}} or "
                             f"{{\"series\": ..., \"fn\": ..., \"dir\": ...}}, got {node!r:.80}")
        descending = node.get("dir") == "desc"
        if "attr" in node:
            path = node["attr"]
            kinds = self.attribute_kinds(path)
            if path in self._sys:
                expr, _ = self._attr_value(path, kinds, self._sys[path][1].replace(
                    "int", "number"))
                return Compiled(expr), descending
            as_kind = self._sortable_kind(path, kinds)
            expr, restrict = self._attr_value(path, kinds, as_kind)
            return Compiled(f"(SELECT {expr} FROM attributes a WHERE a.run_id = runs.id AND "
                            f"a.path = ?{restrict})", (path,)), descending
        if "series" in node:
            key = parse_series(node["series"], "series ordering")
            return self._series_value(key, node.get("fn"), "series ordering"), descending
        raise QueryError(f"an ordering names an \"attr\" or a \"series\", got {node!r:.80}")


def after_cursor(key: Compiled, descending: bool, cursor: Sequence[Any]) -> Compiled:
    """Rows after ``cursor`` (the last row's sort key and id) in the order
    ``key`` (nulls last), then ``runs.id``: keyset pagination, stable while runs are added."""
    value, run_id = cursor
    if value is None:
        return Compiled(f"({key.sql} IS NULL AND runs.id > ?)", (*key.args, run_id))
    beyond = "<" if descending else ">"
    return Compiled(f"({key.sql} {beyond} ? OR {key.sql} IS NULL OR ({key.sql} = ? AND "
                    "runs.id > ?))",
                    (*key.args, value, *key.args, *key.args, value, run_id))
