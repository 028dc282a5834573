"""Publish hooks (`Broker.add_publish_hook`) seen from the network: a broker and its MQTT server run in-process on an
event loop in a thread, real clients talk to them over loopback sockets, and the hooks are held until the test lets
them finish."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from gateway.mqtt.broker import PublishRejected
from gateway.mqtt.connection import ConnectionLimits
from tests.conftest import Client, wait_until
from tests.mqtt.conftest import Harness, subscriber
from tests.rawmqtt import PUBACK, PUBCOMP, PUBREC, PUBREL, RawFactory


def payloads_of(sub: Client, count: int) -> list[bytes]:
    return [bytes(sub.expect().payload) for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# The acknowledgement waits for the hook


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("qos", [1, 2])
def test_ack_is_sent_only_after_the_hook_finished(
    harness: Harness, clients: list[Client], raw: RawFactory, version: int, qos: int
) -> None:
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = raw(harness.port, "publisher", version=version)

    pub.publish("db/readings", b"held", qos, packet_id=7)
    assert wait_until(lambda: gate.payloads() == [b"held"])
    pub.nothing_within(0.3)
    sub.expect_none(0.01)

    gate.release(b"held")
    first, packet_id, reason, _props, _size = pub.read_ack()
    assert (first, packet_id, reason) == (PUBACK if qos == 1 else PUBREC, 7, 0)
    assert gate.finished == [b"held"]
    message = sub.expect()
    assert (message.topic, message.payload) == ("db/readings", b"held")
    if qos == 2:
        pub.ack(PUBREL, 7)
        assert pub.read_ack()[:3] == (PUBCOMP, 7, 0)
    assert gate.payloads() == [b"held"]  # called once


# ---------------------------------------------------------------------------------------------------------------
# Rejections


@pytest.mark.parametrize("retry", [False, True], ids=["final", "retry"])
@pytest.mark.parametrize("qos", [1, 2])
def test_rejection_gives_a_v5_publisher_the_reason_and_is_not_delivered(
    harness: Harness, clients: list[Client], raw: RawFactory, qos: int, retry: bool
) -> None:
    gate = harness.gate()
    gate.open()
    # MQTT 5 publishers are told in both cases; `retry` only matters to 3.1.1 clients.
    gate.reject(b"garbage", PublishRejected("bad payload", 0x99, retry=retry))
    sub = subscriber(harness, clients)
    pub = raw(harness.port, "publisher-v5", version=5)

    pub.publish("db/readings", b"garbage", qos, packet_id=1)
    first, packet_id, reason, props, _size = pub.read_ack()
    assert (first, packet_id, reason) == (PUBACK if qos == 1 else PUBREC, 1, 0x99)
    assert props.get(0x1F) == "bad payload"

    pub.publish("db/readings", b"good", qos, packet_id=2)
    assert pub.read_ack()[:3] == (PUBACK if qos == 1 else PUBREC, 2, 0)
    assert sub.expect().payload == b"good"
    sub.expect_none(0.2)


def test_rejection_reaches_a_paho_v5_publisher(harness: Harness, clients: list[Client]) -> None:
    gate = harness.gate()
    gate.open()
    gate.reject(b"garbage", PublishRejected("bad payload", 0x99))
    pub = Client(harness.port, "paho-v5", v5=True)
    clients.append(pub)
    info = pub.publish("db/readings", b"garbage", qos=1)
    mid, rc, props = pub.acks.get(timeout=10)
    assert mid == info.mid
    assert rc.value == 0x99
    assert props.ReasonString == "bad payload"


@pytest.mark.parametrize("qos", [1, 2])
def test_rejection_without_retry_is_acknowledged_to_a_311_publisher_and_dropped(
    harness: Harness, clients: list[Client], raw: RawFactory, qos: int
) -> None:
    gate = harness.gate()
    gate.open()
    gate.reject(b"garbage", PublishRejected("bad payload", 0x99, retry=False))
    sub = subscriber(harness, clients)
    pub = raw(harness.port, "publisher-311", version=4)

    pub.publish("db/readings", b"garbage", qos, packet_id=1)
    # 3.1.1 has no negative acknowledgement: a plain PUBACK / PUBREC, so that the client does not resend forever.
    assert pub.read() == (PUBACK if qos == 1 else PUBREC, b"\x00\x01")
    pub.publish("db/readings", b"good", qos, packet_id=2)
    assert pub.read() == (PUBACK if qos == 1 else PUBREC, b"\x00\x02")
    assert sub.expect().payload == b"good"
    sub.expect_none(0.2)


def test_rejection_with_retry_closes_a_311_connection_and_the_client_resends(
    harness: Harness, clients: list[Client]
) -> None:
    gate = harness.gate()
    gate.open()
    gate.reject(b"reading-1", PublishRejected("storage full", 0x97, retry=True))
    sub = subscriber(harness, clients)
    pub = Client(harness.port, "retrier", clean=False)
    clients.append(pub)

    info = pub.publish("db/readings", b"reading-1", qos=1, wait=False)
    pub.disconnects.get(timeout=10)  # the gateway closed the connection...
    assert not info.is_published()  # ...without acknowledging the message
    assert gate.payloads() == [b"reading-1"]

    # paho reconnects on its own (after about a second) and, its session being persistent, sends it again.
    info.wait_for_publish(15)
    assert info.is_published()
    assert gate.payloads() == [b"reading-1", b"reading-1"]
    assert sub.expect().payload == b"reading-1"
    sub.expect_none(0.2)


def test_rejection_with_retry_sends_no_ack_before_closing(harness: Harness, raw: RawFactory) -> None:
    gate = harness.gate()
    gate.open()
    gate.reject(b"reading-1", PublishRejected("storage full", 0x97, retry=True))
    pub = raw(harness.port, "raw-retrier", version=4)
    pub.publish("db/readings", b"reading-1", 1, packet_id=1)
    assert pub.read_until_closed() == []


# ---------------------------------------------------------------------------------------------------------------
# Order (MQTT 3.1.1 §4.6, MQTT 5 §4.6)


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_acks_and_deliveries_keep_arrival_order(
    harness: Harness, clients: list[Client], raw: RawFactory, version: int
) -> None:
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = raw(harness.port, "publisher", version=version)

    for i in (1, 2, 3):
        pub.publish(f"db/{i}", b"m%d" % i, 1, packet_id=i)
    assert wait_until(lambda: len(gate.calls) == 3)
    gate.release(b"m3")  # the hooks finish in reverse order
    assert wait_until(lambda: gate.finished == [b"m3"])
    gate.release(b"m2")
    assert wait_until(lambda: gate.finished == [b"m3", b"m2"])
    pub.nothing_within(0.3)
    sub.expect_none(0.01)
    gate.release(b"m1")
    assert [pub.read_ack()[:2] for _ in range(3)] == [(PUBACK, 1), (PUBACK, 2), (PUBACK, 3)]
    assert payloads_of(sub, 3) == [b"m1", b"m2", b"m3"]

    # Publishes on topics without a hook wait behind a pending hooked one.
    pub.publish("db/4", b"m4", 1, packet_id=4)
    pub.publish("plain/5", b"m5", 1, packet_id=5)
    pub.publish("plain/6", b"m6", 0)
    assert wait_until(lambda: len(gate.calls) == 4)
    pub.nothing_within(0.3)
    sub.expect_none(0.01)
    gate.release(b"m4")
    assert [pub.read_ack()[:2] for _ in range(2)] == [(PUBACK, 4), (PUBACK, 5)]
    assert payloads_of(sub, 3) == [b"m4", b"m5", b"m6"]
    assert gate.payloads() == [b"m1", b"m2", b"m3", b"m4"]


# ---------------------------------------------------------------------------------------------------------------
# Routing


def test_hooked_messages_are_delivered_and_other_topics_skip_the_hook(harness: Harness, clients: list[Client]) -> None:
    gate = harness.gate("db/#")
    gate.open()
    inner = harness.gate("db/a/#")
    inner.open()
    sub = subscriber(harness, clients)
    pub = Client(harness.port, "pub-1")
    clients.append(pub)

    topics = ["db/a/b", "plain/c", "db", "dbx/y", "other/db/a"]
    for i, topic in enumerate(topics):
        pub.publish(topic, b"p%d" % i, qos=1)
    received = [sub.expect() for _ in topics]
    assert sorted((m.topic, m.payload) for m in received) == sorted((t, b"p%d" % i) for i, t in enumerate(topics))
    sub.expect_none(0.2)

    assert [(topic, payload) for topic, payload, _client in gate.calls] == [("db/a/b", b"p0"), ("db", b"p2")]
    assert [(topic, payload) for topic, payload, _client in inner.calls] == [("db/a/b", b"p0")]
    client = gate.calls[0][2]
    assert (client.client_id, client.username, client.protocol) == ("pub-1", None, "mqtt")
    assert client.peer.startswith("127.0.0.1:")


# ---------------------------------------------------------------------------------------------------------------
# Backpressure


def test_publisher_is_not_read_while_receive_maximum_hooks_are_pending(
    harness_factory: Callable[..., Harness], clients: list[Client], raw: RawFactory
) -> None:
    harness = harness_factory(ConnectionLimits(receive_maximum=10))
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = raw(harness.port, "burst", version=4)

    count = 50
    # A 3.1.1 client knows nothing of Receive Maximum: all 50 go out at once.
    pub.send(b"".join(pub.publish_bytes("db/burst", b"b%02d" % i, 1, i + 1) for i in range(count)))
    assert wait_until(lambda: len(gate.calls) >= 10)
    time.sleep(0.3)  # give a server that keeps reading the time to start more hooks
    assert gate.max_running <= 10, f"{gate.max_running} hooks ran at once with receive_maximum = 10"
    assert len(gate.calls) <= 10

    gate.open()
    assert [pub.read_ack()[:3] for _ in range(count)] == [(PUBACK, i + 1, 0) for i in range(count)]
    assert payloads_of(sub, count) == [b"b%02d" % i for i in range(count)]
    assert gate.max_running <= 10


def test_v5_publisher_honouring_receive_maximum_completes(
    harness_factory: Callable[..., Harness], clients: list[Client]
) -> None:
    harness = harness_factory(ConnectionLimits(receive_maximum=10))
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = Client(harness.port, "paho-v5", v5=True, connect=False)
    clients.append(pub)
    pub.paho.max_inflight_messages_set(10)  # paho does not apply the server's Receive Maximum by itself
    _flags, rc, props = pub.connect()
    assert rc == 0 and props.ReceiveMaximum == 10

    count = 40
    infos = [pub.publish("db/paced", b"p%02d" % i, qos=1, wait=False) for i in range(count)]
    assert wait_until(lambda: len(gate.calls) >= 10)
    time.sleep(0.3)
    assert gate.max_running <= 10
    assert not any(info.is_published() for info in infos)
    assert pub.paho.is_connected()

    gate.open()
    for info in infos:
        info.wait_for_publish(10)
    assert all(info.is_published() for info in infos)
    assert payloads_of(sub, count) == [b"p%02d" % i for i in range(count)]
    assert gate.max_running <= 10
    assert pub.disconnects.empty()


def test_qos0_publishes_waiting_for_hooks_do_not_count_against_receive_maximum(
    harness_factory: Callable[..., Harness], raw: RawFactory
) -> None:
    """MQTT 5 §3.3.4: Receive Maximum limits unacknowledged QoS 1 and QoS 2 PUBLISH packets only. A v5 client
    with 5 QoS 2 messages awaiting PUBREL and 9 QoS 0 messages waiting for their hooks is within a quota of 10
    when it sends a QoS 1 message: it must not be told 0x93 (Receive Maximum exceeded)."""
    harness = harness_factory(ConnectionLimits(receive_maximum=10))
    gate = harness.gate()
    pub = raw(harness.port, "mixed", version=5)
    pub.send(b"".join(pub.publish_bytes("plain/q2", b"t%02d" % i, 2, 100 + i) for i in range(5)))
    assert [pub.read_ack()[:3] for _ in range(5)] == [(PUBREC, 100 + i, 0) for i in range(5)]
    pub.send(b"".join(pub.publish_bytes("db/q0", b"z%02d" % i, 0, 0) for i in range(9)))
    assert wait_until(lambda: len(gate.calls) >= 9)
    pub.publish("db/q1", b"one", 1, 1)
    time.sleep(0.3)
    gate.open()
    assert pub.read_ack()[:3] == (PUBACK, 1, 0)
    assert sorted(gate.finished) == sorted([b"z%02d" % i for i in range(9)] + [b"one"])


def test_all_publishers_stop_being_read_while_the_hook_backlog_is_full(
    harness_factory: Callable[..., Harness], clients: list[Client], raw: RawFactory
) -> None:
    """Payloads waiting for their hooks are bounded across connections (max_backlog_bytes), so a slow store
    cannot make the gateway's memory grow; once the backlog halves, every held publisher is read again."""
    harness = harness_factory(ConnectionLimits(receive_maximum=100, max_backlog_bytes=6000))  # 4 messages
    gate = harness.gate()
    publishers = [raw(harness.port, f"heavy-{k}", version=4) for k in range(3)]
    payload = b"x" * 1000
    for k, pub in enumerate(publishers):
        pub.send(b"".join(pub.publish_bytes("db/heavy", payload + b"%d-%02d" % (k, i), 1, i + 1) for i in range(20)))
    assert wait_until(lambda: len(gate.calls) >= 4)
    time.sleep(0.3)  # a server that keeps reading would start many more hooks meanwhile
    assert len(gate.calls) <= 6, f"{len(gate.calls)} hooks started with a backlog of at most 6,000 bytes"
    gate.open()
    for pub in publishers:
        assert [pub.read_ack()[:3] for _ in range(20)] == [(PUBACK, i + 1, 0) for i in range(20)]
    assert len(gate.calls) == 60
