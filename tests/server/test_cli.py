"""``metrana serve`` / ``runs`` / ``export`` as a user runs them, in real processes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from metrana._cli import docs_hint, main
from tests.helpers import metrana_command
from tests.support import start_serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    db = tmp_path / "cli.sqlite3"
    proc, url = start_serve(db)
    yield proc, url, db
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def post_small_run(url: str) -> None:
    """What a client that only knows the wire contract sends: plain JSON over HTTP."""
    with httpx.Client(base_url=url) as client:
        client.post("/v1/runs", json={"run": {"workspace": "ws", "project": "p", "runName": "r"},
                                      "createProjectIfMissing": True}).raise_for_status()
        client.post("/v1/runs:update", json={"sessionId": "7", "runUpdates": [{
            "workspace": "ws", "project": "p", "runName": "r",
            "series": [{"metricName": "loss", "scale": "ML_STEP", "labels": {"split": "train"},
                        "points": [{"step": str(i), "timestamp": f"2026-11-26T09:49:0{i}.5Z",
                                    "floatValue": i / 4} for i in range(5)]}],
            "rlSeries": [{"metricName": "reward", "environmentId": "env-1", "scale": "EPISODE",
                          "points": [{"majorStep": "10", "minorStep": "0", "floatValue": "NaN"}]}],
        }]}).raise_for_status()


def test_serve_prints_url_and_db_and_stops_cleanly_on_sigterm(served) -> None:  # type: ignore[no-untyped-def]
    """Startup names URL and database; SIGTERM exits 0 with the data committed."""
    proc, url, db = served
    post_small_run(url)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "stopped" in out
    assert main(["runs", "--db", str(db)]) == 0


def test_serve_names_the_dashboard_and_in_a_checkout_the_local_docs(served) -> None:  # type: ignore[no-untyped-def]
    """After its URL, serve says where the dashboard is and, run from this checkout, where the
    guides are (a folder, and the command that builds them into a site offline)."""
    proc, url, _ = served
    lines = [proc.stdout.readline() for _ in range(5)]
    printed = "".join(lines)
    assert f"see what was stored: open {url}/ in a browser" in printed, printed
    root = Path(__file__).resolve().parents[2]
    assert f"guides: {root / 'docs'} (as a site: pip install -e '.[docs]' && mkdocs serve" in printed


def test_the_docs_hint_is_local_and_only_in_a_source_checkout(tmp_path: Path) -> None:
    """An installed package (no mkdocs.yml beside it) gets no hint; no hint needs the internet."""
    root = Path(__file__).resolve().parents[2]
    hint = docs_hint()
    assert hint is not None and str(root / "docs") in hint and "mkdocs serve" in hint
    assert "http" not in hint
    installed = tmp_path / "site-packages" / "metrana"
    installed.mkdir(parents=True)
    assert docs_hint(installed) is None


def test_runs_lists_status_times_and_counts(served, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """`metrana runs` shows each run's status (running / finished), when it was created and last
    written, and its series and point counts — from the file or the URL, the newest last."""
    import metrana

    _, url, db = served
    post_small_run(url)  # written just now, never closed: running
    with metrana.session(workspace_name="ws", project_name="p", run_name="done",
                         ingestion_url=url, log_level="Off") as run:
        run.log("x", 1.0)  # closed: finished
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    for source in (["--db", str(db)], ["--url", url]):
        assert main(["runs", *source]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"ws/p/r\s+-\s+running\s+-\s+{stamp}\s+\d+s ago\s+2\s+6", out), out
        assert re.search(rf"ws/p/done\s+-\s+finished\s+-\s+{stamp}\s+\d+s ago\s+1\s+1", out), out
        assert out.index("ws/p/r") < out.index("ws/p/done")


def test_export_writes_every_point(served, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """CSV and JSONL exports carry every point with its series identity and value."""
    _, url, db = served
    post_small_run(url)
    assert main(["export", "ws/p/r", "--db", str(db)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["metric_name"], r["step"], r["value"]) for r in rows] == [
        ("loss", str(i), repr(i / 4)) for i in range(5)] + [("reward", "10", "nan")]
    assert json.loads(rows[0]["labels"]) == {"split": "train"}
    assert rows[0]["timestamp_ns"] == "1795686540500000000"
    assert main(["export", "ws/p/r", "--url", url, "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["step"], p["value"]) for p in lines] == [(i, i / 4) for i in range(5)] + [(10, "NaN")]
    assert lines[-1]["environment_id"] == "env-1"


def test_export_of_unknown_run_or_bad_name_fails_clearly(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A wrong run name is one line naming what exists, exit status 1, and no output at all:
    no CSV header on stdout, no header-only file for -o. A name that is not
    WORKSPACE/PROJECT/RUN is a usage error (2)."""
    _, url, db = served
    post_small_run(url)
    out_file = tmp_path / "points.csv"
    for source in (["--db", str(db)], ["--url", url]):
        done = metrana("export", "ws/p/rr", *source)
        assert done.returncode == 1 and done.stdout == ""
        assert one_line(done.stderr).startswith("metrana export: no run 'ws/p/rr'")
        assert "Did you mean ws/p/r?" in done.stderr and "metrana runs" in done.stderr
        done = metrana("export", "ws/p/none", *source, "-o", str(out_file))
        assert done.returncode == 1 and not out_file.exists(), done.stderr
        done = metrana("export", "r", *source)
        assert done.returncode == 2 and "WORKSPACE/PROJECT/RUN" in one_line(done.stderr)
        assert "Did you mean ws/p/r?" in done.stderr


