"""The read API is one route table: each documented ``GET /api/runs…`` URL is a thin alias of a
``POST /api/query/<route>`` and answers exactly as it does, and a database opened in-process
(``LocalTransport``, what ``metrana runs --db`` and ``QueryClient(db=...)`` use) answers as
the server does."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import metrana
from metrana._read_transport import HttpTransport, LocalTransport, QueryRequestError
from metrana.server import ServerInfo, background_server
from metrana.server.access import key_principal
from metrana.server.api_keys import Role
from metrana.server.errors import Forbidden, NotFound
from metrana.server.read_api import answer
from metrana.server.store import Store


@pytest.fixture
def fresh_server(db_target: str) -> Iterator[ServerInfo]:
    """A server of this test's own on either database: only its runs, all finished, so
    that two reads a moment apart see the same statuses."""
    with background_server(db_target) as info:
        yield info


def log_run(url: str, run: str) -> None:
    with metrana.session(workspace_name="reads", project_name="alias", run_name=run,
                         ingestion_url=url, config={"lr": 0.5}) as session:
        for step in range(50):
            session.log({"loss": 1 / (step + 1), "odd": [math.nan, math.inf][step % 2]})
        session.log("loss", 0.0, labels={"split": "val"})
        for env in ("e0", "e1"):
            for k in range(20):
                session.log_rl_episode("reward", float(k), rl_step=k, env_id=env)


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without the moment it was made (``now_ns``: the live cursor)."""
    return {k: v for k, v in answer.items() if k != "now_ns"}


def test_every_get_url_answers_as_its_query_route(fresh_server: ServerInfo) -> None:
    url = fresh_server.url
    log_run(url, "both-ways")
    names = {"workspace": "reads", "project": "alias", "run": "both-ways"}
    base = "/api/runs/reads/alias/both-ways"
    with httpx.Client(base_url=url, timeout=30) as client:
        series = {(s["metric_name"], s["environment_id"], str(s["labels"])): s["id"]
                  for s in client.get(base).json()["series"]}
        loss, odd = series[("loss", "", "{}")], series[("odd", "", "{}")]
        aliases: list[tuple[str, str, dict[str, Any]]] = [
            ("/api/runs", "all_runs", {}),
            ("/api/runs/reads/alias", "project", {"workspace": "reads", "project": "alias"}),
            (base, "run", names),
            (f"{base}/series?since=0", "changed_series", {**names, "since_ns": 0}),
            (f"{base}/series/{odd}/points?start=3&end=20&limit=5", "series_points",
             {**names, "series_id": odd, "start": 3, "end": 20, "limit": 5}),
            (f"{base}/series/{loss}/buckets?n=7&start=4", "buckets",
             {**names, "series_id": loss, "n": 7, "start": 4}),
            (f"{base}/buckets?n=5&series={loss},{odd}:2:30", "many_buckets",
             {**names, "n": 5, "series": [{"id": loss}, {"id": odd, "start": 2, "end": 30}]}),
            (f"{base}/bands?metric=reward&n=4&evaluation=false", "band",
             {**names, "metric": "reward", "n": 4, "evaluation": False}),
            (f"{base}/bands?metric=reward&environment=e1", "band",
             {**names, "metric": "reward", "environment": "e1"}),
            # Refusals are the same too.
            (f"{base}/series/999999999/points", "series_points",
             {**names, "series_id": 999999999}),
            (f"{base}/bands?metric=reward&environment=e9", "band",
             {**names, "metric": "reward", "environment": "e9"}),
            ("/api/runs/reads/alias/nope", "run", {**names, "run": "nope"}),
            (f"{base}/buckets?n=0&series={loss}", "many_buckets",
             {**names, "n": 0, "series": [{"id": loss}]}),
        ]
        for path, route, body in aliases:
            got = client.get(path)
            want = client.post(f"/api/query/{route}", json=body)
            assert got.status_code == want.status_code, (path, got.text, want.text)
            assert comparable(got.json()) == comparable(want.json()), path
        # What the answers say (their content is checked against the logged values by the
        # tests of each route; here, that the aliases are not all errors).
        statuses = [client.get(path).status_code for path, _, _ in aliases]
        assert statuses == [200] * 9 + [404, 404, 404, 400]
        # compact=1 (the dashboard's): raw points without the columns repeating their value,
        # timestamps as differences from the one before (the first one whole).
        full = client.get(f"{base}/buckets?n=500&series={odd}").json()["series"][0]
        compact = client.get(f"{base}/buckets?n=500&compact=1&series={odd}").json()["series"][0]
        assert full["raw"] and set(compact) == {"series_id", "start", "end", "x", "dt", "mean",
                                                "raw", "compact"}
        assert (compact["x"], np.cumsum(compact["dt"]).tolist(), compact["mean"]) == (
            full["x"], full["t"], full["min"])
        assert compact["mean"][:2] == ["NaN", "Infinity"]
        assert client.post("/api/query/many_buckets", json={
            **names, "n": 500, "compact": True, "series": [{"id": odd}]}).json()["series"][0] \
            == compact


