"""The store on both databases (``db_target``: a SQLite file, a fresh PostgreSQL database):
what it guarantees, checked against the data written — idempotency, whole-or-nothing
requests, session-relative steps, exact bucket min/max, aggregates, point order, concurrent
writers (two stores on one database stand for two servers) and schema versions."""

from __future__ import annotations

import math
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metrana.server.errors import Conflict, NotFound, SchemaError, Unprocessable
from metrana.server.store import Store
from metrana.server.store.schema import SCHEMA_VERSION
from tests.support import UNDO_V5, in_background, writers_held_at

FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "server-schema-v1.sqlite3"
RELATIVE, ABSOLUTE = 1, 2


def std(name: str, steps: list[int], values: list[float | None] | None = None,
        ordering: int = RELATIVE, t0: int = 1_700_000_000_000_000_000) -> dict[str, Any]:
    """A standard series of a request, as the validator hands it to the store."""
    values = values if values is not None else [float(s) for s in steps]
    points = []
    for step, value in zip(steps, values, strict=True):
        point: dict[str, Any] = {"step": step, "timestamp": t0 + step % 10**9}
        if value is not None:
            point["float_value"] = value
        points.append(point)
    return {"metric_name": name, "scale": "ML_STEP", "ordering": ordering, "points": points}


def rl(name: str, env: str, major: int, minors: list[int], ordering: int = RELATIVE
       ) -> dict[str, Any]:
    return {"metric_name": name, "scale": "ENVIRONMENT_STEP", "environment_id": env,
            "ordering": ordering,
            "points": [{"major_step": major, "minor_step": m, "float_value": m / 2}
                       for m in minors]}


def update(run: str, session: int, *series: dict[str, Any], rl_series: tuple[Any, ...] = (),
           attributes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"session_id": session, "run_updates": [{
        "workspace": "ws", "project": "proj", "run_name": run, "series": list(series),
        "rl_series": list(rl_series), "attributes": attributes or []}]}


def create(store: Store, run: str = "run") -> None:
    store.create_run({"run": {"workspace": "ws", "project": "proj", "run_name": run},
                      "create_project_if_missing": True})


def series_of(store: Store, run: str = "run") -> dict[str, dict[str, Any]]:
    out = {}
    for s in store.get_run("ws", "proj", run)["series"]:
        key = s["metric_name"] + (f"@{s['environment_id']}" if s["kind"] == "rl" else "")
        out[key] = s
    return out


def steps(store: Store, name: str, run: str = "run") -> list[tuple[int, int]]:
    return [(p["step"], p["minor_step"]) for p in
            store.get_points(series_of(store, run)[name]["id"])]


@pytest.fixture
def store(db_target: str) -> Iterator[Store]:
    s = Store(db_target)
    yield s
    s.close()


@pytest.fixture
def open_store(db_target: str) -> Iterator[Callable[[], Store]]:
    """More stores on the same database: each stands for another server."""
    opened: list[Store] = []

    def make() -> Store:
        opened.append(Store(db_target))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


def run_at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls on threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return results


# ------------------------------------------------------------------------- idempotency


def test_a_retried_or_replayed_request_stores_nothing_twice(store: Store) -> None:
    """The same request three times, an older request replayed after a newer one, and a retry
    that overlaps new points: each point stored once, aggregates counting each once."""
    create(store)
    first = update("run", 7, std("loss", list(range(100))))
    second = update("run", 7, std("loss", list(range(100, 150))))
    assert [store.update_runs(first) for _ in range(3)] == [100, 0, 0]
    assert store.update_runs(second) == 50
    assert store.update_runs(first) == 0  # a replay of an older request
    assert store.update_runs(update("run", 7, std("loss", list(range(140, 160))))) == 10
    assert steps(store, "loss") == [(s, 0) for s in range(160)]
    summary = series_of(store)["loss"]["summary"]
    assert (summary["count"], summary["min"], summary["max"]) == (160, 0.0, 159.0)


