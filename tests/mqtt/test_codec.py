"""Tests of the sans-I/O MQTT codec (`gateway.mqtt.codec`).

Section numbers: "§x.y" is MQTT 5.0 (OASIS Standard, 2019); "3.1.1 §x.y" is MQTT 3.1.1 (OASIS Standard, 2014).
Normative statements are quoted by their identifier, e.g. [MQTT-3.1.2-3].

Part 1 holds property tests (round trips, arbitrary stream splits, fuzzing of the Reader); part 2 exhaustive
hand-written edge cases, each asserting the exact packet or the exact reason code of the MalformedPacket.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt.codec import (
    MAX_REMAINING_LENGTH,
    MQTT_5,
    MQTT_31,
    MQTT_311,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Prop,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Reader,
    Reason,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
    Will,
    decode_utf8,
    encode,
    encode_properties,
    encode_varint,
)
from tests.mqtt import strategies as ms

MALFORMED = Reason.MALFORMED_PACKET  # 0x81
PROTOCOL_ERROR = Reason.PROTOCOL_ERROR  # 0x82

PROPERTY_SETTINGS = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------------------------
# Helpers, written independently of the codec's own encoder


def vbi(value: int) -> bytes:
    """Variable Byte Integer (§1.5.5), straight from the spec's pseudo code."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + vbi(len(body)) + body


def s(text: str | bytes) -> bytes:
    """A length-prefixed string / binary field (§1.5.4, §1.5.6)."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(raw)) + raw


def u16(value: int) -> bytes:
    return struct.pack(">H", value)


def props(*items: bytes) -> bytes:
    """A v5 property block: Property Length then the given encoded properties (§2.2.2.1)."""
    body = b"".join(items)
    return vbi(len(body)) + body


def decode_one(data: bytes, version: int | None = None) -> Packet:
    reader = Reader(version=version)
    packets = reader.feed(data)
    assert len(packets) == 1, packets
    assert reader.buffered == 0
    return packets[0]


def assert_malformed(data: bytes, reason: int, version: int | None = None, reader: Reader | None = None) -> None:
    reader = reader if reader is not None else Reader(version=version)
    with pytest.raises(MalformedPacket) as info:
        reader.feed(data)
    assert info.value.reason == reason, f"{info.value} has reason 0x{info.value.reason:02X}, not 0x{reason:02X}"


def connect_bytes(
    *,
    name: bytes = b"MQTT",
    level: int = MQTT_311,
    flags: int = 0x02,
    keep_alive: int = 60,
    properties: bytes | None = None,
    payload: bytes = b"\x00\x03abc",
) -> bytes:
    """A CONNECT (§3.1), field by field; v5 gets an empty property block unless told otherwise."""
    if properties is None:
        properties = b"\x00" if level == MQTT_5 else b""
    return frame(0x10, s(name) + bytes([level, flags]) + u16(keep_alive) + properties + payload)


def reader_after_connect(level: int) -> Reader:
    reader = Reader()
    name = b"MQIsdp" if level == MQTT_31 else b"MQTT"
    [connect] = reader.feed(connect_bytes(name=name, level=level))
    assert isinstance(connect, Connect)
    assert reader.version == level
    return reader


def round_trip(packet: Packet, version: int) -> Packet:
    """encode for `version`, then decode with a Reader that knows the version the way a peer's would."""
    data = encode(packet, version)
    reader = Reader() if isinstance(packet, Connect) else Reader(version=version)
    decoded = reader.feed(data)
    assert reader.buffered == 0
    assert len(decoded) == 1
    return decoded[0]


# ===============================================================================================================
# Part 1: properties


PACKET_STRATEGIES: dict[str, Callable[[int], st.SearchStrategy[Any]]] = {
    "connect": ms.connects,
    "connack": ms.connacks,
    "publish": ms.publishes,
    "puback_pubrec_pubrel_pubcomp": ms.publish_acks,
    "subscribe": ms.subscribes,
    "suback": ms.subacks,
    "unsubscribe": ms.unsubscribes,
    "unsuback": ms.unsubacks,
    "pingreq_pingresp": lambda v: st.sampled_from([PingReq(), PingResp()]),
    "disconnect": ms.disconnects,
}


@pytest.mark.parametrize(
    ("kind", "version"),
    [(kind, version) for kind in sorted(PACKET_STRATEGIES) for version in (MQTT_311, MQTT_5)] + [("connect", MQTT_31)],
)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_round_trip_every_packet_type(kind: str, version: int, data: st.DataObject) -> None:
    """decode(encode(p)) == p for each packet type in 3.1.1 and 5.0 (v5 with the properties of §2.2.2.2), and for
    the CONNECT of 3.1 (which differs from 3.1.1 only there: 'MQIsdp', level 3)."""
    packet = data.draw(PACKET_STRATEGIES[kind](version), label=kind)
    assert round_trip(packet, version) == packet


@PROPERTY_SETTINGS
@given(packet=ms.auths())
def test_round_trip_auth_v5(packet: Auth) -> None:
    """AUTH exists only in MQTT 5 (§3.15)."""
    assert round_trip(packet, MQTT_5) == packet


def parse_fixed_header(raw: bytes) -> tuple[int, int]:
    """(Remaining Length, fixed header size) of an encoded packet."""
    value, index = 0, 1
    while True:
        byte = raw[index]
        value |= (byte & 0x7F) << 7 * (index - 1)
        index += 1
        if not byte & 0x80:
            return value, index


@pytest.mark.parametrize("version", [MQTT_31, MQTT_311, MQTT_5])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_encoding_is_canonical(version: int, data: st.DataObject) -> None:
    """Encoding is deterministic, the Remaining Length counts exactly the bytes after it (§2.1.4) and uses the
    minimum number of bytes (§1.5.5 [MQTT-1.5.5-1])."""
    packet = data.draw(ms.packets(version))
    encoded = encode(packet, version)
    assert encode(packet, version) == encoded
    length, header_size = parse_fixed_header(encoded)
    assert length == len(encoded) - header_size
    assert encoded[1:header_size] == vbi(length)


@pytest.mark.parametrize("version", [MQTT_31, MQTT_311, MQTT_5])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_stream_split_anywhere_yields_the_same_packets(version: int, data: st.DataObject) -> None:
    """A byte stream of many packets fed in arbitrary chunks decodes to the same packets, in order; a server
    Reader learns the version from the CONNECT that leads the stream (§3.1.2.2)."""
    stream = data.draw(ms.streams(version))
    raw = b"".join(encode(packet, version) for packet in stream)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raw)), max_size=12), label="cuts"))
    reader = Reader()
    decoded: list[Packet] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        decoded += reader.feed(raw[start:cut])
        start = cut
    assert decoded == stream
    assert reader.buffered == 0
    assert reader.version == version


@pytest.mark.parametrize("version", [MQTT_31, MQTT_311, MQTT_5])
@settings(deadline=None, max_examples=20)
@given(data=st.data())
def test_stream_one_byte_at_a_time(version: int, data: st.DataObject) -> None:
    """Fed one byte at a time, every packet comes out exactly when its last byte arrives, and until then its
    bytes stay buffered (`Reader.buffered`)."""
    stream = data.draw(ms.streams(version, max_size=4))
    encoded = [encode(packet, version) for packet in stream]
    reader = Reader()
    for packet, raw in zip(stream, encoded, strict=True):
        for index in range(len(raw) - 1):
            assert reader.feed(raw[index : index + 1]) == []
            assert reader.buffered == index + 1
        assert reader.feed(raw[-1:]) == [packet]
        assert reader.buffered == 0


# --- Fuzzing: arbitrary and mutated bytes never raise anything but MalformedPacket ------------------------------

# How the Reader is set up before the fuzzed bytes arrive, and the version it then speaks (None: not yet known).
READER_SETUPS: dict[str, int | None] = {
    "fresh": None,
    "v3": MQTT_31,
    "v4": MQTT_311,
    "v5": MQTT_5,
    "after CONNECT 3.1": MQTT_31,
    "after CONNECT 3.1.1": MQTT_311,
    "after CONNECT 5": MQTT_5,
    "v5, at most 64 bytes a packet": MQTT_5,
}


def make_reader(setup: str) -> Reader:
    version = READER_SETUPS[setup]
    if setup.startswith("after CONNECT") and version is not None:
        return reader_after_connect(version)
    if setup.endswith("64 bytes a packet"):
        return Reader(max_packet_size=64, version=version)
    return Reader(version=version)


def assert_reencodes(packet: Packet, version: int | None) -> None:
    """Whatever the Reader accepts, encode gives back and the Reader accepts again as the same packet."""
    v = MQTT_311 if version is None else version
    data = encode(packet, v)
    reader = Reader() if isinstance(packet, Connect) else Reader(version=version)
    [again] = reader.feed(data)
    if isinstance(packet, ConnAck) and v != MQTT_5:
        # Reserved 3.1.1 return codes decode to 0x80, which encodes back as return code 3 (3.1.1 §3.2.2.3).
        assert encode(again, v) == data
    else:
        assert again == packet


def feed_and_check(reader: Reader, chunks: list[bytes]) -> list[Packet]:
    """Feed every chunk; only MalformedPacket may escape. Every packet decoded must survive a re-encoding in the
    version the Reader was in when it decoded it."""
    version = reader.version
    decoded: list[Packet] = []
    try:
        for chunk in chunks:
            decoded += reader.feed(chunk)
    except MalformedPacket as exc:
        assert isinstance(exc.reason, int)
        assert 0x80 <= exc.reason <= 0xA2
        if isinstance(exc, UnsupportedProtocol):
            assert exc.reason == Reason.UNSUPPORTED_PROTOCOL_VERSION
            assert 0 <= exc.level <= 255
        decoded += exc.packets  # the good packets of the failing chunk, before the bad one
    for packet in decoded:
        if isinstance(packet, Connect):
            version = packet.protocol_level
        assert_reencodes(packet, version)
    return decoded


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(deadline=None, max_examples=2000, derandomize=True)
@given(setup=st.sampled_from(sorted(READER_SETUPS)), data=st.binary(max_size=96), cut=st.integers(0, 96))
def test_fuzz_arbitrary_bytes_only_raise_malformed(setup: str, data: bytes, cut: int) -> None:
    """Random bytes, fed in two chunks, to a fresh Reader, one told its version, and one after a CONNECT."""
    feed_and_check(make_reader(setup), [data[:cut], data[cut:]])


