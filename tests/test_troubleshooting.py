"""The troubleshooting page cannot fall behind the code: every message the client raises to user
code, every warning it prints, and every refusal the server sends a client or a dashboard user,
is on ``docs/troubleshooting.md``.

The messages are read from the source with ``ast``, as the first argument of:

- each ``raise X(...)`` in the client for X one of metrana's errors, ``TypeError``,
  ``ValueError``, ``RuntimeError``, ``ImportError`` or a command-line error; and each metrana
  error built without ``raise`` (reported through the error strategy, a warning by default);
- each refusal the server raises: the errors ``metrana/server/app.py`` maps to a 4xx/5xx status,
  the request guard's ``HTTPError``, gRPC's ``GrpcError``, and what ``metrana serve`` refuses
  to start with;
- each warning metrana prints (``say(..., "WARNING" or "ERROR", ...)``, ``warnings.warn``), and
  each line the command line prints to stderr.

A message is its string literal or f-string; its
*stable part* is the first constant piece of at least 10 characters (the text between the
interpolated names), cut to 40 characters. The page writes the interpolated parts as ``<name>``,
so the stable part appears on it verbatim. A message built elsewhere (passed as a variable) is not
seen here (a module-level string constant is), nor one a helper function composes (such as
``_api._unknown_keywords_message`` or ``_series._kind_message``): the check is that no literal
message is missing; those few are on the page by hand.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import metrana
import metrana.query

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "troubleshooting.md"

_EXPORTED = [getattr(module, name) for module in (metrana, metrana.query) for name in module.__all__]
RAISED = {obj.__name__ for obj in _EXPORTED
          if isinstance(obj, type) and issubclass(obj, BaseException)}
# metrana's own errors are also built without ``raise`` and reported through the error strategy
# (a warning by default), e.g. ``MetranaMetricStepError`` for a point that was dropped.
PUBLIC = frozenset(RAISED)
RAISED |= {"TypeError", "ValueError", "RuntimeError", "ImportError",
           "CLIError", "_CLIError", "ArgumentTypeError",  # a command-line error, one stderr line
           "_error",  # metrana/_import/command.py: its CLIError
           "not_initialized"}  # builds MetranaNotInitializedError (metrana/_api.py)
# The server's errors that become an HTTP status and message (metrana/server/errors.py, app.py),
# and what ``metrana serve`` refuses to start with.
SERVER_RAISED = {"QueryError", "Unprocessable", "NotFound", "Gone", "Conflict", "Unauthenticated",
                 "Forbidden", "Throttled", "HTTPError", "ValidationError", "OpenToOthers",
                 "GrpcError", "CLIError", "ValueError", "DatabaseError", "SchemaError", "Unavailable",
                 "_fail",  # metrana/server/validate.py builds its ValidationError (HTTP 400)
                 "fail"}  # metrana/server/filter_text.py: what the filter parser expected
SPEAKERS = {"say", "say_for", "_say"}  # metrana's voice (metrana/_log.py) and its wrappers
SHOWN_LEVELS = {"WARNING", "ERROR"}  # printed at the default log level

# (file, stable part): messages a user does not see, each with the reason.
SKIP: dict[tuple[str, str], str] = {
    ("metrana/server/api_keys.py", "unknown role"):
        "argparse's choices=(read, write, admin) and the keys API's own 'role' message come first",
    ("metrana/server/store/__init__.py", "heartbeat_timeout_s must be > 0 seconds"):
        "--heartbeat-timeout is checked by argparse first ('must be more than 0 seconds')",
    ("metrana/server/store/chunks.py", "not a chunk this server can read (versio"):
        "an internal check on the server's own stored chunks, not a user's input",
    ("metrana/server/store/database.py", "insert_method must be one of"):
        "an internal argument of the store, never set from user input",
    ("metrana/server/throttle.py", "limit must be at least 1"):
        "an internal constructor check; the limit is a constant of the server",
    ("metrana/_cli.py", "metrana export: wrote"): "a success line, not an error",
    ("metrana/_export_parquet.py", "metrana export: wrote"): "a success line, not an error",
    ("metrana/_cli_keys.py", "metrana keys: made key mk_"):
        "a success line (the new key's prefix and scope), not an error",
}


def _pieces(node: ast.expr) -> list[str] | None:
    """The constant pieces of a message, split where a value is interpolated."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        pieces: list[str] = []
        current = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                current += str(part.value)
            else:
                pieces, current = [*pieces, current], ""
        return [*pieces, current]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return (_pieces(node.left) or [""]) + (_pieces(node.right) or [""])
    return None