def test_a_request_is_stored_whole_or_not_at_all(store: Store) -> None:
    """A request refused half-way (its second series' steps would pass 2**63-1) leaves no
    trace: not its first series' points, not the series it would have created."""
    create(store)
    store.update_runs(update("run", 1, std("big", [2**63 - 10], ordering=ABSOLUTE)))
    before = store.get_run("ws", "proj", "run")
    bad = update("run", 2, std("fresh", [0, 1, 2]), std("big", [5, 20]),
                 attributes=[{"path": "config/x", "int_value": 1}])
    with pytest.raises(Unprocessable, match="2\\*\\*63-1"):
        store.update_runs(bad)
    after = store.get_run("ws", "proj", "run")
    assert after == before
    assert [s["metric_name"] for s in after["series"]] == ["big"]
    # The same session then writes a valid request: its relative steps go after "big"'s.
    assert store.update_runs(update("run", 2, std("big", [0, 1]))) == 2
    assert steps(store, "big") == [(2**63 - 10, 0), (2**63 - 9, 0), (2**63 - 8, 0)]


# --------------------------------------------------------------------------- sessions


def test_sessions_append_and_a_replayed_session_lands_on_its_own_points(store: Store) -> None:
    """Session 2 of a run (a resume) numbers from 0 and is stored after session 1; session 1
    replayed later stores nothing; a point of one session never replaces another's."""
    create(store)
    store.update_runs(update("run", 1, std("loss", list(range(100)))))
    store.update_runs(update("run", 2, std("loss", list(range(50)))))
    assert store.update_runs(update("run", 1, std("loss", list(range(100))))) == 0
    assert store.update_runs(update("run", 2, std("loss", list(range(50))))) == 0
    assert steps(store, "loss") == [(s, 0) for s in range(150)]
    # Session 1 carries on at its own step 100, which session 2 also has: both are kept.
    assert store.update_runs(update("run", 1, std("loss", [100], [-1.0]))) == 1
    points = store.get_points(series_of(store)["loss"]["id"], start=100, end=100)
    assert sorted(p["value"] for p in points) == [-1.0, 0.0]  # session 2: its own step 0


