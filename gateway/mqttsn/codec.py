"""Sans-I/O codec for MQTT-SN 1.2 messages.

Bytes in, message objects out, and back: no sockets, no asyncio, no clocks. `decode` takes one whole datagram (or
one frame cut out of a serial stream by `gateway.mqttsn.framing`) holding exactly one message; `encode` turns a
message into bytes. Any problem with the bytes raises `MalformedMessage`, whose `reason` names what is wrong and
the section that says so; nothing else ever escapes `decode`, so one bad datagram cannot take the gateway down.

Section numbers refer to "MQTT For Sensor Networks (MQTT-SN) Protocol Specification Version 1.2" (2013).

Choices the specification leaves open, and why:

- Length (§5.2.1): both forms are accepted for every message, the 3-octet one (0x01, then two octets) also for
  short messages; the body offset follows the form actually used. The Length must equal the datagram's size:
  a shorter or longer datagram is malformed, not truncated or padded. `encode` uses the 1-octet form when the
  whole message is shorter than 256 octets, else the 3-octet form. The forwarder encapsulation (§5.5) has only
  the 1-octet form, which counts its own header; the carried message follows and is returned undecoded.
- ClientId (§5.3.1, §5.4.4): the spec says 1 to 23 characters. Like most MQTT servers we accept longer ones, up
  to `MAX_CLIENT_ID` (255) octets, which bounds what a client can make the gateway store per entry; an empty one
  is malformed (MQTT-SN has no way to assign one). ClientIds and topic names must be UTF-8 without U+0000,
  because they become MQTT strings (MQTT 3.1.1 §1.5.3).
- Flags (§5.3.4): bits a message does "not use" are ignored, not rejected. TopicIdType 0b11 is reserved and
  rejected where the field is used (PUBLISH, SUBSCRIBE, UNSUBSCRIBE). QoS -1 (0b11) exists only for PUBLISH
  (§6.8); a will QoS or a (granted) subscription QoS of -1 is malformed.
- ReturnCode (§5.3.10): 0x04-0xFF are reserved and rejected.
- ProtocolId (§5.3.8): any value decodes; the gateway answers a value other than 0x01 with a CONNACK
  "not supported" rather than silence.
- TopicId 0x0000 and 0xFFFF (§5.3.11) are not rejected here: the codec cannot tell a client's REGISTER (where
  0x0000 is the rule, §5.4.10) from a gateway's, and a PUBLISH on a reserved or unknown id is answered by the
  gateway with PUBACK "invalid topic id" (§5.4.13), which needs the decoded message. The gateway's id allocator
  must skip both.
- Short topic names (§5.3.11, §6.7) travel in the TopicId field: `topic_id` holds the two octets big-endian, in
  the order they arrived, so echoing `topic_id` back (PUBACK, §5.4.13) never swaps them. `short_topic_id` and
  `short_topic_name` convert to and from text.
- Semantic rules that the gateway answers with a return code (unknown topic id, wildcards in a REGISTER, empty
  topic names, DUP or MsgId with QoS 0) are left to the gateway: rejecting them here would turn an answer into
  silence.
- WILLTOPIC / WILLTOPICUPD (§5.4.7, §5.4.22): the empty form (Length 2) deletes the will; a form with Flags but no
  topic is read as the same (flags ignored), and `encode` refuses an empty topic with QoS or Retain set, since the
  empty form has nowhere to put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

MAX_CLIENT_ID = 255  # octets; the spec's 23 is exceeded by common clients (see the module docstring)
MAX_MESSAGE = 0xFFFF  # the largest the 3-octet Length can express (§5.2.1)


class MsgType(IntEnum):
    """MsgType values (§5.2.2). Every value not listed is reserved."""

    ADVERTISE = 0x00
    SEARCHGW = 0x01
    GWINFO = 0x02
    CONNECT = 0x04
    CONNACK = 0x05
    WILLTOPICREQ = 0x06
    WILLTOPIC = 0x07
    WILLMSGREQ = 0x08
    WILLMSG = 0x09
    REGISTER = 0x0A
    REGACK = 0x0B
    PUBLISH = 0x0C
    PUBACK = 0x0D
    PUBCOMP = 0x0E
    PUBREC = 0x0F
    PUBREL = 0x10
    SUBSCRIBE = 0x12
    SUBACK = 0x13
    UNSUBSCRIBE = 0x14
    UNSUBACK = 0x15
    PINGREQ = 0x16
    PINGRESP = 0x17
    DISCONNECT = 0x18
    WILLTOPICUPD = 0x1A
    WILLTOPICRESP = 0x1B
    WILLMSGUPD = 0x1C
    WILLMSGRESP = 0x1D
    ENCAPSULATED = 0xFE


class ReturnCode(IntEnum):
    """ReturnCode values (§5.3.10); 0x04-0xFF are reserved."""

    ACCEPTED = 0x00
    CONGESTION = 0x01
    INVALID_TOPIC_ID = 0x02
    NOT_SUPPORTED = 0x03


class TopicIdType(IntEnum):
    """Flags bits 1-0 (§5.3.4); 0b11 is reserved."""

    NORMAL = 0b00  # a registered topic id, or a topic name in SUBSCRIBE / UNSUBSCRIBE
    PREDEFINED = 0b01
    SHORT = 0b10  # a two-octet topic name carried in place of the id


_TOPIC_ID_TYPES = tuple(TopicIdType)


class MalformedMessage(Exception):
    """The bytes are not a valid MQTT-SN message. `reason` says what is wrong, with the section.

    `msg_type` is the MsgType octet when the header could be read, so that the gateway may still answer (e.g. log
    which message a client got wrong); None when the header itself is unreadable.
    """

    def __init__(self, reason: str, msg_type: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.msg_type = msg_type


# ---------------------------------------------------------------------------------------------------------------
# Field helpers. Decoding helpers get the body (the octets after MsgType) and `hdr`, the size of Length + MsgType
# (2 or 4), so that reasons can state sizes of the whole message as the spec's tables do.


def _size_exact(name: str, body: bytes, hdr: int, size: int, section: str) -> None:
    if len(body) != size:
        raise MalformedMessage(f"{name} of {hdr + len(body)} octets, must be {hdr + size} ({section})")


def _size_min(name: str, body: bytes, hdr: int, size: int, section: str) -> None:
    if len(body) < size:
        raise MalformedMessage(f"{name} shorter than {hdr + size} octets ({hdr + len(body)}; {section})")


def _u16(body: bytes, pos: int) -> int:
    return (body[pos] << 8) | body[pos + 1]


def _text(raw: bytes, what: str, section: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage(f"{what} is not UTF-8 ({section})") from None
    if "\x00" in text:
        raise MalformedMessage(f"{what} contains U+0000 ({section}; MQTT §1.5.3)")
    return text


def _client_id(raw: bytes, name: str) -> str:
    if not 1 <= len(raw) <= MAX_CLIENT_ID:
        raise MalformedMessage(f"{name} ClientId of {len(raw)} octets, must be 1-{MAX_CLIENT_ID} (§5.3.1)")
    return _text(raw, f"{name} ClientId", "§5.3.1")


def _qos(flags: int) -> int:
    bits = (flags >> 5) & 0b11
    return -1 if bits == 0b11 else bits


def _qos_0_2(flags: int, name: str, section: str) -> int:
    qos = _qos(flags)
    if qos < 0:
        raise MalformedMessage(f"{name} with QoS -1, which only PUBLISH may carry ({section}, §6.8)")
    return qos


def _topic_id_type(flags: int, name: str) -> TopicIdType:
    bits = flags & 0b11
    if bits == 0b11:
        raise MalformedMessage(f"{name} with the reserved TopicIdType 0b11 (§5.3.4)")
    return _TOPIC_ID_TYPES[bits]  # TopicIdType(bits) costs a microsecond: once per PUBLISH received


def _return_code(value: int, name: str) -> ReturnCode:
    if value > ReturnCode.NOT_SUPPORTED:
        raise MalformedMessage(f"{name} with the reserved ReturnCode 0x{value:02X} (§5.3.10)")
    return ReturnCode(value)


def _p8(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit one octet")
    return bytes((value,))


def _p16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit two octets")
    return value.to_bytes(2, "big")


def _pack_code(code: int) -> bytes:
    return bytes((ReturnCode(code),))  # ValueError for a reserved code


def _flags(
    *,
    dup: bool = False,
    qos: int = 0,
    retain: bool = False,
    will: bool = False,
    clean_session: bool = False,
    topic_id_type: int = 0,
    min_qos: int = -1,
) -> bytes:
    """The Flags octet (§5.3.4): DUP bit 7, QoS bits 6-5 (-1 as 0b11), Retain 4, Will 3, CleanSession 2,
    TopicIdType 1-0."""
    if not min_qos <= qos <= 2:
        raise ValueError(f"QoS {qos} is not one of {min_qos}..2")
    TopicIdType(topic_id_type)  # ValueError for the reserved 0b11
    return bytes(
        (
            (0x80 if dup else 0)
            | ((qos & 0b11) << 5)  # -1 & 0b11 == 0b11
            | (0x10 if retain else 0)
            | (0x08 if will else 0)
            | (0x04 if clean_session else 0)
            | topic_id_type,
        )
    )


def short_topic_id(name: str) -> int:
    """The TopicId field value for a short topic name (§5.3.11): its two UTF-8 octets, first octet high."""
    raw = name.encode("utf-8")
    if len(raw) != 2:
        raise ValueError(f"a short topic name is exactly two octets, not {len(raw)} ({name!r})")
    return (raw[0] << 8) | raw[1]


def short_topic_name(topic_id: int) -> str:
    """The short topic name a TopicId field holds; ValueError when its two octets are not UTF-8."""
    return topic_id.to_bytes(2, "big").decode("utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Messages. Each knows its MsgType, its body layout (`_pack`) and how to read its body back (`_unpack`).


class _Message:
    __slots__ = ()
    TYPE: ClassVar[MsgType]

    def _pack(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Empty(_Message):
    """A message with no body: WILLTOPICREQ, WILLMSGREQ, PINGRESP."""

    SECTION: ClassVar[str]

    def _pack(self) -> bytes:
        return b""

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_exact(cls.TYPE.name, body, hdr, 0, cls.SECTION)
        return cls()


@dataclass(frozen=True, slots=True)
class _MsgIdOnly(_Message):
    """A body of MsgId alone: PUBREC, PUBREL, PUBCOMP (§5.4.14), UNSUBACK (§5.4.18). Messages of different types
    are never equal (dataclass equality compares the class)."""

    SECTION: ClassVar[str]
    msg_id: int

    def _pack(self) -> bytes:
        return _p16(self.msg_id, "MsgId")

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_exact(cls.TYPE.name, body, hdr, 2, cls.SECTION)
        return cls(_u16(body, 0))


@dataclass(frozen=True, slots=True)
class _CodeOnly(_Message):
    """A body of ReturnCode alone: CONNACK (§5.4.5), WILLTOPICRESP (§5.4.24), WILLMSGRESP (§5.4.25)."""

    SECTION: ClassVar[str]
    return_code: ReturnCode = ReturnCode.ACCEPTED

    def _pack(self) -> bytes:
        return _pack_code(self.return_code)

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_exact(cls.TYPE.name, body, hdr, 1, cls.SECTION)
        return cls(_return_code(body[0], cls.TYPE.name))


@dataclass(frozen=True, slots=True)
class _WillTopicBase(_Message):
    """WILLTOPIC (§5.4.7) and WILLTOPICUPD (§5.4.22): Flags (QoS, Retain) and WillTopic, or nothing at all."""

    SECTION: ClassVar[str]
    topic: str = ""
    qos: int = 0
    retain: bool = False

    def _pack(self) -> bytes:
        if not self.topic:
            if self.qos or self.retain:
                raise ValueError(f"an empty {self.TYPE.name} (delete the will) carries no QoS or Retain")
            return b""
        return _flags(qos=self.qos, retain=self.retain, min_qos=0) + self.topic.encode("utf-8")

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        name = cls.TYPE.name
        if len(body) <= 1:  # Length 2 is the empty form; Flags without a topic means the same
            return cls()
        qos = _qos_0_2(body[0], name, cls.SECTION)
        return cls(_text(body[1:], f"{name} WillTopic", cls.SECTION), qos, bool(body[0] & 0x10))


@dataclass(frozen=True, slots=True)
class Advertise(_Message):
    """§5.4.1: a gateway's periodic announcement; `duration` is the seconds until the next one."""

    TYPE: ClassVar[MsgType] = MsgType.ADVERTISE
    gw_id: int
    duration: int

    def _pack(self) -> bytes:
        return _p8(self.gw_id, "GwId") + _p16(self.duration, "Duration")

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_exact("ADVERTISE", body, hdr, 3, "§5.4.1")
        return cls(body[0], _u16(body, 1))


