"""The MQTT-SN gateway over UDP, seen from outside: a UDP client on loopback speaks MQTT-SN 1.2 to a running
gateway; what it publishes is stored and read back over HTTP, and it receives what a paho-mqtt client publishes.

The datagrams are built with gateway.mqttsn.codec, whose bytes tests/mqttsn checks against hand-written golden
bytes from the specification; the first exchange here is written out by hand as well."""

from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode, TopicIdType
from tests.conftest import Client, Gateway, wait_until

T0 = 1_700_000_000_000_000_000


class SnClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)
        self.address = ("127.0.0.1", port)

    def send(self, message: codec.Message | bytes) -> None:
        self.sock.sendto(message if isinstance(message, bytes) else codec.encode(message), self.address)

    def receive(self) -> codec.Message:
        data, _ = self.sock.recvfrom(65535)
        return codec.decode(data)

    def register(self, topic: str, msg_id: int = 1) -> codec.RegAck:
        """REGISTER a topic name; returns the REGACK, accepted."""
        self.send(codec.Register(0, msg_id, topic))
        regack = self.receive()
        assert isinstance(regack, codec.RegAck) and regack.msg_id == msg_id
        assert regack.return_code == ReturnCode.ACCEPTED
        return regack

    def connect(self, client_id: str, duration: int = 60, *, clean_session: bool = True) -> None:
        """CONNECT without a will, down to CONNACK accepted."""
        self.send(codec.Connect(client_id, duration, clean_session=clean_session))
        assert self.receive() == codec.ConnAck(ReturnCode.ACCEPTED)

    def nothing(self, wait: float = 0.3) -> bool:
        self.sock.settimeout(wait)
        try:
            self.sock.recvfrom(65535)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(5)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sn(gateway: Gateway) -> Iterator[SnClient]:
    client = SnClient(gateway.mqttsn_port)
    yield client
    client.close()


def rows(gateway: Gateway, sql: str) -> Any:
    url = f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["rows"]


def table_names(gateway: Gateway) -> str:
    with urllib.request.urlopen(f"{gateway.http_url}/api/tables", timeout=10) as response:
        return str(response.read().decode())


def connect_with_will(sn: SnClient, client_id: str, duration: int, topic: str, message: bytes, qos: int = 0) -> None:
    """CONNECT with the Will flag and the will prompts of §6.2, down to CONNACK accepted."""
    sn.send(codec.Connect(client_id, duration, will=True))
    assert sn.receive() == codec.WillTopicReq()
    sn.send(codec.WillTopic(topic, qos))
    assert sn.receive() == codec.WillMsgReq()
    sn.send(codec.WillMsg(message))
    assert sn.receive() == codec.ConnAck(ReturnCode.ACCEPTED)


def will_watcher(gateway: Gateway, clients: list[Client], client_id: str) -> Client:
    watcher = Client(gateway.mqtt_port, client_id)
    clients.append(watcher)
    watcher.subscribe("wills/#", 1)
    return watcher


def test_connect_register_and_publish_qos1_is_stored_before_its_puback(gateway: Gateway, sn: SnClient) -> None:
    # §5.4.4 CONNECT by hand: Length 13 (0x0d), MsgType 0x04, Flags 0x04 (CleanSession), ProtocolId 0x01,
    # Duration 60 (0x003c), ClientId "sensor1" (7 octets).
    sn.send(b"\x0d\x04\x04\x01\x00\x3csensor1")
    assert sn.sock.recvfrom(16)[0] == b"\x03\x05\x00"  # §5.4.5 CONNACK accepted: 3 octets
    sn.send(codec.Register(0, 1, "db/append/SN"))
    regack = sn.receive()
    assert isinstance(regack, codec.RegAck) and regack.msg_id == 1 and regack.return_code == ReturnCode.ACCEPTED
    payload = json.dumps([["temp", T0, 21.5], ["temp", T0 + 1, 22.0]]).encode()
    sn.send(codec.Publish(regack.topic_id, 7, payload, qos=1))
    puback = sn.receive()
    assert puback == codec.PubAck(regack.topic_id, 7, ReturnCode.ACCEPTED)  # echoes the topic id (§5.4.13)
    # Acknowledged means stored: readable at once.
    assert rows(gateway, "select name, time, value from sn") == [["temp", T0, 21.5], ["temp", T0 + 1, 22.0]]


