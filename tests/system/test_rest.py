"""The REST side of the HTTP API against a running gateway: tables, series, latest values, /api/query, /metrics,
/api/status, the OpenAPI document, the token. Readings arrive over MQTT from paho, as from a sensor."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from gateway.http.openapi import document
from tests.conftest import Client, Gateway, wait_until

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
TOKEN = {"Authorization": "Bearer s3cret"}


def call(
    gateway: Gateway,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    **params: str | list[str],
) -> tuple[int, str, bytes]:
    query = urllib.parse.urlencode(params, doseq=True)
    url = f"{gateway.http_url}{path}" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def call_json(gateway: Gateway, path: str, **kwargs: Any) -> tuple[int, Any]:
    status, content_type, raw = call(gateway, path, **kwargs)
    assert content_type.startswith("application/json"), (status, content_type, raw)
    return status, json.loads(raw)


def publish(gateway: Gateway, clients: list[Client], topic: str, rows: list[list[Any]]) -> None:
    """Publishes readings at QoS 1: once acknowledged, they are stored."""
    sensor = Client(gateway.mqtt_port, "rest-sensor", v5=True)
    clients.append(sensor)
    sensor.publish(topic, json.dumps(rows).encode(), 1)
    _mid, rc, _props = sensor.acks.get(timeout=10)
    assert not rc.is_failure
    sensor.close()


def create_table(gateway: Gateway, name: str) -> Any:
    status, body = call_json(
        gateway,
        "/api/tables",
        method="POST",
        body=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json", **TOKEN},
    )
    assert status == 201, body
    return body


def test_tables_are_listed_created_and_dropped_with_the_token(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory('[http]\ntoken = "s3cret"\n')
    json_type = {"Content-Type": "application/json"}
    status, body = call_json(gateway, "/api/tables", method="POST", body=b'{"name": "plant"}', headers=json_type)
    assert status == 401 and "needs the API token" in body["reason"]

    before = time.time_ns()
    body = create_table(gateway, "plant")
    assert body["success"] is True and body["table"]["name"] == "PLANT" and body["table"]["series"] == 0
    assert before <= body["table"]["created"] <= time.time_ns()
    status, body = call_json(gateway, "/api/tables")
    assert status == 200 and [t["name"] for t in body["tables"]] == ["PLANT"]

    for payload, says in [
        (b'{"name": "plant"}', "already exists"),
        (b'{"name": "2fast"}', "is not valid"),
        (b'{"name": "a/b"}', "is not valid"),
        (b'{"table": "x"}', '{"name": "<table>"}'),
        (b"[1, 2]", '{"name": "<table>"}'),
        (b"{not json", "bad request"),
    ]:
        status, body = call_json(gateway, "/api/tables", method="POST", body=payload, headers={**json_type, **TOKEN})
        assert (status, body["success"]) == (409 if says == "already exists" else 400, False), payload
        assert says in body["reason"], (payload, body)

    status, body = call_json(gateway, "/api/tables/plant", method="DELETE")
    assert status == 401
    status, body = call_json(gateway, "/api/tables/plant", method="DELETE", headers=TOKEN)
    assert status == 200 and body == {"success": True, "reason": "table PLANT dropped"}
    status, body = call_json(gateway, "/api/tables/plant", method="DELETE", headers=TOKEN)
    assert status == 404 and body["reason"] == "no table PLANT"
    status, body = call_json(gateway, "/api/tables")
    assert body["tables"] == []
    # With a token configured, a backup needs it, even from the board itself.
    status, body = call_json(gateway, "/api/backup")
    assert status == 401 and "a backup needs the API token" in body["reason"]


def test_without_a_configured_token_the_api_is_read_only(gateway: Gateway) -> None:
    status, body = call_json(
        gateway, "/api/tables", method="POST", body=b'{"name": "x"}', headers={"Content-Type": "application/json"}
    )
    assert status == 403 and "set [http] token" in body["reason"]
    status, body = call_json(gateway, "/api/tables/x", method="DELETE")
    assert status == 403
    status, body = call_json(gateway, "/api/tables")
    assert status == 200 and body == {"success": True, "tables": []}


def test_series_latest_and_query(gateway: Gateway, clients: list[Client]) -> None:
    rows = [["temp", T0 + i * 30 * S, 20.0 + i] for i in range(6)]  # every 30 s for 3 minutes
    rows += [["hum", T0 + i * 60 * S, 40.0 + i] for i in range(3)]
    rows += [["température", T0, -1.5]]
    publish(gateway, clients, "db/append/example", rows)

    status, body = call_json(gateway, "/api/tables")
    assert body["tables"][0]["name"] == "EXAMPLE" and body["tables"][0]["series"] == 3
    status, body = call_json(gateway, "/api/tables/example/series")
    assert status == 200 and body["table"] == "EXAMPLE"
    assert body["series"] == [
        {"name": "hum", "count": 3, "first_time": T0, "last_time": T0 + 120 * S, "last_value": 42.0},
        {"name": "temp", "count": 6, "first_time": T0, "last_time": T0 + 150 * S, "last_value": 25.0},
        {"name": "température", "count": 1, "first_time": T0, "last_time": T0, "last_value": -1.5},
    ]
    status, body = call_json(gateway, "/api/tables/example/series", q="TEMP")
    assert [s["name"] for s in body["series"]] == ["temp", "température"]

    status, body = call_json(gateway, "/api/latest", table="example", name=["temp", "hum", "nothere"])
    assert status == 200
    assert body == {
        "success": True,
        "table": "EXAMPLE",
        "columns": ["NAME", "TIME", "VALUE"],
        "types": ["string", "datetime", "double"],
        "rows": [["hum", T0 + 120 * S, 42.0], ["temp", T0 + 150 * S, 25.0]],
    }
    status, content_type, raw = call(gateway, "/api/latest", table="example", name="température", format="csv")
    assert status == 200 and content_type.startswith("text/csv")
    assert raw.decode().splitlines() == ["NAME,TIME,VALUE", f"température,{T0},-1.5"]

    # Raw readings: from included, to excluded; RFC 3339 and nanoseconds alike.
    status, body = call_json(
        gateway, "/api/query", table="example", name="temp", **{"from": "2023-11-14T22:13:50Z", "to": str(T0 + 120 * S)}
    )
    assert status == 200 and body["columns"] == ["NAME", "TIME", "VALUE"]
    assert body["rows"] == [["temp", T0 + 30 * S, 21.0], ["temp", T0 + 60 * S, 22.0], ["temp", T0 + 90 * S, 23.0]]
    status, body = call_json(gateway, "/api/query", table="example", name="temp", order="desc", limit="2")
    assert body["rows"] == [["temp", T0 + 150 * S, 25.0], ["temp", T0 + 120 * S, 24.0]]

    # A step: one row per series and step, TIME being the step's start; AVG unless told otherwise.
    status, body = call_json(gateway, "/api/query", table="example", name=["temp", "hum"], step="1m")
    assert body["columns"] == ["NAME", "TIME", "AVG"] and body["types"] == ["string", "datetime", "double"]
    minute = T0 - T0 % (60 * S)
    assert body["rows"] == [
        ["hum", minute, 40.0],
        ["hum", minute + 60 * S, 41.0],
        ["hum", minute + 120 * S, 42.0],
        ["temp", minute, 20.5],
        ["temp", minute + 60 * S, 22.5],
        ["temp", minute + 120 * S, 24.5],
    ]
    status, content_type, raw = call(
        gateway, "/api/query", table="example", name="temp", step="2m", aggregate=["min,max", "count"], format="csv"
    )
    assert status == 200 and content_type.startswith("text/csv")
    two = T0 - T0 % (120 * S)  # steps are aligned on 1970: T0 is 80 s into its 2-minute step
    assert raw.decode().splitlines() == [
        "NAME,TIME,MIN,MAX,COUNT",
        f"temp,{two},20.0,21.0,2",
        f"temp,{two + 120 * S},22.0,25.0,4",
    ]
    # Aggregates without a step: per series over the whole range.
    status, body = call_json(gateway, "/api/query", table="example", aggregate=["first", "last", "sum"])
    assert body["columns"] == ["NAME", "FIRST", "LAST", "SUM"]
    assert body["rows"] == [["hum", 40.0, 42.0, 123.0], ["temp", 20.0, 25.0, 135.0], ["température", -1.5, -1.5, -1.5]]

    # The neo SQL endpoint reads names in UTF-8 too.
    status, body = call_json(gateway, "/db/query", q="select value from example where name = 'température'")
    assert status == 200 and body["data"]["rows"] == [[-1.5]]


def test_relative_times(gateway: Gateway, clients: list[Client]) -> None:
    now = time.time_ns()
    publish(gateway, clients, "db/append/recent", [["t", now - 7200 * S, 1.0], ["t", now - 1800 * S, 2.0]])
    status, body = call_json(gateway, "/api/query", table="recent", **{"from": "-1h"})
    assert status == 200 and [row[2] for row in body["rows"]] == [2.0]
    status, body = call_json(gateway, "/api/query", table="recent", **{"from": "now-3h", "to": "now - 1h"})
    assert [row[2] for row in body["rows"]] == [1.0]
    # "now+1h" with its '+' left unencoded arrives as "now 1h": still understood.
    url = f"{gateway.http_url}/api/query?table=recent&from=now-3h&to=now+1h"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert [row[2] for row in json.loads(response.read())["rows"]] == [1.0, 2.0]


def test_bad_parameters_are_400_naming_the_parameter_and_unknown_tables_404(gateway: Gateway) -> None:
    create = "create tag table example (name varchar(100) primary key, time datetime basetime, value double summarized)"
    assert call_json(gateway, "/db/query", q=create)[0] == 200
    for params, says in [
        ({}, "parameter 'table' is missing"),
        ({"table": "example", "from": "yesterday"}, "parameter 'from'"),
        ({"table": "example", "to": "2024-13-01"}, "parameter 'to'"),
        ({"table": "example", "step": "0s"}, "parameter 'step'"),
        ({"table": "example", "step": "fast"}, "parameter 'step'"),
        ({"table": "example", "aggregate": "median"}, "parameter 'aggregate'"),
        ({"table": "example", "format": "xml"}, "parameter 'format'"),
        ({"table": "example", "order": "up"}, "parameter 'order'"),
        ({"table": "example", "limit": "0"}, "parameter 'limit'"),
        ({"table": "example", "limit": "50001"}, "parameter 'limit'"),
    ]:
        status, body = call_json(gateway, "/api/query", **params)
        assert status == 400 and body["success"] is False and says in body["reason"], (params, body)
    status, body = call_json(gateway, "/api/latest")
    assert status == 400 and "parameter 'table'" in body["reason"]
    for path, params in [
        ("/api/query", {"table": "nothere"}),
        ("/api/latest", {"table": "nothere"}),
        ("/api/tables/nothere/series", {}),
        ("/db/watch/nothere", {}),
    ]:
        status, body = call_json(gateway, path, **params)
        assert status == 404 and "no table NOTHERE" in body["reason"], path
    status, body = call_json(gateway, "/api/nothing")
    assert status == 404 and "no such endpoint" in body["reason"]
    status, body = call_json(gateway, "/api/tables", method="PUT")
    assert status == 405


def test_too_many_raw_rows_ask_for_a_step(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory('[http]\ntoken = "s3cret"\n')
    lines = "".join(f"v,{T0 + i * S},{i}\n" for i in range(50_001))
    status, body = call_json(
        gateway, "/db/write/big", method="POST", body=lines.encode(), headers={"Content-Type": "text/csv", **TOKEN}
    )
    assert status == 200, body
    status, body = call_json(gateway, "/api/query", table="big")
    assert status == 400 and "more than 50000 rows" in body["reason"] and "step" in body["reason"]
    status, body = call_json(gateway, "/api/query", table="big", step="1h", aggregate="count")
    hour = 3600 * S
    assert status == 200 and len(body["rows"]) == (T0 + 50_000 * S) // hour - T0 // hour + 1  # 15 hours touched
    assert sum(row[2] for row in body["rows"]) == 50_001
    status, body = call_json(gateway, "/api/query", table="big", limit="50000")
    assert status == 200 and len(body["rows"]) == 50_000
    status, body = call_json(gateway, "/api/query", table="big", **{"from": str(T0 + 49_999 * S)})
    assert status == 200 and body["rows"] == [["v", T0 + 49_999 * S, 49_999.0], ["v", T0 + 50_000 * S, 50_000.0]]


def parse_metrics(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _hash, _type, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            name = name.split("{", 1)[0]
            assert name in types, f"{name} has no TYPE line"
            samples[name] = float(value)
    return samples


def test_metrics_and_status_count_what_happens(gateway: Gateway, clients: list[Client]) -> None:
    status, content_type, raw = call(gateway, "/metrics")
    assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
    before = parse_metrics(raw.decode())
    assert before["gateway_ingest_readings_total"] == 0
    assert before["gateway_resident_memory_bytes"] > 1 << 20
    assert before["gateway_disk_free_bytes"] > 0 and before["gateway_uptime_seconds"] >= 0

    listener = Client(gateway.mqtt_port, "metrics-watcher")
    clients.append(listener)
    publish(gateway, clients, "db/append/counted", [["a", T0 + i, float(i)] for i in range(25)])
    bad = Client(gateway.mqtt_port, "metrics-bad", v5=True)
    clients.append(bad)
    bad.publish("db/append/counted", b'[["a", "not a time", 1]]', 1)
    assert bad.acks.get(timeout=10)[1].is_failure

    def metrics() -> dict[str, float]:
        return parse_metrics(call(gateway, "/metrics")[2].decode())

    # The listener and the bad sensor; the first sensor has disconnected.
    assert wait_until(lambda: metrics()["gateway_mqtt_clients_connected"] == 2)
    after = metrics()
    assert after["gateway_ingest_readings_total"] == 25
    assert after["gateway_ingest_messages_total"] == 1
    assert after["gateway_ingest_rejected_total"] == 1
    assert after["gateway_mqtt_messages_received_total"] >= 2
    assert after["gateway_store_batches_total"] > before["gateway_store_batches_total"]
    assert after["gateway_store_sync_seconds_total"] > 0  # QoS 1 readings are fsynced
    assert after["gateway_store_syncs_total"] >= 1
    assert after["gateway_data_bytes"] > 0

    status, body = call_json(gateway, "/api/status")
    assert status == 200 and body["success"] is True and re.fullmatch(r"\d+\.\d+\.\d+.*", body["version"])
    figures = body["status"]
    assert set(figures) == {name.removeprefix("gateway_") for name in after} - {"info"}
    assert figures["ingest_readings_total"] == 25 and figures["http_watchers"] == 0


def test_the_openapi_document_is_served(gateway: Gateway) -> None:
    status, body = call_json(gateway, "/api/openapi.json")
    assert status == 200 and body == json.loads(json.dumps(document()))
    assert body["openapi"].startswith("3.") and "/api/query" in body["paths"]


def test_token_for_reads_guards_every_endpoint(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory('[http]\ntoken = "s3cret"\ntoken_for_reads = true\n')
    for path in ("/api/tables", "/api/query", "/api/latest", "/metrics", "/api/status", "/api/openapi.json"):
        status, body = call_json(gateway, path)
        assert status == 401 and "needs the API token" in body["reason"], path
    assert call(gateway, "/api/tables", headers=TOKEN)[0] == 200
    assert call(gateway, "/metrics", token="s3cret")[0] == 200


def test_a_tables_retention_is_set_shown_and_applied(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    """Readings older than the table's raw retention go at the next retention run (one runs at start); its hour
    rollups, kept for ever here, still answer an aggregate over that time."""
    gateway = gateway_factory('[http]\ntoken = "s3cret"\n')
    json_token = {"Content-Type": "application/json", **TOKEN}
    status, body = call_json(
        gateway,
        "/api/tables",
        method="POST",
        body=json.dumps({"name": "plant", "retention": {"raw": 30, "minute": 60}}).encode(),
        headers=json_token,
    )
    assert status == 201 and body["table"]["retention"] == {"raw": 30, "minute": 60, "hour": None}
    now = time.time_ns()
    old = (now - 100 * 86_400 * S) // (3600 * S) * 3600 * S  # an hour boundary: the readings share one hour
    publish(gateway, clients, "db/append/PLANT", [["t", old + i * S, float(i)] for i in range(10)] + [["t", now, 1.0]])
    for payload, says in [
        (b'{"raw": -1}', "is not a number of days"),
        (b'{"raw": "30"}', "is not a number of days"),
        (b'{"weeks": 3}', 'give an object with "raw"'),
        (b"[30]", 'give an object with "raw"'),
    ]:
        status, body = call_json(gateway, "/api/tables/plant/retention", method="PUT", body=payload, headers=json_token)
        assert status == 400 and says in body["reason"], (payload, body)
    status, body = call_json(
        gateway, "/api/tables/plant/retention", method="PUT", body=b'{"raw": 30, "hour": 0}', headers=json_token
    )
    assert status == 200 and body["table"]["retention"] == {"raw": 30, "minute": None, "hour": 0}
    status, body = call_json(gateway, "/api/tables/nope/retention", method="PUT", body=b"{}", headers=json_token)
    assert status == 404

    gateway.stop()
    gateway.start()  # retention runs at start, then hourly

    def raw_rows() -> list[Any]:
        _status, body = call_json(gateway, "/api/query", table="plant", **{"from": str(old), "to": str(old + 60 * S)})
        rows: list[Any] = body["rows"]
        return rows

    assert wait_until(lambda: raw_rows() == [])
    status, body = call_json(
        gateway, "/api/query", table="plant", step="1h", aggregate="count,sum", **{"from": str(old - 3600 * S)}
    )
    assert status == 200 and body["rows"][0][2:] == [10, 45.0]  # from the hour rollup the readings left behind
    status, body = call_json(gateway, "/api/tables")
    assert body["tables"][0]["retention"] == {"raw": 30, "minute": None, "hour": 0}