@dataclass(frozen=True, slots=True)
class SearchGw(_Message):
    """§5.4.2: a client looking for a gateway, broadcast `radius` hops."""

    TYPE: ClassVar[MsgType] = MsgType.SEARCHGW
    radius: int

    def _pack(self) -> bytes:
        return _p8(self.radius, "Radius")

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_exact("SEARCHGW", body, hdr, 1, "§5.4.2")
        return cls(body[0])


@dataclass(frozen=True, slots=True)
class GwInfo(_Message):
    """§5.4.3: the answer to SEARCHGW. `gw_add` is present only when a client answers for a gateway."""

    TYPE: ClassVar[MsgType] = MsgType.GWINFO
    gw_id: int
    gw_add: bytes = b""

    def _pack(self) -> bytes:
        return _p8(self.gw_id, "GwId") + self.gw_add

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_min("GWINFO", body, hdr, 1, "§5.4.3")
        return cls(body[0], body[1:])


@dataclass(frozen=True, slots=True)
class Connect(_Message):
    """§5.4.4. `duration` is the keep-alive in seconds; `will` asks the gateway to prompt for the will (§6.2)."""

    TYPE: ClassVar[MsgType] = MsgType.CONNECT
    client_id: str
    duration: int
    clean_session: bool = True
    will: bool = False
    protocol_id: int = 0x01  # §5.3.8: the only defined value

    def _pack(self) -> bytes:
        raw = self.client_id.encode("utf-8")
        if not 1 <= len(raw) <= MAX_CLIENT_ID:
            raise ValueError(f"ClientId of {len(raw)} octets, must be 1-{MAX_CLIENT_ID}")
        flags = _flags(will=self.will, clean_session=self.clean_session)
        return flags + _p8(self.protocol_id, "ProtocolId") + _p16(self.duration, "Duration") + raw

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        # Flags, ProtocolId, Duration, then a ClientId of at least one octet.
        _size_min("CONNECT", body, hdr, 5, "§5.4.4")
        flags = body[0]
        return cls(_client_id(body[4:], "CONNECT"), _u16(body, 2), bool(flags & 0x04), bool(flags & 0x08), body[1])


