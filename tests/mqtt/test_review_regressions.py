"""Regression tests for a review against the MQTT 3.1.1 and 5 specifications, on a broker run in-process (the
`Harness` of test_publish_hook.py) and driven by a raw client that builds and parses every byte itself.

Each test reproduces one finding of the review and fails on the code before its fix. The raw client (`Peer`) is
also used by tests/system/test_review_regressions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.mqtt.broker import ClientInfo, PublishRejected
from gateway.mqtt.connection import ConnectionLimits
from gateway.mqtt.session import Message
from tests.conftest import Client
from tests.mqtt.test_publish_hook import Harness, wait_until

# ---------------------------------------------------------------------------------------------------------------
# A raw MQTT 3.1.1 / 5 client

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 0x20, 0x30, 0x40, 0x50, 0x62, 0x70
SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x90, 0xC0, 0xD0, 0xE0

# MQTT 5 property identifiers (§2.2.2.2) used here
MESSAGE_EXPIRY_INTERVAL = 0x02
SESSION_EXPIRY_INTERVAL = 0x11
AUTHENTICATION_METHOD = 0x15
WILL_DELAY_INTERVAL = 0x18
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS = 0x23
MAXIMUM_PACKET_SIZE = 0x27

# Property identifier -> type, from the table of MQTT 5 §2.2.2.2
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), _BYTE),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), _TWO),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), _FOUR),
    0x0B: _VARINT,
    **dict.fromkeys((0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F), _UTF8),
    **dict.fromkeys((0x09, 0x16), _BINARY),
    0x26: _PAIR,
}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def mqtt_str(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def encode_properties(props: dict[int, Any]) -> bytes:
    out = b""
    for ident, value in props.items():
        kind = _PROPERTY_TYPES[ident]
        out += bytes([ident])
        if kind == _BYTE:
            out += bytes([value])
        elif kind == _TWO:
            out += struct.pack("!H", value)
        elif kind == _FOUR:
            out += struct.pack("!I", value)
        elif kind == _VARINT:
            out += varint(value)
        elif kind in (_UTF8, _BINARY):
            out += mqtt_str(value)
        else:
            out += mqtt_str(value[0]) + mqtt_str(value[1])
    return varint(len(out)) + out


def decode_properties(data: bytes, pos: int) -> tuple[dict[int, Any], int]:
    length, pos = _read_varint(data, pos)
    end = pos + length
    props: dict[int, Any] = {}
    while pos < end:
        ident = data[pos]
        kind = _PROPERTY_TYPES[ident]
        pos += 1
        value: Any
        if kind == _BYTE:
            value, pos = data[pos], pos + 1
        elif kind == _TWO:
            value, pos = struct.unpack_from("!H", data, pos)[0], pos + 2
        elif kind == _FOUR:
            value, pos = struct.unpack_from("!I", data, pos)[0], pos + 4
        elif kind == _VARINT:
            value, pos = _read_varint(data, pos)
        else:
            size = struct.unpack_from("!H", data, pos)[0]
            raw = data[pos + 2 : pos + 2 + size]
            pos += 2 + size
            value = raw if kind == _BINARY else raw.decode()
            if kind == _PAIR:
                size = struct.unpack_from("!H", data, pos)[0]
                value = (value, data[pos + 2 : pos + 2 + size].decode())
                pos += 2 + size
        props[ident] = value
    return props, end


@dataclass
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict[int, Any] | None = None


def connect_packet(
    client_id: str,
    *,
    version: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    props: dict[int, Any] | None = None,
    will: Will | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    def properties(values: dict[int, Any] | None) -> bytes:
        return encode_properties(values or {}) if version == 5 else b""

    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    payload = mqtt_str(client_id)
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += properties(will.properties) + mqtt_str(will.topic) + mqtt_str(will.payload)
    if username is not None:
        payload += mqtt_str(username)
    if password is not None:
        payload += mqtt_str(password)
    head = mqtt_str("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive) + properties(props)
    return packet(0x10, head + payload)


@dataclass
class ConnAck:
    session_present: bool
    code: int
    properties: dict[int, Any]
    size: int  # of the whole packet, in bytes


@dataclass
class Pub:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    packet_id: int
    properties: dict[int, Any]


@dataclass
class Ack:
    """PUBACK, PUBREC, PUBREL, PUBCOMP or DISCONNECT (packet id 0) as received."""

    kind: int
    packet_id: int
    code: int
    properties: dict[int, Any]
    size: int


class Peer:
    """One TCP connection speaking MQTT byte by byte; connects at once."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        version: int = 4,
        clean: bool = True,
        keepalive: int = 60,
        props: dict[int, Any] | None = None,
        will: Will | None = None,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buf = b""
        self.connack: ConnAck | None = None
        self.send(
            connect_packet(
                client_id,
                version=version,
                clean=clean,
                keepalive=keepalive,
                props=props,
                will=will,
                username=username,
                password=password,
            )
        )
        self.connack = self.read_connack(connect_timeout)

    # -- encoding

    def _props(self, props: dict[int, Any] | None) -> bytes:
        return encode_properties(props or {}) if self.version == 5 else b""

    def publish_bytes(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        packet_id: int = 0,
        *,
        dup: bool = False,
        retain: bool = False,
        props: dict[int, Any] | None = None,
    ) -> bytes:
        first = PUBLISH | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
        body = mqtt_str(topic) + (struct.pack("!H", packet_id) if qos else b"") + self._props(props) + payload
        return packet(first, body)

    def publish(self, topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, **kwargs: Any) -> None:
        self.send(self.publish_bytes(topic, payload, qos, packet_id, **kwargs))

    def subscribe_bytes(self, packet_id: int, filters: list[tuple[str, int]]) -> bytes:
        body = struct.pack("!H", packet_id) + self._props(None)
        return packet(0x82, body + b"".join(mqtt_str(f) + bytes([qos]) for f, qos in filters))

    def subscribe(self, filters: list[tuple[str, int]], packet_id: int = 1) -> list[int]:
        """SUBSCRIBE and return the SUBACK's codes."""
        self.send(self.subscribe_bytes(packet_id, filters))
        return self.read_suback(packet_id)

    def ack(self, kind: int, packet_id: int) -> None:
        self.send(packet(kind, struct.pack("!H", packet_id)))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def disconnect(self) -> None:
        self.send(packet(DISCONNECT, b"\x00\x00" if self.version == 5 else b""))
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- decoding

    def _split(self) -> tuple[int, bytes, int] | None:
        buf = self._buf
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if len(buf) < i + length:
            return None
        self._buf = buf[i + length :]
        return buf[0], buf[i : i + length], i + length

    def read_sized(self, timeout: float = 10.0) -> tuple[int, bytes, int]:
        """The next packet as (first byte, body, size of the whole packet); EOFError once the server closed."""
        deadline = time.monotonic() + timeout
        while True:
            split = self._split()
            if split is not None:
                return split
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete packet within {timeout} s (buffered {self._buf[:100]!r})")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                data = b""
            if not data:
                raise EOFError(f"connection closed (buffered {self._buf[:100]!r})")
            self._buf += data

    def read(self, timeout: float = 10.0) -> tuple[int, bytes]:
        first, body, _size = self.read_sized(timeout)
        return first, body

    def read_connack(self, timeout: float = 10.0) -> ConnAck:
        first, body, size = self.read_sized(timeout)
        assert first == CONNACK, f"expected CONNACK, got {first:#04x} {body[:100]!r}"
        props = decode_properties(body, 2)[0] if self.version == 5 and len(body) > 2 else {}
        return ConnAck(bool(body[0] & 1), body[1], props, size)

    def read_publish(self, timeout: float = 10.0) -> Pub:
        first, body = self.read(timeout)
        assert first & 0xF0 == PUBLISH, f"expected PUBLISH, got {first:#04x} {body[:100]!r}"
        return self.parse_publish(first, body)

    def parse_publish(self, first: int, body: bytes) -> Pub:
        qos = (first >> 1) & 3
        size = struct.unpack_from("!H", body)[0]
        topic = body[2 : 2 + size].decode()
        pos = 2 + size
        packet_id = 0
        if qos:
            packet_id = struct.unpack_from("!H", body, pos)[0]
            pos += 2
        props: dict[int, Any] = {}
        if self.version == 5:
            props, pos = decode_properties(body, pos)
        return Pub(topic, body[pos:], qos, bool(first & 0x08), bool(first & 0x01), packet_id, props)

    def parse_ack(self, first: int, body: bytes, size: int) -> Ack:
        if first == DISCONNECT:
            code = body[0] if body else 0
            props = decode_properties(body, 1)[0] if len(body) > 1 else {}
            return Ack(first, 0, code, props, size)
        code = body[2] if len(body) > 2 else 0
        props = decode_properties(body, 3)[0] if len(body) > 3 else {}
        return Ack(first, struct.unpack_from("!H", body)[0], code, props, size)

    def read_ack(self, timeout: float = 10.0) -> Ack:
        first, body, size = self.read_sized(timeout)
        assert first in (PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT), f"got {first:#04x} {body[:100]!r}"
        return self.parse_ack(first, body, size)

    def read_suback(self, packet_id: int, timeout: float = 10.0) -> list[int]:
        first, body = self.read(timeout)
        assert first == SUBACK, f"expected SUBACK, got {first:#04x} {body[:100]!r}"
        assert struct.unpack_from("!H", body)[0] == packet_id
        pos = decode_properties(body, 2)[1] if self.version == 5 else 2
        return list(body[pos:])

    def nothing_within(self, seconds: float) -> None:
        try:
            first, body = self.read(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet {first:#04x} {body[:100]!r}")

    def read_until_closed(self, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        """Every packet until the server closes the connection; fails if it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        packets = []
        while True:
            try:
                packets.append(self.read(max(0.01, deadline - time.monotonic())))
            except EOFError:
                return packets


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(limits: ConnectionLimits | None = None) -> Harness:
        harness = Harness(limits or ConnectionLimits())
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def harness(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory()


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    """Makes `Peer`s that are closed after the test."""
    made: list[Peer] = []

    def make(*args: Any, **kwargs: Any) -> Peer:
        peer = Peer(*args, **kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        with contextlib.suppress(Exception):
            client.close()


def watcher(harness: Harness, clients: list[Client], topic_filter: str = "#") -> Client:
    """A paho subscriber at QoS 1, to see what the broker routed, in order."""
    sub = Client(harness.port, "watcher")
    clients.append(sub)
    assert sub.subscribe(topic_filter, 1) == [1]
    return sub


def wait_detached(harness: Harness, client_id: str) -> None:
    """Until the broker noticed that the client's connection is gone."""
    assert wait_until(lambda: harness.call(lambda: harness.broker.sessions[client_id].connection is None))


def wait_for_clock(until: float) -> None:
    """Until the wall clock (which message expiry uses) reaches `until`."""
    while (remaining := until - time.time()) > 0:
        time.sleep(remaining)


# ---------------------------------------------------------------------------------------------------------------
# Finding 1: a resent QoS 2 PUBLISH acknowledged before its first copy's hook finished


@pytest.mark.parametrize("outcome", ["stored", "refused"])
def test_resent_qos2_publish_after_a_reconnect_waits_for_the_first_copys_hook(
    harness: Harness, clients: list[Client], peers: Callable[..., Peer], outcome: str
) -> None:
    """MQTT 3.1.1 and 5 §4.3.3 (PUBREC means the receiver owns the message) and §4.4 (the client resends with
    DUP after reconnecting): the PUBREC for the resent copy must wait for the first copy's hook; if that hook
    refused it, the resent copy is a new message and goes through the hook itself, and it is delivered once."""
    gate = harness.gate()
    sub = watcher(harness, clients)
    first = peers(harness.port, "pub", clean=False)
    first.publish("db/x", b"reading-1", 2, 7)
    assert wait_until(lambda: gate.payloads() == [b"reading-1"])
    first.close()  # gone before its PUBREC
    wait_detached(harness, "pub")

    second = peers(harness.port, "pub", clean=False)
    assert second.connack is not None and second.connack.session_present
    second.publish("db/x", b"reading-1", 2, 7, dup=True)
    second.nothing_within(0.3)  # the first copy is still with its hook: the gateway does not own it yet

    if outcome == "refused":
        gate.reject(b"reading-1", PublishRejected("disk full", 0x80, retry=True))
    gate.release(b"reading-1")
    ack = second.read_ack()
    assert (ack.kind, ack.packet_id) == (PUBREC, 7)
    second.ack(PUBREL, 7)
    assert second.read_ack().kind == PUBCOMP
    assert sub.expect().payload == b"reading-1"
    sub.expect_none(0.2)
    assert gate.payloads() == [b"reading-1"] * (1 if outcome == "stored" else 2)


@pytest.mark.parametrize("when", ["while-held", "after-refusal"])
def test_resent_qos2_publish_after_a_takeover_waits_for_the_first_copys_hook(
    harness: Harness, clients: list[Client], peers: Callable[..., Peer], when: str
) -> None:
    """MQTT 3.1.1 and 5 §3.1.4 (a new connection with the same client id takes the session over), §4.3.3 and
    §4.4: the first copy's hook belongs to the session, not to the connection that was taken over. A resend
    while it runs waits for it; after it refused the message, the resend is handled as a new message (before
    the fix the packet id stayed in use and the resend was acknowledged without being delivered: lost)."""
    gate = harness.gate()
    sub = watcher(harness, clients)
    first = peers(harness.port, "pub", clean=False)
    first.publish("db/x", b"reading-1", 2, 7)
    assert wait_until(lambda: gate.payloads() == [b"reading-1"])

    second = peers(harness.port, "pub", clean=False)  # takeover: the first connection is closed by the server
    assert second.connack is not None and second.connack.session_present
    assert first.read_until_closed() == []
    if when == "after-refusal":
        gate.reject(b"reading-1", PublishRejected("disk full", 0x80, retry=True))
        gate.release(b"reading-1")
        assert wait_until(lambda: gate.finished == [b"reading-1"])
        second.publish("db/x", b"reading-1", 2, 7, dup=True)
    else:
        second.publish("db/x", b"reading-1", 2, 7, dup=True)
        second.nothing_within(0.3)
        gate.release(b"reading-1")

    ack = second.read_ack()
    assert (ack.kind, ack.packet_id, ack.code) == (PUBREC, 7, 0)
    second.ack(PUBREL, 7)
    assert second.read_ack().kind == PUBCOMP
    assert sub.expect().payload == b"reading-1"
    sub.expect_none(0.2)
    assert gate.payloads() == [b"reading-1"] * (1 if when == "while-held" else 2)


# ---------------------------------------------------------------------------------------------------------------
# Finding 4: a will's Message Expiry Interval counted from CONNECT


def test_will_message_expiry_counts_from_when_the_will_is_published(
    harness: Harness, peers: Callable[..., Peer]
) -> None:
    """MQTT 5 §3.1.3.2.4: the will's Message Expiry Interval "is used as the Publication Expiry Interval when the
    Server publishes the Will Message": a client connected for longer than that interval still has its will
    delivered, with the whole interval left."""
    sub = peers(harness.port, "sub", version=5)
    assert sub.subscribe([("alarm/#", 1)]) == [1]
    will = Will("alarm/dev1", b"dev1 offline", 1, False, {MESSAGE_EXPIRY_INTERVAL: 1})
    connected_at = time.time()
    dev = peers(harness.port, "dev1", version=5, keepalive=0, will=will)
    wait_for_clock(connected_at + 1.3)  # connected longer than the will's expiry interval
    dev.close()  # gone without DISCONNECT: the will is published now
    got = sub.read_publish(5)
    assert (got.topic, got.payload) == ("alarm/dev1", b"dev1 offline")
    assert got.properties.get(MESSAGE_EXPIRY_INTERVAL) == 1
    sub.ack(PUBACK, got.packet_id)


# ---------------------------------------------------------------------------------------------------------------
# Finding 6: an expired QoS 2 message already sent was dropped on resend instead of resent


def test_expired_qos2_message_whose_delivery_began_is_resent_after_a_reconnect(
    harness: Harness, peers: Callable[..., Peer]
) -> None:
    """MQTT 5 §3.3.2.3.3: an expired message is deleted only if the server "has not managed to start onward
    delivery"; once the PUBLISH went out, §4.4 requires resending it (DUP) on reconnect and §4.3.3 finishing
    the exchange: PUBREC gets a PUBREL, not "Packet Identifier not found"."""
    expiry = {SESSION_EXPIRY_INTERVAL: 300}
    sub = peers(harness.port, "sub", version=5, clean=False, props=expiry)
    assert sub.subscribe([("t", 2)]) == [2]
    pub = peers(harness.port, "pub", version=5)
    published_at = time.time()
    pub.publish("t", b"expiring", 2, 1, props={MESSAGE_EXPIRY_INTERVAL: 1})
    assert pub.read_ack().kind == PUBREC
    sent = sub.read_publish()
    assert (sent.payload, sent.qos, sent.dup) == (b"expiring", 2, False)
    sub.close()  # its PUBREC never reached the server
    wait_detached(harness, "sub")
    wait_for_clock(published_at + 1.2)  # the message has expired

    sub = peers(harness.port, "sub", version=5, clean=False, props=expiry)
    assert sub.connack is not None and sub.connack.session_present
    again = sub.read_publish(3)
    assert (again.payload, again.packet_id, again.qos, again.dup) == (b"expiring", sent.packet_id, 2, True)
    sub.ack(PUBREC, sent.packet_id)
    rel = sub.read_ack()
    assert (rel.kind, rel.packet_id, rel.code) == (PUBREL, sent.packet_id, 0)
    sub.ack(PUBCOMP, sent.packet_id)
    assert wait_until(lambda: harness.call(lambda: not harness.broker.sessions["sub"].inflight))


# ---------------------------------------------------------------------------------------------------------------
# Finding 7: a 3.1.1 connection closed for a message that may succeed later still routed what followed it


def test_311_connection_closed_for_a_retryable_rejection_routes_nothing_after_it(
    harness: Harness, clients: list[Client], peers: Callable[..., Peer]
) -> None:
    """MQTT 3.1.1 §4.6 (messages from one client are delivered in the order sent) and §4.4 (the client resends
    every unacknowledged PUBLISH after reconnecting): M1 is refused with `retry`, so the connection is closed
    without an acknowledgement; M2, sent after it and already through its hook, must not be routed either, or
    it arrives before M1 and then once more when the client resends both."""
    gate = harness.gate()
    sub = watcher(harness, clients)
    pub = peers(harness.port, "pub", clean=False)
    pub.publish("db/x", b"M1", 1, 1)
    pub.publish("db/x", b"M2", 1, 2)
    assert wait_until(lambda: gate.payloads() == [b"M1", b"M2"])
    gate.release(b"M2")
    assert wait_until(lambda: gate.finished == [b"M2"])
    gate.reject(b"M1", PublishRejected("store busy", 0x80, retry=True))
    gate.release(b"M1")
    assert pub.read_until_closed() == []  # neither is acknowledged
    sub.expect_none(0.3)  # nor routed

    gate.open()
    pub = peers(harness.port, "pub", clean=False)
    pub.publish("db/x", b"M1", 1, 1, dup=True)
    pub.publish("db/x", b"M2", 1, 2, dup=True)
    assert [(a.kind, a.packet_id) for a in (pub.read_ack(), pub.read_ack())] == [(PUBACK, 1), (PUBACK, 2)]
    assert [sub.expect().payload for _ in range(2)] == [b"M1", b"M2"]
    sub.expect_none(0.2)


# ---------------------------------------------------------------------------------------------------------------
# Finding 8: another user resuming a session received what was queued for the first


def test_another_user_reusing_a_client_id_starts_a_fresh_session(harness: Harness, peers: Callable[..., Peer]) -> None:
    """MQTT 3.1.1 and 5 §3.1.2.4 / §4.1 (session state is identified by the client id) together with the
    security advice of §5.4.2 / §5.4.1: a session holds what its user was authorized to receive, so another
    user reusing the client id must not resume it (session present 0, nothing delivered), while the same user
    still does."""
    alice = peers(harness.port, "dev", clean=False, username="alice", password="pa")
    assert alice.subscribe([("secret/#", 1)]) == [1]
    alice.disconnect()
    wait_detached(harness, "dev")
    publisher = peers(harness.port, "publisher", username="alice", password="pa")
    publisher.publish("secret/plan", b"for alice", 1, 1)
    assert publisher.read_ack().kind == PUBACK

    alice = peers(harness.port, "dev", clean=False, username="alice", password="pa")
    assert alice.connack is not None and alice.connack.session_present  # her own session resumes
    got = alice.read_publish()
    assert got.payload == b"for alice"
    alice.ack(PUBACK, got.packet_id)
    alice.disconnect()
    wait_detached(harness, "dev")
    publisher.publish("secret/plan", b"also for alice", 1, 2)
    assert publisher.read_ack().kind == PUBACK

    bob = peers(harness.port, "dev", clean=False, username="bob", password="pb")
    assert bob.connack is not None and bob.connack.code == 0
    assert not bob.connack.session_present
    publisher.publish("secret/plan", b"after bob came", 1, 3)
    assert publisher.read_ack().kind == PUBACK
    # Nothing queued for alice, and no subscription of hers: the next packet bob sees answers his own PINGREQ.
    bob.send(packet(PINGREQ, b""))
    assert bob.read() == (PINGRESP, b"")


# ---------------------------------------------------------------------------------------------------------------
# Finding 11: a topic of 1,500 levels caused RecursionError


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_topics_and_filters_with_too_many_levels_are_refused_and_traffic_continues(
    harness: Harness, peers: Callable[..., Peer], caplog: pytest.LogCaptureFixture, version: int
) -> None:
    """MQTT 5 §3.9.3 / 3.1.1 §3.9.3 (a SUBACK failure code for a filter the server does not accept; 0x8F Topic
    Filter invalid in 5, 0x80 in 3.1.1) and MQTT 5 §3.3.2.1 / §4.13 (a PUBLISH on a topic name the server does
    not accept: DISCONNECT 0x90 Topic Name invalid, then close). A 1,500-level topic must not break matching,
    and the other clients carry on."""
    deep = "/".join(["a"] * 1500)
    sub = peers(harness.port, "deep-sub", version=version)
    assert sub.subscribe([(deep, 1), ("ok/#", 1)]) == [0x8F if version == 5 else 0x80, 1]
    pub = peers(harness.port, "deep-pub", version=version)
    pub.publish(deep, b"x", 1, 1)
    closing = pub.read_until_closed()
    if version == 5:
        assert [pub.parse_ack(first, body, 0).code for first, body in closing] == [0x90]
    else:
        assert closing == []  # 3.1.1 has no DISCONNECT from the server

    other = peers(harness.port, "other", version=version)
    other.publish("ok/1", b"fine", 1, 1)
    assert other.read_ack().kind == PUBACK
    got = sub.read_publish()
    assert (got.topic, got.payload) == ("ok/1", b"fine")
    assert not [r for r in caplog.records if "RecursionError" in r.getMessage() or r.levelno >= logging.ERROR]


# ---------------------------------------------------------------------------------------------------------------
# Finding 16: backpressure gave false keep-alive timeouts


def test_publisher_held_by_backpressure_is_not_timed_out_for_keep_alive(
    harness_factory: Callable[..., Harness], peers: Callable[..., Peer]
) -> None:
    """MQTT 5 and 3.1.1 §3.1.2.10: the server disconnects a client that sends no control packet within one and
    a half times the Keep Alive. While the server does not read the socket (Receive Maximum publishes are with
    their hooks) the client's PINGREQs wait unread: that must not count as silence."""
    harness = harness_factory(ConnectionLimits(receive_maximum=2))
    gate = harness.gate()
    pub = peers(harness.port, "pub", version=5, keepalive=1)
    pub.publish("db/x", b"m1", 1, 1)
    pub.publish("db/x", b"m2", 1, 2)
    assert wait_until(lambda: len(gate.calls) == 2)
    pings = 0
    deadline = time.monotonic() + 2.6  # well past 1.5 x the keep-alive of 1 s
    while time.monotonic() < deadline:
        pub.send(packet(PINGREQ, b""))  # a live client
        pings += 1
        time.sleep(0.25)
    gate.open()
    got = [pub.read(5) for _ in range(2 + pings)]
    assert got[:2] == [(PUBACK, b"\x00\x01"), (PUBACK, b"\x00\x02")]
    assert got[2:] == [(PINGRESP, b"")] * pings


# ---------------------------------------------------------------------------------------------------------------
# Finding 17: in-flight messages resent beyond the client's new Receive Maximum


def test_inflight_messages_are_resent_within_the_new_receive_maximum(
    harness: Harness, peers: Callable[..., Peer]
) -> None:
    """MQTT 5 §3.3.4 / §4.9: the server must not send more unacknowledged QoS 1/2 PUBLISH packets than the
    client's Receive Maximum, including the ones it resends (§4.4) after a reconnect that lowered it."""
    expiry = {SESSION_EXPIRY_INTERVAL: 300}
    sub = peers(harness.port, "sub", version=5, clean=False, props=expiry)
    assert sub.subscribe([("t", 1)]) == [1]
    pub = peers(harness.port, "pub", version=5)
    pub.send(b"".join(pub.publish_bytes("t", b"%d" % i, 1, i + 1) for i in range(10)))
    first = [sub.read_publish() for _ in range(10)]  # not acknowledged
    sub.close()
    wait_detached(harness, "sub")

    sub = peers(harness.port, "sub", version=5, clean=False, props={**expiry, RECEIVE_MAXIMUM: 2})
    resent = [sub.read_publish(), sub.read_publish()]
    sub.nothing_within(0.3)
    while len(resent) < 10:
        sub.ack(PUBACK, resent[len(resent) - 2].packet_id)  # one acknowledged: room for exactly one more
        resent.append(sub.read_publish())
        if len(resent) < 10:
            sub.nothing_within(0.05)
    assert [(p.payload, p.packet_id, p.dup) for p in resent] == [(p.payload, p.packet_id, True) for p in first]


# ---------------------------------------------------------------------------------------------------------------
# Finding 18: packets exceeding the client's Maximum Packet Size


@pytest.mark.parametrize("case", ["disconnect", "connack", "puback"])
def test_no_packet_exceeds_the_clients_maximum_packet_size(
    harness: Harness, peers: Callable[..., Peer], case: str
) -> None:
    """MQTT 5 §3.1.2.11.4: "The Server MUST NOT send packets exceeding Maximum Packet Size to the Client"; the
    Reason String is optional and is what must be left out when the packet would not fit."""
    limit = 16
    small = {MAXIMUM_PACKET_SIZE: limit}
    if case == "connack":
        peer = peers(harness.port, "a", version=5, props={**small, AUTHENTICATION_METHOD: "SCRAM-SHA-1"})
        assert peer.connack is not None
        assert (peer.connack.code, peer.connack.size <= limit) == (0x8C, True), peer.connack
        return
    peer = peers(harness.port, "a", version=5, props=small)
    assert peer.connack is not None and peer.connack.code == 0 and peer.connack.size <= limit
    if case == "disconnect":
        peer.publish("x", b"", 0, props={TOPIC_ALIAS: 11})  # above the Topic Alias Maximum of 10
        ack = peer.read_ack()
        assert (ack.kind, ack.code) == (DISCONNECT, 0x94)
    else:
        gate = harness.gate()
        gate.open()
        gate.reject(b"bad", PublishRejected("this payload is not a reading the database can store", 0x99))
        peer.publish("db/x", b"bad", 1, 1)
        ack = peer.read_ack()
        assert (ack.kind, ack.packet_id, ack.code) == (PUBACK, 1, 0x99)
    assert ack.size <= limit, ack


# ---------------------------------------------------------------------------------------------------------------
# Finding 20: client-controlled text of over 64 KB in reason strings


def test_reason_strings_and_log_lines_quoting_client_data_are_bounded(
    harness: Harness, peers: Callable[..., Peer], caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5 §1.5.4 / §3.14.2.2.3: a Reason String is a UTF-8 string of at most 65,535 bytes. A topic name
    with a wildcard (§3.3.2.1) must get DISCONNECT 0x90 whatever its length: quoting 20,000 control characters
    (80,000 bytes once escaped) made the DISCONNECT unencodable and the log line huge."""
    caplog.set_level(logging.INFO, logger="gateway.mqtt")
    peer = peers(harness.port, "a", version=5)
    topic = ("+" + "\x01" * 20000).encode()
    peer.send(packet(PUBLISH, mqtt_str(topic) + b"\x00"))
    closing = peer.read_until_closed()
    assert len(closing) == 1 and closing[0][0] == DISCONNECT, closing
    ack = peer.parse_ack(closing[0][0], closing[0][1], 0)
    assert ack.code == 0x90
    assert len(ack.properties.get(REASON_STRING, "")) <= 1000
    assert max(len(r.getMessage()) for r in caplog.records) <= 2000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    other = peers(harness.port, "b", version=5)
    other.send(packet(PINGREQ, b""))
    assert other.read() == (PINGRESP, b"")


# ---------------------------------------------------------------------------------------------------------------
# Finding 21: hooks pending at shutdown


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_shutdown_finishes_and_acknowledges_messages_already_with_their_hooks(
    harness: Harness, peers: Callable[..., Peer], caplog: pytest.LogCaptureFixture, version: int
) -> None:
    """MQTT 5 §4.3.2 / 3.1.1 §4.3.2 (PUBACK once the receiver owns the message) and MQTT 5 §3.14 (DISCONNECT
    0x8B Server shutting down): a message whose hook is storing it when the gateway stops is finished and
    acknowledged before the connection closes, without errors logged."""
    started: list[bytes] = []

    async def slow_store(message: Message, client: ClientInfo) -> None:
        started.append(message.payload)
        await asyncio.sleep(0.5)

    harness.call(lambda: harness.broker.add_publish_hook("db/#", slow_store))
    pub = peers(harness.port, "pub", version=version)
    pub.publish("db/x", b"v", 1, 1)
    assert wait_until(lambda: started == [b"v"])
    harness.close()  # the gateway stops while the hook runs

    closing = pub.read_until_closed()
    acks = [pub.parse_ack(first, body, 0) for first, body in closing]
    expected = [(PUBACK, 1, 0)] + ([(DISCONNECT, 0, 0x8B)] if version == 5 else [])
    assert [(a.kind, a.packet_id, a.code) for a in acks] == expected
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
