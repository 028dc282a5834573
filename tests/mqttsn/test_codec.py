"""Tests of the sans-I/O MQTT-SN 1.2 codec (`gateway.mqttsn.codec`).

"§x.y" is "MQTT For Sensor Networks (MQTT-SN) Protocol Specification Version 1.2" (2013). The golden byte strings
below were written by hand, octet by octet, from the message tables of §5.4 and §5.5 (Length, MsgType, then the
body; Flags laid out as in §5.3.4), so the codec is checked against the specification and not only against itself.

Part 1: golden messages. Part 2: the mistakes other gateways made (see the facts file). Part 3: every malformed
case we could name, each with the reason it must give. Part 4: property tests (round trips of every message
type, arbitrary bytes, mutated messages).
"""

from __future__ import annotations

import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqttsn.codec import (
    MAX_CLIENT_ID,
    Advertise,
    ConnAck,
    Connect,
    Disconnect,
    Encapsulated,
    GwInfo,
    MalformedMessage,
    Message,
    MsgType,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    RegAck,
    Register,
    ReturnCode,
    SearchGw,
    SubAck,
    Subscribe,
    TopicIdType,
    UnsubAck,
    Unsubscribe,
    WillMsg,
    WillMsgReq,
    WillMsgResp,
    WillMsgUpd,
    WillTopic,
    WillTopicReq,
    WillTopicResp,
    WillTopicUpd,
    decode,
    encode,
    short_topic_id,
    short_topic_name,
)

PROPERTY_SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SETTINGS = settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])

NORMAL, PREDEFINED, SHORT = TopicIdType.NORMAL, TopicIdType.PREDEFINED, TopicIdType.SHORT
ACCEPTED, CONGESTION, INVALID_TOPIC_ID, NOT_SUPPORTED = (
    ReturnCode.ACCEPTED,
    ReturnCode.CONGESTION,
    ReturnCode.INVALID_TOPIC_ID,
    ReturnCode.NOT_SUPPORTED,
)


def h(text: str) -> bytes:
    """Hex octets as written in the spec's tables, spaces allowed."""
    return bytes.fromhex(text)


def assert_malformed(datagram: bytes, *fragments: str) -> MalformedMessage:
    with pytest.raises(MalformedMessage) as info:
        decode(datagram)
    for fragment in fragments:
        assert fragment in info.value.reason, f"{info.value.reason!r} lacks {fragment!r}"
    assert str(info.value) == info.value.reason
    return info.value


# A PUBLISH too long for the 1-octet Length: 4-octet header (0x01, Length 0x0135 = 309, MsgType), Flags, TopicId,
# MsgId, then 300 data octets that are all different from their neighbours, so a body read 2 octets off shows.
LONG_DATA = bytes(i % 251 for i in range(300))
LONG_PUBLISH = h("01 01 35 0c 00 00 2a 00 00") + LONG_DATA

# ===============================================================================================================
# Part 1: golden messages, both directions

