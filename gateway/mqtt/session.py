"""One client's session: what it subscribed to, the messages on their way to it, and its will (§4.1).

A session outlives its network connections when the client asked for that (clean session 0 in 3.1.1, a session
expiry interval in 5). Outgoing QoS 1/2 messages wait in a bounded queue, move into an in-flight window as the
client's Receive Maximum allows, and leave it on PUBACK / PUBCOMP. A persistent session mirrors every such message
into the broker's state store, so they survive a gateway restart.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gateway.mqtt.codec import Properties

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("gateway.mqtt")

NEVER_EXPIRES = 0xFFFFFFFF


@dataclass(slots=True)
class Message:
    """An application message as the broker routes it."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    # MQTT 5 properties passed through to subscribers (payload format, content type, response topic,
    # correlation data, user properties); never topic alias or subscription identifiers, which are per hop.
    properties: Properties = field(default_factory=dict)
    expires_at: float | None = None  # wall-clock seconds, so that expiry survives a restart
    sender: str | None = None  # the publishing client's id, for No Local (§3.8.3.1)


@dataclass(slots=True)
class SubOptions:
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    identifier: int | None = None

    @property
    def identifiers(self) -> list[int]:
        """The Subscription Identifiers a delivery through this subscription carries (§3.3.4)."""
        return [self.identifier] if self.identifier else []


@dataclass(slots=True)
class Delivery:
    """One message on its way to one session."""

    message: Message
    qos: int
    retain: bool
    identifiers: list[int]
    seq: int = 0  # key of its copy in the state store; 0 when not stored
    packet_id: int = 0
    released: bool = False  # QoS 2: PUBREC received and PUBREL sent (§4.3.3)


class Outlet(Protocol):
    """What a session needs of the connection it is attached to: an MQTT connection, or an MQTT-SN client, each
    encoding deliveries in its own protocol."""

    receive_maximum: int  # the client's (§3.1.2.11.3)

    @property
    def writable(self) -> bool: ...

    def send_publish(self, delivery: Delivery, dup: bool) -> bool:
        """Send a delivery; False when the client can never take it (larger than it accepts): it is dropped."""
        ...

    def send_pubrel(self, packet_id: int) -> None: ...

    def taken_over(self) -> None:
        """A new connection claims this client id (§3.1.4): let go of the session, which moves to it."""
        ...


class StateStore(Protocol):
    """Where persistent sessions keep their messages (see persist.py)."""

    def put_delivery(self, client_id: str, delivery: Delivery) -> None: ...

    def delete_delivery(self, client_id: str, seq: int) -> None: ...

    def put_incoming_qos2(self, client_id: str, packet_id: int) -> None: ...

    def delete_incoming_qos2(self, client_id: str, packet_id: int) -> None: ...


class SessionCounters(Protocol):
    messages_sent: int
    messages_dropped: int


