"""Transports of the MQTT-SN gateway: they move datagrams and know nothing of the protocol."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import cast

import serial

from gateway.mqttsn import codec
from gateway.mqttsn.framing import BROADCAST_64, LengthFramer, XBeeFramer, encode_tx
from gateway.mqttsn.gateway import Address, SerialAddress

log = logging.getLogger("gateway.mqttsn")
RECEIVE_BUFFER = 4 << 20
READ_BATCH = 256  # datagrams read per wake-up, before other work gets its turn


class UdpEndpoint:
    """One UDP socket: every datagram goes to `on_datagram` with its sender's (host, port) as the address.

    Read with add_reader, draining up to READ_BATCH datagrams per wake-up: asyncio's datagram transport reads one
    per event-loop iteration, and that iteration (an epoll call and the loop's bookkeeping) cost more than
    handling the datagram itself."""

    def __init__(self, sock: socket.socket, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.sock = sock
        self._on_datagram = on_datagram
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            # UDP has no flow control: a burst from many sensors waits in this buffer while the loop is busy,
            # instead of being dropped by the kernel (which caps it at net.core.rmem_max).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        for _ in range(READ_BATCH):
            try:
                data, address = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP "port unreachable" for an earlier send
                log.info("MQTT-SN UDP: %s", exc)
                continue
            try:
                self._on_datagram(data, address)
            except Exception:
                # One client's datagram must never stop the others being served.
                log.exception("MQTT-SN datagram from %s could not be handled", address)

    def send(self, data: bytes, address: Address) -> None:
        try:
            self.sock.sendto(data, cast(tuple[str, int], address))
        except (BlockingIOError, InterruptedError):
            pass  # the socket's send buffer is full: lost, like any datagram (QoS 1/2 are sent again)
        except OSError as exc:
            log.info("MQTT-SN UDP: cannot send to %s: %s", address, exc)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _join(sock: socket.socket, group: str, interface: str) -> None:
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(interface))


def multicast_sender(endpoint: UdpEndpoint, interface: str) -> None:
    """Let `endpoint` send to a multicast group on `interface` (0.0.0.0: the default one), one hop away (the
    radius of a LAN), and hear itself (other gateways on this host, tests)."""
    sock = endpoint.sock
    if interface != "0.0.0.0":
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)


async def open_multicast(
    group: str, port: int, interface: str, on_datagram: Callable[[bytes, Address], None]
) -> UdpEndpoint:
    """A socket that hears the discovery group (SEARCHGW). Several gateways on one host may share the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", port))
        _join(sock, group, interface)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"cannot join the MQTT-SN discovery group {group}:{port} on {interface}: {exc.strerror}. Set [mqttsn] "
            "multicast = false, or another multicast_group / multicast_port.",
        ) from exc
    return UdpEndpoint(sock, on_datagram)


async def open_udp(host: str, port: int, on_datagram: Callable[[bytes, Address], None]) -> tuple[UdpEndpoint, int]:
    """Bind a UDP endpoint; returns it and the port actually bound (0 picks a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"cannot listen for MQTT-SN on UDP {host}:{port}: {exc.strerror}. Is another gateway using it? Choose "
            "another port with --mqttsn-port or [mqttsn] port.",
        ) from exc
    endpoint = UdpEndpoint(sock, on_datagram)
    return endpoint, endpoint.port


class SerialEndpoint:
    """MQTT-SN over a serial line (pyserial): plain frames with their own Length, each perhaps in the forwarder
    encapsulation (§5.5), or Digi XBee API mode 2 frames. Read on the event loop (add_reader, no thread); a device
    that goes away is reopened every `retry` seconds, without a restart."""

    def __init__(
        self,
        device: str,
        baudrate: int,
        framing: str,
        on_datagram: Callable[[bytes, Address], None],
        *,
        retry: float = 2.0,
    ) -> None:
        self.device = device
        self.baudrate = baudrate
        self.framing = framing
        self._on_datagram = on_datagram
        self._retry = retry
        self._port: serial.Serial | None = None
        self._length = LengthFramer()
        self._xbee = XBeeFramer()
        self._reopen: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._closed = False

    def open(self) -> None:
        """Open the device now, or keep trying in the background if it is not there (yet)."""
        try:
            port = serial.Serial(self.device, self.baudrate, timeout=0, write_timeout=1)
        except (serial.SerialException, OSError) as exc:
            log.warning(
                "MQTT-SN serial %s cannot be opened (%s); trying again every %.0f s", self.device, exc, self._retry
            )
            self._reopen = asyncio.get_running_loop().call_later(self._retry, self.open)
            return
        self._port = port
        asyncio.get_running_loop().add_reader(port.fileno(), self._readable)
        log.info("MQTT-SN serial %s open at %d baud (%s framing)", self.device, self.baudrate, self.framing)

    def _readable(self) -> None:
        port = self._port
        assert port is not None
        try:
            data = port.read(port.in_waiting or 1)
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)
            return
        if not data:
            return
        if self.framing == "xbee":
            for rx in self._xbee.feed(data):
                self._deliver(rx.payload, SerialAddress(self.device, rx.source64, rx.source16))
            return
        for frame in self._length.feed(data):
            self._frame(frame)
        # A frame cut short by line noise is given up once the line has been quiet for a moment.
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(0.1, self._line_idle) if self._length.buffered else None

    def _line_idle(self) -> None:
        self._idle = None
        for frame in self._length.idle():
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        if len(frame) > 1 and frame[1] == codec.MsgType.ENCAPSULATED:
            try:
                wrapped = codec.decode(frame)
            except codec.MalformedMessage as exc:
                log.warning("MQTT-SN serial %s: encapsulation dropped: %s", self.device, exc.reason)
                return
            assert isinstance(wrapped, codec.Encapsulated)
            self._deliver(wrapped.inner, SerialAddress(self.device, wrapped.node_id))
            return
        self._deliver(frame, SerialAddress(self.device))

    def _deliver(self, data: bytes, address: SerialAddress) -> None:
        try:
            self._on_datagram(data, address)
        except Exception:
            log.exception("MQTT-SN frame from %s could not be handled", address)

    def send(self, data: bytes, address: SerialAddress) -> None:
        port = self._port
        if port is None:
            return  # the device is away: like a radio out of range, the message is lost (QoS 1/2 will retry)
        if self.framing == "xbee":
            frame = encode_tx(data, address.node or BROADCAST_64, address.node16)
        elif address.node is not None:
            frame = codec.encode(codec.Encapsulated(0, address.node, data))
        else:
            frame = data
        try:
            port.write(frame)
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        log.warning("MQTT-SN serial %s lost (%s); reopening it every %.0f s", self.device, exc, self._retry)
        self._close_port()
        if not self._closed:
            self._reopen = asyncio.get_running_loop().call_later(self._retry, self.open)

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(port.fileno())
            with contextlib.suppress(Exception):
                port.close()
        self._length = LengthFramer()
        self._xbee = XBeeFramer()

    def close(self) -> None:
        self._closed = True
        for handle in (self._reopen, self._idle):
            if handle is not None:
                handle.cancel()
        self._close_port()
