"""Where the gateway's listeners are reachable, and when that changes.

The interfaces and addresses come from the kernel through ifaddr (zeroconf's own dependency), the flags through a
socket ioctl: both see the network namespace the gateway runs in, which /sys would not. Changes are noticed through
rtnetlink, so that a Wi-Fi reconnect or a new DHCP address is advertised within a couple of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from typing import NamedTuple

import ifaddr

log = logging.getLogger("gateway.discovery")

_SIOCGIFFLAGS = 0x8913  # linux/sockios.h
_IFF_UP, _IFF_LOOPBACK, _IFF_MULTICAST = 0x1, 0x8, 0x1000  # linux/if.h
_RTMGRP_LINK, _RTMGRP_IPV4_IFADDR, _RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100  # linux/rtnetlink.h
POLL_SECONDS = 60.0  # a look without a notice: one may be lost (a full socket buffer), or the platform has none
SETTLE_SECONDS = 1.0  # a DHCP lease or a Wi-Fi reconnect changes several things in a row: look once they are done


class Address(NamedTuple):
    interface: str
    ifindex: int
    ip: str


@dataclass(frozen=True, slots=True)
class Reach:
    """Where the listeners are reachable: `bind`, their address (0.0.0.0 and :: are every address of that family),
    and for those two the interfaces chosen by name (none chosen: all but loopback)."""

    bind: str
    interfaces: tuple[str, ...] = ()

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """`bind` without an IPv6 scope: the interfaces' addresses have none."""
        return ipaddress.ip_address(self.bind.partition("%")[0])

    @property
    def version(self) -> int:
        return self.address.version

    def addresses(self) -> list[Address]:
        """The addresses to advertise, sorted: on interfaces that are up and can multicast, where mDNS can be
        heard."""
        bind = self.address
        found = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for adapter in ifaddr.get_adapters():
                flags = _flags(probe, adapter.name)
                if not (flags & _IFF_UP and flags & _IFF_MULTICAST):
                    continue
                if bind.is_unspecified and not self._chosen(adapter.name, flags):
                    continue
                for ip in adapter.ips:
                    address = ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
                    if address.version == bind.version and (bind.is_unspecified or address == bind):
                        found.append(Address(adapter.name, adapter.index or 0, str(address)))
        return sorted(found)

    def _chosen(self, interface: str, flags: int) -> bool:
        return interface in self.interfaces if self.interfaces else not flags & _IFF_LOOPBACK

    def missing(self) -> str:
        """What addresses() found nothing of, for the log."""
        if not self.address.is_unspecified:
            return f"{self.bind} is not on an interface that is up and can multicast"
        chosen = ", ".join(self.interfaces) if self.interfaces else "every interface but loopback"
        return f"no interface that is up and can multicast ({chosen}) has an IPv{self.version} address"


def _flags(probe: socket.socket, name: str) -> int:
    """The interface's flags; 0 for one that is gone since it was listed."""
    try:
        request = fcntl.ioctl(probe, _SIOCGIFFLAGS, struct.pack("16sH22x", name.encode(), 0))
    except OSError:
        return 0
    return int(struct.unpack_from("16sH", request)[1])


def own_addresses() -> set[str]:
    """Every address of this host, on any interface: a host name that resolves to them is ours (an avahi-daemon
    beside the gateway answers for the same name), not another device's."""
    return {
        str(ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0]))
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
    }


class Changes:
    """Tells when a link or an address has changed (rtnetlink notices), or at least every POLL_SECONDS."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._sock: socket.socket | None = None
        sock = None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
            sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR))
        except (OSError, AttributeError) as exc:  # AttributeError: not Linux
            if sock is not None:
                sock.close()
            log.info("mDNS: no rtnetlink (%s): network changes are looked for every %.0f s", exc, POLL_SECONDS)
            return
        asyncio.get_running_loop().add_reader(sock, self._readable)
        self._sock = sock

    def _readable(self) -> None:
        assert self._sock is not None
        # The notices' content is not needed: the addresses are read afresh. BlockingIOError ends the reading;
        # ENOBUFS means notices were lost, which that reading covers as well.
        with contextlib.suppress(OSError):
            while True:
                self._sock.recv(65536)
        self._changed.set()

    async def wait(self) -> None:
        """Returns once something has changed and settled, or after POLL_SECONDS."""
        try:
            await asyncio.wait_for(self._changed.wait(), POLL_SECONDS)
        except TimeoutError:
            return
        await asyncio.sleep(SETTLE_SECONDS)
        self._changed.clear()

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock)
            self._sock.close()
            self._sock = None