def test_rl_sessions_append_on_the_minor_step_and_manual_steps_keep_theirs(
        store: Store) -> None:
    """RL series' relative steps are the minor (environment) step: a second session's go
    after the first's. Manual (absolute) steps are stored as given, in any order, and a later
    relative session goes after the largest of them."""
    create(store)
    store.update_runs(update("run", 1, rl_series=(rl("reward", "env-0", 3, [0, 1, 2]),)))
    store.update_runs(update("run", 2, rl_series=(rl("reward", "env-0", 3, [0, 1]),)))
    assert steps(store, "reward@env-0") == [(3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]
    store.update_runs(update("run", 1, std("manual", [50, 10, 30], ordering=ABSOLUTE)))
    store.update_runs(update("run", 2, std("manual", [20, 10], ordering=ABSOLUTE)))
    store.update_runs(update("run", 3, std("manual", [0, 1])))
    assert [s for s, _ in steps(store, "manual")] == [10, 10, 20, 30, 50, 51, 52]


def test_two_runs_in_one_request_and_one_series_sent_in_pieces(store: Store) -> None:
    """A request naming a run twice, or a series in several pieces, is one write per series:
    equal steps within it keep the first."""
    create(store, "a")
    create(store, "b")
    body = update("a", 5, std("loss", [0, 1]))
    body["run_updates"] += update("a", 5, std("loss", [1, 2], [9.0, 2.0]))["run_updates"]
    body["run_updates"] += update("b", 5, std("loss", [0]))["run_updates"]
    assert store.update_runs(body) == 4
    assert [p["value"] for p in store.get_points(series_of(store, "a")["loss"]["id"])] == [
        0.0, 1.0, 2.0]
    assert store.update_runs(body) == 0


# ------------------------------------------------------------------- reads and buckets


def test_buckets_min_and_max_are_exact_against_the_raw_points(store: Store) -> None:
    """120,000 points with rare spikes, written as clients write them (10,000-point requests).
    Each bucket stands for the steps from its x to the next bucket's: its count, min and max
    equal those of the raw points there, its mean their mean — over the full range (block
    statistics), a zoom whose edges cut through chunks, a range read from points, and one
    small enough to be answered with the points themselves."""
    create(store)
    rng = np.random.default_rng(3)
    n = 120_000
    values = np.sin(np.arange(n) / 5000) + rng.random(n) * 0.1
    values[rng.choice(n, 12, replace=False)] = 40.0
    values[rng.choice(n, 12, replace=False)] = -40.0
    for start in range(0, n, 10_000):
        store.update_runs(update("run", 9, std("loss", list(range(start, start + 10_000)),
                                               values[start:start + 10_000].tolist())))
    series_id = series_of(store)["loss"]["id"]
    # Full range and zoom: block statistics; 1,000 points in 300 buckets: the points; 100
    # points in 1,000 buckets: the points themselves (raw).
    ranges = ((0, n - 1, 200), (12_345, 98_765, 150), (40_000, 40_999, 300),
              (50_000, 50_099, 1000))
    for lo, hi, buckets in ranges:
        got = store.buckets([series_id], buckets, lo, hi)
        assert got["raw"] == (buckets == 1000)
        if got["raw"]:
            assert got["x"] == list(range(lo, hi + 1))
            assert got["min"] == got["max"] == values[lo:hi + 1].tolist()
            continue
        assert not got["raw"] and 0 < len(got["x"]) <= buckets
        bounds = [*got["x"], hi + 1]
        assert bounds[0] == lo and bounds == sorted(bounds)
        for i in range(len(got["x"])):
            inside = values[bounds[i]:bounds[i + 1]]
            assert got["count"][i] == inside.size
            assert (got["min"][i], got["max"][i]) == (inside.min(), inside.max())
            assert got["mean"][i] == pytest.approx(inside.mean())
            assert got["last"][i] == inside[-1]
    full = store.buckets([series_id], 200)
    assert (max(full["max"]), min(full["min"])) == (40.0, -40.0)


def test_aggregates_follow_nan_inf_missing_values_and_late_points(store: Store) -> None:
    """count, valid, min, max, mean and last of a series, with NaN, ±inf and missing values,
    and an earlier step arriving last (the last point is the one with the largest step)."""
    create(store)
    store.update_runs(update("run", 1, std("v", [0, 1, 2, 3], [1.0, math.nan, None, 3.0],
                                           ordering=ABSOLUTE)))
    store.update_runs(update("run", 1, std("v", [10, 5], [math.inf, -2.0], ordering=ABSOLUTE)))
    s = series_of(store)["v"]
    assert s["summary"] == {"count": 6, "valid": 4, "min": -2.0, "max": math.inf,
                            "mean": math.inf, "last": math.inf}
    assert (s["first_step"], s["last_step"], s["last_point"]["step"]) == (0, 10, 10)
    store.update_runs(update("run", 1, std("v", [7], [-math.inf], ordering=ABSOLUTE)))
    s = series_of(store)["v"]
    assert s["summary"]["mean"] is None  # inf + -inf: no mean, and it stays so
    assert s["summary"]["last"] == math.inf
    store.update_runs(update("run", 1, std("v", [11], [None], ordering=ABSOLUTE)))
    s = series_of(store)["v"]
    assert (s["summary"]["last"], s["last_point"]["value"], s["summary"]["mean"]) == (
        None, None, None)


def test_get_points_are_in_step_order_with_bounds_and_limit(store: Store) -> None:
    """Points written out of order over many requests and chunks come back in (step, minor)
    order; start/end bound the step, limit cuts the answer."""
    create(store)
    rng = np.random.default_rng(1)
    order = rng.permutation(9000)
    for part in np.array_split(order, 7):
        store.update_runs(update("run", 4, std("shuffled", part.tolist(), ordering=ABSOLUTE)))
    series_id = series_of(store)["shuffled"]["id"]
    assert [p["step"] for p in store.get_points(series_id)] == list(range(9000))
    assert [p["step"] for p in store.get_points(series_id, 4090, 4200, limit=5)] == list(
        range(4090, 4095))
    assert [p["value"] for p in store.get_points(series_id, 8998)] == [8998.0, 8999.0]
    store.update_runs(update("run", 4, rl_series=(rl("r", "e", 2, [2, 0, 1], ABSOLUTE),
                                                  rl("r", "e", 1, [5], ABSOLUTE))))
    assert steps(store, "r@e") == [(1, 5), (2, 0), (2, 1), (2, 2)]


# ------------------------------------------------------------------------ concurrency


def test_two_servers_storing_the_same_request_at_once_store_it_once(
        db_target: str, open_store: Callable[[], Store]) -> None:
    """The same batch reaches two servers at the same moment (a client retried on another
    one): both succeed, each point is stored once — for new series (both create them: held
    at the series insert), for existing ones (both append the same points: held at the chunk
    insert, the second server's transaction having read the series before the first wrote),
    and for both at once."""
    a, b = open_store(), open_store()
    create(a)
    for table, batch in (
            ("series", update("run", 3, std("loss", list(range(500))), std("acc", [0, 1]))),
            ("chunks", update("run", 3, std("loss", list(range(500, 700))), std("acc", [2]))),
            ("series", update("run", 3, std("loss", list(range(700, 800))), std("lr", [0])))):
        with writers_held_at(db_target, table, 2) as wait:
            join = in_background(partial(a.update_runs, batch), partial(b.update_runs, batch))
            wait()
        assert sorted(join()) == [0, sum(len(s["points"]) for s in batch["run_updates"][0]
                                         ["series"])]
    assert steps(a, "loss") == [(s, 0) for s in range(800)]
    assert {k: v["point_count"] for k, v in series_of(b).items()} == {
        "loss": 800, "acc": 3, "lr": 1}


def test_requests_creating_series_in_opposite_orders_never_deadlock(
        db_target: str, open_store: Callable[[], Store]) -> None:
    """Two servers each create the same ten new series, listed in opposite orders, at once:
    neither fails (a deadlock would abort one), and each series holds both sessions' points."""
    a, b = open_store(), open_store()
    create(a)
    names = [f"m{i}" for i in range(10)]
    forward = update("run", 1, *(std(n, [0, 1]) for n in names))
    backward = update("run", 2, *(std(n, [0, 1]) for n in reversed(names)))
    with writers_held_at(db_target, "series", 2) as wait:
        join = in_background(lambda: a.update_runs(forward), lambda: b.update_runs(backward))
        wait()
    assert join() == [20, 20]
    assert {k: v["point_count"] for k, v in series_of(a).items()} == {n: 4 for n in names}


def test_two_clients_creating_one_run_at_once_one_wins(
        db_target: str, open_store: Callable[[], Store]) -> None:
    """Two servers create the same run (and its new project) at the same moment: one
    succeeds, the other is told it exists (409), and there is one run."""
    a, b = open_store(), open_store()
    request = {"run": {"workspace": "ws", "project": "new", "run_name": "r"},
               "create_project_if_missing": True}
    with writers_held_at(db_target, "projects", 2) as wait:
        join = in_background(lambda: a.create_run(request), lambda: b.create_run(request))
        wait()
    results = join()
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "NoneType"]
    assert isinstance(next(r for r in results if r is not None), Conflict)
    assert [r["run"] for r in a.list_runs()] == ["r"]