class Session:
    __slots__ = (
        "_next_packet_id",
        "_next_seq",
        "client_id",
        "connection",
        "counters",
        "disconnected_at",
        "dropped",
        "expiry_interval",
        "incoming_qos2",
        "inflight",
        "max_queued",
        "max_queued_bytes",
        "queue",
        "queue_qos0",
        "queued_bytes",
        "resend",
        "store",
        "subscriptions",
        "username",
    )

    def __init__(
        self,
        client_id: str,
        expiry_interval: int,
        max_queued: int,
        counters: SessionCounters,
        *,
        max_queued_bytes: int = 1 << 62,
        queue_qos0: bool = False,
        store: StateStore | None = None,
    ) -> None:
        self.client_id = client_id
        self.expiry_interval = expiry_interval
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0  # payload bytes waiting or in flight: what a slow or absent client costs
        self.queue_qos0 = queue_qos0
        self.counters = counters
        self.store = store  # None unless the session outlives its connection
        self.username: str | None = None
        self.subscriptions: dict[str, SubOptions] = {}
        self.connection: Outlet | None = None
        self.inflight: dict[int, Delivery] = {}
        # Created on first use: an empty deque costs most of a kilobyte, and most sessions never queue.
        self.queue: deque[Delivery] | None = None
        # Packet ids of QoS 2 messages from the client whose PUBREL has not come yet, each with the hook still
        # deciding whether the message is accepted, or None once it was (PUBREC sent): §4.3.3 method A.
        self.incoming_qos2: dict[int, asyncio.Future[None] | None] = {}
        # Packet ids of in-flight messages still to be sent again after a reconnect, as the window allows.
        self.resend: deque[int] | None = None
        self.disconnected_at: float | None = None
        self.dropped = 0
        self._next_packet_id = 1
        self._next_seq = 1

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    def expired(self, now: float) -> bool:
        if self.connection is not None or self.disconnected_at is None or self.expiry_interval == NEVER_EXPIRES:
            return False
        return now - self.disconnected_at >= self.expiry_interval

    # -- outgoing messages ----------------------------------------------------------------------------------

    def deliver(self, message: Message, qos: int, retain: bool, identifiers: list[int]) -> None:
        conn = self.connection
        if qos == 0 and conn is not None and conn.writable and not self.queue:
            self._send(conn, Delivery(message, 0, retain, identifiers))
            return
        if conn is None and qos == 0 and not self.queue_qos0:
            return
        if (len(self.queue) if self.queue else 0) + len(self.inflight) >= self.max_queued or self.queued_bytes + len(
            message.payload
        ) > self.max_queued_bytes:
            # Dropping the newest keeps what the client was already promised in order; counted and visible.
            self.dropped += 1
            self.counters.messages_dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "client %s: %d messages dropped so far: its queue is full (%d messages or %d bytes, "
                    "[mqtt] max_queued_messages / max_queued_bytes); the client is offline or reads too slowly",
                    self.client_id,
                    self.dropped,
                    self.max_queued,
                    self.max_queued_bytes,
                )
            return
        delivery = Delivery(message, qos, retain, identifiers)
        if qos and self.store is not None:
            delivery.seq = self._next_seq
            self._next_seq += 1
            self.store.put_delivery(self.client_id, delivery)
        self._enqueue(delivery)
        if conn is not None:
            self.pump()

    def restore(self, delivery: Delivery) -> None:
        """Put back a delivery loaded from the state store after a restart."""
        self._next_seq = max(self._next_seq, delivery.seq + 1)
        if delivery.packet_id:
            self.inflight[delivery.packet_id] = delivery
            self.queued_bytes += len(delivery.message.payload)
            self._next_packet_id = max(self._next_packet_id, delivery.packet_id % 0xFFFF + 1)
        else:
            self._enqueue(delivery)

    def _enqueue(self, delivery: Delivery) -> None:
        self.queued_bytes += len(delivery.message.payload)
        if self.queue is None:
            self.queue = deque()
        self.queue.append(delivery)

    def pump(self) -> None:
        """Send queued messages while the connection accepts them and the in-flight window has room."""
        conn = self.connection
        if conn is None:
            return
        window = conn.receive_maximum
        resend = self.resend
        while resend and conn.writable:
            # §4.9: what was in flight before a reconnect goes again first, within the client's new window.
            if len(self.inflight) - len(resend) >= window:
                return
            delivery = self.inflight.get(resend.popleft())
            if delivery is None:
                continue
            if delivery.released:
                conn.send_pubrel(delivery.packet_id)
            else:
                self._send(conn, delivery, dup=True)
        queue = self.queue
        while queue and conn.writable:
            delivery = queue[0]
            if delivery.qos:
                if len(self.inflight) >= window:
                    return
                delivery.packet_id = self._allocate_packet_id()
                self.inflight[delivery.packet_id] = delivery
                if self.store is not None and delivery.seq:
                    self.store.put_delivery(self.client_id, delivery)
            queue.popleft()
            if not delivery.qos:
                self.queued_bytes -= len(delivery.message.payload)
            self._send(conn, delivery)

    def resend_inflight(self) -> None:
        """After a reconnect, resend unacknowledged PUBLISH packets with DUP set and PUBRELs (§4.4)."""
        self.resend = deque(self.inflight) if self.inflight else None
        self.pump()

    def _allocate_packet_id(self) -> int:
        pid = self._next_packet_id
        while pid in self.inflight:
            pid = pid % 0xFFFF + 1
        self._next_packet_id = pid % 0xFFFF + 1
        return pid

    def _send(self, conn: Outlet, delivery: Delivery, *, dup: bool = False) -> None:
        expires_at = delivery.message.expires_at
        if expires_at is not None and expires_at <= time.time() and not dup:
            self._forget(delivery)  # §3.3.2.3.3: an expired message is not delivered, unless already begun
            return
        if not conn.send_publish(delivery, dup):
            # §3.1.2.11.4: a message larger than the client accepts is discarded as if delivered.
            self._forget(delivery)
            self.counters.messages_dropped += 1
            return
        self.counters.messages_sent += 1

    def _forget(self, delivery: Delivery) -> None:
        if delivery.qos:
            self.queued_bytes -= len(delivery.message.payload)
        if delivery.packet_id:
            self.inflight.pop(delivery.packet_id, None)
        if delivery.seq and self.store is not None:
            self.store.delete_delivery(self.client_id, delivery.seq)

    # -- QoS 2 messages from the client ---------------------------------------------------------------------

    def qos2_accepted(self, packet_id: int) -> None:
        """The message was routed and its PUBREC is going out: from now on a resend is not a new message, also
        after a gateway restart."""
        self.incoming_qos2[packet_id] = None
        if self.store is not None:
            self.store.put_incoming_qos2(self.client_id, packet_id)

    def qos2_released(self, packet_id: int) -> bool:
        """PUBREL: the packet id may be reused for a new message. False when it was not in use."""
        if packet_id not in self.incoming_qos2:
            return False
        del self.incoming_qos2[packet_id]
        if self.store is not None:
            self.store.delete_incoming_qos2(self.client_id, packet_id)
        return True

    # -- acknowledgements from the client -------------------------------------------------------------------

    def acknowledged(self, packet_id: int, qos: int) -> bool:
        """PUBACK (qos 1) or PUBCOMP (qos 2) for an outgoing message. False when no such message is in flight."""
        delivery = self.inflight.get(packet_id)
        if delivery is None or delivery.qos != qos or (qos == 2 and not delivery.released):
            return False
        self._forget(delivery)
        self.pump()
        return True

    def received(self, packet_id: int, failed: bool) -> bool:
        """PUBREC for an outgoing QoS 2 message: from now on PUBREL is what gets resent (§4.3.3)."""
        delivery = self.inflight.get(packet_id)
        if delivery is None or delivery.qos != 2:
            return False
        if failed:  # a PUBREC with a reason code >= 0x80 ends the exchange (§4.3.3)
            self._forget(delivery)
            self.pump()
            return True
        delivery.released = True
        if self.store is not None and delivery.seq:
            self.store.put_delivery(self.client_id, delivery)
        return True

    def discard(self, delivery: Delivery) -> None:
        """Drop one message the client will never take (e.g. it refused its topic), counted as dropped."""
        self._forget(delivery)
        self.counters.messages_dropped += 1

    def discard_messages(self) -> None:
        for delivery in [*self.inflight.values(), *(self.queue or ())]:
            self._forget(delivery)
        self.inflight.clear()
        self.queue = None
        self.queued_bytes = 0
