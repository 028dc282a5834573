"""Transports of the MQTT-SN gateway: they move datagrams and know nothing of the protocol."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import serial

from gateway.mqttsn import codec
from gateway.mqttsn.framing import BROADCAST_64, LengthFramer, XBeeFramer, encode_tx
from gateway.mqttsn.gateway import Address, SerialAddress, show_address

log = logging.getLogger("gateway.mqttsn")
RECEIVE_BUFFER = 4 << 20
READ_BATCH = 256  # datagrams read per wake-up, before other work gets its turn
NOISE_REPORT_INTERVAL = 10.0  # seconds between reports of bytes skipped on a serial line
MAX_DATAGRAM = 65535  # an MQTT-SN message's 3-octet Length allows this much (§5.2.1)
_SIOCGIFFLAGS = 0x8913  # linux/sockios.h
_IFF_UP, _IFF_MULTICAST = 0x1, 0x1000  # linux/if.h


class UdpEndpoint:
    """One UDP socket: every datagram goes to `on_datagram` with its sender's address as recvfrom gives it, (host,
    port) over IPv4, (host, port, flowinfo, scope_id) over IPv6.

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
        self._view = memoryview(bytearray(MAX_DATAGRAM))
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self._paused = False

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _readable(self) -> None:
        # Into one buffer kept for the purpose: recvfrom(65535) would allocate 64 KiB per datagram, which glibc
        # hands back to the system (and the kernel zeroes again) at every call.
        receive, view = self.sock.recvfrom_into, self._view
        for _ in range(READ_BATCH):
            try:
                size, address = receive(view)
                data = view[:size].tobytes()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP "port unreachable" for an earlier send
                log.info("MQTT-SN UDP: %s", exc)
                continue
            try:
                self._on_datagram(data, address)
            except Exception:
                # One client's datagram must never stop the others being served.
                log.exception("MQTT-SN datagram from %s could not be handled", show_address(address))
            if self._paused:
                return

    def pause_reading(self, paused: bool) -> None:
        """Stop reading (datagrams wait in the socket's buffer, and beyond it the kernel drops them), or go on."""
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            self._loop.remove_reader(self.sock.fileno())
        else:
            self._loop.add_reader(self.sock.fileno(), self._readable)

    def send(self, data: bytes, address: Address) -> None:
        try:
            self.sock.sendto(data, cast(tuple[str, int], address))
        except (BlockingIOError, InterruptedError):
            pass  # the socket's send buffer is full: lost, like any datagram (QoS 1/2 are sent again)
        except OSError as exc:
            log.info("MQTT-SN UDP: cannot send to %s: %s", show_address(address), exc)

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
) -> UdpEndpoint | None:
    """A socket that hears the discovery group (SEARCHGW). Several gateways on one host may share the port. None,
    after a warning, when the group cannot be joined (e.g. no network yet): the gateway works without discovery."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", port))
        _join(sock, group, interface)
    except OSError as exc:
        sock.close()
        log.warning(
            "MQTT-SN has no IPv4 discovery: cannot join the group %s:%d on %s (%s). Clients must be given the "
            "gateway's address until it is restarted with a network that has a multicast route; check [mqttsn] "
            "multicast_group / multicast_port, or set multicast = false if that is meant.",
            group,
            port,
            interface,
            exc.strerror or exc,
        )
        return None
    return UdpEndpoint(sock, on_datagram)


async def open_udp(host: str, port: int, on_datagram: Callable[[bytes, Address], None]) -> tuple[UdpEndpoint, int]:
    """Bind a UDP endpoint on an IPv4 or IPv6 address (a name means IPv4); returns it and the port actually bound (0
    picks a free one)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    except OSError as exc:
        hint = " Has this host IPv6? If not, give [gateway] bind an IPv4 address." if family == socket.AF_INET6 else ""
        raise OSError(exc.errno, f"cannot listen for MQTT-SN on UDP {host}:{port}: {exc.strerror}.{hint}") from exc
    try:
        if family == socket.AF_INET6:
            # IPv6 only, as the MQTT and HTTP listeners on "::" are; beside 0.0.0.0 IPv4 has a socket of its own.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
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


def ipv6_disabled() -> bool:
    """True when IPv6 is switched off by sysctl: IPv6 sockets still open and bind then, but reach nobody."""
    try:
        return Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text().strip() == "1"
    except OSError:
        return False  # no such file: either no IPv6 at all (socket() will say so) or not Linux


async def open_udp6_beside(port: int, on_datagram: Callable[[bytes, Address], None]) -> UdpEndpoint | None:
    """The IPv6 socket next to an IPv4 one bound to 0.0.0.0, on the same port. A host without IPv6 (or with the port
    taken over IPv6) is not an error: one warning, and the gateway serves IPv4 only."""
    reason = "IPv6 is disabled (net.ipv6.conf.all.disable_ipv6 = 1)" if ipv6_disabled() else ""
    if not reason:
        try:
            endpoint, _ = await open_udp("::", port, on_datagram)
        except OSError as exc:
            reason = str(exc.__cause__ or exc)
        else:
            return endpoint
    log.warning("MQTT-SN serves IPv4 only: %s. Set [mqttsn] ipv6 = false if that is meant.", reason.rstrip("."))
    return None


