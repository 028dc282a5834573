"""The built-in web page: `GET /` and its assets (HTML, CSS, JavaScript modules, the vendored uPlot), all shipped in
the package (gateway/http/page/), so that the page works on a LAN with no internet. docs/page.md describes it.

The files are read once, when the app is made, and answered from memory: about 140 KB, 55 KB of it gzipped.
Assets live under `/assets/<version>/`, `<version>` being a hash of every file, so that a browser may keep them for
a year (`immutable`) and still gets the new ones after an upgrade: the page itself (`/`, revalidated every time by
its ETag) names the new version. Requests are looked up in that table of files, never on the file system: a path
with `..` is simply not in it.

The page is no API route: it needs no token, even with `[http] token_for_reads` (it holds no data; it asks for the
token and sends it with each API request), and the OpenAPI document leaves it out.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import bottle

from gateway.http.base import Body, json_response

__all__ = ["ASSETS", "PAGE_DIR", "Asset", "load", "register"]

PAGE_DIR = Path(__file__).with_name("page")
ASSETS = "/assets"
# index.html names its assets through this placeholder, replaced by /assets/<version>.
_ASSETS_PLACEHOLDER = b"{{assets}}"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}
_COMPRESSIBLE = {".html", ".js", ".css", ".svg", ".md", ""}
_YEAR = 365 * 24 * 3600
# Everything the page loads comes from the gateway itself: the browser refuses anything else, which keeps the page
# working without internet and keeps a series name or a payload shown on it from loading anything.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None when gzip would not make it smaller
    content_type: str
    etag: str


def make_asset(body: bytes, content_type: str, *, compress: bool, level: int = 9) -> Asset:
    """A file answered from memory (send_asset): gzipped when that makes it smaller, with an ETag of its bytes."""
    gzipped = gzip.compress(body, level, mtime=0) if compress else None
    if gzipped is not None and len(gzipped) >= len(body):
        gzipped = None
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, gzipped, content_type, etag)


def _asset(body: bytes, suffix: str) -> Asset:
    return make_asset(body, _TYPES.get(suffix, "application/octet-stream"), compress=suffix in _COMPRESSIBLE)


def load(folder: Path = PAGE_DIR) -> tuple[Asset, dict[str, Asset], str]:
    """The page, its assets by path relative to `folder` (with "/"), and their version."""
    files = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    digest = hashlib.sha256()
    for name, body in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    version = digest.hexdigest()[:12]
    index = files.pop("index.html").replace(_ASSETS_PLACEHOLDER, f"{ASSETS}/{version}".encode())
    assets = {name: _asset(body, Path(name).suffix) for name, body in files.items()}
    return _asset(index, ".html"), assets, version


def send_asset(asset: Asset, cache_control: str) -> Body:
    request, response = bottle.request, bottle.response
    response.set_header("Cache-Control", cache_control)
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("Vary", "Accept-Encoding")
    response.content_type = asset.content_type
    gzipped = asset.gzipped if "gzip" in request.get_header("Accept-Encoding", "").lower() else None
    # Each encoding is its own representation, with its own ETag.
    etag = asset.etag if gzipped is None else asset.etag[:-1] + '-gz"'
    response.set_header("ETag", etag)
    if _matches(etag, request.get_header("If-None-Match", "")):
        response.status = 304
        return b""
    if gzipped is not None:
        response.set_header("Content-Encoding", "gzip")
        return gzipped
    return asset.body


def _matches(etag: str, if_none_match: str) -> bool:
    """If-None-Match compares weakly (RFC 9110, 13.1.2): a W/ prefix does not matter."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return etag in tags or "*" in tags


def register(app: bottle.Bottle, folder: Path = PAGE_DIR) -> None:
    index, assets, version = load(folder)
    icon = assets["favicon.svg"]

    def page() -> Body:
        bottle.response.set_header("Content-Security-Policy", _CSP)
        bottle.response.set_header("Referrer-Policy", "no-referrer")
        return send_asset(index, "no-cache")

    def asset(tag: str, path: str) -> Body:
        found = assets.get(path)
        if found is None:
            return json_response(404, {"success": False, "reason": f"no such file: {bottle.request.path}"})
        # A page from before an upgrade may still ask for its old version: it gets today's file, not kept for long.
        return send_asset(found, f"public, max-age={_YEAR}, immutable" if tag == version else "no-cache")

    def favicon() -> Body:
        return send_asset(icon, "public, max-age=86400")  # for browsers that ask before reading the page's <link>

    app.route("/", "GET", page)
    app.route(f"{ASSETS}/<tag>/<path:path>", "GET", asset)
    app.route("/favicon.ico", "GET", favicon)
