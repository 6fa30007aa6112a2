"""What produced a run, read once in ``init()``: the code's git state, the command, the machine.

Sent as run attributes under ``context/`` (``init(capture_context=False)`` turns it off). Every
item is best effort: one that cannot be read is left out, silently — a missing ``git``, a
directory that is no repository, a ``/proc`` we may not read must never stop a training.

What is never read or sent: the value of any environment variable, and anything that looks
like a credential — a git remote's user and password are stripped, and a command-line word
that carries a key (``--api-key=…``, ``--token …``, or the run's own API key wherever it
appears) is replaced with ``***``.

Framework versions are read from modules already imported (``sys.modules``): capturing the
context never imports torch or anything else heavy.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["GIT_TIMEOUT_S", "capture_context", "redact_argv", "strip_credentials"]

GIT_TIMEOUT_S = 1.0  # all git commands together
PREFIX = "context/"
# Imported modules whose versions say what a run ran on: attribute name -> module.
_FRAMEWORKS = {
    "numpy": "numpy", "torch": "torch", "gymnasium": "gymnasium",
    "stable_baselines3": "stable_baselines3", "transformers": "transformers",
    "lightning": "lightning", "pytorch_lightning": "pytorch_lightning", "jax": "jax",
    "tensorflow": "tensorflow",
}
_SECRET_FLAG = re.compile(r"^-{1,2}[\w.-]*(key|token|secret|password|passwd|credential)[\w.-]*",
                          re.IGNORECASE)


def strip_credentials(url: str) -> str:
    """A remote URL without its user information (``https://user:token@host/x`` →
    ``https://host/x``); scp-like ``git@host:path`` keeps its (non-secret) user."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//", url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def redact_argv(argv: list[str], secrets: list[str]) -> list[str]:
    """The command line with credentials replaced by ``***``: the value of a flag named like a
    key or token (``--api-key=X``, ``--token X``), and any word holding one of ``secrets``."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag = _SECRET_FLAG.match(word)
        if flag is not None:
            if "=" in word:
                out.append(word.split("=", 1)[0] + "=***")
            else:
                out.append(word)
                hide_next = True
            continue
        for secret in secrets:
            if secret and secret in word:
                word = word.replace(secret, "***")
        out.append(word)
    return out


def _git(deadline: float, *args: str) -> str | None:
    """One git command's output (stripped), or None: no git, no repository, an error, or
    no time left of :data:`GIT_TIMEOUT_S`."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=left,
                              stdin=subprocess.DEVNULL, check=False,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_items(deadline: float) -> Iterator[tuple[str, Any]]:
    commit = _git(deadline, "rev-parse", "HEAD")
    if commit is None:
        return
    yield "git/commit", commit
    branch = _git(deadline, "rev-parse", "--abbrev-ref", "HEAD")
    if branch:
        yield "git/branch", branch
    status = _git(deadline, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        yield "git/dirty", bool(status)
    remote = _git(deadline, "remote", "get-url", "origin")
    if remote:
        yield "git/remote", strip_credentials(remote)
    root = _git(deadline, "rev-parse", "--show-toplevel")
    if root:
        yield "git/root", root


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_names() -> list[str]:
    """GPU names through NVML when ``nvidia-ml-py`` is installed and a GPU is visible."""
    from ._system_metrics import gpu_names

    return gpu_names()


def _items(secrets: list[str]) -> Iterator[tuple[str, Callable[[], Any]]]:
    yield "command", lambda: " ".join(redact_argv([sys.executable, *sys.argv], secrets))
    yield "cwd", os.getcwd
    yield "hostname", socket.gethostname
    yield "user", getpass.getuser
    yield "python/version", platform.python_version
    yield "python/executable", lambda: sys.executable
    yield "os", platform.platform
    yield "cpu_count", os.cpu_count
    yield "memory_bytes", _memory_bytes
    yield "gpus", _gpu_names


def _versions() -> Iterator[tuple[str, str]]:
    from ._version import __version__

    yield "metrana", __version__
    for name, module_name in _FRAMEWORKS.items():
        module = sys.modules.get(module_name)
        version = getattr(module, "__version__", None) if module is not None else None
        if isinstance(version, str):
            yield name, version


def _attribute(path: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, bool):
        return {"path": path, "boolValue": value}
    if isinstance(value, int):
        return {"path": path, "intValue": str(value)}
    if isinstance(value, str):
        return {"path": path, "stringValue": value} if value else None
    if isinstance(value, list):
        return {"path": path, "stringSetValue": {"values": [str(v) for v in value]}} \
            if value else None
    return None


def capture_context(secrets: list[str] | None = None) -> list[dict[str, Any]]:
    """The ``context/`` attributes of this process (see the module's docstring); ``secrets``
    (the API key) are hidden wherever they appear."""
    hidden = [s for s in (secrets or []) if s]
    found: list[tuple[str, Any]] = []
    for name, read in _items(hidden):
        try:
            found.append((name, read()))
        except Exception:  # noqa: BLE001 - best effort, by design: skip what cannot be read
            continue
    deadline = time.monotonic() + GIT_TIMEOUT_S
    try:
        found += list(_git_items(deadline))
    except Exception:  # noqa: BLE001
        pass
    found += [(f"versions/{name}", version) for name, version in _versions()]
    out = []
    for name, value in found:
        if isinstance(value, str):
            for secret in hidden:
                value = value.replace(secret, "***")
        attribute = _attribute(PREFIX + name, value)
        if attribute is not None:
            out.append(attribute)
    return out
