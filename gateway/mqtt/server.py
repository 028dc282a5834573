"""The MQTT listeners: plain TCP, TLS and WebSocket, each feeding `MqttConnection` protocols."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from gateway.mqtt.broker import Broker
from gateway.mqtt.connection import ConnectionLimits, Listening, MqttConnection
from gateway.mqtt.websocket import WebSocketConnection

log = logging.getLogger("gateway.mqtt")


@dataclass(slots=True)
class Listener:
    name: str  # "mqtt", "mqtts" or "mqtt-ws", as shown in the start-up line
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    websocket_path: str | None = None  # MQTT over WebSocket at this HTTP path; None: MQTT straight on TCP
    option: str = "the config file"  # where its port is chosen, for the message when it cannot be bound


class MqttServer:
    def __init__(self, broker: Broker, limits: ConnectionLimits, listeners: list[Listener]) -> None:
        self.broker = broker
        self.listeners = listeners
        self._shared = Listening(broker, limits)
        self._servers: list[asyncio.Server] = []

    async def start(self) -> list[tuple[str, str, int]]:
        """Open every listener; returns (name, host, port) with the ports actually bound."""
        loop = asyncio.get_running_loop()
        bound = []
        for listener in self.listeners:
            try:
                server = await loop.create_server(
                    self._protocol(listener),
                    listener.host,
                    listener.port,
                    ssl=listener.ssl_context,
                    reuse_address=True,
                    backlog=1024,
                )
            except OSError as exc:
                await self.stop()
                raise OSError(
                    exc.errno,
                    f"cannot listen for {listener.name} on {listener.host}:{listener.port}: {exc.strerror}. "
                    f"Is another broker running there? Choose another port with {listener.option}.",
                ) from exc
            self._servers.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            bound.append((listener.name, host, port))
        return bound

    def _protocol(self, listener: Listener) -> Callable[[], asyncio.Protocol]:
        shared, path = self._shared, listener.websocket_path
        if path is None:
            return lambda: MqttConnection(shared)
        return lambda: WebSocketConnection(shared, path)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        # Messages already with their hooks (being stored) are finished and acknowledged before anything closes.
        for connection in self._shared.connections:
            connection.stop_reading()
        deadline = loop.time() + 5.0
        while any(c.busy for c in self._shared.connections) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._shared.connections):
            connection.shut_down()
        # Let every connection finish (its session saved, its socket flushed) before the broker stops.
        deadline = loop.time() + 2.0
        while self._shared.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._shared.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._shared.password_checks.shutdown(wait=False, cancel_futures=True)

    @property
    def connections(self) -> set[MqttConnection]:
        return self._shared.connections
