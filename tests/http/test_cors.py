"""CORS (gateway/http/cors.py) against a running gateway: requests with an Origin header and preflights, as a
browser sends them for a page served elsewhere. Reads are open (`[http] cors_read_origins`), writes only from the
origins of `[http] cors_write_origins`, and the token is required as before. Real Chromium: tests/page/test_cors.py.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load
from gateway.http.cors import CorsPolicy, classify, preflight, response_headers, same_origin
from tests.conftest import Gateway

T0 = 1_700_000_000_000_000_000
PAGE = "http://127.0.0.1:9"  # a page on another port: nothing listens there, the gateway only reads the header
OTHER = "http://192.0.2.7:8000"
TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CREATE = "create tag table example (name varchar(100) primary key, time datetime basetime, value double summarized)"
ROWS = json.dumps([["temp", T0, 21.5], ["temp", T0 + 1, 22.5]]).encode()


def call(
    gateway: Gateway, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    """One request on a connection of its own; the answer's status, headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.endpoints["http"], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def sql(text: str) -> str:
    return "/db/query?" + urllib.parse.urlencode({"q": text})


def write(gateway: Gateway, table: str, headers: dict[str, str]) -> tuple[int, Message, Any]:
    status, answer, body = call(
        gateway, "POST", f"/db/write/{table}", ROWS, {"Content-Type": "application/json", **headers}
    )
    return status, answer, json.loads(body)


def preflight_of(gateway: Gateway, path: str, method: str, origin: str = PAGE) -> tuple[int, Message, bytes]:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    return call(gateway, "OPTIONS", path, headers=headers)


def rows(gateway: Gateway, table: str) -> list[list[Any]] | None:
    """The rows of a table; None when it does not exist."""
    status, _headers, body = call(gateway, "GET", sql(f"select * from {table}"))
    if status == 400 and b"no table" in body.lower():
        return None
    assert status == 200, body
    found: list[list[Any]] = json.loads(body)["data"]["rows"]
    return found


def tables(gateway: Gateway) -> list[str]:
    _status, _headers, body = call(gateway, "GET", "/api/tables")
    return [table["name"] for table in json.loads(body)["tables"]]


