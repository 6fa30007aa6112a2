"""What a run records besides what the user logs: the context of init(), tags and notes,
system metrics, and the heartbeat — over a real server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import metrana
from metrana import MetranaConfigError, MetranaLoggerClosedError
from metrana._actors.run_updates import RunUpdates
from metrana._context import redact_argv, strip_credentials
from metrana._delivery import Delivery
from metrana._stats import Counters
from metrana._thread_session import ThreadSession
from metrana._transport import RetryPolicy, RunTarget
from metrana.server import ServerInfo
from tests.mock_service import MockService, mock_session

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def attributes(info: ServerInfo, run: str, workspace: str = "ws", project: str = "proj"
               ) -> dict[str, Any]:
    detail = httpx.get(f"{info.url}/api/runs/{workspace}/{project}/{run}").json()
    return {path: a["value"] for path, a in detail["attributes"].items()}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def make_repo(path: Path) -> str:
    """A git repository with one commit and a remote URL holding a token; its commit."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("print('hi')\n")
    git(path, "add", "train.py")
    git(path, "commit", "-q", "-m", "first")
    git(path, "remote", "add", "origin", "https://someone:ghp_TOKEN123@example.com/org/repo.git")
    return git(path, "rev-parse", "HEAD")


SCRIPT = """
import sys, metrana
metrana.init(workspace_name="ws", project_name="proj", run_name=sys.argv[1],
             ingestion_url=sys.argv[2], log_level="Off")
metrana.log("loss", 1.0)
metrana.close()
print("torch" in sys.modules, "transformers" in sys.modules)
"""


