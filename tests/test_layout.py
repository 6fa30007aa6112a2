"""One owner per idea, checked on the source: SQL only in the server's store, no import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "metrana"
STORE = PACKAGE / "server" / "store"
# The statements and clauses SQL has and Python prose does not, upper case as we write them.
SQL = re.compile(r"\b(SELECT\s+[\w*(]|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"(CREATE|ALTER|DROP)\s+(TABLE|INDEX)|PRAGMA\s+\w|BEGIN\s+IMMEDIATE|"
                 r"ON\s+CONFLICT)\b")


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_sql_is_written_only_in_the_store() -> None:
    """Every SQL statement of metrana is in ``metrana/server/store/`` (string constants only:
    a docstring that names a statement in prose is allowed to, code is not)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORE in path.parents:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                           ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings and SQL.search(node.value):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: "
                             f"{node.value.strip()[:60]!r}")
    assert found == []
    # The check sees SQL where there is some.
    assert any(SQL.search(text) for path in STORE.glob("*.py")
               for _, text in _strings(ast.parse(path.read_text())))


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The modules of the package that ``module`` (at ``path``) imports, anywhere in it
    (imports inside functions count: a cycle through them is still a cycle)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            children = {f"{source}.{alias.name}" for alias in node.names} & modules
            # `from . import x` of a submodule imports x, not the package around it.
            out.update(children if len(children) == len(node.names) else {source, *children})
    return (out & modules) - {module}


def test_no_import_cycles() -> None:
    """No module of metrana imports, directly or through others, one that imports it."""
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {module: _imports(path, module, set(paths)) for module, path in paths.items()}
    assert graph["metrana._cli"]  # the graph has edges

    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    trail: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        trail.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target)
        trail.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []
