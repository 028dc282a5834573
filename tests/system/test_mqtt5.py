"""MQTT 5.0 behaviour of a running gateway, seen from outside.

The reference client is paho-mqtt in MQTTv5 mode. Where paho cannot produce a case (protocol errors, a client that
withholds acknowledgements, exact properties in CONNACK), a raw client (tests/rawmqtt.py) sends hand-written bytes
and checks and decodes the replies, independently of the broker's codec. Section numbers refer to MQTT Version 5.0
(OASIS Standard, 7 March 2019).
"""

from __future__ import annotations

import contextlib
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.conftest import Client, Gateway
from tests.rawmqtt import (
    DISCONNECT,
    MAXIMUM_PACKET_SIZE,
    PAYLOAD_FORMAT_INDICATOR,
    PINGREQ,
    PINGRESP,
    PUBACK,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    REQUEST_PROBLEM_INFORMATION,
    SESSION_EXPIRY_INTERVAL,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    UNSUBACK,
    RawFactory,
    connect_packet,
    disconnect_packet,
    mqtt_str,
    packet,
)

# ---------------------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def raw_timeout() -> float:
    """The raw clients of this file wait 5 s by default for a packet or for the gateway to close."""
    return 5.0


def properties(packet_type: int, **values: Any) -> Properties:
    result = Properties(packet_type)
    for name, value in values.items():
        setattr(result, name, value)
    return result


def v5(clients: list[Client], port: int, client_id: str = "", **kwargs: Any) -> Client:
    client = Client(port, client_id, v5=True, **kwargs)
    clients.append(client)
    return client


def persistent(clients: list[Client], port: int, client_id: str, expiry: int, *, clean: bool) -> tuple[Client, bool]:
    """A connected v5 client with a Session Expiry Interval, and the Session Present flag of its CONNACK."""
    client = v5(
        clients,
        port,
        client_id,
        clean=clean,
        connect=False,
        connect_properties=properties(PacketTypes.CONNECT, SessionExpiryInterval=expiry),
    )
    flags, rc, _props = client.connect()
    assert code(rc) == 0, rc
    return client, bool(flags.session_present)


def prop(message: paho.MQTTMessage, name: str) -> Any:
    return getattr(message.properties, name, None) if message.properties is not None else None


def collect(client: Client, count: int, timeout: float = 10.0) -> list[paho.MQTTMessage]:
    deadline = time.monotonic() + timeout
    got: list[paho.MQTTMessage] = []
    while len(got) < count:
        try:
            got.append(client.messages.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"got {len(got)} of {count} messages within {timeout} s") from None
    return got


def code(value: Any) -> int:
    return int(value.value) if isinstance(value, ReasonCode) else int(value)


# ---------------------------------------------------------------------------------------------------------------
# CONNACK


def test_connack_carries_receive_maximum_and_limits(gateway: Gateway, raw: RawFactory) -> None:
    """§3.2.2.3.3: the Receive Maximum in CONNACK; §3.2.2.3.6 Maximum Packet Size, §3.2.2.3.8 Topic Alias Maximum."""
    client = raw(gateway.mqtt_port, version=5)
    ack = client.connect("limits")
    assert not ack.session_present
    assert ack.properties.get(RECEIVE_MAXIMUM) == 100, ack.properties  # receive_maximum's default; absent = 65535
    assert ack.properties.get(MAXIMUM_PACKET_SIZE) == 1048576, ack.properties
    assert ack.properties.get(TOPIC_ALIAS_MAXIMUM) == 10, ack.properties


def test_assigned_client_identifier_for_empty_client_id(gateway: Gateway, clients: list[Client]) -> None:
    """§3.2.2.3.7: a zero-length Client Identifier is answered with an Assigned Client Identifier, unique."""
    assigned = []
    for _ in range(2):
        client = v5(clients, gateway.mqtt_port, "", connect=False)
        _flags, rc, ack = client.connect()
        assert code(rc) == 0
        value = getattr(ack, "AssignedClientIdentifier", None)
        assert isinstance(value, str) and value, f"no Assigned Client Identifier in {ack}"
        assigned.append(value)
    assert assigned[0] != assigned[1]