GOLDEN: list[tuple[str, bytes, Message]] = [
    # §5.4.1 ADVERTISE: GwId 1, Duration 900 s
    ("advertise", h("05 00 01 03 84"), Advertise(1, 900)),
    # §5.4.2 SEARCHGW: Radius 2
    ("searchgw", h("03 01 02"), SearchGw(2)),
    # §5.4.3 GWINFO from a gateway (no GwAdd), and from a client answering for gateway 7 at 192.168.1.2
    ("gwinfo", h("03 02 07"), GwInfo(7)),
    ("gwinfo-gwadd", h("07 02 07 c0 a8 01 02"), GwInfo(7, b"\xc0\xa8\x01\x02")),
    # §5.4.4 CONNECT: Flags Will (bit 3) + CleanSession (bit 2) = 0x0C, ProtocolId 0x01, Duration 60, "sensor1"
    ("connect", h("0d 04 0c 01 00 3c") + b"sensor1", Connect("sensor1", 60, clean_session=True, will=True)),
    ("connect-persistent", h("09 04 00 01 00 0a") + b"abc", Connect("abc", 10, clean_session=False)),
    # §5.4.5 CONNACK
    ("connack", h("03 05 00"), ConnAck(ACCEPTED)),
    ("connack-congestion", h("03 05 01"), ConnAck(CONGESTION)),
    # §5.4.6 WILLTOPICREQ
    ("willtopicreq", h("02 06"), WillTopicReq()),
    # §5.4.7 WILLTOPIC: Flags QoS 1 (bits 6-5 = 01) + Retain (bit 4) = 0x30, "will/t"; the empty form deletes
    ("willtopic", h("09 07 30") + b"will/t", WillTopic("will/t", qos=1, retain=True)),
    ("willtopic-empty", h("02 07"), WillTopic()),
    # §5.4.8 WILLMSGREQ
    ("willmsgreq", h("02 08"), WillMsgReq()),
    # §5.4.9 WILLMSG
    ("willmsg", h("06 09") + b"bye!", WillMsg(b"bye!")),
    ("willmsg-empty", h("02 09"), WillMsg(b"")),
    # §5.4.10 REGISTER from a client (TopicId 0x0000) and from a gateway (TopicId 42)
    ("register-client", h("09 0a 00 00 00 01") + b"a/b", Register(0, 1, "a/b")),
    ("register-gateway", h("09 0a 00 2a 00 02") + b"a/b", Register(42, 2, "a/b")),
    # §5.4.11 REGACK
    ("regack", h("07 0b 00 2a 00 01 00"), RegAck(42, 1, ACCEPTED)),
    ("regack-not-supported", h("07 0b 00 00 00 01 03"), RegAck(0, 1, NOT_SUPPORTED)),
    # §5.4.12 PUBLISH: QoS 1 (0x20) on registered id 42, MsgId 5, "21.5"
    ("publish-qos1", h("0b 0c 20 00 2a 00 05") + b"21.5", Publish(42, 5, b"21.5", qos=1)),
    # QoS -1 (0x60) with the short topic name "ab" (TopicIdType 0b10): 0x62; the name's octets in order
    ("publish-qos-1-short", h("08 0c 62 61 62 00 00") + b"x", Publish(0x6162, 0, b"x", qos=-1, topic_id_type=SHORT)),
    # DUP (0x80) + QoS 2 (0x40) + Retain (0x10) + pre-defined (0b01) = 0xD1, id 1, MsgId 0x1234, no data
    (
        "publish-qos2-predefined",
        h("07 0c d1 00 01 12 34"),
        Publish(1, 0x1234, b"", qos=2, topic_id_type=PREDEFINED, dup=True, retain=True),
    ),
    # §5.2.1 3-octet Length: 0x01 0x0135 (309 octets), the body starts at octet 4
    ("publish-3-octet-length", LONG_PUBLISH, Publish(42, 0, LONG_DATA)),
    # §5.4.13 PUBACK, accepted, and rejected with the PUBLISH's TopicId echoed
    ("puback", h("07 0d 00 2a 00 05 00"), PubAck(42, 5)),
    ("puback-invalid-topic", h("07 0d 61 62 00 06 02"), PubAck(0x6162, 6, INVALID_TOPIC_ID)),
    # §5.4.14 PUBREC, PUBREL, PUBCOMP (MsgType 0F, 10, 0E)
    ("pubrec", h("04 0f 00 05"), PubRec(5)),
    ("pubrel", h("04 10 00 05"), PubRel(5)),
    ("pubcomp", h("04 0e 00 05"), PubComp(5)),
    # §5.4.15 SUBSCRIBE to a topic name at QoS 1; to pre-defined id 5 at QoS 2 (0x41); to short "ab" with DUP (0x82)
    ("subscribe-name", h("0a 12 20 00 07") + b"s/+/t", Subscribe(7, "s/+/t", qos=1)),
    ("subscribe-predefined", h("07 12 41 00 08 00 05"), Subscribe(8, 5, qos=2, topic_id_type=PREDEFINED)),
    ("subscribe-short", h("07 12 82 00 09 61 62"), Subscribe(9, 0x6162, topic_id_type=SHORT, dup=True)),
    # §5.4.16 SUBACK: granted QoS 1, TopicId 42, MsgId 7; and a wildcard filter (TopicId 0)
    ("suback", h("08 13 20 00 2a 00 07 00"), SubAck(42, 7, ACCEPTED, qos=1)),
    ("suback-wildcard", h("08 13 00 00 00 00 08 00"), SubAck(0, 8)),
    # §5.4.17 UNSUBSCRIBE by name and by short name
    ("unsubscribe-name", h("08 14 00 00 0a") + b"a/b", Unsubscribe(10, "a/b")),
    ("unsubscribe-short", h("07 14 02 00 0b 61 62"), Unsubscribe(11, 0x6162, SHORT)),
    # §5.4.18 UNSUBACK
    ("unsuback", h("04 15 00 0a"), UnsubAck(10)),
    # §5.4.19 PINGREQ, plain and from a sleeping client waking up
    ("pingreq", h("02 16"), PingReq()),
    ("pingreq-wake", h("09 16") + b"sensor1", PingReq("sensor1")),
    # §5.4.20 PINGRESP
    ("pingresp", h("02 17"), PingResp()),
    # §5.4.21 DISCONNECT, plain and going to sleep for 3600 s
    ("disconnect", h("02 18"), Disconnect()),
    ("disconnect-sleep", h("04 18 0e 10"), Disconnect(3600)),
    # §5.4.22 WILLTOPICUPD: QoS 2 (0x40), "w/t"; the empty form deletes the will
    ("willtopicupd", h("06 1a 40") + b"w/t", WillTopicUpd("w/t", qos=2)),
    ("willtopicupd-empty", h("02 1a"), WillTopicUpd()),
    # §5.4.23 WILLMSGUPD
    ("willmsgupd", h("05 1c") + b"off", WillMsgUpd(b"off")),
    # §5.4.24 WILLTOPICRESP and §5.4.25 WILLMSGRESP: 3 octets
    ("willtopicresp", h("03 1b 00"), WillTopicResp(ACCEPTED)),
    ("willmsgresp", h("03 1d 03"), WillMsgResp(NOT_SUPPORTED)),
    # §5.5 forwarder encapsulation: Length 5 (Length, 0xFE, Ctrl, 2-octet node id), Ctrl radius 1, node 0x0102,
    # carrying a PINGREQ; and an XBee-style 8-octet node id carrying a SEARCHGW
    ("encapsulated", h("05 fe 01 01 02 02 16"), Encapsulated(1, b"\x01\x02", h("02 16"))),
    (
        "encapsulated-64bit-node",
        h("0b fe 00 00 13 a2 00 40 52 2b aa 03 01 05"),
        Encapsulated(0, h("00 13 a2 00 40 52 2b aa"), h("03 01 05")),
    ),
]


