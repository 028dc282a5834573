"""Tests of the serial framings (`gateway.mqttsn.framing`): MQTT-SN frames delimited by their own Length
(MQTT-SN 1.2 §5.2.1), optionally forwarder-encapsulated (§5.5), and Digi XBee API mode 2 frames.

The XBee golden frames are Digi's own documented examples, copied octet by octet from the product manuals (found
through the reference search; the manuals print them for AP=1, i.e. unescaped, except where noted), with the
mode 2 escapes applied by hand where a frame holds 0x7E, 0x7D, 0x11 or 0x13:

- RX_ZIGBEE: "Receive Packet frame - 0x90" example of the Digi XBee 3 Zigbee RF Module guide (also in the 2009
  XBee ZB manual, which misprints its Length as 0x11): source 0x0013A200 40522BAA, 16-bit 0x7D84, options 0x01
  (acknowledged), data "RxData", checksum 0x0D.
- RX_SX: "Receive Packet - 0x90" example of the XBee SX 868 RF Module guide: source 0x0013A200 41AEB54E, reserved
  0xFFFE, options 0xC1, data "TxData", checksum 0xC4.
- TX_900HP: "Transmit Request frame - 0x10" example of the XBee-PRO 900HP guide, which prints the AP=2 form
  itself: frame id 1, destination 0x0013A200 400A0127, 0xFFFE, radius 0, options 0, "TxData0A", checksum 0x13.
- TX_SX_BROADCAST: "Transmit Request - 0x10" broadcast example of the XBee SX 868 guide: frame id 0, destination
  0x000000000000FFFF, 0xFFFE, radius 1, options 0, "Broadcast", checksum 0x60 (no octet needs escaping).

The Transmit Status frame (0x8B) used as a frame of another type was written from the format, checksum by hand.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqttsn.codec import Encapsulated, PingReq, Publish, decode, encode
from gateway.mqttsn.framing import (
    BROADCAST_64,
    LengthFramer,
    XBeeFramer,
    XBeeRx,
    encode_frame,
    encode_tx,
    escape,
)
from tests.mqttsn.test_codec import messages, plain_messages

PROPERTY_SETTINGS = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def feed_split(framer: LengthFramer | XBeeFramer, stream: bytes, cuts: list[int]) -> list[object]:
    out: list[object] = []
    last = 0
    for cut in [*sorted(cuts), len(stream)]:
        out += framer.feed(stream[last:cut])
        last = cut
    return out


# ===============================================================================================================
# LengthFramer

# Frames written by hand (see tests/mqttsn/test_codec.py for their layouts): a CONNECT, a PUBLISH in the 3-octet
# Length form, an encapsulated PINGREQ from node 0x0102, an encapsulated 3-octet-Length PUBLISH, a PINGRESP.
LONG_PUBLISH = h("01 01 35 0c 00 00 2a 00 00") + bytes(i % 251 for i in range(300))
FRAMES = [
    h("0d 04 0c 01 00 3c") + b"sensor1",
    LONG_PUBLISH,
    h("05 fe 01 01 02 02 16"),
    h("04 fe 00 09") + LONG_PUBLISH,
    h("02 17"),
]
STREAM = b"".join(FRAMES)


def test_frames_back_to_back() -> None:
    framer = LengthFramer()
    assert framer.feed(STREAM) == FRAMES
    assert framer.buffered == 0 and framer.discarded == 0
    encapsulated = decode(FRAMES[3])
    assert isinstance(encapsulated, Encapsulated) and encapsulated.node_id == b"\x09"
    assert decode(encapsulated.inner) == decode(LONG_PUBLISH)


def test_frames_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        assert feed_split(LengthFramer(), STREAM, [cut]) == FRAMES, cut


def test_frames_fed_one_byte_at_a_time() -> None:
    framer = LengthFramer()
    out: list[bytes] = []
    for byte in STREAM:
        out += framer.feed(bytes((byte,)))
    assert out == FRAMES


def test_garbage_between_frames_is_skipped() -> None:
    # 0x00 is no Length; 0xFF 0x03 has a reserved MsgType; 0x03 0x00 0x00 would be a 3-octet ADVERTISE, which
    # must be 5 octets: none of them is a frame, and the frames around them come through.
    noise = h("00 ff 03 00")
    framer = LengthFramer()
    assert framer.feed(FRAMES[0] + noise + FRAMES[2] + noise + noise + FRAMES[4]) == [FRAMES[0], FRAMES[2], FRAMES[4]]
    assert framer.discarded == 3 * len(noise)


def test_a_frame_that_does_not_decode_is_skipped() -> None:
    """A CONNECT with Length 5 (a crash for two reference gateways) is noise on a serial line."""
    framer = LengthFramer()
    assert framer.feed(FRAMES[0] + h("05 04 04 01 00") + FRAMES[2]) == [FRAMES[0], FRAMES[2]]
    assert framer.discarded == 5


def test_noise_claiming_a_long_frame_is_dropped_when_the_line_goes_idle() -> None:
    """0xFF 0x00 looks like the start of a 255-octet ADVERTISE: the frame behind it waits, until the transport
    reports a quiet line."""
    framer = LengthFramer()
    assert framer.feed(h("ff 00") + FRAMES[0] + FRAMES[4]) == []
    assert framer.idle() == [FRAMES[0], FRAMES[4]]
    assert framer.buffered == 0 and framer.discarded == 2
    assert framer.feed(FRAMES[2]) == [FRAMES[2]]


def test_idle_drops_a_truncated_frame() -> None:
    framer = LengthFramer()
    assert framer.feed(FRAMES[0][:5]) == []
    assert framer.idle() == []
    assert framer.buffered == 0 and framer.discarded == 5
    assert framer.feed(FRAMES[0]) == [FRAMES[0]]


def test_frames_over_the_limit_are_noise_and_the_buffer_stays_bounded() -> None:
    # Without a start marker, any octet of a refused frame may look like a Length: this one is chosen so that none
    # of its octets starts a frame that decodes (Length 0x01C8: "01 C8 0C" and "C8 0C" claim more than 64 octets;
    # 0xAA is a reserved MsgType and 170 > 64).
    framer = LengthFramer(max_frame=64)
    big = encode(Publish(1, 0, b"\xaa" * 447))
    assert big[:4] == h("01 01 c8 0c")
    assert framer.feed(big + FRAMES[0]) == [FRAMES[0]]
    assert framer.discarded == len(big)
    assert framer.feed(h("01 00 40 0c") + b"\xaa" * 40) == []  # a 64-octet PUBLISH still fits: it waits
    assert framer.buffered == 44


def test_nested_encapsulation_is_noise() -> None:
    """A forwarder does not wrap an encapsulation in another (§5.5): the outer header is noise, the inner frame
    is found once the line goes quiet (the octets after the outer header look like the start of a long frame)."""
    nested = h("04 fe 00 01") + h("05 fe 01 01 02 02 16")
    framer = LengthFramer()
    out = framer.feed(nested + FRAMES[4])
    assert out + framer.idle() == [h("05 fe 01 01 02 02 16"), FRAMES[4]]


@PROPERTY_SETTINGS
@given(frames=st.lists(messages.map(encode), max_size=6), data=st.data())
def test_any_frames_in_any_pieces(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    framer = LengthFramer(max_frame=0xFFFF)
    assert feed_split(framer, stream, cuts) == frames
    assert framer.buffered == 0


@PROPERTY_SETTINGS
@given(frames=st.lists(plain_messages.map(encode), min_size=1, max_size=4), data=st.data())
def test_frames_after_noise_and_a_quiet_line(frames: list[bytes], data: st.DataObject) -> None:
    """Whatever noise comes first, a frame sent after the line went quiet is found whole."""
    framer = LengthFramer(max_frame=0xFFFF)
    framer.feed(data.draw(st.binary(max_size=40)))
    framer.idle()
    assert framer.feed(b"".join(frames)) == frames


@PROPERTY_SETTINGS
@given(chunks=st.lists(st.binary(max_size=300), max_size=8))
def test_arbitrary_bytes_never_break_the_framer(chunks: list[bytes]) -> None:
    framer = LengthFramer(max_frame=256)
    for chunk in chunks:
        for frame in framer.feed(chunk):
            decode(frame)  # every frame returned is a message
        assert framer.buffered < 256
    for frame in framer.idle():
        decode(frame)
    assert framer.buffered == 0


# ===============================================================================================================
# XBee API mode 2

RX_ZIGBEE = h("7e 00 12 90 00 7d 33 a2 00 40 52 2b aa 7d 5d 84 01 52 78 44 61 74 61 0d")  # 0x13, 0x7D escaped
RX_ZIGBEE_AP1 = h("7e 00 12 90 00 13 a2 00 40 52 2b aa 7d 84 01 52 78 44 61 74 61 0d")  # as printed (AP=1)
RX_SX = h("7e 00 12 90 00 7d 33 a2 00 41 ae b5 4e ff fe c1 54 78 44 61 74 61 c4")  # 0x13 escaped
TX_900HP = h("7e 00 16 10 01 00 7d 33 a2 00 40 0a 01 27 ff fe 00 00 54 78 44 61 74 61 30 41 7d 33")
TX_SX_BROADCAST = h("7e 00 17 10 00 00 00 00 00 00 00 ff ff ff fe 01 00 42 72 6f 61 64 63 61 73 74 60")
TX_STATUS = h("7e 00 07 8b 01 ff fe 00 00 00 76")  # Transmit Status: frame 1, 0xFFFE, 0 retries, success

ZIGBEE_PACKET = XBeeRx(h("00 13 a2 00 40 52 2b aa"), 0x7D84, 0x01, b"RxData")
SX_PACKET = XBeeRx(h("00 13 a2 00 41 ae b5 4e"), 0xFFFE, 0xC1, b"TxData")


def test_documented_receive_packets() -> None:
    framer = XBeeFramer()
    assert framer.feed(RX_ZIGBEE) == [ZIGBEE_PACKET]
    assert framer.feed(RX_SX) == [SX_PACKET]
    assert (framer.discarded, framer.bad_frames, framer.ignored, framer.buffered) == (0, 0, {}, 0)


def test_documented_checksums_hold_before_escaping() -> None:
    """The AP=1 frame as printed: its checksum is what `encode_frame` computes, and mode 2 escapes it as above."""
    frame_data = RX_ZIGBEE_AP1[3:-1]
    assert 0xFF - (sum(frame_data) & 0xFF) == RX_ZIGBEE_AP1[-1]
    assert encode_frame(frame_data) == RX_ZIGBEE


def test_documented_transmit_requests() -> None:
    assert encode_tx(b"TxData0A", h("00 13 a2 00 40 0a 01 27"), 0xFFFE, frame_id=1) == TX_900HP
    assert encode_tx(b"Broadcast", BROADCAST_64, frame_id=0, radius=1) == TX_SX_BROADCAST


def test_other_frame_types_are_ignored_and_counted() -> None:
    framer = XBeeFramer()
    assert framer.feed(TX_STATUS + TX_900HP + RX_SX + TX_STATUS) == [SX_PACKET]
    assert framer.ignored == {0x8B: 2, 0x10: 1}
    assert framer.bad_frames == 0


STREAM_XBEE = h("00 11 7d 13") + RX_ZIGBEE + TX_STATUS + RX_SX + RX_ZIGBEE


def test_xbee_split_at_every_byte_boundary() -> None:
    """Including between 0x7D and the octet it escapes, and inside the length and the checksum."""
    for cut in range(len(STREAM_XBEE) + 1):
        framer = XBeeFramer()
        assert feed_split(framer, STREAM_XBEE, [cut]) == [ZIGBEE_PACKET, SX_PACKET, ZIGBEE_PACKET], cut
        assert (framer.discarded, framer.bad_frames, framer.ignored) == (4, 0, {0x8B: 1})


def test_bad_checksum_is_dropped_and_the_next_frame_decoded() -> None:
    corrupt = bytearray(RX_SX)
    corrupt[-3] ^= 0x01  # one bit of the data
    framer = XBeeFramer()
    assert framer.feed(bytes(corrupt) + RX_ZIGBEE) == [ZIGBEE_PACKET]
    assert framer.bad_frames == 1


def test_start_delimiter_inside_a_frame_starts_over() -> None:
    framer = XBeeFramer()
    assert framer.feed(RX_SX[:10] + RX_ZIGBEE) == [ZIGBEE_PACKET]
    assert framer.bad_frames == 1
    # an escape octet just before the new start does not hide it
    assert framer.feed(RX_SX[:10] + b"\x7d" + RX_SX) == [SX_PACKET]
    assert framer.bad_frames == 2


def test_impossible_lengths_and_short_packets() -> None:
    framer = XBeeFramer(max_length=100)
    short_rx = encode_frame(h("90 00 13 a2 00 41 ae b5 4e ff fe"))  # no options octet
    assert framer.feed(h("7e 00 00") + h("7e 01 00 90") + short_rx + RX_SX) == [SX_PACKET]
    assert framer.bad_frames == 3
    assert framer.discarded == 1  # the 0x90 after the refused length of 256


def test_escaping_of_every_special_octet() -> None:
    special = bytes((0x7E, 0x7D, 0x11, 0x13))
    assert escape(special + b"\x00\x20\x5e") == h("7d 5e 7d 5d 7d 31 7d 33 00 20 5e")
    packet = XBeeRx(special * 2, 0x7E7D, 0x11, special + b"mqtt-sn" + special)
    frame = encode_frame(bytes((0x90,)) + packet.source64 + h("7e 7d 11") + packet.payload)
    assert 0x11 not in frame and 0x13 not in frame and 0x7E not in frame[1:]
    assert XBeeFramer().feed(frame) == [packet]


def test_receive_packet_carrying_mqtt_sn() -> None:
    """The payload of an RX packet is one MQTT-SN message; the 64-bit source is the node id."""
    frame = encode_frame(bytes((0x90,)) + h("00 13 a2 00 40 52 2b aa ff fe 01") + encode(PingReq("sensor1")))
    [packet] = XBeeFramer().feed(frame)
    assert packet.source64 == h("00 13 a2 00 40 52 2b aa")
    assert decode(packet.payload) == PingReq("sensor1")


def test_encode_tx_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="8 octets"):
        encode_tx(b"x", b"\x00" * 7)
    with pytest.raises(ValueError, match="frame id"):
        encode_tx(b"x", BROADCAST_64, frame_id=256)
    with pytest.raises(ValueError, match="16-bit"):
        encode_tx(b"x", BROADCAST_64, 0x10000)


rx_packets = st.builds(
    XBeeRx, st.binary(min_size=8, max_size=8), st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.binary(max_size=80)
)


def rx_frame(packet: XBeeRx) -> bytes:
    header = bytes((0x90,)) + packet.source64 + packet.source16.to_bytes(2, "big") + bytes((packet.options,))
    return encode_frame(header + packet.payload)


@PROPERTY_SETTINGS
@given(packets=st.lists(rx_packets, max_size=5), data=st.data())
def test_any_rx_packets_in_any_pieces(packets: list[XBeeRx], data: st.DataObject) -> None:
    stream = b"".join(rx_frame(p) for p in packets)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    framer = XBeeFramer()
    assert feed_split(framer, stream, cuts) == packets
    assert framer.buffered == 0 and framer.bad_frames == 0


@PROPERTY_SETTINGS
@given(noise=st.binary(max_size=60), packet=rx_packets)
def test_a_frame_after_any_noise_is_found(noise: bytes, packet: XBeeRx) -> None:
    """The start delimiter is never escaped, so noise cannot swallow the frame that follows it."""
    framer = XBeeFramer()
    assert framer.feed(noise + rx_frame(packet))[-1:] == [packet]


@PROPERTY_SETTINGS
@given(chunks=st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_never_break_the_xbee_framer(chunks: list[bytes]) -> None:
    framer = XBeeFramer(max_length=128)
    for chunk in chunks:
        framer.feed(chunk)
        assert framer.buffered <= 128 + 3
