"""The HTTP listener: waitress (a production WSGI server) on a thread of its own, started and stopped with the
gateway. Its request threads reach the event loop only through `ApiContext.loop`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel

log = logging.getLogger("gateway.http")

# Request threads. A /db/watch stream holds one for as long as it lasts, so there are more than plain requests
# need; threads that wait cost a little memory each. The watch hub serves at most THREADS - 2 streams.
THREADS = 8
# How much of an answer waitress holds for a client that reads slowly before the request thread waits: a slow
# event-stream client then stops taking events (the hub drops them for it) instead of growing a buffer.
_OUTBUF_HIGH_WATERMARK = 512 << 10


class HttpServer:
    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        threads: int = THREADS,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        """`on_stop` is called first thing in `stop`: it ends what holds request threads (event streams)."""
        self._app = app
        self._host = host
        self._port = port
        self._threads = threads
        self._on_stop = on_stop
        self._map: dict[int, Any] = {}  # waitress's socket map: ours, so that stop can close every connection
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve; returns the address actually bound (a port of 0 picks a free one)."""
        try:
            self._server = waitress.create_server(
                self._app,
                map=self._map,
                host=self._host,
                port=self._port,
                threads=self._threads,
                ident="gateway",
                outbuf_high_watermark=_OUTBUF_HIGH_WATERMARK,
                # Reading ahead while a request is answered lets waitress see a client close the connection, and an
                # event stream end at once rather than at its next write.
                channel_request_lookahead=1,
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot listen for HTTP on {self._host}:{self._port}: {exc.strerror}. Is something else using "
                "that port? Choose another with --http-port or [http] port.",
            ) from exc
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        return str(self._server.effective_host), int(self._server.effective_port)

    def stop(self) -> None:
        """Ends event streams, lets requests being answered finish (up to 3 s), then closes the listener and every
        connection left (idle keep-alive ones would keep waitress running)."""
        if self._on_stop is not None:
            self._on_stop()
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.task_dispatcher.shutdown(timeout=3)

        def close_all() -> None:
            for dispatcher in list(self._map.values()):
                if isinstance(dispatcher, HTTPChannel):
                    dispatcher.handle_close()  # also wakes a request thread waiting for a slow client
            wasyncore.close_all(self._map)  # the listener, the trigger

        # On waitress's own thread, between two polls: closing sockets under a running select() is not safe.
        server.trigger.pull_trigger(close_all)
        thread.join(5)
        if thread.is_alive():
            log.warning("the HTTP server did not stop within 5 s")