def metrana(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real `metrana` command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "metrana", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def one_line(stderr: str) -> str:
    """What a failed command printed, asserting it is one line and no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def post_run(url: str, workspace: str, project: str, run: str, points: int = 1,
             headers: dict[str, str] | None = None) -> None:
    """A run with one series of ``points`` points, over the wire protocol."""
    with httpx.Client(base_url=url, headers=headers) as client:
        client.post("/v1/runs", json={"run": {"workspace": workspace, "project": project,
                                              "runName": run},
                                      "createProjectIfMissing": True}).raise_for_status()
        for start in range(0, points, 10_000):
            client.post("/v1/runs:update", json={"sessionId": "1", "runUpdates": [{
                "workspace": workspace, "project": project, "runName": run,
                "series": [{"metricName": "loss", "scale": "ML_STEP", "points": [
                    {"step": str(i), "floatValue": i / 8}
                    for i in range(start, min(points, start + 10_000))]}],
            }]}).raise_for_status()


def test_every_run_that_runs_lists_is_exportable_by_what_it_prints(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Names the client accepts — with '/', '.', '..' — export by the name `metrana runs`
    prints, from the file and over HTTP; a name two runs share is an error that shows how
    to name each part by part, and that works too."""
    _, url, db = served
    names = [("ws", "p", "."), ("ws", "p", ".."), ("ws", "exp", "seed/1"), ("ws/exp", "p", "x"),
             ("a/b", "c", "d"), ("a", "b/c", "d"), ("ws", "p", "with space")]
    for i, name in enumerate(names):
        post_run(url, *name, points=i + 1)
    for source in (["--db", str(db)], ["--url", url]):
        listed = metrana("runs", *source)
        assert listed.returncode == 0, listed.stderr
        printed = [line.split("  ")[0] for line in listed.stdout.splitlines()[1:len(names) + 1]]
        assert printed == ["/".join(n) for n in names]
        assert "a/b/c/d: more than one run prints like this" in listed.stdout
    # Over HTTP (where '.', '..' and '/' are hard) through the real executable; from the file
    # in this process (same code after the reader), to keep the test fast.
    for i, label in enumerate(printed):
        if label == "a/b/c/d":
            continue
        done = metrana("export", label, "--url", url, "--format", "jsonl")
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == i + 1, label
        assert main(["export", label, "--db", str(db), "-o", str(tmp_path / f"{i}.jsonl"),
                     "--format", "jsonl"]) == 0
        assert len((tmp_path / f"{i}.jsonl").read_text().splitlines()) == i + 1, label
    done = metrana("export", "a/b/c/d", "--db", str(db))
    assert done.returncode == 2
    message = one_line(done.stderr)
    assert ("--workspace a/b --project c --run d" in message
            and "--workspace a --project b/c --run d" in message), message
    for i, (workspace, project, run) in enumerate(names[4:6], start=4):
        done = metrana("export", "--workspace", workspace, "--project", project, "--run", run,
                       "--url", url, "--format", "jsonl")
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == i + 1


def api_run_path(workspace: str, project: str, run: str) -> str:
    """The read API path of a run as the README says to build it: each name percent-encoded
    whole (a ``/`` inside a name is ``%2F``), and every ``.`` as ``%2E``."""
    return "/api/runs/" + "/".join(quote(name, safe="").replace(".", "%2E")
                                   for name in (workspace, project, run))


def test_read_api_paths_survive_http_clients(served) -> None:  # type: ignore[no-untyped-def]
    """httpx drops '.' and '..' path segments before sending; api_run_path encodes each name
    whole and every '.' as %2E, which reaches the server intact (the README documents it)."""
    _, url, _ = served
    post_run(url, "ws", "p", ".", points=1)
    post_run(url, "ws", "p", "a/b", points=2)
    post_run(url, "ws", ".", "r", points=3)
    with httpx.Client(base_url=url) as client:
        # sent as /api/runs/ws/p: the project's overview, not the run named "."
        naive = client.get("/api/runs/ws/p/.").json()
        assert naive["project"] == "p" and "run" not in naive
        for name, count in ((("ws", "p", "."), 1), (("ws", "p", "a/b"), 2), (("ws", ".", "r"), 3)):
            detail = client.get(api_run_path(*name)).json()
            assert (detail["workspace"], detail["project"], detail["run"]) == name
            [series] = detail["series"]
            points = client.get(f"{api_run_path(*name)}/series/{series['id']}/points").json()
            assert len(points["points"]) == count
    assert api_run_path("ws", "p", "a/b.c") == "/api/runs/ws/p/a%2Fb%2Ec"


def test_export_into_a_closed_pipe_stops_quietly(served) -> None:  # type: ignore[no-untyped-def]
    """`metrana export ... | head`: no BrokenPipeError traceback; the status a shell reports
    for any program whose reader went away (141)."""
    _, url, db = served
    post_run(url, "ws", "p", "big", points=20_000)  # ~1 MB of CSV: more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "metrana", "export", "ws/p/big", "--db",
                             str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("kind,metric_name")
    proc.stdout.close()  # what `head -1` does after its line
    with proc.stderr:
        stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


def test_serve_on_a_busy_port_says_who_holds_it_in_one_line(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The usual first mistake, a second `metrana serve`: one line naming the process that
    holds the port and the ways out, not a nested ExceptionGroup."""
    proc, url, _ = served
    port = url.rsplit(":", 1)[1]
    done = metrana("serve", "--port", port, "--db", str(tmp_path / "second.sqlite3"))
    assert done.returncode == 1
    message = one_line(done.stderr)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert f"pid {proc.pid} (metrana serve)" in message  # found through /proc (Linux)
    assert "--port 0" in message and f"ingestion_url={url}" in message


def test_serve_with_a_bad_port_or_database_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    """A port out of range, a database path that cannot be a file, a file that is not a
    database: one line each, naming the flag to change; nothing starts."""
    done = metrana("serve", "--port", "99999")
    assert done.returncode == 2
    assert "99999 is not a port number" in one_line(done.stderr)
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    not_a_db = tmp_path / "notes.sqlite3"
    not_a_db.write_text("hello, this is not SQLite " * 100)
    for db in (a_file / "metrana.sqlite3", tmp_path, not_a_db):
        done = metrana("serve", "--port", "0", "--db", str(db))
        assert done.returncode == 1, done.stdout
        message = one_line(done.stderr)
        assert f"cannot use {db} as the database" in message and "--db" in message


def test_version_and_help_say_what_each_command_reads_and_writes() -> None:
    """--version; every command's help names what it reads and writes, shows the API key
    options where a server may need one, and has no reStructuredText markup."""
    from metrana import __version__

    assert metrana("--version").stdout.strip() == f"metrana {__version__}"
    top = metrana("--help").stdout
    assert "``" not in top and "METRANA_API_KEY" in top
    for command, words in (("serve", ["Reads and writes", "METRANA_SERVER_API_KEY", "ps"]),
                           ("runs", ["Reads", "Writes", "--api-key", "METRANA_API_KEY"]),
                           ("export", ["Reads", "Writes", "--api-key", "METRANA_API_KEY"]),
                           ("sync", ["Reads", "Deletes", "--api-key", "METRANA_API_KEY"]),
                           ("demo", ["Writes", "demo.sqlite3"])):
        text = metrana(command, "--help").stdout
        assert "``" not in text
        for word in words:
            assert word in text, (command, word)


def test_runs_and_export_against_a_server_with_a_key_say_how_to_pass_it(tmp_path: Path) -> None:
    """A server started with METRANA_SERVER_API_KEY: without a key `metrana runs --url` says
    which flag and variable fix the 401; both work; the key is never printed."""
    env = {**os.environ, "METRANA_SERVER_API_KEY": "s3cret-key-77"}
    proc, url = start_serve(tmp_path / "k.sqlite3", env=env)
    try:
        post_run(url, "ws", "p", "r", headers={"Authorization": "Bearer s3cret-key-77"})
        for command in (["runs"], ["export", "ws/p/r"]):
            done = metrana(*command, "--url", url)
            assert done.returncode == 1
            message = one_line(done.stderr)
            assert "needs an API key (HTTP 401)" in message
            assert "--api-key" in message and "METRANA_API_KEY" in message
        wrong = metrana("runs", "--url", url, "--api-key", "wrong-key-1")
        assert "refused the API key given (HTTP 401)" in one_line(wrong.stderr)
        assert "wrong-key-1" not in wrong.stderr
        with_flag = metrana("runs", "--url", url, "--api-key", "s3cret-key-77")
        assert with_flag.returncode == 0 and "ws/p/r" in with_flag.stdout
        with_env = metrana("export", "ws/p/r", "--url", url,
                           env={**os.environ, "METRANA_API_KEY": "s3cret-key-77"})
        assert with_env.returncode == 0 and with_env.stdout.startswith("kind,")
        assert "s3cret" not in with_flag.stdout + with_env.stdout + with_env.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_public_bind_without_any_key_is_refused_unless_allowed(tmp_path: Path) -> None:
    """Listening beyond loopback with no key at all is refused, in one line that says how to
    make the first key; --allow-anonymous serves anyway, with a warning; a key made in the
    database (no server needed) lets it start."""
    db = str(tmp_path / "w.db")
    refused = metrana("serve", "--host", "0.0.0.0", "--port", "0", "--db", db)
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert "refusing to listen on 0.0.0.0" in line and "--allow-anonymous" in line
    assert f"metrana keys create --db {db} --workspace '*' --role admin" in line
    for extra, warning in ((["--allow-anonymous"], True), ([], False)):
        if not warning:
            assert metrana("keys", "create", "--db", db, "--workspace", "*", "--role",
                           "admin").returncode == 0
        proc = subprocess.Popen(
            metrana_command("serve", "--host", "0.0.0.0", "--port", "0", "--db", db, *extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert "listening on" in proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        assert ("reachable from other machines, without an API key" in err) is warning


def test_demo_keeps_its_database_and_its_next_commands_work(tmp_path: Path) -> None:
    """The demo prints each summary once, small values with their digits, why the RL run has
    86 series, and next commands that work after it exited (its database is kept)."""
    db = tmp_path / "demo.sqlite3"
    done = metrana("demo", "--db", str(db), timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no loguru repeat of the summaries, no traceback
    out = done.stdout
    assert len(re.findall(r"[\d,]+ of [\d,]+ points delivered", out)) == 2, out
    assert re.search(r"train/lr .* last=1e-07", out) and "0.0000" not in out
    assert re.search(r"cartpole/rl-\S+: 86 series", out)
    assert "reward is 80 series, for 4 environments x 20 episodes" in out
    assert "episode/return is 5 series, for 5 environments (4 training, 1 evaluation)" in out
    assert "identified by metric, scale, environment, episode and labels" in out
    commands = [line.split("#")[0].strip() for line in out.split("\nnext:\n")[1].splitlines()]
    assert commands[0] == f"metrana runs --db {db}"
    assert re.fullmatch(rf"metrana export demo/cartpole/rl-\S+ --db {db} -o rl.csv", commands[1])
    assert commands[2] == f"metrana serve --db {db}"
    listed = metrana(*commands[0].split()[1:], cwd=tmp_path)
    assert listed.returncode == 0 and len(re.findall(r"^demo/", listed.stdout, re.M)) == 2
    exported = metrana(*commands[1].split()[1:], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert len((tmp_path / "rl.csv").read_text().splitlines()) == 2_104 + 1
