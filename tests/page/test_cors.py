"""CORS in a real browser: machbase-neo's walk-through is a page served from elsewhere (here a tiny http.server on
another port, and a file) that calls the gateway with fetch(). Chromium decides what the page may see: reads work,
writes fail unless `[http] cors_write_origins` names the page's origin, and then they still need the token."""

from __future__ import annotations

import functools
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import Gateway

TOKEN = "s3cret"
T0 = 1_700_000_000_000_000_000
PAGE = "<!doctype html><meta charset=utf-8><title>walk-through</title><p>A page that calls the gateway.</p>\n"
# fetch() in the page: the answer's status and text, or the error a refused request throws.
FETCH = """async ([url, init]) => {
    try {
        const response = await fetch(url, init);
        return {status: response.status, body: await response.text()};
    } catch (error) {
        return {error: String(error)};
    }
}"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[str]:
    """The origin of a web server on another port of 127.0.0.1, serving walk-through.html."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "walk-through.html").write_text(PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[str], Page]]:
    contexts = []

    def open_at(url: str) -> Page:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        return page

    yield open_at
    for context in contexts:
        context.close()


def fetch(page: Page, url: str, **init: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(FETCH, [url, init])
    return result


def seed(gateway: Gateway) -> None:
    """Readings written the ordinary way: no browser, no Origin."""
    body = json.dumps([["temp", T0, 21.5], ["temp", T0 + 1, 22.5]]).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(f"{gateway.http_url}/db/write/example", body, headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def table_names(gateway: Gateway) -> list[str]:
    with urllib.request.urlopen(f"{gateway.http_url}/api/tables", timeout=10) as response:
        return [table["name"] for table in json.load(response)["tables"]]


def query_url(gateway: Gateway, sql: str) -> str:
    return f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql})


def test_a_page_elsewhere_reads_but_cannot_write(
    gateway_factory: Callable[..., Gateway], elsewhere: str, open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    gateway = gateway_factory(f'[http]\ntoken = "{TOKEN}"\n')
    seed(gateway)
    page = open_page(f"{elsewhere}/walk-through.html")
    assert page.evaluate("location.origin") == elsewhere != gateway.http_url

    answer = fetch(page, query_url(gateway, "select * from example"))
    assert answer["status"] == 200
    assert json.loads(answer["body"])["data"]["rows"] == [["temp", T0, 21.5], ["temp", T0 + 1, 22.5]]
    # With the token and a JSON body the browser asks first (a preflight), then sends it.
    answer = fetch(
        page,
        f"{gateway.http_url}/db/query",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        body=json.dumps({"q": "select count(*) from example"}),
    )
    assert answer["status"] == 200 and json.loads(answer["body"])["data"]["rows"] == [[2]]
    answer = fetch(page, f"{gateway.http_url}/api/latest?table=example")
    assert answer["status"] == 200 and json.loads(answer["body"])["rows"] == [["temp", T0 + 1, 22.5]]

    # Writes: refused at the preflight, and a request that needs none is refused by the gateway itself, so that
    # nothing is stored although the browser sent it.
    rows = json.dumps([["temp", T0 + 2, 23.5]])
    answer = fetch(
        page,
        f"{gateway.http_url}/db/write/example",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        body=rows,
    )
    assert answer == {"error": "TypeError: Failed to fetch"}
    answer = fetch(page, f"{gateway.http_url}/metrics/write?db=sneaky&token={TOKEN}", method="POST", body="m v=1")
    assert answer == {"error": "TypeError: Failed to fetch"}
    answer = fetch(page, query_url(gateway, "drop table example") + f"&token={TOKEN}")
    assert answer["status"] == 403  # a read endpoint: the page reads why
    assert "add it to [http] cors_write_origins" in json.loads(answer["body"])["reason"]
    assert table_names(gateway) == ["EXAMPLE"]
    answer = fetch(page, query_url(gateway, "select count(*) from example"))
    assert json.loads(answer["body"])["data"]["rows"] == [[2]]

    # The walk-through opened from a file: origin "null", reads work the same.
    walk_through = tmp_path / "walk-through.html"
    walk_through.write_text(PAGE)
    local = open_page(walk_through.as_uri())
    assert local.evaluate("location.protocol") == "file:"  # its requests say Origin: null
    answer = fetch(local, query_url(gateway, "select count(*) from example"))
    assert answer["status"] == 200 and json.loads(answer["body"])["data"]["rows"] == [[2]]


def test_a_configured_origin_writes_with_the_token(
    gateway_factory: Callable[..., Gateway], elsewhere: str, open_page: Callable[[str], Page]
) -> None:
    gateway = gateway_factory(f'[http]\ntoken = "{TOKEN}"\ncors_write_origins = ["{elsewhere}"]\n')
    page = open_page(f"{elsewhere}/walk-through.html")
    rows = json.dumps([["temp", T0, 21.5], ["temp", T0 + 1, 22.5]])
    url = f"{gateway.http_url}/db/write/example"
    # Without the token the page gets the refusal, and can read it.
    answer = fetch(page, url, method="POST", headers={"Content-Type": "application/json"}, body=rows)
    assert answer["status"] == 401 and "needs the API token" in json.loads(answer["body"])["reason"]
    assert table_names(gateway) == []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    answer = fetch(page, url, method="POST", headers=headers, body=rows)
    assert answer["status"] == 200 and json.loads(answer["body"])["reason"] == "success, 2 record(s) inserted"
    answer = fetch(
        page,
        f"{gateway.http_url}/metrics/write?db=example",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
        body=f"room,floor=1 temp=19.5 {T0}\n",
    )
    assert answer == {"status": 204, "body": ""}
    answer = fetch(page, query_url(gateway, "select * from example order by name, time"))
    assert json.loads(answer["body"])["data"]["rows"] == [
        ["room.temp,floor=1", T0, 19.5],
        ["temp", T0, 21.5],
        ["temp", T0 + 1, 22.5],
    ]
