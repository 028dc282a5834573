"""The HTTP API (bottle): machbase-neo's `/db/query` and `/db/write`, `/healthz`, and `make_app`, which puts every
route group together. Every error is JSON.

Requests are served on the WSGI server's threads. Reads go straight to RocksDB, which is safe from any thread;
writes are handed to the event loop that owns the store's group commit, and the request waits for them.

The other route groups live in their own modules, each with a `register(app, ctx)`: rest.py (tables, series,
latest, /api/query), watch.py (/db/watch server-sent events, fed by hub.py), metrics.py (/metrics, /api/status),
uplink.py (/api/uplink), backup.py (/api/backup) and openapi.py (/api/openapi.json, the description of all of
them). docs/http.md describes the API for its users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice

import bottle
import orjson

from gateway import __version__
from gateway.http import backup, cors, devices, metrics, openapi, page, rest, sql, tql, uplink, watch
from gateway.http.base import (
    ApiContext,
    ApiError,
    Body,
    call_on_loop,
    csv_text,
    handler,
    json_response,
    on_loop,
    query_params,
    require_token,
)
from gateway.ingest.payloads import ParseOptions, PayloadError, Row, parse, parse_line_protocol
from gateway.ingest.topics import TopicError, parse_topic
from gateway.store.database import StoreError, TimeSeriesStore
from gateway.store.query import execute, stream

__all__ = ["ApiContext", "answer_query", "make_app"]

# Content types of /db/write bodies, as neo accepts them.
_FORMATS = {"application/json": "json", "text/csv": "csv", "application/x-ndjson": "ndjson"}
MAX_BODY = 16 << 20
# InfluxDB's /write `precision`, with its one-letter spellings, as the units of the line protocol parser.
_PRECISIONS = {"ns": "ns", "n": "ns", "us": "us", "u": "us", "\u00b5": "us", "ms": "ms", "s": "s"}


def make_app(ctx: ApiContext) -> bottle.Bottle:
    app = bottle.Bottle()
    app.config["json.enable"] = False  # routes answer through json_response, never with a bare dict
    handle = handler(ctx)
    cors_policy = cors.register(app, ctx)

    @app.get("/healthz")
    @handle
    def healthz(started: float) -> Body:
        return json_response(200, {"success": True, "status": "ok", "version": __version__})

    @app.route("/db/query", method=["GET", "POST"])
    @handle
    def db_query(started: float) -> Body:
        request = bottle.request
        params = query_params()
        text = params.get("q") or request.forms.getunicode("q")
        fmt = params.get("format") or request.forms.getunicode("format") or "json"
        if not text and request.json is not None:
            text = request.json.get("q")
            fmt = request.json.get("format", fmt)
        if not text:
            raise ApiError(400, "no query: give the SQL as ?q=... (or 'q' in a form or JSON body)")
        try:
            statement = sql.parse(text, now_ns=time.time_ns())
        except sql.SqlError as exc:
            raise ApiError(400, str(exc)) from None
        if isinstance(statement, sql.CreateTable | sql.DropTable):
            # A read endpoint that also writes: pages elsewhere may query, but change tables only when allowed.
            cors.require_write_origin(cors_policy)
        if isinstance(statement, sql.CreateTable):
            on_loop(ctx, ctx.store.create_table(statement.table, exist_ok=statement.if_not_exists))
            return _done(started, "success")
        if isinstance(statement, sql.DropTable):
            require_token(ctx, "DROP TABLE")
            on_loop(ctx, ctx.store.drop_table(statement.table, missing_ok=statement.if_exists))
            return _done(started, "success")
        if fmt not in ("json", "csv"):
            raise ApiError(400, f"unknown format {fmt!r}: use json or csv")
        columns, types, rows = stream(ctx.store, sql.to_query(statement))
        # Sent as the rows are read, a chunk at a time: a day of readings is never held whole in memory.
        if fmt == "csv":
            bottle.response.content_type = "text/csv"
            return _csv_chunks(columns, rows)
        bottle.response.content_type = "application/json"
        return _json_chunks(columns, types, rows, started)

    def recorded(topic: str, parse_body: Callable[[], list[Row]]) -> list[Row]:
        """The readings of a write's body, the write counted on the Devices view and a refused body on the Errors
        view: an HTTP writer has no client id, so its address stands for it."""
        peer = bottle.request.remote_addr or "?"
        who = f"http {peer}"
        activity = ctx.activity
        if activity is not None:
            call_on_loop(ctx, activity.message, who, "http", peer, topic)
        try:
            return parse_body()
        except PayloadError as exc:
            if activity is not None:
                call_on_loop(ctx, activity.rejected, who, "http", peer, topic, exc.reason)
            raise

    @app.post("/db/write/<table>")
    @handle
    def db_write(table: str, started: float) -> Body:
        require_token(ctx, "writing")
        request = bottle.request
        content_type = (request.content_type or "application/json").split(";")[0].strip().lower()
        fmt = _FORMATS.get(content_type)
        if fmt is None:
            raise ApiError(415, f"Content-Type {content_type!r} is not one of {', '.join(_FORMATS)}")
        if request.content_length > MAX_BODY:
            raise ApiError(413, f"a body of at most {MAX_BODY} bytes is accepted")
        body = request.body.read(MAX_BODY + 1)
        compress = "gzip" if request.get_header("Content-Encoding", "").lower() == "gzip" else None
        options = ParseOptions(
            time_format=request.query.get("timeformat", "ns"), tz=request.query.get("tz"), now_ns=time.time_ns()
        )
        try:
            readings = recorded(f"db/write/{table}", lambda: parse(body, fmt, compress, options))
        except PayloadError as exc:
            raise ApiError(400, f"nothing written: {exc.reason}") from None
        count = on_loop(ctx, ctx.store.append(table, readings, durable=True))
        return _done(started, f"success, {count} record(s) inserted")

    @app.post("/metrics/write")
    @handle
    def metrics_write(started: float) -> Body:
        """InfluxDB line protocol, as machbase-neo's /metrics/write and InfluxDB 1.x's /write (Telegraf's
        outputs.influxdb with urls = ["http://<gateway>/metrics"] posts to /metrics/write?db=<database>)."""
        require_token(ctx, "writing")
        request = bottle.request
        params = query_params()
        db = params.get("db", "")
        if not db:
            raise ApiError(400, "parameter 'db' is missing: give the table as /metrics/write?db=<TABLE>")
        precision = _PRECISIONS.get(params.get("precision") or "ns")
        if precision is None:
            raise ApiError(400, f"parameter 'precision': {params.get('precision')!r} is not one of ns, us, ms, s")
        # The table is named as by the MQTT topic db/metrics/<TABLE>, which ':', '?' and '/' would reshape.
        try:
            if any(c in db for c in ":?/"):
                raise TopicError(f"table name {db!r} is not valid: use letters, digits and underscores")
            topic = parse_topic(f"db/metrics/{db}")
        except TopicError as exc:
            raise ApiError(400, f"parameter 'db': {exc.reason}") from None
        if topic is None:  # never for db/metrics/...: for the type checker
            raise ApiError(400, f"parameter 'db': {db!r} is not a table name")
        if request.content_length > MAX_BODY:
            raise ApiError(413, f"a body of at most {MAX_BODY} bytes is accepted")
        body = request.body.read(MAX_BODY + 1)
        compress = "gzip" if request.get_header("Content-Encoding", "").lower() == "gzip" else None
        options = ParseOptions(time_format=precision, now_ns=time.time_ns())
        try:
            readings = recorded(f"db/metrics/{topic.table}", lambda: parse_line_protocol(body, compress, options))
        except PayloadError as exc:
            reason = f"nothing written: {exc.reason}"
            # "error" is where InfluxDB puts it, and where Telegraf reads it from for its log.
            answer = {"success": False, "reason": reason, "error": f"unable to parse: {exc.reason}", "line": exc.row}
            return json_response(400, answer)
        if readings:
            on_loop(ctx, ctx.store.append(topic.table, readings, durable=True))
        bottle.response.status = 204  # as InfluxDB answers a write
        return b""

    # The other route groups, each in its own module; openapi.py describes them all, so it comes last.
    rest.register(app, ctx)
    devices.register(app, ctx)
    watch.register(app, ctx)
    metrics.register(app, ctx)
    backup.register(app, ctx)
    tql.register(app, ctx)  # /db/tql and the files of its charts (docs/tql.md)
    uplink.register(app, ctx)  # /api/uplink: the connection to the upstream broker
    openapi.register(app, ctx)
    page.register(app)  # the web page (/ and its assets): no API route, so not in the OpenAPI document

    @app.error(400)
    def bad_request(error: bottle.HTTPError) -> Body:
        return json_response(400, {"success": False, "reason": f"bad request: {error.body}"})

    @app.error(404)
    def not_found(_error: bottle.HTTPError) -> Body:
        return json_response(404, {"success": False, "reason": f"no such endpoint: {bottle.request.path}"})

    @app.error(405)
    def wrong_method(_error: bottle.HTTPError) -> Body:
        return json_response(405, {"success": False, "reason": f"{bottle.request.method} is not allowed here"})

    @app.error(500)
    def failed(_error: bottle.HTTPError) -> Body:
        return json_response(500, {"success": False, "reason": "the gateway failed to answer; its log says why"})

    return app


_CHUNK_ROWS = 2000


def _chunks(rows: Iterator[list[object]]) -> Iterator[list[list[object]]]:
    while chunk := list(islice(rows, _CHUNK_ROWS)):
        yield chunk


def _json_chunks(columns: list[str], types: list[str], rows: Iterator[list[object]], started: float) -> Iterator[bytes]:
    """neo's answer, {"data": {"columns", "types", "rows"}, "success", "reason", "elapse"}, piece by piece."""
    head = orjson.dumps({"columns": columns, "types": types})
    yield b'{"data":' + head[:-1] + b',"rows":['
    first = True
    for chunk in _chunks(rows):
        yield (b"" if first else b",") + orjson.dumps(chunk)[1:-1]
        first = False
    tail = {"success": True, "reason": "success", "elapse": _elapsed(started)}
    yield b"]}," + orjson.dumps(tail)[1:]