@dataclass(frozen=True, slots=True)
class ConnAck(_CodeOnly):
    """§5.4.5."""

    TYPE: ClassVar[MsgType] = MsgType.CONNACK
    SECTION: ClassVar[str] = "§5.4.5"


@dataclass(frozen=True, slots=True)
class WillTopicReq(_Empty):
    """§5.4.6."""

    TYPE: ClassVar[MsgType] = MsgType.WILLTOPICREQ
    SECTION: ClassVar[str] = "§5.4.6"


@dataclass(frozen=True, slots=True)
class WillTopic(_WillTopicBase):
    """§5.4.7. An empty `topic` (the 2-octet message) deletes the will."""

    TYPE: ClassVar[MsgType] = MsgType.WILLTOPIC
    SECTION: ClassVar[str] = "§5.4.7"


@dataclass(frozen=True, slots=True)
class WillMsgReq(_Empty):
    """§5.4.8."""

    TYPE: ClassVar[MsgType] = MsgType.WILLMSGREQ
    SECTION: ClassVar[str] = "§5.4.8"


@dataclass(frozen=True, slots=True)
class _WillMsgBase(_Message):
    """The will payload, the whole body."""

    data: bytes

    def _pack(self) -> bytes:
        return self.data

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        return cls(body)


@dataclass(frozen=True, slots=True)
class WillMsg(_WillMsgBase):
    """§5.4.9."""

    TYPE: ClassVar[MsgType] = MsgType.WILLMSG


