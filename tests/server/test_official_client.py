"""The official client (``metrana==1.11.0``, gRPC) logs into a real ``metrana serve``, and what it
logged is read back through ``metrana.query``, point for point: scalars, RL episodes and
environment steps, config, environment attributes, resume, a server killed mid-run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from metrana.query import QueryClient
from tests.official_client import run_official, start_official
from tests.support import start_serve, stop_serve


def f32(values: list[float]) -> list[float]:
    """What the client sends by default (``default_dtype="float32"``), read back as float64."""
    return [float(v) for v in np.array(values, dtype=np.float32)]


def query(url: str) -> QueryClient:
    return QueryClient("ws", "proj", url=url)


def ran(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"official client failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def rl_points(client: QueryClient, run: str, metric: str) -> list[tuple[object, ...]]:
    frame = client.fetch_rl_env_float_series(run, metric)
    return sorted((row.environment, None if pd.isna(row.episode) else int(row.episode),
                   int(row.rl_step), int(row.minor_step), row.value)
                  for row in frame.itertuples())


LOG_RUN = """
init(config={"lr": 0.001, "optimizer": {"name": "adam", "betas": [0.9, 0.99]}, "epochs": 3},
     tags=["baseline", "mnist"], description="first try")
metrana.add_tags(["sweep"])
metrana.log_distributed("grad_norm", [1.5, 2.5], step=[4, 2])
for i in range(100):
    metrana.log("loss", 1.0 / (i + 1))
metrana.log("acc", [0.5, 0.75], step=[10, 20])
metrana.log("val_acc", 0.25, evaluation=True)
for rl_step in (1, 2):
    metrana.log_rl_episode("return", 10.0 * rl_step, rl_step=rl_step)
    metrana.log_rl_episode("return", 10.0 * rl_step + 1, rl_step=rl_step)
    metrana.log_rl_environment_step("reward", [[0.1, 0.2], [0.3, 0.4]], rl_step=rl_step,
                                    episode=[0, 7], env_id=["e0", "e1"])
info = metrana.close()
print("sent", info.metrics.float_points_sent, info.metrics.rl_float_points_sent)
"""


def test_the_official_client_logs_scalars_rl_and_config(db_target: str, tmp_path: Path) -> None:
    """Every point, step, environment, episode and config value the official client logs is
    what ``metrana.query`` reads back, on either store, and the run is closed."""
    proc, url = start_serve(db_target)
    try:
        out = ran(run_official(LOG_RUN, url, "run-1", cwd=tmp_path))
        assert "sent 105 12" in out
        with query(url) as client:
            loss = client.fetch_float_series("run-1", "loss")
            assert loss.index.get_level_values("step").tolist() == list(range(100))
            assert loss["loss"].tolist() == f32([1.0 / (i + 1) for i in range(100)])
            acc = client.fetch_float_series("run-1", "acc")
            assert acc["acc"].to_dict() == {("run-1", 10): 0.5, ("run-1", 20): 0.75}
            evaluation = client.fetch_float_series("run-1", "val_acc",
                                                   labels={"evaluation": "true"})
            assert evaluation["val_acc"].tolist() == [0.25]
            # Episodes are numbered across rl_steps: 0, 1 at rl_step 1, then 2, 3.
            assert rl_points(client, "run-1", "return") == [
                ("default", None, 1, 0, 10.0), ("default", None, 1, 1, 11.0),
                ("default", None, 2, 2, 20.0), ("default", None, 2, 3, 21.0)]
            # Environment steps continue across rl_steps within an episode.
            assert rl_points(client, "run-1", "reward") == sorted(
                [("e0", 0, 1, 0, f32([0.1])[0]), ("e0", 0, 1, 1, f32([0.2])[0]),
                 ("e1", 7, 1, 0, f32([0.3])[0]), ("e1", 7, 1, 1, f32([0.4])[0]),
                 ("e0", 0, 2, 2, f32([0.1])[0]), ("e0", 0, 2, 3, f32([0.2])[0]),
                 ("e1", 7, 2, 2, f32([0.3])[0]), ("e1", 7, 2, 3, f32([0.4])[0])])
            runs = client.fetch_runs(attributes=["config/lr", "config/optimizer/name",
                                                 "config/optimizer/betas/1", "config/epochs"])
            row = runs.set_index("name").loc["run-1"]
            assert (row["config/lr"], row["config/optimizer/name"]) == (0.001, "adam")
            assert (row["config/optimizer/betas/1"], row["config/epochs"]) == (0.99, 3)
            assert row["status"] == "finished"
            grad = client.fetch_distributed_series("run-1", "grad_norm")  # one writer
            assert grad["mean"].to_dict() == {2: 2.5, 4: 1.5}
            assert grad["count"].tolist() == [1, 1]
        attributes = httpx.get(f"{url}/api/runs/ws/proj/run-1").json()["attributes"]
        assert attributes["sys/tags"]["value"] == ["baseline", "mnist", "sweep"]
        assert attributes["sys/description"]["value"] == "first try"
    finally:
        stop_serve(proc)


DISTRIBUTED = """
rank = int(sys.argv[4])
init(orchestration_id=sys.argv[3], logger_id=100 + rank, resume_strategy="never")
for step in range(200):
    metrana.log_distributed("loss", np.sin(0.05 * step + rank) + rank, step=step)
    metrana.log("throughput", 100.0 * rank + step, labels={"rank": str(rank)})