def test_a_bad_payload_is_refused_with_a_return_code_and_nothing_is_stored(gateway: Gateway, sn: SnClient) -> None:
    sn.connect("sensor2")
    regack = sn.register("db/append/SNBAD")
    sn.send(codec.Publish(regack.topic_id, 2, b'[["a", 1, 1.0], ["b", 1, "warm"]]', qos=1))
    assert sn.receive() == codec.PubAck(regack.topic_id, 2, ReturnCode.NOT_SUPPORTED)
    sn.send(codec.Publish(0x1234, 3, b"[]", qos=1))  # never registered
    assert sn.receive() == codec.PubAck(0x1234, 3, ReturnCode.INVALID_TOPIC_ID)
    sn.send(codec.PingReq())
    assert sn.receive() == codec.PingResp()  # still connected
    assert "row 2" in gateway.log()


def test_subscriber_gets_a_register_then_what_a_paho_client_publishes(
    gateway: Gateway, sn: SnClient, clients: list[Client]
) -> None:
    sn.connect("listener")
    sn.send(codec.Subscribe(1, "alerts/#", qos=1))
    suback = sn.receive()
    assert suback == codec.SubAck(0, 1, ReturnCode.ACCEPTED, 1)  # a wildcard filter has no topic id (§5.4.16)
    paho = Client(gateway.mqtt_port, "paho-alerter")
    clients.append(paho)
    paho.publish("alerts/kitchen", b"smoke", 1)
    register = sn.receive()
    assert isinstance(register, codec.Register) and register.topic_name == "alerts/kitchen"  # §6.10
    assert sn.nothing()  # the PUBLISH waits for the REGACK
    sn.send(codec.RegAck(register.topic_id, register.msg_id, ReturnCode.ACCEPTED))
    publish = sn.receive()
    assert isinstance(publish, codec.Publish)
    assert (publish.topic_id, publish.data, publish.qos) == (register.topic_id, b"smoke", 1)
    sn.send(codec.PubAck(publish.topic_id, publish.msg_id, ReturnCode.ACCEPTED))
    # A short topic name travels in the id field and is echoed as it came (§6.7).
    paho.subscribe("ab", 0)
    sn.send(codec.Publish(codec.short_topic_id("ab"), 0, b"short", qos=0, topic_id_type=TopicIdType.SHORT))
    assert paho.expect().payload == b"short"
    sn.send(codec.Disconnect())
    assert sn.receive() == codec.Disconnect()


def test_searchgw_gets_gwinfo_and_bad_datagrams_change_nothing(gateway: Gateway, sn: SnClient) -> None:
    sn.send(codec.SearchGw(1))
    assert sn.receive() == codec.GwInfo(1)
    for garbage in (b"", b"\x05\x04\x04\x01", b"\x03\x0c\x00", b"\xff" * 40, b"\x02\x03"):
        sn.send(garbage)  # the facts file's crashers: CONNECT with Length 5, a 3-octet PUBLISH, ...
    assert sn.nothing()
    sn.connect("survivor")
    assert "MQTT-SN datagram from" in gateway.log()


def test_a_client_silent_past_its_keepalive_is_lost_and_its_will_published(
    gateway: Gateway, sn: SnClient, clients: list[Client]
) -> None:
    """§6.2 will prompts, §6.11: 1.5 x the keep-alive without a message and the will goes out."""
    watcher = will_watcher(gateway, clients, "will-watcher")
    connect_with_will(sn, "mortal", 1, "wills/mortal", b"gone", 1)
    watcher.expect_none(0.8)  # alive within its keep-alive
    message = watcher.expect(timeout=5)
    assert (message.topic, message.payload) == ("wills/mortal", b"gone")
    assert "lost" in gateway.log()