@dataclass(frozen=True, slots=True)
class Register(_Message):
    """§5.4.10. `topic_id` is 0 when a client sends it, the assigned id when the gateway does."""

    TYPE: ClassVar[MsgType] = MsgType.REGISTER
    topic_id: int
    msg_id: int
    topic_name: str

    def _pack(self) -> bytes:
        return _p16(self.topic_id, "TopicId") + _p16(self.msg_id, "MsgId") + self.topic_name.encode("utf-8")

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_min("REGISTER", body, hdr, 4, "§5.4.10")
        return cls(_u16(body, 0), _u16(body, 2), _text(body[4:], "REGISTER TopicName", "§5.4.10"))


@dataclass(frozen=True, slots=True)
class _TopicAck(_Message):
    """TopicId, MsgId and ReturnCode: the answer to a REGISTER (REGACK) or a PUBLISH (PUBACK)."""

    SECTION: ClassVar[str]
    topic_id: int
    msg_id: int
    return_code: ReturnCode = ReturnCode.ACCEPTED

    def _pack(self) -> bytes:
        return _p16(self.topic_id, "TopicId") + _p16(self.msg_id, "MsgId") + _pack_code(self.return_code)

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_exact(cls.TYPE.name, body, hdr, 5, cls.SECTION)
        return cls(_u16(body, 0), _u16(body, 2), _return_code(body[4], cls.TYPE.name))