info = metrana.close()
print("sent", info.metrics.float_points_sent)
"""


def distributed_values(rank: int) -> list[float]:
    """What process ``rank`` of DISTRIBUTED logs at steps 0..199, as the client sends it."""
    return f32([float(np.sin(0.05 * step + rank) + rank) for step in range(200)])


def test_log_distributed_of_three_official_client_processes_is_served_merged(
        db_target: str, tmp_path: Path) -> None:
    """Three processes of one job (one orchestration id) each ``log_distributed`` the same 200
    steps and ``log`` a metric of their own: one run, whose merged ``loss`` has each step from
    the three writers, its mean, min and max those of the values logged; each process's own
    points and its ``log()`` series are kept as they were sent."""
    proc, url = start_serve(db_target)
    try:
        job = f"job-{tmp_path.name}"
        writers = [start_official(DISTRIBUTED, url, "ddp", job, str(rank), cwd=tmp_path)
                   for rank in range(3)]
        for writer in writers:
            out, err = writer.communicate(timeout=180)
            assert writer.returncode == 0, f"official client failed:\n{out}\n{err}"
            assert "sent 400" in out
        logged = np.array([distributed_values(rank) for rank in range(3)])
        with query(url) as client:
            runs = client.fetch_runs()
            assert runs["name"].tolist() == ["ddp"]
            assert runs["status"].tolist() == ["finished"]
            merged = client.fetch_distributed_series("ddp", "loss")
            assert sorted(merged.attrs["writers"]) == ["100", "101", "102"]
            assert merged.index.tolist() == list(range(200))
            assert merged["count"].tolist() == [3] * 200
            np.testing.assert_allclose(merged["mean"], logged.mean(axis=0), rtol=1e-12)
            assert merged["min"].tolist() == logged.min(axis=0).tolist()
            assert merged["max"].tolist() == logged.max(axis=0).tolist()
            for rank in range(3):
                own = client.fetch_float_series("ddp", "loss", labels={"writer": str(100 + rank)})
                assert own["loss"].tolist() == logged[rank].tolist()
                throughput = client.fetch_float_series("ddp", "throughput",
                                                       labels={"rank": str(rank)})
                assert throughput.index.get_level_values("step").tolist() == list(range(200))
                assert throughput["throughput"].tolist() == [100.0 * rank + s
                                                             for s in range(200)]
    finally:
        stop_serve(proc)


def test_histograms_of_the_official_client_are_stored(tmp_path: Path) -> None:
    """The official client's histogram (over gRPC) is stored with its counts and edges, next to
    its scalars."""
    script = """
init()
metrana.log("loss", 1.0)
metrana.log_histogram("weights", metrana.Histogram.from_numpy(np.histogram([1.0, 2.0, 2.5])),
                      step=1)
