"""The dashboard's ES modules joined into one file, as the page loads them.

The dashboard's code is written as small ES modules, one job each (``static/js/``). Loaded as
modules, a page asks for each of them: 21 requests, which HTTP/1.1 sends six at a time per
host, so the page's own first reads and uPlot waited behind them (on a 1,000-run project
page, uPlot's request waited 70 ms to be sent). Joined into one file they are one request:
the page is ready ~50 ms sooner (medians of 30 cold loads; ``docs/dashboard.md``).

The join is done when the server starts, in memory, from the files it serves (no build step,
nothing generated in the repository). Each module becomes a function called once, in the order
ES modules are evaluated (an import before its importer), returning its exports; an import
becomes a destructuring of them. That is exact for the forms the modules use, and the join
accepts only those — ``import { a, b as c } from "./x.js";`` on its own line(s) and
``export function|async function|class|const name`` — and refuses anything else (a cycle,
``export let``, a default export, any other ``import``/``export``) with the file and line, so
a new form fails the server's start and the test suite rather than changing what runs.

Some modules stay separate files, imported by the joined one as modules: ``js/first_read.js``
is loaded on its own by ``index.html`` to send the page's first read before the rest arrives,
and one module instance holds that read for the page.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

__all__ = ["BundleError", "join_modules"]

_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";[ \t]*$', re.M)
_EXPORT = re.compile(r"export (?:async function\*?|function\*?|class|const) ([A-Za-z_$][\w$]*)")
_STATEMENT = re.compile(r"^(import|export)\b", re.M)
_NAME = re.compile(r"[A-Za-z_$][\w$]*")


class BundleError(Exception):
    """A dashboard module uses a form the join does not handle (raised at server start)."""


def _module_name(path: str) -> str:
    """The joined file's variable for a module: ``js/run_table.js`` -> ``__m_js_run_table``."""
    return "__m_" + re.sub(r"\W", "_", path.removesuffix(".js"))


def _line(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1


def _bindings(path: str, source: str, offset: int, names: str) -> list[tuple[str, str]]:
    """``a, b as c`` -> ``[(a, a), (b, c)]``: each name imported and the local name it gets."""
    out = []
    for part in (p.strip() for p in names.split(",")):
        if not part:
            continue
        words = part.split()
        if len(words) == 1 and _NAME.fullmatch(words[0]):
            out.append((words[0], words[0]))
        elif len(words) == 3 and words[1] == "as" and all(_NAME.fullmatch(w) for w in words[::2]):
            out.append((words[0], words[2]))
        else:
            raise BundleError(f"{path}:{_line(source, offset)}: cannot join the import of {part!r}")
    return out


def _imports(path: str, source: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """A module's imports as (module path, [(name, local name)]), after checking that every
    ``import``/``export`` statement in it is a form the join handles."""
    found = list(_IMPORT.finditer(source))
    starts = {m.start() for m in found}
    for statement in _STATEMENT.finditer(source):
        at, where = statement.start(), f"{path}:{_line(source, statement.start())}"
        if statement.group(1) == "import" and at not in starts:
            raise BundleError(f'{where}: only `import {{ ... }} from "./x.js";` can be joined')
        if statement.group(1) == "export" and not _EXPORT.match(source, at):
            raise BundleError(f"{where}: only `export function|async function|class|const name` "
                              "can be joined (an export is read once, when the module has run)")
    out = []
    for m in found:
        spec = m.group(2)
        if not spec.startswith("."):
            raise BundleError(f"{path}:{_line(source, m.start())}: imports {spec!r}, not a relative path")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))
        out.append((target, _bindings(path, source, m.start(), m.group(1))))
    return out


def join_modules(root: Path, entry: str, separate: frozenset[str] = frozenset()) -> str:
    """The module ``entry`` (a path under ``root``, e.g. ``dashboard.js``) and every module it
    imports, joined into one module's source; ``separate`` modules stay imports (by path
    under ``root``, as the joined file, served from ``root``, names them)."""
    order: list[str] = []  # an import before its importer: the order ES modules run in
    active: list[str] = []
    sources: dict[str, str] = {}
    imports: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {}

    def visit(path: str) -> None:
        if path in active:
            cycle = " -> ".join([*active[active.index(path):], path])
            raise BundleError(f"the dashboard's modules import each other in a cycle: {cycle}")
        if path in sources:
            return
        file = root / path
        if not file.is_file():
            raise BundleError(f"{active[-1] if active else entry}: imports {path}, which is not a file")
        sources[path] = file.read_text(encoding="utf-8")
        imports[path] = _imports(path, sources[path])
        active.append(path)
        for target, _ in imports[path]:
            if target not in separate:
                visit(target)
        active.pop()
        order.append(path)

    visit(entry)
    kept = sorted({target for found in imports.values() for target, _ in found if target in separate})
    # A name its module does not export: an ES module fails to load, a destructuring would
    # quietly give `undefined`; so the join refuses it.
    exported = {path: _EXPORT.findall(source) for path, source in sources.items()}
    exported |= {path: _EXPORT.findall((root / path).read_text(encoding="utf-8")) for path in kept}
    for path, found in imports.items():
        for target, names in found:
            for name, _ in names:
                if name not in exported[target]:
                    raise BundleError(f"{path}: imports {name} from {target}, which does not export it")
    parts = [f'import * as {_module_name(path)} from "./{path}";' for path in kept]
    for path in order:
        body = re.sub(r"^export ", "", _IMPORT.sub("", sources[path]), flags=re.M)
        taken = "".join(
            f"const {{ {', '.join(n if n == local else f'{n}: {local}' for n, local in names)} }} = "
            f"{_module_name(target)};\n" for target, names in imports[path] if names)
        parts.append(f"// ---- {path}\nconst {_module_name(path)} = (() => {{\n{taken}{body}\n"
                     f"return {{ {', '.join(exported[path])} }};\n}})();")
    return "\n".join(parts) + "\n"