@dataclass(frozen=True, slots=True)
class RegAck(_TopicAck):
    """§5.4.11."""

    TYPE: ClassVar[MsgType] = MsgType.REGACK
    SECTION: ClassVar[str] = "§5.4.11"


@dataclass(frozen=True, slots=True)
class Publish(_Message):
    """§5.4.12. `topic_id` is read as `topic_id_type` says: a registered id, a pre-defined id, or a short name's
    two octets (see `short_topic_name`). `msg_id` is 0 for QoS 0 and -1."""

    TYPE: ClassVar[MsgType] = MsgType.PUBLISH
    topic_id: int
    msg_id: int
    data: bytes
    qos: int = 0
    topic_id_type: TopicIdType = TopicIdType.NORMAL
    dup: bool = False
    retain: bool = False

    def _pack(self) -> bytes:
        flags = _flags(dup=self.dup, qos=self.qos, retain=self.retain, topic_id_type=self.topic_id_type)
        return flags + _p16(self.topic_id, "TopicId") + _p16(self.msg_id, "MsgId") + self.data

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_min("PUBLISH", body, hdr, 5, "§5.4.12")
        flags = body[0]
        return cls(
            _u16(body, 1),
            _u16(body, 3),
            body[5:],
            _qos(flags),
            _topic_id_type(flags, "PUBLISH"),
            bool(flags & 0x80),
            bool(flags & 0x10),
        )


@dataclass(frozen=True, slots=True)
class PubAck(_TopicAck):
    """§5.4.13. `topic_id` echoes the PUBLISH's field as it arrived, also when rejecting it."""

    TYPE: ClassVar[MsgType] = MsgType.PUBACK
    SECTION: ClassVar[str] = "§5.4.13"


@dataclass(frozen=True, slots=True)
class PubRec(_MsgIdOnly):
    """§5.4.14."""

    TYPE: ClassVar[MsgType] = MsgType.PUBREC
    SECTION: ClassVar[str] = "§5.4.14"


