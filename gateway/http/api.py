"""The HTTP API (bottle): machbase-neo's `/db/query` and `/db/write`, and `/healthz`. Every error is JSON.

Requests are served on the WSGI server's threads. Reads go straight to RocksDB, which is safe from any thread;
writes are handed to the event loop that owns the store's group commit, and the request waits for them.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import bottle

from gateway import __version__
from gateway.http import sql
from gateway.ingest.payloads import ParseOptions, PayloadError, parse
from gateway.store.database import StoreError, TimeSeriesStore
from gateway.store.query import Query, Result, execute
from gateway.store.writer import WriteFailed

T = TypeVar("T")

# Content types of /db/write bodies, as neo accepts them.
_FORMATS = {"application/json": "json", "text/csv": "csv", "application/x-ndjson": "ndjson"}
MAX_BODY = 16 << 20


@dataclass(slots=True)
class ApiContext:
    store: TimeSeriesStore
    loop: asyncio.AbstractEventLoop
    token: str = ""  # empty: writes and drops are refused (the API is read-only)
    token_for_reads: bool = False


class ApiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _json(status: int, body: dict[str, Any]) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return json.dumps(body)


def make_app(ctx: ApiContext) -> bottle.Bottle:
    app = bottle.Bottle(autojson=False)

    def on_loop(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, ctx.loop).result(timeout=30)

    def require_token(what: str) -> None:
        if not ctx.token:
            raise ApiError(403, f"{what} needs a token, and none is configured: set [http] token in the config")
        given = bottle.request.get_header("Authorization", "").removeprefix("Bearer ").strip()
        given = given or bottle.request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), ctx.token.encode()):
            raise ApiError(401, f"{what} needs the API token: send 'Authorization: Bearer <token>'")

    def handler(func: Callable[..., str]) -> Callable[..., str]:
        def wrapped(*args: Any, **kwargs: Any) -> str:
            started = time.perf_counter()
            try:
                if ctx.token_for_reads:
                    require_token("this gateway's API")
                return func(*args, started=started, **kwargs)
            except ApiError as exc:
                return _json(exc.status, {"success": False, "reason": exc.reason})
            except StoreError as exc:
                return _json(400, {"success": False, "reason": str(exc)})
            except WriteFailed as exc:
                return _json(503, {"success": False, "reason": str(exc)})

        return wrapped

    @app.get("/healthz")
    @handler
    def healthz(started: float) -> str:
        return _json(200, {"success": True, "status": "ok", "version": __version__})

    @app.route("/db/query", method=["GET", "POST"])
    @handler
    def db_query(started: float) -> str:
        request = bottle.request
        text = request.query.get("q") or request.forms.get("q")
        fmt = request.query.get("format") or request.forms.get("format") or "json"
        if not text and request.json is not None:
            text = request.json.get("q")
            fmt = request.json.get("format", fmt)
        if not text:
            raise ApiError(400, "no query: give the SQL as ?q=... (or 'q' in a form or JSON body)")
        try:
            statement = sql.parse(text, now_ns=time.time_ns())
        except sql.SqlError as exc:
            raise ApiError(400, str(exc)) from None
        if isinstance(statement, sql.CreateTable):
            on_loop(ctx.store.create_table(statement.table, exist_ok=statement.if_not_exists))
            return _done(started, "success")
        if isinstance(statement, sql.DropTable):
            require_token("DROP TABLE")
            on_loop(ctx.store.drop_table(statement.table, missing_ok=statement.if_exists))
            return _done(started, "success")
        result = execute(ctx.store, to_query(statement))
        if fmt == "csv":
            bottle.response.content_type = "text/csv"
            return _csv(result)
        if fmt != "json":
            raise ApiError(400, f"unknown format {fmt!r}: use json or csv")
        data = {"columns": result.columns, "types": result.types, "rows": result.rows}
        return _json(200, {"success": True, "reason": "success", "elapse": _elapsed(started), "data": data})

    @app.post("/db/write/<table>")
    @handler
    def db_write(table: str, started: float) -> str:
        require_token("writing")
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
            readings = parse(body, fmt, compress, options)
        except PayloadError as exc:
            raise ApiError(400, f"nothing written: {exc.reason}") from None
        count = on_loop(ctx.store.append(table, [(r.name, r.time_ns, r.value) for r in readings], durable=True))
        return _done(started, f"success, {count} record(s) inserted")

    @app.error(400)
    def bad_request(error: bottle.HTTPError) -> str:
        return _json(400, {"success": False, "reason": f"bad request: {error.body}"})

    @app.error(404)
    def not_found(_error: bottle.HTTPError) -> str:
        return _json(404, {"success": False, "reason": f"no such endpoint: {bottle.request.path}"})

    @app.error(405)
    def wrong_method(_error: bottle.HTTPError) -> str:
        return _json(405, {"success": False, "reason": f"{bottle.request.method} is not allowed here"})

    @app.error(500)
    def failed(_error: bottle.HTTPError) -> str:
        return _json(500, {"success": False, "reason": "the gateway failed to answer; its log says why"})

    return app


def _elapsed(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.3f}ms"


def _done(started: float, reason: str) -> str:
    return _json(200, {"success": True, "reason": reason, "elapse": _elapsed(started)})


def to_query(select: sql.Select) -> Query:
    """The store's plan for a parsed SELECT."""
    bucket = select.bucket
    return Query(
        select.table,
        tuple((item.kind, item.alias) for item in select.items),
        select.names,
        select.time_from,
        select.time_to,
        tuple((f.op, f.value) for f in select.value_filters),
        bucket.width if bucket else None,
        bucket.origin if bucket else 0,
        select.group_by_name,
        select.order,
        select.order_by_name,
        select.limit,
        select.offset,
    )


def _csv(result: Result) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows(result.rows)
    return out.getvalue()
