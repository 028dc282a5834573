"""Regression tests for a review against the MQTT 3.1.1 and 5 specifications, on a broker run in-process (the
`Harness` of tests/mqtt/conftest.py) and driven by a raw client that builds and parses every byte itself
(tests/rawmqtt.py).

Each test reproduces one finding of the review and fails on the code before its fix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from gateway.mqtt.broker import ClientInfo, PublishRejected
from gateway.mqtt.connection import ConnectionLimits
from gateway.mqtt.session import Message
from tests.conftest import Client, wait_until
from tests.mqtt.conftest import Harness, subscriber
from tests.rawmqtt import (
    AUTHENTICATION_METHOD,
    DISCONNECT,
    MAXIMUM_PACKET_SIZE,
    MESSAGE_EXPIRY_INTERVAL,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY_INTERVAL,
    TOPIC_ALIAS,
    RawFactory,
    Will,
    mqtt_str,
    packet,
)

# ---------------------------------------------------------------------------------------------------------------
# Helpers


def wait_detached(harness: Harness, client_id: str) -> None:
    """Until the broker noticed that the client's connection is gone."""
    assert wait_until(lambda: harness.call(lambda: harness.broker.sessions[client_id].connection is None))


def wait_for_clock(until: float) -> None:
    """Until the wall clock (which message expiry uses) reaches `until`."""
    while (remaining := until - time.time()) > 0:
        time.sleep(remaining)


# ---------------------------------------------------------------------------------------------------------------
# Finding 1: a resent QoS 2 PUBLISH acknowledged before its first copy's hook finished


@pytest.mark.parametrize("outcome", ["stored", "refused"])
def test_resent_qos2_publish_after_a_reconnect_waits_for_the_first_copys_hook(
    harness: Harness, clients: list[Client], raw: RawFactory, outcome: str
) -> None:
    """MQTT 3.1.1 and 5 §4.3.3 (PUBREC means the receiver owns the message) and §4.4 (the client resends with
    DUP after reconnecting): the PUBREC for the resent copy must wait for the first copy's hook; if that hook
    refused it, the resent copy is a new message and goes through the hook itself, and it is delivered once."""
    gate = harness.gate()
    sub = subscriber(harness, clients)
    first = raw(harness.port, "pub", clean=False)
    first.publish("db/x", b"reading-1", 2, 7)
    assert wait_until(lambda: gate.payloads() == [b"reading-1"])
    first.close()  # gone before its PUBREC
    wait_detached(harness, "pub")

    second = raw(harness.port, "pub", clean=False)
    assert second.connack is not None and second.connack.session_present
    second.publish("db/x", b"reading-1", 2, 7, dup=True)
    second.nothing_within(0.3)  # the first copy is still with its hook: the gateway does not own it yet

    if outcome == "refused":
        gate.reject(b"reading-1", PublishRejected("disk full", 0x80, retry=True))
    gate.release(b"reading-1")
    ack = second.read_ack()
    assert (ack.kind, ack.packet_id) == (PUBREC, 7)
    second.ack(PUBREL, 7)
    assert second.read_ack().kind == PUBCOMP
    assert sub.expect().payload == b"reading-1"
    sub.expect_none(0.2)
    assert gate.payloads() == [b"reading-1"] * (1 if outcome == "stored" else 2)


