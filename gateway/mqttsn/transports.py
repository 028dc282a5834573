"""Transports of the MQTT-SN gateway: they move datagrams and know nothing of the protocol."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from gateway.mqttsn.gateway import Address

log = logging.getLogger("gateway.mqttsn")


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket: every datagram goes to `on_datagram` with its sender's (host, port) as the address."""

    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        try:
            self._on_datagram(data, addr)
        except Exception:
            # One client's datagram must never stop the others being served.
            log.exception("MQTT-SN datagram from %s could not be handled", addr)

    def error_received(self, exc: Exception) -> None:
        log.info("MQTT-SN UDP: %s", exc)

    def send(self, data: bytes, address: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, address)  # type: ignore[arg-type]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_udp(host: str, port: int, on_datagram: Callable[[bytes, Address], None]) -> tuple[UdpEndpoint, int]:
    """Bind a UDP endpoint; returns it and the port actually bound (0 picks a free one)."""
    loop = asyncio.get_running_loop()
    try:
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: UdpEndpoint(on_datagram), local_addr=(host, port)
        )
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen for MQTT-SN on UDP {host}:{port}: {exc.strerror}. Is another gateway using it? Choose "
            "another port with --mqttsn-port or [mqttsn] port.",
        ) from exc
    endpoint.transport = transport  # connection_made may run only after this returns
    return endpoint, int(transport.get_extra_info("sockname")[1])
