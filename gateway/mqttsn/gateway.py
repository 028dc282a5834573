"""The MQTT-SN gateway: every MQTT-SN client is a session of the broker, like an MQTT connection.

So a PUBLISH to `db/append/<TABLE>` goes through the broker's publish hooks (stored before it is acknowledged),
subscriptions match what MQTT clients publish, and MQTT clients receive what MQTT-SN clients publish. This module
holds the per-client protocol logic; the transports (transports.py) only move datagrams, addressed by an opaque
hashable address (a UDP (host, port), a serial node id).

Covered: CONNECT with the will prompts (§6.2) and will updates (§6.4), REGISTER both ways (§6.5; the gateway's
waits for its REGACK before the PUBLISH, §6.10), PUBLISH at QoS -1 (pre-defined ids and short names from any
address, §6.8), 0, 1 and 2 both ways, pre-defined (for all, or per client) and short topic ids (§6.7), SUBSCRIBE /
UNSUBSCRIBE (§6.9), keep-alive with the will of a lost client (§6.11), sleeping clients (§6.14), DISCONNECT (§6.6),
SEARCHGW (§6.1), retransmission (§6.13), the ACL for anonymous clients, flow control against the store's pace, and
clients (topic ids of persistent sessions included) kept across gateway restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, cast

from gateway.mqtt.broker import Broker, ClientInfo, PublishRejected
from gateway.mqtt.codec import Subscription
from gateway.mqtt.connection import MESSAGE_OVERHEAD
from gateway.mqtt.session import NEVER_EXPIRES, Delivery, Message, Session
from gateway.mqtt.topics import filter_error, topic_name_error
from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode, TopicIdType

log = logging.getLogger("gateway.mqttsn")

Address = Hashable
Send = Callable[[bytes, Address], None]
_RECORD_KIND = b"n"  # MQTT-SN client records in the broker state


@dataclass(frozen=True, slots=True)
class SerialAddress:
    """A client behind a serial line: the device, and the node behind the radio coordinator (the forwarder's
    Wireless Node Id, or an XBee's 64-bit address); `node` is None for a single device on a plain line."""

    device: str
    node: bytes | None = None
    node16: int = 0xFFFE  # XBee: the 16-bit network address the reply goes to (0xFFFE: unknown)

    def __str__(self) -> str:
        return self.device if self.node is None else f"{self.device} node {self.node.hex()}"


def show_address(address: Address) -> str:
    """An address as people write it: 192.0.2.1:1884, [fe80::1%eth0]:1884."""
    if isinstance(address, tuple) and len(address) == 4:
        host, port, _, scope_id = address
        if scope_id:
            try:
                host = f"{host}%{socket.if_indextoname(scope_id)}"
            except OSError:
                host = f"{host}%{scope_id}"
        return f"[{host}]:{port}"
    if isinstance(address, tuple) and len(address) == 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _address_json(address: Address) -> list[object]:
    if isinstance(address, SerialAddress):
        return ["serial", address.device, address.node.hex() if address.node else None, address.node16]
    if len(cast(tuple[object, ...], address)) == 4:
        # All four, flowinfo and scope_id too: the address is the session key, and must come back equal to recvfrom's.
        host, port, flowinfo, scope_id = cast(tuple[str, int, int, int], address)
        return ["udp6", host, port, flowinfo, scope_id]
    host, port = cast(tuple[str, int], address)
    return ["udp", host, port]


def _address_from_json(raw: list[Any]) -> Address:
    if raw[0] == "serial":
        return SerialAddress(raw[1], bytes.fromhex(raw[2]) if raw[2] else None, raw[3])
    if raw[0] == "udp6":
        return (raw[1], raw[2], raw[3], raw[4])
    return (raw[1], raw[2])


@dataclass(slots=True)
class Registration:
    """A REGISTER the gateway sent (§6.10), waiting for its REGACK with the PUBLISH that needed it."""

    msg_id: int
    topic_id: int
    topic: str
    delivery: Delivery
    dup: bool


# Topic ids the gateway hands out; 0x0000 and 0xFFFF are reserved (§5.3.11).
_FIRST_TOPIC_ID, _LAST_TOPIC_ID = 1, 0xFFFE


@dataclass(slots=True)
class SnSettings:
    gateway_id: int = 1
    predefined: dict[int, str] = field(default_factory=dict)  # topic id -> topic name, for every client
    max_clients: int = 1000
    max_inflight: int = 8  # unacknowledged QoS 1/2 messages sent to one client (small radios, small buffers)
    max_message_size: int = 1024  # larger deliveries are dropped, as MQTT's Maximum Packet Size does
    retry_interval: float = 10.0  # T_RETRY (§7.2): unacknowledged PUBLISH / PUBREL go again after this long
    max_retries: int = 3  # N_RETRY: then the client is taken as lost (§6.13)
    # Bytes of publishes being stored (payload + MESSAGE_OVERHEAD). Beyond it the transports stop reading until
    # the store has caught up by half, so a burst waits in the kernel's socket buffer rather than in our memory;
    # beyond twice it (what arrives regardless, e.g. on a serial line) publishes get "congestion", QoS 0 is dropped.
    max_backlog_bytes: int = 512 << 10
    # client id -> topic id -> topic name: pre-defined for that client only, before `predefined`
    client_predefined: dict[str, dict[int, str]] = field(default_factory=dict)


class SnClient:
    """One MQTT-SN client: its topic registrations, its pending will, and the Outlet its broker session sends to."""

    __slots__ = (
        "_gateway",
        "_next_msg_id",
        "_next_topic_id",
        "address",
        "asleep",
        "clean_session",
        "client_id",
        "ids",
        "info",
        "keepalive",
        "last_seen",
        "names",
        "receive_maximum",
        "registering",
        "retries",
        "retry_timer",
        "session",
        "timer",
        "waking",
        "will",
        "will_pending",
    )

    def __init__(
        self, gateway: SnGateway, address: Address, client_id: str, clean_session: bool, keepalive: int
    ) -> None:
        self._gateway = gateway
        self.address = address
        self.client_id = client_id
        self.clean_session = clean_session
        self.receive_maximum = gateway.settings.max_inflight
        self.names: dict[int, str] = {}  # registered topic id -> name
        self.ids: dict[str, int] = {}  # name -> registered topic id
        self._next_topic_id = _FIRST_TOPIC_ID
        self._next_msg_id = 1
        self.session: Session | None = None
        self.info = ClientInfo(client_id, None, "mqtt-sn", show_address(address))
        self.will: Message | None = None
        self.will_pending: codec.WillTopic | None = None  # during the will prompts of CONNECT
        self.keepalive = keepalive  # seconds; while asleep, the sleep duration (§6.14)
        self.asleep = False
        self.waking = False  # asleep, but woken by a PINGREQ until its buffered messages are sent (§6.14)
        self.registering: Registration | None = None
        self.last_seen = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.retry_timer: asyncio.TimerHandle | None = None
        self.retries = 0

    # -- Outlet, for the broker session -------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return self.registering is None  # §6.10: nothing more is sent while a REGISTER waits for its REGACK

    def send_publish(self, delivery: Delivery, dup: bool) -> bool:
        message = delivery.message
        topic_id, kind = self._topic_id_for(message.topic)
        packet = codec.Publish(topic_id, delivery.packet_id, message.payload, delivery.qos, kind, dup, delivery.retain)
        data = codec.encode(packet)
        if len(data) > self._gateway.settings.max_message_size:
            return False
        if topic_id == 0:
            # §6.10: the client learns a topic it receives through a wildcard before the first PUBLISH on it.
            self.registering = Registration(self.next_msg_id(), self._free_topic_id(), message.topic, delivery, dup)
            self.send_register()
            self._gateway.retry_later(self)
            return True
        self._gateway.send(data, self.address)
        if delivery.qos:
            self._gateway.retry_later(self)
        return True

    def send_register(self) -> None:
        registration = self.registering
        assert registration is not None
        self.send(codec.Register(registration.topic_id, registration.msg_id, registration.topic))

    def send_pubrel(self, packet_id: int) -> None:
        self.send(codec.PubRel(packet_id))

    def taken_over(self) -> None:
        log.info("MQTT-SN client %s (%s): session taken over by a new connection", self.client_id, self.address)
        self._gateway.end(self)

    # -- topics ---------------------------------------------------------------------------------------------------

    def _topic_id_for(self, topic: str) -> tuple[int, TopicIdType]:
        """How a PUBLISH names `topic` to this client; id 0 when it must be registered first."""
        predefined = self._gateway.predefined_id(self.client_id, topic)
        if predefined is not None:
            return predefined, TopicIdType.PREDEFINED
        if len(topic.encode()) == 2:
            return codec.short_topic_id(topic), TopicIdType.SHORT
        return self.ids.get(topic, 0), TopicIdType.NORMAL

    def register(self, name: str, topic_id: int = 0) -> int:
        """The id of `name` for this client, registered now (with `topic_id`, or a free one) if new."""
        existing = self.ids.get(name)
        if existing is not None:
            return existing
        topic_id = topic_id or self._free_topic_id()
        self.names[topic_id] = name
        self.ids[name] = topic_id
        self._gateway.save(self)
        return topic_id

    def learn_topics(self, topics: dict[int, str]) -> None:
        """Topic ids registered before (a restart, an earlier connection of a persistent session)."""
        self.names.update(topics)
        self.ids.update((name, topic_id) for topic_id, name in topics.items())
        self._next_topic_id = max(self.names, default=0) % _LAST_TOPIC_ID + 1

    def _free_topic_id(self) -> int:
        gateway = self._gateway
        pending = self.registering.topic_id if self.registering else None
        topic_id = self._next_topic_id
        while topic_id in self.names or topic_id == pending or gateway.predefined_name(self.client_id, topic_id):
            topic_id = topic_id % _LAST_TOPIC_ID + 1
        self._next_topic_id = topic_id % _LAST_TOPIC_ID + 1
        return topic_id

    def publish_topic(self, topic_id: int, kind: TopicIdType) -> str | None:
        """The topic a PUBLISH names, or None when the id is unknown (registered names were checked then)."""
        if kind == TopicIdType.NORMAL:
            return self.names.get(topic_id)
        return self._gateway.publish_topic(topic_id, kind, self.client_id)

    def next_msg_id(self) -> int:
        msg_id = self._next_msg_id
        self._next_msg_id = msg_id % 0xFFFF + 1
        return msg_id

    def send(self, message: codec.Message) -> None:
        self._gateway.send_message(message, self.address)


@dataclass(slots=True)
class SnStats:
    received: int = 0
    malformed: int = 0
    connected: int = 0  # awake or asleep
    congested: int = 0  # publishes refused (QoS 1/2) or dropped (QoS 0) while the store was behind


# A publish waiting for its hooks: the batch future, and what answering it needs.
_Pending = tuple["asyncio.Future[None]", SnClient, Session, codec.Publish, Message, int]


class SnGateway:
    """Decodes datagrams, keeps the clients by address, and joins them to the broker."""

    def __init__(
        self,
        broker: Broker,
        send: Send,
        settings: SnSettings | None = None,
        *,
        pause_reading: Callable[[bool], None] | None = None,
    ) -> None:
        self.broker = broker
        self._transport_send = send
        self._pause_reading = pause_reading  # True: stop reading datagrams for now; False: read again
        self._reading_paused = False
        self.settings = settings or SnSettings()
        self._predefined_ids = {name: topic_id for topic_id, name in self.settings.predefined.items()}
        self._client_predefined_ids = {
            client_id: {name: topic_id for topic_id, name in topics.items()}
            for client_id, topics in self.settings.client_predefined.items()
        }
        self.clients: dict[Address, SnClient] = {}
        self._parked: dict[str, dict[int, str]] = {}  # topic ids of clients away with a persistent session
        self.stats = SnStats()
        self.backlog_bytes = 0
        # Publishes waiting for their hooks, answered in arrival order; those stored in one batch share its future,
        # so one callback per batch answers them all.
        self._pending: deque[_Pending] = deque()
        self._awaited: asyncio.Future[None] | None = None
        self._restore()

    # -- what survives a restart ---------------------------------------------------------------------------------

    def save(self, client: SnClient) -> None:
        """Keep a connected or sleeping client's address, topic ids, will and sleep with its session, so that it
        goes on after a gateway restart without connecting again (other gateways lose the topic ids)."""
        state = self.broker.state
        if state is None or client.session is None:
            return
        will = client.will
        record = {
            "address": _address_json(client.address),
            "clean": client.clean_session,
            "keepalive": client.keepalive,
            "asleep": client.asleep,
            "topics": {str(topic_id): name for topic_id, name in client.names.items()},
            "will": [will.topic, will.payload.hex(), will.qos, will.retain] if will else None,
        }
        state.put_record(_RECORD_KIND, client.client_id, json.dumps(record).encode())

    def _park(self, client: SnClient) -> None:
        """A client gone for good: with a persistent session its topic ids stay for its next CONNECT (lost topic
        ids after a reconnect are a known failing of other gateways); otherwise its record goes."""
        state = self.broker.state
        if client.clean_session or not client.names:
            self._parked.pop(client.client_id, None)
            if state is not None:
                state.delete_record(_RECORD_KIND, client.client_id)
            return
        self._parked[client.client_id] = client.names
        if state is not None:
            topics = {str(topic_id): name for topic_id, name in client.names.items()}
            state.put_record(_RECORD_KIND, client.client_id, json.dumps({"gone": True, "topics": topics}).encode())

    def _restore(self) -> None:
        state = self.broker.state
        if state is None:
            return
        for client_id, raw in list(state.records(_RECORD_KIND)):
            session = self.broker.sessions.get(client_id)
            if session is None:
                state.delete_record(_RECORD_KIND, client_id)
                continue
            record = json.loads(raw)
            topics = {int(topic_id): name for topic_id, name in record["topics"].items()}
            if record.get("gone"):
                self._parked[client_id] = topics
                continue
            client = SnClient(
                self, _address_from_json(record["address"]), client_id, record["clean"], record["keepalive"]
            )
            client.learn_topics(topics)
            if record["will"]:
                topic, payload, qos, retain = record["will"]
                client.will = Message(topic, bytes.fromhex(payload), qos, retain, sender=client_id)
            client.session = session
            session.disconnected_at = None
            client.asleep = record["asleep"]
            self.broker.activity.connected(client_id, "mqtt-sn", client.info.peer)
            if client.asleep:
                self.broker.sleepers[client_id] = client
                self.broker.activity.asleep(client_id)
                session.queue_qos0 = True
            else:
                session.connection = client
            self.clients[client.address] = client
            self.stats.connected += 1
            self._supervise(client)
        if self.clients:
            log.info("MQTT-SN: %d clients go on from before the restart", len(self.clients))

    def advertise(self, group: Address, interval: int) -> None:
        """§6.1: tell the network that this gateway is here, and when it will say so again."""
        self.send_message(codec.Advertise(self.settings.gateway_id, interval), group)

    def send_message(self, message: codec.Message, address: Address) -> None:
        self.send(codec.encode(message), address)

    def send(self, data: bytes, address: Address) -> None:
        """Send to a client; what the broker state gathered (sessions, registrations) is written first, so that
        nothing acknowledged is only in memory."""
        try:
            self.broker.flush_state()
        except Exception:
            log.exception("MQTT-SN: cannot write the broker state; nothing is sent to %s", address)
            return
        self._transport_send(data, address)

    def predefined_name(self, client_id: str, topic_id: int) -> str | None:
        """The topic of a pre-defined id for `client_id`: its own ([mqttsn] client_topics) before everyone's."""
        own = self.settings.client_predefined.get(client_id)
        if own is not None and topic_id in own:
            return own[topic_id]
        return self.settings.predefined.get(topic_id)

    def predefined_id(self, client_id: str, topic: str) -> int | None:
        own = self._client_predefined_ids.get(client_id)
        if own is not None and topic in own:
            return own[topic]
        return self._predefined_ids.get(topic)

    def topic_name(self, topic_id: int, kind: TopicIdType, client_id: str = "") -> str | None:
        """What a pre-defined id (for `client_id`; "": a client unknown) or a short name stands for."""
        if kind == TopicIdType.PREDEFINED:
            return self.predefined_name(client_id, topic_id)
        try:
            return codec.short_topic_name(topic_id)
        except ValueError:
            return None

    def publish_topic(self, topic_id: int, kind: TopicIdType, client_id: str = "") -> str | None:
        """The topic a PUBLISH with a pre-defined id or a short name goes to, or None when it names none."""
        name = self.topic_name(topic_id, kind, client_id)
        return name if name is not None and topic_name_error(name) is None else None

    # -- datagrams in ---------------------------------------------------------------------------------------------

    def received(self, data: bytes, address: Address) -> None:
        self.stats.received += 1
        try:
            message = codec.decode(data)
        except codec.MalformedMessage as exc:
            self.stats.malformed += 1
            log.warning("MQTT-SN datagram from %s dropped: %s", address, exc.reason)
            return
        client = self.clients.get(address)
        if (
            type(message) is codec.PingReq
            and message.client_id
            and (client is None or client.client_id != message.client_id)
        ):
            client = self._relocated(message.client_id, address) or client
        if client is not None:
            client.last_seen = time.monotonic()
            if type(message) is codec.Publish and message.qos >= 0 and not client.asleep and client.session:
                self._on_publish(client, client.session, message)  # the common case, first
                return
        if isinstance(message, codec.Connect):
            self._on_connect(address, message)
        elif isinstance(message, codec.SearchGw):
            self.send_message(codec.GwInfo(self.settings.gateway_id), address)
        elif isinstance(message, codec.Publish) and message.qos == -1:
            self._on_publish_qos_minus_one(address, message)
        elif isinstance(message, codec.Advertise | codec.GwInfo | codec.Encapsulated):
            return  # other gateways' discovery (and our own ADVERTISE, heard back), or a nested encapsulation
        elif client is None and isinstance(message, codec.Disconnect):
            return  # answering it would start an endless exchange with whoever sent it
        elif client is not None and client.asleep:
            self._while_asleep(client, message)
        elif client is None:
            log.info(
                "MQTT-SN %s from %s, which is not connected: answered with DISCONNECT", type(message).__name__, address
            )
            self.send_message(codec.Disconnect(), address)
        elif client.will_pending is not None or client.session is None:
            self._on_will_prompt(client, message)
        else:
            self._dispatch(client, message)

    def _relocated(self, client_id: str, address: Address) -> SnClient | None:
        """§6.14: a sleeper wakes with a PINGREQ carrying its client id because it may come back from elsewhere: a
        new source port after deep sleep, a new DHCP lease, another forwarder. Its session follows it there."""
        sleeper = self.broker.sleepers.get(client_id)
        if not isinstance(sleeper, SnClient) or sleeper._gateway is not self:
            return None
        stale = self.clients.pop(address, None)
        if stale is not None and stale is not sleeper:
            log.info("MQTT-SN client %s at %s is replaced there by %s", stale.client_id, address, client_id)
            self._end(stale, will=False)
        if self.clients.get(sleeper.address) is sleeper:
            del self.clients[sleeper.address]
        log.info("MQTT-SN client %s, asleep at %s, wakes from %s", client_id, sleeper.address, address)
        sleeper.address = address
        sleeper.info = ClientInfo(client_id, None, "mqtt-sn", show_address(address))
        self.clients[address] = sleeper
        self.save(sleeper)
        return sleeper

    def received_on_group(self, data: bytes, address: Address, group: Address) -> None:
        """A datagram sent to the discovery group. §6.1: GWINFO answers SEARCHGW to the group, so that other
        clients about to search hear it and need not, and to the searcher itself, which may not have joined it."""
        try:
            message = codec.decode(data)
        except codec.MalformedMessage:
            message = None
        if not isinstance(message, codec.SearchGw):
            self.received(data, address)  # counted, and a malformed one logged, there
            return
        self.stats.received += 1
        gwinfo = codec.encode(codec.GwInfo(self.settings.gateway_id))
        self.send(gwinfo, group)
        self.send(gwinfo, address)

    def _dispatch(self, client: SnClient, message: codec.Message) -> None:
        session = client.session
        assert session is not None
        if isinstance(message, codec.Publish):
            self._on_publish(client, session, message)
        elif isinstance(message, codec.Register):
            self._on_register(client, message)
        elif isinstance(message, codec.RegAck):
            self._on_regack(client, session, message)
        elif isinstance(message, codec.PubAck):
            client.retries = 0
            session.acknowledged(message.msg_id, 1)
        elif isinstance(message, codec.PubRec):
            client.retries = 0
            if session.received(message.msg_id, False):
                client.send(codec.PubRel(message.msg_id))
        elif isinstance(message, codec.PubComp):
            client.retries = 0
            session.acknowledged(message.msg_id, 2)
        elif isinstance(message, codec.PubRel):
            session.qos2_released(message.msg_id)
            client.send(codec.PubComp(message.msg_id))
        elif isinstance(message, codec.Subscribe):
            self._on_subscribe(client, session, message)
        elif isinstance(message, codec.Unsubscribe):
            self._on_unsubscribe(client, session, message)
        elif isinstance(message, codec.PingReq):
            client.send(codec.PingResp())
        elif isinstance(message, codec.WillTopicUpd):
            self._on_will_topic_update(client, message)
        elif isinstance(message, codec.WillMsgUpd):
            self._on_will_message_update(client, message)
        elif isinstance(message, codec.Disconnect):
            client.send(codec.Disconnect())
            if message.duration:
                self._fall_asleep(client, session, message.duration)
            else:
                self._end(client, will=False)
        else:
            log.info("MQTT-SN client %s: %s ignored", client.client_id, type(message).__name__)

    # -- connecting ---------------------------------------------------------------------------------------------

    def _on_connect(self, address: Address, connect: codec.Connect) -> None:
        if connect.protocol_id != 0x01:
            self.send_message(codec.ConnAck(ReturnCode.NOT_SUPPORTED), address)
            return
        if not self.broker.authorizer.authenticate(None, None):
            log.warning(
                "MQTT-SN client %s (%s) refused: MQTT-SN has no user names, and [mqtt] allow_anonymous = false. To "
                "let MQTT-SN sensors in, allow anonymous clients and limit what they may do with an acl_file.",
                connect.client_id,
                address,
            )
            self.send_message(codec.ConnAck(ReturnCode.NOT_SUPPORTED), address)
            return
        previous = self.clients.pop(address, None)
        if previous is not None and previous.session is not None:
            self._end(previous, will=False)
        if len(self.clients) >= self.settings.max_clients:
            self.send_message(codec.ConnAck(ReturnCode.CONGESTION), address)
            return
        client = SnClient(self, address, connect.client_id, connect.clean_session, connect.duration)
        self.clients[address] = client
        if connect.will:
            client.will_pending = codec.WillTopic()
            client.send(codec.WillTopicReq())
        else:
            self._attach(client)

    def _on_will_prompt(self, client: SnClient, message: codec.Message) -> None:
        if isinstance(message, codec.WillTopic):
            client.will_pending = message
            client.send(codec.WillMsgReq())
        elif isinstance(message, codec.WillMsg) and client.will_pending is not None:
            will = client.will_pending
            client.will_pending = None
            if will.topic and not self.broker.may_publish(None, client.client_id, will.topic):
                log.info(
                    "MQTT-SN client %s refused: its will topic %r is denied by the ACL", client.client_id, will.topic
                )
                self.clients.pop(client.address, None)
                client.send(codec.ConnAck(ReturnCode.NOT_SUPPORTED))
                return
            if will.topic and topic_name_error(will.topic) is None:
                client.will = Message(will.topic, message.data, will.qos, will.retain, sender=client.client_id)
            self._attach(client)
        else:
            log.info("MQTT-SN client %s: %s during CONNECT ignored", client.client_id, type(message).__name__)

    def _on_will_topic_update(self, client: SnClient, update: codec.WillTopicUpd) -> None:
        """§6.4: a new will topic (and QoS, retain) keeps the will message; an empty one deletes the will."""
        if not update.topic:
            client.will = None
        elif topic_name_error(update.topic) is not None or not self.broker.may_publish(
            None, client.client_id, update.topic
        ):
            client.send(codec.WillTopicResp(ReturnCode.NOT_SUPPORTED))
            return
        else:
            payload = client.will.payload if client.will else b""
            client.will = Message(update.topic, payload, update.qos, update.retain, sender=client.client_id)
        self.save(client)
        client.send(codec.WillTopicResp(ReturnCode.ACCEPTED))

    def _on_will_message_update(self, client: SnClient, update: codec.WillMsgUpd) -> None:
        """§6.4: a new will message for the will topic; without a will topic there is no will to change."""
        will = client.will
        if will is None:
            client.send(codec.WillMsgResp(ReturnCode.NOT_SUPPORTED))
            return
        client.will = Message(will.topic, update.data, will.qos, will.retain, sender=client.client_id)
        self.save(client)
        client.send(codec.WillMsgResp(ReturnCode.ACCEPTED))

    def _attach(self, client: SnClient) -> None:
        broker = self.broker
        broker.take_over(client.client_id)
        expiry = 0 if client.clean_session else NEVER_EXPIRES
        session, present = broker.attach(client.client_id, client.clean_session, expiry, None)
        parked = self._parked.pop(client.client_id, None)
        if present and parked:
            client.learn_topics(parked)
        client.session = session
        session.connection = client
        session.queue_qos0 = broker.settings.queue_qos0_messages  # a sleep may have changed it
        self.stats.connected += 1
        broker.activity.connected(client.client_id, "mqtt-sn", client.info.peer)
        client.send(codec.ConnAck(ReturnCode.ACCEPTED))
        log.info(
            "MQTT-SN client %s connected from %s (%s session)",
            client.client_id,
            client.address,
            "resumed" if present else "new",
        )
        self.save(client)
        self._supervise(client)
        if present:
            session.resend_inflight()

    def end(self, client: SnClient) -> None:
        """Another connection took the client's session: it is no longer this gateway's client."""
        self._end(client, will=False)

    def _end(self, client: SnClient, *, will: bool, forget: bool = True) -> None:
        session = client.session
        for handle in (client.timer, client.retry_timer):
            if handle is not None:
                handle.cancel()
        client.timer = client.retry_timer = None
        if self.clients.get(client.address) is client:
            self.clients.pop(client.address, None)
        if forget:
            self._park(client)
        if session is None:
            return
        client.session = None
        if self.broker.sleepers.get(client.client_id) is client:
            del self.broker.sleepers[client.client_id]
        if session.connection is client or client.asleep:
            self.stats.connected -= 1
            self.broker.detach(session, client.will if will else None, 0)

    # -- keep-alive and sleep (§6.11, §6.14) ----------------------------------------------------------------------

    def _supervise(self, client: SnClient) -> None:
        """A client silent for 1.5 times its keep-alive (or its sleep duration) is lost, and its will published."""
        if client.timer is not None:
            client.timer.cancel()
            client.timer = None
        if not client.keepalive:
            return
        limit = client.keepalive * 1.5
        due = client.last_seen + limit - time.monotonic()
        if due <= 0:
            log.info("MQTT-SN client %s (%s) lost: silent for %.0f s", client.client_id, client.address, limit)
            self._end(client, will=True)
            return
        client.timer = asyncio.get_running_loop().call_later(due, self._supervise, client)

    def retry_later(self, client: SnClient) -> None:
        """§6.13: what a client has not acknowledged within T_RETRY goes again (DUP set); after N_RETRY tries
        without an answer the client is lost."""
        if client.retry_timer is None:
            loop = asyncio.get_running_loop()
            client.retry_timer = loop.call_later(self.settings.retry_interval, self._retry, client)

    def _retry(self, client: SnClient) -> None:
        client.retry_timer = None
        session = client.session
        asleep = client.asleep and not client.waking
        if session is None or asleep or not (session.inflight or client.registering):
            client.retries = 0
            return
        client.retries += 1
        if client.retries > self.settings.max_retries:
            log.info(
                "MQTT-SN client %s (%s) lost: %d tries without an acknowledgement",
                client.client_id,
                client.address,
                self.settings.max_retries,
            )
            self._end(client, will=True)
            return
        if client.registering is not None:
            client.send_register()  # what waits behind it goes once it is answered
        else:
            session.resend_inflight()
        self.retry_later(client)

    def _fall_asleep(self, client: SnClient, session: Session, duration: int) -> None:
        """§6.14: the session stays, messages for it are buffered (QoS 0 too) until the client wakes."""
        if not client.asleep:
            client.asleep = True
            self.broker.sleepers[client.client_id] = client
            self.broker.activity.asleep(client.client_id)
        client.keepalive = duration
        client.waking = False
        session.connection = None
        session.queue_qos0 = True
        self.broker.set_expiry(session, max(session.expiry_interval, int(duration * 1.5) + 1))
        self.save(client)
        self._supervise(client)
        log.info("MQTT-SN client %s asleep for %d s", client.client_id, duration)

    def _while_asleep(self, client: SnClient, message: codec.Message) -> None:
        session = client.session
        assert session is not None
        if isinstance(message, codec.PingReq):
            # Awake for a moment: the buffered messages go out (a REGISTER first waits for its REGACK), then
            # PINGRESP tells the client it may sleep again.
            pending = client.registering  # from before it slept, or its REGACK was lost and the PINGREQ came again
            if not client.waking:
                client.waking = True
                session.connection = client
                session.resend_inflight()
            if pending is not None:
                client.send_register()
            self._woken(client, session)
        elif isinstance(message, codec.Disconnect):
            client.send(codec.Disconnect())
            if message.duration:
                self._fall_asleep(client, session, message.duration)  # asleep again, perhaps for another duration
            else:
                self._end(client, will=False)
        elif isinstance(message, codec.PubAck | codec.PubRec | codec.PubComp | codec.RegAck):
            self._dispatch(client, message)  # answers to what was sent while it was awake
        elif isinstance(message, codec.Publish | codec.PubRel | codec.Register):
            # A device that wakes to report and sleeps again need not CONNECT for it: its session is here.
            self._dispatch(client, message)
        else:
            log.info("MQTT-SN client %s is asleep: %s ignored", client.client_id, type(message).__name__)

    def _woken(self, client: SnClient, session: Session) -> None:
        """PINGRESP once the buffered messages are out (§6.14), and never before a pending REGACK came."""
        if client.waking and client.registering is None:
            client.waking = False
            session.connection = None
            client.send(codec.PingResp())

    # -- publishing -----------------------------------------------------------------------------------------------

    def _on_publish(self, client: SnClient, session: Session, publish: codec.Publish) -> None:
        topic = client.publish_topic(publish.topic_id, publish.topic_id_type)
        if topic is None:
            # §5.4.13: PUBACK with "invalid topic id", echoing the TopicId as it arrived.
            client.send(codec.PubAck(publish.topic_id, publish.msg_id, ReturnCode.INVALID_TOPIC_ID))
            return
        if publish.qos == 2 and publish.msg_id in session.incoming_qos2:
            client.send(codec.PubRec(publish.msg_id))  # a resent QoS 2 message is acknowledged, not delivered again
            return
        broker = self.broker
        broker.activity.message(client.client_id, "mqtt-sn", client.info.peer, topic)
        if not broker.may_publish(None, client.client_id, topic):
            log.info("MQTT-SN client %s: publish to %r denied by the ACL", client.client_id, topic)
            broker.rejected(client.info, topic, "the ACL does not allow publishing here")
            if publish.qos > 0:  # §5.3.10 has no "not authorized": "not supported" tells it not to try again
                client.send(codec.PubAck(publish.topic_id, publish.msg_id, ReturnCode.NOT_SUPPORTED))
            return
        message = Message(topic, publish.data, publish.qos, publish.retain, sender=client.client_id)
        if not broker.hooks_for(topic):
            if self._pending:  # behind messages of this client still being stored: keep its order
                self._pending.append((self._pending[-1][0], client, session, publish, message, 0))
            else:
                self._published(client, session, publish, message, None)
            return
        limit = self.settings.max_backlog_bytes
        if self.backlog_bytes >= 2 * limit:
            self._congested(client, publish)
            return
        done = broker.start_hooks(message, client.info)
        if done is None:
            self._published(client, session, publish, message, None)
            return
        if publish.qos == 2:
            session.incoming_qos2[publish.msg_id] = done
        size = len(publish.data) + MESSAGE_OVERHEAD
        self.backlog_bytes += size
        if self.backlog_bytes >= limit and not self._reading_paused and self._pause_reading is not None:
            self._reading_paused = True
            self._pause_reading(True)
        self._pending.append((done, client, session, publish, message, size))
        if done is not self._awaited:
            self._awaited = done
            done.add_done_callback(self._answer_stored)

    def _answer_stored(self, _future: asyncio.Future[None]) -> None:
        pending = self._pending
        while pending and pending[0][0].done():
            done, client, session, publish, message, size = pending.popleft()
            self.backlog_bytes -= size
            error = asyncio.CancelledError() if done.cancelled() else done.exception()
            self._published(client, session, publish, message, error)
        if not pending:
            self._awaited = None
        if self._reading_paused and self.backlog_bytes < self.settings.max_backlog_bytes // 2:
            self._reading_paused = False
            assert self._pause_reading is not None
            self._pause_reading(False)

    def _congested(self, client: SnClient, publish: codec.Publish) -> None:
        """§5.3.10 "rejected: congestion": the client sends it again later; a QoS 0 message is lost."""
        stats = self.stats
        if not stats.congested % 1000:
            log.warning(
                "MQTT-SN: the store is behind (%d bytes waiting): publishes are refused with 'congestion' "
                "(QoS 0 dropped) until it catches up; %d so far",
                self.backlog_bytes,
                stats.congested + 1,
            )
        stats.congested += 1
        if publish.qos:
            client.send(codec.PubAck(publish.topic_id, publish.msg_id, ReturnCode.CONGESTION))

    def _published(
        self,
        client: SnClient,
        session: Session,
        publish: codec.Publish,
        message: Message,
        error: BaseException | None,
    ) -> None:
        """The hooks are done: route the message and acknowledge it, or refuse it with a return code."""
        code = ReturnCode.ACCEPTED
        if error is None:
            self.broker.route(message)
            if publish.qos == 2:
                session.qos2_accepted(publish.msg_id)
        else:
            retry = isinstance(error, PublishRejected) and error.retry
            reason = error.reason if isinstance(error, PublishRejected) else str(error)
            log.warning("MQTT-SN client %s: message on %r rejected: %s", client.client_id, message.topic, reason)
            self.broker.rejected(client.info, message.topic, reason)
            session.incoming_qos2.pop(publish.msg_id, None)
            # §5.3.10 has no "bad payload": congestion tells the client to try again later, "not supported" not to.
            code = ReturnCode.CONGESTION if retry else ReturnCode.NOT_SUPPORTED
        if publish.qos == 1 or (publish.qos == 2 and code != ReturnCode.ACCEPTED):
            client.send(codec.PubAck(publish.topic_id, publish.msg_id, code))
        elif publish.qos == 2:
            client.send(codec.PubRec(publish.msg_id))

    def _on_publish_qos_minus_one(self, address: Address, publish: codec.Publish) -> None:
        """§6.8: from anyone, connected or not, with a pre-defined id or a short name; nothing is answered."""
        known = self.clients.get(address)
        topic = self.publish_topic(publish.topic_id, publish.topic_id_type, known.client_id if known else "")
        if publish.topic_id_type == TopicIdType.NORMAL or topic is None:
            log.info("MQTT-SN QoS -1 publish from %s to an unknown topic id %d dropped", address, publish.topic_id)
            return
        if not self.broker.authorizer.authenticate(None, None) or not self.broker.may_publish(None, "", topic):
            log.info(
                "MQTT-SN QoS -1 publish from %s to %r dropped: anonymous clients may not publish there", address, topic
            )
            return
        message = Message(topic, publish.data, 0, publish.retain)
        self.broker.publish_internal(message)

    def _on_regack(self, client: SnClient, session: Session, regack: codec.RegAck) -> None:
        """§6.10: the client knows the topic now; the PUBLISH that waited for it goes, then what queued behind."""
        registration = client.registering
        if registration is None or regack.msg_id != registration.msg_id:
            return  # a late or repeated answer
        client.registering = None
        client.retries = 0
        if regack.return_code == ReturnCode.ACCEPTED:
            client.register(registration.topic, registration.topic_id)
            client.send_publish(registration.delivery, registration.dup)
        else:
            log.info(
                "MQTT-SN client %s refused the topic %r (%s): the message on it is dropped",
                client.client_id,
                registration.topic,
                ReturnCode(regack.return_code).name.lower().replace("_", " "),
            )
            session.discard(registration.delivery)
        if session.connection is client:
            session.pump()
        self._woken(client, session)

    def _on_register(self, client: SnClient, register: codec.Register) -> None:
        name = register.topic_name
        if not name or topic_name_error(name) is not None:
            client.send(codec.RegAck(0, register.msg_id, ReturnCode.INVALID_TOPIC_ID))
            return
        client.send(codec.RegAck(client.register(name), register.msg_id, ReturnCode.ACCEPTED))

    # -- subscribing ----------------------------------------------------------------------------------------------

    def _filter(self, client: SnClient, topic: str | int, kind: TopicIdType) -> str | None:
        if isinstance(topic, str):
            return topic if topic and filter_error(topic) is None else None
        return self.topic_name(topic, kind, client.client_id)

    def _on_subscribe(self, client: SnClient, session: Session, subscribe: codec.Subscribe) -> None:
        topic_filter = self._filter(client, subscribe.topic, subscribe.topic_id_type)
        if topic_filter is None:
            client.send(codec.SubAck(0, subscribe.msg_id, ReturnCode.INVALID_TOPIC_ID))
            return
        code, new = self.broker.subscribe(session, Subscription(topic_filter, subscribe.qos), None)
        if code >= 0x80:
            client.send(codec.SubAck(0, subscribe.msg_id, ReturnCode.NOT_SUPPORTED))
            return
        topic_id = 0
        if subscribe.topic_id_type == TopicIdType.PREDEFINED and isinstance(subscribe.topic, int):
            topic_id = subscribe.topic
        elif subscribe.topic_id_type == TopicIdType.NORMAL and not any(c in topic_filter for c in "+#"):
            topic_id = client.register(topic_filter)  # §5.4.16: a topic name gets its id in the SUBACK
        self.broker.save_subscriptions(session)
        client.send(codec.SubAck(topic_id, subscribe.msg_id, ReturnCode.ACCEPTED, code))
        self.broker.send_retained(session, topic_filter, new)

    def _on_unsubscribe(self, client: SnClient, session: Session, unsubscribe: codec.Unsubscribe) -> None:
        topic_filter = self._filter(client, unsubscribe.topic, unsubscribe.topic_id_type)
        if topic_filter is not None:
            self.broker.unsubscribe(session, topic_filter)
            self.broker.save_subscriptions(session)
        client.send(codec.UnsubAck(unsubscribe.msg_id))

    def stop(self) -> None:
        """The gateway is stopping: sessions are detached without their wills, and the clients' records stay, so
        that they go on after the restart."""
        for client in list(self.clients.values()):
            self._end(client, will=False, forget=False)
