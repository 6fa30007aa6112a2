"""The official client, ``metrana==1.11.0`` (its Rust engine speaks gRPC), in a virtualenv of
its own: it is another distribution of the import name ``metrana``, so it never goes into ours.

The virtualenv is made on first use under ``~/.cache/metrana-tests`` (or
``$METRANA_TEST_CACHE``), behind a file lock so parallel test runs do not race, and reused
afterwards (about 7 s to make from PyPI: two wheels, numpy, loguru).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["OFFICIAL_VERSION", "PRELUDE", "official_python", "run_official", "start_official"]

OFFICIAL_VERSION = "1.11.0"

# What every script starts with: the server's URL and the run name as arguments, and init()
# without anything that would reach beyond this machine (system metrics, video uploads) or
# write outside the test's directory (the disk spool, unless a script asks for one).
PRELUDE = """\
import sys, numpy as np, metrana
URL, RUN = sys.argv[1], sys.argv[2]

def init(**options):
    settings = dict(ingestion_url=URL, api_key="test-key", disk=None, log_level="error",
                    capture_system_metrics=False, upload_renderings=False, init_timeout_secs=30)
    settings.update(options)
    metrana.init("ws", "proj", RUN, **settings)
"""


def _cache() -> Path:
    return Path(os.environ.get("METRANA_TEST_CACHE") or Path.home() / ".cache" / "metrana-tests")


def official_python() -> Path:
    """The official client's interpreter, its virtualenv made if missing."""
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"official-client-{OFFICIAL_VERSION}"
    python = venv / "bin" / "python"
    done = venv / "installed"
    with open(cache / f"official-client-{OFFICIAL_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            f"metrana=={OFFICIAL_VERSION}"], check=True, timeout=600)
            check = subprocess.run(  # from its own directory: not our checkout's metrana/
                [str(python), "-c", "import metrana, metrana_logging_engine; metrana.init"],
                capture_output=True, text=True, timeout=60, cwd=venv, env=_environment())
            assert check.returncode == 0, check.stderr
            done.write_text(OFFICIAL_VERSION)
    return python


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("METRANA_", "PYTHON", "VIRTUAL_ENV"))}
    return env


def start_official(script: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """Run ``PRELUDE + script`` with the official client, arguments after it; pipes for all."""
    return subprocess.Popen([str(official_python()), "-c", PRELUDE + script, *args], cwd=cwd,
                            env=_environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_official(script: str, *args: str, cwd: Path, timeout: float = 120
                 ) -> subprocess.CompletedProcess[str]:
    proc = start_official(script, *args, cwd=cwd)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
