"""The documentation site builds with ``mkdocs build --strict`` (a broken link, an anchor that
is gone, a page missing from the nav or an API reference that does not resolve fails it), and the
pages it builds load nothing from another site: it works offline, on a laptop or behind a
firewall, and a reader's browser asks no third party for fonts or scripts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent

# What a page loads by itself: scripts, stylesheets, icons, images, and url(...) in CSS. Plain
# links (<a href>) are the reader's to follow and are not loaded.
LOADED = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=\"(?P<url>[^\"]+)\"")
CSS_URL = re.compile(r"(?:url\(|@import\s+)[\"']?(?P<url>[^\"')\s]+)")


def external(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def test_the_site_builds_strictly_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr
    pages = sorted(site.rglob("*.html"))
    assert {"index.html", "getting-started.html", "troubleshooting.html"} <= {p.name for p in pages}
    # The API reference was generated from the docstrings, not left empty.
    reference = (site / "reference" / "metrana.html").read_text()
    assert "metrana.init" in reference and "close_strategy" in reference
    loaded = {m["url"] for page in pages for m in LOADED.finditer(page.read_text())}
    loaded |= {m["url"] for css in site.rglob("*.css") for m in CSS_URL.finditer(css.read_text())}
    assert loaded, "the pattern found no resources at all"
    assert sorted(url for url in loaded if external(url)) == []


def test_the_configuration_page_names_every_argument_and_variable() -> None:
    """The configuration table cannot fall behind the code: every parameter of ``init()`` and
    every ``METRANA_*`` variable metrana reads is on the page."""
    import inspect

    import metrana
    from metrana import _config

    page = (ROOT / "docs" / "configuration.md").read_text()
    parameters = [name for name, p in inspect.signature(metrana.init).parameters.items()
                  if p.kind is not inspect.Parameter.VAR_KEYWORD]
    variables = [*_config._ENV.values(), *_config._OTHER_ENV]
    assert len(parameters) > 15 and len(variables) > 15
    missing = [name for name in [*parameters, "compress", *variables] if f"`{name}`" not in page]
    assert missing == []
