"""`GET /api/openapi.json`: an OpenAPI 3.1 document describing every endpoint of the HTTP API.

Written out by hand, next to nothing else, so that it says exactly what the routes do; tests/http/test_openapi.py
checks that every route of the app is in it and every path in it is a route.
"""

from __future__ import annotations

from typing import Any

import bottle

from gateway import __version__
from gateway.http.base import ApiContext, Body, handler, json_response
from gateway.http.rest import MAX_ROWS

__all__ = ["document", "register"]

Json = dict[str, Any]

_WRITE: list[Json] = [{"bearerAuth": []}, {"tokenQuery": []}]
# Reads are open unless [http] token_for_reads is set: the empty requirement says "no token needed".
_READ: list[Json] = [{}, {"bearerAuth": []}, {"tokenQuery": []}]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _success(properties: Json, description: str) -> Json:
    """A JSON answer {"success": true, ...properties}."""
    return _json({"type": "object", "properties": {"success": {"const": True}, **properties}}, description)


def _errors(*codes: int) -> dict[str, Json]:
    why = {
        400: "A parameter or the body is wrong; the reason names it.",
        401: "The token is missing or wrong.",
        403: "A token is needed and none is configured ([http] token), or the request is not allowed from there.",
        404: "No such table.",
        409: "The table already exists.",
        413: "The body is too large.",
        415: "The Content-Type is not accepted.",
        500: "The gateway failed to answer; its log says why.",
        503: "Not available now (the disk is full, the store cannot write, the feature is not set up, the gateway "
        "is stopping, or too many watchers).",
    }
    return {str(code): _json(_ref("Error"), why[code]) for code in (*codes, 401)}


def _query(name: str, description: str, schema: Json, *, required: bool = False, many: bool = False) -> Json:
    if many:
        schema = {"type": "array", "items": schema}
    parameter = {"name": name, "in": "query", "description": description, "required": required, "schema": schema}
    if many:
        parameter |= {"style": "form", "explode": True}
    return parameter


_TABLE_PATH = {
    "name": "table",
    "in": "path",
    "required": True,
    "description": "Table name (case-insensitive; stored upper-case).",
    "schema": {"type": "string"},
}
_TABLE_QUERY = _query("table", "Table name (case-insensitive).", {"type": "string"}, required=True)
_NAMES = _query("name", "Series name; repeat for several. Without it: every series.", {"type": "string"}, many=True)
_FORMAT = _query("format", "Answer as JSON or CSV (with a header line).", {"enum": ["json", "csv"], "default": "json"})
_TIME = {
    "type": "string",
    "description": "Nanoseconds since 1970, RFC 3339 (2024-05-01T12:00:00Z; no zone means UTC), now, now-1h, "
    "now+15m or -1h.",
    "examples": ["-1h", "now-30m", "2024-05-01T12:00:00Z", "1700000000000000000"],
}
_DURATION = {
    "type": "string",
    "description": "10s, 1m, 1h30m, 1d, 500ms (units ns, us, ms, s, m, h, d, w) or nanoseconds.",
    "examples": ["1m", "10s", "1h", "1d"],
}
_AGGREGATE = {"enum": ["avg", "min", "max", "sum", "count", "first", "last"]}

_PER_TABLE: Json = {"type": "object", "additionalProperties": {"type": "integer"}, "examples": [{"SENSORS": 120}]}

