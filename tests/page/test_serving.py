"""How the gateway serves its page (gateway/http/page.py), through the WSGI app without a browser: content types,
caching, gzip, no way out of the page's folder, the API's JSON 404 beside it, no token needed for the page itself,
and the page's weight."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import bottle
import orjson
import pytest

from gateway.http import page
from gateway.http.api import make_app
from gateway.http.base import ApiContext
from gateway.store.database import TimeSeriesStore

Answer = tuple[int, dict[str, str], bytes]
Call = Callable[..., Answer]
VENDOR = page.PAGE_DIR / "vendor" / "uplot"


def wsgi(app: bottle.Bottle, path: str, headers: dict[str, str] | None = None) -> Answer:
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "gateway.local",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }
    environ |= {"HTTP_" + name.upper().replace("-", "_"): value for name, value in (headers or {}).items()}
    started: list[object] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: started.extend((status, headers))))
    status, answer_headers = started
    assert isinstance(status, str) and isinstance(answer_headers, list)
    return int(status.split()[0]), {k.lower(): v for k, v in answer_headers}, body


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Call]]:
    store = TimeSeriesStore(tmp_path / "store")
    loop = asyncio.new_event_loop()

    def app(token: str = "", token_for_reads: bool = False) -> Call:
        made = make_app(ApiContext(store, loop, token=token, token_for_reads=token_for_reads))
        return lambda path, headers=None: wsgi(made, path, headers)

    try:
        yield app
    finally:
        loop.run_until_complete(store.close())
        loop.close()


@pytest.fixture
def get(make: Callable[..., Call]) -> Call:
    return make()


def assets_of(html: bytes) -> list[str]:
    return re.findall(r'(?:href|src)="(/assets/[^"#]+)', html.decode())


def test_the_page_names_its_assets_under_a_version_that_may_be_cached_for_ever(get: Call) -> None:
    status, headers, body = get("/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache"  # revalidated (ETag) every time: it names the assets' version
    assert "default-src 'self'" in headers["content-security-policy"]
    urls = set(assets_of(body))  # the favicon twice: the tab's icon, and the logo in the header
    assert len(urls) == 5 and len({url.split("/")[2] for url in urls}) == 1
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    for url in urls:
        status, headers, asset = get(url)
        assert status == 200, url
        assert headers["content-type"] == types[Path(url).suffix], url
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
        assert headers["x-content-type-options"] == "nosniff"
        assert asset == (page.PAGE_DIR / url.split("/", 3)[3]).read_bytes()
    # A page from before an upgrade asks for its old version: today's file, but not to be kept.
    status, headers, _ = get("/assets/0123456789ab/js/main.js")
    assert status == 200 and headers["cache-control"] == "no-cache"


def test_answers_are_gzipped_when_the_browser_takes_it_and_revalidated_by_etag(get: Call) -> None:
    plain = get("/assets/v/js/main.js")
    status, headers, body = get("/assets/v/js/main.js", {"Accept-Encoding": "gzip, deflate"})
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == plain[2] and len(body) < len(plain[2])
    assert headers["etag"] != plain[1]["etag"]  # each encoding is its own representation
    status, _, body = get("/assets/v/js/main.js", {"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]})
    assert (status, body) == (304, b"")
    status, _, _ = get("/", {"If-None-Match": f'"other", W/{get("/")[1]["etag"]}'})  # compared weakly
    assert status == 304


def test_only_the_pages_files_are_served(get: Call) -> None:
    for path in (
        "/assets/v/../page.py",
        "/assets/v/../../base.py",
        "/assets/v/%2e%2e/page.py",
        "/assets/v/js/../../page.py",
        "/assets/v/index.html",  # the page is "/", with its assets' version filled in
        "/assets/v/js/nothere.js",
    ):
        status, headers, body = get(path)
        assert status == 404, path
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body)["success"] is False
    status, headers, body = get("/api/nothere")
    assert status == 404 and orjson.loads(body) == {"success": False, "reason": "no such endpoint: /api/nothere"}
    assert get("/favicon.ico")[1]["content-type"] == "image/svg+xml"  # for browsers that ask before reading <link>


def test_the_page_needs_no_token_when_the_api_does(make: Callable[..., Call]) -> None:
    get = make(token="s3cret", token_for_reads=True)
    status, _, body = get("/")
    assert status == 200
    for url in assets_of(body):
        assert get(url)[0] == 200
    assert get("/api/tables")[0] == 401
    assert get("/api/tables", {"Authorization": "Bearer s3cret"})[0] == 200


def test_the_whole_page_weighs_less_than_250_kb_and_every_module_is_shipped() -> None:
    files = [path for path in page.PAGE_DIR.rglob("*") if path.is_file()]
    served = [path for path in files if path.suffix in (".html", ".css", ".js", ".svg")]
    total = sum(path.stat().st_size for path in served)
    assert total < 250_000, f"the page's files come to {total} bytes"
    # Every module that a module imports is there (no build step: the files are what the browser loads).
    for module in page.PAGE_DIR.rglob("*.js"):
        for name in re.findall(r'^import .* from "(\.[^"]+)";$', module.read_text(), re.MULTILINE):
            assert (module.parent / name).resolve().is_file(), (module, name)


def test_the_vendored_uplot_is_the_version_and_the_bytes_its_readme_names() -> None:
    readme = (VENDOR / "README.md").read_text()
    version = re.search(r"uPlot\]\([^)]*\) (\d+\.\d+\.\d+) from npm", readme)
    assert version is not None
    first_line = (VENDOR / "uPlot.iife.min.js").read_text().splitlines()[0]
    assert f"(v{version.group(1)})" in first_line
    for name, digest in re.findall(r"\| `([^`]+)` \| `([0-9a-f]{64})` \|", readme):
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert (VENDOR / "LICENSE").read_text().startswith("The MIT License")
