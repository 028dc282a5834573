"""One MQTT network connection: the packet handlers between the codec and the broker.

An `asyncio.Protocol`, one small object per client. Every read is handled as a batch: all complete packets are
decoded and handled, and whatever they cause to be sent to any connection goes out in one write per connection
at the end of the event-loop turn.

Publishes to hooked topics (e.g. `db/#`) start their hook at once, so that many of them share one storage commit,
but they are finished (routed, acknowledged) strictly in arrival order, as are the packets that follow them
(§4.6). While too many are pending, the socket is not read: a slow store slows its publishers, not memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gateway.mqtt.broker import Broker, ClientInfo, PublishRejected
from gateway.mqtt.codec import (
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PingReq,
    PingResp,
    Prop,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Reader,
    Reason,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
    ack_bytes,
    encode,
    publish_bytes,
)
from gateway.mqtt.session import NEVER_EXPIRES, Delivery, Message, Session

log = logging.getLogger("gateway.mqtt")

# Properties that describe one hop, not the message: never forwarded to subscribers.
_HOP_PROPERTIES = (Prop.TOPIC_ALIAS, Prop.SUBSCRIPTION_IDENTIFIER, Prop.MESSAGE_EXPIRY_INTERVAL)


@dataclass(slots=True)
class ConnectionLimits:
    max_packet_size: int = 1 << 20
    receive_maximum: int = 100  # unacknowledged QoS 1/2 publishes we accept from one client
    max_inflight: int = 100  # unacknowledged QoS 1/2 publishes we send to one client
    topic_alias_maximum: int = 10
    max_keepalive: int = 0  # 0: accept any keep-alive the client asks for
    connect_timeout: float = 10.0
    max_connections: int = 1024
    # Payload bytes of publishes waiting for their hooks (being stored), all connections together. Beyond it the
    # gateway stops reading from clients until the store catches up: memory stays bounded on a small board.
    max_backlog_bytes: int = 512 << 10


@dataclass(slots=True)
class Listening:
    """What every connection of one server shares."""

    broker: Broker
    limits: ConnectionLimits
    connections: set[MqttConnection] = field(default_factory=set)
    # Password hashing is deliberately slow and memory-hard (argon2): one worker thread keeps it off the event
    # loop without letting a burst of CONNECTs use 19 MiB each at once.
    password_checks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check")
    )
    password_checks_waiting: int = 0
    backlog_bytes: int = 0  # payload bytes of publishes with their hooks now
    backlogged: set[MqttConnection] = field(default_factory=set)  # stopped reading until the backlog shrinks


Finish = Callable[[BaseException | None], None]

# CONNECTs waiting for a password check beyond this are refused as "server busy": on a Pi each check takes tens
# of milliseconds, and a flood of wrong passwords must not lock honest clients out for minutes.
MAX_PASSWORD_CHECKS_WAITING = 32
READ_SIZE = 16 << 10
# What a publish waiting for its hook holds besides its payload (packet, message, callbacks), counted against
# max_backlog_bytes so that many small messages are bounded as well as a few large ones.
MESSAGE_OVERHEAD = 500


class MqttConnection(asyncio.Protocol):
    # A gateway may hold a thousand idle connections: no per-object __dict__.
    __slots__ = (
        "_abandoned",
        "_aliases",
        "_awaited",
        "_closed",
        "_connecting",
        "_connections",
        "_held",
        "_keepalive",
        "_last_seen",
        "_ordered",
        "_out",
        "_problem_information",
        "_qos1_unacked",
        "_reader",
        "_reading_paused",
        "_shared",
        "_timer",
        "_will",
        "_will_delay",
        "_writing_paused",
        "broker",
        "client_id",
        "info",
        "limits",
        "max_packet_size",
        "peer",
        "receive_maximum",
        "session",
        "transport",
        "version",
    )

    def __init__(self, shared: Listening) -> None:
        self.broker = shared.broker
        self.limits = limits = shared.limits
        self._shared = shared
        self._connections = shared.connections
        self._reader = Reader(limits.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.client_id = ""
        self.session: Session | None = None
        self.info: ClientInfo | None = None
        self.version = 4
        # What the client accepts (§3.1.2.11): Outlet attributes read by the session.
        self.receive_maximum = limits.max_inflight
        self.max_packet_size = 1 << 28
        self._will: Message | None = None
        # MQTT 5 Request Problem Information (§3.1.2.11.7): whether reason strings may go on acknowledgements.
        self._problem_information = False
        self._will_delay = 0
        self._keepalive = 0
        self._last_seen = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._aliases: dict[int, str] = {}
        # QoS 1 publishes received and not yet acknowledged: with the QoS 2 ones awaiting PUBREL, what counts
        # against our Receive Maximum (§3.3.4).
        self._qos1_unacked = 0
        # Set when a refused message closed the connection: what arrived after it is neither routed nor
        # acknowledged, so that the client's resend keeps the original order.
        self._abandoned = False
        # At most about receive_maximum entries: a list, whose front pops are cheap at that size and which costs
        # far less than a deque on each of a thousand idle connections.
        self._ordered: list[tuple[asyncio.Future[None] | None, Finish]] = []
        # Packets decoded but not yet handled: while the CONNECT is checked, or while as many messages as the
        # Receive Maximum wait for their hooks. The socket is not read meanwhile.
        self._held: list[Packet] = []
        self._awaited: asyncio.Future[None] | None = None  # the last future _after waits on
        self._connecting = False
        self._reading_paused = False
        self._writing_paused = False
        self._out: list[bytes] = []
        self._closed = False

    # -- Outlet, for the session ----------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return not self._writing_paused and not self._closed

    def send_publish(self, delivery: Delivery, dup: bool) -> bool:
        message = delivery.message
        props = message.properties
        if self.version == MQTT_5:
            if message.expires_at is not None:
                remaining = max(1, round(message.expires_at - time.time()))
                props = {**props, Prop.MESSAGE_EXPIRY_INTERVAL: remaining}
            if delivery.identifiers:
                props = {**props, Prop.SUBSCRIPTION_IDENTIFIER: delivery.identifiers}
        data = publish_bytes(
            message.topic, message.payload, delivery.qos, delivery.retain, dup, delivery.packet_id, props, self.version
        )
        if len(data) > self.max_packet_size:
            return False
        self.write(data)
        return True

    def send_pubrel(self, packet_id: int) -> None:
        self.write(ack_bytes(0x62, packet_id))

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        try:
            self.broker.flush_state()
        except Exception:
            # Nothing may be acknowledged whose session state is not written: drop the connection instead, and
            # let the client send again once the gateway can write.
            log.exception(
                "client %s (%s): cannot write the broker state; closing the connection", self.client_id, self.peer
            )
            self._out.clear()
            self.abort()
            return
        if self._out and self.transport is not None and not self._closed:
            data = b"".join(self._out)
            self.broker.stats.bytes_sent += len(data)
            self.transport.write(data)
        self._out.clear()

    def send(self, packet: Packet) -> None:
        data = encode(packet, self.version)
        if len(data) > self.max_packet_size and getattr(packet, "properties", None):
            # §3.1.2.11.4: rather than exceed what the client accepts, leave out the Reason String and User
            # Properties, the only optional parts of the packets we send.
            packet.properties = {}  # type: ignore[union-attr]
            data = encode(packet, self.version)
        self.write(data)

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._connections.add(self)
        self._last_seen = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(self.limits.connect_timeout, self._check_alive)
        if hasattr(transport, "max_size"):
            # asyncio reads up to 256 KiB at a time, thousands of small PUBLISHes decoded at once; smaller reads
            # let the backpressure below act before memory fills.
            transport.max_size = READ_SIZE

    def data_received(self, data: bytes) -> None:
        self.broker.stats.bytes_received += len(data)
        self._last_seen = time.monotonic()
        try:
            packets = self._reader.feed(data)
        except UnsupportedProtocol as exc:
            self._handle_all(exc.packets)
            # §3.1.2.2: answer an unsupported protocol level with CONNACK 0x01 (3.1.1) / 0x84, then close.
            # The 3.1.1 form (return code 0x01) is understood by clients of every level (MQTT 5 §3.1.2.2).
            self.write(encode(ConnAck(Reason.UNSUPPORTED_PROTOCOL_VERSION), 4))
            self._protocol_error(str(exc), None)
            return
        except MalformedPacket as exc:
            self._handle_all(exc.packets)
            self._protocol_error(str(exc), exc.reason)
            return
        self._handle_all(packets)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self.session is not None:
            self.session.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        session = self.session
        if session is not None and session.connection is self:
            self.broker.stats.clients_connected -= 1
            self.broker.detach(session, self._will, self._will_delay)
            if self._will is not None:
                log.info(
                    "client %s (%s) gone without DISCONNECT: will sent on %r",
                    self.client_id,
                    self.peer,
                    self._will.topic,
                )

    # -- closing --------------------------------------------------------------------------------------------

    def close(self, reason: int | None = None, text: str = "") -> None:
        """Close the connection, first telling an MQTT 5 client why with a DISCONNECT."""
        if self._closed or self.transport is None:
            return
        if reason is not None and self.version == MQTT_5 and self.session is not None:
            props: Properties = {Prop.REASON_STRING: text[:200]} if text else {}
            self.send(Disconnect(reason, props))
        self._flush()
        self._closed = True
        self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent data (a peer that does not read during shutdown)."""
        if self.transport is not None:
            self._closed = True
            self.transport.abort()

    def _protocol_error(self, text: str, reason: int | None) -> None:
        self.broker.stats.protocol_errors += 1
        log.warning("client %s (%s): %s; closing the connection", self.client_id[:100] or "-", self.peer, text[:300])
        self.close(reason, text)

    @property
    def busy(self) -> bool:
        """Messages are waiting for their hooks."""
        return bool(self._ordered)

    def stop_reading(self) -> None:
        self._pause_reading()

    def shut_down(self) -> None:
        """The gateway is stopping: tell the client, and keep its will (it did nothing wrong, and a restart
        follows); its session, if persistent, is saved and resumes after the restart."""
        self._will = None
        self.close(Reason.SERVER_SHUTTING_DOWN, "the gateway is shutting down")

    def taken_over(self) -> None:
        """Another connection claimed this client id (§3.1.4): the session moves to it."""
        log.info("client %s (%s): session taken over by a new connection", self.client_id, self.peer)
        session = self.session
        self.close(Reason.SESSION_TAKEN_OVER, "another connection uses this client identifier")
        if session is not None and session.connection is self:
            self.broker.stats.clients_connected -= 1
            self.broker.detach(session, self._will, self._will_delay)
            self.session = None

    def _check_alive(self) -> None:
        if self._closed:
            return
        now = time.monotonic()
        if self.session is None:
            if not self._connecting:
                self._protocol_error("no CONNECT within the connect timeout", None)
            return
        limit = self._keepalive * 1.5  # §3.1.2.10
        if self._reading_paused:
            self._last_seen = now  # we are the ones not reading: the client's PINGREQs wait in its socket
        if now - self._last_seen >= limit:
            self._protocol_error(f"keep-alive of {self._keepalive} s expired", Reason.KEEP_ALIVE_TIMEOUT)
            return
        self._timer = asyncio.get_running_loop().call_later(limit - (now - self._last_seen), self._check_alive)

    # -- dispatch ---------------------------------------------------------------------------------------------

    def _handle_all(self, packets: list[Packet]) -> None:
        for i, packet in enumerate(packets):
            if self._closed:
                return
            backlogged = self._shared.backlog_bytes >= self.limits.max_backlog_bytes
            if self._connecting or backlogged or len(self._ordered) >= self.limits.receive_maximum:
                self._held.extend(packets[i:])
                if backlogged:
                    self._shared.backlogged.add(self)
                # While a password is checked the socket is still read (up to a bound), so that a client
                # hanging up is noticed and its check skipped.
                if not self._connecting or len(self._held) >= self.limits.receive_maximum:
                    self._pause_reading()
                return
            if type(packet) is Publish:
                self._on_publish(packet)
            elif self._ordered:
                self._after(None, lambda _exc, p=packet: self._handle(p))  # type: ignore[misc]
            else:
                self._handle(packet)

    def _handle(self, packet: Packet) -> None:
        if self._closed:
            return
        session = self.session
        if session is None:
            if isinstance(packet, Connect):
                self._on_connect(packet)
            else:
                self._protocol_error(f"first packet is {type(packet).__name__}, not CONNECT (§3.1)", None)
            return
        if isinstance(packet, PubAck):
            session.acknowledged(packet.packet_id, 1)
        elif isinstance(packet, PubRec):
            if session.received(packet.packet_id, packet.reason_code >= 0x80):
                if packet.reason_code < 0x80:
                    self.send(PubRel(packet.packet_id))
            elif packet.reason_code < 0x80:
                self.send(PubRel(packet.packet_id, Reason.PACKET_IDENTIFIER_NOT_FOUND))
        elif isinstance(packet, PubRel):
            if session.qos2_released(packet.packet_id):
                self.send(PubComp(packet.packet_id))
            else:
                self.send(PubComp(packet.packet_id, Reason.PACKET_IDENTIFIER_NOT_FOUND))
        elif isinstance(packet, PubComp):
            session.acknowledged(packet.packet_id, 2)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(session, packet)
        elif isinstance(packet, Unsubscribe):
            codes = [self.broker.unsubscribe(session, f) for f in packet.topic_filters]
            self.broker.save_subscriptions(session)
            self.send(UnsubAck(packet.packet_id, codes if self.version == MQTT_5 else []))
        elif isinstance(packet, PingReq):
            self.send(PingResp())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(session, packet)
        elif isinstance(packet, Connect):
            self._protocol_error("second CONNECT on one connection (§3.1)", Reason.PROTOCOL_ERROR)
        else:
            self._protocol_error(f"a client must not send {type(packet).__name__}", Reason.PROTOCOL_ERROR)

    # -- CONNECT ------------------------------------------------------------------------------------------------

    def _on_connect(self, packet: Connect) -> None:
        self.version = packet.protocol_level
        self._reader.version = packet.protocol_level
        v5 = self.version == MQTT_5
        props = packet.properties
        self.max_packet_size = props.get(Prop.MAXIMUM_PACKET_SIZE, self.max_packet_size)
        if v5 and Prop.AUTHENTICATION_METHOD in props:
            return self._refuse(Reason.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported")
        if len(self._connections) > self.limits.max_connections:
            self.broker.stats.connections_refused += 1
            return self._refuse(
                Reason.SERVER_BUSY, f"the gateway accepts at most {self.limits.max_connections} clients"
            )
        client_id = packet.client_id
        if not client_id:
            if not (packet.clean_start or v5) or self.version < 4:
                # 3.1.1 §3.1.3.1: a zero-length client id needs clean session 1; MQTT 3.1 has no such case.
                return self._refuse(Reason.CLIENT_IDENTIFIER_NOT_VALID, "an empty client id needs clean session")
            client_id = f"auto-{os.urandom(12).hex()}"
        self.client_id = client_id
        authorizer = self.broker.authorizer
        if packet.username is not None and authorizer.passwords is not None:
            # Password hashing is deliberately slow: done off the event loop, holding later packets meanwhile.
            shared = self._shared
            if shared.password_checks_waiting >= MAX_PASSWORD_CHECKS_WAITING:
                self.broker.stats.connections_refused += 1
                return self._refuse(Reason.SERVER_BUSY, "too many connections are being authenticated; retry later")
            shared.password_checks_waiting += 1
            self._connecting = True
            username, password = packet.username, packet.password

            def check() -> bool:
                # A client that hung up while waiting costs no hash (and cannot make honest ones wait longer).
                return not self._closed and authorizer.authenticate(username, password)

            future = asyncio.get_running_loop().run_in_executor(shared.password_checks, check)
            future.add_done_callback(lambda f: self._connect_checked(packet, client_id, f))
            return None
        self._finish_connect(packet, client_id, authorizer.authenticate(packet.username, packet.password))
        return None

    def _connect_checked(self, packet: Connect, client_id: str, future: asyncio.Future[bool]) -> None:
        self._shared.password_checks_waiting -= 1
        self._connecting = False
        if self._closed:
            return
        ok = not future.cancelled() and future.exception() is None and future.result()
        self._finish_connect(packet, client_id, ok)
        self._continue()

    def _refuse(self, reason: int, text: str) -> None:
        log.warning("client %s (%s): connection refused: %s", self.client_id[:100] or "-", self.peer, text[:300])
        props: Properties = {Prop.REASON_STRING: text[:200]} if self.version == MQTT_5 else {}
        self.send(ConnAck(reason, False, props))
        self.close()

    def _finish_connect(self, packet: Connect, client_id: str, authenticated: bool) -> None:
        broker = self.broker
        v5 = self.version == MQTT_5
        props = packet.properties
        if not authenticated:
            who = f"user {packet.username!r}" if packet.username is not None else "anonymous client"
            return self._refuse(
                Reason.BAD_USER_NAME_OR_PASSWORD if packet.username else Reason.NOT_AUTHORIZED,
                f"{who} not allowed: wrong user name or password, or anonymous access is off",
            )
        will = packet.will
        if will is not None:
            if not self.broker.may_publish(packet.username, client_id, will.topic):
                return self._refuse(Reason.NOT_AUTHORIZED, f"the ACL does not allow a will on {will.topic!r}")
            if will.retain and not broker.settings.retain_available:
                return self._refuse(Reason.RETAIN_NOT_SUPPORTED, "retained messages are turned off")
            # The Message Expiry Interval stays relative: it counts from when the will is published (§3.1.3.2.4).
            will_props = {k: v for k, v in will.properties.items() if k != Prop.WILL_DELAY_INTERVAL}
            self._will = Message(will.topic, will.payload, will.qos, will.retain, will_props, None, client_id)
            self._will_delay = will.properties.get(Prop.WILL_DELAY_INTERVAL, 0)
        if v5:
            self._problem_information = props.get(Prop.REQUEST_PROBLEM_INFORMATION, 1) == 1
            expiry = props.get(Prop.SESSION_EXPIRY_INTERVAL, 0)
            self.receive_maximum = min(props.get(Prop.RECEIVE_MAXIMUM, 65535), self.limits.max_inflight)
        else:
            expiry = 0 if packet.clean_start else NEVER_EXPIRES
        self._keepalive = packet.keep_alive
        ack_props: Properties = {}
        max_keepalive = self.limits.max_keepalive
        if v5 and max_keepalive and (not self._keepalive or self._keepalive > max_keepalive):
            self._keepalive = max_keepalive
            ack_props[Prop.SERVER_KEEP_ALIVE] = max_keepalive

        broker.take_over(client_id)
        session, present = broker.attach(client_id, packet.clean_start, expiry, packet.username)
        self.session = session
        session.connection = self
        self.info = ClientInfo(client_id, packet.username, "mqtt", self.peer)
        broker.stats.clients_connected += 1
        broker.activity.connected(client_id, "mqtt", self.peer)
        broker.stats.clients_maximum = max(broker.stats.clients_maximum, broker.stats.clients_connected)

        if v5:
            if session.expiry_interval != expiry:
                ack_props[Prop.SESSION_EXPIRY_INTERVAL] = session.expiry_interval
            if client_id != packet.client_id:
                ack_props[Prop.ASSIGNED_CLIENT_IDENTIFIER] = client_id
            ack_props[Prop.RECEIVE_MAXIMUM] = self.limits.receive_maximum
            ack_props[Prop.MAXIMUM_PACKET_SIZE] = self.limits.max_packet_size
            ack_props[Prop.TOPIC_ALIAS_MAXIMUM] = self.limits.topic_alias_maximum
            if not broker.settings.retain_available:
                ack_props[Prop.RETAIN_AVAILABLE] = 0
        self.send(ConnAck(Reason.SUCCESS, present, ack_props))
        log.info(
            "client %s connected from %s (MQTT %s, keep-alive %d s, %s session)",
            client_id,
            self.peer,
            "5" if v5 else "3.1.1" if self.version == 4 else "3.1",
            self._keepalive,
            "resumed" if present else "new",
        )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keepalive:
            self._timer = asyncio.get_running_loop().call_later(self._keepalive * 1.5, self._check_alive)
        session.resend_inflight()
        return None

    def _message(self, topic: str, payload: bytes, qos: int, retain: bool, props: Properties, sender: str) -> Message:
        expires_at = None
        if Prop.MESSAGE_EXPIRY_INTERVAL in props:
            expires_at = time.time() + props[Prop.MESSAGE_EXPIRY_INTERVAL]
        if props:
            props = {k: v for k, v in props.items() if k not in _HOP_PROPERTIES}
        return Message(topic, payload, qos, retain, props, expires_at, sender)

    # -- DISCONNECT -----------------------------------------------------------------------------------------------

    def _on_disconnect(self, session: Session, packet: Disconnect) -> None:
        new_expiry = packet.properties.get(Prop.SESSION_EXPIRY_INTERVAL)
        if new_expiry is not None:
            if session.expiry_interval == 0 and new_expiry:
                # §3.14.2.2.2: a session that was to end with the connection cannot be extended here.
                self._protocol_error("DISCONNECT sets a session expiry after CONNECT set none", Reason.PROTOCOL_ERROR)
                return
            session.expiry_interval = min(new_expiry, self.broker.settings.max_session_expiry)
            if not session.expiry_interval:
                session.store = None
        if packet.reason_code != Reason.DISCONNECT_WITH_WILL:
            self._will = None  # §3.1.2.5: a normal DISCONNECT discards the will
        self.close()

    # -- SUBSCRIBE --------------------------------------------------------------------------------------------

    def _on_subscribe(self, session: Session, packet: Subscribe) -> None:
        ids = packet.properties.get(Prop.SUBSCRIPTION_IDENTIFIER)
        identifier = ids[0] if ids else None
        codes = []
        fresh = []
        for sub in packet.subscriptions:
            if sub.no_local and sub.topic_filter.startswith("$share/"):
                self._protocol_error("No Local on a shared subscription (§3.8.3.1)", Reason.PROTOCOL_ERROR)
                return
            code, new = self.broker.subscribe(session, sub, identifier)
            if code >= 0x80 and self.version != MQTT_5:
                code = 0x80  # 3.1.1 §3.9.3 knows a single failure code
            codes.append(code)
            if code < 0x80:
                fresh.append((sub.topic_filter, new))
        self.broker.save_subscriptions(session)
        self.send(SubAck(packet.packet_id, codes))
        for topic_filter, new in fresh:
            self.broker.send_retained(session, topic_filter, new)

    # -- PUBLISH ------------------------------------------------------------------------------------------------

    def _on_publish(self, packet: Publish) -> None:
        session = self.session
        if session is None or self.info is None:
            self._protocol_error("PUBLISH before CONNECT (§3.1)", None)
            return
        broker = self.broker
        topic = packet.topic
        props = packet.properties
        if props:
            alias = props.get(Prop.TOPIC_ALIAS)
            if alias is not None:
                if alias > self.limits.topic_alias_maximum:
                    self._protocol_error(f"topic alias {alias} above our maximum", Reason.TOPIC_ALIAS_INVALID)
                    return
                if topic:
                    self._aliases[alias] = topic
                elif alias in self._aliases:
                    topic = self._aliases[alias]
                else:
                    self._protocol_error(f"unknown topic alias {alias} (§3.3.2.3.4)", Reason.PROTOCOL_ERROR)
                    return
        qos = packet.qos
        pid = packet.packet_id or 0
        if packet.retain and not broker.settings.retain_available:
            self._protocol_error("retained messages are turned off", Reason.RETAIN_NOT_SUPPORTED)
            return
        if qos:
            pending = self._qos1_unacked + len(session.incoming_qos2)
            if self.version == MQTT_5 and pending >= self.limits.receive_maximum:
                self._protocol_error(
                    "more unacknowledged publishes than Receive Maximum", Reason.RECEIVE_MAXIMUM_EXCEEDED
                )
                return
            if qos == 2 and pid in session.incoming_qos2:
                # §4.3.3: a resent QoS 2 PUBLISH we already own is acknowledged again, not delivered again. If the
                # first copy is still with its hook (perhaps on a connection since taken over), the answer waits
                # for the hook; if the hook refused it, this copy is handled as a new message.
                first = session.incoming_qos2[pid]
                self._after(first, lambda exc: self._on_publish(packet) if exc else self.send(PubRec(pid)))
                return
            if qos == 1:
                self._qos1_unacked += 1
        info = self.info
        broker.activity.message(session.client_id, "mqtt", self.peer, topic)
        if not self.broker.may_publish(session.username, session.client_id, topic):
            log.info("client %s: publish to %r denied by the ACL", session.client_id, topic)
            denied = PublishRejected("the ACL does not allow publishing here", Reason.NOT_AUTHORIZED)
            broker.rejected(info, topic, denied.reason)
            self._after(None, lambda _exc: self._finish_publish(session, None, qos, pid, denied))
            return
        message = self._message(topic, packet.payload, qos, packet.retain, props, session.client_id)
        if broker.hooks_for(topic):
            hooks_done = broker.start_hooks(message, self.info)
            if qos == 2:
                session.incoming_qos2[pid] = hooks_done
            size = len(message.payload) + MESSAGE_OVERHEAD
            self._shared.backlog_bytes += size
            self._after(hooks_done, lambda exc: self._finish_hooked(session, message, qos, pid, size, exc))
        elif self._ordered:
            if qos == 2:
                session.incoming_qos2[pid] = None
            self._after(None, lambda _exc: self._finish_publish(session, message, qos, pid, None))
        else:
            broker.route(message)
            if qos == 1:
                self._qos1_unacked -= 1
                self.write(ack_bytes(0x40, pid))
            elif qos == 2:
                session.qos2_accepted(pid)
                self.write(ack_bytes(0x50, pid))

    def _after(self, future: asyncio.Future[None] | None, finish: Finish) -> None:
        """Run `finish` once `future` is done and everything received before it is finished."""
        if future is None and not self._ordered:
            finish(None)
            return
        self._ordered.append((future, finish))
        # Messages stored in one batch share its future: one callback drains them all.
        if future is not None and future is not self._awaited:
            self._awaited = future
            future.add_done_callback(self._drain)

    def _drain(self, _future: asyncio.Future[None] | None = None) -> None:
        ordered = self._ordered
        while ordered:
            future, finish = ordered[0]
            if future is not None and not future.done():
                break
            del ordered[0]
            error = None
            if future is not None:
                error = asyncio.CancelledError() if future.cancelled() else future.exception()
            finish(error)
        if len(ordered) < self.limits.receive_maximum // 2 + 1:
            self._continue()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _continue(self) -> None:
        """Handle held packets, and read the socket again once nothing is held."""
        if self._held:
            held, self._held = self._held, []
            self._handle_all(held)
        if self._reading_paused and not self._held and not self._connecting and not self._closed:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _finish_hooked(
        self, session: Session, message: Message, qos: int, pid: int, size: int, error: BaseException | None
    ) -> None:
        shared = self._shared
        shared.backlog_bytes -= size
        if shared.backlogged and shared.backlog_bytes < self.limits.max_backlog_bytes // 2:
            waiting, shared.backlogged = shared.backlogged, set()
            for connection in waiting:
                connection._continue()
        self._finish_publish(session, message, qos, pid, error)

    def _finish_publish(
        self, session: Session, message: Message | None, qos: int, pid: int, error: BaseException | None
    ) -> None:
        """Route and acknowledge a message once its hooks are done, in arrival order. `session` is the one the
        message arrived in: the connection may have lost it to a takeover since."""
        reason: int = Reason.SUCCESS
        text = ""
        if qos == 1:
            self._qos1_unacked -= 1
        if self._abandoned:
            return  # the client will send these again, after what was refused before them
        if error is None and message is not None:
            self.broker.route(message)
            if qos == 2:
                session.qos2_accepted(pid)
        else:
            if isinstance(error, PublishRejected):
                reason, text, retry = error.reason_code, error.reason, error.retry
            else:
                log.error(
                    "client %s: publish hook failed on %r",
                    self.client_id,
                    message.topic if message else "?",
                    exc_info=error,
                )
                reason, text, retry = Reason.IMPLEMENTATION_SPECIFIC_ERROR, "the gateway could not handle it", True
            if message is not None and self.info is not None:
                self.broker.rejected(self.info, message.topic, text)
                log.warning("client %s: message on %r rejected: %s", self.client_id, message.topic, text)
            if qos == 2:
                session.incoming_qos2.pop(pid, None)
            if self.version != MQTT_5 and retry and qos:
                # A 3.1.1 client cannot be told; closing without an acknowledgement makes it send again later,
                # so a reading we could not store is not lost.
                self._abandoned = True
                self._protocol_error(f"message on {message.topic if message else '?'} not stored: {text}", None)
                return
            # Otherwise a 3.1.1 client gets a positive acknowledgement (§3.3.5: its only other choice is closing,
            # which would make it resend a message that can never succeed, forever); the rejection is logged,
            # counted, and visible in $SYS.
        if not qos or self._closed:
            return
        props: Properties = {Prop.REASON_STRING: text} if text and self._problem_information else {}
        if self.version != MQTT_5:
            reason = Reason.SUCCESS
        self.send(PubAck(pid, reason, props) if qos == 1 else PubRec(pid, reason, props))