def test_many_writers_on_shared_and_own_series_lose_nothing(
        open_store: Callable[[], Store]) -> None:
    """Four servers, each with its own session, write alternately to shared series and to
    their own, 20 requests each, all at once: every point is stored, once."""
    stores = [open_store() for _ in range(4)]
    create(stores[0])

    def writer(i: int) -> int:
        total = 0
        for r in range(20):
            body = update("run", 100 + i, std("shared", list(range(r * 10, r * 10 + 10))),
                          std(f"own{i}", [r]),
                          attributes=[{"path": "tags", "string_set_delta_value":
                                       {"added_values": [f"w{i}-{r}"]}}])
            total += stores[i].update_runs(body)
        return total

    assert run_at_once(*(lambda i=i: writer(i) for i in range(4))) == [220] * 4
    counts = {k: v["point_count"] for k, v in series_of(stores[1]).items()}
    assert counts == {"shared": 800, **{f"own{i}": 20 for i in range(4)}}
    tags = stores[2].get_run("ws", "proj", "run")["attributes"]["tags"]["value"]
    assert len(tags) == 80  # no delta lost to a concurrent one


# ----------------------------------------------------------------------------- schema


def _v1_contents(path: Path) -> dict[str, Any]:
    """What a version-1 file holds, read with sqlite3 (not the store)."""
    with sqlite3.connect(path) as conn:
        runs = conn.execute("SELECT workspace, project, run_name, experiment FROM runs "
                            "JOIN projects ON projects.id = project_id").fetchall()
        attributes = conn.execute("SELECT path, kind, value FROM attributes").fetchall()
        points: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for row in conn.execute(
                "SELECT run_name, kind, metric_name, labels, environment_id, has_episode, "
                "episode, step, minor_step, timestamp_ns, value, value_kind FROM points "
                "JOIN series ON series.id = series_id JOIN runs ON runs.id = run_id "
                "ORDER BY series_id, step, minor_step"):
            value = math.nan if row[11] == 1 else (None if row[11] == 2 else row[10])
            points.setdefault(row[:7], []).append((row[7], row[8], row[9], value))
    return {"runs": runs, "attributes": attributes, "points": points}


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    """Equal, with NaN equal to NaN."""
    return len(a) == len(b) and all(
        len(x) == len(y) and all(u == v or (u != u and v != v) for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True))


