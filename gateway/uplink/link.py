"""The uplink: one connection to the upstream broker at a time, retried with backoff, carrying the forwarder's
readings and the bridge's messages up and the central system's commands down.

Commands: the uplink subscribes to <prefix>cmd/<name>/# upstream and publishes what arrives there locally as
cmd/<rest>, where the gateway's sensors (and sleeping MQTT-SN clients, on waking) subscribe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.mqtt.codec import Publish
from gateway.mqtt.session import Message
from gateway.uplink.bridge import Bridge
from gateway.uplink.client import UpstreamClient, UpstreamError
from gateway.uplink.forwarder import Forwarder
from gateway.uplink.url import UplinkUrl

log = logging.getLogger("gateway.uplink")
SKIP_EXPIRED_EVERY = 3600.0
STEADY = 30.0  # seconds a connection must last for the next failure to start the backoff afresh
LOCAL_COMMANDS = "cmd/"


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    url: UplinkUrl
    client_id: str
    version: int
    keep_alive: int
    username: str | None = None
    password: bytes | None = None
    ssl: ssl.SSLContext | None = None
    command_prefix: str | None = None  # "<prefix>cmd/<name>/": commands come from below it; None: none
    reconnect_max: float = 300.0


class Uplink:
    def __init__(
        self,
        settings: UplinkSettings,
        forwarder: Forwarder | None,
        bridge: Bridge,
        publish_local: Callable[[Message], None],
    ) -> None:
        self.settings = settings
        self.forwarder = forwarder
        self.bridge = bridge
        self._publish_local = publish_local
        self._task: asyncio.Task[None] | None = None
        self.connected_since: float | None = None
        self.disconnected_since: float | None = time.time()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.attempts = 0
        self.commands = 0
        self._skipped_at = time.monotonic()

    async def start(self) -> None:
        self.bridge.start()
        self._task = asyncio.create_task(self._run(), name="uplink")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # the connection is closed on the way out
        if self.forwarder is not None:
            await self.forwarder.flush()

    async def _run(self) -> None:
        delay = 1.0
        while True:
            began = time.monotonic()
            try:
                await self._connected_once()
            except UpstreamError as exc:
                self._note(str(exc))
            except Exception as exc:  # a bug must not end the uplink for good: logged, then retried
                log.exception("uplink: unexpected error")
                self._note(f"unexpected error: {exc!r}")
            if time.monotonic() - began > STEADY:
                delay = 1.0
            # Equal jitter: gateways that lost the same upstream do not all come back in the same second.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.settings.reconnect_max)
            if self.forwarder is not None and time.monotonic() - self._skipped_at >= SKIP_EXPIRED_EVERY:
                self._skipped_at = time.monotonic()
                await self.forwarder.skip_expired()

    async def _connected_once(self) -> None:
        settings = self.settings
        self.attempts += 1
        client = await UpstreamClient.connect(
            settings.url.host,
            settings.url.port,
            client_id=settings.client_id,
            version=settings.version,
            username=settings.username,
            password=settings.password,
            ssl=settings.ssl,
            keep_alive=settings.keep_alive,
            # With commands, a session the upstream keeps: it holds the commands sent while the link is down.
            clean_start=settings.command_prefix is None,
            on_message=self._command,
        )
        self.connected_since, self.disconnected_since = time.time(), None
        log.info("uplink connected to %s as %s", settings.url, settings.client_id)
        try:
            if settings.command_prefix is not None:
                topic_filter = settings.command_prefix + "#"
                (code,) = await client.subscribe([(topic_filter, 1)])
                if code >= 0x80:
                    self._note(f"the upstream refused the command subscription {topic_filter} (reason 0x{code:02X})")
            self.bridge.connected(client)
            if self.forwarder is not None:
                await self.forwarder.run(client)
            else:
                raise await client.wait_closed()
        finally:
            self.connected_since, self.disconnected_since = None, time.time()
            self.bridge.disconnected()
            await client.disconnect()

    def _note(self, error: str) -> None:
        """Keep the last error; log it when it changes, not at every retry."""
        if error != self.last_error:
            log.warning("uplink to %s: %s", self.settings.url, error)
        self.last_error, self.last_error_at = error, time.time()

    def _command(self, publish: Publish) -> None:
        prefix = self.settings.command_prefix
        if prefix is None or not publish.topic.startswith(prefix) or publish.topic == prefix:
            return
        self.commands += 1
        topic = LOCAL_COMMANDS + publish.topic[len(prefix) :]
        self._publish_local(Message(topic, publish.payload, publish.qos, sender="$uplink"))

    # -- status ---------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For GET /api/uplink and /metrics; called on the event loop."""
        settings = self.settings
        out: dict[str, Any] = {
            "url": str(settings.url),
            "client_id": settings.client_id,
            "connected": self.connected_since is not None,
            "connected_since": self.connected_since,
            "disconnected_since": self.disconnected_since,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "connect_attempts": self.attempts,
            "commands_received": self.commands,
            "command_topic": None if settings.command_prefix is None else settings.command_prefix + "#",
        }
        forwarder = self.forwarder
        if forwarder is not None:
            oldest = forwarder.oldest_arrival_ns()
            out["forwarding"] = {
                "backlog": sum(forwarder.backlog.values()),
                "backlog_by_table": dict(sorted(forwarder.backlog.items())),
                "oldest_waiting_seconds": None if oldest is None else max(0.0, time.time() - oldest / 1e9),
                "forwarded": forwarder.forwarded,
                "messages": forwarder.messages,
                "rate": forwarder.rate(),
                "dropped_by_table": dict(sorted(forwarder.cursor.dropped.items())),
                "refused_by_table": dict(sorted(forwarder.refused.items())),
            }
        if self.bridge.filters:
            out["bridge"] = {"sent": self.bridge.sent, "queued": self.bridge.queued}
        return out
