"""MQTT-SN over a serial line: the gateway opens one end of a pseudo-terminal pair with pyserial, the test plays
the radio on the other: plain frames, frames from nodes behind a forwarder (§5.5), line noise."""

from __future__ import annotations

import json
import os
import select
import tty
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode
from gateway.mqttsn.framing import LengthFramer
from tests.conftest import Gateway, wait_until

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


def rows(gateway: Gateway, sql: str) -> Any:
    url = f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["rows"]


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
