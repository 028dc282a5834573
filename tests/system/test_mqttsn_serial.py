"""MQTT-SN over a serial line: the gateway opens one end of a pseudo-terminal pair with pyserial, the test plays
the radio on the other: plain frames, frames from nodes behind a forwarder (§5.5), line noise."""

from __future__ import annotations

import json
import os
import select
import tty
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode
from gateway.mqttsn.framing import LengthFramer
from tests.conftest import Gateway, wait_until
from tests.system.test_mqttsn import rows

T0 = 1_700_000_000_000_000_000


class Radio:
    """The other end of the serial line."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        self.path = os.ttyname(self._slave)
        self._framer = LengthFramer()
        self._frames: list[bytes] = []

    def send(self, data: bytes | codec.Message) -> None:
        os.write(self.master, data if isinstance(data, bytes) else codec.encode(data))

    def frame(self, timeout: float = 5.0) -> bytes:
        while not self._frames:
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, "nothing came back on the serial line"
            self._frames += self._framer.feed(os.read(self.master, 4096))
        return self._frames.pop(0)

    def receive(self) -> codec.Message:
        return codec.decode(self.frame())

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def radio() -> Iterator[Radio]:
    line = Radio()
    yield line
    line.close()


def on_serial(gateway_factory: Callable[..., Gateway], radio: Radio) -> Gateway:
    gateway = gateway_factory(f'[mqttsn]\nserial_device = "{radio.path}"\nserial_baudrate = 115200\n')
    assert wait_until(lambda: f"MQTT-SN serial {radio.path} open" in gateway.log())
    return gateway


def test_a_device_on_the_serial_line_publishes_durably(gateway_factory: Callable[..., Gateway], radio: Radio) -> None:
    gateway = on_serial(gateway_factory, radio)
    radio.send(b"\x00\xff\x13garbage")  # line noise before the first frame
    radio.send(codec.Connect("uart-sensor", 60))
    assert radio.receive() == codec.ConnAck(ReturnCode.ACCEPTED)
    radio.send(codec.Register(0, 1, "db/append/SERIAL"))
    regack = radio.receive()
    assert isinstance(regack, codec.RegAck) and regack.return_code == ReturnCode.ACCEPTED
    radio.send(codec.Publish(regack.topic_id, 2, json.dumps(["soil", T0, 0.42]).encode(), qos=1))
    assert radio.receive() == codec.PubAck(regack.topic_id, 2, ReturnCode.ACCEPTED)
    assert rows(gateway, "select name, time, value from serial") == [["soil", T0, 0.42]]


def test_nodes_behind_a_forwarder_are_told_apart_by_their_node_id(
    gateway_factory: Callable[..., Gateway], radio: Radio
) -> None:
    """§5.5: each node's messages come wrapped with its Wireless Node Id; the answers go back wrapped the same."""
    on_serial(gateway_factory, radio)
    for node, name in ((b"\x00\x01", "node-a"), (b"\x00\x02", "node-b")):
        inner = codec.encode(codec.Connect(name, 60))
        radio.send(bytes((3 + len(node), codec.MsgType.ENCAPSULATED, 0)) + node + inner)
        answer = radio.receive()
        assert isinstance(answer, codec.Encapsulated) and answer.node_id == node
        assert codec.decode(answer.inner) == codec.ConnAck(ReturnCode.ACCEPTED)
    inner = codec.encode(codec.PingReq())
    radio.send(bytes((5, codec.MsgType.ENCAPSULATED, 0)) + b"\x00\x02" + inner)
    answer = radio.receive()
    assert isinstance(answer, codec.Encapsulated) and answer.node_id == b"\x00\x02"
    assert codec.decode(answer.inner) == codec.PingResp()


def test_a_device_plugged_in_later_is_opened_without_a_restart(
    gateway_factory: Callable[..., Gateway], radio: Radio, tmp_path: Any
) -> None:
    link = tmp_path / "ttyRADIO"  # like a udev symlink that appears when the USB radio is plugged in
    gateway = gateway_factory(f'[mqttsn]\nserial_device = "{link}"\n')
    assert wait_until(lambda: "cannot be opened" in gateway.log())
    link.symlink_to(radio.path)
    assert wait_until(lambda: f"MQTT-SN serial {link} open" in gateway.log(), timeout=10)
    radio.send(codec.Connect("late", 60))
    assert radio.receive() == codec.ConnAck(ReturnCode.ACCEPTED)


def test_an_xbee_coordinator_in_api_mode_2(gateway_factory: Callable[..., Gateway], radio: Radio) -> None:
    """Digi XBee API mode 2 on the UART: a node's messages arrive as RX packets (0x90) from its 64-bit address;
    the answers go back as TX requests (0x10) to that address. The RX frame is built by hand from Digi's format:
    0x7E, length, 0x90, source64, source16, options, payload, checksum, with 0x7E 0x7D 0x11 0x13 escaped."""
    gateway = gateway_factory(f'[mqttsn]\nserial_device = "{radio.path}"\nserial_framing = "xbee"\n')
    assert wait_until(lambda: f"MQTT-SN serial {radio.path} open" in gateway.log())
    source64 = bytes.fromhex("0013a20040a7d11e")  # holds 0x13 and 0x11, escaped on the wire
    connect = codec.encode(codec.Connect("xbee-node", 60))
    frame_data = b"\x90" + source64 + b"\x12\x34" + b"\x01" + connect
    checksum = 0xFF - (sum(frame_data) & 0xFF)
    body = len(frame_data).to_bytes(2, "big") + frame_data + bytes((checksum,))
    escaped = b"".join(b"\x7d" + bytes((b ^ 0x20,)) if b in (0x7E, 0x7D, 0x11, 0x13) else bytes((b,)) for b in body)
    os.write(radio.master, b"\x7e" + escaped)
    reply = b""
    while True:  # one TX request frame back: unescape it and read its fields
        ready, _, _ = select.select([radio.master], [], [], 5)
        assert ready, "no TX request came back"
        reply += os.read(radio.master, 4096)
        raw = bytearray()
        escape = False
        for byte in reply[1:]:
            if escape:
                raw.append(byte ^ 0x20)
                escape = False
            elif byte == 0x7D:
                escape = True
            else:
                raw.append(byte)
        if len(raw) >= 2 and len(raw) >= int.from_bytes(raw[:2], "big") + 3:
            break
    assert reply[0] == 0x7E
    length = int.from_bytes(raw[:2], "big")
    data = bytes(raw[2 : 2 + length])
    assert (sum(data) + raw[2 + length]) & 0xFF == 0xFF  # the checksum
    assert data[0] == 0x10 and data[2:10] == source64 and data[10:12] == b"\x12\x34"  # TX request to that node
    assert codec.decode(data[14:]) == codec.ConnAck(ReturnCode.ACCEPTED)