@pytest.mark.parametrize("when", ["while-held", "after-refusal"])
def test_resent_qos2_publish_after_a_takeover_waits_for_the_first_copys_hook(
    harness: Harness, clients: list[Client], raw: RawFactory, when: str
) -> None:
    """MQTT 3.1.1 and 5 §3.1.4 (a new connection with the same client id takes the session over), §4.3.3 and
    §4.4: the first copy's hook belongs to the session, not to the connection that was taken over. A resend
    while it runs waits for it; after it refused the message, the resend is handled as a new message (before
    the fix the packet id stayed in use and the resend was acknowledged without being delivered: lost)."""
    gate = harness.gate()
    sub = subscriber(harness, clients)
    first = raw(harness.port, "pub", clean=False)
    first.publish("db/x", b"reading-1", 2, 7)
    assert wait_until(lambda: gate.payloads() == [b"reading-1"])

    second = raw(harness.port, "pub", clean=False)  # takeover: the first connection is closed by the server
    assert second.connack is not None and second.connack.session_present
    assert first.read_until_closed() == []
    if when == "after-refusal":
        gate.reject(b"reading-1", PublishRejected("disk full", 0x80, retry=True))
        gate.release(b"reading-1")
        assert wait_until(lambda: gate.finished == [b"reading-1"])
        second.publish("db/x", b"reading-1", 2, 7, dup=True)
    else:
        second.publish("db/x", b"reading-1", 2, 7, dup=True)
        second.nothing_within(0.3)
        gate.release(b"reading-1")

    ack = second.read_ack()
    assert (ack.kind, ack.packet_id, ack.code) == (PUBREC, 7, 0)
    second.ack(PUBREL, 7)
    assert second.read_ack().kind == PUBCOMP
    assert sub.expect().payload == b"reading-1"
    sub.expect_none(0.2)
    assert gate.payloads() == [b"reading-1"] * (1 if when == "while-held" else 2)


# ---------------------------------------------------------------------------------------------------------------
# Finding 4: a will's Message Expiry Interval counted from CONNECT


def test_will_message_expiry_counts_from_when_the_will_is_published(harness: Harness, raw: RawFactory) -> None:
    """MQTT 5 §3.1.3.2.4: the will's Message Expiry Interval "is used as the Publication Expiry Interval when the
    Server publishes the Will Message": a client connected for longer than that interval still has its will
    delivered, with the whole interval left."""
    sub = raw(harness.port, "sub", version=5)
    assert sub.subscribe([("alarm/#", 1)]) == [1]
    will = Will("alarm/dev1", b"dev1 offline", 1, False, {MESSAGE_EXPIRY_INTERVAL: 1})
    connected_at = time.time()
    dev = raw(harness.port, "dev1", version=5, keepalive=0, will=will)
    wait_for_clock(connected_at + 1.3)  # connected longer than the will's expiry interval
    dev.close()  # gone without DISCONNECT: the will is published now
    got = sub.read_publish(5)
    assert (got.topic, got.payload) == ("alarm/dev1", b"dev1 offline")
    assert got.properties.get(MESSAGE_EXPIRY_INTERVAL) == 1
    sub.ack(PUBACK, got.packet_id)


# ---------------------------------------------------------------------------------------------------------------
# Finding 6: an expired QoS 2 message already sent was dropped on resend instead of resent


def test_expired_qos2_message_whose_delivery_began_is_resent_after_a_reconnect(
    harness: Harness, raw: RawFactory
) -> None:
    """MQTT 5 §3.3.2.3.3: an expired message is deleted only if the server "has not managed to start onward
    delivery"; once the PUBLISH went out, §4.4 requires resending it (DUP) on reconnect and §4.3.3 finishing
    the exchange: PUBREC gets a PUBREL, not "Packet Identifier not found"."""
    expiry = {SESSION_EXPIRY_INTERVAL: 300}
    sub = raw(harness.port, "sub", version=5, clean=False, props=expiry)
    assert sub.subscribe([("t", 2)]) == [2]
    pub = raw(harness.port, "pub", version=5)
    published_at = time.time()
    pub.publish("t", b"expiring", 2, 1, props={MESSAGE_EXPIRY_INTERVAL: 1})
    assert pub.read_ack().kind == PUBREC
    sent = sub.read_publish()
    assert (sent.payload, sent.qos, sent.dup) == (b"expiring", 2, False)
    sub.close()  # its PUBREC never reached the server
    wait_detached(harness, "sub")
    wait_for_clock(published_at + 1.2)  # the message has expired

    sub = raw(harness.port, "sub", version=5, clean=False, props=expiry)
    assert sub.connack is not None and sub.connack.session_present
    again = sub.read_publish(3)
    assert (again.payload, again.packet_id, again.qos, again.dup) == (b"expiring", sent.packet_id, 2, True)
    sub.ack(PUBREC, sent.packet_id)
    rel = sub.read_ack()
    assert (rel.kind, rel.packet_id, rel.code) == (PUBREL, sent.packet_id, 0)
    sub.ack(PUBCOMP, sent.packet_id)
    assert wait_until(lambda: harness.call(lambda: not harness.broker.sessions["sub"].inflight))