_BYTE_VALUES = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF]) | st.integers(0, 255)
# (operation, position, byte value, inserted bytes); positions are taken modulo the data's length. The strategies
# are built once: building them per draw costs more than the Reader's work.
MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
        st.integers(0, 0xFFFF),
        _BYTE_VALUES,
        st.binary(min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=4,
)
CUTS = st.lists(st.integers(0, 0xFFFF), max_size=3)


def mutate(draw: st.DrawFn, data: bytearray) -> list[bytes]:
    """Flip, overwrite, insert and delete bytes of `data`, or cut it short; then split it into chunks."""
    for op, position, value, inserted in draw(MUTATIONS):
        index = position % len(data) if data else 0
        if op == "flip" and data:
            data[index] ^= 1 << (value & 7)
        elif op == "set" and data:
            data[index] = value
        elif op == "insert":
            data[index:index] = inserted
        elif op == "delete" and data:
            del data[index : index + 1 + value % 3]
        elif op == "truncate":
            del data[index:]
    return split(bytes(data), [cut % (len(data) + 1) for cut in draw(CUTS)])


_LEVELS = st.sampled_from([MQTT_31, MQTT_311, MQTT_5])
_SETUPS = st.sampled_from(sorted(READER_SETUPS))


def setup_level(draw: st.DrawFn, setup: str) -> int:
    """The version to encode for: the Reader's, or for a fresh Reader the level of the CONNECT to lead with."""
    return READER_SETUPS[setup] or draw(_LEVELS)


SAMPLES = {version: ms.sample_packets(version) for version in (MQTT_31, MQTT_311, MQTT_5)}


def run_mutation_program(setup: str, program: bytes) -> list[bytes]:
    """Interpret `program` (bytes Hypothesis draws and shrinks) as: which packets of the fixed corpus (every type,
    every field and property) to encode, which one of them to damage, which of its bytes to flip / overwrite /
    insert / delete (half the time within its first 12 bytes, where the headers are), where to cut it short, and
    where to split the stream into chunks. One flat draw keeps each example cheap, so the fuzzer affords
    thousands."""
    stream = iter(program)

    def byte() -> int:
        return next(stream, 0)

    level = READER_SETUPS[setup] or (MQTT_31, MQTT_311, MQTT_5)[byte() % 3]
    corpus = SAMPLES[level]
    indices = [byte() % len(corpus) for _ in range(1 + byte() % 3)]
    if setup == "fresh" and byte() & 1:
        indices.insert(0, 0)  # lead with the CONNECT so that the Reader learns the version
    encoded = [encode(corpus[index], level) for index in indices]
    target = byte() % len(encoded)
    data = bytearray(encoded[target])
    for _ in range(1 + byte() % 3):
        op, position, value = byte() % 5, byte() << 8 | byte(), byte()
        index = position % (min(len(data), 12) if value & 0x80 else len(data)) if data else 0
        if op == 0 and data:
            data[index] ^= 1 << (value & 7)
        elif op == 1 and data:
            data[index] = byte()
        elif op == 2:
            data[index:index] = bytes([byte()])
        elif op == 3 and data:
            del data[index : index + 1 + value % 3]
        elif op == 4:
            del data[index + value % 8 :]
    encoded[target] = bytes(data)
    whole = b"".join(encoded)
    return split(whole, [(byte() << 8 | byte()) % (len(whole) + 1) for _ in range(byte() % 4)])


@settings(deadline=None, max_examples=2000, derandomize=True)
@given(setup=_SETUPS, program=st.binary(min_size=24, max_size=32))
def test_fuzz_mutated_sample_encodings_only_raise_malformed(setup: str, program: bytes) -> None:
    feed_and_check(make_reader(setup), run_mutation_program(setup, program))


def single_mutations(raw: bytes) -> list[bytes]:
    """Every one-step damage of `raw`: each bit of each byte flipped, each byte set to 0x00 / 0x7F / 0x80 / 0xFF,
    deleted, or preceded by 0x00 / 0xFF, and every truncation."""
    out = []
    for index in range(len(raw)):
        head, byte, tail = raw[:index], raw[index], raw[index + 1 :]
        out += [head + bytes([byte ^ 1 << bit]) + tail for bit in range(8)]
        out += [head + bytes([value]) + tail for value in (0x00, 0x7F, 0x80, 0xFF) if value != byte]
        out += [head + tail, head + b"\x00" + raw[index:], head + b"\xff" + raw[index:], head]
    return out


@pytest.mark.parametrize("version", [MQTT_31, MQTT_311, MQTT_5])
def test_fuzz_every_single_byte_mutation_of_the_samples(version: int) -> None:
    """Deterministic and exhaustive: every one-step damage of every sample packet (all types, fields and
    properties) decodes or raises MalformedPacket, and whatever decodes re-encodes to the same packet."""
    outcomes: set[str] = set()
    for packet in SAMPLES[version]:
        is_connect = isinstance(packet, Connect)
        for damaged in single_mutations(encode(packet, version)):
            reader = Reader(version=None if is_connect else version)
            try:
                decoded = reader.feed(damaged)
            except MalformedPacket as exc:
                outcomes.add(f"0x{exc.reason:02X}")
                continue
            for item in decoded:
                assert_reencodes(item, item.protocol_level if isinstance(item, Connect) else reader.version)
                outcomes.add(type(item).__name__)
    # The damage reaches the checks behind several distinct reason codes, and some damage is harmless.
    assert {"0x81", "0x82", "0x84"} <= outcomes
    assert "Publish" in outcomes


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    """Like `mutated_samples`, from packets drawn by the strategies: more varied, slower to draw."""
    setup = draw(_SETUPS)
    level = setup_level(draw, setup)
    if setup == "fresh":
        stream = draw(ms.streams(level, max_size=2))
    else:
        stream = draw(st.lists(ms.non_connect_packets(level), min_size=1, max_size=2))
    data = bytearray(b"".join(encode(packet, level) for packet in stream))
    return setup, mutate(draw, data)


@settings(deadline=None, max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated_streams())
def test_fuzz_mutated_generated_encodings_only_raise_malformed(case: tuple[str, list[bytes]]) -> None:
    setup, chunks = case
    feed_and_check(make_reader(setup), chunks)


# ===============================================================================================================
# Part 2: hand-written edge cases


# --- Known encodings (byte-exact, captured from paho-mqtt 2.2, mosquitto_pub/sub 2.0 and a mosquitto broker) ----

PAHO_CONNECT_311 = bytes.fromhex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 61 62 63")
PAHO_CONNECT_31 = bytes.fromhex("10 11 00 06 4d 51 49 73 64 70 03 02 00 3c 00 03 61 62 63")
PAHO_CONNECT_5 = bytes.fromhex("10 15 00 04 4d 51 54 54 05 02 00 3c 05 11 00 00 00 0a 00 03 61 62 63")
MOSQUITTO_PUBLISH_5 = bytes.fromhex(
    "32 1e 00 03 61 2f 62 00 01 14 26 00 01 6b 00 01 76 03 00 0a 74 65 78 74 2f 70 6c 61 69 6e 68 69"
)


@pytest.mark.parametrize(
    ("packet", "version", "raw"),
    [
        (PingReq(), MQTT_311, b"\xc0\x00"),  # 3.1.1 §3.12.1, §3.12 of v5
        (PingResp(), MQTT_5, b"\xd0\x00"),  # §3.13.1
        (Disconnect(), MQTT_311, b"\xe0\x00"),  # what mosquitto_pub sends on exit
        (Disconnect(), MQTT_5, b"\xe0\x00"),  # §3.14.2.1: reason and properties omitted when Success and none
        (Connect("abc", MQTT_311, keep_alive=60), MQTT_311, PAHO_CONNECT_311),
        (Connect("abc", MQTT_31, keep_alive=60), MQTT_31, PAHO_CONNECT_31),
        (Connect("abc", MQTT_5, keep_alive=60, properties={Prop.SESSION_EXPIRY_INTERVAL: 10}), 5, PAHO_CONNECT_5),
        # mosquitto_pub -V mqttv311 -q 1 -t a/b -m hi: CONNECT then PUBLISH QoS 1, packet id 1.
        (Publish("a/b", b"hi", 1, packet_id=1), MQTT_311, bytes.fromhex("32 09 00 03 61 2f 62 00 01 68 69")),
        (
            Publish("a/b", b"hi", 1, packet_id=1, properties={Prop.USER_PROPERTY: [("k", "v")], 3: "text/plain"}),
            MQTT_5,
            MOSQUITTO_PUBLISH_5,
        ),
        # mosquitto_sub -V mqttv311 -q 1 -t 'a/#'.
        (Subscribe(1, [Subscription("a/#", 1)]), MQTT_311, bytes.fromhex("82 08 00 01 00 03 61 2f 23 01")),
        # The mosquitto broker's answers to a 3.1.1 client ...
        (ConnAck(), MQTT_311, b"\x20\x02\x00\x00"),
        (SubAck(1, [1, 2]), MQTT_311, bytes.fromhex("90 04 00 01 01 02")),
        (PubAck(7), MQTT_311, bytes.fromhex("40 02 00 07")),
        (UnsubAck(2), MQTT_311, bytes.fromhex("b0 02 00 02")),
        # ... and to a v5 client (Topic Alias Maximum 10, Receive Maximum 20).
        (
            ConnAck(properties={Prop.TOPIC_ALIAS_MAXIMUM: 10, Prop.RECEIVE_MAXIMUM: 20}),
            MQTT_5,
            bytes.fromhex("20 09 00 00 06 22 00 0a 21 00 14"),
        ),
        (SubAck(1, [1, 2]), MQTT_5, bytes.fromhex("90 05 00 01 00 01 02")),
        (Publish("a/b", b"hi", 1, packet_id=1), MQTT_5, bytes.fromhex("32 0a 00 03 61 2f 62 00 01 00 68 69")),
        (PubAck(7), MQTT_5, bytes.fromhex("40 02 00 07")),
        (UnsubAck(2, [0]), MQTT_5, bytes.fromhex("b0 04 00 02 00 00")),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, bytes | int) else None,
)
def test_known_encodings(packet: Packet, version: int, raw: bytes) -> None:
    assert encode(packet, version) == raw
    reader = Reader() if isinstance(packet, Connect) else Reader(version=version)
    assert reader.feed(raw) == [packet]