def test_a_version_1_database_opens_with_everything_in_it(tmp_path: Path) -> None:
    """The committed database of the old ``metrana serve`` (a row per point, no version):
    after opening it, every run, attribute and point is there with its value (NaN, ±inf, RL
    steps, manual steps), its run names as they were, and a new session appends."""
    path = tmp_path / "old.sqlite3"
    shutil.copy(FIXTURE_V1, path)
    expected = _v1_contents(path)
    assert sum(len(p) for k, p in expected["points"].items() if k[0] == "run-a") == 309
    store = Store(path)
    try:
        runs = {(r["workspace"], r["project"], r["run"]): r for r in store.list_runs()}
        assert set(runs) == {(w, p, r) for w, p, r, _ in expected["runs"]}
        assert set(runs) == {("legacy", "proj", "run-a"), ("legacy", "proj", "run b/with slash")}
        assert runs[("legacy", "proj", "run-a")]["point_count"] == 309
        assert runs[("legacy", "proj", "run-a")]["series_count"] == 12
        got_points: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for workspace, project, run, experiment in expected["runs"]:
            detail = store.get_run(workspace, project, run)
            assert detail["experiment"] == experiment
            if run == "run-a":
                import json

                assert {p: (a["kind"], a["value"]) for p, a in detail["attributes"].items()} == {
                    path_: (kind, json.loads(value)) for path_, kind, value in
                    expected["attributes"]}
            for s in detail["series"]:
                key = (run, s["kind"], s["metric_name"], json_labels(s["labels"]),
                       s["environment_id"], int(s["episode"] is not None), s["episode"] or 0)
                got_points[key] = [(p["step"], p["minor_step"], p["timestamp_ns"], p["value"])
                                   for p in store.get_points(s["id"])]
        assert got_points.keys() == expected["points"].keys()
        for key, points in expected["points"].items():
            assert _same(got_points[key], points), key
        values = [v for pts in got_points.values() for *_, v in pts]
        assert math.inf in values and any(v != v for v in values)
        loss_steps = [p[0] for p in got_points[("run-a", "standard", "loss", "{}", "", 0, 0)]]
        store.update_runs({"session_id": 99, "run_updates": [{
            "workspace": "legacy", "project": "proj", "run_name": "run-a",
            "series": [{"metric_name": "loss", "scale": "ML_STEP", "ordering": RELATIVE,
                        "points": [{"step": 0, "float_value": 1.0}]}]}]})
        (loss,) = [s for s in store.get_run("legacy", "proj", "run-a")["series"]
                   if s["metric_name"] == "loss"]
        assert loss["last_step"] == max(loss_steps) + 1
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "points" not in tables and "chunks_by_session" in tables


def json_labels(labels: dict[str, str]) -> str:
    import json

    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _snapshot(db_target: str) -> Any:
    """Everything a database holds, to compare before and after (SQLite: the file's bytes)."""
    if not db_target.startswith("postgresql://"):
        return Path(db_target).read_bytes()
    import psycopg

    with psycopg.connect(db_target) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() ORDER BY 1")]
        indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = "
                               "current_schema() ORDER BY 1").fetchall()
        rows = {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}").fetchall()))
                for t in tables}
    return tables, indexes, rows


def _execute(db_target: str, *statements: str) -> None:
    if db_target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_target) as conn:
            for statement in statements:
                conn.execute(statement.encode())
    else:
        with sqlite3.connect(db_target) as conn:
            for statement in statements:
                conn.execute(statement)
        sqlite3.connect(db_target).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()