metrana.log("loss", 2.0)
metrana.close()
"""
    proc, url = start_serve(tmp_path / "db.sqlite3")
    try:
        ran(run_official(script, url, "run-h", cwd=tmp_path))
        with query(url) as client:
            assert client.fetch_float_series("run-h", "loss")["loss"].tolist() == [1.0, 2.0]
            frame = client.fetch_histogram_series("run-h", "weights")
            counts, edges = np.histogram([1.0, 2.0, 2.5])
            assert frame["step"].tolist() == [1]
            assert frame["counts"][0].tolist() == counts.tolist()
            assert frame["edges"][0].tolist() == edges.tolist()
    finally:
        stop_serve(proc)


ENV_ATTRIBUTES = """
init()
metrana.log_rl_episode("return", 1.0, rl_step=1, env_id="cartpole-0")
metrana.log_env_attributes("cartpole-0", {"gravity": 9.8, "level": "easy",
                                          "physics": {"dt": 0.02, "substeps": 4}})
metrana.log_env_attributes("cartpole-0", {"level": "hard"})
metrana.log_env_attributes("cartpole-0", {"seed": 7, "solved": True}, episode=3)
metrana.log_env_attributes("cartpole-1", {"gravity": 1.6})
metrana.close()
print("closed")
"""


def test_environment_attributes_of_the_official_client_are_run_attributes(
        db_target: str, tmp_path: Path) -> None:
    """``log_env_attributes`` (sent in UpdateRunStream's ``env_attr_updates``) is stored as run
    attributes under ``env/<environment>/`` (an episode's under ``.../episode/<n>/``), the
    later value of a path winning, and read back through ``metrana.query``."""
    proc, url = start_serve(db_target)
    try:
        assert "closed" in ran(run_official(ENV_ATTRIBUTES, url, "run-env", cwd=tmp_path))
        paths = ["env/cartpole-0/gravity", "env/cartpole-0/level",
                 "env/cartpole-0/physics/dt", "env/cartpole-0/physics/substeps",
                 "env/cartpole-0/episode/3/seed", "env/cartpole-0/episode/3/solved",
                 "env/cartpole-1/gravity"]
        with query(url) as client:
            row = client.fetch_runs(attributes=paths).set_index("name").loc["run-env"]
            assert [row[p] for p in paths] == [9.8, "hard", 0.02, 4, 7, True, 1.6]
            assert row["status"] == "finished"
            assert rl_points(client, "run-env", "return") == [("cartpole-0", None, 1, 0, 1.0)]
    finally:
        stop_serve(proc)


RESUME = """
init(resume_strategy=sys.argv[3], orchestration_id=sys.argv[4])
print("last loss step", metrana.get_last_step("loss"))
print("env", metrana.get_env_last_rl_step_and_episode("default"))
base = int(sys.argv[5])
for i in range(3):
    metrana.log("loss", float(base + i))
    metrana.log("val", float(base + i), evaluation=True, labels={"split": "a"})
    metrana.log_rl_episode("return", float(base + i), rl_step=base + i)
metrana.close()
"""


def test_a_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A second process resuming the run continues every series' steps and episodes; a
    process of another job is refused unless it asks to resume."""
    proc, url = start_serve(tmp_path / "db.sqlite3")
    try:
        out = ran(run_official(RESUME, url, "run-r", "never", "job-1", "0", cwd=tmp_path))
        assert "last loss step None" in out
        refused = run_official(RESUME, url, "run-r", "never", "job-2", "10", cwd=tmp_path)
        assert refused.returncode != 0
        assert "MetranaOrchestrationIdMismatchError" in refused.stderr
        assert "job-1" in refused.stderr
        out = ran(run_official(RESUME, url, "run-r", "allow", "job-2", "10", cwd=tmp_path))
        assert "last loss step 2" in out
        assert "env (2, 2)" in out  # last rl_step and last episode of the default environment
        with query(url) as client:
            loss = client.fetch_float_series("run-r", "loss")
            assert loss.index.get_level_values("step").tolist() == list(range(6))
            assert loss["loss"].tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
            val = client.fetch_float_series("run-r", "val",
                                            labels={"evaluation": "true", "split": "a"})
            assert val.index.get_level_values("step").tolist() == list(range(6))
            assert [p[2:] for p in rl_points(client, "run-r", "return")] == [
                (0, 0, 0.0), (1, 1, 1.0), (2, 2, 2.0), (10, 3, 10.0), (11, 4, 11.0),
                (12, 5, 12.0)]
    finally:
        stop_serve(proc)


KILLED = """
init(send_retry_max_backoff_secs=0.2, max_send_retries=None)
for i in range(50):
    metrana.log("loss", float(i))
    metrana.log_rl_episode("return", float(i), rl_step=i // 10)
metrana.flush()
print("flushed", flush=True)
sys.stdin.readline()  # the test kills the server
for i in range(50, 100):
    metrana.log("loss", float(i))
    metrana.log_rl_episode("return", float(i), rl_step=i // 10)
print("logged", flush=True)
info = metrana.close()
print("sent", info.metrics.float_points_sent, info.metrics.rl_float_points_sent, flush=True)
"""


def test_a_server_killed_mid_run_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    """``metrana serve`` killed (SIGKILL) while the client logs, then started again on the same
    port: the client's retries deliver the rest, and every point is stored exactly once."""
    db = tmp_path / "db.sqlite3"
    proc, url = start_serve(db)
    port = url.rsplit(":", 1)[1]
    client = start_official(KILLED, url, "run-k", cwd=tmp_path)
    try:
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline().strip() == "flushed"
        proc.kill()
        proc.communicate(timeout=30)
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "logged"
        proc, url = start_serve(db, "--port", port)
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        assert "sent 100 100" in out
        with query(url) as reader:
            loss = reader.fetch_float_series("run-k", "loss")
            assert loss.index.get_level_values("step").tolist() == list(range(100))
            assert loss["loss"].tolist() == [float(i) for i in range(100)]
            assert [p[2:] for p in rl_points(reader, "run-k", "return")] == [
                (i // 10, i, float(i)) for i in range(100)]
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
        stop_serve(proc)


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_a_server_with_an_api_key_refuses_the_official_client_without_it(
        tmp_path: Path, key: str | None) -> None:
    """``metrana serve --api-key``: init() fails at once with UNAUTHENTICATED, saying why."""
    proc, url = start_serve(tmp_path / "db.sqlite3",
                            env={**__import__("os").environ, "METRANA_SERVER_API_KEY": "s3cret"})
    try:
        given = f'"{key}"' if key else '"s3cret"'
        script = f"init(api_key={given})\nmetrana.log('x', 1.0)\nmetrana.close()\nprint('ok')"
        result = run_official(script, url, "run-a", cwd=tmp_path)
        if key is None:
            assert "ok" in ran(result)
        else:
            assert result.returncode != 0
            assert "invalid API key" in result.stderr
    finally:
        stop_serve(proc)


def test_the_official_client_with_scoped_keys(tmp_path: Path) -> None:
    """A key of the database works for the official client as for ours: a write key of the
    run's workspace logs (and is recorded as its writer); a read key is refused at init()
    with PERMISSION_DENIED naming the workspace and the key's prefix."""
    from tests.support import make_key

    db = tmp_path / "db.sqlite3"
    writer, writer_prefix = make_key(db, "write", "ws")
    reader, reader_prefix = make_key(db, "read", "ws")
    proc, url = start_serve(db)
    try:
        script = "init(api_key=sys.argv[3])\nmetrana.log('x', 1.0)\nmetrana.close()\nprint('ok')"
        assert "ok" in ran(run_official(script, url, "scoped", writer, cwd=tmp_path))
        refused = run_official(script, url, "refused", reader, cwd=tmp_path)
        assert refused.returncode != 0
        assert f"API key mk_{reader_prefix}_… may not create runs in workspace 'ws'" \
            in refused.stderr
        assert reader not in refused.stderr + refused.stdout
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {writer}"}) as http:
            run = http.get("/api/runs/ws/proj/scoped").json()
        assert [w["key"] for w in run["writers"]] == [writer_prefix]
    finally:
        stop_serve(proc)
