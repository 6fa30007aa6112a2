"""The mistakes of a first session with the library, and what each now tells the user:
guessed keyword names, a URL copied with its /v1 or from the dashboard, close() in a finally
after a failed init(), a refusal said once, workers in other processes, and a readable
help(metrana.init)."""

from __future__ import annotations

import inspect
import multiprocessing
import pydoc
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import metrana
from metrana._config import resolve_settings
from metrana._stats import Counters
from metrana._transport import RetryPolicy, post_with_retries
from metrana.server import ServerInfo
from tests.faults import FaultProxy
from tests.helpers import read_points, wait_until

BASE: dict[str, Any] = {"workspace_name": "ws", "project_name": "proj", "run_name": "r"}
URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(("wrong", "meant"), [
    ("workspace", "workspace_name"), ("project", "project_name"), ("run", "run_name"),
    ("name", "run_name"), ("url", "ingestion_url"), ("experiment", "experiment_name"),
    ("key", "api_key"), ("worksapce_name", "workspace_name"), ("close_stratgy", "close_strategy"),
    ("offline", 'mode="offline"'),
])
def test_a_guessed_keyword_name_gets_the_right_one_suggested(wrong: str, meant: str) -> None:
    """init(workspace=...) is a TypeError that says "did you mean workspace_name?"; session()
    names itself. Raised before anything starts."""
    arguments: dict[str, Any] = {**BASE, "ingestion_url": URL}
    arguments.pop(meant, None)
    with pytest.raises(TypeError, match=rf"^init\(\) got an unexpected keyword argument "
                                        rf"'{wrong}' \(did you mean {meant}\?\)"):
        metrana.init(**arguments, **{wrong: "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"^session\(\).*'{wrong}' \(did you mean {meant}\?\)"):
        metrana.session(**arguments, **{wrong: "x"})


async def test_open_session_suggests_too() -> None:
    """The trio API names itself and suggests the same way."""
    with pytest.raises(TypeError, match=r"open_session\(\).*'url' \(did you mean ingestion_url\?\)"):
        async with metrana.open_session(**BASE, url=URL):
            pass


def test_an_unknown_keyword_lists_the_arguments() -> None:
    """No close name: the message lists what init() takes."""
    with pytest.raises(TypeError, match=r"'frobnicate'; its arguments are: api_key, "
                                        r"workspace_name, .*ingestion_url"):
        metrana.init(**BASE, ingestion_url=URL, frobnicate=1)


@pytest.mark.parametrize(("given", "base"), [
    ("http://localhost:8787/v1", "http://localhost:8787"),
    ("http://localhost:8787/v1/", "http://localhost:8787"),
    ("http://localhost:8787/", "http://localhost:8787"),
    ("https://example.com/metrana/v1", "https://example.com/metrana"),
    ("http://v1", "http://v1"),  # a host called v1 is not a path
])
def test_an_ingestion_url_ending_in_v1_is_accepted(given: str, base: str) -> None:
    """Requests go to <url>/v1/...; a URL that already ends in /v1 must not become /v1/v1."""
    settings = resolve_settings({**BASE, "ingestion_url": given, "api_key": "k"}, environ={})
    assert settings.ingestion_url == base
    assert settings.api_url == base + "/v1"
    from_env = resolve_settings({**BASE, "api_key": "k"}, environ={"METRANA_INGESTION_URL": given})
    assert from_env.api_url == base + "/v1"


def test_a_url_with_v1_reaches_the_real_server(live_server: ServerInfo) -> None:
    """End to end: the run is created and its points stored (it used to be a 404:
    no route POST /v1/v1/runs)."""
    with metrana.session(**{**BASE, "run_name": "url-with-v1"}, close_strategy="CompleteAll",
                         ingestion_url=live_server.url + "/v1") as run:
        run.log("loss", 0.5)
    assert run.get_metrics().sent == 1
    assert [p["value"] for p in read_points(live_server, "url-with-v1")["loss"]] == [0.5]


async def test_connection_errors_print_urls_without_a_double_slash() -> None:
    """`…/v1/runs`, not `…/v1//runs`: the URL in the message is one a user can paste."""
    async with httpx.AsyncClient(base_url=URL + "/v1") as client:
        with pytest.raises(metrana.MetranaConnectionError) as error:
            await post_with_retries(client, "/runs", b"{}", RetryPolicy(max_attempts=1),
                                    Counters())
    assert str(error.value).startswith(f"{URL}/v1/runs did not accept")


def test_close_without_a_run_is_a_no_op_so_the_init_error_shows() -> None:
    """close() in a finally after a failed init() returns empty metrics instead of raising
    MetranaNotInitializedError over the error that matters."""
    assert metrana.close().logged == 0
    with pytest.raises(metrana.MetranaConfigError, match="not an http"):
        try:
            metrana.init(**BASE, ingestion_url="localhost:8787")
        finally:
            metrics = metrana.close()
    assert metrics == metrana.Metrics(*([0] * 13))
    with pytest.raises(metrana.MetranaNotInitializedError):
        metrana.log("loss", 1.0)  # logging still says init() first


def test_help_shows_the_spool_default_by_name() -> None:
    """help(metrana.init) shows what the spool_dir default stands for, not Ellipsis; None
    (and "off") still switch the spool off, and the default still follows METRANA_SPOOL_DIR."""
    default = inspect.signature(metrana.init).parameters["spool_dir"].default
    text = pydoc.render_doc(metrana.init, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert " = <default: ~/.metrana/spool or METRANA_SPOOL_DIR>," in text
    assert "Ellipsis" not in text
    assert resolve_settings({**BASE, "ingestion_url": URL, "spool_dir": None}).spool_dir is None
    assert resolve_settings({**BASE, "ingestion_url": URL, "spool_dir": "off"}).spool_dir is None
    from_env = resolve_settings({**BASE, "ingestion_url": URL, "spool_dir": default},
                                environ={"METRANA_SPOOL_DIR": "/tmp/elsewhere"})
    assert str(from_env.spool_dir) == "/tmp/elsewhere"


# ------------------------------------------------- round two: a dashboard URL, errors said once

@pytest.mark.parametrize(("pasted", "base"), [
    ("http://127.0.0.1:8787/runs#/run/x", "http://127.0.0.1:8787"),
    ("http://127.0.0.1:8787/#/run/ws/proj/r", "http://127.0.0.1:8787"),
    ("http://127.0.0.1:8787/?run=x", "http://127.0.0.1:8787"),
    ("http://127.0.0.1:8787/api/runs/ws/proj/r", "http://127.0.0.1:8787"),
    ("http://127.0.0.1:8787/v1/runs", "http://127.0.0.1:8787"),
    ("https://example.com/metrana/index.html", "https://example.com/metrana"),
    ("https://example.com/metrana/#/compare/a,b", "https://example.com/metrana"),
])
def test_a_dashboard_address_is_refused_with_the_base_url(pasted: str, base: str) -> None:
    """A URL copied from the browser is a MetranaConfigError from init() naming the base URL
    to use, not a 404 naming a mangled URL (``…/runs#/run/x/v1``); from the environment too."""
    message = (f"ingestion_url={pasted!r} looks like a dashboard address, not the server's base "
               f"URL; use ingestion_url={base!r}")
    with pytest.raises(metrana.MetranaConfigError) as raised:
        metrana.init(**BASE, ingestion_url=pasted)
    assert str(raised.value) == message
    with pytest.raises(metrana.MetranaConfigError) as from_env:
        resolve_settings(BASE, environ={"METRANA_INGESTION_URL": pasted})
    assert str(from_env.value) == message


def test_a_service_under_a_path_prefix_is_still_a_base_url() -> None:
    """Only a fragment, a query or one of the server's own routes marks a dashboard address."""
    for url in ("https://example.com/metrana", "https://example.com/api/metrana/v1",
                "http://runs.example.com:8787"):
        assert resolve_settings({**BASE, "api_key": "k", "ingestion_url": url}, environ={})


def test_query_client_names_its_own_argument() -> None:
    from metrana.query import QueryClient

    with pytest.raises(metrana.MetranaConfigError,
                       match=r"^url='http://h:1/#/run/a' looks like a dashboard address.*"
                             r"use url='http://h:1'$"):
        QueryClient("ws", "proj", url="http://h:1/#/run/a")


@pytest.mark.parametrize("status", [401, 404, 501])
def test_an_error_init_raises_is_not_printed_as_well(proxy: FaultProxy, status: int,
                                                     loguru_messages: list[str]) -> None:
    """A refusal of the run (a 404 or 501 from something that is not Metrana, a 401) is said
    once: as the exception init() raises, not also as a warning line before it."""
    proxy.fail_next(1, status)
    with pytest.raises(metrana.MetranaApiError, match=f"HTTP {status}"):
        metrana.init(**BASE, ingestion_url=proxy.url)
    assert [m for m in loguru_messages if f"HTTP {status}" in m] == []


def test_a_refusal_after_init_stopped_waiting_is_printed(proxy: FaultProxy,
                                                         loguru_messages: list[str]) -> None:
    """When init() returned before the service answered, nobody raises the refusal: the
    engine says it (so it is never lost between the two)."""
    proxy.fail_next(1, 404)
    proxy.hold()
    run = metrana.session(**BASE, ingestion_url=proxy.url, init_timeout=0.2)
    wait_until(proxy.arrived.is_set)
    proxy.release()
    wait_until(lambda: any("does not look like a Metrana" in m for m in loguru_messages))
    said = [m for m in loguru_messages if "answered HTTP 404" in m]
    assert len(said) == 1 and said[0].startswith("WARNING metrana: ")
    run.close()


# ------------------------------------------------------------------------ worker processes

def _log_without_init() -> str:
    try:
        metrana.log("loss", 1.0)
    except metrana.MetranaNotInitializedError as error:
        return str(error)
    return "no error"


WORKER_HINT = (". This is a worker process, and a spawned worker starts empty, without its "
               "parent's run: call metrana.init(...) in the worker with the same "
               "workspace_name, project_name and run_name to log to the same run (see "
               "'Worker processes' in docs/guarantees.md)")


def test_a_spawned_worker_is_told_to_call_init_with_the_same_names() -> None:
    """log() in a spawned worker, whose parent called init(): the error says why the parent's
    run is not there and what to do; in the main process it stays short."""
    assert _log_without_init() == "call metrana.init(...) before metrana.log()"
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        said = pool.apply(_log_without_init)
    assert said == "call metrana.init(...) before metrana.log()" + WORKER_HINT


FORKED_WORKERS = """
import multiprocessing, sys
import metrana

def task(i):
    metrana.log("loss", float(i))
    metrana.flush()
    return i

metrana.init(workspace_name="ws", project_name="proj", run_name=sys.argv[2],
             ingestion_url=sys.argv[1], log_level="Debug")
metrana.log("loss", -1.0)
pool = multiprocessing.get_context("fork").Pool(2)
assert sorted(pool.map(task, range(4))) == [0, 1, 2, 3]
pool.close()
pool.join()
metrana.close()
"""


def test_forked_workers_join_the_parents_run_without_a_resume_line(
        live_server: ServerInfo, tmp_path: Path) -> None:
    """Pool workers logging to the run their parent opened print no "resuming run" line (not
    even at Debug): each says at Debug that it joined; all points arrive."""
    script = tmp_path / "workers.py"
    script.write_text(FORKED_WORKERS)
    name = f"workers-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([sys.executable, str(script), live_server.url, name],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resuming" not in done.stderr and "already exists" not in done.stderr
    joined = re.findall(rf"DEBUG +\| metrana: forked worker \(pid \d+\) joined run ws/proj/{name} ",
                        done.stderr)
    assert len(joined) == 2, done.stderr  # one per worker process
    assert sorted(p["value"] for p in read_points(live_server, name)["loss"]) == [
        -1.0, 0.0, 1.0, 2.0, 3.0]
