"""MQTT 3.1.1 behaviour of a running gateway, seen through independent clients.

Clients: paho-mqtt in MQTTv311 mode, Debian's mosquitto_pub / mosquitto_sub, and, where no client library can
produce the case (a client that never acknowledges, resends with DUP, sends a second CONNECT, ...), a hand-written
client on a raw socket (the `raw` fixture, tests/rawmqtt.py), written from the standard, not taken from the gateway.

Section numbers ("§3.1.3.1") and normative statements ([MQTT-3.1.3-8]) refer to MQTT 3.1.1 (OASIS Standard, 2014).
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import Client, Gateway, mosquitto_env
from tests.rawmqtt import (
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    UNSUBACK,
    ConnAck,
    Will,
    ack_packet,
    connect_packet,
    disconnect_packet,
    packet,
    publish_packet,
    subscribe_packet,
    unsubscribe_packet,
)

# ---------------------------------------------------------------------------------------------------------------
# Raw clients


@pytest.fixture
def raw_timeout() -> float:
    """The raw clients of this file wait 5 s by default for a packet or for the gateway to close."""
    return 5.0


# ---------------------------------------------------------------------------------------------------------------
# Helpers for paho clients


def client(
    clients: list[Client],
    port: int,
    client_id: str = "",
    *,
    clean: bool = True,
    will: tuple[str, bytes, int, bool] | None = None,
) -> Client:
    made = Client(port, client_id, clean=clean, will=will)
    clients.append(made)
    return made


def _next_message(sub: Client, deadline: float) -> tuple[str, bytes, int, bool] | None:
    try:
        message = sub.expect(max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        return None
    return message.topic, bytes(message.payload), message.qos, bool(message.retain)


def receive(sub: Client, count: int, timeout: float = 5.0, quiet: float = 0.0) -> list[tuple[str, bytes, int, bool]]:
    """Messages as (topic, payload, qos, retain): up to `count` within `timeout`, then whatever else arrives in the
    next `quiet` seconds (so that a duplicate or an unexpected message shows up in the result)."""
    got: list[tuple[str, bytes, int, bool]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and (message := _next_message(sub, deadline)) is not None:
        got.append(message)
    deadline = time.monotonic() + quiet
    while quiet and (message := _next_message(sub, deadline)) is not None:
        got.append(message)
    return got


def session_present(connack: tuple[object, object, object]) -> bool:
    flags, rc, _props = connack
    assert rc == 0, f"CONNACK return code {rc}"
    return bool(flags.session_present)  # type: ignore[attr-defined]


def mosquitto(*args: str, port: int, stdin: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [args[0], "-p", str(port), *args[1:]],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=mosquitto_env(),
    )


# ---------------------------------------------------------------------------------------------------------------
# CONNECT / CONNACK


def test_zero_length_client_id_with_clean_session_is_accepted_and_unique(raw, gateway: Gateway) -> None:
    """§3.1.3.1 [MQTT-3.1.3-6]: a zero-length ClientId with CleanSession 1 is accepted and given a unique id, so two
    such clients do not take each other over [MQTT-3.1.3-7]."""
    first, second = raw(gateway.mqtt_port), raw(gateway.mqtt_port)
    assert first.connect("", clean=True) == ConnAck(False, 0)
    assert first.subscribe([("zero/id", 0)], 1) == [0]
    assert second.connect("", clean=True) == ConnAck(False, 0)
    second.send(publish_packet("zero/id", b"hello"))
    message = first.read_publish()
    assert (message.topic, message.payload) == ("zero/id", b"hello")
    second.nothing_within(0.2)  # not taken over either


def test_zero_length_client_id_without_clean_session_is_rejected_0x02(raw, gateway: Gateway) -> None:
    """§3.1.3.1 [MQTT-3.1.3-8]: a zero-length ClientId with CleanSession 0 gets CONNACK return code 0x02
    (identifier rejected), session present 0 [MQTT-3.2.2-4], and the connection is closed."""
    conn = raw(gateway.mqtt_port)
    conn.send(connect_packet("", clean=False))
    assert [p.raw for p in conn.read_until_closed()] == [b"\x20\x02\x00\x02"]


def test_session_takeover_closes_the_first_connection(raw, gateway: Gateway, clients) -> None:
    """§3.1.4 step 2 [MQTT-3.1.4-2]: a CONNECT with the ClientId of a connected client disconnects the existing
    client; with CleanSession 0 the new connection takes over the session (its subscription)."""
    first = raw(gateway.mqtt_port)
    assert first.connect("takeover", clean=False) == ConnAck(False, 0)
    assert first.subscribe([("takeover/t", 1)], 1) == [1]
    second = raw(gateway.mqtt_port)
    assert second.connect("takeover", clean=False) == ConnAck(True, 0)
    assert first.read_until_closed(3) == []
    pub = client(clients, gateway.mqtt_port, "takeover-pub")
    pub.publish("takeover/t", b"to the new connection", 1)
    message = second.read_publish()
    assert (message.topic, message.payload, message.qos) == ("takeover/t", b"to the new connection", 1)
    second.send(ack_packet(PUBACK, message.packet_id))
    second.nothing_within(0.2)


def test_session_present_flag(raw, gateway: Gateway) -> None:
    """§3.2.2.2: session present is 0 without stored session state [MQTT-3.2.2-3], 1 when a CleanSession 0 client
    resumes its session [MQTT-3.2.2-2], and always 0 with CleanSession 1 [MQTT-3.2.2-1], which also discards the
    stored session."""
    steps = [(False, False), (False, True), (False, True), (True, False), (False, False)]
    for clean, expected in steps:
        conn = raw(gateway.mqtt_port)
        assert conn.connect("sp-client", clean=clean) == ConnAck(expected, 0), f"clean session {int(clean)}"
        conn.send(disconnect_packet())
        assert conn.read_until_closed() == []


@pytest.mark.parametrize(
    "first_packet",
    [packet(PINGREQ, b""), publish_packet("not/connected", b"x"), subscribe_packet(1, [("not/connected", 0)])],
    ids=["PINGREQ", "PUBLISH", "SUBSCRIBE"],
)
def test_first_packet_not_connect_closes_the_connection(raw, gateway: Gateway, first_packet: bytes) -> None:
    """§3.1.0 [MQTT-3.1.0-1]: the first packet from a client must be CONNECT; anything else closes the connection
    without an answer."""
    conn = raw(gateway.mqtt_port)
    conn.send(first_packet)
    assert conn.read_until_closed(3) == []


def test_second_connect_closes_the_connection(raw, gateway: Gateway) -> None:
    """§3.1.0 [MQTT-3.1.0-2]: a second CONNECT on one connection is a protocol violation: the server disconnects
    the client (without a second CONNACK)."""
    conn = raw(gateway.mqtt_port)
    assert conn.connect("twice") == ConnAck(False, 0)
    conn.send(connect_packet("twice"))
    assert conn.read_until_closed(3) == []


@pytest.mark.parametrize("level", [2, 6])
def test_unsupported_protocol_level_gets_connack_0x01_then_close(raw, gateway: Gateway, level: int) -> None:
    """§3.1.2.2 [MQTT-3.1.2-2]: a protocol level the server does not support gets CONNACK return code 0x01
    (unacceptable protocol level), then the connection is closed."""
    conn = raw(gateway.mqtt_port)
    conn.send(connect_packet("old-or-new", version=level))
    assert [p.raw for p in conn.read_until_closed(3)] == [b"\x20\x02\x00\x01"]


@pytest.mark.parametrize(
    "packet",
    [
        connect_packet("bad-connect", reserved=True),
        connect_packet("bad-will-qos", will=Will("will/x", b"x", 3, False)),
    ],
    ids=["reserved-flag", "will-qos-3"],
)
def test_malformed_connect_closes_without_connack(raw, gateway: Gateway, packet: bytes) -> None:
    """§3.1.2.3 [MQTT-3.1.2-3]: the reserved CONNECT flag must be 0; §3.1.2.6 [MQTT-3.1.2-14]: Will QoS must not be
    3. Either way the server disconnects the client (§4.8: no CONNACK for a malformed packet)."""
    conn = raw(gateway.mqtt_port)
    conn.send(packet)
    assert conn.read_until_closed(3) == []


@pytest.mark.parametrize(
    "packet",
    [
        publish_packet("qos/three", b"x", 3, 1),
        subscribe_packet(1, [("bad/flags", 0)], first=0x80),
        subscribe_packet(1, []),
        subscribe_packet(1, [("bad/qos", 3)]),
    ],
    ids=["publish-qos-3", "subscribe-flags-0000", "subscribe-without-filters", "subscribe-qos-3"],
)
def test_malformed_packets_after_connect_close_the_connection(raw, gateway: Gateway, packet: bytes) -> None:
    """§3.3.1.2 [MQTT-3.3.1-4]: a PUBLISH with both QoS bits set; §3.8.1 [MQTT-3.8.1-1]: SUBSCRIBE fixed-header flags
    other than 0010; §3.8.3 [MQTT-3.8.3-3]: a SUBSCRIBE without any topic filter; §3.8.3.1 [MQTT-3-8.3-4]: a requested
    QoS of 3. Each is malformed: the server closes the connection (§4.8), without acknowledging."""
    conn = raw(gateway.mqtt_port)
    assert conn.connect("malformed") == ConnAck(False, 0)
    conn.send(packet)
    assert conn.read_until_closed(3) == []


# ---------------------------------------------------------------------------------------------------------------
# QoS 0, 1 and 2


def test_qos_matrix_delivers_at_min_of_publish_and_granted_qos(gateway: Gateway, clients) -> None:
    """§3.8.4 [MQTT-3.8.4-6], §4.3: a message is delivered at the minimum of the QoS it was published with and the
    QoS granted to the subscription, for every pair of publish QoS x subscription QoS."""
    subs = {}
    for sub_qos in (0, 1, 2):
        subs[sub_qos] = client(clients, gateway.mqtt_port, f"matrix-sub-{sub_qos}")
        assert subs[sub_qos].subscribe("matrix/#", sub_qos) == [sub_qos]
    pub = client(clients, gateway.mqtt_port, "matrix-pub")
    for pub_qos in (0, 1, 2):
        info = pub.publish(f"matrix/{pub_qos}", f"published at {pub_qos}", pub_qos)
        assert info.is_published()
    for sub_qos, sub in subs.items():
        got = sorted(receive(sub, 3))
        assert got == [(f"matrix/{q}", f"published at {q}".encode(), min(q, sub_qos), False) for q in (0, 1, 2)]
        sub.expect_none(0.2)


def test_qos_flows_and_packet_ids_on_both_sides(raw, gateway: Gateway) -> None:
    """§4.3.2 / §4.3.3: the gateway acknowledges a QoS 1 PUBLISH with PUBACK and a QoS 2 PUBLISH with PUBREC then
    PUBCOMP, each carrying the publisher's packet id; towards a subscriber it sends QoS 1/2 PUBLISH with a non-zero
    packet id (§2.3.1 [MQTT-2.3.1-1]), no id at QoS 0, DUP 0 on the first attempt [MQTT-3.3.1-2], PUBREL with flags
    0010 [MQTT-3.6.1-1] for the id of the PUBREC, and nothing more once PUBCOMP is sent."""
    sub, pub = raw(gateway.mqtt_port), raw(gateway.mqtt_port)
    assert sub.connect("flows-sub") == ConnAck(False, 0)
    assert sub.subscribe([("flows/#", 2)], 0x1234) == [2]
    assert pub.connect("flows-pub") == ConnAck(False, 0)

    pub.send(publish_packet("flows/0", b"zero", 0))
    message = sub.read_publish()
    assert (message.topic, message.payload, message.qos, message.dup, message.packet_id) == (
        "flows/0",
        b"zero",
        0,
        False,
        0,
    )

    pub.send(publish_packet("flows/1", b"one", 1, 0x0101))
    assert pub.expect(PUBACK).raw == b"\x40\x02\x01\x01"
    message = sub.read_publish()
    assert (message.topic, message.payload, message.qos, message.dup) == ("flows/1", b"one", 1, False)
    assert message.packet_id != 0
    sub.send(ack_packet(PUBACK, message.packet_id))

    pub.send(publish_packet("flows/2", b"two", 2, 0xFFFF))
    assert pub.expect(PUBREC).raw == b"\x50\x02\xff\xff"
    pub.send(ack_packet(PUBREL, 0xFFFF))
    assert pub.expect(PUBCOMP).raw == b"\x70\x02\xff\xff"
    message = sub.read_publish()
    assert (message.topic, message.payload, message.qos, message.dup) == ("flows/2", b"two", 2, False)
    assert message.packet_id != 0
    sub.send(ack_packet(PUBREC, message.packet_id))
    pubrel = sub.expect(PUBREL)
    assert pubrel.raw == ack_packet(PUBREL, message.packet_id)
    sub.send(ack_packet(PUBCOMP, message.packet_id))
    sub.nothing_within(0.3)
    pub.nothing_within(0.1)


def test_unacknowledged_messages_in_flight_have_distinct_packet_ids_in_order(raw, gateway: Gateway, clients) -> None:
    """§2.3.1 [MQTT-2.3.1-2]: every QoS 1 PUBLISH in flight to one client has its own unused packet id; §4.6
    [MQTT-4.6.0-2]: QoS 1 messages reach the subscriber in the order they were published."""
    sub = raw(gateway.mqtt_port)
    assert sub.connect("ids-sub") == ConnAck(False, 0)
    assert sub.subscribe([("ids/t", 1)], 7) == [1]
    pub = client(clients, gateway.mqtt_port, "ids-pub")
    for i in range(10):
        pub.publish("ids/t", f"m{i}", 1)
    messages = [sub.read_publish() for _ in range(10)]
    assert [m.payload for m in messages] == [f"m{i}".encode() for i in range(10)]
    pids = [m.packet_id for m in messages]
    assert 0 not in pids and len(set(pids)) == 10, pids
    for pid in pids:
        sub.send(ack_packet(PUBACK, pid))
    sub.nothing_within(0.3)


def test_unacknowledged_qos1_is_redelivered_with_dup_on_reconnect(raw, gateway: Gateway, clients) -> None:
    """§4.4 [MQTT-4.4.0-1]: when a CleanSession 0 client reconnects, the server resends every unacknowledged QoS 1
    PUBLISH with the DUP flag set [MQTT-3.3.1-1] and the same packet id."""
    first = raw(gateway.mqtt_port)
    assert first.connect("dup-sub", clean=False) == ConnAck(False, 0)
    assert first.subscribe([("dup/t", 1)], 1) == [1]
    pub = client(clients, gateway.mqtt_port, "dup-pub")
    pub.publish("dup/t", b"ack me", 1)
    original = first.read_publish()
    assert (original.payload, original.qos, original.dup) == (b"ack me", 1, False)
    first.close()  # no PUBACK

    second = raw(gateway.mqtt_port)
    assert second.connect("dup-sub", clean=False) == ConnAck(True, 0)
    again = second.read_publish()
    assert (again.topic, again.payload, again.qos, again.dup, again.packet_id) == (
        "dup/t",
        b"ack me",
        1,
        True,
        original.packet_id,
    )
    second.send(ack_packet(PUBACK, again.packet_id))
    second.nothing_within(0.3)

    # Acknowledged now: a third connection gets nothing.
    second.send(disconnect_packet())
    third = raw(gateway.mqtt_port)
    assert third.connect("dup-sub", clean=False) == ConnAck(True, 0)
    third.nothing_within(0.3)


def test_qos2_pubrel_is_resent_after_reconnect_not_the_publish(raw, gateway: Gateway, clients) -> None:
    """§4.4 [MQTT-4.4.0-1]: a QoS 2 message whose PUBREC arrived before the client went away is continued with PUBREL
    on reconnect (CleanSession 0), not sent again as a PUBLISH (§4.3.3)."""
    first = raw(gateway.mqtt_port)
    assert first.connect("rel-sub", clean=False) == ConnAck(False, 0)
    assert first.subscribe([("rel/t", 2)], 1) == [2]
    pub = client(clients, gateway.mqtt_port, "rel-pub")
    pub.publish("rel/t", b"exactly once", 2)
    message = first.read_publish()
    first.send(ack_packet(PUBREC, message.packet_id))
    assert first.expect(PUBREL).packet_id == message.packet_id
    first.close()  # no PUBCOMP

    second = raw(gateway.mqtt_port)
    assert second.connect("rel-sub", clean=False) == ConnAck(True, 0)
    assert second.expect(PUBREL).raw == ack_packet(PUBREL, message.packet_id)
    second.send(ack_packet(PUBCOMP, message.packet_id))
    second.nothing_within(0.3)


def test_qos2_publish_resent_with_dup_before_pubrel_is_delivered_once(raw, gateway: Gateway, clients) -> None:
    """§4.3.3 [MQTT-4.3.3-2]: until it receives PUBREL the receiver acknowledges a resent QoS 2 PUBLISH (DUP 1, same
    packet id) with PUBREC again but must not deliver the message again; after PUBCOMP the same packet id starts a
    new message."""
    sub = client(clients, gateway.mqtt_port, "once-sub")
    assert sub.subscribe("once/t", 2) == [2]
    pub = raw(gateway.mqtt_port)
    assert pub.connect("once-pub") == ConnAck(False, 0)
    pub.send(publish_packet("once/t", b"first", 2, 42))
    assert pub.expect(PUBREC).packet_id == 42
    for _ in range(2):
        pub.send(publish_packet("once/t", b"first", 2, 42, dup=True))
        assert pub.expect(PUBREC).packet_id == 42
    pub.send(ack_packet(PUBREL, 42))
    assert pub.expect(PUBCOMP).packet_id == 42
    pub.send(publish_packet("once/t", b"second", 2, 42))
    assert pub.expect(PUBREC).packet_id == 42
    pub.send(ack_packet(PUBREL, 42))
    assert pub.expect(PUBCOMP).packet_id == 42
    assert receive(sub, 2, quiet=0.3) == [("once/t", b"first", 2, False), ("once/t", b"second", 2, False)]


def test_qos2_exactly_once_when_publisher_reconnects_before_pubrel(raw, gateway: Gateway, clients) -> None:
    """§4.3.3, §4.4: a CleanSession 0 publisher that lost its connection after PUBREC resends the PUBLISH (DUP 1) and
    the PUBREL on reconnect; the server keeps the packet id across the reconnect and delivers the message once."""
    sub = client(clients, gateway.mqtt_port, "once2-sub")
    assert sub.subscribe("once2/t", 2) == [2]
    first = raw(gateway.mqtt_port)
    assert first.connect("once2-pub", clean=False) == ConnAck(False, 0)
    first.send(publish_packet("once2/t", b"only once", 2, 9))
    assert first.expect(PUBREC).packet_id == 9
    first.close()
    second = raw(gateway.mqtt_port)
    assert second.connect("once2-pub", clean=False) == ConnAck(True, 0)
    second.send(publish_packet("once2/t", b"only once", 2, 9, dup=True))
    assert second.expect(PUBREC).packet_id == 9
    second.send(ack_packet(PUBREL, 9))
    assert second.expect(PUBCOMP).packet_id == 9
    assert receive(sub, 1, quiet=0.3) == [("once2/t", b"only once", 2, False)]


# ---------------------------------------------------------------------------------------------------------------
# SUBSCRIBE / UNSUBSCRIBE


def test_wildcards_match_as_specified(gateway: Gateway, clients) -> None:
    """§4.7.1.2: `#` matches the parent level and any number of child levels; §4.7.1.3: `+` matches exactly one
    level, which may be empty (the examples of the standard)."""
    topics = [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player2",
        "sport",
        "sport/",
        "/finance",
        "sport/tennis",
    ]
    expected = {
        "sport/tennis/player1/#": topics[:3],
        "sport/tennis/+": ["sport/tennis/player1", "sport/tennis/player2"],
        "sport/+": ["sport/", "sport/tennis"],
        "sport/#": [t for t in topics if t.startswith("sport")],
        "+/+": ["sport/", "/finance", "sport/tennis"],
        "/+": ["/finance"],
        "+": ["sport"],
        "#": topics,
        "+/tennis/#": [t for t in topics if t.startswith("sport/tennis")],
    }
    subs = {}
    for i, topic_filter in enumerate(expected):
        subs[topic_filter] = client(clients, gateway.mqtt_port, f"wild-{i}")
        assert subs[topic_filter].subscribe(topic_filter, 1) == [1]
    pub = client(clients, gateway.mqtt_port, "wild-pub")
    for topic in topics:
        pub.publish(topic, topic, 1)
    for topic_filter, sub in subs.items():
        got = [m[0] for m in receive(sub, len(expected[topic_filter]))]
        assert sorted(got) == sorted(expected[topic_filter]), topic_filter
    for sub in subs.values():
        sub.expect_none(0.05)


def test_overlapping_subscriptions_deliver_once_at_highest_qos(gateway: Gateway, clients) -> None:
    """§3.3.5 [MQTT-3.3.5-1]: a message matching several subscriptions of one client is delivered respecting the
    highest QoS of the matching subscriptions (once, not once per filter); other clients are not affected."""
    sub = client(clients, gateway.mqtt_port, "overlap-sub")
    assert sub.subscribe("overlap/#", 0) == [0]
    assert sub.subscribe("overlap/+/c", 2) == [2]
    assert sub.subscribe("overlap/b/c", 1) == [1]
    other = client(clients, gateway.mqtt_port, "overlap-other")
    assert other.subscribe("overlap/#", 1) == [1]
    pub = client(clients, gateway.mqtt_port, "overlap-pub")
    pub.publish("overlap/b/c", b"both", 2)
    pub.publish("overlap/x", b"one filter", 2)
    # Sorted: paho hands a QoS 2 message to the application only at PUBREL, so a QoS 0 message sent after it can
    # reach the application first although the gateway sent them in order.
    assert sorted(receive(sub, 2, quiet=0.3)) == [
        ("overlap/b/c", b"both", 2, False),
        ("overlap/x", b"one filter", 0, False),
    ]
    assert receive(other, 2, quiet=0.1) == [
        ("overlap/b/c", b"both", 1, False),
        ("overlap/x", b"one filter", 1, False),
    ]


def test_dollar_topics_not_matched_by_leading_wildcards(gateway_factory, clients) -> None:
    """§4.7.2 [MQTT-4.7.2-1]: topic filters starting with `#` or `+` do not match topic names starting with `$`;
    `$SYS/#` and `$SYS/broker/+` do match the gateway's `$SYS/broker/...` topics."""
    gateway = gateway_factory("[mqtt]\nsys_interval = 1\n")
    wild = {f: client(clients, gateway.mqtt_port, f"dollar-{i}") for i, f in enumerate(["#", "+/broker/#", "+/+/+"])}
    for topic_filter, sub in wild.items():
        assert sub.subscribe(topic_filter, 0) == [0]
    sys_sub = client(clients, gateway.mqtt_port, "dollar-sys")
    assert sys_sub.subscribe("$SYS/broker/+", 0) == [0]
    pub = client(clients, gateway.mqtt_port, "dollar-pub")
    pub.publish("$foo/bar/baz", b"dollar", 1)
    # Wait for two rounds of $SYS updates: retained ones on subscribe, then at least one live one.
    deadline = time.monotonic() + 4
    uptimes = 0
    while uptimes < 2 and time.monotonic() < deadline:
        try:
            message = sys_sub.expect(max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        assert message.topic.startswith("$SYS/broker/")
        uptimes += message.topic == "$SYS/broker/uptime"
    assert uptimes >= 2, "no $SYS/broker/uptime updates within 4 s with sys_interval = 1"
    pub.publish("plain/one/two", b"plain", 1)
    for topic_filter, sub in wild.items():
        expected = [] if topic_filter == "+/broker/#" else [("plain/one/two", b"plain", 0, False)]
        assert receive(sub, 5, timeout=0.5) == expected, topic_filter


def test_invalid_filters_get_0x80_and_the_valid_ones_in_the_same_subscribe_work(raw, gateway: Gateway, clients) -> None:
    """§4.7.1.2 [MQTT-4.7.1-2] (`#` must be last and alone), §4.7.1.3 [MQTT-4.7.1-3] (`+` must fill a level):
    SUBACK return code 0x80 for each invalid filter, the granted QoS for the others, in order (§3.9.3
    [MQTT-3.9.3-1]); the connection stays open and the valid subscriptions deliver."""
    sub = raw(gateway.mqtt_port)
    assert sub.connect("invalid-sub") == ConnAck(False, 0)
    filters = [("ok/one", 1), ("a/#/b", 0), ("a+", 1), ("ok/two/#", 2), ("a/b#", 0), ("+a/b", 1)]
    assert sub.subscribe(filters, 5) == [1, 0x80, 0x80, 2, 0x80, 0x80]
    pub = client(clients, gateway.mqtt_port, "invalid-pub")
    pub.publish("ok/one", b"1", 2)
    pub.publish("ok/two/x", b"2", 2)
    first, second = sub.read_publish(), sub.read_publish()
    assert (first.topic, first.qos, second.topic, second.qos) == ("ok/one", 1, "ok/two/x", 2)


def test_unsubscribe_stops_delivery_and_is_always_acknowledged(raw, gateway: Gateway, clients) -> None:
    """§3.10.4 [MQTT-3.10.4-2]: after UNSUBSCRIBE the server stops adding messages for that filter; other
    subscriptions go on; UNSUBACK carries the packet id [MQTT-3.10.4-4] and is sent even for a filter that was not
    subscribed [MQTT-3.10.4-5], with no payload (§3.11)."""
    sub = raw(gateway.mqtt_port)
    assert sub.connect("unsub-sub") == ConnAck(False, 0)
    assert sub.subscribe([("unsub/a", 0), ("unsub/b", 0)], 1) == [0, 0]
    pub = client(clients, gateway.mqtt_port, "unsub-pub")
    pub.publish("unsub/a", b"before", 1)
    assert sub.read_publish().topic == "unsub/a"
    sub.send(unsubscribe_packet(0x0A0B, ["unsub/a", "unsub/never-subscribed"]))
    assert sub.expect(UNSUBACK).raw == b"\xb0\x02\x0a\x0b"
    pub.publish("unsub/a", b"after", 1)
    pub.publish("unsub/b", b"still", 1)
    message = sub.read_publish()
    assert (message.topic, message.payload) == ("unsub/b", b"still")
    sub.nothing_within(0.3)


def test_paho_unsubscribe_stops_delivery(gateway: Gateway, clients) -> None:
    """§3.10.4: unsubscribing through paho ends delivery for that filter only."""
    sub = client(clients, gateway.mqtt_port, "paho-unsub")
    assert sub.subscribe("pu/+", 1) == [1]
    assert sub.subscribe("pu/keep", 1) == [1]
    pub = client(clients, gateway.mqtt_port, "paho-unsub-pub")
    pub.publish("pu/x", b"1", 1)
    assert receive(sub, 1) == [("pu/x", b"1", 1, False)]
    unsubacks: queue.Queue[int] = queue.Queue()
    sub.paho.on_unsubscribe = lambda _c, _u, mid, _rcs, _props: unsubacks.put(mid)
    _rc, mid = sub.paho.unsubscribe("pu/+")
    assert unsubacks.get(timeout=5) == mid
    pub.publish("pu/x", b"2", 1)
    pub.publish("pu/keep", b"3", 1)
    assert receive(sub, 1, quiet=0.3) == [("pu/keep", b"3", 1, False)]


# ---------------------------------------------------------------------------------------------------------------
# Retained messages


def test_retained_set_replace_delete(gateway: Gateway, clients) -> None:
    """§3.3.1.3: a retained message is stored and replaces the previous one on its topic [MQTT-3.3.1-5]; new
    subscribers get it with RETAIN 1 [MQTT-3.3.1-8] at min(stored QoS, granted QoS); live forwarding clears RETAIN
    [MQTT-3.3.1-9]; a retained PUBLISH with an empty payload is forwarded as normal and deletes the retained message
    [MQTT-3.3.1-10/11]; a non-retained PUBLISH does not replace it [MQTT-3.3.1-12]."""
    port = gateway.mqtt_port
    pub = client(clients, port, "ret-pub")
    pub.publish("ret/a", b"v1", 1, retain=True)
    pub.publish("ret/a", b"v2", 1, retain=True)
    pub.publish("ret/b", b"b1", 0, retain=True)
    pub.publish("ret/c", b"not retained", 1)

    first = client(clients, port, "ret-first")
    assert first.subscribe("ret/#", 2) == [2]
    assert sorted(receive(first, 2, quiet=0.3)) == [("ret/a", b"v2", 1, True), ("ret/b", b"b1", 0, True)]

    pub.publish("ret/a", b"v3", 1, retain=True)
    assert receive(first, 1) == [("ret/a", b"v3", 1, False)]
    pub.publish("ret/b", b"", 1, retain=True)
    assert receive(first, 1) == [("ret/b", b"", 1, False)]
    pub.publish("ret/a", b"live only", 1)
    assert receive(first, 1) == [("ret/a", b"live only", 1, False)]

    second = client(clients, port, "ret-second")
    assert second.subscribe("ret/#", 0) == [0]
    assert receive(second, 1, quiet=0.3) == [("ret/a", b"v3", 0, True)]


def test_resubscribing_resends_retained_messages(gateway: Gateway, clients) -> None:
    """§3.8.4 [MQTT-3.8.4-3]: a SUBSCRIBE with a filter identical to an existing subscription replaces it, and the
    retained messages matching it are sent again."""
    pub = client(clients, gateway.mqtt_port, "reret-pub")
    pub.publish("reret/t", b"kept", 1, retain=True)
    sub = client(clients, gateway.mqtt_port, "reret-sub")
    assert sub.subscribe("reret/#", 1) == [1]
    assert receive(sub, 1) == [("reret/t", b"kept", 1, True)]
    assert sub.subscribe("reret/#", 0) == [0]
    assert receive(sub, 1, quiet=0.3) == [("reret/t", b"kept", 0, True)]


def test_mosquitto_retained_set_and_delete(gateway: Gateway) -> None:
    """§3.3.1.3: mosquitto_pub -r stores a retained message that mosquitto_sub receives with the retain flag;
    mosquitto_pub -r -n (empty payload) deletes it, so a later subscriber receives nothing."""
    port = gateway.mqtt_port
    assert mosquitto("mosquitto_pub", "-t", "mret/x", "-m", "hello", "-r", "-q", "1", port=port).returncode == 0
    assert mosquitto("mosquitto_pub", "-t", "mret/y", "-m", "old", "-r", "-q", "2", port=port).returncode == 0
    assert mosquitto("mosquitto_pub", "-t", "mret/y", "-m", "new", "-r", "-q", "2", port=port).returncode == 0
    got = mosquitto("mosquitto_sub", "-t", "mret/#", "-q", "2", "-C", "2", "-W", "5", "-F", "%r %q %t %p", port=port)
    assert got.returncode == 0, got.stderr
    assert sorted(got.stdout.splitlines()) == ["1 1 mret/x hello", "1 2 mret/y new"]
    for topic in ("mret/x", "mret/y"):
        assert mosquitto("mosquitto_pub", "-t", topic, "-n", "-r", port=port).returncode == 0
    got = mosquitto("mosquitto_sub", "-t", "mret/#", "-C", "1", "-W", "1", "-F", "%r %t %p", port=port)
    assert got.stdout == ""
    assert got.returncode == 27, (got.returncode, got.stderr)  # 27: -W timed out


# ---------------------------------------------------------------------------------------------------------------
# Will messages


def test_will_published_on_abnormal_close(gateway: Gateway, clients) -> None:
    """§3.1.2.5 [MQTT-3.1.2-8]: the will is published when the network connection closes without DISCONNECT, with its
    QoS and payload; it is then removed from the session [MQTT-3.1.2-10] (nothing more)."""
    watcher = client(clients, gateway.mqtt_port, "will-watcher")
    assert watcher.subscribe("will/#", 2) == [2]
    dying = client(clients, gateway.mqtt_port, "will-dying", will=("will/dying", b"gone", 1, False))
    dying.drop()
    assert receive(watcher, 1, quiet=0.3) == [("will/dying", b"gone", 1, False)]


def test_will_published_on_keepalive_timeout_and_connection_closed(raw, gateway: Gateway, clients) -> None:
    """§3.1.2.10 [MQTT-3.1.2-24]: a client silent for 1.5 x its keep-alive (1 s) is disconnected by the server,
    which publishes its will (§3.1.2.5, "failed to communicate within the Keep Alive time")."""
    watcher = client(clients, gateway.mqtt_port, "ka-watcher")
    assert watcher.subscribe("will/ka", 1) == [1]
    silent = raw(gateway.mqtt_port)
    assert silent.connect("ka-silent", keepalive=1, will=Will("will/ka", b"timed out", 1, False)) == ConnAck(False, 0)
    start = time.monotonic()
    message = watcher.expect(timeout=5)
    elapsed = time.monotonic() - start
    assert (message.topic, message.payload, message.qos) == ("will/ka", b"timed out", 1)
    assert 1.3 <= elapsed <= 2.5, f"will after {elapsed:.2f} s, expected about 1.5 s"
    assert silent.read_until_closed(1) == []


def test_will_not_published_after_disconnect(gateway: Gateway, clients) -> None:
    """§3.1.2.5 [MQTT-3.1.2-10]: on DISCONNECT the will is deleted without being published."""
    watcher = client(clients, gateway.mqtt_port, "nowill-watcher")
    assert watcher.subscribe("will/#", 1) == [1]
    polite = client(clients, gateway.mqtt_port, "nowill-client", will=("will/polite", b"should not appear", 1, False))
    polite.publish("will/alive", b"alive", 1)
    assert receive(watcher, 1) == [("will/alive", b"alive", 1, False)]
    polite.close()
    watcher.expect_none(1.0)


def test_retained_will(gateway: Gateway, clients) -> None:
    """§3.1.2.7 [MQTT-3.1.2-17]: a will with Will Retain 1 is published as a retained message: a subscriber that
    arrives later gets it with the retain flag."""
    dying = client(clients, gateway.mqtt_port, "rwill-client", will=("will/retained", b"last words", 1, True))
    dying.drop()
    deadline = time.monotonic() + 3
    got: list[tuple[str, bytes, int, bool]] = []
    while not got and time.monotonic() < deadline:
        late = client(clients, gateway.mqtt_port, "rwill-late")
        assert late.subscribe("will/retained", 2) == [2]
        got = receive(late, 1, timeout=0.3)
        late.close()
    assert got == [("will/retained", b"last words", 1, True)]


def test_will_published_when_server_closes_for_protocol_error(raw, gateway: Gateway, clients) -> None:
    """§3.1.2.5: the will is published when the server closes the connection because of a protocol error (here a
    second CONNECT, §3.1.0 [MQTT-3.1.0-2])."""
    watcher = client(clients, gateway.mqtt_port, "pe-watcher")
    assert watcher.subscribe("will/pe", 1) == [1]
    conn = raw(gateway.mqtt_port)
    assert conn.connect("pe-client", will=Will("will/pe", b"protocol error", 1, False)) == ConnAck(False, 0)
    conn.send(connect_packet("pe-client"))
    assert conn.read_until_closed(3) == []
    assert receive(watcher, 1, timeout=3) == [("will/pe", b"protocol error", 1, False)]


# ---------------------------------------------------------------------------------------------------------------
# Keep-alive


def test_pingreq_keeps_the_connection_alive(raw, gateway: Gateway, clients) -> None:
    """§3.1.2.10, §3.12.4 [MQTT-3.12.4-1]: every PINGREQ is answered with PINGRESP, and a client that keeps sending
    them stays connected well beyond 1.5 x its keep-alive of 1 s (no will)."""
    watcher = client(clients, gateway.mqtt_port, "ping-watcher")
    assert watcher.subscribe("will/ping", 1) == [1]
    conn = raw(gateway.mqtt_port)
    assert conn.connect("pinger", keepalive=1, will=Will("will/ping", b"died", 1, False)) == ConnAck(False, 0)
    start = time.monotonic()
    while time.monotonic() - start < 2.2:
        time.sleep(0.5)
        conn.send(packet(PINGREQ, b""))
        assert conn.expect(PINGRESP, timeout=1).raw == b"\xd0\x00"
    assert conn.subscribe([("still/here", 0)], 3) == [0]
    watcher.expect_none(0.1)


# ---------------------------------------------------------------------------------------------------------------
# Persistent sessions (CleanSession 0)


def _persistent_subscriber(clients: list[Client], port: int, client_id: str, topic_filter: str) -> None:
    sub = client(clients, port, client_id, clean=False)
    assert sub.subscribe(topic_filter, 2) == [2]
    sub.close()


def _publish_offline_batch(clients: list[Client], port: int, prefix: str, *, disconnect: bool = True) -> None:
    pub = client(clients, port, f"{prefix}-pub")
    pub.publish(f"{prefix}/q0", b"zero", 0)
    pub.publish(f"{prefix}/q1", b"one", 1)
    pub.publish(f"{prefix}/q2", b"two", 2)
    if disconnect:
        pub.close()


def _expect_queued(clients: list[Client], port: int, client_id: str, prefix: str) -> Client:
    sub = Client(port, client_id, clean=False, connect=False)
    clients.append(sub)
    assert session_present(sub.connect()), "session not present on reconnect"
    got = receive(sub, 2, quiet=0.3)
    assert got == [(f"{prefix}/q1", b"one", 1, False), (f"{prefix}/q2", b"two", 2, False)]
    return sub


def test_persistent_session_queues_qos1_and_qos2_but_not_qos0(gateway: Gateway, clients) -> None:
    """§3.1.2.4: the session of a CleanSession 0 client keeps its subscriptions and the QoS 1 and QoS 2 messages
    published while it is offline, delivered when it reconnects [MQTT-3.1.2-5]; QoS 0 messages are not queued (the
    standard allows it; the gateway's default is off)."""
    port = gateway.mqtt_port
    _persistent_subscriber(clients, port, "offline-sub", "offline/#")
    _publish_offline_batch(clients, port, "offline")
    sub = _expect_queued(clients, port, "offline-sub", "offline")
    other = client(clients, port, "offline-pub2")
    other.publish("offline/live", b"subscription kept", 1)
    assert receive(sub, 1) == [("offline/live", b"subscription kept", 1, False)]


def test_persistent_session_survives_sigterm_restart(gateway: Gateway, clients) -> None:
    """§3.1.2.4, §4.1: the session state (subscriptions, queued QoS 1/2 messages) survives a gateway restart
    (SIGTERM, then a start on the same data directory and port)."""
    port = gateway.mqtt_port
    _persistent_subscriber(clients, port, "restart-sub", "restart/#")
    _publish_offline_batch(clients, port, "restart")
    assert gateway.stop() == 0
    gateway.start(mqtt_port=port)
    sub = _expect_queued(clients, port, "restart-sub", "restart")
    pub = client(clients, port, "restart-pub2")
    pub.publish("restart/after", b"subscription survived", 1)
    assert receive(sub, 1) == [("restart/after", b"subscription survived", 1, False)]


def test_persistent_session_survives_kill_9(gateway: Gateway, clients) -> None:
    """§3.1.2.4, §4.3.2/§4.3.3: once the gateway has acknowledged a QoS 1/2 message (PUBACK / PUBCOMP) it owns it:
    the message queued for an offline CleanSession 0 client, and the client's subscription, survive a kill -9."""
    port = gateway.mqtt_port
    _persistent_subscriber(clients, port, "kill-sub", "kill/#")
    # The publisher stays connected: its DISCONNECT could make the gateway write its state by chance.
    _publish_offline_batch(clients, port, "kill", disconnect=False)
    gateway.kill()
    gateway.start(mqtt_port=port)
    sub = _expect_queued(clients, port, "kill-sub", "kill")
    pub = client(clients, port, "kill-pub2")
    pub.publish("kill/after", b"subscription survived", 1)
    assert receive(sub, 1) == [("kill/after", b"subscription survived", 1, False)]


def test_unacknowledged_in_flight_message_survives_kill_9(raw, gateway: Gateway, clients) -> None:
    """§4.4: a QoS 1 message sent but not acknowledged before the gateway was killed is resent (DUP 1) when the
    CleanSession 0 client reconnects to the restarted gateway."""
    first = raw(gateway.mqtt_port)
    assert first.connect("inflight-sub", clean=False) == ConnAck(False, 0)
    assert first.subscribe([("inflight/t", 1)], 1) == [1]
    pub = client(clients, gateway.mqtt_port, "inflight-pub")
    pub.publish("inflight/t", b"unacked", 1)
    message = first.read_publish()
    port = gateway.mqtt_port
    gateway.kill()  # the publisher stays connected: its DISCONNECT could make the gateway write its state
    first.close()
    gateway.start(mqtt_port=port)
    second = raw(gateway.mqtt_port)
    assert second.connect("inflight-sub", clean=False) == ConnAck(True, 0)
    again = second.read_publish()
    assert (again.topic, again.payload, again.dup, again.packet_id) == (
        "inflight/t",
        b"unacked",
        True,
        message.packet_id,
    )


def test_retained_message_survives_kill_9(gateway: Gateway, clients) -> None:
    """§3.3.1.3: a retained message acknowledged by the gateway is still retained after a kill -9 and restart."""
    pub = client(clients, gateway.mqtt_port, "kret-pub")
    pub.publish("kret/t", b"durable", 1, retain=True)
    port = gateway.mqtt_port
    gateway.kill()
    gateway.start(mqtt_port=port)
    sub = client(clients, port, "kret-sub")
    assert sub.subscribe("kret/#", 1) == [1]
    assert receive(sub, 1) == [("kret/t", b"durable", 1, True)]


def test_clean_session_reconnect_discards_the_session(gateway: Gateway, clients) -> None:
    """§3.1.2.4 [MQTT-3.1.2-6]: connecting with CleanSession 1 discards the previous session: no queued messages,
    no subscriptions, session present 0, and the session does not come back on a later CleanSession 0 connect."""
    port = gateway.mqtt_port
    _persistent_subscriber(clients, port, "discard-sub", "discard/#")
    _publish_offline_batch(clients, port, "discard")
    clean = Client(port, "discard-sub", clean=True, connect=False)
    clients.append(clean)
    assert not session_present(clean.connect())
    pub = client(clients, port, "discard-pub2")
    pub.publish("discard/after", b"no subscription", 1)
    clean.expect_none(0.5)
    clean.close()
    again = Client(port, "discard-sub", clean=False, connect=False)
    clients.append(again)
    assert not session_present(again.connect())
    again.expect_none(0.3)


# ---------------------------------------------------------------------------------------------------------------
# $SYS


def test_sys_topics_published_periodically_with_plausible_values(gateway_factory, clients) -> None:
    """The gateway publishes `$SYS/broker/...` every sys_interval: clients/connected counts the connected clients,
    messages/received grows with publishes, uptime is a number of seconds (mosquitto's conventions; §4.7.2 leaves
    `$SYS/` to the server)."""
    gateway = gateway_factory("[mqtt]\nsys_interval = 1\n")
    latest: dict[str, str] = {}
    sys_sub = client(clients, gateway.mqtt_port, "sys-sub")
    assert sys_sub.subscribe("$SYS/broker/#", 0) == [0]
    other = client(clients, gateway.mqtt_port, "sys-other")

    def wait_for(name: str, check: Callable[[str], bool], timeout: float = 4.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = sys_sub.expect(max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            latest[message.topic.removeprefix("$SYS/broker/")] = message.payload.decode()
            if name in latest and check(latest[name]):
                return latest[name]
        raise AssertionError(f"$SYS/broker/{name} never satisfied the check within {timeout} s: {latest.get(name)!r}")

    wait_for("clients/connected", lambda v: v == "2")
    uptime = wait_for("uptime", lambda v: re.fullmatch(r"\d+ seconds", v) is not None)
    received = int(wait_for("messages/received", lambda v: v.isdigit()))
    for i in range(5):
        other.publish("sys/test", str(i), 1)
    wait_for("messages/received", lambda v: int(v) >= received + 5)
    assert int(wait_for("uptime", lambda v: v != uptime).split()[0]) >= int(uptime.split()[0])
    other.close()
    wait_for("clients/connected", lambda v: v == "1")


# ---------------------------------------------------------------------------------------------------------------
# mosquitto_pub / mosquitto_sub interoperability


def test_mosquitto_pub_lines_arrive_in_order_at_mosquitto_sub(gateway: Gateway) -> None:
    """§4.6 [MQTT-4.6.0-2]: `mosquitto_pub -l -q 1` sends each line as a QoS 1 message; `mosquitto_sub -C N` receives
    them all, in order."""
    port = gateway.mqtt_port
    count = 300
    # A retained marker tells us when mosquitto_sub's subscription is in place.
    assert mosquitto("mosquitto_pub", "-t", "interop/ready", "-m", "ready", "-r", port=port).returncode == 0
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-p",
            str(port),
            "-q",
            "1",
            "-t",
            "interop/ready",
            "-t",
            "interop/lines",
            "-v",
            "-C",
            str(count + 1),
            "-W",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mosquitto_env(),
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert sub.stdout is not None
        stdout = sub.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        assert lines.get(timeout=10) == "interop/ready ready"
        payload = "".join(f"line {i:04d}\n" for i in range(count))
        result = mosquitto("mosquitto_pub", "-t", "interop/lines", "-q", "1", "-l", port=port, stdin=payload)
        assert result.returncode == 0, result.stderr
        assert sub.wait(timeout=20) == 0, sub.stderr.read() if sub.stderr else ""
        got: list[str] = []
        while not lines.empty() or len(got) < count:
            got.append(lines.get(timeout=5))
        assert got == [f"interop/lines line {i:04d}" for i in range(count)]
    finally:
        sub.kill()
        sub.wait()


def test_mosquitto_qos2_and_paho_both_ways(gateway: Gateway, clients) -> None:
    """§4.3.3: QoS 2 between mosquitto_pub and paho, and from paho to mosquitto_sub, each delivered once at QoS 2."""
    port = gateway.mqtt_port
    sub = client(clients, port, "mq2-paho-sub")
    assert sub.subscribe("mq2/to-paho", 2) == [2]
    assert mosquitto("mosquitto_pub", "-t", "mq2/to-paho", "-m", "from mosquitto", "-q", "2", port=port).returncode == 0
    assert receive(sub, 1, quiet=0.3) == [("mq2/to-paho", b"from mosquitto", 2, False)]

    pub = client(clients, port, "mq2-paho-pub")
    pub.publish("mq2/to-mosquitto", b"from paho", 2, retain=True)
    got = mosquitto(
        "mosquitto_sub", "-t", "mq2/to-mosquitto", "-q", "2", "-C", "1", "-W", "5", "-F", "%q %p", port=port
    )
    assert (got.returncode, got.stdout) == (0, "2 from paho\n"), got.stderr
