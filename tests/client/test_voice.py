"""What metrana prints, as a user's terminal shows it: its own short loguru lines, each once,
whether or not the user configures loguru too. Real processes, real server."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from metrana.server import ServerInfo

SHORT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| (\w+) +\| metrana: (.*)$")


def run_script(tmp_path: Path, url: str, before: str = "", after: str = "",
               init: str = "") -> tuple[str, subprocess.CompletedProcess[str]]:
    """A user's script: ``before`` (their loguru setup), a run, ``after``."""
    name = f"voice-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(before) + textwrap.dedent(f"""
        import metrana
        metrana.init(workspace_name="ws", project_name="proj", run_name="{name}",
                     ingestion_url="{url}", close_strategy="CompleteAll"{init})
        metrana.log("loss", 0.5)
    """) + textwrap.dedent(after))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return name, done


def test_default_lines_are_short_and_say_metrana(live_server: ServerInfo, tmp_path: Path) -> None:
    """No `metrana._log:say:23` noise: time, level, `metrana:`, message, printed once."""
    name, done = run_script(tmp_path, live_server.url, after="metrana.close()\n")
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    match = SHORT.match(lines[0])
    assert match and match.group(1) == "SUCCESS", lines[0]
    assert match.group(2).startswith(f"closed run {name}: 1 of 1 points delivered")


def test_debug_lines_say_where_they_come_from(live_server: ServerInfo, tmp_path: Path) -> None:
    """At Debug the source location is worth its noise, and it is metrana's code that spoke
    (not the logging helper)."""
    _, done = run_script(tmp_path, live_server.url, after="metrana.close()\n",
                         init=', log_level="Debug"')
    debug = [line for line in done.stderr.splitlines() if "| DEBUG" in line]
    assert debug and all(SHORT.match(line) for line in debug)
    assert re.search(r"\(metrana(\.\w+)+:\w+:\d+\)$", debug[0]), debug[0]
    assert "metrana._log" not in done.stderr
    [summary] = [line for line in done.stderr.splitlines() if "closed run" in line]
    assert not summary.endswith(")")


def test_a_user_who_configured_loguru_gets_metrana_in_their_sinks_only(
        live_server: ServerInfo, tmp_path: Path) -> None:
    """logger.remove() then the user's own sink: metrana's lines go there, in the user's
    format, once; nothing of metrana's own format appears."""
    _, done = run_script(tmp_path, live_server.url, before="""
        import sys
        from loguru import logger
        logger.remove()
        logger.add(sys.stdout, format="USER {level} {message}")
    """, after="metrana.close()\n")
    assert done.stderr == ""
    assert [line for line in done.stdout.splitlines() if "closed run" in line] == [
        line for line in done.stdout.splitlines() if line.startswith("USER SUCCESS metrana: closed run")]
    assert len(done.stdout.splitlines()) == 1


def test_a_user_who_added_a_sink_keeps_it_and_the_default_handler(
        live_server: ServerInfo, tmp_path: Path) -> None:
    """The default handler stays (id 0, its format for the user's own messages); the user's
    extra sink gets metrana's line once; the terminal gets it once, in metrana's format; the
    user can still remove handler 0, after which metrana's lines go only to their sink."""
    _, done = run_script(tmp_path, live_server.url, before="""
        import sys
        from loguru import logger
        logger.add(sys.stdout, format="USER {level} {message}")
        logger.info("mine")
    """, after=f"""
        metrana.close()
        logger.info("mine again")
        logger.remove(0)
        metrana.init(workspace_name="ws", project_name="proj", run_name="voice-second",
                     ingestion_url="{live_server.url}", close_strategy="CompleteAll")
        metrana.close()
    """)
    stderr = done.stderr.splitlines()
    assert [SHORT.match(line) is not None for line in stderr if "metrana" in line] == [True]
    mine = [line for line in stderr if "mine" in line]
    assert len(mine) == 2 and all(re.search(r"__main__:<module>:\d+ - mine", m) for m in mine)
    user = [line for line in done.stdout.splitlines() if "closed run" in line]
    assert len(user) == 2 and all(line.startswith("USER SUCCESS metrana: closed run") for line in user)


@pytest.mark.parametrize("level", ["Off", "Warn"])
def test_log_level_still_filters(live_server: ServerInfo, tmp_path: Path, level: str) -> None:
    """log_level decides what metrana says, whoever prints it."""
    _, done = run_script(tmp_path, live_server.url, after="metrana.close()\n",
                         init=f', log_level="{level}"')
    assert done.stderr == ""


def test_exit_without_close_warns_in_metranas_voice(live_server: ServerInfo, tmp_path: Path) -> None:
    """The at-exit warning is a metrana line, not a Python warning quoting our source code."""
    name, done = run_script(tmp_path, live_server.url)
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    first, second = (SHORT.match(line) for line in lines)
    assert first and first.group(1) == "WARNING"
    assert first.group(2).startswith(f"run {name} was not closed; delivering what is queued")
    assert "metrana.close()" in first.group(2)
    assert second and second.group(2).startswith(f"closed run {name}: 1 of 1 points delivered")
    assert "warnings.warn" not in done.stderr and "UserWarning" not in done.stderr