def test_spec_connect_variable_header_example_v5() -> None:
    """§3.1.2.12 example: 'MQTT', level 5, flags 0xC2 (user name, password, clean start), keep alive 10,
    Session Expiry Interval 10."""
    variable_header = bytes.fromhex("00 04 4d 51 54 54 05 c2 00 0a 05 11 00 00 00 0a")
    packet = decode_one(frame(0x10, variable_header + s("cid") + s("user") + s(b"pw")))
    assert packet == Connect(
        "cid", MQTT_5, True, 10, "user", b"pw", None, properties={Prop.SESSION_EXPIRY_INTERVAL: 10}
    )


def test_spec_connect_variable_header_example_311() -> None:
    """3.1.1 §3.1.2.10 example: 'MQTT', level 4, flags 0xCE (user name, password, will QoS 1, will flag, clean
    session), keep alive 10."""
    variable_header = bytes.fromhex("00 04 4d 51 54 54 04 ce 00 0a")
    payload = s("cid") + s("will/t") + s(b"bye") + s("user") + s(b"pw")
    packet = decode_one(frame(0x10, variable_header + payload))
    assert packet == Connect("cid", MQTT_311, True, 10, "user", b"pw", Will("will/t", b"bye", 1, False))


# --- Remaining Length / Variable Byte Integer (§1.5.5, §2.1.4; 3.1.1 §2.2.3) -----------------------------------

VBI_TABLE = [  # §1.5.5 Table 1-1, 3.1.1 Table 2.4
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "raw"), VBI_TABLE)
def test_encode_varint_spec_table(value: int, raw: bytes) -> None:
    assert encode_varint(value) == raw


@pytest.mark.parametrize("value", [-1, MAX_REMAINING_LENGTH + 1])
def test_encode_varint_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="variable byte integer"):
        encode_varint(value)


@pytest.mark.parametrize(("length", "raw"), [row for row in VBI_TABLE if 0 < row[0] <= 2_097_152])
def test_remaining_length_boundaries_round_trip(length: int, raw: bytes) -> None:
    """A PUBLISH whose Remaining Length sits on each 1..4-byte boundary (§2.1.4)."""
    packet = Publish("t", b"p" * (length - 3))  # topic field 3 bytes, QoS 0: no packet identifier
    encoded = encode(packet, MQTT_311)
    assert encoded[: 1 + len(raw)] == b"\x30" + raw
    assert len(encoded) == 1 + len(raw) + length
    reader = Reader(version=MQTT_311)
    assert reader.feed(encoded[:-1]) == []
    assert reader.buffered == len(encoded) - 1
    assert reader.feed(encoded[-1:]) == [packet]
    assert reader.buffered == 0


def test_remaining_length_zero() -> None:
    assert decode_one(b"\xc0\x00") == PingReq()
    assert decode_one(b"\xe0\x00", MQTT_5) == Disconnect()


@pytest.mark.parametrize(("length", "raw"), VBI_TABLE[1:])
def test_remaining_length_header_alone_is_buffered(length: int, raw: bytes) -> None:
    """The fixed header of an incomplete packet is kept until the rest arrives, up to 268,435,455 (§2.1.4)."""
    reader = Reader(version=MQTT_311)
    assert reader.feed(b"\x30" + raw) == []
    assert reader.buffered == 1 + len(raw)


@pytest.mark.parametrize(
    "header",
    [b"\x30\xff\xff\xff\xff\x7f", b"\x30\x80\x80\x80\x80\x01", b"\x30\x80\x80\x80\x80", b"\xc0\xff\xff\xff\xff"],
)
def test_remaining_length_of_five_bytes_is_malformed(header: bytes) -> None:
    """§1.5.5: at most four bytes; a fifth continuation is a Malformed Packet, detected from the header alone."""
    assert_malformed(header, MALFORMED, MQTT_311)


@pytest.mark.parametrize(("length", "raw"), VBI_TABLE[1:])
def test_max_packet_size_is_refused_from_the_header_alone(length: int, raw: bytes) -> None:
    """§3.1.2.11.4 / §4.13: a packet over the Maximum Packet Size is refused with 0x95 before its body arrives;
    the size counts the whole packet, fixed header included."""
    total = 1 + len(raw) + length
    assert_malformed(b"\x30" + raw, Reason.PACKET_TOO_LARGE, reader=Reader(total - 1, MQTT_311))
    reader = Reader(total, MQTT_311)
    assert reader.feed(b"\x30" + raw) == []  # exactly the maximum is fine
    assert reader.buffered == 1 + len(raw)


def test_max_packet_size_refusal_of_a_huge_packet() -> None:
    """Feeding only the header of a 256 MB PUBLISH to a Reader with a 1 MiB limit is refused at once (0x95)."""
    reader = Reader(max_packet_size=1 << 20, version=MQTT_5)
    with pytest.raises(MalformedPacket) as info:
        reader.feed(b"\x30\xff\xff\xff\x7f")
    assert info.value.reason == 0x95  # Reason.PACKET_TOO_LARGE


def test_max_packet_size_exact_fit() -> None:
    assert Reader(max_packet_size=2).feed(b"\xc0\x00") == [PingReq()]
    assert_malformed(b"\xc0\x00", Reason.PACKET_TOO_LARGE, reader=Reader(max_packet_size=1))


# --- Fixed header: packet type and flags (§2.1.2, §2.1.3; 3.1.1 §2.2.1, §2.2.2) --------------------------------

VALID_BODIES = {  # one valid body per packet type other than PUBLISH, per version
    MQTT_311: {
        1: connect_bytes()[2:],
        2: b"\x00\x00",
        4: b"\x00\x01",
        5: b"\x00\x01",
        6: b"\x00\x01",
        7: b"\x00\x01",
        8: b"\x00\x01" + s("a") + b"\x00",
        9: b"\x00\x01\x00",
        10: b"\x00\x01" + s("a"),
        11: b"\x00\x01",
        12: b"",
        13: b"",
        14: b"",
    },
    MQTT_5: {
        1: connect_bytes(level=MQTT_5)[2:],
        2: b"\x00\x00\x00",
        4: b"\x00\x01",
        5: b"\x00\x01",
        6: b"\x00\x01",
        7: b"\x00\x01",
        8: b"\x00\x01\x00" + s("a") + b"\x00",
        9: b"\x00\x01\x00\x00",
        10: b"\x00\x01\x00" + s("a"),
        11: b"\x00\x01\x00\x00",
        12: b"",
        13: b"",
        14: b"",
        15: b"",
    },
}
FIXED_FLAGS = {PacketType.PUBREL: 0b0010, PacketType.SUBSCRIBE: 0b0010, PacketType.UNSUBSCRIBE: 0b0010}


@pytest.mark.parametrize(
    ("version", "kind"), [(version, kind) for version, bodies in VALID_BODIES.items() for kind in bodies]
)
def test_reserved_fixed_header_flags(version: int, kind: int) -> None:
    """§2.1.3 [MQTT-2.1.3-1] / 3.1.1 §2.2.2 [MQTT-2.2.2-1, -2]: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry flags
    0b0010, every other type but PUBLISH 0b0000; any other value is a Malformed Packet."""
    expected = FIXED_FLAGS.get(PacketType(kind), 0)
    body = VALID_BODIES[version][kind]
    reader_version = None if kind == PacketType.CONNECT else version
    [packet] = Reader(version=reader_version).feed(frame(kind << 4 | expected, body))
    assert type(packet).__name__.upper() == PacketType(kind).name.replace("_", "")
    for flags in range(16):
        if flags != expected:
            assert_malformed(frame(kind << 4 | flags, body), MALFORMED, reader_version)


@pytest.mark.parametrize("version", [None, MQTT_311, MQTT_5])
@pytest.mark.parametrize("first", [0x00, 0x01, 0x02, 0x0F])
def test_reserved_packet_type_zero(version: int | None, first: int) -> None:
    """§2.1.2 / 3.1.1 §2.2.1: packet type 0 is reserved (forbidden)."""
    assert_malformed(bytes([first, 0]), MALFORMED, version)
    assert_malformed(bytes([first, 2, 0, 1]), MALFORMED, version)


@pytest.mark.parametrize("version", [None, MQTT_31, MQTT_311])
def test_auth_outside_mqtt5_is_refused(version: int | None) -> None:
    """3.1.1 §2.2.1: type 15 is 'Reserved, forbidden'; AUTH exists only in MQTT 5 (§3.15)."""
    assert_malformed(b"\xf0\x00", PROTOCOL_ERROR, version)
    assert_malformed(b"\xf0\x02\x18\x00", MALFORMED, version)


def test_auth_v5() -> None:
    """§3.15.2.1: Remaining Length 0 means Success without properties."""
    assert decode_one(b"\xf0\x00", MQTT_5) == Auth()
    body = b"\x18" + props(b"\x15" + s("SCRAM"), b"\x16" + s(b"\x01\x02"))
    assert decode_one(frame(0xF0, body), MQTT_5) == Auth(0x18, {0x15: "SCRAM", 0x16: b"\x01\x02"})


