"""`GET /db/watch/<TABLE>`: new readings of a table as server-sent events, as they are stored.

Each reading is one event:

    data: {"name": "temperature", "time": 1700000000000000000, "value": 21.5}

A comment line (`: keep-alive`) goes out every `keepalive` seconds when nothing else does, so that proxies keep the
connection and a client that went away is noticed. A client that does not keep up gets `event: dropped` with
`{"dropped": n, "reason": ...}` for readings skipped for it (hub.py bounds what waits for each client). When the
gateway stops, every stream gets `event: end` and ends. `?name=a&name=b` watches only those series.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator

import bottle

from gateway.http.base import ApiContext, ApiError, Body, handler, query_params
from gateway.http.hub import Watcher, WatchHub, WatchRefused

__all__ = ["register", "stream"]

# How often a stream with nothing to send checks whether its client went away.
_POLL = 1.0


def stream(hub: WatchHub, watcher: Watcher, gone: Callable[[], bool] = lambda: False) -> Generator[bytes, None, None]:
    """The event stream of one watcher; removes it when the stream ends, when `gone()` says the client went away
    (checked every second, so that its slot is soon free again), or when the WSGI server closes this generator."""
    try:
        # Sent at once: the client sees the answer start, and learns how long to wait before reconnecting.
        yield f"retry: 3000\n: watching {watcher.table}\n\n".encode()
        last_sent = time.monotonic()
        while True:
            batches, dropped, closed = watcher.take(min(hub.keepalive, _POLL))
            chunk = [_event(reading) for batch in batches for reading in batch]
            if dropped:
                reason = f"this client did not keep up: {dropped} reading(s) were not sent"
                chunk.append(_event({"dropped": dropped, "reason": reason}, "dropped"))
            if closed:
                chunk.append(_event({"reason": "the gateway is stopping"}, "end"))
            if not chunk and gone():
                return
            if not chunk and time.monotonic() - last_sent < hub.keepalive:
                continue
            yield "".join(chunk).encode() if chunk else b": keep-alive\n\n"
            last_sent = time.monotonic()
            if closed:
                return
    finally:
        hub.remove(watcher)


def _event(data: object, kind: str = "") -> str:
    if isinstance(data, tuple):
        data = {"name": data[0], "time": data[1], "value": data[2]}
    head = f"event: {kind}\n" if kind else ""
    return f"{head}data: {json.dumps(data)}\n\n"  # json.dumps escapes newlines: one data line per event


def register(app: bottle.Bottle, ctx: ApiContext) -> None:
    handle = handler(ctx)

    def db_watch(table: str, started: float) -> Body:
        hub = ctx.watch
        if hub is None:
            raise ApiError(503, "watching is not available in this gateway")
        found = ctx.store.table(table)
        if found is None:
            raise ApiError(404, f"no table {table.upper()}: create it first (POST /api/tables) or write to it")
        names = query_params().getall("name")
        try:
            watcher = hub.add(found.name, frozenset(names) if names else None)
        except WatchRefused as exc:
            raise ApiError(503, str(exc)) from None
        response = bottle.response
        response.content_type = "text/event-stream"
        response.set_header("Cache-Control", "no-cache")
        response.set_header("X-Accel-Buffering", "no")  # a proxy in front (nginx) must not hold events back
        # waitress notices a client that closed the connection (it reads ahead: channel_request_lookahead).
        gone = bottle.request.environ.get("waitress.client_disconnected") or (lambda: False)
        return stream(hub, watcher, gone)

    app.route("/db/watch/<table>", "GET", handle(db_watch))