def test_a_database_opened_in_process_answers_as_the_server(fresh_server: ServerInfo) -> None:
    url = fresh_server.url
    log_run(url, "in-process")
    names = {"workspace": "reads", "project": "alias", "run": "in-process"}
    remote = HttpTransport(url, None)
    local = LocalTransport(fresh_server.db_path)
    try:
        detail = remote.call("run", names)
        assert local.call("run", names) == detail
        ids = [s["id"] for s in detail["series"]]
        for route, body in (
                ("all_runs", {}),
                ("series", {"workspace": "reads", "project": "alias", "runs": None}),
                ("series_points", {**names, "series_id": ids[1]}),
                ("many_buckets", {**names, "series": [{"id": i} for i in ids], "n": 10}),
                ("band", {**names, "metric": "reward", "n": 3}),
                ("buckets", {**names, "series": {"metric": "loss", "labels": {"split": "val"}}}),
                ("points", {"workspace": "reads", "project": "alias", "rl": True,
                            "series": [{"run": "in-process", "metric": "reward"}]})):
            assert local.call(route, body) == remote.call(route, body), route
        for transport in (remote, local):
            with pytest.raises(QueryRequestError, match="no series 999") as refused:
                transport.call("series_points", {**names, "series_id": 999})
            assert refused.value.status == 404
            with pytest.raises(QueryRequestError, match="'n' must be an integer") as refused:
                transport.call("buckets", {**names, "series_id": ids[0], "n": 0})
            assert refused.value.status == 400
            with pytest.raises(QueryRequestError, match="no query route 'nope'"):
                transport.call("nope", {})
    finally:
        remote.close()
        local.close()


def test_an_unknown_get_path_or_a_bad_number_is_refused(live_server: ServerInfo) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        for path, status, says in (
                ("/api/runs/ws", 404, "no route GET /api/runs/ws"),
                ("/api/runs/ws/p/r/elsewhere", 404, "no route GET"),
                ("/api/runs/ws/p/r/series?since=soon", 400, "since must be an integer"),
                ("/api/runs/ws/p/r/series/x/points", 400, "series id must be an integer"),
                (f"/api/runs/ws/p/r/series/1/points?start={2**63}", 400, "must fit in 64 bits"),
                ("/api/runs/ws/p/r/bands", 400, "'metric' must be a non-empty string"),
                ("/api/runs/ws/p/r/buckets", 400, "'series' is required")):
            response = client.get(path)
            assert response.status_code == status, (path, response.text)
            assert says in response.json()["message"], (path, response.text)
        assert client.post("/api/runs", json={}).status_code == 405
        assert client.get("/api/query/run").status_code == 405


def test_many_runs_routes_check_every_workspace_they_name(tmp_path: Path) -> None:
    """A key of one workspace cannot read another's runs by naming them among its own."""
    store = Store(tmp_path / "scoped.sqlite3")
    try:
        mine = key_principal("abc", Role.READ, ["mine"])
        run = {"project": "p", "run": "r"}
        for route, body in (
                ("many_runs", {"runs": [{"workspace": "mine", **run},
                                        {"workspace": "theirs", **run}]}),
                ("many_runs_buckets", {"runs": [{"workspace": "theirs", **run,
                                                 "series": [{"id": 1}]}]})):
            with pytest.raises(Forbidden, match="workspace 'theirs'"):
                answer(store, route, body, mine)
        with pytest.raises(NotFound):  # its own workspace: asked, and not there
            answer(store, "many_runs", {"runs": [{"workspace": "mine", **run}]}, mine)
    finally:
        store.close()