@pytest.mark.parametrize(("datagram", "message"), [(d, m) for _, d, m in GOLDEN], ids=[n for n, _, _ in GOLDEN])
def test_golden_decode(datagram: bytes, message: Message) -> None:
    assert decode(datagram) == message


@pytest.mark.parametrize(("datagram", "message"), [(d, m) for _, d, m in GOLDEN], ids=[n for n, _, _ in GOLDEN])
def test_golden_encode(datagram: bytes, message: Message) -> None:
    assert encode(message) == datagram


def test_golden_covers_every_message_type() -> None:
    assert {type(m) for _, _, m in GOLDEN} == set(typing.get_args(Message))
    assert {m.TYPE for _, _, m in GOLDEN} == set(MsgType)


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        # §5.2.1: the 3-octet Length is allowed for any message, also a short one
        (h("01 00 04 16"), PingReq()),
        (h("01 00 09 0c 20 00 2a 00 05"), Publish(42, 5, b"", qos=1)),
        # §5.3.4: flags a message does not use are ignored (CONNECT uses only Will and CleanSession)
        (h("09 04 f7 01 00 3c") + b"abc", Connect("abc", 60, clean_session=True, will=False)),
        (h("07 14 fe 00 0b 61 62"), Unsubscribe(11, 0x6162, SHORT)),  # UNSUBSCRIBE uses only TopicIdType
        (h("08 13 2f 00 2a 00 07 00"), SubAck(42, 7, qos=1)),  # SUBACK uses only QoS
        # §5.4.7: Flags without a topic is the empty WILLTOPIC (flags ignored)
        (h("03 07 30"), WillTopic()),
        # §5.5: Ctrl bits 7-2 are reserved and ignored
        (h("04 fe fd 07 02 17"), Encapsulated(1, b"\x07", h("02 17"))),
        # §5.3.1: longer ClientIds than 23 characters are accepted
        (bytes((6 + 100, 0x04, 0x04, 0x01, 0, 60)) + b"c" * 100, Connect("c" * 100, 60)),
        # §5.3.8: other ProtocolIds decode, for the gateway to answer with CONNACK "not supported"
        (h("07 04 04 02 00 3c") + b"a", Connect("a", 60, protocol_id=2)),
    ],
)
def test_decode_lenient_forms(datagram: bytes, message: Message) -> None:
    assert decode(datagram) == message


def test_length_form_boundary() -> None:
    """§5.2.1: 1-octet Length up to a 255-octet message; a 256-octet one needs the 3-octet form (258 octets)."""
    at_limit = encode(Publish(1, 0, b"d" * 248))
    assert at_limit[:2] == h("ff 0c") and len(at_limit) == 255
    over = encode(Publish(1, 0, b"d" * 249))
    assert over[:4] == h("01 01 02 0c") and len(over) == 258
    assert decode(over) == Publish(1, 0, b"d" * 249)
    biggest = Publish(1, 0, b"d" * (0xFFFF - 9))
    assert len(encode(biggest)) == 0xFFFF and decode(encode(biggest)) == biggest