_SCHEMAS: dict[str, Json] = {
    "Error": {
        "type": "object",
        "required": ["success", "reason"],
        "properties": {"success": {"const": False}, "reason": {"type": "string", "description": "What was wrong."}},
    },
    "Done": {
        "type": "object",
        "required": ["success", "reason"],
        "properties": {
            "success": {"const": True},
            "reason": {"type": "string", "examples": ["success, 2 record(s) inserted"]},
            "elapse": {"type": "string", "examples": ["1.234ms"]},
        },
    },
    "Table": {
        "type": "object",
        "required": ["name", "created", "series", "retention"],
        "properties": {
            "name": {"type": "string"},
            "created": {"type": "integer", "description": "When the table was created, ns since 1970."},
            "series": {"type": "integer", "description": "How many series the table has."},
            "retention": _ref("Retention"),
        },
    },
    "Retention": {
        "type": "object",
        "description": "Days the table keeps its readings (raw) and its 1-minute and 1-hour rollups; 0 keeps them "
        "for ever, null follows the gateway's [store] retention_days / minute_rollup_days / hour_rollup_days.",
        "additionalProperties": False,
        "properties": {kind: {"type": ["number", "null"], "minimum": 0} for kind in ("raw", "minute", "hour")},
    },
    "Series": {
        "type": "object",
        "required": ["name", "count", "first_time", "last_time", "last_value"],
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer", "description": "Readings stored."},
            "first_time": {"type": ["integer", "null"], "description": "ns since 1970."},
            "last_time": {"type": ["integer", "null"], "description": "ns since 1970."},
            "last_value": {"type": ["number", "null"]},
        },
    },
    "Rows": {
        "type": "object",
        "required": ["success", "table", "columns", "types", "rows"],
        "properties": {
            "success": {"const": True},
            "table": {"type": "string"},
            "columns": {"type": "array", "items": {"type": "string"}, "examples": [["NAME", "TIME", "VALUE"]]},
            "types": {
                "type": "array",
                "items": {"enum": ["string", "datetime", "double", "int64"]},
                "description": "Per column: datetime is ns since 1970.",
            },
            "rows": {
                "type": "array",
                "items": {"type": "array", "items": {"type": ["string", "integer", "number", "null"]}},
            },
        },
    },
    "NeoQuery": {
        "type": "object",
        "required": ["success", "reason", "elapse", "data"],
        "properties": {
            "success": {"const": True},
            "reason": {"type": "string"},
            "elapse": {"type": "string"},
            "data": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "types": {"type": "array", "items": {"type": "string"}},
                    "rows": {"type": "array", "items": {"type": "array"}},
                },
            },
        },
    },
    "Uplink": {
        "type": "object",
        "required": ["success", "enabled"],
        "properties": {
            "success": {"const": True},
            "enabled": {"type": "boolean", "description": "Whether an uplink is configured ([uplink] url)."},
            "url": {
                "type": "string",
                "description": "The upstream, without its password.",
                "examples": ["mqtt://h:1883"],
            },
            "client_id": {"type": "string", "description": "The client id at the upstream."},
            "connected": {"type": "boolean"},
            "connected_since": {
                "type": ["number", "null"],
                "description": "Unix time of the connection; null when none.",
            },
            "disconnected_since": {
                "type": ["number", "null"],
                "description": "Unix time the last connection ended (or the gateway started); null while connected.",
            },
            "last_error": {"type": ["string", "null"], "description": "Why the last attempt or connection failed."},
            "last_error_at": {"type": ["number", "null"], "description": "Unix time of last_error."},
            "connect_attempts": {"type": "integer", "description": "Attempts to connect since the start."},
            "commands_received": {"type": "integer", "description": "Commands received from the upstream."},
            "command_topic": {
                "type": ["string", "null"],
                "description": "The upstream topic filter commands come from; null when [uplink] commands is off.",
            },
            "forwarding": {
                "type": "object",
                "description": "Readings stored and forwarded, in the order they arrived.",
                "properties": {
                    "backlog": {"type": "integer", "description": "Readings waiting to be forwarded."},
                    "backlog_by_table": _PER_TABLE,
                    "oldest_waiting_seconds": {
                        "type": ["number", "null"],
                        "description": "How long ago the oldest waiting reading arrived; null when none waits.",
                    },
                    "forwarded": {
                        "type": "integer",
                        "description": "Readings acknowledged by the upstream since the start.",
                    },
                    "messages": {
                        "type": "integer",
                        "description": "Messages of readings acknowledged since the start.",
                    },
                    "rate": {"type": "number", "description": "Readings acknowledged per second, over the last 10 s."},
                    "dropped_by_table": {
                        **_PER_TABLE,
                        "description": "Readings deleted (retention, a dropped table) before they could go up.",
                    },
                    "refused_by_table": {
                        **_PER_TABLE,
                        "description": "Readings the upstream refused (MQTT 5 reason codes); not sent again.",
                    },
                },
            },
            "bridge": {
                "type": "object",
                "properties": {
                    "sent": {"type": "integer", "description": "Local messages sent up since the start."},
                    "queued": {"type": "integer", "description": "Messages waiting to go up or to be acknowledged."},
                },
            },
        },
    },
}

