"""Sans-I/O codec for MQTT 3.1, 3.1.1 and 5.0 control packets.

Bytes in, packet objects out, and back: no sockets, no asyncio, no clocks. `Reader` turns a byte stream into
packets; `encode` turns a packet into bytes for one protocol version. Every decoding problem raises
`MalformedPacket` with the MQTT 5 reason code that names it, so the transport can answer a v5 peer with the
right DISCONNECT and close the connection of anyone else.

Section numbers in comments refer to MQTT 5.0 (OASIS Standard, 2019) unless they say 3.1.1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from gateway.mqtt.topics import MAX_LEVELS

# Protocol levels (the CONNECT "Protocol Version" byte).
MQTT_31 = 3
MQTT_311 = 4
MQTT_5 = 5

MAX_REMAINING_LENGTH = 268_435_455  # the largest a four-byte Variable Byte Integer holds (§1.5.5)


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class Reason(IntEnum):
    """MQTT 5 reason codes (§2.4). 3.1.1 CONNACK return codes are mapped from these by `encode`."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


# 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3), keyed by the v5 reason that means the same thing.
_V311_CONNACK: dict[int, int] = {
    Reason.SUCCESS: 0x00,
    Reason.UNSUPPORTED_PROTOCOL_VERSION: 0x01,
    Reason.CLIENT_IDENTIFIER_NOT_VALID: 0x02,
    Reason.SERVER_UNAVAILABLE: 0x03,
    Reason.SERVER_BUSY: 0x03,
    Reason.BAD_USER_NAME_OR_PASSWORD: 0x04,
    Reason.NOT_AUTHORIZED: 0x05,
    Reason.BANNED: 0x05,
}
_V311_CONNACK_TO_V5 = {0: 0x00, 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}


class Prop(IntEnum):
    """MQTT 5 property identifiers (§2.2.2.2)."""

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


# A property set maps a property id to its value: int, str or bytes; USER_PROPERTY holds a list of
# (name, value) pairs and SUBSCRIPTION_IDENTIFIER a list of ints, the two that may repeat (§3.3.2.3.8).
Properties = dict[int, Any]

_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_WILL = 0  # a pseudo packet type: the will properties inside CONNECT (§3.1.3.2)
_P = PacketType
_PROPERTY_SPEC: dict[int, tuple[int, frozenset[int]]] = {
    Prop.PAYLOAD_FORMAT_INDICATOR: (_BYTE, frozenset({_P.PUBLISH, _WILL})),
    Prop.MESSAGE_EXPIRY_INTERVAL: (_FOUR, frozenset({_P.PUBLISH, _WILL})),
    Prop.CONTENT_TYPE: (_UTF8, frozenset({_P.PUBLISH, _WILL})),
    Prop.RESPONSE_TOPIC: (_UTF8, frozenset({_P.PUBLISH, _WILL})),
    Prop.CORRELATION_DATA: (_BINARY, frozenset({_P.PUBLISH, _WILL})),
    Prop.SUBSCRIPTION_IDENTIFIER: (_VARINT, frozenset({_P.PUBLISH, _P.SUBSCRIBE})),
    Prop.SESSION_EXPIRY_INTERVAL: (_FOUR, frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT})),
    Prop.ASSIGNED_CLIENT_IDENTIFIER: (_UTF8, frozenset({_P.CONNACK})),
    Prop.SERVER_KEEP_ALIVE: (_TWO, frozenset({_P.CONNACK})),
    Prop.AUTHENTICATION_METHOD: (_UTF8, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})),
    Prop.AUTHENTICATION_DATA: (_BINARY, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})),
    Prop.REQUEST_PROBLEM_INFORMATION: (_BYTE, frozenset({_P.CONNECT})),
    Prop.WILL_DELAY_INTERVAL: (_FOUR, frozenset({_WILL})),
    Prop.REQUEST_RESPONSE_INFORMATION: (_BYTE, frozenset({_P.CONNECT})),
    Prop.RESPONSE_INFORMATION: (_UTF8, frozenset({_P.CONNACK})),
    Prop.SERVER_REFERENCE: (_UTF8, frozenset({_P.CONNACK, _P.DISCONNECT})),
    Prop.REASON_STRING: (
        _UTF8,
        frozenset(
            {
                _P.CONNACK,
                _P.PUBACK,
                _P.PUBREC,
                _P.PUBREL,
                _P.PUBCOMP,
                _P.SUBACK,
                _P.UNSUBACK,
                _P.DISCONNECT,
                _P.AUTH,
            }
        ),
    ),
    Prop.RECEIVE_MAXIMUM: (_TWO, frozenset({_P.CONNECT, _P.CONNACK})),
    Prop.TOPIC_ALIAS_MAXIMUM: (_TWO, frozenset({_P.CONNECT, _P.CONNACK})),
    Prop.TOPIC_ALIAS: (_TWO, frozenset({_P.PUBLISH})),
    Prop.MAXIMUM_QOS: (_BYTE, frozenset({_P.CONNACK})),
    Prop.RETAIN_AVAILABLE: (_BYTE, frozenset({_P.CONNACK})),
    Prop.USER_PROPERTY: (_PAIR, frozenset(set(_P) | {_WILL})),
    Prop.MAXIMUM_PACKET_SIZE: (_FOUR, frozenset({_P.CONNECT, _P.CONNACK})),
    Prop.WILDCARD_SUBSCRIPTION_AVAILABLE: (_BYTE, frozenset({_P.CONNACK})),
    Prop.SUBSCRIPTION_IDENTIFIER_AVAILABLE: (_BYTE, frozenset({_P.CONNACK})),
    Prop.SHARED_SUBSCRIPTION_AVAILABLE: (_BYTE, frozenset({_P.CONNACK})),
}
_LIST_PROPERTIES = frozenset({Prop.USER_PROPERTY, Prop.SUBSCRIPTION_IDENTIFIER})


