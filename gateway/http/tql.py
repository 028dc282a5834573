"""`POST /db/tql`: machbase-neo's TQL, the part people use for charts and exports (docs/tql.md), and the files a
chart needs: its script (`/web/api/tql-assets/<id>.js`) and Apache ECharts (`/web/echarts/echarts.min.js`, vendored
in gateway/http/echarts/). The paths are neo's, so that a page written for neo finds them on the gateway too.

The script is parsed and run by gateway/tql (pure); this module gives it the store, through the same SQL subset
and plan as /db/query, and shapes the answer: neo's JSON, CSV, or a chart's JSON (its id, size, theme and the
absolute URLs of its scripts, built from the request's Host: neo's walk-through loads them from a local file).

A chart's script is kept in memory for `_KEEP_SECONDS`, and at most `_CACHE_BYTES` of them in all (the oldest go
first). Its URL holds a random id and is the only way to it: the files need no token, even with
`[http] token_for_reads`, because a `<script src>` cannot send one. /db/tql itself needs what /db/query needs.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bottle
import orjson

from gateway.http import sql
from gateway.http.base import ApiContext, ApiError, Body, csv_text, handler, json_response
from gateway.http.page import Asset, make_asset, send_asset
from gateway.store.database import StoreError
from gateway.store.query import stream
from gateway.tql import Output, SourceError, TqlError, parse, run
from gateway.tql.chart import chart_page, chart_script

__all__ = ["ASSETS", "CHART_ASSETS", "ECHARTS", "ECHARTS_DIR", "ECHARTS_VERSION", "ChartCache", "register"]

ECHARTS_VERSION = "5.6.0"
ECHARTS_DIR = Path(__file__).with_name("echarts")
ECHARTS = "/web/echarts"  # neo's path of its own copy
CHART_ASSETS = "/web/api/tql-assets"  # neo's path of a chart's script
ASSETS = (ECHARTS, CHART_ASSETS)  # the paths under which /db/tql's files are served: reads, for CORS
MAX_SCRIPT = 64 << 10  # a TQL script is a few lines
_KEEP_SECONDS = 600
_CACHE_BYTES = 16 << 20
_VENDOR_FILES = {
    "echarts.min.js": "text/javascript; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class _Script:
    body: bytes
    expires: float  # time.monotonic()


class ChartCache:
    """Charts' scripts by id, each for `keep` seconds, `limit` bytes in all. Requests come on several threads."""

    def __init__(self, keep: float = _KEEP_SECONDS, limit: int = _CACHE_BYTES) -> None:
        self.keep = keep
        self.limit = limit
        self._scripts: OrderedDict[str, _Script] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, key: str, body: bytes, now: float) -> None:
        with self._lock:
            self._expire(now)
            self._scripts[key] = _Script(body, now + self.keep)
            self._bytes += len(body)
            while self._bytes > self.limit and len(self._scripts) > 1:
                _, dropped = self._scripts.popitem(last=False)
                self._bytes -= len(dropped.body)

    def get(self, key: str, now: float) -> bytes | None:
        with self._lock:
            self._expire(now)
            found = self._scripts.get(key)
            return None if found is None else found.body

    def __len__(self) -> int:
        return len(self._scripts)

    def _expire(self, now: float) -> None:
        # Oldest first: the first one still alive ends the sweep.
        while self._scripts:
            key, oldest = next(iter(self._scripts.items()))
            if oldest.expires > now:
                return
            del self._scripts[key]
            self._bytes -= len(oldest.body)


class _Vendor:
    """ECharts' files, read and gzipped on first use: a megabyte that a gateway without charts never holds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Asset | None:
        if name not in _VENDOR_FILES:
            return None
        with self._lock:
            if name not in self._files:
                body = (self.folder / name).read_bytes()
                # Level 6, not the page's 9: this megabyte is compressed on a request, on a board's slow CPU.
                self._files[name] = make_asset(body, _VENDOR_FILES[name], compress=True, level=6)
            return self._files[name]


def _origin() -> str:
    """scheme://host[:port] as the client reached us (its Host header): the page may come from anywhere."""
    parts = bottle.request.urlparts
    return f"{parts.scheme}://{parts.netloc}"


def _wants_html() -> bool:
    """A page for a browser that asks for one (a form, an address bar, or X-Tql-Output: html); JSON otherwise."""
    request = bottle.request
    output = (request.get_header("X-Tql-Output") or request.get_header("X-Chart-Output") or "").strip().lower()
    if output:
        return output == "html"
    return str(request.get_header("Accept", "")).lower().lstrip().startswith("text/html")


