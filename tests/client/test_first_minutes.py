"""The mistakes of a first session with the library, and what each now tells the user:
guessed keyword names, a URL copied with its /v1, close() in a finally after a failed init(),
and a readable help(metrana.init)."""

from __future__ import annotations

import inspect
import pydoc
from typing import Any

import httpx
import pytest

import metrana
from metrana._actors.dispatcher import RetryPolicy, post_with_retries
from metrana._config import resolve_settings
from metrana._stats import Counters
from metrana.server import ServerInfo
from tests.helpers import read_points

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
