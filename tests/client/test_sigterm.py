"""Terminated workers lose nothing silently. SIGTERM — what leaving ``with Pool(...)``, Slurm
and Kubernetes send first — makes a process with an open run write what it holds to the
run's spool before it ends as SIGTERM would; the parent's ``close()`` (or the run's next
``init()``) delivers what such dead writers left, and says how much. A SIGTERM handler the
user set is never replaced."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

import metrana
from metrana._spool import run_spool_dir, segments
from metrana.server import ServerInfo
from tests.faults import FaultProxy
from tests.helpers import DEFAULT_SIGINT, read_points, run_spawned, wait_until


def new_run() -> str:
    return f"term-{uuid.uuid4().hex[:8]}"


def stored(info: ServerInfo, run: str) -> list[float]:
    return [p["value"] for p in read_points(info, run).get("loss", [])]


def _task(task: int) -> int:
    for i in range(20_000):
        metrana.log("loss", float(task * 20_000 + i))
    return task  # no flush(): leaving the Pool block terminates the worker


def _pool_without_flush(url: str, name: str, steps: str) -> None:
    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Warn")  # the workers' SIGTERM lines, should a test fail
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert sorted(pool.map(_task, range(4))) == [0, 1, 2, 3]
    step(steps, "terminated")
    Path(steps, "out").write_text(str(metrana.close().replayed))


def step(directory: str, name: str) -> None:
    """Say a step is done (a file), and wait for the test's go-ahead (another)."""
    Path(directory, name).touch()
    deadline = time.monotonic() + 60
    while not Path(directory, "go").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def busy_until_terminated(proxy: FaultProxy, steps: Path) -> None:
    """The service answers every update 503 (busy: points stay in memory, retried) until the
    workers are terminated; then it takes them again, and the run's owner goes on."""
    wait_until(lambda: (steps / "terminated").exists(), timeout=90)
    proxy.reject_status = None
    (steps / "go").touch()


def test_with_pool_without_flush_every_point_is_stored_after_the_parents_close(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path, tmp_path: Path) -> None:
    """`with Pool(4) as p: p.map(...)`, no flush() in the tasks, while the service is busy
    (their points still in memory when leaving the block terminates the workers): all 80,000
    stored once the parent closes the run (it used to lose what the workers held)."""
    name = new_run()
    proxy.reject_status = 503
    release = threading.Thread(target=busy_until_terminated, args=(proxy, tmp_path))
    release.start()
    run_spawned(_pool_without_flush, proxy.url, name, str(tmp_path), timeout=120)
    release.join()
    assert segments(run_spool_dir(spool_root, "ws", "proj", name)) == []
    assert (tmp_path / "out").read_text() == "80000"  # the workers' points, replayed
    assert sorted(stored(live_server, name)) == [float(i) for i in range(80_000)]


def _child_logs_and_waits(ready: Any) -> None:
    for i in range(30_000):
        metrana.log("loss", float(i))
    ready.set()
    time.sleep(600)  # holding its points (no flush) until terminated


def test_a_terminated_child_spools_and_the_parents_close_delivers_it(
        proxy: FaultProxy, live_server: ServerInfo, tmp_path: Path) -> None:
    """A forked child logs 30,000 points (the service busy: they stay in memory) and is
    SIGTERMed: it writes them to the spool, says so, and ends as SIGTERM ends a process (exit
    code -15). The parent's close() delivers them, says how many came from other processes,
    and the run shows finished."""
    name = new_run()
    proxy.reject_status = 503
    script = (f"{DEFAULT_SIGINT}; import sys; sys.path.insert(0, {str(Path.cwd())!r}); "
              "from tests.client.test_sigterm import _parent_terminates as run; "
              "run(*sys.argv[1:])")
    runner = subprocess.Popen([sys.executable, "-c", script, "waits", proxy.url, name,
                               str(tmp_path)],
                              stderr=subprocess.PIPE, text=True)
    busy_until_terminated(proxy, tmp_path)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err[-3000:]
    exitcode, replayed = (tmp_path / "out").read_text().split()
    assert (int(exitcode), int(replayed)) == (-signal.SIGTERM, 30_000)
    assert "SIGTERM: closed run" in err and "30,000 spooled" in err
    assert "30,000 points other processes of this run left in its spool were delivered" in err
    assert sorted(stored(live_server, name)) == [float(i) for i in range(30_000)]
    with httpx.Client(base_url=live_server.url) as client:
        assert client.get(f"/api/runs/ws/proj/{name}").json()["status"] == "finished"