# --- PUBLISH (§3.3; 3.1.1 §3.3) --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("flags", range(16))
def test_publish_every_fixed_header_flag(version: int, flags: int) -> None:
    """§3.3.1: DUP, QoS and RETAIN. QoS 3 is Malformed [MQTT-3.3.1-4]; DUP with QoS 0 is refused
    [MQTT-3.3.1-2] (the codec reports it as a Protocol Error)."""
    qos = (flags >> 1) & 3
    body = s("a/b") + (b"\x12\x34" if qos else b"") + (b"\x00" if version == MQTT_5 else b"") + b"payload"
    data = frame(0x30 | flags, body)
    if qos == 3:
        assert_malformed(data, MALFORMED, version)
    elif flags & 0x08 and not qos:
        assert_malformed(data, PROTOCOL_ERROR, version)
    else:
        packet = decode_one(data, version)
        assert packet == Publish("a/b", b"payload", qos, bool(flags & 1), bool(flags & 8), 0x1234 if qos else None)


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("qos", [1, 2])
def test_publish_packet_id_zero(version: int, qos: int) -> None:
    """§2.2.1 [MQTT-2.2.1-3] / 3.1.1 §2.3.1 [MQTT-2.3.1-1]: a QoS > 0 PUBLISH has a non-zero packet id."""
    body = s("t") + b"\x00\x00" + (b"\x00" if version == MQTT_5 else b"")
    assert_malformed(frame(0x30 | qos << 1, body), PROTOCOL_ERROR, version)


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("topic", ["+", "#", "a/+", "a/#", "a/+/b", "sport+", "a#"])
def test_publish_topic_with_wildcard(version: int, topic: str) -> None:
    """§3.3.2.1 [MQTT-3.3.2-2] / 3.1.1 §3.3.2.1: the Topic Name MUST NOT contain wildcards -> 0x90."""
    body = s(topic) + (b"\x00" if version == MQTT_5 else b"")
    assert_malformed(frame(0x30, body), Reason.TOPIC_NAME_INVALID, version)


@pytest.mark.parametrize("version", [None, MQTT_31, MQTT_311])
def test_publish_empty_topic_311(version: int | None) -> None:
    """3.1.1 §4.7.3 [MQTT-4.7.3-1]: topic names are at least one character long."""
    assert_malformed(frame(0x30, s("") + b"x"), Reason.TOPIC_NAME_INVALID, version)


def test_publish_v5_empty_topic_with_topic_alias() -> None:
    """§3.3.2.3.4: a zero-length Topic Name together with a Topic Alias uses the alias's topic."""
    packet = decode_one(frame(0x30, s("") + props(b"\x23\x00\x07") + b"data"), MQTT_5)
    assert packet == Publish("", b"data", properties={Prop.TOPIC_ALIAS: 7})


def test_publish_v5_topic_with_topic_alias() -> None:
    packet = decode_one(frame(0x32, s("t/1") + b"\x00\x05" + props(b"\x23\xff\xff")), MQTT_5)
    assert packet == Publish("t/1", b"", 1, packet_id=5, properties={Prop.TOPIC_ALIAS: 0xFFFF})


def test_publish_v5_empty_topic_without_alias() -> None:
    """§3.3.2.1 [MQTT-3.3.2-1]: without a Topic Alias an empty Topic Name is a Protocol Error."""
    assert_malformed(frame(0x30, s("") + b"\x00data"), PROTOCOL_ERROR, MQTT_5)
    assert_malformed(frame(0x30, s("") + props(b"\x01\x01")), PROTOCOL_ERROR, MQTT_5)


def test_publish_v5_topic_alias_zero() -> None:
    """§3.3.2.3.4 [MQTT-3.3.2-8]: a Topic Alias of 0 is not permitted -> 0x94 Topic Alias invalid."""
    assert_malformed(frame(0x30, s("t") + props(b"\x23\x00\x00")), Reason.TOPIC_ALIAS_INVALID, MQTT_5)
    assert_malformed(frame(0x30, s("") + props(b"\x23\x00\x00")), Reason.TOPIC_ALIAS_INVALID, MQTT_5)


def test_publish_v5_properties_and_payload() -> None:
    """§3.3.2.3: properties in order of appearance, repeated Subscription Identifiers kept as a list
    (§3.3.2.3.8), the payload is everything after them (§3.3.3)."""
    body = s("a/b") + b"\x00\x09"
    body += props(
        b"\x01\x01",
        b"\x02\x00\x00\x0e\x10",
        b"\x03" + s("text/plain"),
        b"\x08" + s("reply/to"),
        b"\x09" + s(b"\x00\xff"),
        b"\x0b\x80\x01",
        b"\x0b\x01",
        b"\x26" + s("k") + s("v1"),
        b"\x26" + s("k") + s("v2"),
    )
    body += "héllo".encode()
    packet = decode_one(frame(0x35, body), MQTT_5)
    assert packet == Publish(
        "a/b",
        "héllo".encode(),
        qos=2,
        retain=True,
        packet_id=9,
        properties={
            Prop.PAYLOAD_FORMAT_INDICATOR: 1,
            Prop.MESSAGE_EXPIRY_INTERVAL: 3600,
            Prop.CONTENT_TYPE: "text/plain",
            Prop.RESPONSE_TOPIC: "reply/to",
            Prop.CORRELATION_DATA: b"\x00\xff",
            Prop.SUBSCRIPTION_IDENTIFIER: [128, 1],
            Prop.USER_PROPERTY: [("k", "v1"), ("k", "v2")],
        },
    )


def test_publish_311_has_no_properties() -> None:
    """3.1.1 §3.3.2: the variable header ends after the packet id; what a v5 peer would read as a property
    length is payload in 3.1.1."""
    assert decode_one(frame(0x30, s("t") + b"\x00x"), MQTT_311) == Publish("t", b"\x00x")


def test_publish_payload_may_be_empty() -> None:
    """§3.3.3: a zero-length payload is valid."""
    assert decode_one(frame(0x30, s("t")), MQTT_311) == Publish("t", b"")
    assert decode_one(frame(0x31, s("t") + b"\x00"), MQTT_5) == Publish("t", b"", retain=True)


def test_publish_truncated_packet_id() -> None:
    assert_malformed(frame(0x32, s("t") + b"\x00"), MALFORMED, MQTT_311)


# --- CONNECT (§3.1; 3.1.1 §3.1) --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "level"), [(b"MQTT", MQTT_311), (b"MQTT", MQTT_5), (b"MQIsdp", MQTT_31)])
def test_connect_protocol_name_and_level_accepted(name: bytes, level: int) -> None:
    """§3.1.2.1-2 / 3.1.1 §3.1.2.1-2: 'MQTT' 4, 'MQTT' 5 and 3.1's 'MQIsdp' 3; the Reader learns the level."""
    reader = Reader()
    [packet] = reader.feed(connect_bytes(name=name, level=level))
    assert packet == Connect("abc", level, True, 60)
    assert reader.version == level


@pytest.mark.parametrize(
    ("name", "level"), [(b"MQTT", 6), (b"MQTT", 3), (b"MQTT", 0), (b"MQTT", 255), (b"MQIsdp", 4), (b"MQIsdp", 5)]
)
def test_connect_unsupported_protocol_level(name: bytes, level: int) -> None:
    """§3.1.2.2 [MQTT-3.1.2-2] / 3.1.1 [MQTT-3.1.2-2]: an unsupported level is answered with CONNACK 0x84
    (3.1.1 return code 1), so the codec raises UnsupportedProtocol carrying the level."""
    reader = Reader()
    with pytest.raises(UnsupportedProtocol) as info:
        reader.feed(connect_bytes(name=name, level=level))
    assert info.value.level == level
    assert info.value.reason == 0x84  # Reason.UNSUPPORTED_PROTOCOL_VERSION
    assert isinstance(info.value, MalformedPacket)
    assert reader.version is None


@pytest.mark.parametrize("name", [b"MQTX", b"mqtt", b"MQTT ", b"", b"MQIsdp3", "\u041cQTT".encode()])
def test_connect_garbage_protocol_name(name: bytes) -> None:
    """§3.1.2.1 / 3.1.1 [MQTT-3.1.2-1]: an incorrect protocol name is not this protocol at all; it is refused
    as a plain MalformedPacket (no CONNACK is owed), which the codec tags 0x84."""
    with pytest.raises(MalformedPacket) as info:
        Reader().feed(connect_bytes(name=name))
    assert type(info.value) is MalformedPacket
    assert info.value.reason == Reason.UNSUPPORTED_PROTOCOL_VERSION


def test_connect_protocol_name_invalid_utf8() -> None:
    assert_malformed(connect_bytes(name=b"MQ\xffT"), MALFORMED)


@pytest.mark.parametrize("level", [MQTT_31, MQTT_311, MQTT_5])
def test_connect_reserved_flag(level: int) -> None:
    """§3.1.2.3 [MQTT-3.1.2-3] / 3.1.1 [MQTT-3.1.2-3]: the reserved flag is 0, else Malformed."""
    name = b"MQIsdp" if level == MQTT_31 else b"MQTT"
    assert_malformed(connect_bytes(name=name, level=level, flags=0x03), MALFORMED)


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_connect_will_qos_3(level: int) -> None:
    """§3.1.2.6: 'A value of 3 (0x03) is a Malformed Packet' / 3.1.1 [MQTT-3.1.2-14]."""
    will = (b"\x00" if level == MQTT_5 else b"") + s("w") + s(b"x")
    assert_malformed(connect_bytes(level=level, flags=0x1E, payload=s("c") + will), MALFORMED)
    packet = decode_one(connect_bytes(level=level, flags=0x16, payload=s("c") + will))
    assert isinstance(packet, Connect)
    assert packet.will == Will("w", b"x", 2, False)


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("flags", [0x08, 0x10, 0x18, 0x20, 0x28])
def test_connect_will_qos_or_retain_without_will_flag(level: int, flags: int) -> None:
    """§3.1.2.6 [MQTT-3.1.2-11], §3.1.2.7 [MQTT-3.1.2-13] / 3.1.1 [MQTT-3.1.2-13], [MQTT-3.1.2-15]: with the
    Will Flag 0, Will QoS and Will Retain are 0."""
    assert_malformed(connect_bytes(level=level, flags=0x02 | flags), MALFORMED)


@pytest.mark.parametrize(("name", "level"), [(b"MQTT", MQTT_311), (b"MQIsdp", MQTT_31)])
def test_connect_password_without_username_311(name: bytes, level: int) -> None:
    """3.1.1 §3.1.2.9 [MQTT-3.1.2-22]: no password without a user name."""
    assert_malformed(connect_bytes(name=name, level=level, flags=0x42, payload=s("c") + s(b"pw")), MALFORMED)