@dataclass(frozen=True, slots=True)
class PubRel(_MsgIdOnly):
    """§5.4.14."""

    TYPE: ClassVar[MsgType] = MsgType.PUBREL
    SECTION: ClassVar[str] = "§5.4.14"


@dataclass(frozen=True, slots=True)
class PubComp(_MsgIdOnly):
    """§5.4.14."""

    TYPE: ClassVar[MsgType] = MsgType.PUBCOMP
    SECTION: ClassVar[str] = "§5.4.14"


def _pack_topic(topic: str | int, topic_id_type: TopicIdType) -> bytes:
    """The topic part of SUBSCRIBE / UNSUBSCRIBE: a name (NORMAL) or a two-octet id or short name."""
    if topic_id_type == TopicIdType.NORMAL:
        if not isinstance(topic, str):
            raise ValueError("TopicIdType NORMAL takes a topic name (str)")
        return topic.encode("utf-8")
    if not isinstance(topic, int):
        raise ValueError(f"TopicIdType {topic_id_type.name} takes a two-octet id (int)")
    return _p16(topic, "TopicId")


def _unpack_topic(rest: bytes, topic_id_type: TopicIdType, name: str, section: str) -> str | int:
    if topic_id_type == TopicIdType.NORMAL:
        return _text(rest, f"{name} TopicName", section)
    if len(rest) != 2:
        raise MalformedMessage(f"{name} {topic_id_type.name} topic of {len(rest)} octets, must be 2 ({section})")
    return _u16(rest, 0)


@dataclass(frozen=True, slots=True)
class Subscribe(_Message):
    """§5.4.15. `topic` is a topic filter (str) for NORMAL, else the pre-defined id or short name's octets (int)."""

    TYPE: ClassVar[MsgType] = MsgType.SUBSCRIBE
    msg_id: int
    topic: str | int
    qos: int = 0
    topic_id_type: TopicIdType = TopicIdType.NORMAL
    dup: bool = False

    def _pack(self) -> bytes:
        flags = _flags(dup=self.dup, qos=self.qos, topic_id_type=self.topic_id_type, min_qos=0)
        return flags + _p16(self.msg_id, "MsgId") + _pack_topic(self.topic, self.topic_id_type)

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_min("SUBSCRIBE", body, hdr, 3, "§5.4.15")
        flags = body[0]
        qos = _qos_0_2(flags, "SUBSCRIBE", "§5.4.15")
        kind = _topic_id_type(flags, "SUBSCRIBE")
        return cls(_u16(body, 1), _unpack_topic(body[3:], kind, "SUBSCRIBE", "§5.4.15"), qos, kind, bool(flags & 0x80))


@dataclass(frozen=True, slots=True)
class SubAck(_Message):
    """§5.4.16. `topic_id` is 0 for a wildcard filter or a pre-defined / short topic."""

    TYPE: ClassVar[MsgType] = MsgType.SUBACK
    topic_id: int
    msg_id: int
    return_code: ReturnCode = ReturnCode.ACCEPTED
    qos: int = 0  # the granted QoS

    def _pack(self) -> bytes:
        return (
            _flags(qos=self.qos, min_qos=0)
            + _p16(self.topic_id, "TopicId")
            + _p16(self.msg_id, "MsgId")
            + _pack_code(self.return_code)
        )

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_exact("SUBACK", body, hdr, 6, "§5.4.16")
        qos = _qos_0_2(body[0], "SUBACK", "§5.4.16")
        return cls(_u16(body, 1), _u16(body, 3), _return_code(body[5], "SUBACK"), qos)


@dataclass(frozen=True, slots=True)
class Unsubscribe(_Message):
    """§5.4.17. `topic` as in `Subscribe`; only TopicIdType of the flags is used."""

    TYPE: ClassVar[MsgType] = MsgType.UNSUBSCRIBE
    msg_id: int
    topic: str | int
    topic_id_type: TopicIdType = TopicIdType.NORMAL

    def _pack(self) -> bytes:
        flags = _flags(topic_id_type=self.topic_id_type)
        return flags + _p16(self.msg_id, "MsgId") + _pack_topic(self.topic, self.topic_id_type)

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        _size_min("UNSUBSCRIBE", body, hdr, 3, "§5.4.17")
        kind = _topic_id_type(body[0], "UNSUBSCRIBE")
        return cls(_u16(body, 1), _unpack_topic(body[3:], kind, "UNSUBSCRIBE", "§5.4.17"), kind)


