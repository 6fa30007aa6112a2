"""Mutation testing for the modules where a silent bug loses data.

A mutant is one small deliberate bug (a flipped comparison, ``and`` for ``or``, a constant off
by one, a dropped statement, an early return...) in a *copy* of the package; the tests that
exercise that module run against it (``-x``, with a per-mutant timeout). A mutant the tests
fail on is *killed*; one they pass on *survived*: either the tests miss a real bug, or the
mutant changes nothing a user could observe (an equivalent mutant, listed with its reason in
``docs/mutation-survivors.md``).

    python scripts/mutation.py                          # every module (the store last)
    python scripts/mutation.py --module replay --module _spool
    python scripts/mutation.py --module dispatcher --max-mutants 40 --list-survivors
    python scripts/mutation.py --list --module parcel   # the mutants, without running them
    python scripts/mutation.py --planted                # the bugs of issue 16, planted by hand
    python scripts/mutation.py --max-mutants 60 --json run1.json
    python scripts/mutation.py --max-mutants 60 --recheck run1.json   # only run1's survivors

Results, and why each surviving mutant is left: docs/mutation-survivors.md and docs/development.md's
development notes.

The working tree is never written: each job copies ``metrana/``, ``tests/`` and
``pyproject.toml`` to a temporary directory that is put first on ``PYTHONPATH`` (so servers
and worker processes the tests start import the mutant too) and runs pytest from there. No
dependency beyond the standard library and the test suite's own.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The tests that exercise each module, fastest first (``-x`` stops at the first failure, so a
# mutant the unit tests catch costs a second or two). The store is last (its tests run on
# SQLite and PostgreSQL, and are the slowest); it sits over server/store/database.py.
MODULES: dict[str, list[str]] = {
    "metrana/_spool.py": [
        "tests/client/test_spool.py",
        "tests/client/test_spool_runs.py",
        "tests/actors/test_replay.py",
    ],
    "metrana/_run_spool.py": [
        "tests/client/test_spool_runs.py",
        "tests/client/test_engine.py",
        "tests/client/test_close.py",
        "tests/actors/test_recovery.py",
    ],
    "metrana/_actors/parcel.py": [
        "tests/actors/test_parcel.py",
        "tests/actors/test_replay.py",
        "tests/client/test_close.py",
    ],
    "metrana/_actors/replay.py": [
        "tests/actors/test_replay.py",
        "tests/actors/test_recovery.py",
        "tests/client/test_engine.py",
        "tests/client/test_close.py",
    ],
    "metrana/_actors/recovery.py": [
        "tests/actors/test_recovery.py",
        "tests/client/test_close.py",
        "tests/client/test_engine.py",
    ],
    "metrana/_transport.py": [
        "tests/actors/test_dispatcher.py",
        "tests/client/test_engine.py",
        "tests/client/test_close.py",
    ],
    "metrana/_actors/dispatcher.py": [
        "tests/actors/test_dispatcher.py",
        "tests/actors/test_parcel.py",
        "tests/client/test_engine.py",
        "tests/client/test_close.py",
        "tests/actors/test_recovery.py",
    ],
    "metrana/_delivery.py": [
        "tests/client/test_engine.py",
        "tests/actors/test_recovery.py",
        "tests/client/test_close.py",
    ],
    "metrana/_engine.py": [
        "tests/client/test_engine.py",
        "tests/client/test_close.py",
        "tests/actors/test_recovery.py",
        "tests/actors/test_supervisor.py",
    ],
    "metrana/server/validate.py": [
        "tests/server/test_ingest.py",
        "tests/server/test_validate.py",
    ],
    "metrana/server/ingest.py": [
        "tests/server/test_ingest.py",
        "tests/server/test_app.py",
    ],
    "metrana/server/store/write.py": [
        "tests/server/test_store.py",
        "tests/server/test_ingest.py",
    ],
}
ALIASES = {Path(path).stem.lstrip("_"): path for path in MODULES}


# --------------------------------------------------------------------------- the mutants

@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    operator: str
    original: str
    replacement: str
    start: int  # byte offsets of the replaced text in the module's source
    end: int

    @property
    def label(self) -> str:
        return (f"{self.module}:{self.line} {self.operator}: {_short(self.original)} -> "
                f"{_short(self.replacement)}")

    def apply(self, source: bytes) -> bytes:
        return source[:self.start] + self.replacement.encode() + source[self.end:]


def _short(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 3] + "..."


_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_NEGATED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
}
_BINOPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
}
_DROPPABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.Return,
              ast.Continue, ast.Break)


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant)
                                               and isinstance(node.value, (str, bytes)))


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and _is_text(node.value)


def _returns_value(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    todo: list[ast.AST] = list(func.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                 ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))
    return False


class _Collector(ast.NodeVisitor):
    """Walks a module and proposes (node, replacement text, operator) triples."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[tuple[ast.expr | ast.stmt, str, str]] = []
        self._in_function = 0

    def add(self, node: ast.expr | ast.stmt, replacement: str, operator: str) -> None:
        self.found.append((node, replacement, operator))

    # -- what is never mutated: imports, annotations, docstrings, f-strings, asserts, __all__
    def visit_Import(self, node: ast.Import) -> None:
        return

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        self.visit(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        swapped = _BINOPS.get(type(node.op))
        if swapped is not None and not _is_text(node.value):
            self.add(node, ast.unparse(ast.AugAssign(node.target, swapped(), node.value)),
                     "augassign")
        self.visit(node.value)

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if "TYPE_CHECKING" in test or "version_info" in test:
            return
        self._negate(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        if not (isinstance(node.test, ast.Constant) and node.test.value is True):
            self._negate(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def _negate(self, test: ast.expr) -> None:
        # A comparison is negated by its own operator; `not x` by dropping the `not`.
        if isinstance(test, ast.Compare) or (isinstance(test, ast.UnaryOp)
                                             and isinstance(test.op, ast.Not)):
            return
        self.add(test, f"(not ({ast.unparse(test)}))", "negate")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        body = [s for s in node.body if not _is_docstring(s)]
        if body and node.name != "__init__":
            first = body[0]
            indent = " " * first.col_offset
            returns = ast.unparse(node.returns) if node.returns is not None else ""
            if returns == "bool":
                for value in ("True", "False"):
                    self.found.append((first, f"return {value}\n{indent}" + "\0", "return"))
            elif not _returns_value(node):
                self.found.append((first, f"return\n{indent}" + "\0", "return"))
        self._in_function += 1
        for statement in node.body:
            self.visit(statement)
        self._in_function -= 1

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for statement in node.body:
            self.visit(statement)

    def visit(self, node: ast.AST) -> None:
        if (self._in_function and isinstance(node, _DROPPABLE)
                and not (isinstance(node, ast.Expr) and _is_docstring(node))):
            self.add(node, "pass", "drop")
        super().visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if not _is_docstring(node):
            self.visit(node.value)

    # -- expressions
    def visit_Compare(self, node: ast.Compare) -> None:
        for index, op in enumerate(node.ops):
            for table, name in ((_BOUNDARY, "boundary"), (_NEGATED, "compare")):
                swapped = table.get(type(op))
                if swapped is None:
                    continue
                ops = list(node.ops)
                ops[index] = swapped()
                self.add(node, f"({ast.unparse(ast.Compare(node.left, ops, node.comparators))})",
                         name)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self.add(node, f"({ast.unparse(ast.BoolOp(other, node.values))})", "boolop")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        swapped = _BINOPS.get(type(node.op))
        if swapped is not None and not _is_text(node.left) and not _is_text(node.right):
            self.add(node, f"({ast.unparse(ast.BinOp(node.left, swapped(), node.right))})",
                     "binop")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, (ast.Not, ast.USub)):
            self.add(node, f"({ast.unparse(node.operand)})", "unary")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            other = "max" if node.func.id == "min" else "min"
            call = ast.Call(ast.Name(other, ast.Load()), node.args, node.keywords)
            self.add(node, ast.unparse(call), "minmax")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.add(node, str(not value), "constant")
        elif isinstance(value, int):
            self.add(node, str(value + 1), "constant")
        elif isinstance(value, float):
            self.add(node, repr(value * 2 if value else 1.0), "constant")

    def visit_Continue(self, node: ast.Continue) -> None:
        self.add(node, "break", "loop")

    def visit_Break(self, node: ast.Break) -> None:
        self.add(node, "continue", "loop")


def _line_offsets(source: bytes) -> list[int]:
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def mutants_of(module: str, source: bytes | None = None) -> list[Mutant]:
    """Every mutant of ``module`` (a path relative to the repository), in source order."""
    if source is None:
        source = (ROOT / module).read_bytes()
    text = source.decode()
    tree = ast.parse(text)
    original = ast.dump(tree)
    collector = _Collector(text)
    collector.visit(tree)
    lines = _line_offsets(source)
    out: list[Mutant] = []
    seen: set[bytes] = set()
    for node, replacement, operator in collector.found:
        lineno = node.lineno
        start = lines[lineno - 1] + node.col_offset
        if replacement.endswith("\0"):  # an insertion before the node
            end = start
            replacement = replacement[:-1]
            shown = "(start of the function)"
        else:
            assert node.end_lineno is not None and node.end_col_offset is not None
            end = lines[node.end_lineno - 1] + node.end_col_offset
            shown = source[start:end].decode()
        mutant = Mutant(module, lineno, operator, shown, replacement, start, end)
        mutated = mutant.apply(source)
        if mutated in seen:
            continue
        try:
            if ast.dump(ast.parse(mutated)) == original:
                continue
            compile(mutated, module, "exec")  # also what only the compiler refuses (nonlocal)
        except SyntaxError:
            continue
        seen.add(mutated)
        out.append(mutant)
    return sorted(out, key=lambda m: (m.start, m.end, m.operator, m.replacement))


def sample(mutants: list[Mutant], limit: int | None) -> list[Mutant]:
    """At most ``limit`` mutants, spread evenly over the module (deterministic)."""
    if limit is None or len(mutants) <= limit:
        return mutants
    step = len(mutants) / limit
    return [mutants[int(i * step)] for i in range(limit)]


# --------------------------------------------------------------------------- the runs

@dataclass
class Outcome:
    status: str  # "killed", "survived", "timeout"
    seconds: float
    by: str = ""  # the first test that failed


class Workspace:
    """A private copy of the package and tests: mutants are written here, never to ROOT."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="metrana-mutation-"))
        for name in ("metrana", "tests"):
            shutil.copytree(ROOT / name, self.dir / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, self.dir / name)
        self.env = {**os.environ, "PYTHONPATH": str(self.dir), "PYTHONDONTWRITEBYTECODE": "1"}
        where = subprocess.run([sys.executable, "-c", "import metrana; print(metrana.__file__)"],
                               cwd=self.dir, env=self.env, capture_output=True, text=True,
                               check=True).stdout.strip()
        if not where.startswith(str(self.dir)):
            raise SystemExit(f"the copy is not what Python imports ({where}); is metrana "
                             "installed other than editable?")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, module: str, source: bytes, tests: Sequence[str], timeout: float,
            stop_first: bool = True) -> Outcome:
        target = self.dir / module
        pristine = target.read_bytes()
        target.write_bytes(source)
        try:
            return self._pytest(tests, timeout, stop_first)
        finally:
            target.write_bytes(pristine)

    def _pytest(self, tests: Sequence[str], timeout: float, stop_first: bool) -> Outcome:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   f"--basetemp={self.dir / '.pytest-tmp'}", *(["-x"] if stop_first else []),
                   *tests]
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the tests' servers and workers with it
            proc.communicate()
            return Outcome("timeout", time.monotonic() - started, "(timeout)")
        seconds = time.monotonic() - started
        if proc.returncode == 5:  # no tests collected: the mapping is wrong, not the mutant
            raise SystemExit(f"pytest found no tests in {' '.join(tests)}:\n{output[-3000:]}")
        if proc.returncode == 0:
            return Outcome("survived", seconds)
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
        return Outcome("killed", seconds, ", ".join(dict.fromkeys(failed)) or
                       f"(pytest exit {proc.returncode})")


@dataclass
class ModuleResult:
    module: str
    mutants: int = 0
    killed: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    survivors: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return 100.0 * (self.killed + self.timeouts) / self.mutants if self.mutants else 100.0


def run_module(module: str, workspaces: list[Workspace], limit: int | None,
               timeout_factor: float, verbose: bool,
               previous: ModuleResult | None = None) -> ModuleResult:
    """Run the module's mutants; with ``previous`` (a result of an earlier run), only the
    mutants that survived it, counting the ones it killed as still killed."""
    tests = MODULES[module]
    source = (ROOT / module).read_bytes()
    mutants = sample(mutants_of(module, source), limit)
    result = ModuleResult(module)
    if previous is not None:
        labels = {m.label for m in mutants}
        gone = [label for label in previous.survivors if label not in labels]
        if gone:
            raise SystemExit(f"{module}: the module changed since that run (no mutant "
                             f"{gone[0]!r}); run it whole again")
        wanted = set(previous.survivors)
        mutants = [m for m in mutants if m.label in wanted]
        result.mutants = previous.mutants - len(mutants)
        result.killed = previous.killed
        result.timeouts = previous.timeouts
        result.seconds = previous.seconds
    started = time.monotonic()
    if previous is not None and not mutants:  # nothing survived that run
        print(f"{module}: {result.killed + result.timeouts}/{result.mutants} killed "
              f"({result.score:.1f}%), nothing to recheck", flush=True)
        return result
    baseline = workspaces[0].run(module, source, tests, timeout=900)
    if baseline.status != "survived":  # (pytest exits 1-4: failures, or it could not run)
        raise SystemExit(f"{module}: its tests fail without any mutant ({baseline.by}); "
                         "fix them first")
    timeout = baseline.seconds * timeout_factor + 20
    print(f"{module}: {len(mutants)} mutants to run; its tests take {baseline.seconds:.1f} s "
          f"(timeout {timeout:.0f} s)", flush=True)
    free = list(workspaces)
    lock = threading.Lock()

    def one(mutant: Mutant) -> tuple[Mutant, Outcome]:
        with lock:
            workspace = free.pop()
        try:
            return mutant, workspace.run(module, mutant.apply(source), tests, timeout)
        finally:
            with lock:
                free.append(workspace)

    with concurrent.futures.ThreadPoolExecutor(len(workspaces)) as pool:
        for done, (mutant, outcome) in enumerate(pool.map(one, mutants), 1):
            result.mutants += 1
            if outcome.status == "killed":
                result.killed += 1
            elif outcome.status == "timeout":
                result.timeouts += 1
            else:
                result.survivors.append(mutant.label)
            if verbose or outcome.status == "survived":
                print(f"  [{done}/{len(mutants)}] {outcome.status:8} {outcome.seconds:5.1f}s "
                      f"{mutant.label}" + (f"  <- {outcome.by}" if verbose and outcome.by else ""),
                      flush=True)
    result.seconds += time.monotonic() - started
    print(f"{module}: {result.killed + result.timeouts}/{result.mutants} killed "
          f"({result.score:.1f}%), {len(result.survivors)} survived, "
          f"{result.seconds / 60:.1f} min", flush=True)
    return result


# --------------------------------------------------------------------------- planted bugs

@dataclass(frozen=True)
class Planted:
    """A bug of issue 16, planted by hand: the tests must fail on it."""

    name: str
    module: str
    old: str
    new: str
    tests: tuple[str, ...]


_STRATEGIES = ("tests/client/test_strategies.py",)
PLANTED: list[Planted] = [
    Planted("CompleteAll behaves like CompletePending", "metrana/_engine.py",
            "elif strategy is CloseStrategy.CompletePending:",
            "elif strategy in (CloseStrategy.CompletePending, CloseStrategy.CompleteAll):",
            _STRATEGIES),
    Planted("Retry-After ignored", "metrana/_transport.py",
            "retry_after = _retry_after(response)", "retry_after = None",
            ("tests/actors/test_dispatcher.py",)),
    Planted("every 4xx treated as transient", "metrana/_transport.py",
            "return status in (408, 429) or", "return 400 <= status < 500 or",
            ("tests/actors/test_dispatcher.py",)),
    Planted("unknown request fields silently skipped by the server",
            "metrana/server/validate.py",
            "if spec is None:\n", "if spec is None:\n                    continue\n",
            ("tests/server/test_validate.py", "tests/server/test_app.py")),
    Planted("points stored without their key (duplicates stored)",
            "metrana/server/store/write.py", "if not appending:", "if False:",
            ("tests/server/test_ingest.py", "tests/server/test_app.py")),
    Planted("spool segments replayed newest first", "metrana/_spool.py",
            'return sorted(p for p in directory.iterdir() if p.suffix == ".seg")',
            'return sorted((p for p in directory.iterdir() if p.suffix == ".seg"), reverse=True)',
            ("tests/actors/test_replay.py",)),
    Planted("records within a segment replayed in reverse", "metrana/_actors/replay.py",
            "for session, parcel in merge_records(records):",
            "for session, parcel in merge_records(records[::-1]):",
            ("tests/actors/test_replay.py",)),
    Planted("the server keeps the last of several writes of a step in one request",
            "metrana/server/store/write.py",
            "keep[1:] = (np.diff(points.x) != 0)", "keep[:-1] = (np.diff(points.x) != 0)",
            ("tests/server/test_ingest.py",)),
    Planted("the server keeps the last write of a step (a later request overwrites)",
            "metrana/server/store/write.py",
            "    if not existing:\n        return points\n",
            "    tx.run('DELETE FROM chunks WHERE session_ref = ? AND x_last >= ? AND x_first <= ?',"
            " (session_ref, lo, hi))\n    if True:\n        return points\n",
            ("tests/server/test_ingest.py",)),
    Planted("error strategy Silent warns like Warn", "metrana/_actors/error_collector.py",
            "if self.strategy is ErrorStrategy.Silent:\n            return\n"
            "        if self.strategy is ErrorStrategy.Warn:",
            "if self.strategy in (ErrorStrategy.Warn, ErrorStrategy.Silent):",
            ("tests/actors/test_error_collector.py", *_STRATEGIES)),
    Planted("default backoff: initial delay", "metrana/_transport.py",
            "initial: float = 0.1", "initial: float = 0.2", ("tests/actors/test_dispatcher.py",)),
    Planted("default backoff: multiplier", "metrana/_transport.py",
            "multiplier: float = 1.5", "multiplier: float = 2.0",
            ("tests/actors/test_dispatcher.py",)),
    Planted("default backoff: cap", "metrana/_transport.py",
            "max_delay: float = 30.0", "max_delay: float = 60.0",
            ("tests/actors/test_dispatcher.py",)),
    Planted("default backoff: attempts", "metrana/_transport.py",
            "max_attempts: int = 15", "max_attempts: int = 10",
            ("tests/actors/test_dispatcher.py",)),
    Planted("the engine does not use the default retry policy", "metrana/_engine.py",
            "self._retry = options.retry or RetryPolicy()",
            "self._retry = options.retry or RetryPolicy(max_attempts=3)",
            ("tests/client/test_close.py",)),
    Planted("CompletePending ignores close_timeout", "metrana/_engine.py",
            "intake_scope.cancel()\n            dispatch_scope.deadline = deadline",
            "intake_scope.cancel()", _STRATEGIES),
    Planted("server accepts floatPoints/pointBatches it does not store",
            "metrana/server/ingest.py",
            'if series.get("float_points") or series.get(batches):', "if False:",
            ("tests/server/test_ingest.py",)),
    Planted("server accepts histogram/scatter/streaming series it does not store",
            "metrana/server/ingest.py",
            "        if update.get(name):\n", "        if False:\n",
            ("tests/server/test_ingest.py",)),
    Planted("close summary does not warn when points were discarded", "metrana/_session.py",
            'level = "WARNING" if final.dropped or final.pending',
            'level = "WARNING" if final.failed or final.pending',
            ("tests/client/test_close.py",)),
    Planted("close summary does not say why points were discarded at a timeout",
            "metrana/_session.py",
            "        else:\n            out.append(f\"{final.discarded:,} points were discarded: "
            "close_timeout=\"",
            "        elif False:\n            out.append(f\"{final.discarded:,} points were "
            "discarded: close_timeout=\"",
            ("tests/client/test_close.py",)),
    Planted("close summary is silent about points cut off in flight", "metrana/_session.py",
            "    if final.in_doubt:\n", "    if False:\n", ("tests/client/test_close.py",)),
    Planted("close summary is silent about points dropped by backpressure", "metrana/_session.py",
            "    if final.dropped_backpressure:\n", "    if False:\n",
            ("tests/client/test_close.py",)),
    Planted("sync does not send the run's config", "metrana/_actors/run_creator.py",
            'tuple(manifest.get("attributes") or ()))', "())",
            ("tests/client/test_spool_runs.py",)),
    Planted("sync replays segments a running logger holds", "metrana/_actors/replay.py",
            "        if is_locked(segment):\n", "        if False:\n",
            ("tests/client/test_spool_runs.py",)),
    Planted("the at-exit close is not bounded by 30 s", "metrana/_thread_session.py",
            "timeout = min(self.settings.close_timeout, 30.0)",
            "timeout = self.settings.close_timeout", ("tests/client/test_exit_and_interrupt.py",)),
    Planted("a second Ctrl-C during close is swallowed", "metrana/_thread_session.py",
            "                if interrupted:\n                    raise\n",
            "                if interrupted:\n                    continue\n",
            ("tests/client/test_exit_and_interrupt.py",)),
    Planted("an HTTP-date Retry-After is ignored", "metrana/_transport.py",
            "return max(0.0, when.timestamp() - time.time())", "return None",
            ("tests/actors/test_dispatcher.py",)),
    Planted("a forked child reuses its parent's session", "metrana/_engine.py",
            "self.session_id = random.getrandbits(64) or 1",
            "self.session_id = int.from_bytes(settings.run_name.encode()[:8], 'big') or 1",
            ("tests/client/test_no_silent_loss.py::test_a_forked_childs_points_go_after_the_parents",)),
    Planted("replayed points of this session are not moved from spooled to sent",
            "metrana/_actors/replay.py",
            "            self.counters.spooled -= count\n            self.counters.sent += count\n",
            "            self.counters.sent += count\n",
            ("tests/actors/test_replay.py",)),
    Planted("sent is counted before the service answered", "metrana/_actors/parcel.py",
            "        try:\n            response = await post(part, progress.flight)",
            "        on_sent(count)\n        try:\n            response = await post(part, "
            "progress.flight)",
            ("tests/actors/test_parcel.py",)),
]


def run_planted(names: Sequence[str], workspace: Workspace) -> int:
    chosen = [p for p in PLANTED if not names or any(n.lower() in p.name.lower() for n in names)]
    missed = 0
    for bug in chosen:
        source = (ROOT / bug.module).read_text()
        if source.count(bug.old) != 1:
            print(f"  CANNOT PLANT  {bug.name}: {bug.module} no longer has the text to change")
            missed += 1
            continue
        outcome = workspace.run(bug.module, source.replace(bug.old, bug.new).encode(),
                                bug.tests, timeout=600)
        caught = outcome.status != "survived"
        missed += not caught
        print(f"  {'caught' if caught else 'NOT CAUGHT':10} {bug.name}"
              + (f"\n             by {outcome.by}" if caught else ""), flush=True)
    return 1 if missed else 0


# --------------------------------------------------------------------------- command line

def resolve(names: Sequence[str]) -> list[str]:
    if not names:
        return list(MODULES)
    out = []
    for name in names:
        path = name if name in MODULES else ALIASES.get(Path(name).stem.lstrip("_"))
        if path is None:
            raise SystemExit(f"unknown module {name!r}; choose from: {', '.join(MODULES)}")
        out.append(path)
    return out


def table(results: Sequence[ModuleResult]) -> Iterator[str]:
    yield "| module | mutants | killed | score | survivors | minutes |"
    yield "|---|---:|---:|---:|---:|---:|"
    for r in results:
        yield (f"| `{r.module}` | {r.mutants} | {r.killed + r.timeouts} | {r.score:.1f}% | "
               f"{len(r.survivors)} | {r.seconds / 60:.1f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", default=[],
                        help="a module to mutate (path or short name: spool, replay, store...); "
                             "repeatable; default: all, the store last")
    parser.add_argument("--max-mutants", type=int, help="at most this many per module, spread "
                        "evenly over it")
    parser.add_argument("--list-survivors", action="store_true",
                        help="print every surviving mutant at the end")
    parser.add_argument("--list", action="store_true", help="list the mutants; run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--timeout-factor", type=float, default=3.0,
                        help="a mutant's timeout: this times the tests' own time, plus 20 s")
    parser.add_argument("--json", type=Path, help="write the results here (after each module)")
    parser.add_argument("--recheck", type=Path, metavar="JSON",
                        help="run only the survivors recorded in this --json file of an "
                             "earlier run (with the same --max-mutants), keeping its kills")
    parser.add_argument("--planted", nargs="*", metavar="NAME",
                        help="plant the bugs of issue 16 (all, or those whose name contains "
                             "NAME) and check the tests catch each")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per mutant")
    args = parser.parse_args(argv)
    modules = resolve(args.module)
    if args.list:
        for module in modules:
            mutants = sample(mutants_of(module), args.max_mutants)
            print(f"{module}: {len(mutants)} mutants")
            for mutant in mutants:
                print(f"  {mutant.label}")
        return 0
    workspaces = [Workspace() for _ in range(max(1, args.jobs))]
    try:
        if args.planted is not None:
            return run_planted(args.planted, workspaces[0])
        previous: dict[str, ModuleResult] = {}
        if args.recheck is not None:
            for entry in json.loads(args.recheck.read_text()):
                entry.pop("score", None)
                previous[entry["module"]] = ModuleResult(**entry)
            modules = [m for m in modules if m in previous]
        results: list[ModuleResult] = []
        for module in modules:
            results.append(run_module(module, workspaces, args.max_mutants,
                                      args.timeout_factor, args.verbose, previous.get(module)))
            if args.json is not None:
                done = {r.module for r in results}
                kept = [r for m, r in previous.items() if m not in done]
                _write_json(args.json, [*results, *kept])
    finally:
        for workspace in workspaces:
            workspace.remove()
    print()
    for line in table(results):
        print(line)
    if args.list_survivors:
        for result in results:
            if result.survivors:
                print(f"\n{result.module}: {len(result.survivors)} survivors")
                for label in result.survivors:
                    print(f"  {label}")
    return 0


def _write_json(path: Path, results: Sequence[ModuleResult]) -> None:
    path.write_text(json.dumps([{**asdict(r), "score": r.score} for r in results], indent=1))


if __name__ == "__main__":
    sys.exit(main())