def test_a_newer_schema_is_refused_with_a_clear_message_and_left_unchanged(
        db_target: str) -> None:
    """A database a newer metrana wrote (schema version 99): opening it fails with a message
    saying so and what to do, and not a byte / row of it changes."""
    store = Store(db_target)
    create(store)
    store.update_runs(update("run", 1, std("loss", [0, 1, 2])))
    store.close()
    _execute(db_target, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = _snapshot(db_target)
    with pytest.raises(SchemaError) as refused:
        Store(db_target)
    message = str(refused.value)
    assert "newer metrana (schema version 99" in message
    assert f"knows up to {SCHEMA_VERSION}" in message and "pip install -U metrana" in message
    assert "nothing was changed" in message
    assert _snapshot(db_target) == before


def test_a_version_4_database_gains_the_key_tables(db_target: str) -> None:
    """A database of schema version 4 (before API keys) gets the keys, sessions and writers
    tables on opening; its runs are untouched, and keys and writers then work."""
    store = Store(db_target)
    create(store)
    store.update_runs(update("run", 1, std("loss", list(range(100)))))
    store.close()
    _execute(db_target, *UNDO_V5, "UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    store = Store(db_target)
    try:
        assert steps(store, "loss") == [(s, 0) for s in range(100)]
        assert not store.any_key()
        store.update_runs(update("run", 1, std("loss", [100])), "1a2b3c4d")
        assert [w["key"] for w in store.get_run("ws", "proj", "run")["writers"]] == ["1a2b3c4d"]
    finally:
        store.close()


def test_a_version_2_database_is_brought_to_the_current_version(db_target: str) -> None:
    """A database of schema version 2 (before chunks were indexed by session) gets the index
    and the version on opening; its data is untouched and retries find stored points."""
    store = Store(db_target)
    create(store)
    store.update_runs(update("run", 1, std("loss", list(range(5000)))))
    store.close()
    _execute(db_target, "DROP INDEX chunks_by_session", *UNDO_V5,
             "ALTER TABLE series DROP COLUMN tail_points", "ALTER TABLE series DROP COLUMN tail_mean",
             "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = Store(db_target)
    try:
        assert steps(store, "loss") == [(s, 0) for s in range(5000)]
        assert store.update_runs(update("run", 1, std("loss", list(range(4000, 5000))))) == 0
    finally:
        store.close()
    snapshot = _snapshot(db_target)
    if isinstance(snapshot, tuple):
        assert ("chunks_by_session",) in snapshot[1]
        assert repr(("schema_version", str(SCHEMA_VERSION))) in snapshot[2]["meta"]
    else:
        with sqlite3.connect(db_target) as conn:
            assert conn.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
            assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_by_session'"
                                ).fetchall() == [(1,)]


def test_servers_starting_at_once_on_an_empty_database_all_open_it(db_target: str) -> None:
    """Three servers start on a new database at the same moment: one creates the schema, the
    others wait for it and find it made; all of them work."""
    stores = run_at_once(*(lambda: Store(db_target) for _ in range(3)))
    try:
        assert all(isinstance(s, Store) for s in stores), stores
        create(stores[0], "r0")
        assert [r["run"] for r in stores[2].list_runs()] == ["r0"]
    finally:
        for s in stores:
            if isinstance(s, Store):
                s.close()


# ----------------------------------------------------------------- what a run reads back


def test_a_run_reads_back_its_rules_last_points_and_activity(store: Store) -> None:
    """Aggregation rules by function name; each series' last point and summary (a NaN last
    value stays NaN); the run's and the series' last activity, the time of the last write."""
    store.create_run({"run": {"workspace": "ws", "project": "proj", "run_name": "run"},
                      "create_project_if_missing": True,
                      "aggregation_rules": [{"metric_name": "reward", "fns": [1, 2, 3, 4, 5, 6]}]})
    created = store.get_run("ws", "proj", "run")["created_ns"]
    store.update_runs(update("run", 1, std("loss", [0, 1, 2], [1.5, 2.5, 3.5]),
                             std("acc", [0, 1], [1.0, math.nan])))
    run = store.get_run("ws", "proj", "run")
    assert run["aggregation_rules"] == [{"metric_name": "reward", "fns": [
        "AGGREGATION_FN_MEAN", "AGGREGATION_FN_MAX", "AGGREGATION_FN_SUM", "AGGREGATION_FN_MIN",
        "AGGREGATION_FN_STD_DEV", "AGGREGATION_FN_COUNT"]}]
    loss, acc = series_of(store)["loss"], series_of(store)["acc"]
    t0 = 1_700_000_000_000_000_000
    assert loss["last_point"] == {"step": 2, "minor_step": 0, "timestamp_ns": t0 + 2,
                                  "value": 3.5}
    assert loss["summary"] == {"count": 3, "valid": 3, "min": 1.5, "max": 3.5, "mean": 2.5,
                               "last": 3.5}
    assert math.isnan(acc["last_point"]["value"]) and math.isnan(acc["summary"]["last"])
    assert loss["last_activity_ns"] > created
    assert run["last_activity_ns"] == max(loss["last_activity_ns"], acc["last_activity_ns"])
    (listed,) = [r for r in store.list_runs() if r["run"] == "run"]
    assert (listed["last_activity_ns"], listed["status"], listed["series_count"],
            listed["point_count"]) == (run["last_activity_ns"], "live", 2, 5)


def test_a_series_without_points_and_reads_past_the_end(store: Store) -> None:
    """A series sent with no points (also in a later session) is stored with none and the
    request's other points are; reading a step range past the last point gives nothing."""
    create(store)
    store.update_runs(update("run", 1, std("loss", [0, 1]), std("empty", [])))
    store.update_runs(update("run", 2, std("loss", [0]), std("empty", [])))
    assert steps(store, "loss") == [(0, 0), (1, 0), (2, 0)]
    assert (series_of(store)["empty"]["point_count"], steps(store, "empty")) == (0, [])
    loss = series_of(store)["loss"]["id"]
    assert store.get_points(loss, start=5, end=9) == []
    assert [p["step"] for p in store.get_points(loss, start=1, end=9)] == [1, 2]


def test_rl_series_of_a_metric_are_found_by_scale_and_evaluation(store: Store) -> None:
    create(store)
    episodic = {**rl("reward", "e1", 0, [0, 1]), "scale": "EPISODE"}
    evaluation = {**rl("reward", "e2", 0, [0]), "labels": {"evaluation": "true"}}
    store.update_runs(update("run", 1, rl_series=(rl("reward", "e0", 0, [0]), episodic,
                                                   evaluation)))
    ids = {key: s["id"] for key, s in series_of(store).items()}
    assert store.series_ids("ws", "proj", "run", "reward") == [
        ids["reward@e0"], ids["reward@e1"], ids["reward@e2"]]
    assert store.series_ids("ws", "proj", "run", "reward", scale="EPISODE") == [ids["reward@e1"]]
    assert store.series_ids("ws", "proj", "run", "reward", evaluation=True) == [ids["reward@e2"]]
    assert store.series_ids("ws", "proj", "run", "reward", scale="ENVIRONMENT_STEP",
                            evaluation=False) == [ids["reward@e0"]]


def test_rl_points_of_one_major_step_read_back_in_minor_order(store: Store) -> None:
    """Absolute RL steps stored out of order over two requests (minor 1, then minor 0 of the
    same major step, each its own chunk): read back in (major, minor) order."""
    create(store)
    store.update_runs(update("run", 1, rl_series=(rl("reward", "e", 0, [1], ordering=ABSOLUTE),)))
    store.update_runs(update("run", 1, rl_series=(rl("reward", "e", 0, [0], ordering=ABSOLUTE),)))
    assert steps(store, "reward@e") == [(0, 0), (0, 1)]


def test_a_runs_series_listing_says_where_each_series_ends(store: Store) -> None:
    """What a client resuming a run asks: each series' identity and its last stored step —
    the last major step (rl_step) of an RL series — whatever session or ordering wrote it."""
    import json

    create(store)
    store.update_runs(update("run", 1, std("loss", [0, 1, 2]),
                             {**std("eval", [3, 7], ordering=ABSOLUTE),
                              "labels": {"split": "val"}},
                             rl_series=(rl("reward", "env-0", 40, [0, 1]),
                                        {**rl("reward", "env-1", 90, [0]), "episode": 3})))
    store.update_runs(update("run", 2, std("loss", [0, 1]), rl_series=(
        rl("reward", "env-0", 30, [0]),)))  # a later session: appended; a lower major step
    create(store, "other")
    store.update_runs(update("other", 1, std("loss", [0])))
    listing = json.loads(store.list_series("ws", "proj", ["run"]))["series"]
    ends = sorted((s["kind"], s["metric"], s["labels"], s["environment"], s["episode"],
                   s["last_step"]) for s in listing)
    assert ends == [("rl", "reward", {}, "env-0", None, 40), ("rl", "reward", {}, "env-1", 3, 90),
                    ("standard", "eval", {"split": "val"}, None, None, 7),
                    ("standard", "loss", {}, None, None, 4)]
    with pytest.raises(NotFound, match="has no run 'missing'"):
        store.list_series("ws", "proj", ["missing"])