def test_reads_are_open_to_every_origin_and_preflights_are_answered(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(f'[http]\ntoken = "{TOKEN}"\n')
    assert write(gateway, "example", BEARER)[0] == 200
    for origin in (PAGE, "null", OTHER):
        status, headers, body = call(gateway, "GET", sql("select * from example"), headers={"Origin": origin})
        assert status == 200 and json.loads(body)["data"]["rows"] == [["temp", T0, 21.5], ["temp", T0 + 1, 22.5]]
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "Origin" in headers["Vary"]
    # POST /db/query (a form, or JSON after a preflight), and every GET /api/...
    form = urllib.parse.urlencode({"q": "select count(*) from example"}).encode()
    status, headers, body = call(
        gateway, "POST", "/db/query", form, {"Origin": PAGE, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200 and json.loads(body)["data"]["rows"] == [[2]]
    assert headers["Access-Control-Allow-Origin"] == "*"
    for path in ("/api/tables", "/api/latest?table=example", "/api/status", "/api/openapi.json"):
        status, headers, _body = call(gateway, "GET", path, headers={"Origin": PAGE})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*", path
    # Errors too: the page reads why it was refused.
    status, headers, body = call(gateway, "GET", "/api/query?table=nothere", headers={"Origin": PAGE})
    assert status == 404 and json.loads(body)["success"] is False
    assert headers["Access-Control-Allow-Origin"] == "*"

    # The event stream: its headers come before the first event.
    connection = http.client.HTTPConnection("127.0.0.1", gateway.endpoints["http"], timeout=30)
    try:
        connection.request("GET", "/db/watch/example", headers={"Origin": "null"})
        response = connection.getresponse()
        assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Content-Type"].startswith("text/event-stream")
    finally:
        connection.close()

    # No CORS headers where no browser page needs them: same origin, no Origin, no API call.
    status, headers, _body = call(gateway, "GET", "/api/tables", headers={"Origin": gateway.http_url})
    assert status == 200 and headers["Access-Control-Allow-Origin"] is None
    status, headers, _body = call(gateway, "GET", "/api/tables")
    assert status == 200 and headers["Access-Control-Allow-Origin"] is None
    status, headers, _body = call(gateway, "GET", "/metrics", headers={"Origin": PAGE})
    assert status == 200 and headers["Access-Control-Allow-Origin"] is None

    for path, method, allowed in (
        ("/db/query", "POST", "GET, POST"),
        ("/db/query", "GET", "GET, POST"),
        ("/db/watch/example", "GET", "GET"),
        ("/api/tables", "GET", "GET"),
        ("/db/tql", "POST", "GET, POST"),  # by path: TQL's route, when it comes, needs no change to CORS
    ):
        status, headers, body = preflight_of(gateway, path, method)
        assert status == 204 and body == b"", (path, method, body)
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == allowed
        assert headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
        assert headers["Access-Control-Max-Age"] == "600"
        assert headers["Access-Control-Allow-Credentials"] is None
    # A preflight for what is no cross-origin call is refused, as JSON.
    status, headers, body = preflight_of(gateway, "/db/query", "DELETE")
    assert status == 403 and headers["Access-Control-Allow-Origin"] is None
    assert json.loads(body) == {"success": False, "reason": "/db/query takes no cross-origin DELETE requests"}
    # An OPTIONS that is no preflight (no Access-Control-Request-Method) is left to the routes.
    status, _headers, body = call(gateway, "OPTIONS", "/db/query", headers={"Origin": PAGE})
    assert status == 405 and json.loads(body)["success"] is False


def test_writes_from_other_origins_are_refused_without_configuration(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(f'[http]\ntoken = "{TOKEN}"\n')
    assert write(gateway, "kept", BEARER)[0] == 200
    for path, method in (
        ("/db/write/example", "POST"),
        ("/metrics/write?db=example", "POST"),
        ("/api/tables", "POST"),
        ("/api/tables/kept", "DELETE"),
        ("/api/tables/kept/retention", "PUT"),
    ):
        status, headers, body = preflight_of(gateway, path, method)
        assert status == 403, (path, method)
        assert headers["Access-Control-Allow-Origin"] is None and headers["Access-Control-Allow-Methods"] is None
        assert "add it to [http] cors_write_origins" in json.loads(body)["reason"]
    # The reads of a path that also takes writes stay open.
    status, headers, _body = preflight_of(gateway, "/api/tables", "GET")
    assert status == 204 and headers["Access-Control-Allow-Methods"] == "GET"

    # A browser sends a form POST or a text/plain fetch() without asking first: the gateway refuses it, with the
    # right token too, and nothing is stored.
    reason = f"writes from pages of origin {PAGE} are not allowed: add it to [http] cors_write_origins in the config"
    status, headers, body = write(gateway, "example", {"Origin": PAGE, **BEARER})
    assert (status, body) == (403, {"success": False, "reason": reason})
    assert headers["Access-Control-Allow-Origin"] is None
    status, _headers, raw = call(
        gateway, "POST", f"/metrics/write?db=example&token={TOKEN}", b"m v=1", {"Origin": "null"}
    )
    assert status == 403 and "origin null are not allowed" in json.loads(raw)["reason"]
    status, _headers, raw = call(
        gateway,
        "POST",
        "/api/tables",
        b'{"name": "example"}',
        {"Origin": OTHER, "Content-Type": "application/json", **BEARER},
    )
    assert status == 403 and json.loads(raw)["success"] is False
    status, _headers, raw = call(gateway, "DELETE", "/api/tables/kept", headers={"Origin": PAGE, **BEARER})
    assert status == 403
    # DDL through /db/query, a read endpoint: the query is refused, not the endpoint.
    status, headers, raw = call(gateway, "GET", sql(CREATE), None, {"Origin": PAGE})
    assert status == 403 and json.loads(raw)["reason"] == reason
    assert headers["Access-Control-Allow-Origin"] == "*"  # the page may read why
    status, _headers, raw = call(gateway, "GET", sql("drop table kept"), None, {"Origin": PAGE, **BEARER})
    assert status == 403
    assert tables(gateway) == ["KEPT"] and rows(gateway, "example") is None
    assert rows(gateway, "kept") == [["temp", T0, 21.5], ["temp", T0 + 1, 22.5]]

    # The gateway's own page (same origin) and clients that send no Origin (curl, Telegraf) write as before.
    status, _headers, body = write(gateway, "example", {"Origin": gateway.http_url, **BEARER})
    assert status == 200 and body["success"] is True
    status, _headers, raw = call(gateway, "GET", sql("drop table kept"), None, BEARER)
    assert status == 200
    assert tables(gateway) == ["EXAMPLE"]


def test_configured_write_origins_may_write_with_the_token(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(f'[http]\ntoken = "{TOKEN}"\ncors_write_origins = ["{PAGE}/"]\n')
    status, headers, _body = preflight_of(gateway, "/db/write/example", "POST")
    assert status == 204
    # Writes carry the token: the origin is named, never "*", and credentials are allowed.
    assert headers["Access-Control-Allow-Origin"] == PAGE
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Vary"] == "Origin"
    assert headers["Access-Control-Allow-Methods"] == "POST"
    status, headers, _body = preflight_of(gateway, "/api/tables", "POST")
    assert status == 204 and headers["Access-Control-Allow-Methods"] == "DELETE, GET, PATCH, POST, PUT"

    # The token is still needed: the page reads the 401 and its reason.
    status, headers, body = write(gateway, "example", {"Origin": PAGE})
    assert status == 401 and "needs the API token" in body["reason"]
    assert headers["Access-Control-Allow-Origin"] == PAGE
    status, headers, body = write(gateway, "example", {"Origin": PAGE, "Authorization": "Bearer wrong"})
    assert status == 401
    assert rows(gateway, "example") is None
    status, headers, body = write(gateway, "example", {"Origin": PAGE, **BEARER})
    assert status == 200 and body["reason"] == "success, 2 record(s) inserted"
    assert headers["Access-Control-Allow-Origin"] == PAGE and headers["Access-Control-Allow-Credentials"] == "true"
    assert rows(gateway, "example") == [["temp", T0, 21.5], ["temp", T0 + 1, 22.5]]
    status, headers, raw = call(
        gateway, "POST", "/metrics/write?db=example", b"m v=2 5", {"Origin": PAGE, "Content-Type": "text/plain"}
    )
    assert status == 401 and headers["Access-Control-Allow-Origin"] == PAGE
    status, headers, raw = call(gateway, "POST", "/metrics/write?db=example", b"m v=2 5", {"Origin": PAGE, **BEARER})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == PAGE
    status, _headers, raw = call(gateway, "GET", sql("drop table example"), None, {"Origin": PAGE, **BEARER})
    assert status == 200 and json.loads(raw)["success"] is True
    # Another origin is still refused.
    status, headers, body = write(gateway, "example", {"Origin": OTHER, **BEARER})
    assert status == 403 and headers["Access-Control-Allow-Origin"] is None
    assert tables(gateway) == []


def test_reads_with_the_token_name_the_origin(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(f'[http]\ntoken = "{TOKEN}"\ntoken_for_reads = true\n')
    status, headers, body = call(gateway, "GET", "/api/tables", headers={"Origin": PAGE})
    assert status == 401 and json.loads(body)["success"] is False
    assert headers["Access-Control-Allow-Origin"] == PAGE and headers["Vary"] == "Origin"
    status, headers, _body = call(gateway, "GET", "/api/tables", headers={"Origin": "null", **BEARER})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "null"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    # The preflight itself carries no token (browsers never send one with it), and is answered.
    status, headers, _body = preflight_of(gateway, "/db/query", "GET")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == PAGE
    assert headers["Access-Control-Allow-Credentials"] == "true"


def test_read_origins_can_be_limited(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(f'[http]\ncors_read_origins = ["{PAGE.upper()}"]\n')
    status, headers, _body = call(gateway, "GET", "/api/tables", headers={"Origin": PAGE})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == PAGE and headers["Vary"] == "Origin"
    assert headers["Access-Control-Allow-Credentials"] is None  # no token with these reads
    # Another page gets the answer (a read changes nothing) but its browser does not show it.
    status, headers, _body = call(gateway, "GET", "/api/tables", headers={"Origin": OTHER})
    assert status == 200 and headers["Access-Control-Allow-Origin"] is None and headers["Vary"] == "Origin"
    status, headers, body = preflight_of(gateway, "/db/query", "POST", OTHER)
    assert status == 403 and "add it to [http] cors_read_origins" in json.loads(body)["reason"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["localhost:8000"]', "give an origin like"),
        ('["http://host/page.html"]', "give an origin like"),
        ('["ftp://host"]', "give an origin like"),
        ("[1]", "expected a list of strings"),
        ('"*"', "expected list, got str"),
    ],
)
def test_bad_origins_are_refused_at_start(tmp_path: Path, value: str, expected: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[http]\ncors_write_origins = {value}\n")
    with pytest.raises(ConfigError, match=r"\[http\] cors_write_origins") as info:
        load(path)
    assert expected in str(info.value)
    path.write_text('[http]\ncors_read_origins = ["null", "http://[::1]:8000/", "https://gw.example"]\n')
    assert load(path).http.cors_read_origins == ["null", "http://[::1]:8000/", "https://gw.example"]


def test_the_decisions() -> None:
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("HTTP://Gateway.local", "gateway.local:80")
    assert same_origin("https://gateway.local", "gateway.local:443")
    assert same_origin("http://[::1]:8080", "[::1]:8080")
    assert not same_origin("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert same_origin("https://gateway.local", "gateway.local")  # behind a TLS proxy: Host names no scheme
    assert not same_origin("http://gateway.local", "gateway.local:8080")
    assert not same_origin("null", "null")
    assert not same_origin("http://x:port", "x:80")
    assert classify("GET", "/api/anything/new") == "read"
    assert classify("DELETE", "/api/anything") == "write"
    assert classify("GET", "/db/watch/") is None  # no table: no endpoint
    assert classify("GET", "/db/write/x") is None
    assert classify("POST", "/metrics") is None
    assert classify("GET", "/") is None
    policy = CorsPolicy(("*",), ("http://a:1",))
    assert response_headers("GET", "/", "http://b:2", "gw:80", policy) == {}
    assert response_headers("POST", "/db/write/t", "http://a:1", "gw:80", policy) == {
        "Access-Control-Allow-Origin": "http://a:1",
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    assert response_headers("POST", "/db/write/t", "http://b:2", "gw:80", policy) == {"Vary": "Origin"}
    answer = preflight("/db/write/t", "http://a:1", "post", "gw:80", policy)
    assert answer.status == 204 and answer.headers["Access-Control-Allow-Methods"] == "POST"
    assert preflight("/db/write/t", "http://b:2", "POST", "gw:80", policy).status == 403
