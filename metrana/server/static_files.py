"""The dashboard's files: ``static/`` (the page, its ES modules and stylesheet, and uPlot,
vendored), served at ``/`` and ``/static/...``.

They are served without a key: they hold nothing but code. Everything the page shows comes
from the read API (:mod:`.read_api`), which requires a key when the server has any (the page
signs in once per browser session: :mod:`.sessions`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs

from .js_bundle import join_modules

__all__ = ["BUNDLE", "STATIC_DIR", "StaticFiles"]

STATIC_DIR = Path(__file__).parent / "static"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    "": "text/plain; charset=utf-8",  # LICENSE
}
# Served with V8's explicit compile hint (Chromium 136+; other engines read a comment): every
# function of uPlot runs on a chart's first draw, so it is compiled while the file streams in,
# on a worker thread, instead of function by function on the page's main thread when first
# called (a 1,000-run project page: ~10 ms sooner, medians of 40-100 cold loads). Added when
# served, so the vendored file stays the released one.
EAGER = frozenset({"/static/vendor/uplot/uPlot.iife.min.js"})
COMPILE_HINT = b"//# allFunctionsCalledOnLoad\n"
# The page's modules, from its entry module down, as the one file index.html loads
# (js_bundle.py: one request instead of 21); js/first_read.js stays its own file (index.html
# loads it first, on its own). Each module is still served by itself too.
BUNDLE = "/static/dashboard.bundle.js"
_ENTRY = "dashboard.js"
_SEPARATE = frozenset({"js/first_read.js"})
# The page runs only its own files: no inline script, nothing from another origin.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'")


@attrs.frozen
class Asset:
    body: bytes
    content_type: str
    etag: bytes

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        return cls(body, content_type, b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"')


class StaticFiles:
    """The files under ``static/``, read once, by URL path (``/`` is ``index.html``).

    Only files that exist when the server starts are served: a path is looked up in a dict,
    never joined onto the directory, so nothing outside it can be named.
    """

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._assets: dict[str, Asset] = {}
        if not root.is_dir():
            return
        for file in sorted(root.rglob("*")):
            if not file.is_file() or file.suffix not in _CONTENT_TYPES:
                continue
            url = "/static/" + file.relative_to(root).as_posix()
            body = (COMPILE_HINT if url in EAGER else b"") + file.read_bytes()
            self._assets[url] = Asset.of(body, _CONTENT_TYPES[file.suffix])
        if (root / _ENTRY).is_file():
            joined = join_modules(root, _ENTRY, _SEPARATE).encode()
            self._assets[BUNDLE] = Asset.of(joined, _CONTENT_TYPES[".js"])
        if "/static/index.html" in self._assets:
            self._assets["/"] = self._assets["/static/index.html"]

    def __contains__(self, path: str) -> bool:
        return path in self._assets

    def response(self, method: str, path: str, headers: dict[bytes, bytes]
                 ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body for a GET or HEAD of a path ``in`` this object."""
        if method not in ("GET", "HEAD"):
            body = b"static files accept GET and HEAD only\n"
            return 405, [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"GET, HEAD"),
                         (b"content-length", str(len(body)).encode())], body
        asset = self._assets[path]
        common = [(b"etag", asset.etag), (b"cache-control", b"no-cache"),
                  (b"x-content-type-options", b"nosniff")]
        if asset.content_type.startswith("text/html"):
            common += [(b"content-security-policy", _CSP.encode()), (b"referrer-policy", b"no-referrer")]
        if headers.get(b"if-none-match", b"") == asset.etag:
            return 304, common, b""
        out = [(b"content-type", asset.content_type.encode()),
               (b"content-length", str(len(asset.body)).encode()), *common]
        return 200, out, (b"" if method == "HEAD" else asset.body)