# ===============================================================================================================
# Part 2: the mistakes of other gateways (/work/shared/reference/mqtt-sn-1.2-facts.md), each pinned down


def test_connect_with_length_5_is_malformed() -> None:
    """A CONNECT with Length 5 crashed two reference gateways: it is one malformed message here (§5.4.4)."""
    error = assert_malformed(h("05 04 04 01 00"), "CONNECT shorter than 7 octets", "§5.4.4")
    assert error.msg_type == MsgType.CONNECT
    # the same Length 5 at the head of a longer datagram: the Length does not match the datagram
    assert_malformed(h("05 04 04 01 00 3c") + b"abc", "Length 5 in a datagram of 9", "§5.2.1")


def test_three_octet_publish_is_malformed() -> None:
    """A 3-octet PUBLISH from a connected client crashed both reference gateways (§5.4.12)."""
    error = assert_malformed(h("03 0c 00"), "PUBLISH shorter than 7 octets", "§5.4.12")
    assert error.msg_type == MsgType.PUBLISH


def test_three_octet_length_is_read_with_its_own_offset() -> None:
    """One reference gateway read the 3-octet Length with a 1-octet offset: 2 stray octets in the payload."""
    message = decode(LONG_PUBLISH)
    assert isinstance(message, Publish)
    assert (message.topic_id, message.msg_id) == (42, 0)
    assert message.data == LONG_DATA
    # and a long REGISTER, WILLMSG and CONNECT: their variable fields start at octet 4+
    name = "t/" + "x" * 300
    register = bytes((0x01, 0x01, 0x36, 0x0A)) + h("00 00 00 09") + name.encode()
    assert len(register) == 0x0136
    assert decode(register) == Register(0, 9, name)
    assert decode(h("01 00 0a 09") + b"abcdef") == WillMsg(b"abcdef")
    assert decode(h("01 00 0b 04 04 01 00 3c") + b"abc") == Connect("abc", 60)


def test_willtopicresp_and_willmsgresp_are_three_octets() -> None:
    """One reference gateway sent them as 4 octets (§5.4.24, §5.4.25): Length, MsgType, ReturnCode."""
    assert encode(WillTopicResp()) == h("03 1b 00")
    assert encode(WillMsgResp(CONGESTION)) == h("03 1d 01")
    assert_malformed(h("04 1b 00 00"), "WILLTOPICRESP of 4 octets, must be 3", "§5.4.24")
    assert_malformed(h("04 1d 00 00"), "WILLMSGRESP of 4 octets, must be 3", "§5.4.25")


@pytest.mark.parametrize(
    "publish",
    [
        h("08 0c 22 61 62 00 07") + b"x",  # QoS 1, short name "ab"
        h("08 0c 21 00 05 00 07") + b"x",  # QoS 1, pre-defined id 5
        h("08 0c 20 ff ff 00 07") + b"x",  # QoS 1, the reserved id 0xFFFF (answered "invalid topic id")
    ],
)
def test_puback_echoes_the_publish_topic_id(publish: bytes) -> None:
    """§5.4.13: a PUBACK carries the TopicId of the PUBLISH it answers (one gateway sent 0), also on rejection."""
    message = decode(publish)
    assert isinstance(message, Publish)
    answer = encode(PubAck(message.topic_id, message.msg_id, INVALID_TOPIC_ID))
    assert answer == h("07 0d") + publish[3:5] + h("00 07 02")


def test_short_topic_names_are_not_byte_swapped() -> None:
    """§5.3.11: the short name "ab" is the octets 'a' then 'b', in PUBLISH, SUBSCRIBE and the PUBACK echo."""
    message = decode(h("08 0c 02 61 62 00 00") + b"1")
    assert isinstance(message, Publish) and message.topic_id_type == SHORT
    assert short_topic_name(message.topic_id) == "ab"
    assert short_topic_id("ab") == 0x6162
    assert encode(Publish(short_topic_id("ab"), 0, b"1", topic_id_type=SHORT)) == h("08 0c 02 61 62 00 00 31")
    assert encode(PubAck(message.topic_id, 0, INVALID_TOPIC_ID))[2:4] == b"ab"
    assert encode(Subscribe(1, short_topic_id("ab"), topic_id_type=SHORT))[-2:] == b"ab"
    assert short_topic_name(short_topic_id("é")) == "é"  # one two-octet character is a short name too