def test_connect_password_without_username_v5() -> None:
    """§3.1.2.9: MQTT 5 allows a Password without a User Name."""
    packet = decode_one(connect_bytes(level=MQTT_5, flags=0x42, payload=s("c") + s(b"\x00pw")))
    assert packet == Connect("c", MQTT_5, True, 60, None, b"\x00pw")


def test_connect_everything_311() -> None:
    """3.1.1 §3.1.3: payload order client id, will topic, will message, user name, password."""
    payload = s("client") + s("will/topic") + s(b"\x00bye") + s("user") + s(b"secret")
    packet = decode_one(connect_bytes(flags=0xF4, keep_alive=0xFFFF, payload=payload))
    assert packet == Connect(
        "client", MQTT_311, False, 0xFFFF, "user", b"secret", Will("will/topic", b"\x00bye", 2, True)
    )


def test_connect_everything_v5() -> None:
    """§3.1.3: properties after keep alive, will properties before the will topic (§3.1.3.2)."""
    connect_props = props(
        b"\x11\x00\x00\x00\x3c",
        b"\x21\x00\x0a",
        b"\x27\x00\x01\x00\x00",
        b"\x22\x00\x05",
        b"\x19\x01",
        b"\x17\x00",
        b"\x15" + s("SCRAM-SHA-1"),
        b"\x16" + s(b"\x01"),
        b"\x26" + s("a") + s("b"),
    )
    will_props = props(b"\x18\x00\x00\x00\x05", b"\x01\x00", b"\x26" + s("x") + s("y"))
    payload = s("c") + will_props + s("w/t") + s(b"msg") + s("u") + s(b"p")
    packet = decode_one(connect_bytes(level=MQTT_5, flags=0xEE, properties=connect_props, payload=payload))
    assert packet == Connect(
        "c",
        MQTT_5,
        True,
        60,
        "u",
        b"p",
        Will(
            "w/t", b"msg", 1, True, {Prop.WILL_DELAY_INTERVAL: 5, Prop.PAYLOAD_FORMAT_INDICATOR: 0, 0x26: [("x", "y")]}
        ),
        {
            Prop.SESSION_EXPIRY_INTERVAL: 60,
            Prop.RECEIVE_MAXIMUM: 10,
            Prop.MAXIMUM_PACKET_SIZE: 65536,
            Prop.TOPIC_ALIAS_MAXIMUM: 5,
            Prop.REQUEST_RESPONSE_INFORMATION: 1,
            Prop.REQUEST_PROBLEM_INFORMATION: 0,
            Prop.AUTHENTICATION_METHOD: "SCRAM-SHA-1",
            Prop.AUTHENTICATION_DATA: b"\x01",
            Prop.USER_PROPERTY: [("a", "b")],
        },
    )


def test_connect_empty_client_id() -> None:
    """§3.1.3.1 [MQTT-3.1.3-6]: a zero-byte Client Identifier is allowed (the server assigns one)."""
    assert decode_one(connect_bytes(payload=s(""))) == Connect("", MQTT_311, True, 60)


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_connect_will_topic_with_wildcard(level: int) -> None:
    """§3.1.3.3: the Will Topic is a Topic Name, so no wildcards (§3.3.2.1) -> 0x90."""
    will = (b"\x00" if level == MQTT_5 else b"") + s("a/#") + s(b"x")
    assert_malformed(connect_bytes(level=level, flags=0x06, payload=s("c") + will), Reason.TOPIC_NAME_INVALID)


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_connect_empty_will_topic(level: int) -> None:
    """BUG: §4.7.3 [MQTT-4.7.3-1] / 3.1.1 [MQTT-4.7.3-1]: 'All Topic Names and Topic Filters MUST be at least
    one character long'. The Will Topic is a Topic Name (§3.1.3.3) and, unlike a v5 PUBLISH, a will has no Topic
    Alias to stand in for it. The codec checks will topics for wildcards (0x90) but accepts an empty one."""
    will = (b"\x00" if level == MQTT_5 else b"") + s("") + s(b"x")
    assert_malformed(connect_bytes(level=level, flags=0x06, payload=s("c") + will), Reason.TOPIC_NAME_INVALID)


@pytest.mark.parametrize("level", [MQTT_31, MQTT_311, MQTT_5])
def test_second_connect_is_protocol_error(level: int) -> None:
    """§3.1.0 [MQTT-3.1.0-2] / 3.1.1 [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error."""
    reader = reader_after_connect(level)
    name = b"MQIsdp" if level == MQTT_31 else b"MQTT"
    assert_malformed(connect_bytes(name=name, level=level), PROTOCOL_ERROR, reader=reader)


def test_connect_to_a_client_reader_is_protocol_error() -> None:
    """A Reader told its version (a client's) never expects a CONNECT."""
    assert_malformed(connect_bytes(level=MQTT_5), PROTOCOL_ERROR, MQTT_5)


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("extra", [b"\x00", b"\x00\x00", b"junk"])
def test_connect_trailing_bytes(level: int, extra: bytes) -> None:
    """§3.1.3: the payload holds exactly the fields the flags announce; more bytes are Malformed."""
    assert_malformed(connect_bytes(level=level, payload=s("c") + extra), MALFORMED)
    assert_malformed(connect_bytes(level=level, flags=0xC2, payload=s("c") + s("u") + s(b"p") + extra), MALFORMED)


@pytest.mark.parametrize("flags", [0x80, 0xC0, 0x06])
def test_connect_missing_fields_announced_by_flags(flags: int) -> None:
    """§3.1.3 [MQTT-3.1.2-9, -17, -19]: a flag announces a field; its absence is Malformed."""
    assert_malformed(connect_bytes(flags=flags, payload=s("c")), MALFORMED)


def test_connect_truncated_variable_header() -> None:
    for cut in range(len(PAHO_CONNECT_311) - 3):
        body = PAHO_CONNECT_311[2 : 2 + cut]
        assert_malformed(frame(0x10, body), MALFORMED)


# --- Strings (§1.5.4; 3.1.1 §1.5.3) ------------------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",  # never valid
    b"\x80",  # lone continuation byte
    b"\xc3",  # truncated sequence
    b"\xc0\x80",  # overlong U+0000
    b"\xe0\x80\xaf",  # overlong '/'
    b"\xed\xa0\x80",  # encoded surrogate U+D800 [MQTT-1.5.4-1]
    b"\xed\xbf\xbf",  # encoded surrogate U+DFFF
    b"\xf4\x90\x80\x80",  # above U+10FFFF
]


@pytest.mark.parametrize("raw", INVALID_UTF8, ids=lambda raw: raw.hex())
def test_string_invalid_utf8(raw: bytes) -> None:
    """§1.5.4 [MQTT-1.5.4-1] / 3.1.1 [MQTT-1.5.3-1]: ill-formed UTF-8 is a Malformed Packet."""
    assert_malformed(frame(0x30, s(b"a/" + raw)), MALFORMED, MQTT_311)
    assert_malformed(connect_bytes(payload=s(b"id" + raw)), MALFORMED)
    with pytest.raises(MalformedPacket):
        decode_utf8(raw)


@pytest.mark.parametrize("raw", [b"\x00", b"a\x00b", b"a/\x00"])
def test_string_null_character(raw: bytes) -> None:
    """§1.5.4 [MQTT-1.5.4-2] / 3.1.1 [MQTT-1.5.3-2]: U+0000 in a string is a Malformed Packet."""
    assert_malformed(frame(0x30, s(raw)), MALFORMED, MQTT_311)
    assert_malformed(frame(0x82, b"\x00\x01" + s(raw) + b"\x00"), MALFORMED, MQTT_311)
    body = s("t") + props(b"\x26" + s("k") + s(raw))
    assert_malformed(frame(0x30, body), MALFORMED, MQTT_5)


def test_string_bom_is_kept() -> None:
    """§1.5.4 [MQTT-1.5.4-3]: a leading U+FEFF is not stripped by the receiver."""
    packet = decode_one(frame(0x30, s("\ufeffa/b")), MQTT_311)
    assert isinstance(packet, Publish)
    assert packet.topic == "\ufeffa/b"


def test_string_non_ascii() -> None:
    topic = "🌡/é/€/\u0001/\u007f"
    assert decode_one(frame(0x30, s(topic)), MQTT_311) == Publish(topic, b"")
    assert decode_utf8(topic.encode()) == topic


@pytest.mark.parametrize("claimed", [2, 3, 0x100, 0xFFFF])
def test_string_length_runs_past_the_end(claimed: int) -> None:
    """§1.5.4: the two-byte length prefix may not claim more bytes than the packet holds."""
    assert_malformed(frame(0x30, struct.pack(">H", claimed) + b"a"), MALFORMED, MQTT_311)
    assert_malformed(frame(0xA2, b"\x00\x01" + struct.pack(">H", claimed) + b"a"), MALFORMED, MQTT_311)
    assert_malformed(connect_bytes(payload=struct.pack(">H", claimed) + b"a"), MALFORMED)


def test_string_length_prefix_cut_in_half() -> None:
    assert_malformed(frame(0x30, b"\x00"), MALFORMED, MQTT_311)


def test_string_longest() -> None:
    """§1.5.4: a string holds up to 65,535 bytes; the encoder refuses longer."""
    topic = "t" * 0xFFFF
    assert round_trip(Publish(topic, b"x"), MQTT_311) == Publish(topic, b"x")
    with pytest.raises(ValueError, match="65,535"):
        encode(Publish(topic + "t", b"x"), MQTT_311)


# --- Properties (§2.2.2) -----------------------------------------------------------------------------------------


def publish_v5(*properties: bytes) -> bytes:
    return frame(0x30, s("t") + props(*properties))


@pytest.mark.parametrize("ident", [0x00, 0x04, 0x05, 0x0A, 0x10, 0x14, 0x1B, 0x20, 0x2B, 0x7F, 0xFF])
def test_property_unknown_identifier(ident: int) -> None:
    """§2.2.2.2: identifiers outside the property table are Malformed."""
    assert_malformed(publish_v5(vbi(ident) + b"\x00"), MALFORMED, MQTT_5)


