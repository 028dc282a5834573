"""`gateway serve`: wires the parts together, starts them in order, stops them in reverse on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import socket
import ssl
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from gateway import __version__
from gateway.activity import Activity
from gateway.config import Config, ConfigError
from gateway.discovery.names import default_name
from gateway.discovery.services import Facts, services
from gateway.http.api import answer_query, make_app
from gateway.http.base import ApiContext, Status
from gateway.http.hub import WatchHub
from gateway.http.server import THREADS, HttpServer
from gateway.ingest.hook import IngestHook
from gateway.mqtt.auth import AclFile, Authorizer
from gateway.mqtt.broker import Broker, BrokerSettings
from gateway.mqtt.connection import ConnectionLimits
from gateway.mqtt.persist import BrokerState
from gateway.mqtt.server import Listener, MqttServer
from gateway.mqttsn.gateway import Address, SerialAddress, SnGateway, SnSettings, SnStats
from gateway.mqttsn.transports import (
    SerialEndpoint,
    UdpEndpoint,
    multicast_interface6,
    multicast_sender,
    multicast_sender6,
    open_multicast,
    open_multicast6,
    open_udp,
    open_udp6_beside,
)
from gateway.service import Notifier
from gateway.store import database as store
from gateway.store.backup import backup_archive, scratch_dir
from gateway.store.database import Retention, TimeSeriesStore
from gateway.store.maintenance import DiskGuard, retention_forever
from gateway.uplink.batches import Format
from gateway.uplink.bridge import Bridge
from gateway.uplink.forwarder import CONSUMER, Forwarder, ForwardSettings
from gateway.uplink.link import Uplink, UplinkSettings
from gateway.uplink.url import parse_url

if TYPE_CHECKING:
    from gateway.discovery.mdns import Advertiser

log = logging.getLogger("gateway")
M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h


def build_authorizer(config: Config) -> Authorizer:
    mqtt = config.mqtt
    passwords = None
    if mqtt.password_file:
        from gateway.mqtt.passwords import PasswordFile  # noqa: PLC0415 - argon2 is loaded only when used

        passwords = PasswordFile.load(config.resolve(mqtt.password_file))
    acl = AclFile.load(config.resolve(mqtt.acl_file)) if mqtt.acl_file else None
    return Authorizer(mqtt.allow_anonymous, passwords, acl)


def build_listeners(config: Config) -> list[Listener]:
    mqtt = config.mqtt
    bind = config.gateway.bind
    listeners = [Listener("mqtt", bind, mqtt.port, option="--mqtt-port or the config file")]
    if mqtt.tls:
        listeners.append(Listener("mqtts", bind, mqtt.tls_port, tls_context(config)))
    if mqtt.ws_enabled:
        listeners.append(Listener("mqtt-ws", bind, mqtt.ws_port, websocket_path=mqtt.ws_path, option="--ws-port"))
    return listeners


def tls_context(config: Config) -> ssl.SSLContext:
    mqtt = config.mqtt
    certfile, keyfile = config.resolve(mqtt.certfile), config.resolve(mqtt.keyfile)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{config.source}: [mqtt] certfile {str(certfile)!r} / keyfile {str(keyfile)!r}: cannot load them "
            f"({exc.strerror or exc}); give a PEM certificate chain and its PEM private key"
        ) from None
    if mqtt.cafile:
        cafile = config.resolve(mqtt.cafile)
        try:
            context.load_verify_locations(cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{config.source}: [mqtt] cafile {str(cafile)!r}: cannot load it ({exc.strerror or exc}); "
                "give PEM CA certificates"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED if mqtt.require_certificate else ssl.CERT_OPTIONAL
    return context


def uplink_tls_context(config: Config) -> ssl.SSLContext:
    """The system's CA store, or [uplink] cafile; with a client certificate when one is given."""
    uplink = config.uplink
    where = f"{config.source}: [uplink]"
    try:
        context = ssl.create_default_context(cafile=config.resolve(uplink.cafile) if uplink.cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{where} cafile {uplink.cafile!r}: cannot load it ({exc}); give PEM CA certificates"
        ) from None
    if uplink.certfile:
        try:
            context.load_cert_chain(config.resolve(uplink.certfile), config.resolve(uplink.keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{where} certfile {uplink.certfile!r} / keyfile {uplink.keyfile!r}: cannot load them ({exc}); give "
                "a PEM certificate chain and its PEM private key"
            ) from None
    return context


def build_uplink(config: Config, store: TimeSeriesStore, broker: Broker, name: str, default: Retention) -> Uplink:
    uplink = config.uplink
    url = parse_url(uplink.url)
    password = url.password
    if uplink.password_file:
        path = config.resolve(uplink.password_file)
        try:
            password = next(iter(path.read_text().splitlines()), "")
        except OSError as exc:
            raise ConfigError(
                f"{config.source}: [uplink] password_file {str(path)!r}: cannot read it ({exc.strerror})"
            ) from None
    settings = UplinkSettings(
        url,
        uplink.client_id or name,
        5 if uplink.version == "5" else 4,
        uplink.keepalive,
        uplink.username or url.username,
        None if password is None else password.encode(),
        uplink_tls_context(config) if url.tls else None,
        f"{uplink.topic_prefix}cmd/{name}/" if uplink.commands else None,
        uplink.reconnect_max,
    )
    forwarder = None
    if uplink.forward_readings:
        fmt = Format(uplink.topic_prefix, uplink.batch_size, uplink.compress == "gzip")
        forwarding = ForwardSettings(fmt, uplink.max_delay, uplink.max_rate, uplink.max_inflight)
        forwarder = Forwarder(store, forwarding, default)
    bridge = Bridge(broker, list(uplink.bridge), uplink.topic_prefix, uplink.max_inflight)
    return Uplink(settings, forwarder, bridge, broker.route)


class Gateway:
    """Every part of a running gateway, with explicit start and stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        mqtt = config.mqtt
        data = config.data_path()
        self.state = BrokerState(data / "broker")
        settings = BrokerSettings(
            max_queued_messages=mqtt.max_queued_messages,
            queue_qos0_messages=mqtt.queue_qos0_messages,
            max_session_expiry=mqtt.max_session_expiry,
            retain_available=mqtt.retain_available,
            sys_interval=mqtt.sys_interval,
            max_subscriptions=mqtt.max_subscriptions_per_client,
            max_queued_bytes=mqtt.max_queued_bytes,
            max_retained_bytes=mqtt.max_retained_bytes,
        )
        self.activity = Activity()
        self.broker = Broker(settings, build_authorizer(config), self.state, self.activity)
        limits = ConnectionLimits(
            max_packet_size=mqtt.max_packet_size,
            receive_maximum=mqtt.receive_maximum,
            max_inflight=mqtt.max_inflight_messages,
            topic_alias_maximum=mqtt.topic_alias_maximum,
            max_keepalive=mqtt.max_keepalive,
            connect_timeout=mqtt.connect_timeout,
            max_connections=mqtt.max_connections,
            max_backlog_bytes=mqtt.max_backlog_bytes,
        )
        self.mqtt = MqttServer(self.broker, limits, build_listeners(config))
        options = config.store
        self.store = TimeSeriesStore(
            data / "store",
            store.StoreOptions(
                write_buffer_bytes=options.write_buffer_bytes,
                block_cache_bytes=options.block_cache_bytes,
                commit_interval=options.commit_interval,
                auto_create_tables=options.auto_create_tables,
            ),
        )
        self.store.guard = DiskGuard(data, options.min_free_bytes)
        self._retention: asyncio.Task[None] | None = None
        ingest = config.ingest
        self.ingest = IngestHook(
            self.store,
            self.broker.route,
            sensors_prefix=ingest.sensors_prefix,
            sensors_table=ingest.sensors_table,
            answer_query=partial(answer_query, self.store),
        )
        self.broker.add_publish_hook("db/#", self.ingest)
        self.broker.add_publish_hook(ingest.sensors_prefix + "+", self.ingest)
        self.endpoints: list[tuple[str, str, int]] = []
        self.http: HttpServer | None = None
        self.mqttsn: SnGateway | None = None
        self._udp: UdpEndpoint | None = None
        self._udp6: UdpEndpoint | None = None  # IPv6 beside an IPv4 _udp on 0.0.0.0
        self._serial: SerialEndpoint | None = None
        self._multicast: UdpEndpoint | None = None
        self._multicast6: UdpEndpoint | None = None
        self._advertise6: tuple[UdpEndpoint, list[tuple[int, str]]] | None = None  # the IPv6 socket, its interfaces
        self._advertising: asyncio.Task[None] | None = None
        self.discovery: Advertiser | None = None
        self.name = config.mdns.name or default_name()
        self.uplink: Uplink | None = None
        if config.uplink.url:
            self.uplink = build_uplink(config, self.store, self.broker, self.name, self.default_retention())
        elif next(self.store.arrivals.entries(self.store.arrivals.cursor(CONSUMER).next), None) is not None:
            log.warning(
                "the uplink is not configured: readings stored while it was and not forwarded stay in the store's "
                "arrival log until it is configured again"
            )

    def default_retention(self) -> Retention:
        options = self.config.store
        return Retention(options.retention_days, options.minute_rollup_days, options.hour_rollup_days)

    async def start(self) -> None:
        await self.broker.start()
        default = self.default_retention()
        self._retention = asyncio.create_task(retention_forever(self.store, default), name="retention")
        self.endpoints = await self.mqtt.start()
        sn = self.config.mqttsn
        if sn.enabled:
            self._udp, port = await open_udp(self.config.gateway.bind, sn.port, self._mqttsn_datagram)
            ipv4 = self._udp.sock.family == socket.AF_INET
            if ipv4 and self._udp.host == "0.0.0.0" and sn.ipv6:
                self._udp6 = await open_udp6_beside(port, self._mqttsn_datagram)
                if self._udp6 is not None:
                    log.info("MQTT-SN also on UDP [::]:%d (IPv6)", port)
            predefined = {int(topic_id): name for topic_id, name in sn.predefined_topics.items()}
            client_predefined = {
                client_id: {int(topic_id): name for topic_id, name in topics.items()}
                for client_id, topics in sn.client_topics.items()
            }
            settings = SnSettings(
                sn.gateway_id,
                predefined,
                sn.max_clients,
                sn.max_inflight,
                sn.max_message_size,
                sn.retry_interval,
                sn.max_retries,
                max_backlog_bytes=self.config.mqtt.max_backlog_bytes,
                client_predefined=client_predefined,
            )
            self.mqttsn = SnGateway(self.broker, self._mqttsn_send, settings, pause_reading=self._mqttsn_pause)
            self.endpoints.append(("mqtt-sn", self.config.gateway.bind, port))
            if sn.multicast:
                if ipv4:
                    interface = self.config.gateway.bind
                    multicast_sender(self._udp, interface)
                    self._multicast = await open_multicast(
                        sn.multicast_group, sn.multicast_port, interface, self._mqttsn_group_datagram
                    )
                await self._open_multicast6(self._udp6 or (None if ipv4 else self._udp))
                if self._multicast is not None or self._advertise6 is not None:
                    self._advertising = asyncio.create_task(self._advertise(), name="mqttsn-advertise")
            if sn.serial_device:
                self._serial = SerialEndpoint(
                    sn.serial_device, sn.serial_baudrate, sn.serial_framing, self._mqttsn_datagram
                )
                self._serial.open()
        http = self.config.http
        # /db/watch streams: the store tells the hub of every stored batch; each stream holds an HTTP thread.
        watch = WatchHub(max_watchers=THREADS - 2)
        self.store.listeners.append(watch.publish)
        context = ApiContext(
            self.store,
            asyncio.get_running_loop(),
            http.token,
            http.token_for_reads,
            cors_read_origins=tuple(http.cors_read_origins),
            cors_write_origins=tuple(http.cors_write_origins),
            status=self.status,
            watch=watch,
            backup=self.backup,
            mdns_name=self.mdns_name,
            activity=self.activity,
            name=self.name,
            listeners=lambda: list(self.endpoints),
            uplink=self.uplink.status if self.uplink is not None else None,
        )
        self.http = HttpServer(make_app(context), self.config.gateway.bind, http.port, on_stop=watch.close)
        self.endpoints.append(("http", *self.http.start()))
        if self.config.mdns.enabled:
            await self._start_discovery()
        if self.uplink is not None:
            await self.uplink.start()
        log.info("gateway %s, data in %s, config from %s", __version__, self.config.data_path(), self.config.source)
        log.info("listening %s", " ".join(f"{name}={host}:{port}" for name, host, port in self.endpoints))

    async def _start_discovery(self) -> None:
        # zeroconf and ifaddr are loaded only when discovery is on.
        from gateway.discovery.addresses import Reach  # noqa: PLC0415
        from gateway.discovery.mdns import Advertiser  # noqa: PLC0415

        mdns, mqtt = self.config.mdns, self.config.mqtt
        facts = Facts(
            version=__version__,
            ingest_prefix="db/append/",
            sensors_prefix=self.config.ingest.sensors_prefix,
            auth_required=not mqtt.allow_anonymous,
            gateway_id=self.config.mqttsn.gateway_id,
            ws_path=mqtt.ws_path,
        )
        interfaces = tuple(name.strip() for name in mdns.interfaces.split(",") if name.strip())
        # The address the MQTT listener got: every listener binds the same one.
        reach = Reach(self.endpoints[0][1], interfaces)
        self.discovery = Advertiser(self.name, services(self.endpoints, facts), reach)
        await self.discovery.start()

    def mdns_name(self) -> str:
        """The name advertised over mDNS now ("" for none); read on HTTP threads."""
        return self.discovery.name if self.discovery is not None else ""

    async def _open_multicast6(self, udp6: UdpEndpoint | None) -> None:
        """IPv6 discovery, answered and advertised from `udp6`, the gateway's IPv6 socket (if it has one)."""
        if udp6 is None:
            return
        sn = self.config.mqttsn
        opened = await open_multicast6(sn.multicast_group_v6, sn.multicast_port, udp6.host, self._mqttsn_group_datagram)
        if opened is None:
            return
        self._multicast6, joined = opened
        self._advertise6 = udp6, joined
        multicast_sender6(udp6)
        names = ", ".join(name for _, name in joined)
        log.info("MQTT-SN discovery on [%s]:%d on %s", sn.multicast_group_v6, sn.multicast_port, names)

    async def _advertise(self) -> None:
        sn = self.config.mqttsn
        while self.mqttsn is not None:
            if self._multicast is not None:
                self.mqttsn.advertise((sn.multicast_group, sn.multicast_port), sn.advertise_interval)
            if self._advertise6 is not None:
                udp6, interfaces = self._advertise6
                for index, _ in interfaces:  # one link at a time: that is all a link-local group reaches
                    multicast_interface6(udp6, index)
                    self.mqttsn.advertise((sn.multicast_group_v6, sn.multicast_port, 0, index), sn.advertise_interval)
            await asyncio.sleep(sn.advertise_interval)

    def _mqttsn_send(self, data: bytes, address: Address) -> None:
        if isinstance(address, SerialAddress):
            if self._serial is not None:
                self._serial.send(data, address)
        elif self._udp6 is not None and len(cast(tuple[object, ...], address)) == 4:  # IPv6, beside IPv4 on 0.0.0.0
            self._udp6.send(data, address)
        elif self._udp is not None:
            self._udp.send(data, address)

    def _mqttsn_pause(self, paused: bool) -> None:
        """The store is behind: UDP waits in the kernel's buffers meanwhile (a serial line is too slow to matter)."""
        for endpoint in (self._udp, self._udp6):
            if endpoint is not None:
                endpoint.pause_reading(paused)

    def _mqttsn_datagram(self, data: bytes, address: Address) -> None:
        if self.mqttsn is not None:
            self.mqttsn.received(data, address)

    def _mqttsn_group_datagram(self, data: bytes, address: Address) -> None:
        """A datagram to a discovery group; over IPv6 the group is answered on the link it came from."""
        if self.mqttsn is None:
            return
        sn = self.config.mqttsn
        sender = cast(tuple[object, ...], address)
        if len(sender) == 4:
            group: Address = (sn.multicast_group_v6, sn.multicast_port, 0, sender[3])
        else:
            group = (sn.multicast_group, sn.multicast_port)
        self.mqttsn.received_on_group(data, address, group)

    def backup(self) -> Path:
        """A consistent archive of both databases, made while they are written (on an HTTP thread)."""
        databases = {"store": self.store.db, "broker": self.state.db}
        return backup_archive(databases, scratch_dir(self.config.data_path()))

    def status(self) -> Status:
        """The parts' figures for /metrics and /api/status. Called on HTTP threads: it only copies plain numbers,
        which the event loop updates one at a time."""
        stats, ingest, writer = self.broker.stats, self.ingest.counters, self.store.writer
        sn = self.mqttsn.stats if self.mqttsn is not None else SnStats()
        return Status(
            started_at=stats.started_at,
            data_dir=self.config.data_path(),
            min_free_bytes=self.config.store.min_free_bytes,
            mqtt_clients_connected=stats.clients_connected,
            mqtt_clients_maximum=stats.clients_maximum,
            mqtt_connections_refused=stats.connections_refused,
            mqtt_messages_received=stats.messages_received,
            mqtt_messages_sent=stats.messages_sent,
            mqtt_messages_dropped=stats.messages_dropped,
            mqtt_publish_rejected=stats.publish_rejected,
            mqtt_protocol_errors=stats.protocol_errors,
            mqtt_bytes_received=stats.bytes_received,
            mqtt_bytes_sent=stats.bytes_sent,
            mqttsn_clients_connected=sn.connected,
            mqttsn_clients_asleep=len(self.broker.sleepers),  # only MQTT-SN clients sleep
            mqttsn_datagrams_received=sn.received,
            mqttsn_datagrams_malformed=sn.malformed,
            mqttsn_publish_congested=sn.congested,
            ingest_messages=ingest.messages,
            ingest_readings=ingest.readings,
            ingest_rejected=ingest.rejected,
            store_batches=writer.batches,
            store_writes=writer.readings,
            store_sync_seconds=writer.sync_seconds,
            store_syncs=writer.syncs,
        )

    async def stop(self) -> None:
        if self.uplink is not None:
            await self.uplink.stop()
        if self.discovery is not None:  # first: sensors learn that the gateway goes before its listeners close
            await self.discovery.stop()
        if self.http is not None:
            # Off the loop: a request still being answered may need the loop to finish its write.
            await asyncio.get_running_loop().run_in_executor(None, self.http.stop)
        if self.mqttsn is not None:
            self.mqttsn.stop()
        if self._serial is not None:
            self._serial.close()
        if self._advertising is not None:
            self._advertising.cancel()
            await asyncio.gather(self._advertising, return_exceptions=True)
        for endpoint in (self._udp, self._udp6, self._multicast, self._multicast6):
            if endpoint is not None:
                endpoint.close()
        await self.mqtt.stop()
        await self.broker.stop()
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        await self.store.close()
        log.info("stopped")


def limit_malloc_arenas() -> None:
    """glibc gives each thread its own malloc arena, which grows and is kept: two arenas in all keep the HTTP and
    writer threads from holding tens of MB each on a 512 MB board. Before any thread starts."""
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


def tune_garbage_collector() -> None:
    """Most garbage is freed by reference counting; the cyclic collector would otherwise walk every young object
    hundreds of times a second under load. It runs less often, and never walks what exists after start."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 1_000)


async def serve(config: Config) -> None:
    limit_malloc_arenas()
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier()
    try:
        await gateway.start()
    except BaseException:
        await gateway.stop()
        notifier.close()
        raise
    tune_garbage_collector()
    # Type=notify: systemd counts the service as started (and starts what comes after it) only now that every
    # listener accepts connections.
    notifier.ready("listening " + " ".join(f"{name}={host}:{port}" for name, host, port in gateway.endpoints))
    notifier.start_watchdog()
    try:
        await stop.wait()
        log.info("stopping")
        notifier.stopping()
        # No pings while stopping: TimeoutStopSec= bounds the stop, and flushing the store may take a while.
        await notifier.stop_watchdog()
        await gateway.stop()
    finally:
        await notifier.stop_watchdog()
        notifier.close()