# ---------------------------------------------------------------------------------------------------------------
# Finding 7: a 3.1.1 connection closed for a message that may succeed later still routed what followed it


def test_311_connection_closed_for_a_retryable_rejection_routes_nothing_after_it(
    harness: Harness, clients: list[Client], raw: RawFactory
) -> None:
    """MQTT 3.1.1 §4.6 (messages from one client are delivered in the order sent) and §4.4 (the client resends
    every unacknowledged PUBLISH after reconnecting): M1 is refused with `retry`, so the connection is closed
    without an acknowledgement; M2, sent after it and already through its hook, must not be routed either, or
    it arrives before M1 and then once more when the client resends both."""
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = raw(harness.port, "pub", clean=False)
    pub.publish("db/x", b"M1", 1, 1)
    pub.publish("db/x", b"M2", 1, 2)
    assert wait_until(lambda: gate.payloads() == [b"M1", b"M2"])
    gate.release(b"M2")
    assert wait_until(lambda: gate.finished == [b"M2"])
    gate.reject(b"M1", PublishRejected("store busy", 0x80, retry=True))
    gate.release(b"M1")
    assert pub.read_until_closed() == []  # neither is acknowledged
    sub.expect_none(0.3)  # nor routed

    gate.open()
    pub = raw(harness.port, "pub", clean=False)
    pub.publish("db/x", b"M1", 1, 1, dup=True)
    pub.publish("db/x", b"M2", 1, 2, dup=True)
    assert [(a.kind, a.packet_id) for a in (pub.read_ack(), pub.read_ack())] == [(PUBACK, 1), (PUBACK, 2)]
    assert [sub.expect().payload for _ in range(2)] == [b"M1", b"M2"]
    sub.expect_none(0.2)


# ---------------------------------------------------------------------------------------------------------------
# Finding 8: another user resuming a session received what was queued for the first


def test_another_user_reusing_a_client_id_starts_a_fresh_session(harness: Harness, raw: RawFactory) -> None:
    """MQTT 3.1.1 and 5 §3.1.2.4 / §4.1 (session state is identified by the client id) together with the
    security advice of §5.4.2 / §5.4.1: a session holds what its user was authorized to receive, so another
    user reusing the client id must not resume it (session present 0, nothing delivered), while the same user
    still does."""
    alice = raw(harness.port, "dev", clean=False, username="alice", password="pa")
    assert alice.subscribe([("secret/#", 1)]) == [1]
    alice.disconnect()
    wait_detached(harness, "dev")
    publisher = raw(harness.port, "publisher", username="alice", password="pa")
    publisher.publish("secret/plan", b"for alice", 1, 1)
    assert publisher.read_ack().kind == PUBACK

    alice = raw(harness.port, "dev", clean=False, username="alice", password="pa")
    assert alice.connack is not None and alice.connack.session_present  # her own session resumes
    got = alice.read_publish()
    assert got.payload == b"for alice"
    alice.ack(PUBACK, got.packet_id)
    alice.disconnect()
    wait_detached(harness, "dev")
    publisher.publish("secret/plan", b"also for alice", 1, 2)
    assert publisher.read_ack().kind == PUBACK

    bob = raw(harness.port, "dev", clean=False, username="bob", password="pb")
    assert bob.connack is not None and bob.connack.code == 0
    assert not bob.connack.session_present
    publisher.publish("secret/plan", b"after bob came", 1, 3)
    assert publisher.read_ack().kind == PUBACK
    # Nothing queued for alice, and no subscription of hers: the next packet bob sees answers his own PINGREQ.
    bob.send(packet(PINGREQ, b""))
    assert bob.read() == (PINGRESP, b"")