def _cell(value: Any) -> Any:
    """A CSV cell: a list (MAPVALUE(0, list(...))) as JSON text."""
    return orjson.dumps(value).decode() if isinstance(value, list | dict) else value


def _run_sql(ctx: ApiContext, now_ns: int) -> Any:
    def run_sql(text: str) -> tuple[list[str], list[str], Iterable[list[object]]]:
        try:
            statement = sql.parse(text, now_ns=now_ns)
        except sql.SqlError as exc:
            raise SourceError(str(exc)) from None
        if not isinstance(statement, sql.Select):
            raise SourceError("TQL only reads: create and drop tables through /db/query")
        try:
            return stream(ctx.store, sql.to_query(statement))
        except StoreError as exc:
            raise SourceError(str(exc)) from None

    return run_sql


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)
    cache = ChartCache()
    vendor = _Vendor(ECHARTS_DIR)

    def db_tql(started: float) -> Body:
        request = bottle.request
        if request.content_length > MAX_SCRIPT:
            raise ApiError(413, f"a TQL script of at most {MAX_SCRIPT} bytes is accepted")
        try:
            text = request.body.read(MAX_SCRIPT + 1).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the script is not valid UTF-8") from None
        if len(text.encode()) > MAX_SCRIPT:
            raise ApiError(413, f"a TQL script of at most {MAX_SCRIPT} bytes is accepted")
        now_ns = time.time_ns()
        try:
            output = run(parse(text), _run_sql(ctx, now_ns), now_ns=now_ns)
        except TqlError as exc:
            return json_response(
                400, {"success": False, "reason": str(exc), "line": exc.pos.line, "column": exc.pos.column}
            )
        return _answer(output, started, cache)

    def chart_asset(name: str, started: float) -> Body:
        body = cache.get(name.removesuffix(".js"), time.monotonic()) if name.endswith(".js") else None
        if body is None:
            return json_response(
                404,
                {
                    "success": False,
                    "reason": f"no chart {name}: charts are kept "
                    f"{_KEEP_SECONDS // 60} minutes; run the TQL script again",
                },
            )
        bottle.response.content_type = "text/javascript; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-cache")
        bottle.response.set_header("X-Content-Type-Options", "nosniff")
        return body

    def echarts_file(name: str, started: float) -> Body:
        found = vendor.get(name)
        if found is None:
            return json_response(404, {"success": False, "reason": f"no such file: {bottle.request.path}"})
        return send_asset(found, "public, max-age=86400")

    def open_route(func: Any) -> Any:
        """The files of a chart: no token (a <script src> cannot send one), errors as JSON all the same."""

        def wrapped(name: str) -> Body:
            try:
                return func(name, started=time.perf_counter())  # type: ignore[no-any-return]
            except ApiError as exc:
                return json_response(exc.status, {"success": False, "reason": exc.reason})

        return wrapped

    def _answer(output: Output, started: float, scripts: ChartCache) -> Body:
        table = output.table
        if output.sink == "csv":
            bottle.response.content_type = "text/csv"
            rows = ([_cell(v) for v in row] for row in table.rows)
            return csv_text(table.columns if output.header else None, rows)
        if output.sink == "json":
            data = {"columns": table.columns, "types": table.types, "rows": table.rows}
            elapse = f"{(time.perf_counter() - started) * 1000:.3f}ms"
            return json_response(200, {"data": data, "success": True, "reason": "success", "elapse": elapse})
        chart = output.chart
        assert chart is not None
        key = secrets.token_urlsafe(16)
        chart_id = chart.chart_id or key
        origin = _origin()
        echarts_url = f"{origin}{ECHARTS}/echarts.min.js"
        script_url = f"{origin}{CHART_ASSETS}/{key}.js"
        scripts.put(key, chart_script(chart, chart_id, echarts_url).encode(), time.monotonic())
        bottle.response.set_header("X-Chart-Type", "echarts")
        if _wants_html() and not chart.json:
            bottle.response.content_type = "text/html; charset=utf-8"
            return chart_page(chart, chart_id, echarts_url, script_url)
        return json_response(
            200,
            {
                "chartID": chart_id,
                "jsAssets": [echarts_url],
                "jsCodeAssets": [script_url],
                "style": {"width": chart.width, "height": chart.height},
                "theme": chart.theme,
            },
        )

    app.route("/db/tql", "POST", handle(db_tql))
    app.route(f"{CHART_ASSETS}/<name>", "GET", open_route(chart_asset))
    app.route(f"{ECHARTS}/<name>", "GET", open_route(echarts_file))