class MalformedPacket(Exception):
    """The bytes are not a valid MQTT packet. `reason` is the MQTT 5 reason code for the DISCONNECT.

    `packets` holds the complete packets that `Reader.feed` decoded before the bad one, in order: a peer's
    valid packets are still handled before its connection is closed.
    """

    def __init__(self, message: str, reason: int = Reason.MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason = reason
        self.packets: list[Packet] = []


class UnsupportedProtocol(MalformedPacket):
    """A CONNECT for a protocol level we do not speak: answered with a CONNACK before closing (§3.1.2.2)."""

    def __init__(self, message: str, level: int) -> None:
        super().__init__(message, Reason.UNSUPPORTED_PROTOCOL_VERSION)
        self.level = level


# ---------------------------------------------------------------------------------------------------------------
# Packets


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    client_id: str
    protocol_level: int = MQTT_311
    clean_start: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class ConnAck:
    reason_code: int = Reason.SUCCESS
    session_present: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Acknowledgement:
    """The layout PUBACK, PUBREC, PUBREL and PUBCOMP share (§3.4 to §3.7); packets of different types are
    never equal."""

    packet_id: int
    reason_code: int = Reason.SUCCESS
    properties: Properties = field(default_factory=dict)


class PubAck(Acknowledgement):
    __slots__ = ()


class PubRec(Acknowledgement):
    __slots__ = ()


class PubRel(Acknowledgement):
    __slots__ = ()


class PubComp(Acknowledgement):
    __slots__ = ()


@dataclass(slots=True)
class Subscription:
    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)  # always empty in 3.1.1
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason_code: int = Reason.SUCCESS
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    reason_code: int = Reason.SUCCESS
    properties: Properties = field(default_factory=dict)


Packet = (
    Connect
    | ConnAck
    | Publish
    | Acknowledgement
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)


# ---------------------------------------------------------------------------------------------------------------
# Decoding primitives. Each takes the buffer and an offset and returns (value, new offset); `end` bounds reads to
# the current packet so that a field claiming to run past it is caught.

