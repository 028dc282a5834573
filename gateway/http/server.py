"""The HTTP listener: waitress (a production WSGI server) on a thread of its own, started and stopped with the
gateway. Its request threads reach the event loop only through `ApiContext.loop`."""

from __future__ import annotations

import logging
import threading
from typing import Any

import waitress

log = logging.getLogger("gateway.http")


class HttpServer:
    def __init__(self, app: Any, host: str, port: int, *, threads: int = 4) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._threads = threads
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve; returns the address actually bound (a port of 0 picks a free one)."""
        try:
            self._server = waitress.create_server(
                self._app, host=self._host, port=self._port, threads=self._threads, ident="gateway"
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
        if self._server is not None:
            self._server.close()
        if self._thread is not None:
            self._thread.join(5)
