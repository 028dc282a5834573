"""A hand-written MQTT 3.1.1 / 5 client on a plain TCP socket, for what a client library hides or refuses to do:
exact bytes out (malformed packets, withheld acknowledgements, resends with DUP, a second CONNECT, ...), exact
packets in.

Written from the standards, not from the gateway: nothing here imports `gateway`, so that a mistake in the
broker's codec cannot hide itself in the tests. Every packet received is checked against the standard before it
is handed over (fixed-header flags, lengths, properties allowed in that packet, reason codes), so a test that
reads a packet also asserts that the gateway sent a well-formed one.

Section numbers: "§x.y" is MQTT 5.0 (OASIS Standard, 7 March 2019); "3.1.1 §x.y" is MQTT 3.1.1 (OASIS
Standard, 2014). Protocol versions are the protocol levels of CONNECT: 4 for 3.1.1, 5 for 5.0.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# ---------------------------------------------------------------------------------------------------------------
# Packet types, as the first byte of the fixed header with its fixed flags (§2.1.2, §2.1.3); PUBLISH's flags vary.

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 0x10, 0x20, 0x30, 0x40, 0x50, 0x62, 0x70
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 0x82, 0x90, 0xA2, 0xB0
PINGREQ, PINGRESP, DISCONNECT, AUTH = 0xC0, 0xD0, 0xE0, 0xF0

# MQTT 5 property identifiers (§2.2.2.2)
PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTHENTICATION_METHOD = 0x15
AUTHENTICATION_DATA = 0x16
REQUEST_PROBLEM_INFORMATION = 0x17
WILL_DELAY_INTERVAL = 0x18
REQUEST_RESPONSE_INFORMATION = 0x19
RESPONSE_INFORMATION = 0x1A
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

# The table of §2.2.2.2: property identifier -> (data type, packets it may appear in). WILL stands for the will
# properties of CONNECT (§3.1.3.2).
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
WILL = 0
_EVERY_PACKET = frozenset(
    {CONNECT, CONNACK, PUBLISH, WILL, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK}
    | {DISCONNECT, AUTH}
)
_PROPERTIES: dict[int, tuple[int, frozenset[int]]] = {
    PAYLOAD_FORMAT_INDICATOR: (_BYTE, frozenset({PUBLISH, WILL})),
    MESSAGE_EXPIRY_INTERVAL: (_FOUR, frozenset({PUBLISH, WILL})),
    CONTENT_TYPE: (_UTF8, frozenset({PUBLISH, WILL})),
    RESPONSE_TOPIC: (_UTF8, frozenset({PUBLISH, WILL})),
    CORRELATION_DATA: (_BINARY, frozenset({PUBLISH, WILL})),
    SUBSCRIPTION_IDENTIFIER: (_VARINT, frozenset({PUBLISH, SUBSCRIBE})),
    SESSION_EXPIRY_INTERVAL: (_FOUR, frozenset({CONNECT, CONNACK, DISCONNECT})),
    ASSIGNED_CLIENT_IDENTIFIER: (_UTF8, frozenset({CONNACK})),
    SERVER_KEEP_ALIVE: (_TWO, frozenset({CONNACK})),
    AUTHENTICATION_METHOD: (_UTF8, frozenset({CONNECT, CONNACK, AUTH})),
    AUTHENTICATION_DATA: (_BINARY, frozenset({CONNECT, CONNACK, AUTH})),
    REQUEST_PROBLEM_INFORMATION: (_BYTE, frozenset({CONNECT})),
    WILL_DELAY_INTERVAL: (_FOUR, frozenset({WILL})),
    REQUEST_RESPONSE_INFORMATION: (_BYTE, frozenset({CONNECT})),
    RESPONSE_INFORMATION: (_UTF8, frozenset({CONNACK})),
    SERVER_REFERENCE: (_UTF8, frozenset({CONNACK, DISCONNECT})),
    REASON_STRING: (
        _UTF8,
        frozenset({CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH}),
    ),
    RECEIVE_MAXIMUM: (_TWO, frozenset({CONNECT, CONNACK})),
    TOPIC_ALIAS_MAXIMUM: (_TWO, frozenset({CONNECT, CONNACK})),
    TOPIC_ALIAS: (_TWO, frozenset({PUBLISH})),
    MAXIMUM_QOS: (_BYTE, frozenset({CONNACK})),
    RETAIN_AVAILABLE: (_BYTE, frozenset({CONNACK})),
    USER_PROPERTY: (_PAIR, _EVERY_PACKET),
    MAXIMUM_PACKET_SIZE: (_FOUR, frozenset({CONNECT, CONNACK})),
    WILDCARD_SUBSCRIPTION_AVAILABLE: (_BYTE, frozenset({CONNACK})),
    SUBSCRIPTION_IDENTIFIER_AVAILABLE: (_BYTE, frozenset({CONNACK})),
    SHARED_SUBSCRIPTION_AVAILABLE: (_BYTE, frozenset({CONNACK})),
}
# The only properties that may appear more than once (§3.3.2.3.4 / §3.3.2.3.8, §2.2.2.2); decoded as lists.
_REPEATABLE = frozenset({USER_PROPERTY, SUBSCRIPTION_IDENTIFIER})

# Reason codes a server may send, per packet (§2.4 and the reason code sections of each packet).
_V5_REASONS = {
    CONNACK: frozenset(
        {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97}
        | {0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
    ),
    PUBACK: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    PUBREC: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    PUBREL: frozenset({0x00, 0x92}),
    PUBCOMP: frozenset({0x00, 0x92}),
    SUBACK: frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}),
    UNSUBACK: frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}),
    DISCONNECT: frozenset(
        {0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97}
        | {0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}
    ),
    AUTH: frozenset({0x00, 0x18, 0x19}),
}
_V4_SUBACK_CODES = frozenset({0x00, 0x01, 0x02, 0x80})  # 3.1.1 §3.9.3

# A property set to send: a mapping, or (identifier, value) pairs where an identifier is to appear more than once
# (User Property, or a deliberate protocol error). A User Property value is a (name, value) pair.
Properties = Mapping[int, Any] | Iterable[tuple[int, Any]]

# ---------------------------------------------------------------------------------------------------------------
# Encoding


def varint(value: int) -> bytes:
    """Variable Byte Integer (§1.5.5; 3.1.1 §2.2.3 calls it the Remaining Length), from the spec's algorithm."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def mqtt_str(value: str | bytes) -> bytes:
    """A UTF-8 string or binary data: two-byte length, then the bytes (§1.5.4, §1.5.6; 3.1.1 §1.5.3)."""
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    """A whole packet: the first byte of the fixed header, the Remaining Length, the body (§2.1)."""
    return bytes([first]) + varint(len(body)) + body


