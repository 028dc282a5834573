"""What every route module of the HTTP API shares: `ApiContext`, which app.py fills (with `Status`, the small
interface through which the other parts' numbers arrive), the token check, and the `handler` decorator that turns
every failure into a JSON answer `{"success": false, "reason": ...}` with a 4xx/5xx status.

The route modules (api.py for neo's /db/*, rest.py, watch.py, metrics.py, backup.py, openapi.py) import this module
and `api.make_app` imports them: keeping the shared pieces here keeps those imports one-way.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import bottle
import orjson

from gateway.activity import Activity
from gateway.http.hub import WatchHub
from gateway.store.database import StoreError, TimeSeriesStore
from gateway.store.writer import WriteFailed

T = TypeVar("T")
# What a route returns: a whole answer, or chunks that the WSGI server sends as they come (streams, files).
Body: TypeAlias = str | bytes | Iterable[bytes]
Route: TypeAlias = Callable[..., Body]


@dataclass(frozen=True, slots=True)
class Status:
    """The other parts' numbers at one moment, for /metrics and /api/status: app.py copies them out of the broker,
    the ingest hook and the store, so that the HTTP layer needs none of their classes. Counters count since the
    gateway started."""

    started_at: float  # Unix time
    data_dir: Path
    min_free_bytes: int  # the disk guard's threshold; 0 when off
    mqtt_clients_connected: int
    mqtt_clients_maximum: int
    mqtt_connections_refused: int
    mqtt_messages_received: int
    mqtt_messages_sent: int
    mqtt_messages_dropped: int
    mqtt_publish_rejected: int
    mqtt_protocol_errors: int
    mqtt_bytes_received: int
    mqtt_bytes_sent: int
    mqttsn_clients_connected: int  # awake or asleep
    mqttsn_clients_asleep: int
    mqttsn_datagrams_received: int
    mqttsn_datagrams_malformed: int
    mqttsn_publish_congested: int
    ingest_messages: int
    ingest_readings: int
    ingest_rejected: int
    store_batches: int
    store_writes: int  # keys written or deleted, catalog records included
    store_sync_seconds: float  # time spent in durable (fsynced) writes
    store_syncs: int  # durable batches written


@dataclass(slots=True)
class ApiContext:
    store: TimeSeriesStore
    loop: asyncio.AbstractEventLoop
    token: str = ""  # empty: writes and drops are refused (the API is read-only)
    token_for_reads: bool = False
    # Origins of web pages elsewhere that may read, and write (with the token), through browsers: gateway/http/cors.py.
    cors_read_origins: tuple[str, ...] = ("*",)
    cors_write_origins: tuple[str, ...] = ()
    # The numbers of the other parts, for /metrics and /api/status; app.py provides it. None: those answer 503.
    status: Callable[[], Status] | None = None
    # Fans stored readings out to /db/watch streams; app.py registers it as a store listener. None: 503.
    watch: WatchHub | None = None
    # Makes a backup and returns the path of the finished .tar.gz, which the API deletes once sent. None: 503.
    backup: Callable[[], Path] | None = None
    # The host name advertised over mDNS (<name>.local), after any rename on a conflict; "" while none is.
    mdns_name: Callable[[], str] = lambda: ""
    # The gateway's name: [mdns] name, or the one made from the host name (also when mDNS is off).
    name: str = ""
    # Who has been seen and the last refusals (/api/devices, /api/errors); told of HTTP writes on the event loop.
    activity: Activity | None = None
    # The listeners as (name, host, port), with the ports really bound: where sensors should connect.
    listeners: Callable[[], list[tuple[str, str, int]]] = lambda: []
    # The uplink's status (gateway/uplink/link.py `Uplink.status`), for /api/uplink, /metrics and /api/status; to be
    # called on the event loop (call_on_loop). None: no uplink is configured.
    uplink: Callable[[], dict[str, Any]] | None = None


class ApiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def json_response(status: int, body: dict[str, Any]) -> bytes:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    # orjson: a day of readings (86,400 rows) encodes in about 10 ms instead of 90.
    return orjson.dumps(body)


def csv_response(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV answer with a header line."""
    bottle.response.content_type = "text/csv"
    return csv_text(columns, rows)


def csv_text(columns: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> str:
    """CSV lines of `rows`, after a header line of `columns` unless None."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if columns is not None:
        writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def query_params() -> bottle.FormsDict:
    """The query string decoded as UTF-8 (bottle's plain `request.query` gives Latin-1 strings)."""
    try:
        return bottle.request.query.decode()
    except UnicodeError:
        raise ApiError(400, "the query string is not valid UTF-8") from None


def on_loop(ctx: ApiContext, coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro` on the event loop that owns the store's writes, and waits for it (from a request thread)."""
    return asyncio.run_coroutine_threadsafe(coro, ctx.loop).result(timeout=30)


def call_on_loop(ctx: ApiContext, function: Callable[..., T], *args: Any) -> T:
    """Calls `function` on the event loop and waits for its result: the loop owns the client activity, so a request
    thread neither reads it while the loop changes it nor answers before what it recorded is visible."""

    async def call() -> T:
        return function(*args)

    return on_loop(ctx, call())


def given_token() -> str:
    given = bottle.request.get_header("Authorization", "").removeprefix("Bearer ").strip()
    return str(given or bottle.request.query.get("token", ""))


def require_token(ctx: ApiContext, what: str) -> None:
    if not ctx.token:
        raise ApiError(403, f"{what} needs a token, and none is configured: set [http] token in the config")
    if not hmac.compare_digest(given_token().encode(), ctx.token.encode()):
        raise ApiError(401, f"{what} needs the API token: send 'Authorization: Bearer <token>'")


def handler(ctx: ApiContext) -> Callable[[Route], Route]:
    """Wraps a route: the token for reads when configured, errors as JSON. The route gets `started` (a
    perf_counter reading) as a keyword, for neo's "elapse"."""

    def decorate(func: Route) -> Route:
        def wrapped(*args: Any, **kwargs: Any) -> Body:
            started = time.perf_counter()
            try:
                if ctx.token_for_reads:
                    require_token(ctx, "this gateway's API")
                return func(*args, started=started, **kwargs)
            except ApiError as exc:
                return json_response(exc.status, {"success": False, "reason": exc.reason})
            except StoreError as exc:
                return json_response(400, {"success": False, "reason": str(exc)})
            except WriteFailed as exc:
                return json_response(503, {"success": False, "reason": str(exc)})

        return wrapped

    return decorate
