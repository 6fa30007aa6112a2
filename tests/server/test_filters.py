"""Filters and orderings of runs, compiled to SQL by :mod:`metrana.server.store.filters` and run
on both databases: which runs match is decided here from the attributes written, and every
name the project does not have is refused before any SQL runs."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from metrana.server.errors import QueryError
from metrana.server.filter_text import parse_filter
from metrana.server.store import Store, liveness, read
from metrana.server.store.filters import Compiler, SeriesName, parse_series

# name: (lr, optimizer, augment, loss values or None)
RUNS: dict[str, tuple[float | None, str | None, bool | None, list[float] | None]] = {
    "a": (0.1, "adam", True, [3.0, 2.0]),
    "b": (0.01, "sgd", False, [5.0, 1.0]),
    "c": (math.inf, "Adam", None, [4.0]),
    "d": (None, "adamw", True, None),
    "e": (0.001, None, None, [2.5, math.nan]),
}
# tags (a string set) and notes (a string) of some runs
TAGS = {"a": ["baseline", "gpu"], "b": ["gpu"], "c": ["Baseline"], "d": []}
NOTES = {"a": "first try", "b": "a baseline run, retried", "e": "nothing to say"}


def attribute(path: str, value: Any) -> dict[str, Any]:
    kind = {bool: "bool_value", str: "string_value", float: "float_value"}[type(value)]
    return {"path": path, kind: value}


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
            ) -> Iterator[list[str]]:
    """The project written once on each database (the store is only read afterwards)."""
    cluster = request.getfixturevalue("pg_cluster")
    database = cluster.create_database()
    out = [str(tmp_path_factory.mktemp("filters") / "f.sqlite3"), cluster.url(database)]
    for target in out:
        store = Store(target)
        for name, (lr, optimizer, augment, loss) in RUNS.items():
            store.create_run({"run": {"workspace": "ws", "project": "p", "run_name": name},
                              "create_project_if_missing": True})
            attributes = [attribute(path, value) for path, value in (
                ("config/lr", lr), ("config/optimizer", optimizer), ("config/augment", augment))
                if value is not None]
            if name in TAGS:
                attributes.append({"path": "sys/tags",
                                   "string_set_value": {"values": TAGS[name]}})
            if name in NOTES:
                attributes.append(attribute("sys/notes", NOTES[name]))
            series = [] if loss is None else [{
                "metric_name": "loss", "scale": "ML_STEP", "ordering": 1,
                "points": [{"step": i, "float_value": v} for i, v in enumerate(loss)]}]
            store.update_runs({"session_id": 1, "run_updates": [{
                "workspace": "ws", "project": "p", "run_name": name, "series": series,
                "attributes": attributes}]})
        store.close()
    yield out
    cluster.drop_database(database)


@pytest.fixture(params=["sqlite", "postgresql"])
def compile_and_run(targets: list[str], request: pytest.FixtureRequest) -> Iterator[Any]:
    """A function: (filter, order) trees to the names of the matching runs, in order."""
    store = Store(targets[0 if request.param == "sqlite" else 1])

    def run(condition: Any = None, order: Any = None, *, limit: int = 100,
            cursor: tuple[Any, int] | None = None) -> list[str]:
        with store.db.read() as tx:
            project_id = read.project_id(tx, "ws", "p")
            status = liveness.status_sql(time.time_ns(), 120)
            compiler = Compiler(tx, project_id, "ws/p", status=status)
            where = None if condition is None else compiler.condition(condition)
            key, descending = compiler.order_key(order)
            rows = read.runs_page(tx, project_id, where, key, descending, cursor, limit,
                                  status)
        return [row[1] for row in rows]

    yield run
    store.close()


def expect(predicate: Any) -> list[str]:
    """The runs (oldest first) whose attributes satisfy ``predicate(lr, optimizer, augment,
    loss)``, with None for what a run lacks."""
    return sorted(name for name, fields in RUNS.items() if predicate(*fields))


def names(found: list[str]) -> list[str]:
    return sorted(found)


def test_comparisons_match_only_runs_that_have_the_attribute(compile_and_run: Any) -> None:
    """A run without the attribute matches no comparison, ``!=`` included; ±inf compares as
    an infinity."""
    lr = {"attr": "config/lr"}
    assert names(compile_and_run({**lr, "op": "<", "value": 0.05})) == \
        expect(lambda lr, *_: lr is not None and lr < 0.05)
    assert names(compile_and_run({**lr, "op": ">", "value": 1e300})) == ["c"]
    assert names(compile_and_run({**lr, "op": "!=", "value": 0.1})) == \
        expect(lambda lr, *_: lr is not None and lr != 0.1)
    assert names(compile_and_run({**lr, "op": "in", "value": [0.1, 0.001, 7]})) == ["a", "e"]
    assert names(compile_and_run({**lr, "op": "not_in", "value": [0.1]})) == ["b", "c", "e"]
    assert names(compile_and_run({**lr, "op": "exists"})) == ["a", "b", "c", "e"]


def test_strings_compare_byte_by_byte_and_booleans_by_equality(compile_and_run: Any) -> None:
    """Strings order as their bytes on both databases ("Adam" < "adam"), whatever the
    PostgreSQL server's locale; a boolean equals true or false."""
    optimizer = {"attr": "config/optimizer"}
    assert names(compile_and_run({**optimizer, "op": "<", "value": "adam"})) == ["c"]
    assert names(compile_and_run({**optimizer, "op": "==", "value": "sgd"})) == ["b"]
    assert names(compile_and_run({"attr": "config/augment", "op": "==", "value": True})) == \
        ["a", "d"]
    assert compile_and_run(None, {"attr": "config/optimizer", "dir": "asc"}) == \
        ["c", "a", "d", "b", "e"]  # "Adam" < "adam" < "adamw" < "sgd", then the one without