ALLOWED_BY_SPEC = ms.ALLOWED_PROPERTIES
SAMPLE_PROPERTY = {  # one valid encoded instance of every property
    0x01: b"\x01\x00",
    0x02: b"\x02\x00\x00\x00\x01",
    0x03: b"\x03" + s("x"),
    0x08: b"\x08" + s("x"),
    0x09: b"\x09" + s(b"x"),
    0x0B: b"\x0b\x01",
    0x11: b"\x11\x00\x00\x00\x01",
    0x12: b"\x12" + s("x"),
    0x13: b"\x13\x00\x01",
    0x15: b"\x15" + s("x"),
    0x16: b"\x16" + s(b"x"),
    0x17: b"\x17\x01",
    0x18: b"\x18\x00\x00\x00\x01",
    0x19: b"\x19\x01",
    0x1A: b"\x1a" + s("x"),
    0x1C: b"\x1c" + s("x"),
    0x1F: b"\x1f" + s("x"),
    0x21: b"\x21\x00\x01",
    0x22: b"\x22\x00\x01",
    0x23: b"\x23\x00\x01",
    0x24: b"\x24\x01",
    0x25: b"\x25\x01",
    0x26: b"\x26" + s("x") + s("y"),
    0x27: b"\x27\x00\x00\x00\x01",
    0x28: b"\x28\x01",
    0x29: b"\x29\x01",
    0x2A: b"\x2a\x01",
}


def packet_with_property(packet_type: int, prop: bytes) -> tuple[bytes, Reader]:
    """A v5 packet of `packet_type` (or the will of a CONNECT for 0) whose only property is `prop`."""
    block = props(prop)
    reader = Reader(version=MQTT_5)
    if packet_type == PacketType.CONNECT:
        return connect_bytes(level=MQTT_5, properties=block), Reader()
    if packet_type == ms.WILL_PROPERTIES:
        return connect_bytes(level=MQTT_5, flags=0x06, payload=s("c") + block + s("w") + s(b"")), Reader()
    bodies = {
        PacketType.CONNACK: b"\x00\x00" + block,
        PacketType.PUBLISH: s("t") + block,
        PacketType.PUBACK: b"\x00\x01\x00" + block,
        PacketType.PUBREC: b"\x00\x01\x00" + block,
        PacketType.PUBREL: b"\x00\x01\x00" + block,
        PacketType.PUBCOMP: b"\x00\x01\x00" + block,
        PacketType.SUBSCRIBE: b"\x00\x01" + block + s("f") + b"\x00",
        PacketType.SUBACK: b"\x00\x01" + block + b"\x00",
        PacketType.UNSUBSCRIBE: b"\x00\x01" + block + s("f"),
        PacketType.UNSUBACK: b"\x00\x01" + block + b"\x00",
        PacketType.DISCONNECT: b"\x00" + block,
        PacketType.AUTH: b"\x18" + block,
    }
    first = packet_type << 4 | FIXED_FLAGS.get(PacketType(packet_type), 0)
    return frame(first, bodies[PacketType(packet_type)]), reader


@pytest.mark.parametrize("packet_type", sorted(ALLOWED_BY_SPEC))
def test_property_table(packet_type: int) -> None:
    """§2.2.2.2: each property decodes in the packets the table lists, and is a Protocol Error (0x82) in every
    other packet. Checked for all 27 properties in all 15 property-bearing contexts."""
    for ident, raw in SAMPLE_PROPERTY.items():
        data, reader = packet_with_property(packet_type, raw)
        if ident in ALLOWED_BY_SPEC[packet_type]:
            [packet] = reader.feed(data)
            if packet_type == ms.WILL_PROPERTIES:
                assert isinstance(packet, Connect)
                assert packet.will is not None
                assert packet.properties == {}
                assert ident in packet.will.properties, hex(ident)
            else:
                assert packet.__class__.__name__.upper() == PacketType(packet_type).name
                assert ident in getattr(packet, "properties", {}), (packet_type, hex(ident))
        else:
            assert_malformed(data, PROTOCOL_ERROR, reader=reader)


@pytest.mark.parametrize(
    "ident",
    [ident for ident in SAMPLE_PROPERTY if ident not in (Prop.USER_PROPERTY, Prop.SUBSCRIPTION_IDENTIFIER)],
)
def test_property_duplicate_is_protocol_error(ident: int) -> None:
    """§2.2.2.2 and e.g. §3.1.2.11.2: 'It is a Protocol Error to include [it] more than once'."""
    packet_type = next(t for t in sorted(ALLOWED_BY_SPEC) if ident in ALLOWED_BY_SPEC[t])
    data, reader = packet_with_property(packet_type, SAMPLE_PROPERTY[ident] * 2)
    assert_malformed(data, PROTOCOL_ERROR, reader=reader)


def test_user_property_repeats_in_order() -> None:
    """§3.3.2.3.7: User Property may appear many times, even with the same name; order is kept."""
    pairs = [("b", "1"), ("a", "2"), ("b", "3"), ("b", "1"), ("", "")]
    packet = decode_one(publish_v5(*(b"\x26" + s(k) + s(v) for k, v in pairs)), MQTT_5)
    assert isinstance(packet, Publish)
    assert packet.properties == {Prop.USER_PROPERTY: pairs}
    assert encode(packet, MQTT_5) == publish_v5(*(b"\x26" + s(k) + s(v) for k, v in pairs))


def test_subscription_identifier_zero() -> None:
    """§3.3.2.3.8 / §3.8.2.1.2: a Subscription Identifier of 0 is a Protocol Error."""
    assert_malformed(publish_v5(b"\x0b\x00"), PROTOCOL_ERROR, MQTT_5)
    assert_malformed(publish_v5(b"\x0b\x05", b"\x0b\x00"), PROTOCOL_ERROR, MQTT_5)
    assert_malformed(frame(0x82, b"\x00\x01" + props(b"\x0b\x00") + s("f") + b"\x00"), PROTOCOL_ERROR, MQTT_5)


def test_subscription_identifier_largest() -> None:
    """§3.3.2.3.8: 1 to 268,435,455, as a Variable Byte Integer."""
    packet = decode_one(frame(0x82, b"\x00\x01" + props(b"\x0b\xff\xff\xff\x7f") + s("f") + b"\x00"), MQTT_5)
    assert isinstance(packet, Subscribe)
    assert packet.properties == {Prop.SUBSCRIPTION_IDENTIFIER: [268_435_455]}
    assert_malformed(publish_v5(b"\x0b\xff\xff\xff\xff\x01"), MALFORMED, MQTT_5)


def test_subscribe_two_subscription_identifiers() -> None:
    """§3.8.2.1.2: 'It is a Protocol Error to include the Subscription Identifier more than once' in SUBSCRIBE,
    while a PUBLISH may carry several (§3.3.2.3.8)."""
    body = b"\x00\x01" + props(b"\x0b\x01", b"\x0b\x02") + s("f") + b"\x00"
    assert_malformed(frame(0x82, body), PROTOCOL_ERROR, MQTT_5)


@pytest.mark.parametrize(
    ("packet_type", "prop"),
    [
        (PacketType.CONNECT, b"\x21\x00\x00"),  # §3.1.2.11.3 Receive Maximum 0
        (PacketType.CONNACK, b"\x21\x00\x00"),  # §3.2.2.3.3
        (PacketType.CONNECT, b"\x27\x00\x00\x00\x00"),  # §3.1.2.11.4 Maximum Packet Size 0
        (PacketType.CONNACK, b"\x27\x00\x00\x00\x00"),  # §3.2.2.3.6
    ],
)
def test_property_zero_values_that_are_protocol_errors(packet_type: int, prop: bytes) -> None:
    data, reader = packet_with_property(packet_type, prop)
    assert_malformed(data, PROTOCOL_ERROR, reader=reader)


@pytest.mark.parametrize(
    ("packet_type", "ident"),
    [
        (PacketType.PUBLISH, 0x01),  # §3.3.2.3.2 Payload Format Indicator
        (ms.WILL_PROPERTIES, 0x01),  # §3.1.3.2.3
        (PacketType.CONNECT, 0x17),  # §3.1.2.11.7 Request Problem Information
        (PacketType.CONNECT, 0x19),  # §3.1.2.11.6 Request Response Information
        (PacketType.CONNACK, 0x24),  # §3.2.2.3.4 Maximum QoS
        (PacketType.CONNACK, 0x25),  # §3.2.2.3.5 Retain Available
        (PacketType.CONNACK, 0x28),  # §3.2.2.3.11 Wildcard Subscription Available
        (PacketType.CONNACK, 0x29),  # §3.2.2.3.12 Subscription Identifiers Available
        (PacketType.CONNACK, 0x2A),  # §3.2.2.3.13 Shared Subscription Available
    ],
)
@pytest.mark.parametrize("value", [2, 0x7F, 0xFF])
def test_property_byte_flags_other_than_0_or_1(packet_type: int, ident: int, value: int) -> None:
    """'It is a Protocol Error to ... have a value other than 0 or 1.'"""
    data, reader = packet_with_property(packet_type, bytes([ident, value]))
    assert_malformed(data, PROTOCOL_ERROR, reader=reader)
    data, reader = packet_with_property(packet_type, bytes([ident, 1]))
    assert reader.feed(data)


@pytest.mark.parametrize(
    "block",
    [
        b"\x05\x01\x00",  # property length 5 but 2 bytes left
        b"\x02\x02\x00",  # Message Expiry Interval cut after one byte
        b"\x02\x23\x00\x01",  # property length one short: the Topic Alias runs past the block
        b"\x02\x26\x00",  # user property name cut
        b"\x05\x26" + s("k") + b"\x00",  # user property value length cut
        b"\x80",  # property length varint unterminated
        b"\x01\x80",  # property identifier varint unterminated within the block
    ],
)
def test_property_block_truncated(block: bytes) -> None:
    """§2.2.2.1: properties may not run past the Property Length, nor the Property Length past the packet."""
    assert_malformed(frame(0x30, s("t") + block), MALFORMED, MQTT_5)
    assert decode_one(frame(0x30, s("t") + b"\x03\x23\x00\x01"), MQTT_5) == Publish("t", b"", properties={0x23: 1})