def test_short_topic_helpers_refuse_what_is_not_two_octets() -> None:
    for name in ("", "a", "abc", "€"):
        with pytest.raises(ValueError):
            short_topic_id(name)
    with pytest.raises(ValueError):
        short_topic_name(0xFFFF)  # not UTF-8: the gateway answers PUBACK "invalid topic id"


# ===============================================================================================================
# Part 3: malformed datagrams, with the reason each must give

RESERVED_TYPES = [0x03, 0x11, 0x19, *range(0x1E, 0xFE), 0xFF]


@pytest.mark.parametrize(("datagram", "fragments"), [
    (b"", ("datagram of 0 octets", "§5.2")),
    (h("02"), ("datagram of 1 octets", "§5.2")),
    (h("01 00 04"), ("3-octet Length", "§5.2.1")),
    (h("00 16"), ("Length 0 in a datagram of 2", "§5.2.1")),
    (h("01 00 05 16"), ("Length 5 in a datagram of 4", "§5.2.1")),
    (h("01 00 03 16"), ("Length 3 in a datagram of 4", "§5.2.1")),
    (h("0b 0c 20 00 2a 00 05 32 31"), ("PUBLISH with Length 11 in a datagram of 9", "§5.2.1")),
    (h("04 0f 00 05 00"), ("PUBREC with Length 4 in a datagram of 5", "§5.2.1")),
    # fixed sizes
    (h("04 00 01 03"), ("ADVERTISE of 4 octets, must be 5", "§5.4.1")),
    (h("02 01"), ("SEARCHGW of 2 octets, must be 3", "§5.4.2")),
    (h("02 02"), ("GWINFO shorter than 3 octets", "§5.4.3")),
    (h("02 05"), ("CONNACK of 2 octets, must be 3", "§5.4.5")),
    (h("03 06 00"), ("WILLTOPICREQ of 3 octets, must be 2", "§5.4.6")),
    (h("03 08 00"), ("WILLMSGREQ of 3 octets, must be 2", "§5.4.8")),
    (h("05 0a 00 00 00"), ("REGISTER shorter than 6 octets", "§5.4.10")),
    (h("06 0b 00 01 00 01"), ("REGACK of 6 octets, must be 7", "§5.4.11")),
    (h("06 0d 00 01 00 01"), ("PUBACK of 6 octets, must be 7", "§5.4.13")),
    (h("08 0d 00 01 00 01 00 00"), ("PUBACK of 8 octets, must be 7", "§5.4.13")),
    (h("03 0f 00"), ("PUBREC of 3 octets, must be 4", "§5.4.14")),
    (h("05 10 00 01 00"), ("PUBREL of 5 octets, must be 4", "§5.4.14")),
    (h("02 0e"), ("PUBCOMP of 2 octets, must be 4", "§5.4.14")),
    (h("04 12 00 00"), ("SUBSCRIBE shorter than 5 octets", "§5.4.15")),
    (h("07 13 00 00 01 00 01"), ("SUBACK of 7 octets, must be 8", "§5.4.16")),
    (h("04 14 00 00"), ("UNSUBSCRIBE shorter than 5 octets", "§5.4.17")),
    (h("03 15 00"), ("UNSUBACK of 3 octets, must be 4", "§5.4.18")),
    (h("03 17 00"), ("PINGRESP of 3 octets, must be 2", "§5.4.20")),
    (h("03 18 00"), ("DISCONNECT of 3 octets", "§5.4.21")),
    (h("05 18 00 00 00"), ("DISCONNECT of 5 octets", "§5.4.21")),
    (h("02 1b"), ("WILLTOPICRESP of 2 octets, must be 3", "§5.4.24")),
    # the 3-octet Length form states sizes with its 4-octet header
    (h("01 00 06 0c 00 00"), ("PUBLISH shorter than 9 octets", "§5.4.12")),
    # reserved TopicIdType 0b11 (§5.3.4) where the field is used
    (h("07 0c 03 00 01 00 00"), ("PUBLISH with the reserved TopicIdType 0b11", "§5.3.4")),
    (h("07 12 03 00 01 00 01"), ("SUBSCRIBE with the reserved TopicIdType 0b11", "§5.3.4")),
    (h("07 14 03 00 01 00 01"), ("UNSUBSCRIBE with the reserved TopicIdType 0b11", "§5.3.4")),
    # a pre-defined id or short name is exactly two octets
    (h("08 12 01 00 01 00 05 00"), ("SUBSCRIBE PREDEFINED topic of 3 octets, must be 2", "§5.4.15")),
    (h("06 12 02 00 01 61"), ("SUBSCRIBE SHORT topic of 1 octets, must be 2", "§5.4.15")),
    (h("05 14 01 00 01"), ("UNSUBSCRIBE PREDEFINED topic of 0 octets, must be 2", "§5.4.17")),
    # reserved ReturnCodes (§5.3.10)
    (h("03 05 04"), ("CONNACK with the reserved ReturnCode 0x04", "§5.3.10")),
    (h("07 0b 00 01 00 01 80"), ("REGACK with the reserved ReturnCode 0x80", "§5.3.10")),
    (h("07 0d 00 01 00 01 ff"), ("PUBACK with the reserved ReturnCode 0xFF", "§5.3.10")),
    (h("08 13 00 00 01 00 01 05"), ("SUBACK with the reserved ReturnCode 0x05", "§5.3.10")),
    (h("03 1b 04"), ("WILLTOPICRESP with the reserved ReturnCode 0x04", "§5.3.10")),
    (h("03 1d 10"), ("WILLMSGRESP with the reserved ReturnCode 0x10", "§5.3.10")),
    # QoS -1 (0b11) outside PUBLISH (§6.8)
    (h("05 07 60 61 2f"), ("WILLTOPIC with QoS -1", "§5.4.7")),
    (h("05 1a 70 61 2f"), ("WILLTOPICUPD with QoS -1", "§5.4.22")),
    (h("07 12 61 00 01 00 05"), ("SUBSCRIBE with QoS -1", "§5.4.15")),
    (h("08 13 60 00 01 00 01 00"), ("SUBACK with QoS -1", "§5.4.16")),
    # strings (§5.3.1, §5.3.12): UTF-8 without U+0000
    (h("07 04 04 01 00 3c ff"), ("CONNECT ClientId is not UTF-8", "§5.3.1")),
    (h("08 04 04 01 00 3c 61 00"), ("CONNECT ClientId contains U+0000", "§5.3.1")),
    (h("07 0a 00 00 00 01 c3"), ("REGISTER TopicName is not UTF-8", "§5.4.10")),
    (h("06 12 00 00 01 fe"), ("SUBSCRIBE TopicName is not UTF-8", "§5.4.15")),
    (h("06 14 00 00 01 00"), ("UNSUBSCRIBE TopicName contains U+0000", "§5.4.17")),
    (h("04 07 00 80"), ("WILLTOPIC WillTopic is not UTF-8", "§5.4.7")),
    (h("03 16 ff"), ("PINGREQ ClientId is not UTF-8", "§5.3.1")),
    # §5.5 forwarder encapsulation
    (h("01 00 07 fe 00 02 16"), ("3-octet Length", "§5.5")),
    (h("02 fe 02 16"), ("encapsulation Length 2", "§5.5")),
    (h("05 fe 01 01 02"), ("leaves no room for a message", "§5.5")),
    (h("05 fe 01 01 02 02"), ("leaves no room for a message", "§5.5")),
    (h("09 fe 00 01 02 02 16"), ("leaves no room for a message", "§5.5")),
])  # fmt: skip
def test_malformed(datagram: bytes, fragments: tuple[str, ...]) -> None:
    assert_malformed(datagram, *fragments)