def test_and_or_and_series_summaries(compile_and_run: Any) -> None:
    """Conditions combine; a series summary is the aggregate the store keeps (``last`` of a
    series whose last point is NaN is no number)."""
    cheap = {"attr": "config/lr", "op": "<=", "value": 0.01}
    low = {"series": {"metric": "loss"}, "fn": "min", "op": "<", "value": 2.2}
    assert names(compile_and_run({"and": [cheap, low]})) == ["b"]
    assert names(compile_and_run({"or": [cheap, low]})) == ["a", "b", "e"]
    assert names(compile_and_run({"series": "loss", "fn": "last", "op": ">", "value": 0})) == \
        ["a", "b", "c"]
    assert names(compile_and_run({"series": {"metric": "loss"}, "op": "exists"})) == \
        ["a", "b", "c", "e"]
    assert names(compile_and_run({"series": "loss", "fn": "count", "op": "==", "value": 2})) \
        == ["a", "b", "e"]


def test_orderings_put_runs_without_the_key_last_and_page_by_keyset(compile_and_run: Any
                                                                    ) -> None:
    """Ordered by a key (nulls last, then id), a page ends with a cursor after which the next
    page goes on, also across +inf."""
    order = {"attr": "config/lr", "dir": "desc"}
    everything = compile_and_run(None, order)
    assert everything == ["c", "a", "b", "e", "d"]
    first = compile_and_run(None, order, limit=1)
    assert first == ["c"]
    assert compile_and_run(None, order, cursor=(math.inf, 3)) == ["a", "b", "e", "d"]
    assert compile_and_run(None, order, cursor=(0.01, 2)) == ["e", "d"]
    assert compile_and_run(None, order, cursor=(None, 1)) == ["d"]
    by_loss = compile_and_run(None, {"series": "loss", "fn": "max", "dir": "asc"})
    assert by_loss == ["e", "a", "c", "b", "d"]
    assert compile_and_run() == ["e", "d", "c", "b", "a"]  # newest first by default