def test_encode_properties_layout() -> None:
    """§2.2.2: Property Length (VBI) then identifier/value pairs; list properties repeat the identifier."""
    encoded = encode_properties(
        {Prop.SUBSCRIPTION_IDENTIFIER: [1, 200], Prop.USER_PROPERTY: [("a", "b")], Prop.TOPIC_ALIAS: 3}
    )
    assert encoded == props(b"\x0b\x01", b"\x0b\xc8\x01", b"\x26" + s("a") + s("b"), b"\x23\x00\x03")
    assert encode_properties({}) == b"\x00"


# --- SUBSCRIBE / UNSUBSCRIBE (§3.8, §3.10; 3.1.1 §3.8, §3.10) ---------------------------------------------------


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_subscribe_without_filters(version: int) -> None:
    """§3.8.3 [MQTT-3.8.3-2] / 3.1.1 [MQTT-3.8.3-3]: at least one Topic Filter / option pair."""
    body = b"\x00\x01" + (b"\x00" if version == MQTT_5 else b"")
    assert_malformed(frame(0x82, body), PROTOCOL_ERROR, version)


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_subscribe_packet_id_zero(version: int) -> None:
    """§2.2.1 [MQTT-2.2.1-3] / 3.1.1 §2.3.1 [MQTT-2.3.1-1]."""
    body = b"\x00\x00" + (b"\x00" if version == MQTT_5 else b"") + s("f") + b"\x00"
    assert_malformed(frame(0x82, body), PROTOCOL_ERROR, version)


def test_subscribe_options_311_every_byte() -> None:
    """3.1.1 §3.8.3.1 [MQTT-3.8.3-4]: bits 7-2 are reserved and QoS is 0, 1 or 2, else Malformed. All 256
    option bytes."""
    for options in range(256):
        data = frame(0x82, b"\x00\x01" + s("a/+") + bytes([options]))
        if options <= 2:
            assert decode_one(data, MQTT_311) == Subscribe(1, [Subscription("a/+", options)])
        else:
            assert_malformed(data, MALFORMED, MQTT_311)


def test_subscribe_options_v5_every_byte() -> None:
    """§3.8.3.1: bits 7-6 reserved [MQTT-3.8.3-5] (Malformed); QoS 3 and Retain Handling 3 are refused; every
    other byte decodes to its fields and encodes back to itself. All 256 option bytes."""
    for options in range(256):
        data = frame(0x82, b"\x00\x01\x00" + s("a/#") + bytes([options]))
        qos, retain_handling = options & 3, (options >> 4) & 3
        if options & 0xC0:
            assert_malformed(data, MALFORMED, MQTT_5)
        elif qos == 3 or retain_handling == 3:
            with pytest.raises(MalformedPacket):  # the reason code: see the two tests below
                Reader(version=MQTT_5).feed(data)
        else:
            subscription = Subscription("a/#", qos, bool(options & 4), bool(options & 8), retain_handling)
            assert decode_one(data, MQTT_5) == Subscribe(1, [subscription])
            assert encode(Subscribe(1, [subscription]), MQTT_5) == data


def test_subscribe_v5_qos_3_is_protocol_error() -> None:
    """BUG: §3.8.3.1: 'It is a Protocol Error if the Maximum QoS field has the value 3.' -> 0x82, not 0x81
    (reserved bits, by contrast, make it Malformed [MQTT-3.8.3-5])."""
    assert_malformed(frame(0x82, b"\x00\x01\x00" + s("a") + b"\x03"), PROTOCOL_ERROR, MQTT_5)


def test_subscribe_v5_retain_handling_3_is_protocol_error() -> None:
    """BUG: §3.8.3.1: 'It is a Protocol Error to send a Retain Handling value of 3.' -> 0x82, not 0x81."""
    assert_malformed(frame(0x82, b"\x00\x01\x00" + s("a") + b"\x30"), PROTOCOL_ERROR, MQTT_5)


def test_subscribe_several_filters() -> None:
    body = b"\x00\x0a" + s("a/b") + b"\x00" + s("c/+/d") + b"\x01" + s("#") + b"\x02"
    packet = decode_one(frame(0x82, body), MQTT_311)
    assert packet == Subscribe(10, [Subscription("a/b", 0), Subscription("c/+/d", 1), Subscription("#", 2)])


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_subscribe_filter_without_options_byte(version: int) -> None:
    body = b"\x00\x01" + (b"\x00" if version == MQTT_5 else b"") + s("a")
    assert_malformed(frame(0x82, body), MALFORMED, version)


def test_subscribe_311_options_ignore_v5_fields_on_encode() -> None:
    """3.1.1 has only the QoS bits: v5 options are dropped when encoding for 3.1.1."""
    packet = Subscribe(1, [Subscription("a", 1, no_local=True, retain_as_published=True, retain_handling=2)])
    assert encode(packet, MQTT_311) == frame(0x82, b"\x00\x01" + s("a") + b"\x01")


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_unsubscribe_without_filters(version: int) -> None:
    """§3.10.3 [MQTT-3.10.3-2] / 3.1.1 [MQTT-3.10.3-2]: at least one Topic Filter."""
    body = b"\x00\x01" + (b"\x00" if version == MQTT_5 else b"")
    assert_malformed(frame(0xA2, body), PROTOCOL_ERROR, version)


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_unsubscribe_filters(version: int) -> None:
    body = b"\x00\x02" + (b"\x00" if version == MQTT_5 else b"") + s("a/#") + s("b")
    assert decode_one(frame(0xA2, body), version) == Unsubscribe(2, ["a/#", "b"])


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_unsubscribe_packet_id_zero(version: int) -> None:
    """BUG: §2.2.1 [MQTT-2.2.1-3] / 3.1.1 §2.3.1 [MQTT-2.3.1-1]: 'SUBSCRIBE, UNSUBSCRIBE, and PUBLISH (in cases
    where QoS > 0) Control Packets MUST contain a non-zero 16-bit Packet Identifier'. The codec refuses 0 in
    SUBSCRIBE and PUBLISH (0x82) but accepts it in UNSUBSCRIBE."""
    body = b"\x00\x00" + (b"\x00" if version == MQTT_5 else b"") + s("a")
    assert_malformed(frame(0xA2, body), PROTOCOL_ERROR, version)


# --- PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4-§3.7) ---------------------------------------------------------------

ACKS = [(0x40, PubAck), (0x50, PubRec), (0x62, PubRel), (0x70, PubComp)]


@pytest.mark.parametrize(("first", "cls"), ACKS)
def test_ack_v5_remaining_length_2_means_success(first: int, cls: type) -> None:
    """§3.4.2.1: 'If the Remaining Length is 2, then there is no Reason Code and the value of 0x00 (Success) is
    used.'"""
    assert decode_one(bytes([first, 2, 0x12, 0x34]), MQTT_5) == cls(0x1234, 0, {})


@pytest.mark.parametrize(("first", "cls"), ACKS)
def test_ack_v5_reason_only(first: int, cls: type) -> None:
    """§3.4.2.2: 'If the Remaining Length is less than 4 there is no Property Length and the value of 0 is
    used.'"""
    assert decode_one(bytes([first, 3, 0, 1, 0x92]), MQTT_5) == cls(1, 0x92, {})
    assert encode(cls(1, 0x92), MQTT_5) == bytes([first, 3, 0, 1, 0x92])


@pytest.mark.parametrize(("first", "cls"), ACKS)
def test_ack_v5_reason_and_properties(first: int, cls: type) -> None:
    raw = frame(first, b"\x00\x01\x10" + props(b"\x1f" + s("why"), b"\x26" + s("k") + s("v")))
    packet = cls(1, 0x10, {Prop.REASON_STRING: "why", Prop.USER_PROPERTY: [("k", "v")]})
    assert decode_one(raw, MQTT_5) == packet
    assert encode(packet, MQTT_5) == raw
    # Success with an empty property block (Remaining Length 4) is also valid.
    assert decode_one(bytes([first, 4, 0, 1, 0, 0]), MQTT_5) == cls(1, 0, {})


@pytest.mark.parametrize(("first", "cls"), ACKS)
def test_ack_v5_success_without_properties_encodes_to_4_bytes(first: int, cls: type) -> None:
    """§3.4.2.1: the Reason Code and Property Length can be omitted when Success with no properties."""
    assert encode(cls(0xABCD), MQTT_5) == bytes([first, 2, 0xAB, 0xCD])
    assert encode(cls(1, 0, {Prop.REASON_STRING: ""}), MQTT_5) == bytes([first, 7, 0, 1, 0, 3, 0x1F, 0, 0])


@pytest.mark.parametrize(("first", "cls"), ACKS)
def test_ack_311(first: int, cls: type) -> None:
    """3.1.1 §3.4.1: Remaining Length is exactly 2; v5 fields are dropped when encoding for 3.1.1."""
    assert decode_one(bytes([first, 2, 0, 7]), MQTT_311) == cls(7)
    assert encode(cls(7, 0x80, {Prop.REASON_STRING: "x"}), MQTT_311) == bytes([first, 2, 0, 7])
    assert_malformed(bytes([first, 3, 0, 7, 0]), MALFORMED, MQTT_311)
    assert_malformed(bytes([first, 1, 0]), MALFORMED, MQTT_311)


@pytest.mark.parametrize(("first", "cls"), ACKS)
def test_ack_v5_disallowed_property(first: int, cls: type) -> None:
    """§2.2.2.2: only Reason String and User Property are allowed in these acks."""
    assert_malformed(frame(first, b"\x00\x01\x00" + props(b"\x23\x00\x01")), PROTOCOL_ERROR, MQTT_5)


# --- CONNACK (§3.2; 3.1.1 §3.2) ---------------------------------------------------------------------------------

V311_RETURN_CODES = {0: 0x00, 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}


