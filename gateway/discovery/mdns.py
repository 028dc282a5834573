"""The mDNS advertiser: <name>.local and the gateway's services, with AsyncZeroconf on the gateway's event loop.

A name is claimed by probing (RFC 6762 §8.1) every service instance and the host name; when another device holds
one of them the gateway tries <name>-2, <name>-3, ... It follows the addresses the listeners are reachable on: a
change updates the records in place, losing every address withdraws them, and an address coming back claims a name
again, as at the start. A failure (no multicast, port 5353 held by another mDNS stack) is a warning: the gateway
runs without discovery and tries again when the network changes.
"""

from __future__ import annotations

import asyncio
import logging

import zeroconf
from zeroconf import DNSQuestionType, IPVersion, NonUniqueNameException
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from gateway.discovery.addresses import Address, Changes, Reach, own_addresses
from gateway.discovery.names import numbered
from gateway.discovery.services import Service

log = logging.getLogger("gateway.discovery")
# How long another device may take to answer for the host name: a responder that multicast the answer within the
# last second waits a second before it does again (RFC 6762 §6). The services are probed meanwhile (about 1.2 s).
HOST_PROBE_MS = 1500
MAX_NAMES = 20  # beyond <name>-20 something answers for every name: better to stop than to probe forever


class Advertiser:
    """Advertises `services` as `name`.local on the addresses of `reach`, from start() to stop()."""

    def __init__(self, name: str, services: list[Service], reach: Reach) -> None:
        self.name = ""  # the name in use: the configured one, or one with -2, -3, ...; "" while none is
        self._wanted = name
        self._services = services
        self._reach = reach
        self._zeroconf: AsyncZeroconf | None = None
        self._infos: list[AsyncServiceInfo] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Advertising goes on in the background: probing takes over a second, which the start does not wait for."""
        self._task = asyncio.create_task(self._follow(), name="mdns")

    async def stop(self) -> None:
        """Withdraws the records (goodbyes, RFC 6762 §10.1): sensors forget the gateway now, not when they expire."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close()

    async def _follow(self) -> None:
        changes = Changes()
        advertised: list[Address] | None = None
        try:
            while True:
                try:
                    addresses = self._reach.addresses()
                    if addresses != advertised:
                        await self._advertise(addresses, first=advertised is None)
                        advertised = addresses
                except Exception:
                    # Discovery is a convenience: a bug in it must not end it for good, nor touch the rest.
                    log.exception("mDNS: advertising failed; it is tried again when the network changes")
                    await self._close()
                    advertised = None
                await changes.wait()
        finally:
            changes.close()

    async def _advertise(self, addresses: list[Address], *, first: bool) -> None:
        if not addresses:
            if first:
                log.warning(
                    "mDNS: nothing to advertise: %s. Advertising starts when that changes.", self._reach.missing()
                )
            elif self._zeroconf is not None:
                log.info("mDNS: records withdrawn: %s. They come back when that changes.", self._reach.missing())
            await self._close()
            return
        ips = [address.ip for address in addresses]
        interfaces = _interfaces(addresses, self._reach.version)
        try:
            if self._zeroconf is None:
                version = IPVersion.V4Only if self._reach.version == 4 else IPVersion.V6Only
                self._zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=version)
            else:
                await self._zeroconf.async_update_interfaces(interfaces)
            if not self._infos:
                await self._claim(ips)
                return
            for info in self._infos:
                info.addresses = ips
                await self._zeroconf.async_update_service(info)
            log.info("mDNS: %s.local is now at %s", self.name, ", ".join(ips))
        except (OSError, ZeroconfError) as exc:
            log.warning(
                "mDNS: cannot advertise on %s (%s): the gateway runs without discovery, and tries again when the "
                "network changes. Is multicast allowed there, and is UDP port 5353 open to other mDNS stacks?",
                ", ".join(sorted({address.interface for address in addresses})),
                exc,
            )
            await self._close()

    async def _claim(self, ips: list[str]) -> None:
        """Registers the services under the first name of <name>, <name>-2, ... that nobody else holds."""
        for number in range(1, MAX_NAMES + 1):
            name = numbered(self._wanted, number)
            holder = await self._register(name, ips)
            if holder is None:
                self.name = name
                if number > 1:
                    log.warning(
                        "mDNS: %s.local is taken on the network, so this gateway is %s.local. To keep one name, give "
                        "each gateway its own [mdns] name.",
                        self._wanted,
                        name,
                    )
                services = ", ".join(
                    f"{service.type.removesuffix('.local.')} {service.port}" for service in self._services
                )
                log.info("mDNS: advertising %s.local at %s: %s", name, ", ".join(ips), services)
                return
            log.info("mDNS: %s.local is taken (%s); trying the next name", name, holder)
        log.warning(
            "mDNS: %s.local and the next %d names are all taken: nothing is advertised. Give this gateway another "
            "[mdns] name.",
            self._wanted,
            MAX_NAMES - 1,
        )

    async def _register(self, name: str, ips: list[str]) -> str | None:
        """Registers every service as `name` if nobody else holds it; returns None, or who holds it."""
        assert self._zeroconf is not None
        zc = self._zeroconf
        infos = [
            AsyncServiceInfo(
                service.type,
                f"{name}.{service.type}",
                port=service.port,
                properties=service.txt,
                server=f"{name}.local.",
                parsed_addresses=ips,
            )
            for service in self._services
        ]
        await zc.zeroconf.async_wait_for_start()
        # Everything is probed before anything is registered: a name found taken leaves nothing to withdraw.
        host = asyncio.ensure_future(self._host_holder(name))
        try:
            probes = await asyncio.gather(
                *(zc.zeroconf.async_check_service(info, allow_name_change=False) for info in infos),
                return_exceptions=True,
            )
            holder = await host
        finally:
            host.cancel()
        for probe in probes:
            if isinstance(probe, BaseException) and not isinstance(probe, NonUniqueNameException):
                raise probe
        taken = [info.type for info, probe in zip(infos, probes, strict=True) if probe is not None]
        if holder is not None or taken:
            return f"by a host at {holder}" if holder else f"by another {taken[0].removesuffix('.local.')} service"
        for info in infos:
            await zc.async_register_service(info, cooperating_responders=True)  # probed above
        self._infos = infos
        return None

    async def _host_holder(self, name: str) -> str | None:
        """An address that another device answers for `name`.local with, if one does."""
        assert self._zeroconf is not None
        resolver = zeroconf.AddressResolver(f"{name}.local.")  # type: ignore[attr-defined]  # public, not in __all__
        # Answers asked for by multicast: a unicast one would reach only one of the mDNS stacks on this host (port
        # 5353 is shared, e.g. with avahi-daemon), maybe not this one.
        await resolver.async_request(self._zeroconf.zeroconf, HOST_PROBE_MS, DNSQuestionType.QM)
        ours = own_addresses()
        return next((ip for ip in resolver.parsed_addresses() if ip not in ours), None)

    async def _close(self) -> None:
        zc, self._zeroconf = self._zeroconf, None
        self._infos, self.name = [], ""
        if zc is not None:
            try:
                await zc.async_close()
            except (OSError, ZeroconfError) as exc:
                log.warning(
                    "mDNS: the goodbyes were not all sent (%s): sensors forget this gateway as the records expire", exc
                )


def _interfaces(addresses: list[Address], version: int) -> list[str | int]:
    """zeroconf's interface list: IPv4 by one address of each interface (the group is joined by address), IPv6 by
    interface index."""
    if version == 6:
        return sorted({address.ifindex for address in addresses})
    first: dict[str, str | int] = {}
    for address in addresses:
        first.setdefault(address.interface, address.ip)
    return list(first.values())