@pytest.mark.parametrize("msg_type", RESERVED_TYPES, ids=[f"0x{t:02X}" for t in RESERVED_TYPES])
def test_reserved_message_types_are_rejected(msg_type: int) -> None:
    """§5.2.2: 0x03, 0x11, 0x19, 0x1E-0xFD and 0xFF are reserved; in both Length forms."""
    error = assert_malformed(bytes((2, msg_type)), f"reserved MsgType 0x{msg_type:02X}", "§5.2.2")
    assert error.msg_type == msg_type
    assert_malformed(bytes((1, 0, 4, msg_type)), "reserved MsgType")


def test_client_id_length_limits() -> None:
    """§5.3.1: 1-23 characters in the spec; we take up to MAX_CLIENT_ID octets (see the module docstring)."""
    longest = "c" * MAX_CLIENT_ID
    assert decode(encode(Connect(longest, 1))) == Connect(longest, 1)
    too_long = bytes((0x01, 0x01, 0x08, 0x04, 0x04, 0x01, 0x00, 0x01)) + b"c" * 256
    assert_malformed(too_long, "CONNECT ClientId of 256 octets, must be 1-255", "§5.3.1")
    assert_malformed(bytes((0x01, 0x01, 0x04, 0x16)) + b"c" * 256, "PINGREQ ClientId of 256 octets")
    assert_malformed(h("06 04 04 01 00 3c"), "CONNECT shorter than 7 octets")  # an empty ClientId