def encode_properties(props: Properties | None) -> bytes:
    """A property block: Property Length, then each property (§2.2.2)."""
    items = props.items() if isinstance(props, Mapping) else props or ()
    out = b""
    for ident, value in items:
        kind = _PROPERTIES[ident][0]
        out += varint(ident)
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


@dataclass
class Will:
    """The will of a CONNECT (§3.1.2.5, §3.1.3.2-3.1.3.4); `properties` are sent only by MQTT 5 clients."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


def connect_packet(
    client_id: str,
    *,
    version: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    props: Properties | None = None,
    will: Will | None = None,
    username: str | None = None,
    password: str | bytes | None = None,
    protocol_name: str | bytes = "MQTT",
    reserved: bool = False,
) -> bytes:
    """CONNECT (§3.1). `version` is the protocol level: properties are sent only at level 5; `reserved` sets the
    reserved flag that must be 0 (§3.1.2.3); the will's QoS is taken as given, 3 included."""

    def properties(values: Properties | None) -> bytes:
        return encode_properties(values) if version == 5 else b""

    flags = (0x02 if clean else 0) | (0x01 if reserved else 0)
    flags |= (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    payload = mqtt_str(client_id)
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += properties(will.properties) + mqtt_str(will.topic) + mqtt_str(will.payload)
    if username is not None:
        payload += mqtt_str(username)
    if password is not None:
        payload += mqtt_str(password)
    head = mqtt_str(protocol_name) + bytes([version, flags]) + struct.pack("!H", keepalive) + properties(props)
    return packet(CONNECT, head + payload)


def publish_packet(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    packet_id: int = 1,
    *,
    version: int = 4,
    dup: bool = False,
    retain: bool = False,
    props: Properties | None = None,
) -> bytes:
    """PUBLISH (§3.3); the packet identifier is there at QoS 1 and 2 only, as any QoS (3 included) is taken."""
    first = PUBLISH | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = mqtt_str(topic) + (struct.pack("!H", packet_id) if qos else b"")
    body += encode_properties(props) if version == 5 else b""
    return packet(first, body + payload)


def subscribe_packet(
    packet_id: int,
    filters: list[tuple[str, int]],
    *,
    version: int = 4,
    props: Properties | None = None,
    first: int = SUBSCRIBE,
) -> bytes:
    """SUBSCRIBE (§3.8): (topic filter, subscription options) pairs; the options byte is the requested QoS in
    3.1.1. `first` allows fixed-header flags other than the required 0010 (§3.8.1)."""
    body = struct.pack("!H", packet_id) + (encode_properties(props) if version == 5 else b"")
    return packet(first, body + b"".join(mqtt_str(f) + bytes([options]) for f, options in filters))


def unsubscribe_packet(packet_id: int, filters: list[str], *, version: int = 4) -> bytes:
    """UNSUBSCRIBE (§3.10)."""
    body = struct.pack("!H", packet_id) + (encode_properties(None) if version == 5 else b"")
    return packet(UNSUBSCRIBE, body + b"".join(mqtt_str(f) for f in filters))


def ack_packet(kind: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP without a reason code: success in MQTT 5 too (§3.4.2.1)."""
    return packet(kind, struct.pack("!H", packet_id))


def disconnect_packet(code: int = 0, props: Properties | None = None, *, version: int = 4) -> bytes:
    """DISCONNECT (§3.14): empty in 3.1.1; reason code and property block in MQTT 5."""
    return packet(DISCONNECT, (bytes([code]) + encode_properties(props)) if version == 5 else b"")


# ---------------------------------------------------------------------------------------------------------------
# Decoding what a server sends, checked against the standards


class Packet(NamedTuple):
    """A packet as received: the first byte of its fixed header and its body (what follows the Remaining
    Length). Compares equal to a plain (first, body) tuple."""

    first: int
    body: bytes

    @property
    def kind(self) -> int:
        """The packet type as one of the constants above (PUBLISH without its flags)."""
        return PUBLISH if self.first >> 4 == PUBLISH >> 4 else self.first

    @property
    def raw(self) -> bytes:
        """The packet's bytes on the wire (the Remaining Length is checked to be minimal when it is read)."""
        return packet(self.first, self.body)

    @property
    def packet_id(self) -> int:
        """The packet identifier of an acknowledgement, SUBACK or UNSUBACK; of a PUBLISH at QoS 1 or 2, else 0."""
        if self.kind == PUBLISH:
            (length,) = struct.unpack_from("!H", self.body)
            return int(struct.unpack_from("!H", self.body, 2 + length)[0]) if self.first & 0x06 else 0
        return int(struct.unpack_from("!H", self.body)[0])


@dataclass
class ConnAck:
    session_present: bool
    code: int  # the 3.1.1 return code or the MQTT 5 reason code
    properties: dict[int, Any] = field(default_factory=dict)
    size: int = field(default=0, compare=False)  # of the whole packet, in bytes


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    packet_id: int  # 0 at QoS 0
    properties: dict[int, Any]


class Ack(NamedTuple):
    """PUBACK, PUBREC, PUBREL, PUBCOMP or DISCONNECT (packet id 0) as received; `code` is 0 where the packet
    has none (3.1.1, or an MQTT 5 packet that left it out)."""

    kind: int
    packet_id: int
    code: int
    properties: dict[int, Any]
    size: int  # of the whole packet, in bytes


@dataclass
class SubAck:
    """SUBACK or UNSUBACK: one code per topic filter (none in a 3.1.1 UNSUBACK)."""

    kind: int
    packet_id: int
    codes: list[int]
    properties: dict[int, Any]


class _Body:
    """Reads the fields of one packet body, failing the test on anything the standard does not allow."""

    def __init__(self, received: Packet) -> None:
        self.packet = received
        self.data = received.body
        self.pos = 0

    def fail(self, problem: str) -> AssertionError:
        return AssertionError(f"the server sent a malformed packet ({problem}): {self.packet.raw[:200]!r}")

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            raise self.fail(problem)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        self.check(self.left >= 1, "ends inside a one-byte field")
        self.pos += 1
        return self.data[self.pos - 1]

    def two(self) -> int:
        self.check(self.left >= 2, "ends inside a two-byte field")
        self.pos += 2
        return int(struct.unpack_from("!H", self.data, self.pos - 2)[0])

    def four(self) -> int:
        self.check(self.left >= 4, "ends inside a four-byte field")
        self.pos += 4
        return int(struct.unpack_from("!I", self.data, self.pos - 4)[0])

    def varint(self) -> int:
        value, start = 0, self.pos
        for shift in range(0, 28, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                self.check(self.pos - start == len(varint(value)), "a variable byte integer is not minimal (§1.5.5)")
                return value
        raise self.fail("a variable byte integer longer than four bytes (§1.5.5)")

    def binary(self) -> bytes:
        size = self.two()
        self.check(self.left >= size, "a length-prefixed field runs past the end")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def utf8(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise self.fail(f"a string is not well-formed UTF-8: {exc.reason} (§1.5.4)") from None
        self.check("\x00" not in text, "a string contains U+0000 (§1.5.4)")
        return text

    def properties(self, packet_type: int) -> dict[int, Any]:
        length = self.varint()
        self.check(self.left >= length, "the property length runs past the end (§2.2.2.1)")
        end = self.pos + length
        props: dict[int, Any] = {}
        while self.pos < end:
            ident = self.varint()
            self.check(ident in _PROPERTIES, f"unknown property 0x{ident:02X} (§2.2.2.2)")
            kind, allowed = _PROPERTIES[ident]
            self.check(packet_type in allowed, f"property 0x{ident:02X} is not allowed in this packet (§2.2.2.2)")
            value: Any
            if kind == _BYTE:
                value = self.byte()
            elif kind == _TWO:
                value = self.two()
            elif kind == _FOUR:
                value = self.four()
            elif kind == _VARINT:
                value = self.varint()
            elif kind == _UTF8:
                value = self.utf8()
            elif kind == _BINARY:
                value = self.binary()
            else:
                value = (self.utf8(), self.utf8())
            if ident in _REPEATABLE:
                props.setdefault(ident, []).append(value)
            else:
                self.check(ident not in props, f"property 0x{ident:02X} appears twice (§2.2.2.2)")
                props[ident] = value
        self.check(self.pos == end, "a property runs past the property length (§2.2.2.1)")
        return props

    def end(self) -> None:
        self.check(self.left == 0, f"{self.left} bytes after the last field")


def decode(received: Packet, version: int) -> ConnAck | Publish | Ack | SubAck | None:
    """Check a packet received by a client of protocol level `version` against the standard and decode it
    (None for PINGRESP). Fails the test on a packet a server must not send."""
    body = _Body(received)
    v5 = version == 5
    kind = received.kind
    size = len(received.raw)
    if kind == PUBLISH:
        flags = received.first & 0x0F
        qos = (flags >> 1) & 0x03
        body.check(qos != 3, "PUBLISH with QoS 3 (§3.3.1.2)")
        body.check(qos != 0 or not flags & 0x08, "PUBLISH with DUP 1 at QoS 0 (§3.3.1.1)")
        topic = body.utf8()
        body.check("+" not in topic and "#" not in topic, "a topic name with a wildcard (§3.3.2.1)")
        packet_id = body.two() if qos else 0
        body.check(packet_id != 0 or not qos, "PUBLISH with packet identifier 0 (§2.2.1)")
        props = body.properties(PUBLISH) if v5 else {}
        body.check(topic != "" or TOPIC_ALIAS in props, "PUBLISH without a topic name (§3.3.2.1, §4.7.3)")
        body.check(props.get(TOPIC_ALIAS) != 0, "Topic Alias 0 (§3.3.2.3.4)")
        body.check(0 not in props.get(SUBSCRIPTION_IDENTIFIER, ()), "Subscription Identifier 0 (§3.3.2.3.8)")
        payload = body.data[body.pos :]
        return Publish(topic, payload, qos, bool(flags & 0x08), bool(flags & 0x01), packet_id, props)
    body.check(
        received.first in _V5_REASONS or received.first == PINGRESP,
        "not a packet a server sends, or reserved flags set (§2.1.2, §2.1.3)",
    )
    if kind == CONNACK:
        flags, code = body.byte(), body.byte()
        body.check(not flags & 0xFE, "CONNACK reserved flags set (§3.2.2.1)")
        body.check(code == 0 or not flags, "Session Present 1 with a non-zero code (§3.2.2.1.1; 3.1.1 §3.2.2.2)")
        props = body.properties(CONNACK) if v5 else {}
        body.check(code in _V5_REASONS[CONNACK] if v5 else code <= 5, f"CONNACK code 0x{code:02X} (§3.2.2.2)")
        body.end()
        return ConnAck(bool(flags), code, props, size)
    if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        packet_id = body.two()
        body.check(packet_id != 0, "packet identifier 0 (§2.2.1)")
        code, props = 0, {}
        if v5 and body.left:
            code = body.byte()
            props = body.properties(kind) if body.left else {}
        body.check(code in _V5_REASONS[kind], f"reason code 0x{code:02X} (§2.4)")
        body.end()
        return Ack(kind, packet_id, code, props, size)
    if kind in (SUBACK, UNSUBACK):
        packet_id = body.two()
        body.check(packet_id != 0, "packet identifier 0 (§2.2.1)")
        props = body.properties(kind) if v5 else {}
        codes = list(body.data[body.pos :])
        allowed = _V5_REASONS[kind] if v5 else _V4_SUBACK_CODES if kind == SUBACK else frozenset()
        body.check(all(c in allowed for c in codes), f"codes {codes} (§3.9.3, §3.11.3; 3.1.1 §3.9.3, §3.11.3)")
        body.check(bool(codes) or (kind == UNSUBACK and not v5), "no code for any topic filter (§3.9.3, §3.11.3)")
        return SubAck(kind, packet_id, codes, props)
    if kind == PINGRESP:
        body.end()
        return None
    body.check(v5, "DISCONNECT or AUTH from a 3.1.1 server (3.1.1 §3.14: only clients send DISCONNECT)")
    code = body.byte() if body.left else 0
    props = body.properties(kind) if body.left else {}
    body.check(code in _V5_REASONS[kind], f"reason code 0x{code:02X} (§3.14.2.1, §3.15.2.1)")
    body.end()
    return Ack(kind, 0, code, props, size)


# ---------------------------------------------------------------------------------------------------------------
# The client


class RawClient:
    """One TCP connection to the broker on 127.0.0.1 speaking MQTT byte by byte, as protocol level `version`.

    It connects the socket only; `connect` sends CONNECT. `timeout` is how long reads wait by default, for a
    packet or for the server to close the connection. `rcvbuf` sets a small receive buffer, for a client that
    stops reading.
    """

    def __init__(self, port: int, *, version: int = 4, timeout: float = 10.0, rcvbuf: int | None = None) -> None:
        self.version = version
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.peer = f"127.0.0.1:{self.sock.getsockname()[1]}"  # how the gateway names this connection
        self.connack: ConnAck | None = None
        self._buf = bytearray()
        self._eof = False

    # -- sending

    def send(self, *data: bytes) -> None:
        self.sock.sendall(b"".join(data))

    def connect(
        self,
        client_id: str,
        *,
        clean: bool = True,
        keepalive: int = 60,
        props: Properties | None = None,
        will: Will | None = None,
        username: str | None = None,
        password: str | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> ConnAck:
        """CONNECT, and the CONNACK (kept in `connack`); unless `check` is False, asserts that it accepted (0)."""
        self.send(
            connect_packet(
                client_id,
                version=self.version,
                clean=clean,
                keepalive=keepalive,
                props=props,
                will=will,
                username=username,
                password=password,
            )
        )
        self.connack = self.read_connack(timeout)
        if check:
            assert self.connack.code == 0, f"CONNACK 0x{self.connack.code:02X} {self.connack.properties!r}"
        return self.connack

    def publish_bytes(
        self, topic: str | bytes, payload: bytes, qos: int = 0, packet_id: int = 1, **options: Any
    ) -> bytes:
        """PUBLISH for this client's protocol version (`publish_packet`'s options: dup, retain, props)."""
        return publish_packet(topic, payload, qos, packet_id, version=self.version, **options)

    def publish(self, topic: str | bytes, payload: bytes, qos: int = 0, packet_id: int = 1, **kwargs: Any) -> None:
        self.send(self.publish_bytes(topic, payload, qos, packet_id, **kwargs))

    def subscribe_bytes(
        self, packet_id: int, filters: list[tuple[str, int]], *, props: Properties | None = None
    ) -> bytes:
        return subscribe_packet(packet_id, filters, version=self.version, props=props)

    def subscribe(
        self, filters: list[tuple[str, int]], packet_id: int = 1, *, props: Properties | None = None
    ) -> list[int]:
        """SUBSCRIBE, and the codes of its SUBACK."""
        self.send(self.subscribe_bytes(packet_id, filters, props=props))
        return self.read_suback(packet_id).codes

    def unsubscribe_bytes(self, packet_id: int, filters: list[str]) -> bytes:
        return unsubscribe_packet(packet_id, filters, version=self.version)

    def ack(self, kind: int, packet_id: int) -> None:
        """PUBACK, PUBREC, PUBREL or PUBCOMP for `packet_id`."""
        self.send(ack_packet(kind, packet_id))

    def disconnect(self) -> None:
        """DISCONNECT (normal disconnection), then close."""
        self.send(disconnect_packet(version=self.version))
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- receiving

    def _split(self) -> Packet | None:
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
            assert i < 5, f"the server sent a Remaining Length longer than four bytes (§1.5.5): {bytes(buf[:5])!r}"
        assert i - 1 == len(varint(length)), f"the server sent a Remaining Length that is not minimal: {buf[:i]!r}"
        if len(buf) < i + length:
            return None
        received = Packet(buf[0], bytes(buf[i : i + length]))
        del buf[: i + length]
        return received

    def read(self, timeout: float | None = None) -> Packet:
        """The next packet, checked against the standard; EOFError once the server closed the connection,
        TimeoutError when nothing came within `timeout`."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            received = self._split()
            if received is not None:
                self.decode(received)
                return received
            if self._eof:
                raise EOFError(f"connection closed (buffered {bytes(self._buf[:100])!r})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete packet within {timeout} s (buffered {bytes(self._buf[:100])!r})")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            self._eof = not data
            self._buf += data

    def decode(self, received: Packet) -> ConnAck | Publish | Ack | SubAck | None:
        return decode(received, self.version)

    def expect(self, kind: int, timeout: float | None = None) -> Packet:
        """The next packet, which must be of type `kind`."""
        received = self.read(timeout)
        assert received.kind == kind, f"expected packet type {kind:#04x}, got {received!r}"
        return received

    def read_connack(self, timeout: float | None = None) -> ConnAck:
        connack = self.decode(self.expect(CONNACK, timeout))
        assert isinstance(connack, ConnAck)
        return connack

    def parse_publish(self, received: Packet) -> Publish:
        assert received.kind == PUBLISH, f"expected PUBLISH, got {received!r}"
        publish = self.decode(received)
        assert isinstance(publish, Publish)
        return publish

    def read_publish(self, timeout: float | None = None) -> Publish:
        return self.parse_publish(self.read(timeout))

    def parse_ack(self, received: Packet) -> Ack:
        """A PUBACK, PUBREC, PUBREL, PUBCOMP or DISCONNECT."""
        ack = self.decode(received)
        assert isinstance(ack, Ack) and ack.kind != AUTH, f"expected an acknowledgement, got {received!r}"
        return ack

    def read_ack(self, timeout: float | None = None) -> Ack:
        return self.parse_ack(self.read(timeout))

    def read_suback(self, packet_id: int, timeout: float | None = None, *, kind: int = SUBACK) -> SubAck:
        """The SUBACK (or with `kind`, the UNSUBACK) for `packet_id`."""
        ack = self.decode(self.expect(kind, timeout))
        assert isinstance(ack, SubAck)
        assert ack.packet_id == packet_id, f"acknowledgement for packet id {ack.packet_id}, expected {packet_id}"
        return ack

    def nothing_within(self, seconds: float) -> None:
        """Fails if a packet arrives, or the connection closes, within `seconds`."""
        try:
            received = self.read(seconds)
        except TimeoutError:
            return
        except EOFError:
            raise AssertionError("the server closed the connection") from None
        raise AssertionError(f"unexpected packet {received!r}")

    def read_until_closed(self, timeout: float | None = None) -> list[Packet]:
        """Every packet until the server closes the connection; fails if it does not within `timeout`."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        packets: list[Packet] = []
        while True:
            try:
                packets.append(self.read(max(0.01, deadline - time.monotonic())))
            except EOFError:
                return packets
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout} s (got {packets})") from None

    def expect_disconnect(self, code: int, timeout: float | None = None) -> Ack:
        """The server sends DISCONNECT with `code` as its last packet, then closes the connection (§4.13)."""
        packets = self.read_until_closed(timeout)
        assert packets and packets[-1].kind == DISCONNECT, f"expected DISCONNECT 0x{code:02X}, got {packets!r}"
        disconnect = self.parse_ack(packets[-1])
        assert disconnect.code == code, (
            f"expected DISCONNECT 0x{code:02X}, got 0x{disconnect.code:02X} {disconnect.properties!r}"
        )
        return disconnect


# What the `raw` fixture of tests/conftest.py hands out: raw(port) or raw(port, client_id, **connect options).
RawFactory = Callable[..., RawClient]
