"""`POST /metrics/write?db=<TABLE>`: InfluxDB line protocol over HTTP, as machbase-neo and InfluxDB 1.x take it
(Telegraf's outputs.influxdb and outputs.http), against a running gateway: what Telegraf sends round-trips through
/db/query, named as the MQTT topic db/metrics/<TABLE> names it; gzip, precision, all or nothing, the token."""

from __future__ import annotations

import gzip
import http.client
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from tests.conftest import Client, Gateway

TOKEN = "s3cret"
CONFIG = f'[http]\ntoken = "{TOKEN}"\n'
T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
# What Telegraf's influx serializer writes for a few inputs: tags sorted, integers with i, a string field, a
# boolean, nanosecond timestamps; "\n" after every line.
TELEGRAF = (
    f"cpu,cpu=cpu-total,host=pi usage_idle=97.5,usage_user=1.25 {T0}\n"
    f"mem,host=pi used=123456789i,available_percent=42.5,total=512000000u {T0}\n"
    f'system,host=pi load1=0.15,n_cpus=4i,uptime_format=" 1:00" {T0 + S}\n'
    f"net,host=pi,interface=eth0 up=true,err_in=0i,drop_out=-3i {T0 + S}\n"
    f"disk,device=mmcblk0p2,fstype=ext4,host=pi,path=/ used_percent=12.5,read_only=F {T0 + 2 * S}\n"
)
EXPECTED = [
    ["cpu.usage_idle,cpu=cpu-total,host=pi", T0, 97.5],
    ["cpu.usage_user,cpu=cpu-total,host=pi", T0, 1.25],
    ["disk.read_only,device=mmcblk0p2,fstype=ext4,host=pi,path=/", T0 + 2 * S, 0.0],
    ["disk.used_percent,device=mmcblk0p2,fstype=ext4,host=pi,path=/", T0 + 2 * S, 12.5],
    ["mem.available_percent,host=pi", T0, 42.5],
    ["mem.total,host=pi", T0, 512000000.0],
    ["mem.used,host=pi", T0, 123456789.0],
    ["net.drop_out,host=pi,interface=eth0", T0 + S, -3.0],
    ["net.err_in,host=pi,interface=eth0", T0 + S, 0.0],
    ["net.up,host=pi,interface=eth0", T0 + S, 1.0],
    ["system.load1,host=pi", T0 + S, 0.15],
    ["system.n_cpus,host=pi", T0 + S, 4.0],
]


