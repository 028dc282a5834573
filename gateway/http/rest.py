"""The REST side of the API, for the web page and for scripts: tables, their series, the latest values, and
`GET /api/query` (raw readings or aggregates per time step, as JSON or CSV).

Answers are JSON `{"success": true, ...}`; every error is a 4xx/5xx with `{"success": false, "reason": ...}` that
names what was wrong (the parameter, the table). Creating and dropping tables need the token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, cast

import bottle

from gateway.http.base import (
    ApiContext,
    ApiError,
    Body,
    csv_response,
    handler,
    json_response,
    on_loop,
    query_params,
    require_token,
)
from gateway.http.times import TimeError, parse_duration, parse_time
from gateway.store.database import Retention, StoreError, Table
from gateway.store.query import AGGREGATES, ColumnKind, Direction, Query, execute, latest, series_summary

__all__ = ["MAX_ROWS", "QueryParams", "build_query", "register"]

# An answer is built in memory before it is sent: on a 512 MB board, 50,000 rows (a few MB of JSON) is the most
# one request may ask for. Longer ranges are for a step, which aggregates on the gateway.
MAX_ROWS = 50_000
# The same rule as table names in ingest topics, so that every table can also be written over MQTT.
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}", re.ASCII)
_AGGREGATE_ORDER = ("avg", "min", "max", "sum", "count", "first", "last")


class QueryParams:
    """The parameters of /api/query, checked; every error names its parameter."""

    def __init__(self, params: bottle.FormsDict, now_ns: int) -> None:
        self.table = _required(params, "table")
        self.names = tuple(params.getall("name")) or None
        self.time_from = _time(params, "from", now_ns)
        self.time_to = _time(params, "to", now_ns)
        step = params.get("step")
        try:
            self.step = parse_duration(step) if step else None
        except TimeError as exc:
            raise ApiError(400, f"parameter 'step': {exc}") from None
        self.aggregates = _aggregates(params.getall("aggregate"))
        if self.step is not None and not self.aggregates:
            self.aggregates = ("avg",)
        self.format = _choice(params, "format", ("json", "csv"))
        self.order = cast(Direction, _choice(params, "order", ("asc", "desc")))
        self.limit = _limit(params)


def build_query(p: QueryParams) -> Query:
    """Raw NAME, TIME, VALUE rows; with a step, NAME, TIME (the start of each step) and the aggregates per series
    and step; with aggregates but no step, NAME and the aggregates per series over the whole range."""
    columns: list[tuple[ColumnKind, str]]
    if p.aggregates:
        columns = [("name", "NAME")]
        if p.step is not None:
            columns.append(("bucket", "TIME"))
        columns += [(cast(ColumnKind, kind), kind.upper()) for kind in p.aggregates]
    else:
        columns = [("name", "NAME"), ("time", "TIME"), ("value", "VALUE")]
    # One row more than allowed tells "too many" from "exactly the cap".
    limit = p.limit if p.limit is not None else MAX_ROWS + 1
    return Query(
        p.table,
        tuple(columns),
        p.names,
        p.time_from,
        p.time_to,
        bucket_width=p.step,
        group_by_name=bool(p.aggregates),
        order=p.order,
        limit=limit,
    )


def _required(params: bottle.FormsDict, name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise ApiError(400, f"parameter '{name}' is missing")
    return str(value)


def _time(params: bottle.FormsDict, name: str, now_ns: int) -> int | None:
    text = params.get(name)
    if not text:
        return None
    try:
        return parse_time(text, now_ns)
    except TimeError as exc:
        raise ApiError(400, f"parameter '{name}': {exc}") from None


def _aggregates(values: Sequence[str]) -> tuple[str, ...]:
    wanted: list[str] = []
    for value in values:
        for part in value.lower().split(","):
            kind = part.strip()
            if kind not in AGGREGATES:
                raise ApiError(400, f"parameter 'aggregate': {kind!r} is not one of {', '.join(_AGGREGATE_ORDER)}")
            if kind not in wanted:
                wanted.append(kind)
    return tuple(wanted)


def _choice(params: bottle.FormsDict, name: str, choices: tuple[str, ...]) -> str:
    value = str(params.get(name) or choices[0]).lower()
    if value not in choices:
        raise ApiError(400, f"parameter '{name}': {value!r} is not one of {', '.join(choices)}")
    return value


def _limit(params: bottle.FormsDict) -> int | None:
    text = params.get("limit")
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_ROWS:
        raise ApiError(400, f"parameter 'limit': give a whole number from 1 to {MAX_ROWS}")
    return int(text)


def _table(ctx: ApiContext, name: str) -> Table:
    table = ctx.store.table(name)
    if table is None:
        raise ApiError(404, f"no table {name.upper()}")
    return table


def _table_json(ctx: ApiContext, table: Table) -> dict[str, Any]:
    retention = table.retention
    return {
        "name": table.name,
        "created": table.created_ns,
        "series": len(ctx.store.series_names(table.name)),
        "retention": {"raw": retention.raw, "minute": retention.minute, "hour": retention.hour},
    }


def _retention(value: object) -> Retention:
    """A retention object {"raw", "minute", "hour"}: days (0 keeps for ever) or null (the gateway's default)."""
    if not isinstance(value, dict) or not set(value) <= {"raw", "minute", "hour"}:
        raise ApiError(400, 'retention: give an object with "raw", "minute" and/or "hour": days, 0 or null')
    for kind, days in value.items():
        if days is not None and (isinstance(days, bool) or not isinstance(days, int | float) or days < 0):
            raise ApiError(400, f"retention {kind!r}: {days!r} is not a number of days >= 0 (0 keeps, null: default)")
    return Retention(value.get("raw"), value.get("minute"), value.get("hour"))


def _rows(table: str, columns: list[str], types: list[str], rows: Sequence[Sequence[object]], fmt: str) -> Body:
    if fmt == "csv":
        return csv_response(columns, rows)
    return json_response(200, {"success": True, "table": table, "columns": columns, "types": types, "rows": rows})


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)

    def list_tables(started: float) -> Body:
        tables = [_table_json(ctx, t) for t in ctx.store.tables()]
        return json_response(200, {"success": True, "tables": tables})

    def create_table(started: float) -> Body:
        require_token(ctx, "creating a table")
        body: Any = bottle.request.json  # bottle answers 400 itself when the body is not JSON
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise ApiError(400, 'send a JSON object {"name": "<table>"} with Content-Type application/json')
        if not _TABLE_NAME.fullmatch(name):
            raise ApiError(
                400, f"table name {name!r} is not valid: letters, digits and underscores, from a letter, at most 40"
            )
        retention = _retention(body.get("retention", {}))
        try:
            table = on_loop(ctx, ctx.store.create_table(name, retention=retention))
        except StoreError:
            if ctx.store.table(name) is None:
                raise
            raise ApiError(409, f"table {name.upper()} already exists") from None
        answer = {"success": True, "table": _table_json(ctx, table)}
        bottle.response.set_header("Location", f"/api/tables/{table.name}")
        return json_response(201, answer)

    def drop_table(table: str, started: float) -> Body:
        require_token(ctx, "dropping a table")
        found = _table(ctx, table)
        on_loop(ctx, ctx.store.drop_table(found.name))
        return json_response(200, {"success": True, "reason": f"table {found.name} dropped"})

    def set_retention(table: str, started: float) -> Body:
        require_token(ctx, "changing a table's retention")
        found = _table(ctx, table)
        retention = _retention(bottle.request.json)
        changed = on_loop(ctx, ctx.store.set_retention(found.name, retention))
        return json_response(200, {"success": True, "table": _table_json(ctx, changed)})

    def list_series(table: str, started: float) -> Body:
        found = _table(ctx, table)
        text = query_params().get("q", "").casefold()
        series = [s for s in series_summary(ctx.store, found.name) if text in s["name"].casefold()]
        return json_response(200, {"success": True, "table": found.name, "series": series})

    def api_latest(started: float) -> Body:
        params = query_params()
        found = _table(ctx, _required(params, "table"))
        fmt = _choice(params, "format", ("json", "csv"))
        names = params.getall("name") or None
        rows = [list(reading) for reading in latest(ctx.store, found.name, names)]
        return _rows(found.name, ["NAME", "TIME", "VALUE"], ["string", "datetime", "double"], rows, fmt)

    def api_query(started: float) -> Body:
        p = QueryParams(query_params(), time.time_ns())
        found = _table(ctx, p.table)
        p.table = found.name
        result = execute(ctx.store, build_query(p))
        if p.limit is None and len(result.rows) > MAX_ROWS:
            hint = "a larger step" if p.step else "a step (such as step=1m) to aggregate"
            raise ApiError(
                400, f"the answer has more than {MAX_ROWS} rows: give {hint}, a shorter from/to range, or a limit"
            )
        return _rows(found.name, result.columns, result.types, result.rows, p.format)

    app.route("/api/tables", "GET", handle(list_tables))
    app.route("/api/tables", "POST", handle(create_table))
    app.route("/api/tables/<table>", "DELETE", handle(drop_table))
    app.route("/api/tables/<table>/retention", "PUT", handle(set_retention))
    app.route("/api/tables/<table>/series", "GET", handle(list_series))
    app.route("/api/latest", "GET", handle(api_latest))
    app.route("/api/query", "GET", handle(api_query))
