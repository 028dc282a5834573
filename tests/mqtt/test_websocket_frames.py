"""The sans-I/O WebSocket layer of MQTT over WebSocket (`gateway.mqtt.websocket.WebSocketFrames`): bytes in, the
MQTT stream and the bytes to send back out. Frames are made by hand (tests/websocket/rawws.py), and the MQTT
stream is checked by the gateway's own packet reader, as the connection will read it.

"§6" is MQTT 5.0 §6 (3.1.1 §6 says the same): packets need not be aligned on frame boundaries."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt.codec import Connect, PingReq, Publish, Reader
from gateway.mqtt.websocket import Received, WebSocketFrames
from tests.rawmqtt import PINGREQ, connect_packet, packet, publish_packet
from tests.websocket.rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    KEY,
    PING,
    PONG,
    TEXT,
    Frame,
    accept_token,
    binary,
    frame,
    parse_frames,
    split_response,
    upgrade_request,
)

CONNECT = connect_packet("browser-1", keepalive=30)
PUBLISH = publish_packet("db/append/WS", b'["t", 1700000000000000000, 21.5]', qos=1, packet_id=7)
PING_PACKET = packet(PINGREQ, b"")
STREAM = CONNECT + PUBLISH + PING_PACKET
EXPECTED = [
    Connect("browser-1", keep_alive=30),
    Publish("db/append/WS", b'["t", 1700000000000000000, 21.5]', qos=1, packet_id=7),
    PingReq(),
]


def opened(protocols: str | None = "mqtt") -> tuple[WebSocketFrames, Received]:
    frames = WebSocketFrames("/mqtt")
    got = frames.receive(upgrade_request("/mqtt", protocols))
    return frames, got


def feed(frames: WebSocketFrames, chunks: list[bytes]) -> tuple[bytes, bytes]:
    """Each chunk as one read of the socket: (the MQTT stream, the replies)."""
    mqtt, reply = b"", b""
    for chunk in chunks:
        got = frames.receive(chunk)
        assert not got.close, got
        mqtt += got.mqtt
        reply += got.reply
    return mqtt, reply


def packets(stream: bytes) -> list[object]:
    return list(Reader().feed(stream))


# ---------------------------------------------------------------------------------------------------------------
# The opening handshake


def test_the_upgrade_is_accepted_with_the_mqtt_subprotocol() -> None:
    frames, got = opened()
    status, headers, rest = split_response(got.reply)
    assert (status, rest) == (101, b"")
    assert headers["upgrade"].lower() == "websocket" and headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-accept"] == accept_token(KEY)
    assert headers["sec-websocket-protocol"] == "mqtt"
    assert got.opened and not got.close and not got.problem and frames.open


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"), ("chat, mqttv3.1, mqtt", "mqttv3.1"), ("mqtt, mqttv3.1", "mqtt")],
)
def test_the_answer_is_the_clients_first_mqtt_subprotocol(offered: str, answered: str) -> None:
    _frames, got = opened(offered)
    status, headers, _rest = split_response(got.reply)
    assert (status, headers["sec-websocket-protocol"]) == (101, answered)


def test_a_client_offering_no_subprotocol_gets_mqtt_without_one() -> None:
    frames, got = opened(None)
    status, headers, _rest = split_response(got.reply)
    assert status == 101 and "sec-websocket-protocol" not in headers and frames.open


def test_a_request_split_into_single_bytes_opens_only_when_complete() -> None:
    frames = WebSocketFrames("/mqtt")
    request = upgrade_request()
    for byte in request[:-1]:
        got = frames.receive(bytes([byte]))
        assert got == Received(), got
    got = frames.receive(request[-1:])
    assert got.opened and split_response(got.reply)[0] == 101


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # a plain GET: no upgrade
        (b"POST /mqtt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400),
        (upgrade_request("/"), 404),
        (upgrade_request("/mqtt/other"), 404),
        (upgrade_request("/mqtt", "chat, superchat"), 400),  # no MQTT subprotocol among those offered
        (upgrade_request().replace(b"Version: 13", b"Version: 8"), 426),  # RFC 6455 §4.4
        (b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", 400),  # MQTT straight on the WebSocket port
    ],
    ids=["plain-get", "post", "root-path", "other-path", "no-mqtt-subprotocol", "old-version", "raw-mqtt"],
)
def test_anything_but_an_mqtt_upgrade_gets_an_http_error_and_a_close(request_bytes: bytes, status: int) -> None:
    frames = WebSocketFrames("/mqtt")
    got = frames.receive(request_bytes)
    answer, headers, body = split_response(got.reply)
    assert answer == status, got.reply
    assert headers["connection"] == "close" and int(headers["content-length"]) == len(body) > 0
    assert got.close and got.problem and not got.opened and not frames.open
    assert got.mqtt == b""
    # Whatever follows is not read: the socket is closing.
    assert frames.receive(binary(CONNECT)) == Received()


def test_a_query_string_does_not_change_the_path() -> None:
    frames = WebSocketFrames("/mqtt")
    assert frames.receive(upgrade_request("/mqtt?token=x")).opened


# ---------------------------------------------------------------------------------------------------------------
# Frames in, the MQTT stream out (§6)


def test_one_frame_holding_several_packets_gives_them_all() -> None:
    frames, _ = opened()
    mqtt, reply = feed(frames, [binary(STREAM)])
    assert (mqtt, reply) == (STREAM, b"")
    assert packets(mqtt) == EXPECTED


def test_a_packet_spanning_frames_and_fragments_is_joined() -> None:
    """CONNECT cut into a fragmented message (first frame, continuations), PUBLISH across two whole messages."""
    frames, _ = opened()
    chunks = [
        frame(BINARY, CONNECT[:3], fin=False),
        frame(CONTINUATION, CONNECT[3:10], fin=False),
        frame(CONTINUATION, CONNECT[10:], fin=True),
        binary(PUBLISH[:5]),
        binary(PUBLISH[5:] + PING_PACKET),
    ]
    mqtt, _reply = feed(frames, chunks)
    assert mqtt == STREAM and packets(mqtt) == EXPECTED


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), unique=True), st.integers(1, 40))
def test_any_frame_split_and_any_read_split_give_the_same_stream(cuts: list[int], read_size: int) -> None:
    """The stream cut into frames anywhere, the frames' bytes then read in chunks of any size."""
    frames, _ = opened()
    bounds = [0, *sorted(cuts), len(STREAM)]
    wire = b"".join(binary(STREAM[a:b]) for a, b in itertools.pairwise(bounds))
    mqtt, reply = feed(frames, [wire[i : i + read_size] for i in range(0, len(wire), read_size)])
    assert (mqtt, reply) == (STREAM, b"")
    assert packets(mqtt) == EXPECTED