_CSV = {"text/csv": {"schema": {"type": "string"}}}
# The answer of the requests that create or change a table: the table as it now is.
_TABLE_ANSWER: Json = {"type": "object", "properties": {"success": {"const": True}, "table": _ref("Table")}}


def _rows_answer(description: str) -> Json:
    answer = _json(_ref("Rows"), description)
    answer["content"] |= _CSV
    return answer


def _paths() -> dict[str, Json]:
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Is the gateway up",
                "security": _READ,
                "responses": {
                    "200": _success(
                        {
                            "status": {"const": "ok"},
                            "version": {"type": "string"},
                        },
                        "The gateway answers.",
                    ),
                    **_errors(),
                },
            }
        },
        "/db/query": {
            verb: {
                "operationId": f"dbQuery{verb.title()}",
                "summary": "SQL, as machbase-neo's /db/query",
                "description": "SELECT on one tag table, CREATE TAG TABLE, DROP TABLE (needs the token). The SQL "
                "subset is described in docs/storage.md. Pages on other origins may query ([http] "
                "cors_read_origins), but CREATE and DROP only from [http] cors_write_origins (403 otherwise).",
                "security": _READ,
                "parameters": [
                    _query("q", "The SQL statement.", {"type": "string"}, required=verb == "get"),
                    _FORMAT,
                ],
                **(
                    {
                        "requestBody": {
                            "description": "The SQL as a form field q or a JSON object {q, format}.",
                            "content": {
                                "application/x-www-form-urlencoded": {
                                    "schema": {"type": "object", "properties": {"q": {"type": "string"}}}
                                },
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"q": {"type": "string"}, "format": {"enum": ["json", "csv"]}},
                                    }
                                },
                            },
                        }
                    }
                    if verb == "post"
                    else {}
                ),
                "responses": {
                    "200": {
                        "description": "Rows (SELECT) or success (CREATE, DROP).",
                        "content": {
                            "application/json": {"schema": {"oneOf": [_ref("NeoQuery"), _ref("Done")]}},
                            **_CSV,
                        },
                    },
                    **_errors(400, 403, 503),
                },
            }
            for verb in ("get", "post")
        },
        "/db/write/{table}": {
            "post": {
                "operationId": "dbWrite",
                "summary": "Write readings, as machbase-neo's /db/write",
                "description": "All or nothing: one bad row and nothing is stored. The table is created unless "
                "[store] auto_create_tables is false.",
                "security": _WRITE,
                "parameters": [
                    _TABLE_PATH,
                    _query(
                        "timeformat",
                        "Unit or form of the times in the body.",
                        {"enum": ["ns", "us", "ms", "s", "rfc3339", "default"], "default": "ns"},
                    ),
                    _query("tz", "Time zone of zone-less time strings (e.g. Europe/Paris).", {"type": "string"}),
                ],
                "requestBody": {
                    "required": True,
                    "description": "Readings (name, time, value); Content-Encoding: gzip is accepted.",
                    "content": {
                        "application/json": {"schema": {"type": ["array", "object"]}},
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                "responses": {"200": _json(_ref("Done"), "Stored."), **_errors(400, 403, 413, 415, 503)},
            }
        },
        "/metrics/write": {
            "post": {
                "operationId": "metricsWrite",
                "summary": "Write InfluxDB line protocol, as machbase-neo's /metrics/write (Telegraf)",
                "description": "Each numeric field of each line is a reading of the series <measurement>.<field>, "
                "followed by the tags as ,tag=value sorted by tag key (the naming of the MQTT topic "
                "db/metrics/<TABLE>); string fields are skipped. All or nothing: one bad line and nothing is "
                "stored, and the 400 names the line. Telegraf: outputs.influxdb with urls = "
                '["http://<gateway>/metrics"], or outputs.http to this URL with data_format = "influx".',
                "security": _WRITE,
                "parameters": [
                    _query("db", "The table (case-insensitive; stored upper-case).", {"type": "string"}, required=True),
                    _query(
                        "precision",
                        "Unit of the timestamps (n and u are InfluxDB's spellings of ns and us).",
                        {"enum": ["ns", "us", "ms", "s", "n", "u"], "default": "ns"},
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "description": "Line protocol, one point a line; Content-Encoding: gzip is accepted.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "responses": {"204": {"description": "Stored."}, **_errors(400, 403, 413, 503)},
            }
        },
        "/db/tql": {
            "post": {
                "operationId": "dbTql",
                "summary": "TQL, as machbase-neo's /db/tql: charts and exports",
                "description": "The body is a TQL script: a source (SQL_SELECT, SQL), map functions (MAPVALUE, "
                "PUSHVALUE, POPVALUE, FILTER) and a sink (CSV, JSON, CHART); docs/tql.md describes the subset. "
                "CHART answers neo's chart JSON, whose absolute script URLs are built from the Host header, or an "
                "HTML page when the request asks for text/html (Accept, or X-Tql-Output: html). A syntax or run-time "
                "error is a 400 whose reason starts with the line and column, also given as line and column.",
                "security": _READ,
                "requestBody": {
                    "required": True,
                    "description": "The TQL script (any Content-Type; UTF-8; at most 64 KiB).",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "responses": {
                    "200": {
                        "description": "JSON(): the rows as /db/query gives them; CSV(): CSV (a header line with "
                        "header(true)); CHART(): {chartID, jsAssets, jsCodeAssets, style: {width, height}, theme}.",
                        "content": {
                            "application/json": {"schema": {"oneOf": [_ref("NeoQuery"), {"type": "object"}]}},
                            **_CSV,
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 413),
                },
            }
        },
        "/web/api/tql-assets/{name}": {
            "get": {
                "operationId": "tqlChartScript",
                "summary": "The script of a chart made by /db/tql (its jsCodeAssets), kept for 10 minutes",
                "description": "Needs no token: a <script src> cannot send one, and the name is random. It loads "
                "ECharts when the page has not, then draws into the element of the chart's id.",
                "security": [{}],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "<id>.js",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "JavaScript.",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    "404": _json(_ref("Error"), "No such chart, or it is older than 10 minutes."),
                },
            }
        },
        "/web/echarts/{name}": {
            "get": {
                "operationId": "echarts",
                "summary": "Apache ECharts, vendored: echarts.min.js, LICENSE, NOTICE",
                "security": [{}],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["echarts.min.js", "LICENSE", "NOTICE"]},
                    }
                ],
                "responses": {
                    "200": {"description": "The file.", "content": {"text/javascript": {"schema": {"type": "string"}}}},
                    "404": _json(_ref("Error"), "No such file."),
                },
            }
        },
        "/db/watch/{table}": {
            "get": {
                "operationId": "dbWatch",
                "summary": "New readings as server-sent events",
                "description": 'One event per stored reading: `data: {"name": ..., "time": ns, "value": ...}`. '
                'A comment `: keep-alive` every 15 s when idle; `event: dropped` with `{"dropped": n, "reason"}` '
                "when the client did not keep up and readings were skipped; `event: end` when the gateway stops.",
                "security": _READ,
                "parameters": [_TABLE_PATH, _NAMES],
                "responses": {
                    "200": {
                        "description": "The event stream (text/event-stream), until the client or the gateway ends it.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(404, 503),
                },
            }
        },
        "/api/tables": {
            "get": {
                "operationId": "listTables",
                "summary": "Tables",
                "security": _READ,
                "responses": {
                    "200": _success(
                        {
                            "tables": {"type": "array", "items": _ref("Table")},
                        },
                        "Every table, by name.",
                    ),
                    **_errors(),
                },
            },
            "post": {
                "operationId": "createTable",
                "summary": "Create a table",
                "security": _WRITE,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,39}$"},
                                    "retention": _ref("Retention"),
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        _TABLE_ANSWER,
                        "Created; Location is /api/tables/<NAME>.",
                    ),
                    **_errors(400, 403, 409, 503),
                },
            },
        },
        "/api/tables/{table}": {
            "delete": {
                "operationId": "dropTable",
                "summary": "Drop a table with all its readings",
                "security": _WRITE,
                "parameters": [_TABLE_PATH],
                "responses": {"200": _json(_ref("Done"), "Dropped."), **_errors(403, 404, 503)},
            }
        },
        "/api/tables/{table}/retention": {
            "put": {
                "operationId": "setRetention",
                "summary": "Change how long a table keeps its readings and rollups",
                "description": "Applied by the next hourly retention run.",
                "security": _WRITE,
                "parameters": [_TABLE_PATH],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Retention")}}},
                "responses": {
                    "200": _json(
                        _TABLE_ANSWER,
                        "The table with its new retention.",
                    ),
                    **_errors(400, 403, 404, 503),
                },
            }
        },
        "/api/tables/{table}/series": {
            "get": {
                "operationId": "listSeries",
                "summary": "The series of a table: count, first and last time, last value",
                "description": "Counts come from the hourly rollups over the span readings are kept for.",
                "security": _READ,
                "parameters": [
                    _TABLE_PATH,
                    _query("q", "Only series whose name contains this (case-insensitive).", {"type": "string"}),
                ],
                "responses": {
                    "200": _success(
                        {
                            "table": {"type": "string"},
                            "series": {"type": "array", "items": _ref("Series")},
                        },
                        "The series, by name.",
                    ),
                    **_errors(404),
                },
            }
        },
        "/api/latest": {
            "get": {
                "operationId": "latest",
                "summary": "The last reading of each series",
                "security": _READ,
                "parameters": [_TABLE_QUERY, _NAMES, _FORMAT],
                "responses": {
                    "200": _rows_answer("Columns NAME, TIME, VALUE; series without readings are left out."),
                    **_errors(400, 404),
                },
            }
        },
        "/api/query": {
            "get": {
                "operationId": "query",
                "summary": "Readings of a time range, raw or aggregated per step",
                "description": "Without step or aggregate: columns NAME, TIME, VALUE. With a step: NAME, TIME (the "
                "start of the step; steps are aligned on 1970-01-01T00:00:00Z) and one column per aggregate (AVG "
                "when none is given), per series and step. With aggregates and no step: NAME and the aggregates "
                f"per series over the range. Rows are series by series, names ascending. At most {MAX_ROWS} rows: "
                "more is a 400 asking for a step, a shorter range or a limit.",
                "security": _READ,
                "parameters": [
                    _TABLE_QUERY,
                    _NAMES,
                    _query("from", "Start of the range, included.", _TIME),
                    _query("to", "End of the range, excluded.", _TIME),
                    _query("step", "Aggregate per step of this length.", _DURATION),
                    _query("aggregate", "Aggregate(s); repeat or separate with commas.", _AGGREGATE, many=True),
                    _query("order", "Time order.", {"enum": ["asc", "desc"], "default": "asc"}),
                    _query("limit", "At most this many rows.", {"type": "integer", "minimum": 1, "maximum": MAX_ROWS}),
                    _FORMAT,
                ],
                "responses": {"200": _rows_answer("The rows."), **_errors(400, 404)},
            }
        },
        "/api/status": {
            "get": {
                "operationId": "status",
                "summary": "The numbers of /metrics as JSON",
                "security": _READ,
                "responses": {
                    "200": _success(
                        {
                            "version": {"type": "string"},
                            "name": {
                                "type": "string",
                                "description": "The gateway's name: [mdns] name, or one made from the host name.",
                            },
                            "mdns_name": {
                                "type": ["string", "null"],
                                "description": "The host name advertised over mDNS (<name>.local; <name>-2, "
                                "... after a conflict on the network); null while none is.",
                            },
                            "listeners": {
                                "type": "array",
                                "description": "Where clients connect: each listener's protocol, bound address "
                                "(0.0.0.0: every IPv4 address of the gateway) and port.",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string", "examples": ["mqtt", "mqtt-sn", "http"]},
                                        "host": {"type": "string"},
                                        "port": {"type": "integer"},
                                    },
                                },
                            },
                            "uplink": {
                                "type": "object",
                                "description": "The uplink in a few words (GET /api/uplink has the rest): backlog "
                                "is the readings waiting to be forwarded (null when readings are not forwarded).",
                                "required": ["enabled"],
                                "properties": {
                                    "enabled": {"type": "boolean"},
                                    "connected": {"type": "boolean"},
                                    "backlog": {"type": ["integer", "null"]},
                                    "last_error": {"type": ["string", "null"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "description": "Metric names of /metrics without the gateway_ prefix.",
                                "additionalProperties": {"type": "number"},
                                "examples": [{"uptime_seconds": 12.5, "ingest_readings_total": 1200}],
                            },
                        },
                        "The figures.",
                    ),
                    **_errors(503),
                },
            }
        },
        "/api/devices": {
            "get": {
                "operationId": "devices",
                "summary": "Every client seen since the start: MQTT, MQTT-SN and HTTP writers",
                "description": "Connected and sleeping clients first, then those gone, each by last message, newest "
                "first. interval_s is a device's usual time between messages (a moving average of the gaps); "
                "overdue is true when it has been silent for three of them (and a minute at least). battery is the "
                "latest reading of a series named <client id>.battery (or .batt, .vbat, .battery_v, _battery, "
                "/battery) in any table.",
                "security": _READ,
                "responses": {
                    "200": _success(
                        {
                            "devices": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "client_id": {"type": "string"},
                                        "protocol": {"enum": ["mqtt", "mqtt-sn", "http"]},
                                        "address": {"type": "string"},
                                        "state": {"enum": ["connected", "asleep", "gone"]},
                                        "since": {"type": "number", "description": "Unix time of the state."},
                                        "last_seen": {"type": ["number", "null"]},
                                        "messages": {"type": "integer"},
                                        "interval_s": {"type": ["number", "null"]},
                                        "overdue": {"type": "boolean"},
                                        "last_topic": {"type": "string"},
                                        "battery": {
                                            "type": ["object", "null"],
                                            "properties": {
                                                "table": {"type": "string"},
                                                "series": {"type": "string"},
                                                "value": {"type": "number"},
                                                "time": {"type": "integer", "description": "Nanoseconds."},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                        "The devices.",
                    ),
                    **_errors(503),
                },
            }
        },
        "/api/errors": {
            "get": {
                "operationId": "errors",
                "summary": "The last 100 publishes and writes refused, with who sent them and why",
                "security": _READ,
                "responses": {
                    "200": _success(
                        {
                            "total": {"type": "integer", "description": "Refusals since the start."},
                            "errors": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "time": {"type": "number", "description": "Unix time."},
                                        "client_id": {"type": "string"},
                                        "protocol": {"enum": ["mqtt", "mqtt-sn", "http"]},
                                        "address": {"type": "string"},
                                        "topic": {"type": "string"},
                                        "reason": {"type": "string"},
                                    },
                                },
                            },
                        },
                        "Newest first.",
                    ),
                    **_errors(503),
                },
            }
        },
        "/api/uplink": {
            "get": {
                "operationId": "uplink",
                "summary": "The uplink to the upstream MQTT broker: connection, backlog, forwarding",
                "description": "enabled is false, and nothing else is given, when no [uplink] url is configured. "
                "Times are Unix times (seconds). forwarding is there when readings are forwarded ([uplink] "
                "forward_readings), bridge when the uplink has its topic bridge.",
                "security": _READ,
                "responses": {"200": _json(_ref("Uplink"), "The uplink's state."), **_errors()},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "security": _READ,
                "responses": {
                    "200": {
                        "description": "gateway_* metrics: MQTT, ingest, store, disk, memory, uptime, uplink.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(503),
                },
            }
        },
        "/api/backup": {
            "get": {
                "operationId": "backup",
                "summary": "Download a backup (.tar.gz) of the data",
                "description": "Needs the token; a gateway without a token allows it from a loopback address "
                "(the board itself). The archive is deleted from the gateway once sent.",
                "security": [*_WRITE, {}],
                "responses": {
                    "200": {
                        "description": "The archive; Content-Disposition names it gateway-backup-<UTC time>.tar.gz.",
                        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(403, 500, 503),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": _READ,
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document."), **_errors()},
            }
        },
    }


def document() -> Json:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gateway HTTP API",
            "version": __version__,
            "description": "The HTTP API of the gateway (an MQTT broker that stores readings). Every error is a "
            '4xx/5xx with {"success": false, "reason": "..."}. Writes, table drops and backups need the token of '
            "[http] token (Authorization: Bearer <token>, or ?token=); with [http] token_for_reads every request "
            "does. Times are nanoseconds since 1970 unless said otherwise. Web pages on other origins may read "
            "(CORS; [http] cors_read_origins, default any) and write only from [http] cors_write_origins. See "
            "docs/http.md.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "[http] token"},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": "token", "description": "[http] token"},
            },
        },
    }


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)
    text = document()

    def openapi(started: float) -> Body:
        return json_response(200, text)

    app.route("/api/openapi.json", "GET", handle(openapi))