def test_reserved_topic_ids_decode_for_the_gateway_to_answer() -> None:
    """§5.3.11: 0x0000 and 0xFFFF are reserved, but the codec cannot tell who sent a REGISTER, and a PUBLISH on
    them must be answered with PUBACK "invalid topic id" (§5.4.13), which needs the decoded message."""
    assert decode(h("07 0c 00 ff ff 00 00")) == Publish(0xFFFF, 0, b"")
    assert decode(h("07 0c 00 00 00 00 00")) == Publish(0, 0, b"")
    assert decode(h("07 0a ff ff 00 01 61")) == Register(0xFFFF, 1, "a")


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (Publish(1, 0, b"", qos=3), "QoS 3"),
        (Publish(1, 0, b"", qos=-2), "QoS -2"),
        (Publish(0x10000, 0, b""), "TopicId 65536"),
        (Publish(1, -1, b""), "MsgId -1"),
        (Publish(1, 0, b"", topic_id_type=3), "3"),  # type: ignore[arg-type]
        (Publish(1, 0, b"d" * 0xFFFF), "exceeds"),
        (Subscribe(1, "a", qos=-1), "QoS -1"),
        (Subscribe(1, 5, topic_id_type=NORMAL), "topic name"),
        (Subscribe(1, "ab", topic_id_type=SHORT), "two-octet id"),
        (Unsubscribe(1, "a", PREDEFINED), "two-octet id"),
        (SubAck(1, 1, qos=-1), "QoS -1"),
        (PubAck(1, 1, 4), "4"),  # type: ignore[arg-type]
        (ConnAck(7), "7"),  # type: ignore[arg-type]
        (Connect("", 60), "ClientId of 0 octets"),
        (Connect("c" * 256, 60), "ClientId of 256 octets"),
        (Connect("c", 0x10000), "Duration"),
        (PingReq("c" * 256), "ClientId of 256 octets"),
        (WillTopic("", qos=1), "carries no QoS"),
        (WillTopicUpd("", retain=True), "carries no QoS"),
        (WillTopic("t", qos=-1), "QoS -1"),
        (Advertise(256, 1), "GwId 256"),
        (SearchGw(-1), "Radius -1"),
        (Disconnect(0x10000), "Duration"),
        (Encapsulated(4, b"", h("02 16")), "radius 4"),
        (Encapsulated(0, b"n" * 253, h("02 16")), "253 octets"),
    ],
)
def test_encode_refuses_what_does_not_fit(message: Message, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        encode(message)


# ===============================================================================================================
# Part 4: properties

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
data = st.one_of(st.binary(max_size=24), st.binary(min_size=245, max_size=600))  # both Length forms
# MQTT strings: no U+0000, no surrogates (the utf-8 codec leaves them out)
mqtt_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
topic_names = st.one_of(mqtt_text, st.text(st.sampled_from("ab/+#é"), min_size=250, max_size=300))
client_ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=60)
qos_0_2 = st.sampled_from([0, 1, 2])
qos_all = st.sampled_from([-1, 0, 1, 2])
codes = st.sampled_from(ReturnCode)
kinds = st.sampled_from(TopicIdType)


@st.composite
def _topic_and_kind(draw: st.DrawFn) -> tuple[str | int, TopicIdType]:
    kind = draw(kinds)
    return (draw(topic_names) if kind == NORMAL else draw(u16)), kind


def _subscribe(msg_id: int, topic_kind: tuple[str | int, TopicIdType], qos: int, dup: bool) -> Subscribe:
    return Subscribe(msg_id, topic_kind[0], qos, topic_kind[1], dup)


def _will(cls: type[WillTopic | WillTopicUpd]) -> st.SearchStrategy[WillTopic | WillTopicUpd]:
    # the empty form has no flags (§5.4.7), so QoS and Retain come only with a topic
    nonempty = st.builds(cls, st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1), qos_0_2)
    return st.one_of(st.just(cls()), nonempty, st.builds(cls, st.just("w"), qos_0_2, st.booleans()))