def test_the_context_of_a_run_in_a_git_repository(live_server: ServerInfo, tmp_path: Path
                                                  ) -> None:
    """Commit, branch, clean flag and remote without its credentials; the command line with
    the API key hidden; no environment variable's value; frameworks not imported."""
    repo = tmp_path / "repo"
    commit = make_repo(repo)
    script = repo / "job.py"  # untracked: the tree stays clean for --untracked-files=no
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRANA_")}
    env.update({"METRANA_API_KEY": "mk_SECRETKEY42", "MY_PASSWORD": "hunter2-value",
                "METRANA_SPOOL_DIR": str(tmp_path / "spool")})
    done = subprocess.run([sys.executable, str(script), "ctx-run", live_server.url,
                           "--api-key=mk_SECRETKEY42", "--token", "tok-7"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]  # capturing imported nothing heavy
    found = attributes(live_server, "ctx-run")
    context = {k.removeprefix("context/"): v for k, v in found.items()
               if k.startswith("context/")}
    assert context["git/commit"] == commit
    assert context["git/branch"] == "main"
    assert context["git/dirty"] is False
    assert context["git/remote"] == "https://example.com/org/repo.git"
    assert context["cwd"] == str(repo)
    assert context["command"] == (f"{sys.executable} {script} ctx-run {live_server.url} "
                                  "--api-key=*** --token ***")
    assert context["python/version"] == ".".join(map(str, sys.version_info[:3]))
    assert context["versions/metrana"] == metrana.__version__
    assert isinstance(context["cpu_count"], int) and context["memory_bytes"] > 0
    assert "versions/torch" not in context
    text = repr(found)
    for secret in ("mk_SECRETKEY42", "hunter2-value", "ghp_TOKEN123", "tok-7"):
        assert secret not in text
    (repo / "train.py").write_text("print('changed')\n")
    subprocess.run([sys.executable, str(script), "ctx-dirty", live_server.url], cwd=repo,
                   env=env, check=True, capture_output=True, timeout=120)
    assert attributes(live_server, "ctx-dirty")["context/git/dirty"] is True


def test_context_off_and_outside_a_repository(live_server: ServerInfo, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """capture_context=False sends none; without git (or outside a repository) the other items
    are still there; a git that hangs costs init() at most about a second."""
    monkeypatch.chdir(tmp_path)
    with metrana.session(workspace_name="ws", project_name="proj", run_name="ctx-off",
                         ingestion_url=live_server.url, capture_context=False) as run:
        run.log("x", 1.0)
    assert not any(k.startswith("context/") for k in attributes(live_server, "ctx-off"))
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "git").write_text("#!/bin/sh\nsleep 30\n")
    (slow / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")
    started = time.monotonic()
    with metrana.session(workspace_name="ws", project_name="proj", run_name="ctx-nogit",
                         ingestion_url=live_server.url, capture_context=True) as run:
        took = time.monotonic() - started
        run.log("x", 1.0)
    assert took < 10  # not the git's 30 s: bounded by GIT_TIMEOUT_S (a loaded machine: slack)
    found = attributes(live_server, "ctx-nogit")
    assert "context/hostname" in found and not any("git" in k for k in found)


def test_credentials_are_stripped_and_hidden() -> None:
    assert strip_credentials("https://u:p@host/x.git") == "https://host/x.git"
    assert strip_credentials("ssh://git@host/x.git") == "ssh://host/x.git"
    assert strip_credentials("git@github.com:org/x.git") == "git@github.com:org/x.git"
    assert redact_argv(["train.py", "--lr", "1", "--secret-key", "s", "--password=p",
                        "url?key=K9"], ["K9"]) == ["train.py", "--lr", "1", "--secret-key",
                                                   "***", "--password=***", "url?key=***"]


def test_tags_and_notes_from_init_the_session_and_the_module(live_server: ServerInfo) -> None:
    """init(tags, notes); add_tags/remove_tags/set_notes on the session and as module
    functions; a resumed run keeps its tags and gains new ones."""
    run = metrana.init(workspace_name="ws", project_name="proj", run_name="tagged",
                       ingestion_url=live_server.url, tags=["baseline", "gpu"], notes="first")
    run.add_tags("sweep-3")
    metrana.remove_tags("gpu", "never-there")
    metrana.add_tags("cpu")
    metrana.set_notes("lr too high?")
    metrana.close()
    found = attributes(live_server, "tagged")
    assert found["sys/tags"] == ["baseline", "cpu", "sweep-3"]
    assert found["sys/notes"] == "lr too high?"
    with metrana.session(workspace_name="ws", project_name="proj", run_name="tagged",
                         ingestion_url=live_server.url, tags=["resumed"]) as again:
        again.log("x", 1.0)
    assert attributes(live_server, "tagged")["sys/tags"] == ["baseline", "cpu", "resumed",
                                                             "sweep-3"]


def test_bad_tags_and_notes_are_refused_at_the_call(live_server: ServerInfo) -> None:
    with pytest.raises(TypeError, match=r"tags is a list of strings, e.g. tags=\['baseline'\]"):
        metrana.session(workspace_name="ws", project_name="proj", run_name="bad",
                        ingestion_url=live_server.url, tags="baseline")
    with metrana.session(workspace_name="ws", project_name="proj", run_name="bad",
                         ingestion_url=live_server.url) as run:
        with pytest.raises(TypeError, match="add_tags\\(\\): a tag is a string, got int 3"):
            run.add_tags(3)  # type: ignore[arg-type]
        with pytest.raises(MetranaConfigError, match="a tag is a non-empty string"):
            run.add_tags(" ")
        with pytest.raises(TypeError, match="set_notes\\(\\) is a string"):
            run.set_notes(None)  # type: ignore[arg-type]
        run.add_tags("ok")
    with pytest.raises(MetranaLoggerClosedError):
        run.add_tags("late")
    assert attributes(live_server, "bad")["sys/tags"] == ["ok"]


@pytest.mark.parametrize("nvml", ["installed", "absent"])
def test_system_metrics_are_sampled_off_the_callers_thread(live_server: ServerInfo,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           loguru_messages: list[str],
                                                           nvml: str) -> None:
    """Every interval a point of each system/ series, read in a worker thread (never the
    thread that logs). GPU series only where NVML answers (nvidia-ml-py installed and a GPU
    visible); without the package, or without a GPU, none and no warning."""
    from metrana import _system_metrics

    if nvml == "absent":
        monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml: ImportError
    gpus = _system_metrics.gpu_names()
    assert nvml == "installed" or gpus == []
    threads: list[int] = []
    sample = _system_metrics.Sampler.sample

    def recorded(self: Any) -> list[tuple[str, float]]:
        threads.append(threading.get_ident())
        return sample(self)

    monkeypatch.setattr(_system_metrics.Sampler, "sample", recorded)
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=f"sys-{nvml}",
                          ingestion_url=live_server.url, system_metrics_interval=0.2)
    assert isinstance(run, ThreadSession)
    sampler = run._engine.sampler
    assert sampler is not None
    # Four readings queued (one still being read when close() comes is abandoned: close does
    # not wait for /proc).
    while sampler.samples < 4:
        run.log("loss", 1.0)
        time.sleep(0.05)
    run.close()
    assert threading.get_ident() not in threads
    detail = httpx.get(f"{live_server.url}/api/runs/ws/proj/sys-{nvml}").json()
    counts = {s["metric_name"]: s["point_count"] for s in detail["series"]}
    for name in ("cpu_percent", "process_cpu_percent", "process_rss_bytes", "memory_used_bytes",
                 "memory_percent"):
        assert counts[f"system/{name}"] >= 4
    assert counts["system/disk_read_bytes_per_s"] >= 3  # rates: from the second reading on
    assert any("gpu" in name for name in counts) == bool(gpus)
    rss = {s["metric_name"]: s["summary"] for s in detail["series"]}["system/process_rss_bytes"]
    assert 10e6 < rss["min"] <= rss["max"] < 10e9  # a Python process's resident memory
    assert not [m for m in loguru_messages if m.startswith(("WARNING", "ERROR"))]


def test_system_metrics_every_15_s_by_default_and_0_turns_them_off(
        live_server: ServerInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRANA_SYSTEM_METRICS_INTERVAL")
    with metrana.session(workspace_name="ws", project_name="proj", run_name="sys-default",
                         ingestion_url=live_server.url) as run:
        assert isinstance(run, ThreadSession)
        assert run._engine.sampler is not None and run._engine.sampler.interval == 15.0
    for source in ("argument", "environment"):
        if source == "environment":
            monkeypatch.setenv("METRANA_SYSTEM_METRICS_INTERVAL", "0")
        with metrana.session(workspace_name="ws", project_name="proj", run_name=f"off-{source}",
                             ingestion_url=live_server.url,
                             **({"system_metrics_interval": 0} if source == "argument" else {})
                             ) as run:
            assert isinstance(run, ThreadSession)
            assert run._engine.sampler is None
            run.log("loss", 1.0)
        series = httpx.get(f"{live_server.url}/api/runs/ws/proj/off-{source}").json()["series"]
        assert [s["metric_name"] for s in series] == ["loss"]


def test_a_bad_system_metrics_interval_is_refused_at_init(live_server: ServerInfo,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    with pytest.raises(MetranaConfigError, match=r"system_metrics_interval=-1 must be >= 0 "
                       r"seconds \(0 turns system metrics off\)"):
        metrana.session(workspace_name="ws", project_name="proj", run_name="bad-interval",
                        ingestion_url=live_server.url, system_metrics_interval=-1)
    monkeypatch.setenv("METRANA_SYSTEM_METRICS_INTERVAL", "often")
    with pytest.raises(MetranaConfigError, match="METRANA_SYSTEM_METRICS_INTERVAL='often' must "
                       "be a number of seconds"):
        metrana.session(workspace_name="ws", project_name="proj", run_name="bad-interval",
                        ingestion_url=live_server.url)
    assert httpx.get(f"{live_server.url}/api/runs/ws/proj/bad-interval").status_code == 404


def test_gpus_are_read_through_nvml_when_it_answers(live_server: ServerInfo,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With nvidia-ml-py present and a GPU visible, per-GPU series (a stand-in NVML here: the
    machines that run the suite have no GPU)."""
    import types

    fake = types.ModuleType("pynvml")
    fake.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: f"Fake GPU {h}"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUtilizationRates = (  # type: ignore[attr-defined]
        lambda h: types.SimpleNamespace(gpu=50 + h))
    fake.nvmlDeviceGetMemoryInfo = (  # type: ignore[attr-defined]
        lambda h: types.SimpleNamespace(used=2**30, total=2**32))
    fake.nvmlDeviceGetTemperature = lambda h, kind: 60.0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    run = metrana.session(workspace_name="ws", project_name="proj", run_name="gpus",
                          ingestion_url=live_server.url, system_metrics_interval=0.2,
                          capture_context=True)
    assert isinstance(run, ThreadSession)
    sampler = run._engine.sampler
    assert sampler is not None
    while sampler.samples < 2:
        time.sleep(0.05)
    run.close()
    detail = httpx.get(f"{live_server.url}/api/runs/ws/proj/gpus").json()
    last = {s["metric_name"]: s["summary"]["last"] for s in detail["series"]}
    assert last["system/gpu/1/utilization_percent"] == 51.0
    assert last["system/gpu/0/memory_percent"] == 25.0
    assert last["system/gpu/0/temperature_c"] == 60.0
    assert attributes(live_server, "gpus")["context/gpus"] == ["Fake GPU 0", "Fake GPU 1"]


async def test_heartbeats_only_when_quiet_never_during_an_outage_never_as_points(
        autojump_clock: trio.abc.Clock) -> None:
    """An idle run sends an empty update every interval; none while batches are spooled; the
    heartbeat counts as a request, never as a point."""
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(trio.current_time())
        return httpx.Response(200, json={})

    delivery = Delivery(offline=False, spool_dir=Path("/nonexistent"), say=lambda *a: None)
    counters = Counters()
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9/v1",
                                 transport=httpx.MockTransport(handler)) as client:
        updates = RunUpdates(client, RunTarget(7, "ws", "proj", "run"), delivery,
                             policy=RetryPolicy(),
                             counters=counters, say=lambda *a: None, report=lambda e: None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(updates.run)
            delivery.run_created()
            start = trio.current_time()
            await trio.sleep(95)
            assert [round(t - start) for t in seen] == [30, 60, 90]
            delivery.enter_outage("test")
            await trio.sleep(120)
            assert len(seen) == 3
            delivery.recovered()
            await trio.sleep(35)
            assert len(seen) == 4
            updates.finish()
    assert updates.heartbeats == 4 and counters.requests == 4 and counters.sent == 0


async def test_tag_changes_wait_for_the_run_and_go_in_order(autojump_clock: trio.abc.Clock
                                                            ) -> None:
    service = MockService()
    run = mock_session(service)
    run.add_tags("a", "b")
    async with run.running(init_timeout=5):
        run.remove_tags("a")
        run.set_notes("n")
        await run.aclose()
    sent = [s.body["runUpdates"][0]["attributes"] for s in service.updates()
            if "attributes" in s.body["runUpdates"][0]]
    assert sent == [[{"path": "sys/tags", "stringSetDeltaValue": {"addedValues": ["a", "b"]}}],
                    [{"path": "sys/tags", "stringSetDeltaValue": {"removedValues": ["a"]}}],
                    [{"path": "sys/notes", "stringValue": "n"}]]