def test_a_sleeping_client_gets_what_was_buffered_when_it_wakes_then_pingresp(
    gateway: Gateway, sn: SnClient, clients: list[Client]
) -> None:
    """§6.14: DISCONNECT with a duration: messages wait (QoS 0 too); PINGREQ with the client id wakes it: the
    buffered PUBLISHes, then PINGRESP."""
    sn.connect("sleeper", clean_session=False)
    sn.send(codec.Subscribe(1, "cmd/sleeper", qos=1))
    suback = sn.receive()
    assert isinstance(suback, codec.SubAck) and suback.topic_id != 0  # a plain name gets its id in the SUBACK
    sn.send(codec.Disconnect(600))
    assert sn.receive() == codec.Disconnect()
    paho = Client(gateway.mqtt_port, "commander")
    clients.append(paho)
    paho.publish("cmd/sleeper", b"on", 1)
    paho.publish("cmd/sleeper", b"off", 0)
    assert sn.nothing(0.5)  # asleep: nothing is sent
    sn.send(codec.PingReq("sleeper"))
    got = [sn.receive() for _ in range(3)]
    assert [(type(m).__name__, getattr(m, "data", None)) for m in got] == [
        ("Publish", b"on"),
        ("Publish", b"off"),
        ("PingResp", None),
    ]
    first = got[0]
    assert isinstance(first, codec.Publish) and first.topic_id == suback.topic_id and first.qos == 1
    sn.send(codec.PubAck(first.topic_id, first.msg_id, ReturnCode.ACCEPTED))
    sn.send(codec.PingReq("sleeper"))
    assert sn.receive() == codec.PingResp()  # nothing left: acknowledged while "awake"


def test_qos_minus_one_with_a_predefined_id_is_stored_from_a_client_that_never_connected(
    gateway_factory: Callable[..., Gateway],
) -> None:
    """§6.8: a device that only sends (no CONNECT, no answer expected) to a pre-defined topic id from the config."""
    gateway = gateway_factory('[mqttsn]\npredefined_topics = { 7 = "db/append/SNONEWAY" }\n')
    sn = SnClient(gateway.mqttsn_port)
    try:
        reading = json.dumps(["door", T0, 1]).encode()
        sn.send(codec.Publish(7, 0, reading, qos=-1, topic_id_type=TopicIdType.PREDEFINED))
        sn.send(codec.Publish(8, 0, reading, qos=-1, topic_id_type=TopicIdType.PREDEFINED))  # not configured
        assert sn.nothing()  # QoS -1 is never answered
        assert wait_until(lambda: rows(gateway, "select name, time, value from snoneway") == [["door", T0, 1.0]])
        assert "unknown topic id 8" in gateway.log()
    finally:
        sn.close()


def test_topic_ids_subscriptions_and_sleep_survive_a_gateway_restart(gateway: Gateway, clients: list[Client]) -> None:
    """A known failing of other gateways: after their restart, clients' topic ids and subscriptions are gone.
    Here a connected client goes on publishing with its registered id, and a sleeping one still gets its
    buffered messages, without either connecting again."""
    awake, sleeper = SnClient(gateway.mqttsn_port), SnClient(gateway.mqttsn_port)
    try:
        awake.connect("awake", 600, clean_session=False)
        regack = awake.register("db/append/SNR")
        sleeper.connect("sleepy", 600, clean_session=False)
        sleeper.send(codec.Subscribe(1, "cmd/sleepy", qos=1))
        suback = sleeper.receive()
        assert isinstance(suback, codec.SubAck) and suback.topic_id
        sleeper.send(codec.Disconnect(600))
        assert sleeper.receive() == codec.Disconnect()

        gateway.restart()  # same ports: the clients keep their sockets, as devices keep their addresses

        awake.send(codec.Publish(regack.topic_id, 5, json.dumps(["t", T0, 1.0]).encode(), qos=1))
        assert awake.receive() == codec.PubAck(regack.topic_id, 5, ReturnCode.ACCEPTED)
        assert rows(gateway, "select name, value from snr") == [["t", 1.0]]
        paho = Client(gateway.mqtt_port, "waker")
        clients.append(paho)
        paho.publish("cmd/sleepy", b"water", 1)
        sleeper.send(codec.PingReq("sleepy"))
        delivered = sleeper.receive()
        assert isinstance(delivered, codec.Publish)
        assert (delivered.topic_id, delivered.data) == (suback.topic_id, b"water")
        assert sleeper.receive() == codec.PingResp()
    finally:
        awake.close()
        sleeper.close()


