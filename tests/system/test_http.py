"""The HTTP API seen from outside: neo's /db/query and /db/write, JSON errors, the token."""

from __future__ import annotations

import gzip
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.conftest import Client, Gateway, mosquitto_env

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def query(gateway: Gateway, sql: str, **params: str) -> tuple[int, Any]:
    status, _type, body = request(f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql, **params}))
    return status, json.loads(body)


def test_neo_walkthrough_create_publish_query(gateway: Gateway) -> None:
    """CREATE TAG TABLE over /db/query, mosquitto_pub to db/append, then SELECT answers in neo's JSON shape."""
    status, body = query(
        gateway,
        "create tag table example (name varchar(100) primary key, time datetime basetime, value double summarized)",
    )
    assert status == 200 and body["success"] is True
    rows = json.dumps([["temperature", T0 + i * S, 20.0 + i] for i in range(5)])
    subprocess.run(
        ["mosquitto_pub", "-p", str(gateway.mqtt_port), "-q", "1", "-t", "db/append/EXAMPLE", "-m", rows],
        check=True,
        timeout=10,
        env=mosquitto_env(),
    )
    status, body = query(gateway, "select * from example where name = 'temperature' order by time desc limit 3")
    assert status == 200 and body["success"] is True
    assert body["data"]["columns"] == ["NAME", "TIME", "VALUE"]
    assert body["data"]["types"] == ["string", "datetime", "double"]
    assert body["data"]["rows"] == [["temperature", T0 + i * S, 20.0 + i] for i in (4, 3, 2)]
    status, body = query(gateway, "select count(*), avg(value), max(value) from example")
    assert body["data"]["rows"] == [[5, 22.0, 24.0]]
    status, content_type, raw = request(
        f"{gateway.http_url}/db/query?"
        + urllib.parse.urlencode({"q": "select * from example limit 2", "format": "csv"})
    )
    assert status == 200 and content_type.startswith("text/csv")
    assert raw.decode().splitlines() == ["NAME,TIME,VALUE", f"temperature,{T0},20.0", f"temperature,{T0 + S},21.0"]


def test_errors_are_json_with_a_reason(gateway: Gateway) -> None:
    status, body = query(gateway, "select * from example join other")
    assert status == 400 and body["success"] is False and "JOIN is not supported" in body["reason"]
    status, body = query(gateway, "select * from nothere")
    assert status == 400 and "no table NOTHERE" in body["reason"]
    status, content_type, raw = request(f"{gateway.http_url}/no/such/page")
    assert status == 404 and content_type.startswith("application/json") and json.loads(raw)["success"] is False
    status, _type, raw = request(f"{gateway.http_url}/db/query")
    assert status == 400 and "no query" in json.loads(raw)["reason"]


def test_writes_and_drops_need_the_configured_token(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    closed = gateway_factory(name="closed")
    status, _type, raw = request(f"{closed.http_url}/db/write/example", b"a,1,2\n", {"Content-Type": "text/csv"})
    assert status == 403 and "set [http] token" in json.loads(raw)["reason"]

    gateway = gateway_factory('[http]\ntoken = "s3cret"\n', name="open")
    url = f"{gateway.http_url}/db/write/example"
    csv_body = f"name,time,value\nhum,{T0},40\nhum,{T0 + S},41\n".encode()
    status, _type, raw = request(url, csv_body, {"Content-Type": "text/csv", "Authorization": "Bearer wrong"})
    assert status == 401
    auth = {"Authorization": "Bearer s3cret"}
    status, _type, raw = request(
        url, gzip.compress(csv_body), {"Content-Type": "text/csv", "Content-Encoding": "gzip", **auth}
    )
    assert status == 200 and json.loads(raw)["reason"] == "success, 2 record(s) inserted"
    bad = f"name,time,value\nhum,{T0 + 2 * S},42\nhum,oops,43\n".encode()
    status, _type, raw = request(url, bad, {"Content-Type": "text/csv", **auth})
    assert status == 400 and "nothing written" in json.loads(raw)["reason"]
    _status, body = query(gateway, "select time, value from example where name = 'hum'")
    assert body["data"]["rows"] == [[T0, 40.0], [T0 + S, 41.0]]  # the bad body stored nothing

    status, body = query(gateway, "drop table example")
    assert status == 401
    status, _type, raw = request(
        f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": "drop table example"}), headers=auth
    )
    assert status == 200, raw
    status, body = query(gateway, "select * from example")
    assert status == 400 and "no table EXAMPLE" in body["reason"]


def test_a_body_that_is_not_json_gets_a_json_error(gateway: Gateway) -> None:
    status, content_type, raw = request(
        f"{gateway.http_url}/db/query", b"{not json", {"Content-Type": "application/json"}
    )
    assert status == 400 and content_type.startswith("application/json")
    assert json.loads(raw)["success"] is False


def test_long_answers_are_streamed_whole_in_json_and_csv(gateway_factory: Callable[..., Gateway]) -> None:
    """A /db/query answer is sent in chunks of rows as it is read; the chunks join into one valid document."""
    gateway = gateway_factory('[http]\ntoken = "s3cret"\n')
    rows = [["long", T0 + i * S, i / 4] for i in range(5003)]
    status, _type, raw = request(
        f"{gateway.http_url}/db/write/long",
        json.dumps(rows).encode(),
        {"Content-Type": "application/json", "Authorization": "Bearer s3cret"},
    )
    assert status == 200, raw
    status, body = query(gateway, "select * from long")
    assert status == 200 and body["success"] is True and body["reason"] == "success"
    assert body["data"]["columns"] == ["NAME", "TIME", "VALUE"] and body["data"]["rows"] == rows
    status, content_type, raw = request(
        f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": "select time, value from long", "format": "csv"})
    )
    lines = raw.decode().splitlines()
    assert status == 200 and content_type.startswith("text/csv")
    assert lines[0] == "TIME,VALUE" and len(lines) == 5004
    assert lines[1:] == [f"{time},{value}" for _name, time, value in rows]
    status, body = query(gateway, "select * from long where time < 0")
    assert body["data"]["rows"] == []