def test_a_large_frame_with_a_64_bit_length_is_unwrapped() -> None:
    payload = bytes(range(256)) * 300  # 76800 bytes: the 8-byte length form
    big = publish_packet("t/big", payload)
    frames, _ = opened()
    mqtt, _reply = feed(frames, [binary(big)])
    assert packets(mqtt) == [Publish("t/big", payload)]


def test_a_ping_between_fragments_is_answered_and_leaves_the_stream_alone() -> None:
    frames, _ = opened()
    chunks = [frame(BINARY, CONNECT[:4], fin=False), frame(PING, b"are you there"), frame(CONTINUATION, CONNECT[4:])]
    mqtt, reply = feed(frames, chunks)
    assert mqtt == CONNECT
    assert parse_frames(reply) == ([Frame(True, PONG, b"are you there")], b"")


# ---------------------------------------------------------------------------------------------------------------
# MQTT bytes out: binary frames


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_outgoing_bytes_are_one_unmasked_binary_frame(size: int) -> None:
    frames, _ = opened()
    data = bytes(i % 251 for i in range(size))
    assert parse_frames(frames.wrap(data)) == ([Frame(True, BINARY, data)], b"")


def test_nothing_is_sent_before_the_handshake_nor_after_the_close() -> None:
    frames = WebSocketFrames("/mqtt")
    assert frames.wrap(PING_PACKET) == b"" and frames.close() == b""
    frames.receive(upgrade_request())
    closing, _rest = parse_frames(frames.close())
    assert [(f.opcode, f.payload[:2]) for f in closing] == [(CLOSE, b"\x03\xe8")]  # 1000: normal closure
    assert frames.wrap(PING_PACKET) == b"" and frames.close() == b"" and not frames.open


# ---------------------------------------------------------------------------------------------------------------
# Closing


def test_the_clients_close_is_answered_after_the_mqtt_bytes_before_it() -> None:
    frames, _ = opened()
    got = frames.receive(binary(PING_PACKET) + frame(CLOSE, b"\x03\xe9going away"))
    assert got.mqtt == PING_PACKET and got.close and not got.problem
    closing, _rest = parse_frames(got.reply)
    assert [(f.opcode, f.payload[:2]) for f in closing] == [(CLOSE, b"\x03\xe9")]  # its own code echoed
    assert frames.receive(binary(PING_PACKET)) == Received()


def test_the_answer_to_our_close_ends_it_quietly() -> None:
    frames, _ = opened()
    frames.close()
    got = frames.receive(frame(CLOSE, b"\x03\xe8"))
    assert got.close and not got.problem and got.reply == b""


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (binary(CONNECT, mask=None), 1002),  # a client's frame must be masked (RFC 6455 §5.1)
        (b"\xff\xfe\xfd\xfc garbage that is no frame", 1002),  # reserved bits and opcode
        (frame(PING, b"x", fin=False), 1002),  # a fragmented control frame
        (frame(TEXT, b"\x10\x0c"), 1003),  # §6: MQTT only in binary frames
    ],
    ids=["unmasked", "garbage", "fragmented-ping", "text"],
)
def test_a_bad_frame_closes_with_its_code_after_the_good_bytes_before_it(wire: bytes, code: int) -> None:
    frames, _ = opened()
    got = frames.receive(binary(CONNECT) + wire)
    assert got.mqtt == CONNECT
    assert got.close and got.problem
    closing, _rest = parse_frames(got.reply)
    assert [(f.opcode, int.from_bytes(f.payload[:2], "big")) for f in closing] == [(CLOSE, code)]
    assert frames.receive(binary(PING_PACKET)) == Received() and frames.wrap(PING_PACKET) == b""
