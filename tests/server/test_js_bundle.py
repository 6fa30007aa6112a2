"""Joining the dashboard's ES modules into the one file the page loads (js_bundle.py): the
order ES modules run in, imports as destructurings of exports, the modules kept separate, and
a clear refusal of any form the join does not handle. (That the joined dashboard behaves as
its modules do is what every browser test of the dashboard runs on.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from metrana.server.js_bundle import BundleError, join_modules


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_modules_are_joined_in_the_order_they_run_with_imports_bound_to_exports(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "main.js": 'import { b } from "./js/b.js";\nimport { c as see, early } from "./js/c.js";\n'
                   'import { first } from "./js/first.js";\nconsole.log(b, see, early, first);\n',
        "js/b.js": 'import {\n  c,\n} from "./c.js";\nexport const b = c + 1;\n',
        "js/c.js": "export function c() { return 1; }\nexport async function early() {}\n"
                   "export class Later {}\n",
        "js/first.js": "export const first = 1;\n",
    })
    joined = join_modules(root, "main.js", frozenset({"js/first.js"}))
    # c before b before main (an import runs before its importer); first.js stays a module,
    # imported once, by the path the joined file (served beside main.js) names it.
    assert [line.removeprefix("// ---- ") for line in joined.splitlines() if line.startswith("// ---- ")] == [
        "js/c.js", "js/b.js", "main.js"]
    assert joined.startswith('import * as __m_js_first from "./js/first.js";\n')
    assert "return { c, early, Later };" in joined
    assert "const { c } = __m_js_c;" in joined and "const { c: see, early } = __m_js_c;" in joined
    assert "const { first } = __m_js_first;" in joined
    assert "export " not in joined and 'from "./c.js"' not in joined


@pytest.mark.parametrize(("line", "why"), [
    ("export let n = 1;", "only `export function|async function|class|const name`"),
    ("export default function f() {}", "only `export function|async function|class|const name`"),
    ("export { a };", "only `export function|async function|class|const name`"),
    ('import x from "./b.js";', "only `import { ... } from \"./x.js\";`"),
    ('import "./b.js";', "only `import { ... } from \"./x.js\";`"),
    ('import { a } from "uplot";', "imports 'uplot', not a relative path"),
    ('import { a as } from "./b.js";', "cannot join the import of 'a as'"),
])
def test_a_form_the_join_does_not_handle_is_refused_with_its_file_and_line(
        tmp_path: Path, line: str, why: str) -> None:
    root = write(tmp_path, {"main.js": f"// the entry\n{line}\n", "b.js": "export const a = 1;\n"})
    with pytest.raises(BundleError, match="^main.js:2: ") as raised:
        join_modules(root, "main.js")
    assert why in str(raised.value)


def test_a_name_its_module_does_not_export_is_refused(tmp_path: Path) -> None:
    # (an ES module would fail to load; a destructuring would quietly give undefined)
    root = write(tmp_path, {"main.js": 'import { a, b } from "./a.js";\nimport { f } from "./f.js";\n',
                            "a.js": "export const a = 1;\n", "f.js": "export const f = 1;\n"})
    with pytest.raises(BundleError, match=r"^main\.js: imports b from a\.js, which does not export it$"):
        join_modules(root, "main.js")
    (root / "main.js").write_text('import { a } from "./a.js";\nimport { g } from "./f.js";\n')
    with pytest.raises(BundleError, match=r"^main\.js: imports g from f\.js, which does not export it$"):
        join_modules(root, "main.js", frozenset({"f.js"}))  # a module kept separate too


def test_a_cycle_or_a_missing_module_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path, {"main.js": 'import { a } from "./a.js";\n',
                            "a.js": 'import { b } from "./b.js";\nexport const a = 1;\n',
                            "b.js": 'import { a } from "./a.js";\nexport const b = 1;\n'})
    with pytest.raises(BundleError, match=r"in a cycle: a\.js -> b\.js -> a\.js$"):
        join_modules(root, "main.js")
    (root / "b.js").write_text('import { z } from "./gone.js";\nexport const b = 1;\n')
    with pytest.raises(BundleError, match=r"^b\.js: imports gone\.js, which is not a file$"):
        join_modules(root, "main.js")