@dataclass(frozen=True, slots=True)
class UnsubAck(_MsgIdOnly):
    """§5.4.18."""

    TYPE: ClassVar[MsgType] = MsgType.UNSUBACK
    SECTION: ClassVar[str] = "§5.4.18"


@dataclass(frozen=True, slots=True)
class PingReq(_Message):
    """§5.4.19. `client_id` is set only by a sleeping client that wakes up to collect its messages (§6.14)."""

    TYPE: ClassVar[MsgType] = MsgType.PINGREQ
    client_id: str = ""

    def _pack(self) -> bytes:
        raw = self.client_id.encode("utf-8")
        if len(raw) > MAX_CLIENT_ID:
            raise ValueError(f"ClientId of {len(raw)} octets, must be at most {MAX_CLIENT_ID}")
        return raw

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        return cls(_client_id(body, "PINGREQ") if body else "")


@dataclass(frozen=True, slots=True)
class PingResp(_Empty):
    """§5.4.20."""

    TYPE: ClassVar[MsgType] = MsgType.PINGRESP
    SECTION: ClassVar[str] = "§5.4.20"


@dataclass(frozen=True, slots=True)
class Disconnect(_Message):
    """§5.4.21. `duration` (seconds) is present only when the client goes to sleep (§6.14)."""

    TYPE: ClassVar[MsgType] = MsgType.DISCONNECT
    duration: int | None = None

    def _pack(self) -> bytes:
        return b"" if self.duration is None else _p16(self.duration, "Duration")

    @classmethod
    def _unpack(cls, body: bytes, hdr: int) -> Self:
        if not body:
            return cls()
        _size_exact("DISCONNECT", body, hdr, 2, "§5.4.21: 2 octets, or 4 with a Duration")
        return cls(_u16(body, 0))


@dataclass(frozen=True, slots=True)
class WillTopicUpd(_WillTopicBase):
    """§5.4.22. An empty `topic` deletes the will topic and message."""

    TYPE: ClassVar[MsgType] = MsgType.WILLTOPICUPD
    SECTION: ClassVar[str] = "§5.4.22"


@dataclass(frozen=True, slots=True)
class WillMsgUpd(_WillMsgBase):
    """§5.4.23."""

    TYPE: ClassVar[MsgType] = MsgType.WILLMSGUPD


@dataclass(frozen=True, slots=True)
class WillTopicResp(_CodeOnly):
    """§5.4.24: 3 octets in all."""

    TYPE: ClassVar[MsgType] = MsgType.WILLTOPICRESP
    SECTION: ClassVar[str] = "§5.4.24"


@dataclass(frozen=True, slots=True)
class WillMsgResp(_CodeOnly):
    """§5.4.25: 3 octets in all."""

    TYPE: ClassVar[MsgType] = MsgType.WILLMSGRESP
    SECTION: ClassVar[str] = "§5.4.25"


@dataclass(frozen=True, slots=True)
class Encapsulated(_Message):
    """§5.5: a message relayed by a forwarder. `node_id` (the Wireless Node Id) tells the nodes behind one
    forwarder apart; `radius` is the broadcast radius (Ctrl bits 1-0); `inner` is the carried MQTT-SN message,
    undecoded (pass it to `decode`)."""

    TYPE: ClassVar[MsgType] = MsgType.ENCAPSULATED
    radius: int
    node_id: bytes
    inner: bytes

    def _pack(self) -> bytes:
        raise NotImplementedError("encode() writes the encapsulation header itself")


