"""The dashboard's routes over HTTP: its static files and the reads it adds."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import metrana
from metrana.server import ServerInfo, background_server
from metrana.server.static_files import BUNDLE, COMPILE_HINT, STATIC_DIR


def test_page_and_static_files_are_served_from_the_package(live_server: ServerInfo) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        # The page loads its first read's module on its own, then every other module as one
        # file (one request, not one per module), which imports that same first module.
        assert re.findall(r'<script src="([^"]+)" type="module"', page.text) == [
            "/static/js/first_read.js", BUNDLE]
        assert "modulepreload" not in page.text
        joined = client.get(BUNDLE)
        assert joined.headers["content-type"] == "text/javascript; charset=utf-8"
        assert re.findall(r"^import .*$", joined.text, re.M) == [
            'import * as __m_js_first_read from "./js/first_read.js";']
        modules = {f"js/{p.name}" for p in (STATIC_DIR / "js").glob("*.js")} - {"js/first_read.js"}
        assert set(re.findall(r"^// ---- (\S+)$", joined.text, re.M)) == modules | {"dashboard.js"}
        for path, kind in (("/static/dashboard.js", "text/javascript"),  # the modules, by themselves too
                           ("/static/js/chart.js", "text/javascript"),  # its modules
                           ("/static/dashboard.css", "text/css"),
                           ("/static/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
                           ("/static/vendor/uplot/uPlot.min.css", "text/css"),
                           ("/static/vendor/uplot/LICENSE", "text/plain")):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith(kind), path
        # uPlot is the released file, with V8's compile hint put before it as it is served.
        served = client.get("/static/vendor/uplot/uPlot.iife.min.js").content
        assert served == COMPILE_HINT + (STATIC_DIR / "vendor/uplot/uPlot.iife.min.js").read_bytes()
        assert served.startswith(b"//# allFunctionsCalledOnLoad\n/*! https://github.com/leeoniya/uPlot")
        # Revalidation is cheap: same ETag, no body.
        etag = client.get("/static/dashboard.js").headers["etag"]
        again = client.get("/static/dashboard.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert client.head("/static/dashboard.js").content == b""
        assert client.post("/", headers={"Content-Type": "application/json"}).status_code == 405
        # Only the package's files: nothing else can be named.
        for path in ("/static/", "/static/missing.js", "/static/../store.py",
                     "/static/%2e%2e/store.py", "/index.html"):
            assert client.get(path).status_code == 404, path


def test_page_needs_no_key_but_the_api_does(tmp_path: Path) -> None:
    with background_server(tmp_path / "s.sqlite3", api_key="k3y") as info, \
            httpx.Client(base_url=info.url) as client:
        assert client.get("/").status_code == 200
        assert "k3y" not in client.get("/").text
        assert client.get("/static/dashboard.js").status_code == 200
        assert client.get("/api/runs").status_code == 401
        assert client.get("/api/runs", headers={"Authorization": "Bearer k3y"}).status_code == 200


def test_series_changed_since_a_cursor(any_live_server: ServerInfo) -> None:
    url = any_live_server.url
    with metrana.session(workspace_name="dash", project_name="routes", run_name="cursor",
                         ingestion_url=url) as session, httpx.Client(base_url=url) as client:
        session.log({"a": 1.0, "b": 2.0})
        session.flush()
        base = "/api/runs/dash/routes/cursor/series"
        everything = client.get(base, params={"since": 0}).json()
        assert sorted(s["metric_name"] for s in everything["series"]) == ["a", "b"]
        assert everything["status"] == "running"
        cursor = everything["now_ns"]
        assert client.get(base, params={"since": cursor}).json()["series"] == []
        session.log("b", 3.0)
        session.flush()
        changed = client.get(base, params={"since": cursor}).json()["series"]
        assert [(s["metric_name"], s["point_count"]) for s in changed] == [("b", 2)]
        assert client.get("/api/runs/dash/routes/nope/series").status_code == 404


def test_band_of_one_environment(any_live_server: ServerInfo) -> None:
    url = any_live_server.url
    with metrana.session(workspace_name="dash", project_name="routes", run_name="envs",
                         ingestion_url=url) as session:
        for env in range(3):
            for k in range(10):
                session.log_rl_episode("return", float(env), rl_step=k, env_id=f"e{env}")
    with httpx.Client(base_url=url) as client:
        base = "/api/runs/dash/routes/envs/bands"
        every = client.get(base, params={"metric": "return"}).json()
        assert every["series"] == 3 and sum(every["count"]) == 30
        one = client.get(base, params={"metric": "return", "environment": "e2"}).json()
        assert one["series"] == 1 and sum(one["count"]) == 10
        assert set(one["mean"]) == {2.0}
        missing = client.get(base, params={"metric": "return", "environment": "e9"})
        assert missing.status_code == 404 and "'e9'" in missing.json()["message"]


def test_buckets_of_several_series_in_one_request(any_live_server: ServerInfo) -> None:
    url = any_live_server.url
    with metrana.session(workspace_name="dash", project_name="routes", run_name="batch",
                         ingestion_url=url) as session:
        for i in range(100):
            session.log({"a": float(i), "b": -float(i)})
        session.log("odd", [1.0, math.nan, math.inf, -math.inf])
    with metrana.session(workspace_name="dash", project_name="routes", run_name="batch-other",
                         ingestion_url=url) as session:
        session.log("c", 1.0)
    with httpx.Client(base_url=url) as client:
        base = "/api/runs/dash/routes/batch"
        ids = {s["metric_name"]: s["id"] for s in client.get(base).json()["series"]}
        a, b = ids["a"], ids["b"]
        body = client.get(f"{base}/buckets", params={"n": 10, "series": f"{a},{b}:90,{a}:5:9"})
        assert body.status_code == 200, body.text
        got = body.json()["series"]
        assert [(g["series_id"], g["start"], g["end"]) for g in got] == [
            (a, None, None), (b, 90, None), (a, 5, 9)]
        assert sum(got[0]["count"]) == 100 and not got[0]["raw"] and len(got[0]["x"]) == 10
        assert got[1]["raw"] and got[1]["x"] == list(range(90, 100))
        assert got[1]["mean"][0] == -90.0
        assert got[2]["x"] == [5, 6, 7, 8, 9]
        # The same as one series' own route.
        single = client.get(f"{base}/series/{a}/buckets", params={"n": 10}).json()
        assert {k: single[k] for k in ("x", "min", "max", "mean", "count")} == \
            {k: got[0][k] for k in ("x", "min", "max", "mean", "count")}
        # Non-finite values spelt as every read spells them.
        odd = client.get(f"{base}/buckets", params={"series": ids["odd"]}).json()["series"][0]
        assert odd["mean"] == [1.0, "NaN", "Infinity", "-Infinity"]
        assert client.get(f"{base}/series/{ids['odd']}/buckets").json()["mean"] == odd["mean"]
        other_run = client.get("/api/runs/dash/routes/batch-other").json()["series"][0]["id"]
        for series, status in ((f"{a},{other_run}", 404), ("x", 400), (f"{a}:1:2:3", 400),
                               (",".join([str(a)] * 101), 400), (f"{a}:{2**63}", 400),
                               ("", 400)):
            response = client.get(f"{base}/buckets", params={"series": series})
            assert response.status_code == status, (series, response.text)


def test_several_runs_and_their_buckets_in_one_request_each(any_live_server: ServerInfo
                                                            ) -> None:
    """The compare page's two reads: every run (many_runs), then every chart's buckets of
    every run (many_runs_buckets), each the same as the one-run routes answer."""
    url = any_live_server.url
    for name, sign in (("multi-a", 1.0), ("multi-b", -1.0)):
        with metrana.session(workspace_name="dash", project_name="routes", run_name=name,
                             ingestion_url=url) as session:
            for i in range(50):
                session.log({"loss": sign * i, "acc": sign * i / 2})
            session.log("odd", [1.0, math.nan, math.inf])
    names = [{"workspace": "dash", "project": "routes", "run": r} for r in ("multi-a", "multi-b")]
    with httpx.Client(base_url=url) as client:
        runs = client.post("/api/query/many_runs", json={"runs": names})
        assert runs.status_code == 200, runs.text
        details = runs.json()["runs"]
        for detail, named in zip(details, names, strict=True):
            one = client.get(f"/api/runs/dash/routes/{named['run']}").json()
            assert {k: v for k, v in detail.items() if k != "now_ns"} == \
                {k: v for k, v in one.items() if k != "now_ns"}
        # A project's overview is a GET too (the project page's first read: no CSRF header).
        overview = client.get("/api/runs/dash/routes")
        assert overview.status_code == 200 and overview.json()["runs"] >= 2
        assert overview.json() == client.post("/api/query/project", json={
            "workspace": "dash", "project": "routes"}).json()
        ids = [{s["metric_name"]: s["id"] for s in d["series"]} for d in details]
        whole = {"start": None, "end": None}
        asked: list[dict[str, Any]] = [
            {**names[0], "series": [{"id": ids[0]["loss"], **whole}, {"id": ids[0]["odd"], **whole}]},
            {**names[1], "series": [{"id": ids[1]["acc"], "start": 10, "end": 19}]}]
        body = client.post("/api/query/many_runs_buckets",
                           json={"n": 10, "compact": True, "runs": asked})
        assert body.status_code == 200, body.text
        got = body.json()["runs"]
        for run, want in zip(got, asked, strict=True):
            base = f"/api/runs/dash/routes/{want['run']}/buckets"
            specs = ",".join(f"{s['id']}:{s['start'] or ''}:{s['end'] or ''}".rstrip(":")
                             for s in want["series"])
            one = client.get(base, params={"n": 10, "compact": "1", "series": specs}).json()
            assert run == one
        assert got[0]["series"][1]["mean"] == [1.0, "NaN", "Infinity"]
        assert got[1]["series"][0]["x"] == list(range(10, 20))
        # Timestamps as differences (the first one whole): they add up to the points' own.
        full = client.post("/api/query/many_runs_buckets",
                           json={"n": 10, "runs": asked}).json()["runs"][1]["series"][0]
        assert full["x"] == list(range(10, 20)) and "dt" not in full
        assert np.cumsum(got[1]["series"][0]["dt"]).tolist() == full["t"]
        assert got[1]["series"][0]["mean"] == [-i / 2 for i in range(10, 20)]
        # A series of another run, an unknown run, and malformed bodies: refused whole.
        wrong = [{**names[0], "series": [{"id": ids[1]["loss"]}]}]
        for route, payload, status in (
                ("many_runs_buckets", {"runs": wrong}, 404),
                ("many_runs", {"runs": [{**names[0], "run": "nope"}]}, 404),
                ("many_runs", {"runs": []}, 400),
                ("many_runs", {"runs": [names[0]] * 101}, 400),
                ("many_runs_buckets", {"runs": [{**names[0], "series": []}]}, 400),
                ("many_runs_buckets", {"runs": [{**names[0], "series": [{"id": "x"}]}]}, 400)):
            response = client.post(f"/api/query/{route}", json=payload)
            assert response.status_code == status, (route, payload, response.text)
