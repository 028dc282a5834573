"""One device's whole life, the same over UDP and over a serial line (a pseudo-terminal the gateway opens with
pyserial): discovery, malformed input, CONNECT with a will, REGISTER, PUBLISH at QoS 0, 1, 2 and -1 (pre-defined id
and short name), a subscription fed by a paho-mqtt client, sleep and wake with buffered messages, a gateway restart
with the registrations kept, and readings read back over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import pytest

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode, TopicIdType
from tests.conftest import Client, Gateway, wait_until
from tests.system.test_mqttsn import SnClient, rows
from tests.system.test_mqttsn_serial import Radio

T0 = 1_700_000_000_000_000_000


class Link(Protocol):
    def send(self, data: bytes | codec.Message) -> None: ...

    def receive(self) -> codec.Message: ...


@pytest.fixture(params=["udp", "serial"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def radio() -> Iterator[Radio]:
    line = Radio()
    yield line
    line.close()


def start(gateway_factory: Callable[..., Gateway], transport: str, radio: Radio) -> tuple[Gateway, Link]:
    config = f'[mqttsn]\ngateway_id = 7\npredefined_topics = {{ 9 = "db/append/SCN{transport.upper()}PRE" }}\n'
    if transport == "serial":
        gateway = gateway_factory(config + f'serial_device = "{radio.path}"\n')
        assert wait_until(lambda: f"MQTT-SN serial {radio.path} open" in gateway.log())
        return gateway, radio
    gateway = gateway_factory(config)
    return gateway, SnClient(gateway.mqttsn_port)


def reading(k: int) -> bytes:
    return json.dumps(["level", T0 + k, k]).encode()


def test_a_devices_whole_life(
    gateway_factory: Callable[..., Gateway], transport: str, radio: Radio, clients: list[Client]
) -> None:
    gateway, link = start(gateway_factory, transport, radio)
    table, device = f"SCN{transport.upper()}", f"life-{transport}"
    link.send(codec.SearchGw(1))
    assert link.receive() == codec.GwInfo(7)  # §6.1
    # Malformed, each dropped alone: a PUBLISH of 3 octets, a reserved MsgType, a CONNECT cut short (§5.2, §5.4.4).
    for garbage in (b"\x03\x0c\x00", b"\x02\x03", b"\x05\x04\x04\x01\x00"):
        link.send(garbage)
    if transport == "udp":
        assert wait_until(lambda: gateway.log().count("dropped:") == 3)  # each logged with its sender and reason
    else:  # on a serial line a malformed frame cannot be told from line noise: skipped as such, and said
        assert wait_until(lambda: "skipped as line noise or not MQTT-SN" in gateway.log())
        # A quiet moment, as a real line has between noise and the next frame: the plain length framing has no
        # checksum, and the framer's search for a frame start right after noise could take a real frame's tail.
        time.sleep(0.3)
    link.send(codec.Connect(device, 600, clean_session=False, will=True))  # §6.2: the will prompts
    assert link.receive() == codec.WillTopicReq()
    link.send(codec.WillTopic(f"wills/{device}", 1))
    assert link.receive() == codec.WillMsgReq()
    link.send(codec.WillMsg(b"offline"))
    assert link.receive() == codec.ConnAck(ReturnCode.ACCEPTED)
    link.send(codec.Register(0, 1, f"db/append/{table}"))
    regack = link.receive()
    assert isinstance(regack, codec.RegAck) and regack.return_code == ReturnCode.ACCEPTED
    topic_id = regack.topic_id
    link.send(codec.Publish(topic_id, 0, reading(0), qos=0))
    link.send(codec.Publish(topic_id, 2, reading(1), qos=1))
    assert link.receive() == codec.PubAck(topic_id, 2, ReturnCode.ACCEPTED)
    link.send(codec.Publish(topic_id, 3, reading(2), qos=2))  # §6.7 QoS 2: PUBREC, PUBREL, PUBCOMP
    assert link.receive() == codec.PubRec(3)
    link.send(codec.PubRel(3))
    assert link.receive() == codec.PubComp(3)
    link.send(codec.Publish(9, 0, reading(3), qos=-1, topic_id_type=TopicIdType.PREDEFINED))  # §6.8
    watcher = Client(gateway.mqtt_port, f"watcher-{transport}")
    clients.append(watcher)
    watcher.subscribe("zz", 0)
    link.send(codec.Publish(codec.short_topic_id("zz"), 0, b"short", qos=-1, topic_id_type=TopicIdType.SHORT))
    assert watcher.expect().payload == b"short"
    # A subscription fed by MQTT: REGISTER (§6.10), REGACK, then the PUBLISH.
    link.send(codec.Subscribe(4, f"cmd/{device}/#", qos=1))
    assert link.receive() == codec.SubAck(0, 4, ReturnCode.ACCEPTED, 1)
    commander = Client(gateway.mqtt_port, f"commander-{transport}")
    clients.append(commander)
    commander.publish(f"cmd/{device}/led", b"on", 1)
    register = link.receive()
    assert isinstance(register, codec.Register) and register.topic_name == f"cmd/{device}/led"
    link.send(codec.RegAck(register.topic_id, register.msg_id, ReturnCode.ACCEPTED))
    delivered = link.receive()
    assert isinstance(delivered, codec.Publish) and (delivered.topic_id, delivered.data) == (register.topic_id, b"on")
    link.send(codec.PubAck(delivered.topic_id, delivered.msg_id, ReturnCode.ACCEPTED))
    # Asleep (§6.14): the next command waits for the wake.
    link.send(codec.Disconnect(600))
    assert link.receive() == codec.Disconnect()
    commander.publish(f"cmd/{device}/led", b"off", 1)
    # The gateway restarts; the sleeper's topic ids, subscription and buffer are kept.
    gateway.restart()
    if transport == "serial":
        assert wait_until(lambda: f"MQTT-SN serial {radio.path} open" in gateway.log())
    link.send(codec.PingReq(device))
    buffered = link.receive()
    assert isinstance(buffered, codec.Publish) and (buffered.topic_id, buffered.data) == (register.topic_id, b"off")
    assert link.receive() == codec.PingResp()
    link.send(codec.PubAck(buffered.topic_id, buffered.msg_id, ReturnCode.ACCEPTED))
    link.send(codec.Connect(device, 600, clean_session=False))  # awake for good, same session
    assert link.receive() == codec.ConnAck(ReturnCode.ACCEPTED)
    link.send(codec.Publish(topic_id, 5, reading(4), qos=1))  # the topic id from before the restart
    assert link.receive() == codec.PubAck(topic_id, 5, ReturnCode.ACCEPTED)
    link.send(codec.Disconnect())
    assert link.receive() == codec.Disconnect()
    expected = [["level", T0 + k, float(k)] for k in (0, 1, 2, 4)]
    assert wait_until(lambda: rows(gateway, f"select name, time, value from {table}") == expected)
    assert rows(gateway, f"select name, time, value from {table}pre") == [["level", T0 + 3, 3.0]]
    if isinstance(link, SnClient):
        link.close()