Message = (
    Advertise
    | SearchGw
    | GwInfo
    | Connect
    | ConnAck
    | WillTopicReq
    | WillTopic
    | WillMsgReq
    | WillMsg
    | Register
    | RegAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | WillTopicUpd
    | WillMsgUpd
    | WillTopicResp
    | WillMsgResp
    | Encapsulated
)

_DECODABLE: tuple[type[Message], ...] = (
    Advertise,
    SearchGw,
    GwInfo,
    Connect,
    ConnAck,
    WillTopicReq,
    WillTopic,
    WillMsgReq,
    WillMsg,
    Register,
    RegAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
    WillTopicUpd,
    WillMsgUpd,
    WillTopicResp,
    WillMsgResp,
)
_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in _DECODABLE
}  # Encapsulated is decoded apart: its Length counts a header only


# ---------------------------------------------------------------------------------------------------------------
# Datagrams


def decode(datagram: bytes) -> Message:
    """Decode one datagram holding exactly one MQTT-SN message (or one forwarder encapsulation, §5.5)."""
    size = len(datagram)
    if size < 2:
        raise MalformedMessage(f"datagram of {size} octets, shorter than Length and MsgType (§5.2)")
    if datagram[0] == 0x01:  # the 3-octet Length form (§5.2.1)
        if size < 4:
            raise MalformedMessage(f"datagram of {size} octets, shorter than a 3-octet Length and MsgType (§5.2.1)")
        length = (datagram[1] << 8) | datagram[2]
        hdr = 4
    else:
        length = datagram[0]
        hdr = 2
    msg_type = datagram[hdr - 1]
    if msg_type == MsgType.ENCAPSULATED:
        return _decode_encapsulated(bytes(datagram), hdr)
    cls = _CLASSES.get(msg_type)
    if cls is None:
        raise MalformedMessage(f"reserved MsgType 0x{msg_type:02X} (§5.2.2)", msg_type)
    if length != size:
        raise MalformedMessage(
            f"{MsgType(msg_type).name} with Length {length} in a datagram of {size} octets (§5.2.1)", msg_type
        )
    try:
        return cls._unpack(bytes(datagram[hdr:]), hdr)
    except MalformedMessage as exc:
        exc.msg_type = msg_type
        raise


def _decode_encapsulated(datagram: bytes, hdr: int) -> Encapsulated:
    # §5.5: Length (1 octet) counts Length, MsgType, Ctrl and the Wireless Node Id; the carried message follows.
    fe = MsgType.ENCAPSULATED
    if hdr != 2:
        raise MalformedMessage("encapsulation with a 3-octet Length; §5.5 has only the 1-octet form", fe)
    length = datagram[0]
    if length < 3:
        raise MalformedMessage(f"encapsulation Length {length}, shorter than Length, MsgType and Ctrl (§5.5)", fe)
    if len(datagram) < length + 2:
        raise MalformedMessage(
            f"encapsulation of {len(datagram)} octets with a {length}-octet header leaves no room for a message (§5.5)",
            fe,
        )
    return Encapsulated(datagram[2] & 0b11, datagram[3:length], datagram[length:])


def encode(message: Message) -> bytes:
    """Encode `message`; ValueError when a field does not fit its octets or the message exceeds 65,535 octets."""
    if isinstance(message, Encapsulated):
        if not 0 <= message.radius <= 3:
            raise ValueError(f"broadcast radius {message.radius} does not fit Ctrl bits 1-0 (§5.5)")
        if len(message.node_id) > 0xFF - 3:
            raise ValueError(f"Wireless Node Id of {len(message.node_id)} octets does not fit the 1-octet Length")
        return bytes((3 + len(message.node_id), MsgType.ENCAPSULATED, message.radius)) + message.node_id + message.inner
    body = message._pack()
    if len(body) + 2 < 256:
        return bytes((len(body) + 2, message.TYPE)) + body
    total = len(body) + 4
    if total > MAX_MESSAGE:
        raise ValueError(f"message of {total} octets exceeds the 3-octet Length's {MAX_MESSAGE}")
    return bytes((0x01, total >> 8, total & 0xFF, message.TYPE)) + body