@pytest.mark.parametrize(("code", "reason"), V311_RETURN_CODES.items())
def test_connack_311_return_code_decodes_to_v5_reason(code: int, reason: int) -> None:
    """3.1.1 §3.2.2.3 Table 3.1 return codes 0-5, named by the v5 reason of the same meaning (§3.2.2.2)."""
    assert decode_one(bytes([0x20, 2, 0, code]), MQTT_311) == ConnAck(reason, False)


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (0x00, 0),
        (0x84, 1),
        (0x85, 2),
        (0x88, 3),
        (0x89, 3),
        (0x86, 4),
        (0x87, 5),
        (0x8A, 5),
        (0x80, 3),  # no 3.1.1 equivalent: "server unavailable"
        (0x95, 3),
    ],
)
def test_connack_v5_reason_encodes_to_311_return_code(reason: int, code: int) -> None:
    assert encode(ConnAck(reason), MQTT_311) == bytes([0x20, 2, 0, code])


def test_connack_311_mapping_examples() -> None:
    """Encoding 0x86 (bad user name or password) for 3.1.1 gives return code 4; decoding 5 gives 0x87."""
    assert encode(ConnAck(Reason.BAD_USER_NAME_OR_PASSWORD), MQTT_311) == b"\x20\x02\x00\x04"
    assert decode_one(b"\x20\x02\x00\x05", MQTT_311) == ConnAck(Reason.NOT_AUTHORIZED)


@pytest.mark.parametrize("code", [6, 0x80, 0xFF])
def test_connack_311_reserved_return_code(code: int) -> None:
    """3.1.1 §3.2.2.3: 6-255 are reserved; the codec reads them as 0x80 Unspecified error."""
    assert decode_one(bytes([0x20, 2, 0, code]), MQTT_311) == ConnAck(Reason.UNSPECIFIED_ERROR)


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("ack_flags", [0x02, 0x80, 0xFE, 0xFF])
def test_connack_reserved_acknowledge_flags(version: int, ack_flags: int) -> None:
    """§3.2.2.1 / 3.1.1 §3.2.2.1: bits 7-1 of the Connect Acknowledge Flags are reserved, 0."""
    body = bytes([ack_flags, 0]) + (b"\x00" if version == MQTT_5 else b"")
    assert_malformed(frame(0x20, body), MALFORMED, version)


def test_connack_session_present() -> None:
    assert decode_one(b"\x20\x02\x01\x00", MQTT_311) == ConnAck(0, True)
    assert decode_one(b"\x20\x03\x01\x00\x00", MQTT_5) == ConnAck(0, True)


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_connack_wrong_length(version: int) -> None:
    assert_malformed(b"\x20\x01\x00", MALFORMED, version)
    assert_malformed(b"\x20\x04\x00\x00\x00\x00", MALFORMED, version)  # v5: trailing byte after props


def test_connack_v5_without_property_length_is_malformed() -> None:
    """§3.2.2.3.1: CONNACK always carries the Property Length in v5."""
    assert_malformed(b"\x20\x02\x00\x00", MALFORMED, MQTT_5)


# --- SUBACK, UNSUBACK, DISCONNECT, PINGREQ/PINGRESP ---------------------------------------------------------------


def test_suback_311_and_v5() -> None:
    """3.1.1 §3.9.3 / §3.9.3: one return / reason code per filter, after properties in v5."""
    assert decode_one(bytes.fromhex("90 05 00 0a 00 01 80"), MQTT_311) == SubAck(10, [0, 1, 0x80])
    raw = frame(0x90, b"\x00\x0a" + props(b"\x1f" + s("no")) + b"\x02\x87\xa2")
    packet = SubAck(10, [2, 0x87, 0xA2], {Prop.REASON_STRING: "no"})
    assert decode_one(raw, MQTT_5) == packet
    assert encode(packet, MQTT_5) == raw


def test_unsuback_311_has_no_payload() -> None:
    """3.1.1 §3.11.3: 'The UNSUBACK Packet has no payload.' v5 reason codes are dropped for 3.1.1."""
    assert decode_one(b"\xb0\x02\x00\x05", MQTT_311) == UnsubAck(5)
    assert_malformed(b"\xb0\x03\x00\x05\x00", MALFORMED, MQTT_311)
    assert encode(UnsubAck(5, [0x11], {Prop.REASON_STRING: "x"}), MQTT_311) == b"\xb0\x02\x00\x05"


def test_unsuback_v5_reason_codes() -> None:
    """§3.11.3: one reason code per filter, after the properties."""
    raw = frame(0xB0, b"\x00\x05" + props() + b"\x00\x11\x87")
    assert decode_one(raw, MQTT_5) == UnsubAck(5, [0, 0x11, 0x87])
    assert encode(UnsubAck(5, [0, 0x11, 0x87]), MQTT_5) == raw


def test_disconnect_v5() -> None:
    """§3.14.2.1: Remaining Length 0 is Normal disconnection; 1 is a reason code without properties."""
    assert decode_one(b"\xe0\x00", MQTT_5) == Disconnect()
    assert decode_one(b"\xe0\x01\x04", MQTT_5) == Disconnect(Reason.DISCONNECT_WITH_WILL)
    raw = frame(0xE0, b"\x8e" + props(b"\x11\x00\x00\x00\x00", b"\x1c" + s("other:1883")))
    packet = Disconnect(0x8E, {Prop.SESSION_EXPIRY_INTERVAL: 0, Prop.SERVER_REFERENCE: "other:1883"})
    assert decode_one(raw, MQTT_5) == packet
    assert encode(packet, MQTT_5) == raw
    assert encode(Disconnect(0x04), MQTT_5) == b"\xe0\x01\x04"


def test_disconnect_311_has_no_body() -> None:
    """3.1.1 §3.14: no variable header or payload; v5 fields are dropped when encoding for 3.1.1."""
    assert_malformed(b"\xe0\x01\x00", MALFORMED, MQTT_311)
    assert encode(Disconnect(0x8B, {Prop.REASON_STRING: "bye"}), MQTT_311) == b"\xe0\x00"


@pytest.mark.parametrize("first", [0xC0, 0xD0])
@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
def test_ping_has_no_body(first: int, version: int) -> None:
    """§3.12, §3.13: PINGREQ and PINGRESP have no variable header and no payload."""
    assert_malformed(bytes([first, 1, 0]), MALFORMED, version)


# --- Streaming (Reader) --------------------------------------------------------------------------------------------


def test_partial_packet_stays_buffered() -> None:
    """Bytes of an incomplete packet are kept across feeds, the fixed header included, until the packet is whole."""
    raw = encode(Publish("a/b", b"hello", 1, packet_id=3), MQTT_311)
    reader = Reader(version=MQTT_311)
    assert reader.feed(raw[:1]) == []
    assert reader.buffered == 1
    assert reader.feed(raw[1:2]) == []
    assert reader.buffered == 2
    assert reader.feed(raw[2:-1]) == []
    assert reader.buffered == len(raw) - 1
    assert reader.feed(raw[-1:]) == [Publish("a/b", b"hello", 1, packet_id=3)]
    assert reader.buffered == 0


def test_partial_multi_byte_remaining_length_stays_buffered() -> None:
    """A Remaining Length cut between its bytes (§1.5.5) waits for the rest."""
    raw = encode(Publish("t", b"x" * 200), MQTT_311)
    assert raw[1:3] == b"\xcb\x01"
    reader = Reader(version=MQTT_311)
    assert reader.feed(raw[:2]) == []
    assert reader.buffered == 2
    assert reader.feed(raw[2:]) == [Publish("t", b"x" * 200)]
    assert reader.buffered == 0


def test_several_packets_in_one_feed_and_a_remainder() -> None:
    ping, publish = b"\xc0\x00", encode(Publish("t", b"1"), MQTT_311)
    reader = Reader(version=MQTT_311)
    assert reader.feed(ping + publish + ping + publish[:3]) == [PingReq(), Publish("t", b"1"), PingReq()]
    assert reader.buffered == 3
    assert reader.feed(publish[3:] + ping) == [Publish("t", b"1"), PingReq()]
    assert reader.buffered == 0


def test_malformed_packet_carries_the_good_packets_before_it() -> None:
    """`MalformedPacket.packets`: the complete packets of the same feed that preceded the bad one, in order, so
    they can still be handled before the connection closes."""
    publish = encode(Publish("t", b"1", 1, packet_id=1), MQTT_311)
    reader = Reader(version=MQTT_311)
    assert reader.feed(b"\xc0") == []
    with pytest.raises(MalformedPacket) as info:
        reader.feed(b"\x00" + publish + b"\x00\x00" + publish)
    assert info.value.reason == MALFORMED
    assert info.value.packets == [PingReq(), Publish("t", b"1", 1, packet_id=1)]


def test_malformed_packet_first_in_the_feed_carries_no_packets() -> None:
    with pytest.raises(MalformedPacket) as info:
        Reader(version=MQTT_311).feed(b"\x00\x00\xc0\x00")
    assert info.value.packets == []
    with pytest.raises(UnsupportedProtocol) as unsupported:
        Reader().feed(connect_bytes(level=6))
    assert unsupported.value.packets == []


def test_packet_too_large_carries_the_good_packets_before_it() -> None:
    reader = Reader(max_packet_size=16, version=MQTT_5)
    with pytest.raises(MalformedPacket) as info:
        reader.feed(b"\xd0\x00\xc0\x00\x30\x7f")
    assert info.value.reason == Reason.PACKET_TOO_LARGE
    assert info.value.packets == [PingResp(), PingReq()]


def test_empty_feed() -> None:
    reader = Reader()
    assert reader.feed(b"") == []
    assert reader.buffered == 0


def test_connect_then_v5_packets_in_one_feed() -> None:
    """The version learned from a CONNECT applies to the packets after it in the same chunk (§3.1.2.2)."""
    reader = Reader()
    subscribe = frame(0x82, b"\x00\x01" + props(b"\x0b\x07") + s("a/#") + b"\x01")
    packets = reader.feed(connect_bytes(level=MQTT_5) + subscribe)
    assert packets == [
        Connect("abc", MQTT_5, True, 60),
        Subscribe(1, [Subscription("a/#", 1)], {Prop.SUBSCRIPTION_IDENTIFIER: [7]}),
    ]
    assert reader.version == MQTT_5


def test_default_reader_limits() -> None:
    reader = Reader()
    assert reader.version is None
    assert reader.max_packet_size == MAX_REMAINING_LENGTH + 5