# ---------------------------------------------------------------------------------------------------------------
# Finding 11: a topic of 1,500 levels caused RecursionError


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_topics_and_filters_with_too_many_levels_are_refused_and_traffic_continues(
    harness: Harness, raw: RawFactory, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    """MQTT 5 §3.9.3 / 3.1.1 §3.9.3 (a SUBACK failure code for a filter the server does not accept; 0x8F Topic
    Filter invalid in 5, 0x80 in 3.1.1) and MQTT 5 §3.3.2.1 / §4.13 (a PUBLISH on a topic name the server does
    not accept: DISCONNECT 0x90 Topic Name invalid, then close). A 1,500-level topic must not break matching,
    and the other clients carry on."""
    deep = "/".join(["a"] * 1500)
    sub = raw(harness.port, "deep-sub", version=version)
    assert sub.subscribe([(deep, 1), ("ok/#", 1)]) == [0x8F if version == 5 else 0x80, 1]
    pub = raw(harness.port, "deep-pub", version=version)
    pub.publish(deep, b"x", 1, 1)
    closing = pub.read_until_closed()
    if version == 5:
        assert [pub.parse_ack(p).code for p in closing] == [0x90]
    else:
        assert closing == []  # 3.1.1 has no DISCONNECT from the server

    other = raw(harness.port, "other", version=version)
    other.publish("ok/1", b"fine", 1, 1)
    assert other.read_ack().kind == PUBACK
    got = sub.read_publish()
    assert (got.topic, got.payload) == ("ok/1", b"fine")
    assert not [r for r in caplog.records if "RecursionError" in r.getMessage() or r.levelno >= logging.ERROR]


# ---------------------------------------------------------------------------------------------------------------
# Finding 16: backpressure gave false keep-alive timeouts


def test_publisher_held_by_backpressure_is_not_timed_out_for_keep_alive(
    harness_factory: Callable[..., Harness], raw: RawFactory
) -> None:
    """MQTT 5 and 3.1.1 §3.1.2.10: the server disconnects a client that sends no control packet within one and
    a half times the Keep Alive. While the server does not read the socket (Receive Maximum publishes are with
    their hooks) the client's PINGREQs wait unread: that must not count as silence."""
    harness = harness_factory(ConnectionLimits(receive_maximum=2))
    gate = harness.gate()
    pub = raw(harness.port, "pub", version=5, keepalive=1)
    pub.publish("db/x", b"m1", 1, 1)
    pub.publish("db/x", b"m2", 1, 2)
    assert wait_until(lambda: len(gate.calls) == 2)
    pings = 0
    deadline = time.monotonic() + 2.6  # well past 1.5 x the keep-alive of 1 s
    while time.monotonic() < deadline:
        pub.send(packet(PINGREQ, b""))  # a live client
        pings += 1
        time.sleep(0.25)
    gate.open()
    got = [pub.read(5) for _ in range(2 + pings)]
    assert got[:2] == [(PUBACK, b"\x00\x01"), (PUBACK, b"\x00\x02")]
    assert got[2:] == [(PINGRESP, b"")] * pings


# ---------------------------------------------------------------------------------------------------------------
# Finding 17: in-flight messages resent beyond the client's new Receive Maximum


def test_inflight_messages_are_resent_within_the_new_receive_maximum(harness: Harness, raw: RawFactory) -> None:
    """MQTT 5 §3.3.4 / §4.9: the server must not send more unacknowledged QoS 1/2 PUBLISH packets than the
    client's Receive Maximum, including the ones it resends (§4.4) after a reconnect that lowered it."""
    expiry = {SESSION_EXPIRY_INTERVAL: 300}
    sub = raw(harness.port, "sub", version=5, clean=False, props=expiry)
    assert sub.subscribe([("t", 1)]) == [1]
    pub = raw(harness.port, "pub", version=5)
    pub.send(b"".join(pub.publish_bytes("t", b"%d" % i, 1, i + 1) for i in range(10)))
    first = [sub.read_publish() for _ in range(10)]  # not acknowledged
    sub.close()
    wait_detached(harness, "sub")

    sub = raw(harness.port, "sub", version=5, clean=False, props={**expiry, RECEIVE_MAXIMUM: 2})
    resent = [sub.read_publish(), sub.read_publish()]
    sub.nothing_within(0.3)
    while len(resent) < 10:
        sub.ack(PUBACK, resent[len(resent) - 2].packet_id)  # one acknowledged: room for exactly one more
        resent.append(sub.read_publish())
        if len(resent) < 10:
            sub.nothing_within(0.05)
    assert [(p.payload, p.packet_id, p.dup) for p in resent] == [(p.payload, p.packet_id, True) for p in first]


# ---------------------------------------------------------------------------------------------------------------
# Finding 18: packets exceeding the client's Maximum Packet Size


@pytest.mark.parametrize("case", ["disconnect", "connack", "puback"])
def test_no_packet_exceeds_the_clients_maximum_packet_size(harness: Harness, raw: RawFactory, case: str) -> None:
    """MQTT 5 §3.1.2.11.4: "The Server MUST NOT send packets exceeding Maximum Packet Size to the Client"; the
    Reason String is optional and is what must be left out when the packet would not fit."""
    limit = 16
    small = {MAXIMUM_PACKET_SIZE: limit}
    if case == "connack":
        peer = raw(harness.port, "a", version=5, props={**small, AUTHENTICATION_METHOD: "SCRAM-SHA-1"}, check=False)
        assert peer.connack is not None
        assert (peer.connack.code, peer.connack.size <= limit) == (0x8C, True), peer.connack
        return
    peer = raw(harness.port, "a", version=5, props=small)
    assert peer.connack is not None and peer.connack.code == 0 and peer.connack.size <= limit
    if case == "disconnect":
        peer.publish("x", b"", 0, props={TOPIC_ALIAS: 11})  # above the Topic Alias Maximum of 10
        ack = peer.read_ack()
        assert (ack.kind, ack.code) == (DISCONNECT, 0x94)
    else:
        gate = harness.gate()
        gate.open()
        gate.reject(b"bad", PublishRejected("this payload is not a reading the database can store", 0x99))
        peer.publish("db/x", b"bad", 1, 1)
        ack = peer.read_ack()
        assert (ack.kind, ack.packet_id, ack.code) == (PUBACK, 1, 0x99)
    assert ack.size <= limit, ack


# ---------------------------------------------------------------------------------------------------------------
# Finding 20: client-controlled text of over 64 KB in reason strings


def test_reason_strings_and_log_lines_quoting_client_data_are_bounded(
    harness: Harness, raw: RawFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5 §1.5.4 / §3.14.2.2.3: a Reason String is a UTF-8 string of at most 65,535 bytes. A topic name
    with a wildcard (§3.3.2.1) must get DISCONNECT 0x90 whatever its length: quoting 20,000 control characters
    (80,000 bytes once escaped) made the DISCONNECT unencodable and the log line huge."""
    caplog.set_level(logging.INFO, logger="gateway.mqtt")
    peer = raw(harness.port, "a", version=5)
    topic = ("+" + "\x01" * 20000).encode()
    peer.send(packet(PUBLISH, mqtt_str(topic) + b"\x00"))
    closing = peer.read_until_closed()
    assert len(closing) == 1 and closing[0][0] == DISCONNECT, closing
    ack = peer.parse_ack(closing[0])
    assert ack.code == 0x90
    assert len(ack.properties.get(REASON_STRING, "")) <= 1000
    assert max(len(r.getMessage()) for r in caplog.records) <= 2000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    other = raw(harness.port, "b", version=5)
    other.send(packet(PINGREQ, b""))
    assert other.read() == (PINGRESP, b"")


# ---------------------------------------------------------------------------------------------------------------
# Finding 21: hooks pending at shutdown


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_shutdown_finishes_and_acknowledges_messages_already_with_their_hooks(
    harness: Harness, raw: RawFactory, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    """MQTT 5 §4.3.2 / 3.1.1 §4.3.2 (PUBACK once the receiver owns the message) and MQTT 5 §3.14 (DISCONNECT
    0x8B Server shutting down): a message whose hook is storing it when the gateway stops is finished and
    acknowledged before the connection closes, without errors logged."""
    started: list[bytes] = []

    async def slow_store(message: Message, client: ClientInfo) -> None:
        started.append(message.payload)
        await asyncio.sleep(0.5)

    harness.call(lambda: harness.broker.add_publish_hook("db/#", slow_store))
    pub = raw(harness.port, "pub", version=version)
    pub.publish("db/x", b"v", 1, 1)
    assert wait_until(lambda: started == [b"v"])
    harness.close()  # the gateway stops while the hook runs

    closing = pub.read_until_closed()
    acks = [pub.parse_ack(p) for p in closing]
    expected = [(PUBACK, 1, 0)] + ([(DISCONNECT, 0, 0x8B)] if version == 5 else [])
    assert [(a.kind, a.packet_id, a.code) for a in acks] == expected
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