def _csv_chunks(columns: list[str], rows: Iterator[list[object]]) -> Iterator[bytes]:
    yield csv_text(columns, []).encode()
    for chunk in _chunks(rows):
        yield csv_text(None, chunk).encode()


def _elapsed(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.3f}ms"


def _done(started: float, reason: str) -> Body:
    return json_response(200, {"success": True, "reason": reason, "elapse": _elapsed(started)})


def answer_query(store: TimeSeriesStore, text: str, fmt: str = "json") -> bytes:
    """The answer to a SELECT sent over MQTT to db/query: neo's JSON (as /db/query gives it) or CSV. A query
    that cannot be answered gets {"success": false, "reason": ...}. Runs on any thread."""
    started = time.perf_counter()
    try:
        statement = sql.parse(text, now_ns=time.time_ns())
        if not isinstance(statement, sql.Select):
            raise ApiError(400, "only SELECT is answered over MQTT: create and drop tables over HTTP (/db/query)")
        if fmt not in ("json", "csv"):
            raise ApiError(400, f"unknown format {fmt!r}: use json or csv")
        result = execute(store, sql.to_query(statement))
    except (sql.SqlError, StoreError, ApiError) as exc:
        return orjson.dumps({"success": False, "reason": str(exc)})
    if fmt == "csv":
        return csv_text(result.columns, result.rows).encode()
    data = {"columns": result.columns, "types": result.types, "rows": result.rows}
    return orjson.dumps({"success": True, "reason": "success", "elapse": _elapsed(started), "data": data})