PLAIN: dict[type, st.SearchStrategy[Message]] = {
    Advertise: st.builds(Advertise, u8, u16),
    SearchGw: st.builds(SearchGw, u8),
    GwInfo: st.builds(GwInfo, u8, st.binary(max_size=16)),
    Connect: st.builds(Connect, client_ids, u16, st.booleans(), st.booleans(), u8),
    ConnAck: st.builds(ConnAck, codes),
    WillTopicReq: st.just(WillTopicReq()),
    WillTopic: _will(WillTopic),
    WillMsgReq: st.just(WillMsgReq()),
    WillMsg: st.builds(WillMsg, data),
    Register: st.builds(Register, u16, u16, topic_names),
    RegAck: st.builds(RegAck, u16, u16, codes),
    Publish: st.builds(Publish, u16, u16, data, qos_all, kinds, st.booleans(), st.booleans()),
    PubAck: st.builds(PubAck, u16, u16, codes),
    PubRec: st.builds(PubRec, u16),
    PubRel: st.builds(PubRel, u16),
    PubComp: st.builds(PubComp, u16),
    Subscribe: st.builds(_subscribe, u16, _topic_and_kind(), qos_0_2, st.booleans()),
    SubAck: st.builds(SubAck, u16, u16, codes, qos_0_2),
    Unsubscribe: st.builds(lambda m, tk: Unsubscribe(m, tk[0], tk[1]), u16, _topic_and_kind()),
    UnsubAck: st.builds(UnsubAck, u16),
    PingReq: st.builds(PingReq, st.one_of(st.just(""), client_ids)),
    PingResp: st.just(PingResp()),
    Disconnect: st.builds(Disconnect, st.one_of(st.none(), u16)),
    WillTopicUpd: _will(WillTopicUpd),
    WillMsgUpd: st.builds(WillMsgUpd, data),
    WillTopicResp: st.builds(WillTopicResp, codes),
    WillMsgResp: st.builds(WillMsgResp, codes),
}
plain_messages: st.SearchStrategy[Message] = st.one_of(*PLAIN.values())
encapsulations = st.builds(
    Encapsulated, st.integers(0, 3), st.binary(max_size=252), plain_messages.map(encode)
)  # §5.5: the carried message is a whole MQTT-SN message
STRATEGIES: dict[type, st.SearchStrategy[Message]] = {**PLAIN, Encapsulated: encapsulations}
messages: st.SearchStrategy[Message] = st.one_of(*STRATEGIES.values())
"""Any message the codec can encode; reused by the framing tests."""


def test_strategies_cover_every_message_type() -> None:
    assert set(STRATEGIES) == set(typing.get_args(Message))


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=[c.__name__ for c in STRATEGIES])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_round_trip_every_message_type(cls: type, data: st.DataObject) -> None:
    """decode(encode(m)) == m, and the Length says how long the datagram is in the form §5.2.1 asks for."""
    message = data.draw(STRATEGIES[cls], label=cls.__name__)
    datagram = encode(message)
    assert decode(datagram) == message
    if isinstance(message, Encapsulated):
        assert datagram[0] == 3 + len(message.node_id) and decode(message.inner) is not None
    elif len(datagram) < 256:
        assert datagram[0] == len(datagram)
    else:
        assert datagram[0] == 0x01 and int.from_bytes(datagram[1:3], "big") == len(datagram)


def _decode_or_malformed(datagram: bytes) -> None:
    """Decoding any bytes either gives a message that encodes back to one that decodes equal, or raises
    MalformedMessage (a gateway must survive any datagram)."""
    try:
        message = decode(datagram)
    except MalformedMessage as exc:
        assert exc.reason
        return
    assert decode(encode(message)) == message


@FUZZ_SETTINGS
@given(datagram=st.binary(max_size=64))
def test_arbitrary_bytes(datagram: bytes) -> None:
    _decode_or_malformed(datagram)


@FUZZ_SETTINGS
@given(msg_type=st.sampled_from([*MsgType, 0x03, 0xFF]), body=st.binary(max_size=40), long_form=st.booleans())
def test_arbitrary_bodies_behind_a_valid_header(msg_type: int, body: bytes, long_form: bool) -> None:
    """Random bodies behind a correct Length, so every message's body parser sees garbage."""
    if long_form:
        datagram = bytes((0x01, *(len(body) + 4).to_bytes(2, "big"), msg_type)) + body
    else:
        datagram = bytes((len(body) + 2, msg_type)) + body
    _decode_or_malformed(datagram)


@FUZZ_SETTINGS
@given(message=messages, data=st.data())
def test_mutated_messages(message: Message, data: st.DataObject) -> None:
    """Valid messages with one octet changed, inserted or removed, or cut short."""
    datagram = bytearray(encode(message))
    how = data.draw(st.sampled_from(["change", "insert", "delete", "truncate"]))
    index = data.draw(st.integers(0, len(datagram) - 1))
    if how == "change":
        datagram[index] = data.draw(u8)
    elif how == "insert":
        datagram.insert(index, data.draw(u8))
    elif how == "delete":
        del datagram[index]
    else:
        del datagram[index:]
    _decode_or_malformed(bytes(datagram))