@pytest.mark.parametrize(("condition", "message"), [
    ({"attr": "config/lrr", "op": "<", "value": 1}, "unknown attribute 'config/lrr'"),
    ({"attr": "config/optimizer", "op": "<", "value": 3}, "holds string values"),
    ({"attr": "config/lr", "op": "==", "value": "fast"}, "cannot be compared with string"),
    ({"attr": "config/augment", "op": ">", "value": True}, "is a boolean"),
    ({"attr": "config/lr", "op": "<", "value": math.nan}, "NaN compares false"),
    ({"attr": "config/lr", "op": "in", "value": [1, "a"]}, "the values mix"),
    ({"attr": "config/lr", "op": "~", "value": 1}, "unknown operator '~'"),
    ({"series": "los", "fn": "last", "op": "<", "value": 1}, "unknown series 'los'"),
    ({"series": "loss", "fn": "median", "op": "<", "value": 1}, "unknown summary function"),
    ({"attr": "sys/owner", "op": "==", "value": "me"}, "unknown run field 'sys/owner'"),
    ({"and": []}, "takes a non-empty list"),
    ({"or": [{"attr": "config/lr", "op": "exists"}], "and": []}, "takes a non-empty list"),
    (["not", "an", "object"], "a condition is a JSON object"),
])
def test_what_cannot_match_is_refused_naming_it(compile_and_run: Any, condition: Any,
                                                message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(")):
        compile_and_run(condition)


def test_tags_contains_a_tag_and_notes_contain_a_part(compile_and_run: Any) -> None:
    """`tags contains "baseline"` matches the runs tagged exactly so (case-sensitive, a whole
    tag); on a string attribute, contains matches a part of it; sys/status is a run field."""
    assert compile_and_run({"attr": "sys/tags", "op": "contains", "value": "baseline"}) == ["a"]
    assert compile_and_run(parse_filter('sys/tags contains "baseline"')) == ["a"]  # as typed
    assert sorted(compile_and_run({"attr": "sys/tags", "op": "contains", "value": "gpu"})) \
        == ["a", "b"]
    assert compile_and_run({"attr": "sys/tags", "op": "contains", "value": "base"}) == []
    assert compile_and_run({"attr": "sys/notes", "op": "contains", "value": "baseline"}) \
        == ["b"]
    both = {"and": [{"attr": "sys/tags", "op": "contains", "value": "gpu"},
                    {"attr": "config/lr", "op": "<", "value": 0.05}]}
    assert compile_and_run(both) == ["b"]
    # Written just now by a session that never closed: every run is running.
    assert sorted(compile_and_run({"attr": "sys/status", "op": "==", "value": "running"})) \
        == sorted(RUNS)
    assert compile_and_run({"attr": "sys/status", "op": "==", "value": "crashed"}) == []
    with pytest.raises(QueryError, match="contains asks a string set"):
        compile_and_run({"attr": "config/lr", "op": "contains", "value": "1"})
    with pytest.raises(QueryError, match="contains takes a non-empty string"):
        compile_and_run({"attr": "sys/tags", "op": "contains", "value": 3})


def test_a_filter_too_deep_or_too_large_is_refused(compile_and_run: Any) -> None:
    deep: Any = {"attr": "config/lr", "op": "exists"}
    for _ in range(40):
        deep = {"and": [deep]}
    with pytest.raises(QueryError, match="filter too large"):
        compile_and_run(deep)
    wide = {"or": [{"attr": "config/lr", "op": "exists"}] * 1001}
    with pytest.raises(QueryError, match="filter too large"):
        compile_and_run(wide)


def test_a_series_is_named_by_metric_scale_and_canonical_labels() -> None:
    assert parse_series("loss", "here") == SeriesName("loss", scale_given=False)
    named = parse_series({"metric": "acc", "scale": "EPOCH", "labels": {"b": "2", "a": "ü"}},
                         "here")
    assert named == SeriesName("acc", "EPOCH", '{"a":"ü","b":"2"}')
    assert named.describe() == "'acc' (scale EPOCH) {\"a\":\"ü\",\"b\":\"2\"}"
    for bad in ({"metric": ""}, {"scale": "x"}, {"metric": "m", "labels": {"a": 1}}, 3):
        with pytest.raises(QueryError, match="here: a series"):
            parse_series(bad, "here")