def test_discovery_advertise_and_searchgw_on_the_multicast_group(gateway_factory: Callable[..., Gateway]) -> None:
    """§6.1: ADVERTISE goes to the group from the gateway's own port (which is how a client learns where to
    connect); a SEARCHGW sent to the group is answered with GWINFO from that port, to the searcher and the group."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    group_port = probe.getsockname()[1]  # a port of our own, so that parallel tests do not hear each other
    probe.close()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("", group_port))
    listener.setsockopt(
        socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("225.1.1.1") + socket.inet_aton("127.0.0.1")
    )
    listener.settimeout(5)
    try:
        gateway = gateway_factory(f"[mqttsn]\ngateway_id = 42\nmulticast_port = {group_port}\nadvertise_interval = 1\n")
        data, sender = listener.recvfrom(64)
        assert codec.decode(data) == codec.Advertise(42, 1)
        assert sender[1] == gateway.mqttsn_port
        asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        asker.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        asker.settimeout(5)
        asker.sendto(codec.encode(codec.SearchGw(1)), ("225.1.1.1", group_port))
        answer, where = asker.recvfrom(64)
        assert codec.decode(answer) == codec.GwInfo(42) and where[1] == gateway.mqttsn_port
        asker.close()
        # The group hears the GWINFO too (besides the SEARCHGW and more ADVERTISEs), from the gateway's port.
        heard = [listener.recvfrom(64) for _ in range(4)]
        assert (codec.GwInfo(42), gateway.mqttsn_port) in [(codec.decode(d), s[1]) for d, s in heard]
    finally:
        listener.close()


def test_an_unacknowledged_publish_goes_again_then_the_client_is_lost(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    """§6.13: T_RETRY later the PUBLISH goes again with DUP set; after N_RETRY tries the client is lost (will)."""
    gateway = gateway_factory("[mqttsn]\nretry_interval = 0.5\nmax_retries = 2\n")
    sn = SnClient(gateway.mqttsn_port)
    try:
        connect_with_will(sn, "deaf", 600, "wills/deaf", b"deaf is gone")
        sn.send(codec.Subscribe(1, "to/deaf", qos=1))
        assert isinstance(sn.receive(), codec.SubAck)
        paho = Client(gateway.mqtt_port, "talker")
        clients.append(paho)
        paho.subscribe("wills/#", 0)
        paho.publish("to/deaf", b"hello?", 1)
        first = sn.receive()
        assert isinstance(first, codec.Publish) and not first.dup
        again = [sn.receive() for _ in range(2)]
        assert all(isinstance(m, codec.Publish) and m.dup and m.msg_id == first.msg_id for m in again)
        will = paho.expect(timeout=5)
        assert (will.topic, will.payload) == ("wills/deaf", b"deaf is gone")
    finally:
        sn.close()


def test_an_mqtt_connection_with_the_same_client_id_takes_the_session_over(
    gateway: Gateway, sn: SnClient, clients: list[Client]
) -> None:
    """§3.1.4 across protocols: the session moves to the new connection, and the MQTT-SN client is let go."""
    sn.connect("shared-id", 600)
    paho = Client(gateway.mqtt_port, "shared-id")
    clients.append(paho)
    assert wait_until(lambda: "MQTT-SN client shared-id" in gateway.log() and "taken over" in gateway.log())
    sn.send(codec.PingReq())
    assert sn.receive() == codec.Disconnect()  # no longer connected


def test_a_sleeping_clients_session_taken_over_by_mqtt_moves_with_what_was_buffered(
    gateway: Gateway, sn: SnClient, clients: list[Client]
) -> None:
    """§3.1.4 for a client asleep (§6.14): the MQTT connection gets the session and its buffered message; the
    sleeper, when it wakes, is told it is no longer connected; nothing of it is left to fire later."""
    sn.connect("napper", clean_session=False)
    sn.send(codec.Subscribe(1, "cmd/napper", qos=1))
    assert isinstance(sn.receive(), codec.SubAck)
    sn.send(codec.Disconnect(1))  # asleep for 1 s: lost after 1.5 s if it still held the session
    assert sn.receive() == codec.Disconnect()
    commander = Client(gateway.mqtt_port, "napper-commander")
    clients.append(commander)
    commander.publish("cmd/napper", b"wake up", 1)
    heir = Client(gateway.mqtt_port, "napper", clean=False)
    clients.append(heir)
    assert heir.expect().payload == b"wake up"  # the session moved with its buffer
    assert "MQTT-SN client napper" in gateway.log() and "taken over" in gateway.log()
    sn.send(codec.PingReq("napper"))
    assert sn.receive() == codec.Disconnect()  # not connected any more
    time_past_sleep = 2.0
    heir.expect_none(time_past_sleep)
    commander.publish("cmd/napper", b"still mine", 1)
    assert heir.expect().payload == b"still mine"  # the sleeper's supervision did not end the heir's session


def test_will_topic_and_message_updates_are_answered_and_used(
    gateway: Gateway, sn: SnClient, clients: list[Client]
) -> None:
    """§6.4: WILLTOPICUPD (new topic, QoS, retain; the message is kept), WILLMSGUPD (new message); an empty
    WILLTOPICUPD deletes the will. Each is answered with its RESP."""
    watcher = will_watcher(gateway, clients, "will-update-watcher")
    connect_with_will(sn, "updater", 1, "wills/old", b"first words", 0)
    sn.send(codec.WillTopicUpd("wills/new", 1))
    assert sn.receive() == codec.WillTopicResp(ReturnCode.ACCEPTED)
    sn.send(codec.WillTopicUpd("wills/+", 1))  # a filter is no topic to publish to
    assert sn.receive() == codec.WillTopicResp(ReturnCode.NOT_SUPPORTED)
    sn.send(codec.WillMsgUpd(b"last words"))
    assert sn.receive() == codec.WillMsgResp(ReturnCode.ACCEPTED)
    message = watcher.expect(timeout=5)  # silent past 1.5 s: lost, and the updated will goes out
    assert (message.topic, message.payload, message.qos) == ("wills/new", b"last words", 1)


def test_an_empty_will_topic_update_deletes_the_will(gateway: Gateway, sn: SnClient, clients: list[Client]) -> None:
    watcher = will_watcher(gateway, clients, "will-delete-watcher")
    connect_with_will(sn, "repentant", 1, "wills/repentant", b"gone", 1)
    sn.send(codec.WillTopicUpd())
    assert sn.receive() == codec.WillTopicResp(ReturnCode.ACCEPTED)
    sn.send(codec.WillMsgUpd(b"no will to change"))
    assert sn.receive() == codec.WillMsgResp(ReturnCode.NOT_SUPPORTED)
    assert wait_until(lambda: "repentant (" in gateway.log() and "lost" in gateway.log(), timeout=5)
    watcher.expect_none(0.5)


def test_a_burst_beyond_the_store_backlog_waits_in_the_socket_and_is_stored_whole(
    gateway_factory: Callable[..., Gateway],
) -> None:
    """With a tiny backlog the gateway stops reading while the store catches up (the kernel's socket buffer holds
    the burst) instead of refusing or dropping what arrived."""
    gateway = gateway_factory("[mqtt]\nmax_backlog_bytes = 2048\n")
    sn = SnClient(gateway.mqttsn_port)
    try:
        sn.connect("burster")
        regack = sn.register("db/append/SNBURST")
        for k in range(400):
            sn.send(codec.Publish(regack.topic_id, 0, json.dumps(["burst", T0 + k, k]).encode()))
        assert wait_until(lambda: rows(gateway, "select count(*) from snburst") == [[400]])
        url = f"{gateway.http_url}/api/status"
        with urllib.request.urlopen(url, timeout=10) as response:
            status = json.loads(response.read())["status"]
        assert status["mqttsn_publish_congested_total"] == 0
        assert status["mqttsn_datagrams_received_total"] >= 402  # and the gateway's own ADVERTISE, heard back
    finally:
        sn.close()


def test_a_sleeper_woken_gets_register_then_after_its_regack_the_publish_then_pingresp(
    gateway: Gateway, sn: SnClient, clients: list[Client]
) -> None:
    """§6.10 and §6.14 together: the buffered message's topic is new to the client (a wildcard subscription), so
    the wake is REGISTER, (REGACK), PUBLISH, PINGRESP; PINGRESP neither before the buffer nor held back after."""
    sn.connect("dozer", clean_session=False)
    sn.send(codec.Subscribe(1, "news/#", qos=1))
    assert isinstance(sn.receive(), codec.SubAck)
    sn.send(codec.Disconnect(600))
    assert sn.receive() == codec.Disconnect()
    paho = Client(gateway.mqtt_port, "newsroom")
    clients.append(paho)
    paho.publish("news/today", b"extra", 1)
    sn.send(codec.PingReq("dozer"))
    register = sn.receive()
    assert isinstance(register, codec.Register) and register.topic_name == "news/today"
    assert sn.nothing()  # neither the PUBLISH nor the PINGRESP before the REGACK
    sn.send(codec.PingReq("dozer"))  # the client's PINGREQ timed out: the REGISTER goes again, same MsgId
    assert sn.receive() == register
    sn.send(codec.RegAck(register.topic_id, register.msg_id, ReturnCode.ACCEPTED))
    publish = sn.receive()
    assert isinstance(publish, codec.Publish) and (publish.topic_id, publish.data) == (register.topic_id, b"extra")
    assert sn.receive() == codec.PingResp()
    sn.send(codec.PubAck(publish.topic_id, publish.msg_id, ReturnCode.ACCEPTED))
    paho.publish("news/today", b"more", 1)  # registered now: no second REGISTER
    sn.send(codec.PingReq("dozer"))
    again = sn.receive()
    assert isinstance(again, codec.Publish) and (again.topic_id, again.data) == (register.topic_id, b"more")
    assert sn.receive() == codec.PingResp()


def test_a_register_refused_drops_its_message_and_a_lost_regack_is_asked_again(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    """§6.10, §6.13: a REGISTER unanswered goes again after retry_interval with the same MsgId; a REGACK with a
    rejection drops the message that needed the topic, and what comes next still flows."""
    gateway = gateway_factory("[mqttsn]\nretry_interval = 0.5\n")
    sn = SnClient(gateway.mqttsn_port)
    try:
        sn.connect("picky")
        sn.send(codec.Subscribe(1, "feed/#", qos=0))
        assert isinstance(sn.receive(), codec.SubAck)
        paho = Client(gateway.mqtt_port, "feeder")
        clients.append(paho)
        paho.publish("feed/unwanted", b"no", 0)
        first = sn.receive()
        assert isinstance(first, codec.Register) and first.topic_name == "feed/unwanted"
        assert sn.receive() == first  # not answered within retry_interval: asked again
        sn.send(codec.RegAck(0, first.msg_id, ReturnCode.NOT_SUPPORTED))
        paho.publish("feed/wanted", b"yes", 0)
        second = sn.receive()
        assert isinstance(second, codec.Register) and second.topic_name == "feed/wanted"
        sn.send(codec.RegAck(second.topic_id, second.msg_id, ReturnCode.ACCEPTED))
        publish = sn.receive()
        assert isinstance(publish, codec.Publish) and publish.data == b"yes"  # "no" was dropped
        assert "refused the topic 'feed/unwanted'" in gateway.log()
    finally:
        sn.close()


def test_the_acl_applies_to_mqttsn_clients_as_anonymous_ones(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    """MQTT-SN has no user names: its clients get the ACL's rules for anonymous clients, like MQTT ones without a
    user name; a publish the ACL denies is answered "not supported" (§5.3.10 has no "not authorized")."""
    acl = tmp_path / "acl"
    acl.write_text("topic write db/append/SNALLOWED\ntopic read open/#\n")
    gateway = gateway_factory(f'[mqtt]\nacl_file = "{acl}"\n')
    sn = SnClient(gateway.mqttsn_port)
    try:
        sn.connect("restricted")
        # REGISTER is allowed for both: the ACL is about publishing.
        ids = {
            table: sn.register(f"db/append/{table}", n).topic_id for n, table in enumerate(("SNALLOWED", "SNDENIED"), 1)
        }
        reading = json.dumps(["t", T0, 1]).encode()
        sn.send(codec.Publish(ids["SNALLOWED"], 10, reading, qos=1))
        assert sn.receive() == codec.PubAck(ids["SNALLOWED"], 10, ReturnCode.ACCEPTED)
        sn.send(codec.Publish(ids["SNDENIED"], 11, reading, qos=1))
        assert sn.receive() == codec.PubAck(ids["SNDENIED"], 11, ReturnCode.NOT_SUPPORTED)
        sn.send(codec.Subscribe(12, "secret/#", qos=0))
        assert sn.receive() == codec.SubAck(0, 12, ReturnCode.NOT_SUPPORTED)
        sn.send(codec.Subscribe(13, "open/#", qos=0))
        assert sn.receive() == codec.SubAck(0, 13, ReturnCode.ACCEPTED)
        assert rows(gateway, "select count(*) from snallowed") == [[1]]
        assert "SNDENIED" not in table_names(gateway)
        assert "denied by the ACL" in gateway.log()
    finally:
        sn.close()


def test_without_anonymous_clients_mqttsn_clients_are_refused_with_a_reason(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gateway = gateway_factory(
        '[mqtt]\nallow_anonymous = false\n[mqttsn]\npredefined_topics = { 3 = "db/append/SNANON" }\n'
    )
    sn = SnClient(gateway.mqttsn_port)
    try:
        sn.send(codec.Connect("nameless", 60))
        assert sn.receive() == codec.ConnAck(ReturnCode.NOT_SUPPORTED)
        sn.send(codec.Publish(3, 0, json.dumps(["t", T0, 1]).encode(), qos=-1, topic_id_type=TopicIdType.PREDEFINED))
        assert sn.nothing()
        assert wait_until(lambda: "anonymous clients may not publish there" in gateway.log())
        assert "allow_anonymous = false" in gateway.log()
        assert "SNANON" not in table_names(gateway)
    finally:
        sn.close()


def test_a_persistent_session_keeps_its_topic_ids_across_disconnect_and_restart(gateway: Gateway, sn: SnClient) -> None:
    """Clean session false (§6.3): the topic ids registered stay with the session, after a DISCONNECT, a gateway
    restart and a CONNECT (a known failing of other gateways); clean session true starts without them."""
    sn.connect("keeper", clean_session=False)
    regack = sn.register("db/append/SNKEEP")
    sn.send(codec.Disconnect())
    assert sn.receive() == codec.Disconnect()
    gateway.restart()
    sn.connect("keeper", clean_session=False)
    sn.send(codec.Publish(regack.topic_id, 2, json.dumps(["k", T0, 1]).encode(), qos=1))
    assert sn.receive() == codec.PubAck(regack.topic_id, 2, ReturnCode.ACCEPTED)
    sn.send(codec.Disconnect())
    assert sn.receive() == codec.Disconnect()
    sn.connect("keeper", clean_session=True)
    sn.send(codec.Publish(regack.topic_id, 3, json.dumps(["k", T0 + 1, 2]).encode(), qos=1))
    assert sn.receive() == codec.PubAck(regack.topic_id, 3, ReturnCode.INVALID_TOPIC_ID)
    assert rows(gateway, "select count(*) from snkeep") == [[1]]


def test_a_clients_own_predefined_ids_come_before_everyones(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    """§6.7 pre-defined ids, per client ([mqttsn] client_topics) and for all (predefined_topics): the same id
    means the client's own topic for that client, everyone's for the others, both ways and for QoS -1."""
    gateway = gateway_factory(
        "[mqttsn]\n"
        'predefined_topics = { 5 = "db/append/SNEVERYONE" }\n'
        '[mqttsn.client_topics]\nboiler = { 5 = "db/append/SNBOILER", 6 = "cmd/boiler" }\n'
    )
    boiler, other = SnClient(gateway.mqttsn_port), SnClient(gateway.mqttsn_port)
    try:
        for link, name in ((boiler, "boiler"), (other, "other")):
            link.send(codec.Connect(name, 60))
            assert link.receive() == codec.ConnAck(ReturnCode.ACCEPTED)
            reading = json.dumps(["t", T0, 1 if name == "boiler" else 2]).encode()
            link.send(codec.Publish(5, 1, reading, qos=1, topic_id_type=TopicIdType.PREDEFINED))
            assert link.receive() == codec.PubAck(5, 1, ReturnCode.ACCEPTED)
        boiler.send(
            codec.Publish(5, 0, json.dumps(["t", T0 + 1, 3]).encode(), qos=-1, topic_id_type=TopicIdType.PREDEFINED)
        )
        assert wait_until(lambda: rows(gateway, "select value from snboiler") == [[1.0], [3.0]])
        assert rows(gateway, "select value from sneveryone") == [[2.0]]
        boiler.send(codec.Subscribe(2, 6, qos=0, topic_id_type=TopicIdType.PREDEFINED))
        assert boiler.receive() == codec.SubAck(6, 2, ReturnCode.ACCEPTED)
        paho = Client(gateway.mqtt_port, "boiler-control")
        clients.append(paho)
        paho.publish("cmd/boiler", b"heat", 0)
        assert boiler.receive() == codec.Publish(6, 0, b"heat", 0, TopicIdType.PREDEFINED)  # no REGISTER needed
        other.send(codec.Subscribe(3, 6, qos=0, topic_id_type=TopicIdType.PREDEFINED))
        assert other.receive() == codec.SubAck(0, 3, ReturnCode.INVALID_TOPIC_ID)  # id 6 is the boiler's only
    finally:
        boiler.close()
        other.close()


def test_a_sleeper_waking_from_a_new_port_is_found_by_its_client_id_and_may_publish_awake(
    gateway: Gateway, clients: list[Client]
) -> None:
    """§6.14: the PINGREQ of a waking client carries its client id, because after deep sleep it may come from a new
    source port (or address): the session follows it there. Awake, it may publish without a CONNECT."""
    before, after = SnClient(gateway.mqttsn_port), SnClient(gateway.mqttsn_port)
    try:
        before.connect("roamer", clean_session=False)
        regack = before.register("db/append/SNROAM")
        before.send(codec.Subscribe(2, "cmd/roamer", qos=1))
        suback = before.receive()
        assert isinstance(suback, codec.SubAck)
        before.send(codec.Disconnect(600))
        assert before.receive() == codec.Disconnect()
        paho = Client(gateway.mqtt_port, "roam-control")
        clients.append(paho)
        paho.publish("cmd/roamer", b"report", 1)
        after.send(codec.PingReq("roamer"))  # from another socket: another source port
        buffered = after.receive()
        assert isinstance(buffered, codec.Publish) and (buffered.topic_id, buffered.data) == (
            suback.topic_id,
            b"report",
        )
        after.send(codec.PubAck(buffered.topic_id, buffered.msg_id, ReturnCode.ACCEPTED))
        assert after.receive() == codec.PingResp()
        after.send(codec.Publish(regack.topic_id, 3, json.dumps(["r", T0, 1]).encode(), qos=1))
        assert after.receive() == codec.PubAck(regack.topic_id, 3, ReturnCode.ACCEPTED)
        assert rows(gateway, "select name, time, value from snroam") == [["r", T0, 1.0]]
        assert before.nothing()  # the old port hears nothing more
        assert "MQTT-SN client roamer, asleep at" in gateway.log()
    finally:
        before.close()
        after.close()