Buffer = bytes | bytearray
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def _u8(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise MalformedPacket("packet ends inside a one-byte field")
    return buf[pos], pos + 1


def _u16(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    if pos + 2 > end:
        raise MalformedPacket("packet ends inside a two-byte field")
    return _U16.unpack_from(buf, pos)[0], pos + 2


def _u32(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    if pos + 4 > end:
        raise MalformedPacket("packet ends inside a four-byte field")
    return _U32.unpack_from(buf, pos)[0], pos + 4


def _varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            raise MalformedPacket("packet ends inside a variable byte integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise MalformedPacket("variable byte integer longer than four bytes (§1.5.5)")


def _binary(buf: Buffer, pos: int, end: int) -> tuple[bytes, int]:
    length, pos = _u16(buf, pos, end)
    if pos + length > end:
        raise MalformedPacket("a length-prefixed field runs past the end of the packet")
    return bytes(buf[pos : pos + length]), pos + length


def decode_utf8(raw: bytes) -> str:
    """Decode an MQTT UTF-8 string: well-formed UTF-8 without U+0000 (§1.5.4)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"string is not well-formed UTF-8 ({exc.reason})") from None
    if "\x00" in text:
        raise MalformedPacket("string contains the null character U+0000 (§1.5.4)")
    return text


def _utf8(buf: Buffer, pos: int, end: int) -> tuple[str, int]:
    raw, pos = _binary(buf, pos, end)
    return decode_utf8(raw), pos


def _properties(buf: Buffer, pos: int, end: int, packet_type: int) -> tuple[Properties, int]:
    length, pos = _varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("property length runs past the end of the packet")
    props: Properties = {}
    while pos < stop:
        ident, pos = _varint(buf, pos, stop)
        spec = _PROPERTY_SPEC.get(ident)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{ident:02X}")
        kind, allowed = spec
        if packet_type not in allowed:
            raise MalformedPacket(f"property 0x{ident:02X} is not allowed in this packet", Reason.PROTOCOL_ERROR)
        value: Any
        if kind == _BYTE:
            value, pos = _u8(buf, pos, stop)
        elif kind == _TWO:
            value, pos = _u16(buf, pos, stop)
        elif kind == _FOUR:
            value, pos = _u32(buf, pos, stop)
        elif kind == _VARINT:
            value, pos = _varint(buf, pos, stop)
        elif kind == _UTF8:
            value, pos = _utf8(buf, pos, stop)
        elif kind == _BINARY:
            value, pos = _binary(buf, pos, stop)
        else:
            name, pos = _utf8(buf, pos, stop)
            text, pos = _utf8(buf, pos, stop)
            value = (name, text)
        if ident in _LIST_PROPERTIES:
            props.setdefault(ident, []).append(value)
        elif ident in props:
            raise MalformedPacket(f"property 0x{ident:02X} appears twice (§2.2.2.2)", Reason.PROTOCOL_ERROR)
        else:
            props[ident] = value
    _check_property_values(props)
    return props, pos


def _check_property_values(props: Properties) -> None:
    """Value rules that make a packet a protocol error rather than a usable one (§3.1.2.11, §3.3.2.3)."""
    for ident in (
        Prop.PAYLOAD_FORMAT_INDICATOR,
        Prop.REQUEST_PROBLEM_INFORMATION,
        Prop.REQUEST_RESPONSE_INFORMATION,
        Prop.MAXIMUM_QOS,
        Prop.RETAIN_AVAILABLE,
        Prop.WILDCARD_SUBSCRIPTION_AVAILABLE,
        Prop.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        Prop.SHARED_SUBSCRIPTION_AVAILABLE,
    ):
        if props.get(ident, 0) > 1:
            raise MalformedPacket(f"property 0x{ident:02X} must be 0 or 1", Reason.PROTOCOL_ERROR)
    if props.get(Prop.RECEIVE_MAXIMUM) == 0:
        raise MalformedPacket("Receive Maximum of 0 (§3.1.2.11.3)", Reason.PROTOCOL_ERROR)
    if props.get(Prop.MAXIMUM_PACKET_SIZE) == 0:
        raise MalformedPacket("Maximum Packet Size of 0 (§3.1.2.11.4)", Reason.PROTOCOL_ERROR)
    if props.get(Prop.TOPIC_ALIAS) == 0:
        raise MalformedPacket("Topic Alias of 0 (§3.3.2.3.4)", Reason.TOPIC_ALIAS_INVALID)
    if 0 in props.get(Prop.SUBSCRIPTION_IDENTIFIER, ()):
        raise MalformedPacket("Subscription Identifier of 0 (§3.3.2.3.8)", Reason.PROTOCOL_ERROR)


def _check_topic_name(topic: str) -> None:
    if "+" in topic or "#" in topic:
        raise MalformedPacket(f"topic name {topic[:100]!r} contains a wildcard (§3.3.2.1)", Reason.TOPIC_NAME_INVALID)
    if topic.count("/") >= MAX_LEVELS:
        raise MalformedPacket(f"topic name has more than {MAX_LEVELS} levels", Reason.TOPIC_NAME_INVALID)


# ---------------------------------------------------------------------------------------------------------------
# Decoding packets


def _decode_connect(buf: Buffer, pos: int, end: int) -> Connect:
    name, pos = _utf8(buf, pos, end)
    level, pos = _u8(buf, pos, end)
    if (name, level) not in (("MQTT", MQTT_311), ("MQTT", MQTT_5), ("MQIsdp", MQTT_31)):
        if name in ("MQTT", "MQIsdp"):
            raise UnsupportedProtocol(f"unsupported protocol level {level} ({name})", level)
        raise MalformedPacket(f"unknown protocol name {name[:50]!r} (§3.1.2.1)", Reason.UNSUPPORTED_PROTOCOL_VERSION)
    flags, pos = _u8(buf, pos, end)
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is set (§3.1.2.3)")
    keep_alive, pos = _u16(buf, pos, end)
    props: Properties = {}
    if level == MQTT_5:
        props, pos = _properties(buf, pos, end, _P.CONNECT)
    client_id, pos = _utf8(buf, pos, end)
    will = None
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if flags & 0x04:
        if will_qos == 3:
            raise MalformedPacket("will QoS 3 (§3.1.2.6)")
        will_props: Properties = {}
        if level == MQTT_5:
            will_props, pos = _properties(buf, pos, end, _WILL)
        will_topic, pos = _utf8(buf, pos, end)
        _check_topic_name(will_topic)
        if not will_topic:
            raise MalformedPacket("empty will topic (§4.7.3)", Reason.TOPIC_NAME_INVALID)
        will_payload, pos = _binary(buf, pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    elif will_qos or will_retain:
        raise MalformedPacket("will QoS or retain set without the will flag (§3.1.2.6)")
    username = None
    password = None
    if flags & 0x80:
        username, pos = _utf8(buf, pos, end)
    if flags & 0x40:
        if level != MQTT_5 and username is None:
            raise MalformedPacket("password without user name (3.1.1 §3.1.2.9)")
        password, pos = _binary(buf, pos, end)
    _expect_end(pos, end)
    return Connect(client_id, level, bool(flags & 0x02), keep_alive, username, password, will, props)


def _expect_end(pos: int, end: int) -> None:
    if pos != end:
        raise MalformedPacket(f"{end - pos} unexpected bytes at the end of the packet")


# Plain ints for the decoder's dispatch: comparing with enum members costs an attribute lookup each time.
_PUBLISH = int(_P.PUBLISH)
_ACKS = frozenset({int(_P.PUBACK), int(_P.PUBREC), int(_P.PUBREL), int(_P.PUBCOMP)})
_FLAGS_0010 = frozenset({int(_P.PUBREL), int(_P.SUBSCRIBE), int(_P.UNSUBSCRIBE)})


class Reader:
    """Incremental decoder of one connection's byte stream.

    `version` is the protocol level once known: a server's Reader learns it from the CONNECT it decodes, a
    client's is given it. Packets larger than `max_packet_size` (fixed header included) are refused before
    their body is buffered.
    """

    __slots__ = ("_buf", "max_packet_size", "version")

    def __init__(self, max_packet_size: int = MAX_REMAINING_LENGTH + 5, version: int | None = None) -> None:
        self._buf = bytearray()
        self.max_packet_size = max_packet_size
        self.version = version

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        """Add bytes from the stream and return every packet now complete, in order."""
        buf = self._buf
        buf += data
        packets: list[Packet] = []
        pos = 0
        size = len(buf)
        try:
            while size - pos >= 2:
                first = buf[pos]
                # Remaining length, inlined: this loop runs once per packet on the broker's hot path.
                length = 0
                shift = 0
                i = pos + 1
                while True:
                    if i >= size:
                        if i - pos > 4:
                            raise MalformedPacket("remaining length longer than four bytes (§1.5.5)")
                        return packets
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("remaining length longer than four bytes (§1.5.5)")
                end = i + length
                if end - pos > self.max_packet_size:
                    raise MalformedPacket(
                        f"packet of {end - pos} bytes exceeds the maximum of {self.max_packet_size}",
                        Reason.PACKET_TOO_LARGE,
                    )
                if end > size:
                    break
                packets.append(self._decode(first, buf, i, end))
                pos = end
        except MalformedPacket as exc:
            exc.packets = packets
            raise
        finally:
            del buf[:pos]
        return packets

    def _decode(self, first: int, buf: bytearray, pos: int, end: int) -> Packet:
        kind = first >> 4
        flags = first & 0x0F
        v5 = self.version == MQTT_5
        if kind == _PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                raise MalformedPacket("PUBLISH with QoS 3 (§3.3.1.2)")
            dup = bool(flags & 0x08)
            if dup and not qos:
                raise MalformedPacket("PUBLISH with DUP set at QoS 0 (§3.3.1.1)", Reason.PROTOCOL_ERROR)
            topic, pos = _utf8(buf, pos, end)
            _check_topic_name(topic)
            packet_id = None
            if qos:
                packet_id, pos = _u16(buf, pos, end)
                if not packet_id:
                    raise MalformedPacket("PUBLISH with packet identifier 0 (§2.2.1)", Reason.PROTOCOL_ERROR)
            props: Properties = {}
            if v5:
                props, pos = _properties(buf, pos, end, kind)
                if not topic and Prop.TOPIC_ALIAS not in props:
                    raise MalformedPacket("empty topic without a topic alias (§3.3.2.1)", Reason.PROTOCOL_ERROR)
            elif not topic:
                raise MalformedPacket("PUBLISH with an empty topic (3.1.1 §4.7.3)", Reason.TOPIC_NAME_INVALID)
            return Publish(topic, bytes(buf[pos:end]), qos, bool(flags & 0x01), dup, packet_id, props)
        expected_flags = 0x02 if kind in _FLAGS_0010 else 0
        if kind and flags != expected_flags:
            raise MalformedPacket(f"reserved flags 0x{flags:X} in a packet of type {kind} (§2.1.3)")
        if kind in _ACKS:
            packet_id, pos = _u16(buf, pos, end)
            reason = 0
            props = {}
            if v5 and pos < end:
                reason, pos = _u8(buf, pos, end)
                if pos < end:
                    props, pos = _properties(buf, pos, end, kind)
            _expect_end(pos, end)
            return _ACK_CLASSES[kind](packet_id, reason, props)
        if kind == _P.CONNECT:
            if self.version is not None:
                raise MalformedPacket("second CONNECT on one connection (§3.1.0)", Reason.PROTOCOL_ERROR)
            connect = _decode_connect(buf, pos, end)
            self.version = connect.protocol_level
            return connect
        if kind == _P.SUBSCRIBE:
            return self._decode_subscribe(buf, pos, end, v5)
        if kind == _P.UNSUBSCRIBE:
            packet_id, pos = _u16(buf, pos, end)
            if not packet_id:
                raise MalformedPacket("UNSUBSCRIBE with packet identifier 0 (§2.2.1)", Reason.PROTOCOL_ERROR)
            props = {}
            if v5:
                props, pos = _properties(buf, pos, end, kind)
            filters = []
            while pos < end:
                topic_filter, pos = _utf8(buf, pos, end)
                filters.append(topic_filter)
            if not filters:
                raise MalformedPacket("UNSUBSCRIBE without a topic filter (§3.10.3)", Reason.PROTOCOL_ERROR)
            return Unsubscribe(packet_id, filters, props)
        if kind in (_P.PINGREQ, _P.PINGRESP):
            _expect_end(pos, end)
            return PingReq() if kind == _P.PINGREQ else PingResp()
        if kind in (_P.DISCONNECT, _P.AUTH):
            reason = 0
            props = {}
            if v5 and pos < end:
                reason, pos = _u8(buf, pos, end)
                if pos < end:
                    props, pos = _properties(buf, pos, end, kind)
            _expect_end(pos, end)
            if kind == _P.AUTH and not v5:
                raise MalformedPacket("AUTH packet outside MQTT 5", Reason.PROTOCOL_ERROR)
            return Disconnect(reason, props) if kind == _P.DISCONNECT else Auth(reason, props)
        if kind == _P.CONNACK:
            ack_flags, pos = _u8(buf, pos, end)
            if ack_flags & 0xFE:
                raise MalformedPacket("CONNACK reserved flags set (§3.2.2.1)")
            code, pos = _u8(buf, pos, end)
            props = {}
            if v5:
                props, pos = _properties(buf, pos, end, kind)
            else:
                code = _V311_CONNACK_TO_V5.get(code, Reason.UNSPECIFIED_ERROR)
            _expect_end(pos, end)
            return ConnAck(code, bool(ack_flags & 1), props)
        if kind in (_P.SUBACK, _P.UNSUBACK):
            packet_id, pos = _u16(buf, pos, end)
            props = {}
            if v5:
                props, pos = _properties(buf, pos, end, kind)
            codes = list(buf[pos:end])
            if kind == _P.SUBACK:
                return SubAck(packet_id, codes, props)
            if not v5 and codes:
                raise MalformedPacket("3.1.1 UNSUBACK with a payload (3.1.1 §3.11.3)")
            return UnsubAck(packet_id, codes, props)
        raise MalformedPacket(f"reserved packet type {kind} (§2.1.2)")

    @staticmethod
    def _decode_subscribe(buf: bytearray, pos: int, end: int, v5: bool) -> Subscribe:
        packet_id, pos = _u16(buf, pos, end)
        if not packet_id:
            raise MalformedPacket("SUBSCRIBE with packet identifier 0 (§2.2.1)", Reason.PROTOCOL_ERROR)
        props: Properties = {}
        if v5:
            props, pos = _properties(buf, pos, end, _P.SUBSCRIBE)
            if len(props.get(Prop.SUBSCRIPTION_IDENTIFIER, ())) > 1:
                raise MalformedPacket("more than one Subscription Identifier (§3.8.2.1.2)", Reason.PROTOCOL_ERROR)
        subscriptions = []
        while pos < end:
            topic_filter, pos = _utf8(buf, pos, end)
            options, pos = _u8(buf, pos, end)
            qos = options & 0x03
            retain_handling = (options >> 4) & 0x03
            if options & (0xC0 if v5 else 0xFC):
                raise MalformedPacket(f"reserved bits set in subscription options 0x{options:02X} (§3.8.3.1)")
            if qos == 3 or retain_handling == 3:
                raise MalformedPacket(
                    f"QoS or Retain Handling of 3 in subscription options 0x{options:02X} (§3.8.3.1)",
                    Reason.PROTOCOL_ERROR if v5 else Reason.MALFORMED_PACKET,
                )
            subscriptions.append(
                Subscription(topic_filter, qos, bool(options & 0x04), bool(options & 0x08), retain_handling)
            )
        if not subscriptions:
            raise MalformedPacket("SUBSCRIBE without a topic filter (§3.8.3)", Reason.PROTOCOL_ERROR)
        return Subscribe(packet_id, subscriptions, props)


_ACK_CLASSES: dict[int, type[Acknowledgement]] = {
    _P.PUBACK: PubAck,
    _P.PUBREC: PubRec,
    _P.PUBREL: PubRel,
    _P.PUBCOMP: PubComp,
}


# ---------------------------------------------------------------------------------------------------------------
# Encoding

_ACK_FIRST_BYTES = {PubAck: 0x40, PubRec: 0x50, PubRel: 0x62, PubComp: 0x70}


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _enc_binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("a length-prefixed field holds at most 65,535 bytes")
    return _U16.pack(len(data)) + data


def _enc_utf8(text: str) -> bytes:
    return _enc_binary(text.encode("utf-8"))


def encode_properties(props: Properties) -> bytes:
    out = bytearray()
    for ident, value in props.items():
        kind = _PROPERTY_SPEC[ident][0]
        for item in value if ident in _LIST_PROPERTIES else (value,):
            out += encode_varint(ident)
            if kind == _BYTE:
                out.append(item)
            elif kind == _TWO:
                out += _U16.pack(item)
            elif kind == _FOUR:
                out += _U32.pack(item)
            elif kind == _VARINT:
                out += encode_varint(item)
            elif kind == _UTF8:
                out += _enc_utf8(item)
            elif kind == _BINARY:
                out += _enc_binary(item)
            else:
                out += _enc_utf8(item[0]) + _enc_utf8(item[1])
    return encode_varint(len(out)) + out


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def encode_publish(packet: Publish, version: int) -> bytes:
    return publish_bytes(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id or 0,
        packet.properties,
        version,
    )


def publish_bytes(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int, props: Properties, version: int
) -> bytes:
    """A PUBLISH packet from its fields: the hot path of delivery, kept flat and free of temporary objects."""
    raw_topic = topic.encode()
    if len(raw_topic) > 0xFFFF:
        raise ValueError("a topic name holds at most 65,535 bytes")
    body = _U16.pack(len(raw_topic)) + raw_topic
    if qos:
        body += _U16.pack(packet_id)
    if version == MQTT_5:
        body += encode_properties(props) if props else b"\x00"
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    length = len(body) + len(payload)
    if length < 128:
        return bytes((first, length)) + body + payload
    return bytes((first,)) + encode_varint(length) + body + payload


_ACK = struct.Struct(">BBH")


def ack_bytes(first: int, packet_id: int) -> bytes:
    """A successful PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) without properties: the same
    four bytes in 3.1.1 and 5 (§3.4.2.1)."""
    return _ACK.pack(first, 2, packet_id)


def encode(packet: Packet, version: int) -> bytes:
    """Encode `packet` for a peer speaking protocol level `version`."""
    v5 = version == MQTT_5
    if isinstance(packet, Publish):
        return encode_publish(packet, version)
    if isinstance(packet, Acknowledgement):
        first = _ACK_FIRST_BYTES[type(packet)]
        body = _U16.pack(packet.packet_id)
        # §3.4.2.1: reason code and properties may be left out when success with no properties.
        if v5 and (packet.reason_code or packet.properties):
            body += bytes((packet.reason_code,))
            if packet.properties:
                body += encode_properties(packet.properties)
        return _frame(first, body)
    if isinstance(packet, ConnAck):
        code = packet.reason_code
        if not v5:
            code = _V311_CONNACK.get(code, 0x03)
        body = bytes((int(packet.session_present), code))
        if v5:
            body += encode_properties(packet.properties)
        return _frame(0x20, body)
    if isinstance(packet, SubAck):
        body = _U16.pack(packet.packet_id)
        if v5:
            body += encode_properties(packet.properties)
        return _frame(0x90, body + bytes(packet.reason_codes))
    if isinstance(packet, UnsubAck):
        body = _U16.pack(packet.packet_id)
        if v5:
            body += encode_properties(packet.properties) + bytes(packet.reason_codes)
        return _frame(0xB0, body)
    if isinstance(packet, PingReq):
        return b"\xc0\x00"
    if isinstance(packet, PingResp):
        return b"\xd0\x00"
    if isinstance(packet, Disconnect | Auth):
        first = 0xE0 if isinstance(packet, Disconnect) else 0xF0
        body = b""
        if v5 and (packet.reason_code or packet.properties):
            body = bytes((packet.reason_code,))
            if packet.properties:
                body += encode_properties(packet.properties)
        return _frame(first, body)
    if isinstance(packet, Subscribe):
        body = _U16.pack(packet.packet_id)
        if v5:
            body += encode_properties(packet.properties)
        for sub in packet.subscriptions:
            options = sub.qos
            if v5:
                options |= (
                    (0x04 if sub.no_local else 0)
                    | (0x08 if sub.retain_as_published else 0)
                    | (sub.retain_handling << 4)
                )
            body += _enc_utf8(sub.topic_filter) + bytes((options,))
        return _frame(0x82, body)
    if isinstance(packet, Unsubscribe):
        body = _U16.pack(packet.packet_id)
        if v5:
            body += encode_properties(packet.properties)
        for topic_filter in packet.topic_filters:
            body += _enc_utf8(topic_filter)
        return _frame(0xA2, body)
    return _encode_connect(packet)


def _encode_connect(packet: Connect) -> bytes:
    v5 = packet.protocol_level == MQTT_5
    name = "MQIsdp" if packet.protocol_level == MQTT_31 else "MQTT"
    flags = 0x02 if packet.clean_start else 0
    will = packet.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.username is not None:
        flags |= 0x80
    if packet.password is not None:
        flags |= 0x40
    body = _enc_utf8(name) + bytes((packet.protocol_level, flags)) + _U16.pack(packet.keep_alive)
    if v5:
        body += encode_properties(packet.properties)
    body += _enc_utf8(packet.client_id)
    if will is not None:
        if v5:
            body += encode_properties(will.properties)
        body += _enc_utf8(will.topic) + _enc_binary(will.payload)
    if packet.username is not None:
        body += _enc_utf8(packet.username)
    if packet.password is not None:
        body += _enc_binary(packet.password)
    return _frame(0x10, body)