def test_server_keep_alive_caps_the_requested_keep_alive(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    """§3.2.2.3.14: with max_keepalive = 10 a client asking for 60 s gets Server Keep Alive 10 in CONNACK."""
    gw = gateway_factory("[mqtt]\nmax_keepalive = 10\n")
    client = v5(clients, gw.mqtt_port, "keepalive", keepalive=60, connect=False)
    _flags, rc, ack = client.connect()
    assert code(rc) == 0
    assert getattr(ack, "ServerKeepAlive", None) == 10, f"CONNACK properties: {ack}"


def test_unsupported_protocol_version_gets_connack_then_close(gateway: Gateway, raw: RawFactory) -> None:
    """§3.1.2.2: a CONNECT with an unsupported Protocol Version gets a refusing CONNACK, then the connection closes.

    For a level the gateway does not know (6), it answers in the 3.1.1 form with return code 0x01, as mosquitto
    does: MQTT 5 only says a server MAY send 0x84, while 3.1.1 §3.1.2.2 requires 0x01, and the 3.1.1 form is the
    one every existing client can parse.
    """
    client = raw(gateway.mqtt_port, version=5)
    client.sock.sendall(connect_packet("future", version=6))
    data = b""
    client.sock.settimeout(5)
    while chunk := client.sock.recv(1024):
        data += chunk
    assert data == b"\x20\x02\x00\x01", data


# ---------------------------------------------------------------------------------------------------------------
# Session expiry


def test_session_survives_disconnect_shorter_than_expiry(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.2.11.2: a session with expiry 10 s outlives a short disconnect: session present, queued QoS 1 kept."""
    port = gateway.mqtt_port
    sub, sub_present = persistent(clients, port, "keeper", 10, clean=True)
    assert not sub_present
    assert sub.subscribe("keep/t", 1) == [1]
    sub.close()
    pub = v5(clients, port, "keep-pub")
    pub.publish("keep/t", b"while-away", 1)
    again, again_present = persistent(clients, port, "keeper", 10, clean=False)
    assert again_present
    message = again.expect()
    assert (message.topic, message.payload, message.qos) == ("keep/t", b"while-away", 1)


def test_clean_start_discards_existing_session(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.2.4 / §3.2.2.1.1: Clean Start 1 discards an existing session: Session Present 0, its subscriptions and
    queued messages gone."""
    port = gateway.mqtt_port
    sub, _ = persistent(clients, port, "restarter", 60, clean=True)
    assert sub.subscribe("clean/t", 1) == [1]
    sub.close()
    pub = v5(clients, port, "clean-pub")
    pub.publish("clean/t", b"queued", 1)
    again, again_present = persistent(clients, port, "restarter", 60, clean=True)
    assert not again_present
    again.expect_none(0.5)
    pub.publish("clean/t", b"after", 1)
    again.expect_none(0.5)


def test_session_is_gone_after_its_expiry(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.2.11.2: once the Session Expiry Interval (2 s) has passed, the session and its messages are gone."""
    port = gateway.mqtt_port
    sub, _ = persistent(clients, port, "short-lived", 2, clean=True)
    assert sub.subscribe("gone/t", 1) == [1]
    sub.close()
    pub = v5(clients, port, "gone-pub")
    pub.publish("gone/t", b"queued", 1)
    time.sleep(3.5)
    again, again_present = persistent(clients, port, "short-lived", 60, clean=False)
    assert not again_present
    again.expect_none(0.7)
    pub.publish("gone/t", b"after", 1)  # the subscription went with the session
    again.expect_none(0.7)


def test_expiry_zero_ends_session_with_connection(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.2.11.2: no Session Expiry Interval (0) means the session ends when the network connection closes."""
    port = gateway.mqtt_port
    sub = v5(clients, port, "ephemeral")
    assert sub.subscribe("eph/t", 1) == [1]
    sub.close()
    pub = v5(clients, port, "eph-pub")
    pub.publish("eph/t", b"nobody", 1)
    again, again_present = persistent(clients, port, "ephemeral", 60, clean=False)
    assert not again_present
    again.expect_none(0.7)


def test_disconnect_lowers_session_expiry(gateway: Gateway, clients: list[Client]) -> None:
    """§3.14.2.2.2: DISCONNECT may change the Session Expiry Interval; lowered to 0 the session ends there."""
    port = gateway.mqtt_port
    lowered, _ = persistent(clients, port, "lowered", 60, clean=True)
    kept, _ = persistent(clients, port, "kept", 60, clean=True)
    for client in (lowered, kept):
        assert client.subscribe("low/t", 1) == [1]
    lowered.paho.disconnect(properties=properties(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    lowered.paho.loop_stop()
    kept.close()
    time.sleep(0.3)
    v5(clients, port, "low-pub").publish("low/t", b"m", 1)
    again, again_present = persistent(clients, port, "lowered", 60, clean=False)
    assert not again_present
    again.expect_none(0.5)
    control, control_present = persistent(clients, port, "kept", 60, clean=False)
    assert control_present
    assert control.expect().payload == b"m"


def test_disconnect_cannot_set_expiry_after_connect_set_zero(gateway: Gateway, raw: RawFactory) -> None:
    """§3.14.2.2.2: a non-zero Session Expiry Interval in DISCONNECT after CONNECT had 0 is a Protocol Error:
    the gateway answers DISCONNECT 0x82, closes, and keeps no session."""
    client = raw(gateway.mqtt_port, version=5)
    client.connect("zero-expiry")
    client.subscribe([("zero/t", 1)])
    client.send(disconnect_packet(0x00, {SESSION_EXPIRY_INTERVAL: 300}, version=5))
    client.expect_disconnect(0x82)
    again = raw(gateway.mqtt_port, version=5)
    ack = again.connect("zero-expiry", clean=False, props={SESSION_EXPIRY_INTERVAL: 60})
    assert not ack.session_present


def test_session_survives_gateway_restart(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.2.11.2 / §4.1: a session whose expiry has not passed, with its queued QoS 1 message, survives a
    restart of the server."""
    port = gateway.mqtt_port
    sub, _ = persistent(clients, port, "durable", 300, clean=True)
    assert sub.subscribe("durable/t", 1) == [1]
    sub.close()
    pub = v5(clients, port, "durable-pub")
    pub.publish("durable/t", b"before-restart", 1)
    pub.close()
    gateway.restart()
    again, again_present = persistent(clients, port, "durable", 300, clean=False)
    assert again_present
    message = again.expect()
    assert (message.topic, message.payload, message.qos) == ("durable/t", b"before-restart", 1)
    v5(clients, port, "durable-pub2").publish("durable/t", b"after-restart", 1)
    assert again.expect().payload == b"after-restart"


# ---------------------------------------------------------------------------------------------------------------
# Message expiry


def test_queued_message_expires_while_subscriber_offline(gateway: Gateway, clients: list[Client]) -> None:
    """§3.3.2.3.3: a message whose Message Expiry Interval passes before onward delivery starts is not delivered."""
    port = gateway.mqtt_port
    sub, _ = persistent(clients, port, "offline-sub", 60, clean=True)
    assert sub.subscribe("exp/t", 1) == [1]
    sub.close()
    pub = v5(clients, port, "exp-pub")
    pub.publish("exp/t", b"short", 1, properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish("exp/t", b"no-expiry", 1)
    time.sleep(2.5)
    again, again_present = persistent(clients, port, "offline-sub", 60, clean=False)
    assert again_present
    assert again.expect().payload == b"no-expiry"
    again.expect_none(0.5)


def test_delivered_message_carries_remaining_expiry(gateway: Gateway, clients: list[Client]) -> None:
    """§3.3.2.3.3: the PUBLISH sent to a client carries the received expiry minus the time spent waiting in the
    server."""
    port = gateway.mqtt_port
    online = v5(clients, port, "online")
    assert online.subscribe("rem/t", 1) == [1]
    offline, _ = persistent(clients, port, "waiting", 60, clean=True)
    assert offline.subscribe("rem/t", 1) == [1]
    offline.close()
    pub = v5(clients, port, "rem-pub")
    pub.publish("rem/t", b"x", 1, properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=30))
    assert prop(online.expect(), "MessageExpiryInterval") in (29, 30)
    time.sleep(2.2)
    again, _ = persistent(clients, port, "waiting", 60, clean=False)
    remaining = prop(again.expect(), "MessageExpiryInterval")
    assert remaining is not None and 25 <= remaining <= 28, f"Message Expiry Interval {remaining} after ~2.2 s"


def test_retained_message_expiry(gateway: Gateway, clients: list[Client]) -> None:
    """§3.3.2.3.3: an expired retained message is no longer sent; a live one carries its remaining expiry."""
    port = gateway.mqtt_port
    pub = v5(clients, port, "ret-pub")
    pub.publish("ret/short", b"s", 1, True, properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish("ret/long", b"l", 1, True, properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    time.sleep(2.2)
    sub = v5(clients, port, "ret-sub")
    assert sub.subscribe("ret/#", 1) == [1]
    message = sub.expect()
    assert (message.topic, message.retain) == ("ret/long", True)
    remaining = prop(message, "MessageExpiryInterval")
    assert remaining is not None and 55 <= remaining <= 58, f"Message Expiry Interval {remaining} after ~2.2 s"
    sub.expect_none(0.5)


# ---------------------------------------------------------------------------------------------------------------
# Topic aliases


def test_topic_alias_set_then_used_with_empty_topic(gateway: Gateway, clients: list[Client]) -> None:
    """§3.3.2.3.4: a PUBLISH with topic and Topic Alias sets the alias; later ones send it with an empty topic."""
    port = gateway.mqtt_port
    sub = v5(clients, port, "alias-sub")
    assert sub.subscribe("alias/#", 1) == [1]
    pub = v5(clients, port, "alias-pub")
    pub.publish("alias/a", b"one", 1, properties=properties(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", b"two", 1, properties=properties(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("alias/b", b"three", 1, properties=properties(PacketTypes.PUBLISH, TopicAlias=1))  # remapped
    pub.publish("", b"four", 1, properties=properties(PacketTypes.PUBLISH, TopicAlias=1))
    messages = collect(sub, 4)
    got = [(m.topic, m.payload) for m in messages]
    assert got == [("alias/a", b"one"), ("alias/a", b"two"), ("alias/b", b"three"), ("alias/b", b"four")]
    # The subscriber allowed no aliases (§3.1.2.11.5): the gateway must not send one.
    assert all(prop(m, "TopicAlias") is None for m in messages)


def test_topic_alias_above_maximum_is_refused(gateway: Gateway, raw: RawFactory) -> None:
    """§3.3.2.3.4: a Topic Alias greater than the server's Topic Alias Maximum -> DISCONNECT 0x94."""
    client = raw(gateway.mqtt_port, version=5)
    ack = client.connect("alias-high")
    maximum = ack.properties.get(TOPIC_ALIAS_MAXIMUM, 0)
    client.publish("alias/x", b"p", props={TOPIC_ALIAS: maximum + 1})
    client.expect_disconnect(0x94)


def test_topic_alias_zero_is_refused(gateway: Gateway, raw: RawFactory) -> None:
    """§3.3.2.3.4: a Topic Alias of 0 is not permitted -> DISCONNECT 0x94."""
    client = raw(gateway.mqtt_port, version=5)
    client.connect("alias-zero")
    client.publish("alias/x", b"p", props={TOPIC_ALIAS: 0})
    client.expect_disconnect(0x94)


def test_unknown_topic_alias_with_empty_topic_is_protocol_error(gateway: Gateway, raw: RawFactory) -> None:
    """§3.3.2.3.4 / §3.3.2.1: an empty topic with an alias the client never set has no topic -> DISCONNECT 0x82."""
    client = raw(gateway.mqtt_port, version=5)
    client.connect("alias-unknown")
    client.publish("", b"p", props={TOPIC_ALIAS: 3})
    client.expect_disconnect(0x82)


def test_topic_alias_does_not_survive_reconnect(gateway: Gateway, raw: RawFactory) -> None:
    """§3.3.2.3.4: Topic Alias mappings exist only within one network connection; using an alias set on an earlier
    connection with an empty topic has no topic -> DISCONNECT 0x82."""
    first = raw(gateway.mqtt_port, version=5)
    first.connect("alias-again", props={SESSION_EXPIRY_INTERVAL: 60})
    first.publish("alias/kept", b"p", 1, 1, props={TOPIC_ALIAS: 1})
    first.expect(PUBACK)
    first.disconnect()
    second = raw(gateway.mqtt_port, version=5)
    assert second.connect("alias-again", clean=False, props={SESSION_EXPIRY_INTERVAL: 60})
    second.publish("", b"p", props={TOPIC_ALIAS: 1})
    second.expect_disconnect(0x82)


# ---------------------------------------------------------------------------------------------------------------
# Flow control and packet sizes


def test_receive_maximum_limits_unacknowledged_publishes(
    gateway: Gateway, clients: list[Client], raw: RawFactory
) -> None:
    """§3.3.4: the server never has more unacknowledged QoS 1 PUBLISH packets in flight than the client's
    Receive Maximum (§3.1.2.11.3); each PUBACK releases the next."""
    sub = raw(gateway.mqtt_port, version=5)
    sub.connect("slow", props={RECEIVE_MAXIMUM: 2})
    sub.subscribe([("rm/t", 1)])
    pub = v5(clients, gateway.mqtt_port, "rm-pub")
    for i in range(5):
        pub.publish("rm/t", f"m{i}".encode(), 1)
    first = [sub.read_publish() for _ in range(2)]
    assert all(p.qos == 1 for p in first), first
    assert [p.payload for p in first] == [b"m0", b"m1"]
    sub.nothing_within(1.0)
    assert first[0].packet_id != 0
    sub.ack(PUBACK, first[0].packet_id)
    third = sub.read_publish()
    assert third.payload == b"m2", third
    sub.nothing_within(0.7)
    in_flight = [first[1], third]
    for expected in (b"m3", b"m4"):
        done = in_flight.pop(0)
        assert done.packet_id != 0
        sub.ack(PUBACK, done.packet_id)
        released = sub.read_publish()
        assert released.payload == expected, released
        in_flight.append(released)
    sub.nothing_within(0.3)


def test_client_maximum_packet_size_is_respected(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.2.11.4: the server does not send a packet larger than the client's Maximum Packet Size; it discards it
    as if delivered, and smaller messages still arrive."""
    port = gateway.mqtt_port
    sub = v5(clients, port, "small-only", connect_properties=properties(PacketTypes.CONNECT, MaximumPacketSize=256))
    assert sub.subscribe("mps/#", 1) == [1]
    pub = v5(clients, port, "mps-pub")
    pub.publish("mps/big", b"B" * 1000, 1)
    pub.publish("mps/small", b"ok", 1)
    message = sub.expect()
    assert (message.topic, message.payload) == ("mps/small", b"ok")
    sub.expect_none(0.5)


def test_packet_above_server_maximum_is_refused(
    gateway_factory: Callable[..., Gateway], clients: list[Client], raw: RawFactory
) -> None:
    """§3.2.2.3.6: the server's Maximum Packet Size is in CONNACK; a larger packet is a protocol error answered
    with DISCONNECT 0x95 (§4.13), and other clients are unaffected."""
    gw = gateway_factory("[mqtt]\nmax_packet_size = 1024\n")
    watcher = v5(clients, gw.mqtt_port, "watcher")
    assert watcher.subscribe("big/#", 0) == [0]
    client = raw(gw.mqtt_port, version=5)
    ack = client.connect("too-big")
    assert ack.properties.get(MAXIMUM_PACKET_SIZE) == 1024, ack.properties
    client.publish("big/fits", b"f" * 900)
    assert watcher.expect().payload == b"f" * 900
    client.publish("big/huge", b"h" * 2000)
    client.expect_disconnect(0x95)
    watcher.expect_none(0.3)
    other = v5(clients, gw.mqtt_port, "other")
    other.publish("big/ok", b"still-fine", 1)
    assert watcher.expect().payload == b"still-fine"


# ---------------------------------------------------------------------------------------------------------------
# Reason codes and reason strings


def test_suback_0x8f_for_invalid_filter(gateway: Gateway, raw: RawFactory) -> None:
    """§3.9.3: SUBACK carries one reason code per filter: 0x8F Topic Filter invalid for `a/#/b` (§4.7.1.2), the
    granted QoS for a valid one; the connection stays open."""
    client = raw(gateway.mqtt_port, version=5)
    client.connect("bad-filter")
    client.send(client.subscribe_bytes(7, [("a/#/b", 1), ("ok/+", 1)]))
    ack = client.read_suback(7)
    assert ack.codes == [0x8F, 0x01]
    client.send(packet(PINGREQ, b""))
    client.expect(PINGRESP)


def test_unsuback_0x11_when_no_subscription_existed(gateway: Gateway, raw: RawFactory) -> None:
    """§3.11.3: UNSUBACK 0x11 No subscription existed for a filter the client never subscribed, 0x00 otherwise."""
    client = raw(gateway.mqtt_port, version=5)
    client.connect("unsub")
    client.subscribe([("real/t", 0)])
    client.send(client.unsubscribe_bytes(2, ["never/t", "real/t"]))
    ack = client.read_suback(2, kind=UNSUBACK)
    assert ack.codes == [0x11, 0x00]


def test_no_reason_string_when_problem_information_not_requested(gateway: Gateway, raw: RawFactory) -> None:
    """§3.1.2.11.7: with Request Problem Information 0 the server must not send a Reason String on packets other
    than PUBLISH, CONNACK or DISCONNECT."""
    client = raw(gateway.mqtt_port, version=5)
    client.connect("quiet", props={REQUEST_PROBLEM_INFORMATION: 0})
    client.send(client.subscribe_bytes(1, [("a/#/b", 0)]))
    suback = client.read_suback(1)
    assert suback.codes == [0x8F], suback
    assert REASON_STRING not in suback.properties, suback.properties
    client.send(client.unsubscribe_bytes(2, ["never/t"]))
    unsuback = client.read_suback(2, kind=UNSUBACK)
    assert unsuback.codes == [0x11], unsuback
    assert REASON_STRING not in unsuback.properties, unsuback.properties


# ---------------------------------------------------------------------------------------------------------------
# Properties passed through


def test_publish_properties_pass_through_unchanged(gateway: Gateway, clients: list[Client]) -> None:
    """§3.3.2.3.2, §3.3.2.3.5-3.3.2.3.7, §3.3.2.3.9: Payload Format Indicator, Response Topic, Correlation Data,
    User Properties (order and repeated names kept) and Content Type reach the subscriber unchanged."""
    port = gateway.mqtt_port
    sub = v5(clients, port, "pt-sub")
    assert sub.subscribe("pt/t", 1) == [1]
    pub = v5(clients, port, "pt-pub")
    user = [("k", "1"), ("z", "2"), ("k", "3"), ("ünï", "cödé")]
    sent = properties(
        PacketTypes.PUBLISH,
        PayloadFormatIndicator=1,
        ResponseTopic="pt/reply",
        CorrelationData=b"\x00\x01corr\xff",
        ContentType="application/json",
        UserProperty=user,
    )
    pub.publish("pt/t", b'{"a": 1}', 1, properties=sent)
    message = sub.expect()
    assert message.payload == b'{"a": 1}'
    assert prop(message, "PayloadFormatIndicator") == 1
    assert prop(message, "ResponseTopic") == "pt/reply"
    assert prop(message, "CorrelationData") == b"\x00\x01corr\xff"
    assert prop(message, "ContentType") == "application/json"
    assert prop(message, "UserProperty") == user


def test_request_response_round_trip(gateway: Gateway, clients: list[Client]) -> None:
    """§4.10: a request carrying Response Topic and Correlation Data is answered on that topic with that data."""
    port = gateway.mqtt_port
    requester = v5(clients, port, "requester")
    assert requester.subscribe("svc/reply/requester", 1) == [1]
    responder = v5(clients, port, "responder")
    assert responder.subscribe("svc/request", 1) == [1]
    requester.publish(
        "svc/request",
        b"2+2",
        1,
        properties=properties(PacketTypes.PUBLISH, ResponseTopic="svc/reply/requester", CorrelationData=b"req-42"),
    )
    request = responder.expect()
    assert request.payload == b"2+2"
    reply_to = prop(request, "ResponseTopic")
    assert reply_to == "svc/reply/requester"
    responder.publish(
        reply_to, b"4", 1, properties=properties(PacketTypes.PUBLISH, CorrelationData=prop(request, "CorrelationData"))
    )
    response = requester.expect()
    assert (response.topic, response.payload) == ("svc/reply/requester", b"4")
    assert prop(response, "CorrelationData") == b"req-42"


# ---------------------------------------------------------------------------------------------------------------
# Shared subscriptions


def test_shared_subscription_delivers_each_message_once_across_the_group(
    gateway: Gateway, clients: list[Client]
) -> None:
    """§4.8.2: each message goes to exactly one member of the share group, load shared between them; a
    non-shared subscription on the same filter still gets every message."""
    port = gateway.mqtt_port
    members = [v5(clients, port, f"member-{i}") for i in range(2)]
    for member in members:
        assert member.subscribe("$share/grp/sh/t", 1) == [1]
    plain = v5(clients, port, "plain")
    assert plain.subscribe("sh/t", 1) == [1]
    pub = v5(clients, port, "sh-pub")
    sent = [f"m{i}".encode() for i in range(20)]
    for payload in sent:
        pub.publish("sh/t", payload, 1)
    assert [m.payload for m in collect(plain, 20)] == sent
    received: list[list[bytes]] = [[], []]
    deadline = time.monotonic() + 10
    while sum(map(len, received)) < 20 and time.monotonic() < deadline:
        for i, member in enumerate(members):
            with contextlib.suppress(queue.Empty):
                received[i].append(bytes(member.messages.get(timeout=0.05).payload))
    for member in members:
        member.expect_none(0.3)
    assert sorted(received[0] + received[1]) == sorted(sent), received
    assert received[0] and received[1], f"one member got everything: {received}"


def test_shared_subscribe_gets_no_retained_messages(gateway: Gateway, clients: list[Client]) -> None:
    """§4.8.2: retained messages are not sent when a shared subscription is made."""
    port = gateway.mqtt_port
    pub = v5(clients, port, "shr-pub")
    pub.publish("shr/t", b"retained", 1, True)
    member = v5(clients, port, "shr-member")
    assert member.subscribe("$share/grp/shr/t", 1) == [1]
    member.expect_none(0.7)
    control = v5(clients, port, "shr-control")
    assert control.subscribe("shr/t", 1) == [1]
    assert control.expect().payload == b"retained"
    pub.publish("shr/t", b"live", 1)
    assert member.expect().payload == b"live"


# ---------------------------------------------------------------------------------------------------------------
# Subscription options


def test_no_local(gateway: Gateway, clients: list[Client]) -> None:
    """§3.8.3.1: with No Local the server does not forward a client's own publications to it."""
    port = gateway.mqtt_port
    me = v5(clients, port, "nl-me")
    assert [code(c) for c in me.subscribe("nl/t", options=SubscribeOptions(qos=1, noLocal=True))] == [1]
    watcher = v5(clients, port, "nl-watcher")
    assert watcher.subscribe("nl/t", 1) == [1]
    other = v5(clients, port, "nl-other")
    me.publish("nl/t", b"mine", 1)
    other.publish("nl/t", b"theirs", 1)
    assert [m.payload for m in collect(watcher, 2)] == [b"mine", b"theirs"]
    assert me.expect().payload == b"theirs"
    me.expect_none(0.3)


def test_no_local_on_shared_subscription_is_protocol_error(gateway: Gateway, raw: RawFactory) -> None:
    """§3.8.3.1: it is a Protocol Error to set No Local on a Shared Subscription -> DISCONNECT 0x82."""
    client = raw(gateway.mqtt_port, version=5)
    client.connect("nl-shared")
    client.send(client.subscribe_bytes(1, [("$share/grp/nls/t", 0x04 | 0x01)]))
    client.expect_disconnect(0x82)


def test_retain_as_published(gateway: Gateway, clients: list[Client]) -> None:
    """§3.8.3.1 / §3.3.1.3: Retain As Published keeps the RETAIN flag on forwarded messages, otherwise it is 0;
    a retained message sent because of a new subscription always has RETAIN 1."""
    port = gateway.mqtt_port
    keep = v5(clients, port, "rap-keep")
    assert [code(c) for c in keep.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=True))] == [1]
    clear = v5(clients, port, "rap-clear")
    assert [code(c) for c in clear.subscribe("rap/t", options=SubscribeOptions(qos=1))] == [1]
    v5(clients, port, "rap-pub").publish("rap/t", b"live", 1, True)
    assert (keep.expect().retain, clear.expect().retain) == (True, False)
    late = v5(clients, port, "rap-late")
    assert [code(c) for c in late.subscribe("rap/t", options=SubscribeOptions(qos=1))] == [1]
    assert late.expect().retain


def test_retain_handling(gateway: Gateway, clients: list[Client]) -> None:
    """§3.8.3.1: Retain Handling 0 sends retained messages on every subscribe, 1 only when the subscription is
    new, 2 never."""
    port = gateway.mqtt_port
    v5(clients, port, "rh-pub").publish("rh/t", b"kept", 1, True)
    by_handling = {}
    for handling in (0, 1, 2):
        client = v5(clients, port, f"rh-{handling}")
        options = SubscribeOptions(qos=1, retainHandling=handling)
        assert [code(c) for c in client.subscribe("rh/t", options=options)] == [1]
        by_handling[handling] = client
    assert by_handling[0].expect().payload == b"kept"
    assert by_handling[1].expect().payload == b"kept"
    by_handling[2].expect_none(0.5)
    for handling, client in by_handling.items():
        client.subscribe("rh/t", options=SubscribeOptions(qos=1, retainHandling=handling))
    again = by_handling[0].expect()
    assert (again.payload, again.retain) == (b"kept", True)
    by_handling[1].expect_none(0.5)
    by_handling[2].expect_none(0.1)


def test_subscription_identifiers_on_overlapping_subscriptions(gateway: Gateway, clients: list[Client]) -> None:
    """§3.3.4 / §3.8.2.1.2: a message matching two subscriptions with identifiers 7 and 9 is delivered once,
    carrying both identifiers; one matching only one subscription carries only its identifier."""
    port = gateway.mqtt_port
    sub = v5(clients, port, "si-sub")
    assert sub.subscribe("si/+", 1, properties=properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7)) == [1]
    assert sub.subscribe("si/#", 1, properties=properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9)) == [1]
    assert sub.subscribe("plain/t", 1) == [1]
    pub = v5(clients, port, "si-pub")
    pub.publish("si/x", b"both", 1)
    message = sub.expect()
    assert message.payload == b"both"
    assert sorted(prop(message, "SubscriptionIdentifier") or []) == [7, 9]
    sub.expect_none(0.3)
    pub.publish("si/x/y", b"one", 1)
    message = sub.expect()
    assert (message.payload, prop(message, "SubscriptionIdentifier")) == (b"one", [9])
    pub.publish("plain/t", b"none", 1)
    message = sub.expect()
    assert (message.payload, prop(message, "SubscriptionIdentifier")) == (b"none", None)
    # A retained message sent because of a new subscription carries that subscription's identifier.
    pub.publish("sir/t", b"retained", 1, True)
    late = v5(clients, port, "si-late")
    assert late.subscribe("sir/t", 1, properties=properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=5)) == [1]
    message = late.expect()
    assert (message.payload, message.retain, prop(message, "SubscriptionIdentifier")) == (b"retained", True, [5])


# ---------------------------------------------------------------------------------------------------------------
# Wills


def _will_client(
    clients: list[Client], port: int, client_id: str, topic: str, delay: int | None, expiry: int = 30
) -> Client:
    will_props = properties(PacketTypes.WILLMESSAGE, WillDelayInterval=delay) if delay is not None else None
    return v5(
        clients,
        port,
        client_id,
        will=(topic, b"gone:" + client_id.encode(), 1, False),
        will_properties=will_props,
        connect_properties=properties(PacketTypes.CONNECT, SessionExpiryInterval=expiry) if expiry else None,
    )


def test_will_published_after_delay(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.3.2.2: a will with Will Delay Interval 2 s is published about 2 s after an abnormal close."""
    port = gateway.mqtt_port
    watcher = v5(clients, port, "will-watcher")
    assert watcher.subscribe("will/#", 1) == [1]
    client = _will_client(clients, port, "delayed", "will/delayed", delay=2)
    client.drop()
    dropped = time.monotonic()
    message = watcher.expect(timeout=8)
    elapsed = time.monotonic() - dropped
    assert (message.topic, message.payload) == ("will/delayed", b"gone:delayed")
    assert 1.5 <= elapsed <= 4.5, f"will published {elapsed:.2f} s after the close, delay was 2 s"


def test_will_not_published_when_client_reconnects_within_delay(gateway: Gateway, clients: list[Client]) -> None:
    """§3.1.3.2.2: if the client reconnects to its session before the Will Delay Interval passes, no will."""
    port = gateway.mqtt_port
    watcher = v5(clients, port, "will-watcher")
    assert watcher.subscribe("will/#", 1) == [1]
    client = _will_client(clients, port, "returning", "will/returning", delay=2)
    client.drop()
    time.sleep(0.5)
    _again, again_present = persistent(clients, port, "returning", 30, clean=False)
    assert again_present
    watcher.expect_none(2.5)


def test_disconnect_with_will_message_publishes_the_will(gateway: Gateway, clients: list[Client]) -> None:
    """§3.14.2.1: DISCONNECT with reason 0x04 publishes the will; a normal DISCONNECT (0x00) discards it
    (§3.1.2.5)."""
    port = gateway.mqtt_port
    watcher = v5(clients, port, "will-watcher")
    assert watcher.subscribe("will/#", 1) == [1]
    normal = _will_client(clients, port, "normal", "will/normal", delay=None, expiry=0)
    normal.close()
    leaving = _will_client(clients, port, "leaving", "will/leaving", delay=None, expiry=0)
    leaving.paho.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    message = watcher.expect()
    assert (message.topic, message.payload) == ("will/leaving", b"gone:leaving")
    watcher.expect_none(0.5)


# ---------------------------------------------------------------------------------------------------------------
# Takeover and malformed input


def test_session_takeover_sends_disconnect_0x8e(gateway: Gateway, raw: RawFactory) -> None:
    """§3.1.4: a second connection with the same Client Identifier takes the session over; the old one gets
    DISCONNECT 0x8E Session taken over and is closed."""
    client_id = f"twin-{uuid.uuid4().hex[:8]}"
    old = raw(gateway.mqtt_port, version=5)
    old.connect(client_id)
    new = raw(gateway.mqtt_port, version=5)
    new.connect(client_id)
    old.expect_disconnect(0x8E)
    new.send(packet(PINGREQ, b""))
    new.expect(PINGRESP)


def test_publish_with_qos_3_is_malformed(gateway: Gateway, clients: list[Client], raw: RawFactory) -> None:
    """§3.3.1.2: a PUBLISH with both QoS bits set is a Malformed Packet -> DISCONNECT 0x81, then close."""
    watcher = v5(clients, gateway.mqtt_port, "q3-watcher")
    assert watcher.subscribe("q3/#", 1) == [1]
    client = raw(gateway.mqtt_port, version=5)
    client.connect("qos3")
    client.send(packet(0x36, mqtt_str("q3/t") + b"\x00\x01" + b"\x00" + b"bad"))
    client.expect_disconnect(0x81)
    watcher.expect_none(0.3)


def test_duplicate_property_is_protocol_error(gateway: Gateway, clients: list[Client], raw: RawFactory) -> None:
    """§2.2.2.2 / §3.3.2.3.2: including the same property twice is a Protocol Error -> DISCONNECT 0x82."""
    watcher = v5(clients, gateway.mqtt_port, "dup-watcher")
    assert watcher.subscribe("dup/#", 1) == [1]
    client = raw(gateway.mqtt_port, version=5)
    client.connect("dup-prop")
    twice = [(PAYLOAD_FORMAT_INDICATOR, 1), (PAYLOAD_FORMAT_INDICATOR, 1)]
    client.publish("dup/t", b"x", 1, 1, props=twice)
    packets = client.read_until_closed()
    assert not any(p.kind == PUBACK for p in packets), packets
    assert packets and packets[-1].kind == DISCONNECT and client.parse_ack(packets[-1]).code == 0x82, packets
    watcher.expect_none(0.3)