HANDLERS = """
import signal, sys, threading, metrana
mine = lambda signum, frame: None
if sys.argv[1] == "user":
    signal.signal(signal.SIGTERM, mine)
def start():
    run = metrana.session(workspace_name="ws", project_name="proj", run_name="h",
                          mode="offline", log_level="Off")
    during = signal.getsignal(signal.SIGTERM)
    run.close()
    return during
if sys.argv[1] == "thread":
    found = []
    thread = threading.Thread(target=lambda: found.append(start()))
    thread.start(); thread.join()
    during = found[0]
else:
    during = start()
after = signal.getsignal(signal.SIGTERM)
name = lambda h: "user" if h is mine else ("default" if h is signal.SIG_DFL else "metrana")
print(name(during), name(after))
"""


def test_sigterm_is_handled_only_where_the_default_was_in_place(tmp_path: Path) -> None:
    """Only in the main thread, only over the default disposition: a user's own handler is
    left alone; ours is removed again when the last run closes."""
    script = tmp_path / "handlers.py"
    script.write_text(HANDLERS)
    env = {**os.environ, "METRANA_SPOOL_DIR": str(tmp_path / "spool")}
    seen = {case: subprocess.run([sys.executable, str(script), case], capture_output=True,
                                 text=True, timeout=60, env=env).stdout.split()
            for case in ("default", "user", "thread")}
    assert seen == {"default": ["metrana", "default"], "user": ["user", "user"],
                    "thread": ["default", "default"]}


LOGGER = """
import sys, time, metrana
metrana.init(workspace_name="ws", project_name="proj", run_name=sys.argv[2],
             ingestion_url=sys.argv[1])
for i in range(50_000):
    metrana.log("loss", float(i))
print("logged", flush=True)
time.sleep(600)
"""


def test_a_terminated_script_is_delivered_by_the_runs_next_init(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path, tmp_path: Path) -> None:
    """A script SIGTERMed with its points in memory (the service busy), no parent run: it
    ends with status -15, its points on disk; the run's next init() delivers them first."""
    name = new_run()
    proxy.reject_status = 503
    script = tmp_path / "logger.py"
    script.write_text(LOGGER)
    child = subprocess.Popen([sys.executable, str(script), proxy.url, name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "METRANA_SPOOL_DIR": str(spool_root)})
    assert child.stdout is not None
    assert child.stdout.readline() == "logged\n"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGTERM
    assert "SIGTERM: closed run" in err and "50,000 spooled" in err
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=live_server.url, log_level="Off"):
        pass
    assert sorted(stored(live_server, name)) == [float(i) for i in range(50_000)]
    assert segments(run_spool_dir(spool_root, "ws", "proj", name)) == []


def _child_logs_then_blocks_for_good(ready: Any) -> None:
    import ctypes

    for i in range(10_000):
        metrana.log("loss", float(i))
    # The main thread then blocks in a C wait that never returns to Python (a mutex it holds
    # itself: pthread_mutex_lock retries through signals), as a Pool worker blocks on its
    # queue's lock: Python's handler can never run there.
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER
    libc.pthread_mutex_lock(mutex)
    ready.set()
    libc.pthread_mutex_lock(mutex)


CHILDREN = {"waits": _child_logs_and_waits, "blocks": _child_logs_then_blocks_for_good}


def _parent_terminates(child_name: str, url: str, name: str, steps: str) -> None:
    """A run whose forked child logs, then is terminated (SIGTERM) while it holds its points;
    then the parent closes the run. Writes the child's exit code and what close() replayed."""
    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Success")
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=CHILDREN[child_name], args=(ready,))
    child.start()
    assert ready.wait(60)
    child.terminate()  # SIGTERM
    child.join(60)
    step(steps, "terminated")
    closed = metrana.close()
    Path(steps, "out").write_text(f"{child.exitcode} {closed.replayed}")


def test_a_child_whose_main_thread_never_returns_to_python_still_ends_and_spools(
        proxy: FaultProxy, live_server: ServerInfo, tmp_path: Path) -> None:
    """The child's main thread is stuck in C when SIGTERM comes: the watchdog acts for it —
    the points are spooled, the child ends as SIGTERM ends a process (it used to hang, and
    Pool.terminate() with it), and the parent's close() delivers them."""
    name = new_run()
    proxy.reject_status = 503
    release = threading.Thread(target=busy_until_terminated, args=(proxy, tmp_path))
    release.start()
    run_spawned(_parent_terminates, "blocks", proxy.url, name, str(tmp_path), timeout=120)
    release.join()
    exitcode, replayed = (tmp_path / "out").read_text().split()
    assert (int(exitcode), int(replayed)) == (-signal.SIGTERM, 10_000)
    assert sorted(stored(live_server, name)) == [float(i) for i in range(10_000)]