def stable_part(node: ast.expr) -> str | None:
    for piece in _pieces(node) or []:
        piece = re.sub(r"\s+", " ", piece).lstrip(" :;,.)]").rstrip(" :;,.([")
        if len(piece) >= 10:
            return piece[:40]
    return None


def _name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def messages() -> Iterator[tuple[str, int, str]]:
    """(file, line, stable part) of every literal message a user can see."""
    for path in sorted((ROOT / "metrana").rglob("*.py")):
        server = "server" in path.relative_to(ROOT).parts
        raised = SERVER_RAISED if server else RAISED
        tree = ast.parse(path.read_text())
        # Messages kept in module constants (``_MISSING = "missing API key: ..."``).
        constants: dict[str, ast.expr] = {
            node.targets[0].id: node.value for node in tree.body
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Raise, ast.Call)):
                continue
            message: ast.expr | None = None
            if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and _name(node.exc) in raised and node.exc.args):
                # HTTPError/GrpcError(status, message): the message is the second argument.
                http = _name(node.exc) in ("HTTPError", "GrpcError") and len(node.exc.args) > 1
                message = node.exc.args[1] if http else node.exc.args[0]
            elif isinstance(node, ast.Call) and node.args and not server:
                name = _name(node)
                if name in PUBLIC:  # made and reported through the error strategy
                    message = node.args[0]
                elif name == "print" and any(
                        k.arg == "file" and ast.unparse(k.value) == "sys.stderr"
                        for k in node.keywords):  # the command line's stderr lines
                    message = node.args[0]
                elif name == "warn" and isinstance(node.func, ast.Attribute):
                    message = node.args[0]
                elif name in SPEAKERS and any(
                        isinstance(a, ast.Constant) and a.value in SHOWN_LEVELS for a in node.args):
                    message = node.args[-1]
            if isinstance(message, ast.Name):
                message = constants.get(message.id)
            part = None if message is None else stable_part(message)
            if part is not None:
                yield str(path.relative_to(ROOT)), node.lineno, part


def test_every_message_a_user_can_see_is_on_the_troubleshooting_page() -> None:
    page = re.sub(r"\s+", " ", PAGE.read_text())
    found = list(messages())
    # The extraction finds the messages at all (a broken walk would pass vacuously).
    assert len([f for f in found if "server" not in f[0]]) > 150
    assert len([f for f in found if "server" in f[0]]) > 150
    parts = {part for _, _, part in found}
    assert "Histogram counts must be whole numbers; " in parts  # a client ValueError
    assert "accepts POST only" in parts  # the request guard's HTTPError(405, ...)
    missing = [f"{file}:{line}: {part!r}" for file, line, part in found
               if part not in page and (file, part) not in SKIP]
    assert missing == [], "add these messages to docs/troubleshooting.md:\n" + "\n".join(missing)
    # A skip whose message is gone from the code (or now on the page) is removed, not kept.
    stale = [key for key in SKIP if key not in {(file, part) for file, _, part in found}
             or key[1] in page]
    assert stale == []


def test_the_stable_part_is_the_text_between_the_interpolated_values() -> None:
    raised = ast.parse('raise ValueError(f"{who}: unexpected keyword argument(s) {names}; it")')
    node = next(n for n in ast.walk(raised) if isinstance(n, ast.Call))
    assert stable_part(node.args[0]) == "unexpected keyword argument(s)"