def call(
    gateway: Gateway, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.endpoints["http"], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response, response.read()
    finally:
        connection.close()


def send(gateway: Gateway, query: str, body: bytes, **headers: str) -> tuple[int, http.client.HTTPResponse, bytes]:
    """A write as Telegraf sends it: text/plain, its User-Agent, the token in a header (http_headers)."""
    sent = {
        "Content-Type": "text/plain; charset=utf-8",
        "User-Agent": "Telegraf/1.30.0 Go/1.22.1",
        "Authorization": f"Bearer {TOKEN}",
    }
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return call(gateway, "POST", f"/metrics/write?{query}", body, sent)


def rows(gateway: Gateway, table: str) -> list[list[Any]] | None:
    """Every row of a table through /db/query, by name then time; None when the table does not exist."""
    query = urllib.parse.urlencode({"q": f"select * from {table} order by name, time"})
    status, _response, body = call(gateway, "GET", f"/db/query?{query}")
    if status == 400 and b"no table" in body.lower():
        return None
    assert status == 200, body
    found: list[list[Any]] = json.loads(body)["data"]["rows"]
    return found


def test_telegraf_metrics_round_trip_through_db_query(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(CONFIG)
    # Telegraf's outputs.influxdb with urls = ["http://<gateway>/metrics"] posts to /metrics/write?db=<database>.
    status, response, body = send(gateway, "db=telegraf", TELEGRAF.encode())
    assert (status, body) == (204, b"")
    assert response.getheader("Content-Length") in (None, "0")
    assert rows(gateway, "telegraf") == EXPECTED
    # The table is named as db=... says, upper-cased, as every table; and /api/tables lists it.
    status, _response, body = call(gateway, "GET", "/api/tables")
    assert [table["name"] for table in json.loads(body)["tables"]] == ["TELEGRAF"]
    # Comments, blank lines, CRLF line ends, a line without a timestamp (the arrival time), a line of strings only.
    before = time.time_ns()
    body_text = '# from a script\r\n\r\nroom,floor=1 temp=21.5\r\nlog msg="only a string" 5\r\n'
    status, _response, _body = send(gateway, "db=Telegraf", body_text.encode())
    after = time.time_ns()
    assert status == 204
    found = rows(gateway, "telegraf")
    assert found is not None and len(found) == len(EXPECTED) + 1
    name, stamp, value = next(row for row in found if row[0].startswith("room"))
    assert (name, value) == ("room.temp,floor=1", 21.5) and before <= stamp <= after


def test_the_same_names_as_the_mqtt_topic(gateway_factory: Callable[..., Gateway], clients: list[Client]) -> None:
    gateway = gateway_factory(CONFIG)
    sensor = Client(gateway.mqtt_port, "telegraf-mqtt")
    clients.append(sensor)
    sensor.publish("db/metrics/BYMQTT", TELEGRAF, qos=1)
    assert send(gateway, "db=byhttp", TELEGRAF.encode())[0] == 204
    assert rows(gateway, "byhttp") == rows(gateway, "bymqtt") == EXPECTED


def test_gzip_and_precision(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(CONFIG)
    # Telegraf with content_encoding = "gzip" (as neo's documentation configures outputs.http).
    status, _response, _body = send(gateway, "db=zipped", gzip.compress(TELEGRAF.encode()), Content_Encoding="gzip")
    assert status == 204
    assert rows(gateway, "zipped") == EXPECTED
    seconds = T0 // S
    for precision, stamp in (
        ("s", seconds),
        ("ms", seconds * 1000 + 1),
        ("us", seconds * 1_000_000 + 2),
        ("u", seconds * 1_000_000 + 3),
        ("ns", T0 + 4),
        ("n", T0 + 5),
    ):
        body = f"p,precision={precision} v=1 {stamp}\n".encode()
        assert send(gateway, f"db=precise&precision={precision}", body)[0] == 204, precision
    assert rows(gateway, "precise") == [
        ["p.v,precision=ms", T0 + 1_000_000, 1.0],
        ["p.v,precision=n", T0 + 5, 1.0],
        ["p.v,precision=ns", T0 + 4, 1.0],
        ["p.v,precision=s", T0, 1.0],
        ["p.v,precision=u", T0 + 3000, 1.0],
        ["p.v,precision=us", T0 + 2000, 1.0],
    ]
    # Without precision a timestamp is nanoseconds: seconds would be 1970, which the store holds, so say it twice.
    assert send(gateway, "db=plain", f"p v=2 {seconds}\n".encode())[0] == 204
    assert rows(gateway, "plain") == [["p.v", seconds, 2.0]]
    status, _response, body = send(gateway, "db=precise&precision=h", b"p v=1 1\n")
    assert status == 400
    assert json.loads(body)["reason"] == "parameter 'precision': 'h' is not one of ns, us, ms, s"


def test_a_bad_line_is_400_naming_it_and_nothing_is_stored(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(CONFIG)
    body = f"good v=1 {T0}\n\ngood v=2 {T0 + 1}\nbad,host=pi v=abc {T0 + 2}\ngood v=3 {T0 + 3}\n"
    status, response, raw = send(gateway, "db=refused", body.encode())
    assert status == 400 and response.getheader("Content-Type") == "application/json"
    answer = json.loads(raw)
    reason = "line 4: field 'v': 'abc' is not a finite number, an integer (1i, 1u), a boolean or a \"string\""
    assert answer == {
        "success": False,
        "reason": f"nothing written: {reason}",
        "error": f"unable to parse: {reason}",
        "line": 4,
    }
    assert rows(gateway, "refused") is None
    # A line cut short, in a gzip body: the same.
    status, _response, raw = send(
        gateway, "db=refused", gzip.compress(f"good v=1 {T0}\ncpu,host\n".encode()), Content_Encoding="gzip"
    )
    assert status == 400 and json.loads(raw)["line"] == 2
    assert json.loads(raw)["reason"] == "nothing written: line 2: expected '=' after tag key 'host' at column 9"
    status, _response, raw = send(gateway, "db=refused", b"not gzip", Content_Encoding="gzip")
    assert status == 400 and "not valid gzip" in json.loads(raw)["reason"] and json.loads(raw)["line"] is None
    assert rows(gateway, "refused") is None
    # The refusal is on the Errors view, like an MQTT publish refused.
    status, _response, raw = call(gateway, "GET", "/api/errors")
    assert any(e["topic"] == "db/metrics/REFUSED" and "line 4" in e["reason"] for e in json.loads(raw)["errors"])
    for query, reason in (
        ("", "parameter 'db' is missing: give the table as /metrics/write?db=<TABLE>"),
        ("db=9lives", "parameter 'db': table name '9lives' in db/metrics/9lives is not valid"),
        ("db=a:gzip", "parameter 'db': table name 'a:gzip' is not valid"),
    ):
        status, _response, raw = send(gateway, query, b"m v=1\n")
        assert status == 400 and json.loads(raw)["reason"].startswith(reason), (query, raw)
    status, _response, _raw = call(gateway, "GET", "/api/tables")
    assert json.loads(_raw)["tables"] == []


def test_the_token_of_db_write_applies(gateway_factory: Callable[..., Gateway]) -> None:
    without = gateway_factory(name="without")
    status, _response, raw = send(without, "db=t", b"m v=1\n")
    assert status == 403 and "set [http] token" in json.loads(raw)["reason"]
    without.stop()
    gateway = gateway_factory(CONFIG)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, _response, raw = call(gateway, "POST", "/metrics/write?db=t", b"m v=1\n", headers)
        assert status == 401 and "needs the API token" in json.loads(raw)["reason"]
    assert rows(gateway, "t") is None
    status, _response, raw = call(gateway, "POST", f"/metrics/write?db=t&token={TOKEN}", f"m v=1 {T0}\n".encode())
    assert status == 204
    assert rows(gateway, "t") == [["m.v", T0, 1.0]]