def _interface_flags(probe: socket.socket, name: str) -> int:
    request = fcntl.ioctl(probe, _SIOCGIFFLAGS, struct.pack("16sH22x", name.encode(), 0))
    return int(struct.unpack_from("16sH", request)[1])


def _interfaces_holding(host: str) -> set[int]:
    """Indexes of the interfaces that hold an IPv6 address (/proc/net/if_inet6: address, index, ...)."""
    wanted = ipaddress.IPv6Address(host.partition("%")[0]).packed.hex()
    try:
        table = Path("/proc/net/if_inet6").read_text()
    except OSError:
        return set()
    return {int(fields[1], 16) for fields in map(str.split, table.splitlines()) if fields and fields[0] == wanted}


def _is_wildcard(bind: str) -> bool:
    return bind in ("0.0.0.0", "::")


def multicast_interfaces6(bind: str) -> list[tuple[int, str]]:
    """(index, name) of the interfaces that are up and can multicast: all of them for "::" or "0.0.0.0", those that
    hold the address for a specific one. Read through a socket (not /sys), so that it sees the network namespace
    the gateway runs in."""
    wildcard = _is_wildcard(bind)
    holding = set() if wildcard else _interfaces_holding(bind)
    found = []
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        for index, name in socket.if_nameindex():
            if not wildcard and index not in holding:
                continue
            try:
                flags = _interface_flags(probe, name)
            except OSError:
                continue  # gone since it was listed
            if flags & _IFF_UP and flags & _IFF_MULTICAST:
                found.append((index, name))
    return found


def multicast_sender6(endpoint: UdpEndpoint) -> None:
    """Let `endpoint` send to IPv6 multicast groups one hop away, and hear itself (as multicast_sender)."""
    endpoint.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    endpoint.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)


def multicast_interface6(endpoint: UdpEndpoint, index: int) -> None:
    """Send the next multicast datagrams out of interface `index`. The destination's scope id alone chooses it only
    for link-local groups (ff02::/16); this does for any group."""
    endpoint.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)


async def open_multicast6(
    group: str, port: int, bind: str, on_datagram: Callable[[bytes, Address], None]
) -> tuple[UdpEndpoint, list[tuple[int, str]]] | None:
    """A socket that hears the IPv6 discovery group on each interface of `bind` (multicast_interfaces6; a link-local
    group is joined per interface), and the (index, name) of those it was joined on. None, after a warning, if it
    was joined nowhere: the gateway then works without IPv6 discovery."""
    interfaces = multicast_interfaces6(bind)
    which = "no interface" if _is_wildcard(bind) else f"no interface with {bind}"
    problems = [] if interfaces else [f"{which} is up and can multicast"]
    joined: list[tuple[int, str]] = []
    sock: socket.socket | None = None
    try:
        membership = socket.inet_pton(socket.AF_INET6, group)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # shared with other gateways on this host
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the IPv4 group's socket has the same port
        sock.bind(("::", port))
        for index, name in interfaces:
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership + struct.pack("@I", index))
            except OSError as exc:
                problems.append(f"{name}: {exc.strerror}")
            else:
                joined.append((index, name))
    except OSError as exc:
        problems.append(exc.strerror or str(exc))
    if sock is not None and joined:
        return UdpEndpoint(sock, on_datagram), joined
    if sock is not None:
        sock.close()
    log.warning(
        "MQTT-SN has no IPv6 discovery: cannot join the group [%s]:%d (%s). IPv6 clients must be given the gateway's "
        "address; check [mqttsn] multicast_group_v6, or set multicast = false if that is meant.",
        group,
        port,
        "; ".join(problems),
    )
    return None


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
        self._noise_reported = 0
        self._noise_reported_at = -NOISE_REPORT_INTERVAL
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
            self._report_noise()
            return
        for frame in self._length.feed(data):
            self._frame(frame)
        self._report_noise()
        # A frame cut short by line noise is given up once the line has been quiet for a moment.
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(0.1, self._line_idle) if self._length.buffered else None

    def _line_idle(self) -> None:
        self._idle = None
        for frame in self._length.idle():
            self._frame(frame)
        self._report_noise()

    def _report_noise(self) -> None:
        """Say what was skipped (a noisy line, a wrong baud rate, frames that are not MQTT-SN), at most every
        NOISE_REPORT_INTERVAL seconds so that a noisy line does not flood the log."""
        skipped = self._length.discarded + self._xbee.discarded + self._xbee.bad_frames - self._noise_reported
        now = time.monotonic()
        if skipped <= 0 or now - self._noise_reported_at < NOISE_REPORT_INTERVAL:
            return
        self._noise_reported += skipped
        self._noise_reported_at = now
        log.warning(
            "MQTT-SN serial %s: %d bytes or frames skipped as line noise or not MQTT-SN (check serial_baudrate and "
            "serial_framing if this goes on)",
            self.device,
            skipped,
        )

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
        self._noise_reported = 0

    def close(self) -> None:
        self._closed = True
        for handle in (self._reopen, self._idle):
            if handle is not None:
                handle.cancel()
        self._close_port()
