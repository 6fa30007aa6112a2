"""The trio-native API, fork, exiting without close(), and API keys."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest
import trio

import metrana
from metrana.server import ServerInfo, background_server
from tests.helpers import read_points


async def test_trio_native_session_runs_in_the_callers_nursery(server: ServerInfo) -> None:
    """open_session: no thread, log() stays sync, leaving the block delivers (CompleteAll)."""
    import threading

    async with metrana.open_session(workspace_name="ws", project_name="proj", run_name="native",
                                    ingestion_url=server.url, close_strategy="CompleteAll") as run:
        assert not [t for t in threading.enumerate() if t.name.startswith("metrana-")]
        for i in range(1000):
            run.log("loss", float(i))
            if i % 100 == 0:
                await trio.sleep(0)
    assert run.get_metrics().sent == 1000
    async with httpx.AsyncClient(base_url=server.url) as client:
        detail = (await client.get("/api/runs/ws/proj/native")).json()
    assert detail["series"][0]["point_count"] == 1000


def test_open_session_outside_trio_names_the_way_that_works() -> None:
    """From asyncio, open_session() cannot run its engine (it needs a trio nursery): a clear
    error pointing to metrana.session(), not trio's internals; nothing is started."""
    import asyncio
    import threading

    async def main() -> None:
        async with metrana.open_session(workspace_name="ws", project_name="proj",
                                        run_name="from-asyncio", mode="offline"):
            pass

    with pytest.raises(RuntimeError, match=r"from asyncio .* use `with metrana\.session"):
        asyncio.run(main())
    assert not [t for t in threading.enumerate() if t.name.startswith("metrana-")]


async def test_trio_native_session_closes_when_the_body_raises(server: ServerInfo) -> None:
    """The body's exception propagates; what was logged is still delivered."""
    with pytest.raises(KeyError):
        async with metrana.open_session(workspace_name="ws", project_name="proj", run_name="boom",
                                        ingestion_url=server.url, close_strategy="CompleteAll") as run:
            run.log("loss", 1.0)
            raise KeyError("body failed")
    assert run.get_metrics().sent == 1


async def test_trio_native_block_backpressure_says_how_to_wait(server: ServerInfo) -> None:
    """Block cannot block the event loop: log() raises and points to wait_for_room()."""
    async with metrana.open_session(workspace_name="ws", project_name="proj", run_name="blocky",
                                    ingestion_url=server.url, backpressure_strategy="Block",
                                    event_queue_max_size=5, close_strategy="CompleteAll") as run:
        for i in range(5):
            run.log("loss", float(i))
        with pytest.raises(metrana.MetranaEventQueueFullError, match="wait_for_room"):
            run.log("loss", 5.0)
        await run.wait_for_room()
        run.log("loss", 5.0)
    assert run.get_metrics().sent == 6


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_logger(live_server: ServerInfo) -> None:
    """A child that logs after fork has its own engine; the parent carries on unaffected."""
    name = f"fork-{uuid.uuid4().hex[:8]}"
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url, close_strategy="CompleteAll")
    metrana.log("parent", 1.0)
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            for i in range(100):
                metrana.log("child", float(i))
            code = 0 if metrana.close().sent == 100 else 2
        finally:
            os._exit(code)
    metrana.log("parent", 2.0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert metrana.close().sent == 2
    stored = read_points(live_server, name)
    assert [p["value"] for p in stored["parent"]] == [1.0, 2.0]
    assert len(stored["child"]) == 100


def test_exit_without_close_delivers_and_warns(live_server: ServerInfo, tmp_path: Path) -> None:
    """A script that never calls close(): at exit its points are delivered, with a warning."""
    name = f"exit-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "forgot.py"
    script.write_text(textwrap.dedent(f"""
        import metrana
        metrana.init(workspace_name="ws", project_name="proj", run_name="{name}",
                     ingestion_url="{live_server.url}")
        for i in range(5000):
            metrana.log("loss", float(i))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "was not closed" in done.stderr
    assert len(read_points(live_server, name)["loss"]) == 5000


def test_wrong_api_key_fails_init_without_leaking_it(tmp_path: Path) -> None:
    """A 401 from the service is a MetranaApiError from init(); the key is in no message."""
    with background_server(tmp_path / "k.db", api_key="right-key") as info:
        with pytest.raises(metrana.MetranaApiError) as error:
            metrana.init(api_key="wrong-key-42", workspace_name="ws", project_name="proj",
                         run_name="r", ingestion_url=info.url)
        assert error.value.status == 401
        assert "wrong-key-42" not in str(error.value) + error.value.body
        run = metrana.session(api_key="right-key", workspace_name="ws", project_name="proj",
                              run_name="r", ingestion_url=info.url, close_strategy="CompleteAll")
        assert "right-key" not in repr(run)
        run.log("loss", 1.0)
        assert run.close().sent == 1
