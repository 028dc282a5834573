"""The uplink's MQTT client against a real mosquitto (tests/uplink/upstream.py), against a scripted in-process
server for what mosquitto will not do on request (refusal codes, QoS 2 resends, DISCONNECT, malformed bytes),
and its pure helpers.

Section numbers: "§x.y" is MQTT 5.0, "3.1.1 §x.y" is MQTT 3.1.1.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.mqtt.codec import (
    MQTT_5,
    MQTT_311,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    Prop,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Reader,
    Reason,
    encode,
)
from gateway.uplink.client import UpstreamClient, UpstreamError, connack_error, describe_reason, next_packet_id
from tests.uplink.upstream import HOST, Subscriber, Upstream, free_port, make_ca

T = TypeVar("T")
VERSIONS = pytest.mark.parametrize("version", [MQTT_311, MQTT_5], ids=["3.1.1", "5"])


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run a test's coroutine; a hang fails the test instead of stalling the run."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):  # not wait_for: that would run `coro` in a task of its own
            return await coro

    return asyncio.run(bounded())


async def connect(upstream: Upstream, **kwargs: Any) -> UpstreamClient:
    kwargs.setdefault("client_id", "uplink-test")
    kwargs.setdefault("ssl", upstream.ssl_context())
    return await UpstreamClient.connect(upstream.host, upstream.port, **kwargs)


async def publish_once(upstream: Upstream, version: int) -> int:
    client = await connect(upstream, version=version)
    try:
        return await client.publish("once/x", b"1")
    finally:
        await client.disconnect()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return predicate()


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


@pytest.fixture(name="upstream")
def upstream_fixture(tmp_path: Path) -> Iterator[Upstream]:
    """A plain mosquitto (anonymous, no TLS)."""
    with Upstream(tmp_path) as broker:
        yield broker


# ---------------------------------------------------------------------------------------------------------------
# Against mosquitto


@VERSIONS
def test_publish_reaches_a_subscriber_and_puback_resolves(upstream: Upstream, version: int) -> None:
    async def scenario() -> None:
        client = await connect(upstream, version=version)
        assert not client.closed and client.session_present is False
        qos1 = client.publish("readings/kitchen", b"21.5")
        qos0 = client.publish("readings/hall", b"19.0", qos=0)
        assert qos0.done() and qos0.result() == 0
        assert client.in_flight == 1
        assert await qos1 == 0
        assert client.in_flight == 0
        await client.drain()
        await client.disconnect()
        await client.disconnect()  # idempotent
        assert client.closed
        assert "disconnected by the gateway" in str(await client.wait_closed())
        assert not other_tasks()  # the reader task is gone

    with Subscriber(upstream, "readings/#", version=version) as subscriber:
        run(scenario())
        assert subscriber.wait_for(2) == [("readings/kitchen", b"21.5"), ("readings/hall", b"19.0")]
    assert "Received DISCONNECT from uplink-test" in upstream.log()  # a polite goodbye, not a dropped socket


@VERSIONS
def test_many_publishes_in_flight_at_once_are_all_acknowledged(upstream: Upstream, version: int) -> None:
    async def scenario() -> int:
        client = await connect(upstream, version=version)
        # mosquitto announces its max_inflight_messages (20) as Receive Maximum to MQTT 5 clients (§3.2.2.3.3).
        assert client.receive_maximum == (20 if version == MQTT_5 else 65535)
        assert client.maximum_packet_size is None
        count = min(client.receive_maximum, 500)
        futures = [client.publish(f"bulk/{i}", b"%d" % i) for i in range(count)]
        assert client.in_flight == count
        assert await asyncio.gather(*futures) == [0] * count
        assert client.in_flight == 0
        await client.disconnect()
        return count

    with Subscriber(upstream, "bulk/#") as subscriber:
        count = run(scenario())
        assert subscriber.wait_for(count) == [(f"bulk/{i}", b"%d" % i) for i in range(count)]


def test_tls_with_the_throwaway_ca(tmp_path: Path) -> None:
    async def scenario(host: str) -> int:
        client = await UpstreamClient.connect(
            host, upstream.port, client_id=f"tls-{host}", ssl=upstream.ssl_context(), version=MQTT_5
        )
        try:
            return await client.publish("secure/x", b"over TLS")
        finally:
            await client.disconnect()

    with Upstream(tmp_path, tls=True) as upstream, Subscriber(upstream, "secure/#") as subscriber:
        assert upstream.url == f"mqtts://127.0.0.1:{upstream.port}"
        assert run(scenario("127.0.0.1")) == 0  # the certificate's IP address SAN
        assert run(scenario("localhost")) == 0  # and its DNS name, checked as server_hostname
        assert subscriber.wait_for(2) == [("secure/x", b"over TLS")] * 2


def test_tls_with_the_wrong_ca_or_without_tls_fails_with_a_reason(tmp_path: Path) -> None:
    wrong_ca, _ = make_ca(tmp_path / "elsewhere", "Some Other CA")
    with Upstream(tmp_path, tls=True) as upstream:
        context = ssl.create_default_context(cafile=str(wrong_ca))
        with pytest.raises(UpstreamError) as refused:
            run(connect(upstream, ssl=context))
        message = str(refused.value)
        assert message.startswith(f"TLS handshake with 127.0.0.1:{upstream.port} failed: certificate verify failed")
        # Plain MQTT to a TLS listener: mosquitto drops the connection (a reset: our CONNECT is left unread).
        with pytest.raises(UpstreamError, match=r"(without a|before) CONNACK.*is the MQTT version, port or TLS right"):
            run(connect(upstream, ssl=None, timeout=5))


@VERSIONS
def test_password_file_right_and_wrong_password(tmp_path: Path, version: int) -> None:
    async def right_password() -> int:
        client = await connect(upstream, version=version, username="gw", password=b"s3cret")
        code = await client.publish("auth/x", b"signed in")
        await client.disconnect()
        return code

    users = {"gw": "s3cret", "reader": "r3ad"}
    with Upstream(tmp_path, users=users, allow_anonymous=False) as upstream:
        with Subscriber(upstream, "auth/#", username="reader", password="r3ad") as subscriber:
            assert run(right_password()) == 0
            assert subscriber.wait_for(1) == [("auth/x", b"signed in")]
        with pytest.raises(UpstreamError) as refused:
            run(connect(upstream, version=version, username="gw", password=b"wrong"))
    # mosquitto refuses a wrong password with "not authorized" (5 / 0x87), not 4 / 0x86 "bad user name or
    # password" (eclipse-mosquitto/mosquitto#1817); the scripted server below checks the 0x86 wording.
    code = "CONNACK 0x87" if version == MQTT_5 else "CONNACK return code 5"
    assert str(refused.value) == (
        f"upstream refused the connection: not authorized ({code}); "
        "check the user name and password, and the broker's access rules for this client"
    )


def test_connection_refused_and_unresolvable_host() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(UpstreamError, match=rf"^connection to 127\.0\.0\.1:{port} refused"):
        run(UpstreamClient.connect(HOST, port, client_id="x"))
    # RFC 6761: .invalid names never resolve.
    with pytest.raises(UpstreamError, match=r"^cannot resolve broker\.invalid: "):
        run(UpstreamClient.connect("broker.invalid", 1883, client_id="x"))


def test_v5_puback_reason_code_for_a_topic_the_acl_denies(tmp_path: Path) -> None:
    async def scenario(version: int) -> list[int]:
        client = await connect(upstream, version=version)
        codes = [await client.publish("allowed/a", b"1"), await client.publish("denied/a", b"2")]
        await client.disconnect()
        return codes

    with Upstream(tmp_path, acl="topic readwrite allowed/#\n") as upstream:
        # §3.4.2.1: 0x87 Not authorized; 0x10 No matching subscribers is a success (below 0x80). 3.1.1 has no way
        # to say either: mosquitto acknowledges and drops the denied message.
        assert run(scenario(MQTT_5)) == [Reason.NO_MATCHING_SUBSCRIBERS, Reason.NOT_AUTHORIZED]
        assert run(scenario(MQTT_311)) == [0, 0]
        assert describe_reason(Reason.NOT_AUTHORIZED) == "not authorized"


@VERSIONS
def test_incoming_messages_at_qos_0_1_and_2_reach_on_message_once(upstream: Upstream, version: int) -> None:
    received: list[Publish] = []

    async def scenario() -> None:
        client = await connect(upstream, version=version, on_message=received.append)
        assert await client.subscribe([("commands/#", 2), ("other/+", 1)]) == [2, 1]
        for qos in (0, 1, 2):
            # mosquitto_pub runs as another process; the event loop keeps serving the client meanwhile.
            await asyncio.to_thread(upstream.publish, f"commands/q{qos}", b"cmd %d" % qos, qos)
        assert await until(lambda: len(received) == 3)
        await asyncio.sleep(0.2)  # a duplicate would arrive now
        # QoS 2 finished: PUBREL answered with PUBCOMP, the held packet id released (§4.3.3).
        assert await until(lambda: "Received PUBCOMP from uplink-test" in upstream.log())
        assert client._qos2_received == set()
        await client.disconnect()

    run(scenario())
    assert [(p.topic, p.payload, p.qos) for p in received] == [
        ("commands/q0", b"cmd 0", 0),
        ("commands/q1", b"cmd 1", 1),
        ("commands/q2", b"cmd 2", 2),
    ]


@VERSIONS
def test_a_persistent_session_gets_the_commands_sent_while_away(upstream: Upstream, version: int) -> None:
    """3.1.1 §3.1.2.4 Clean Session 0; MQTT 5 §3.1.2.4 Clean Start 0 with a Session Expiry Interval
    (§3.1.2.11.2), which the client sets for ever unless told otherwise."""
    received: list[Publish] = []

    async def scenario() -> tuple[bool, bool]:
        first = await connect(upstream, version=version, clean_start=False, client_id="persistent")
        assert await first.subscribe([("commands/#", 1)]) == [1]
        await first.disconnect()
        await asyncio.to_thread(upstream.publish, "commands/reboot", b"now", 1)
        second = await connect(
            upstream, version=version, clean_start=False, client_id="persistent", on_message=received.append
        )
        assert await until(lambda: len(received) == 1)
        await second.disconnect()
        return first.session_present, second.session_present

    assert run(scenario()) == (False, True)
    assert [(p.topic, p.payload) for p in received] == [("commands/reboot", b"now")]


@VERSIONS
def test_upstream_killed_while_connected_fails_pending_publishes(upstream: Upstream, version: int) -> None:
    async def scenario() -> None:
        client = await connect(upstream, version=version)
        upstream.pause()  # no PUBACK will come
        pending = client.publish("readings/x", b"lost")
        await asyncio.sleep(0.1)
        assert not pending.done()
        upstream.kill()  # the kernel closes the socket: EOF or a reset
        reason = await client.wait_closed()
        assert isinstance(reason, UpstreamError)
        assert "upstream closed the connection" in str(reason) or "connection to upstream lost" in str(reason)
        with pytest.raises(UpstreamError) as failed:
            await pending
        assert failed.value is reason
        assert client.closed and client.in_flight == 0
        after = client.publish("readings/x", b"too late")
        with pytest.raises(UpstreamError):
            await after
        with pytest.raises(UpstreamError):
            await client.drain()
        with pytest.raises(UpstreamError):
            await client.subscribe([("a", 0)])
        assert not other_tasks()

    run(scenario())


@VERSIONS
def test_upstream_shut_down_while_connected(upstream: Upstream, version: int) -> None:
    async def scenario() -> str:
        client = await connect(upstream, version=version)
        await asyncio.to_thread(upstream.stop)
        return str(await client.wait_closed())

    # mosquitto 2.0.11 closes connections on SIGTERM without a DISCONNECT, also to MQTT 5 clients (a server
    # DISCONNECT is tested with the scripted server below).
    assert run(scenario()) == "upstream closed the connection"
    upstream.start()  # the same port again
    assert run(publish_once(upstream, version)) == (0 if version == MQTT_311 else Reason.NO_MATCHING_SUBSCRIBERS)


def test_pingreq_keeps_an_idle_connection_alive(upstream: Upstream) -> None:
    async def scenario() -> int:
        client = await connect(upstream, keep_alive=1)
        await asyncio.sleep(3)  # mosquitto drops a client it has not heard from for 1.5 keep-alive (§3.1.2.10)
        assert not client.closed
        code = await client.publish("alive/x", b"still here")
        await client.disconnect()
        return code

    assert run(scenario()) == 0
    assert upstream.log().count("Received PINGREQ from uplink-test") >= 2


def test_a_silent_upstream_is_detected_within_one_and_a_half_keep_alive(upstream: Upstream) -> None:
    async def scenario() -> tuple[str, float]:
        client = await connect(upstream, keep_alive=1)
        upstream.pause()  # the TCP connection stays up, nothing answers
        start = time.monotonic()
        reason = await client.wait_closed()
        return str(reason), time.monotonic() - start

    message, elapsed = run(scenario())
    assert message.startswith("upstream stopped answering (no PINGRESP within 1.5 keep-alive")
    assert elapsed < 2.0


# ---------------------------------------------------------------------------------------------------------------
# Against a scripted server


class ScriptedServer:
    """One-connection MQTT server in this process: answers CONNECT with `connack` (None: never answers), records
    the client's packets and sends what the test tells it to."""

    def __init__(self, connack: ConnAck | None = None) -> None:
        self.connack = ConnAck() if connack is None else connack
        self.answer = True
        self.version = MQTT_311
        self.packets: asyncio.Queue[Packet] = asyncio.Queue()
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        if self._writer is not None:
            self._writer.transport.abort()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        parser = Reader()  # learns the version from CONNECT
        while data := await reader.read(65536):
            for packet in parser.feed(data):
                if isinstance(packet, Connect):
                    self.version = packet.protocol_level
                    if self.answer:
                        self.send(self.connack)
                await self.packets.put(packet)

    def send(self, packet: Packet) -> None:
        self.send_bytes(encode(packet, self.version))

    def send_bytes(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def next(self, skip_pings: bool = True) -> Packet:
        while True:
            packet = await asyncio.wait_for(self.packets.get(), 5)
            if not (skip_pings and isinstance(packet, PingReq)):
                return packet

    async def client(self, **kwargs: Any) -> UpstreamClient:
        kwargs.setdefault("client_id", "scripted")
        client = await UpstreamClient.connect(HOST, self.port, **kwargs)
        assert isinstance(await self.next(), Connect)
        return client


@pytest.mark.parametrize(
    ("version", "reason", "expected"),
    [
        (MQTT_311, Reason.BAD_USER_NAME_OR_PASSWORD, "bad user name or password (CONNACK return code 4)"),
        (MQTT_5, Reason.BAD_USER_NAME_OR_PASSWORD, "bad user name or password (CONNACK 0x86)"),
        (MQTT_311, Reason.CLIENT_IDENTIFIER_NOT_VALID, "identifier rejected (CONNACK return code 2)"),
        (MQTT_311, Reason.SERVER_UNAVAILABLE, "server unavailable (CONNACK return code 3)"),
        (MQTT_5, Reason.SERVER_BUSY, "server busy (CONNACK 0x89)"),
        (MQTT_5, Reason.BANNED, "banned (CONNACK 0x8A)"),
    ],
)
def test_refusing_connack_codes_in_words(version: int, reason: int, expected: str) -> None:
    # 3.1.1 §3.2.2.3 return codes 1 to 5; MQTT 5 §3.2.2.2 reason codes.
    async def scenario() -> None:
        async with ScriptedServer(ConnAck(reason)) as server:
            with pytest.raises(UpstreamError) as refused:
                await server.client(version=version)
            assert str(refused.value).startswith(f"upstream refused the connection: {expected}")

    run(scenario())


def test_no_connack_within_the_timeout() -> None:
    async def scenario() -> None:
        async with ScriptedServer() as server:
            server.answer = False
            start = time.monotonic()
            with pytest.raises(UpstreamError, match=rf"^no CONNACK from 127\.0\.0\.1:{server.port} within 0\.3 s$"):
                await UpstreamClient.connect(HOST, server.port, client_id="x", timeout=0.3)
            assert time.monotonic() - start < 1

    run(scenario())


def test_connack_limits_and_server_keep_alive_are_used() -> None:
    props: dict[int, Any] = {Prop.RECEIVE_MAXIMUM: 7, Prop.MAXIMUM_PACKET_SIZE: 64, Prop.SERVER_KEEP_ALIVE: 1}

    async def scenario() -> None:
        async with ScriptedServer(ConnAck(session_present=True, properties=props)) as server:
            client = await server.client(version=MQTT_5, keep_alive=600, clean_start=False)
            assert (client.receive_maximum, client.maximum_packet_size, client.session_present) == (7, 64, True)
            # §3.2.2.3.6: a packet over the server's Maximum Packet Size must not be sent.
            with pytest.raises(ValueError, match="exceeds the upstream's Maximum Packet Size of 64"):
                client.publish("big", b"x" * 100)
            with pytest.raises(ValueError, match="QoS 2 is not supported"):
                client.publish("q2", b"x", qos=2)
            # §3.2.2.3.14: Server Keep Alive (1 s) replaces the 600 s asked for: a PINGREQ comes within ~1 s.
            assert isinstance(await asyncio.wait_for(server.next(skip_pings=False), 2), PingReq)
            await client.disconnect()

    run(scenario())


@VERSIONS
def test_qos2_resend_is_acknowledged_again_but_delivered_once(version: int) -> None:
    """§4.3.3 (3.1.1 §4.3.3 method B): until PUBREL, a PUBLISH with a held packet id is answered with PUBREC
    and not delivered again; after PUBCOMP the id is free for a new message."""
    received: list[Publish] = []

    async def scenario() -> None:
        async with ScriptedServer() as server:
            client = await server.client(version=version, on_message=received.append)
            server.send(Publish("cmd/a", b"once", qos=2, packet_id=7))
            assert await server.next() == PubRec(7)
            server.send(Publish("cmd/a", b"once", qos=2, dup=True, packet_id=7))
            assert await server.next() == PubRec(7)
            server.send(PubRel(7))
            assert await server.next() == PubComp(7)
            server.send(Publish("cmd/a", b"next", qos=2, packet_id=7))
            assert await server.next() == PubRec(7)
            server.send(PubRel(7))
            assert await server.next() == PubComp(7)
            # A PUBREL for an id not held (e.g. from before a reconnect) still gets PUBCOMP (§4.3.3).
            server.send(PubRel(9))
            expected = Reason.PACKET_IDENTIFIER_NOT_FOUND if version == MQTT_5 else Reason.SUCCESS
            assert await server.next() == PubComp(9, expected)
            await client.disconnect()

    run(scenario())
    assert [p.payload for p in received] == [b"once", b"next"]


def test_on_message_exception_is_logged_and_the_message_still_acknowledged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(publish: Publish) -> None:
        raise RuntimeError("handler bug")

    async def scenario() -> None:
        async with ScriptedServer() as server:
            client = await server.client(on_message=broken)
            server.send(Publish("cmd/x", b"1", qos=1, packet_id=3))
            assert await server.next() == PubAck(3)
            assert not client.closed
            await client.disconnect()

    with caplog.at_level(logging.ERROR, logger="gateway.uplink"):
        run(scenario())
    assert "on_message failed" in caplog.text and "handler bug" in caplog.text


def test_server_disconnect_names_its_reason_code() -> None:
    async def scenario() -> None:
        async with ScriptedServer() as server:
            client = await server.client(version=MQTT_5)
            pending = client.publish("x", b"1")
            props: dict[int, Any] = {Prop.REASON_STRING: "another client took client id scripted"}
            server.send(Disconnect(Reason.SESSION_TAKEN_OVER, props))  # §3.14.2.1
            reason = await client.wait_closed()
            assert str(reason) == (
                'upstream disconnected: session taken over (DISCONNECT 0x8E): "another client took client id scripted"'
            )
            with pytest.raises(UpstreamError):
                await pending

    run(scenario())


@VERSIONS
def test_a_malformed_packet_ends_the_connection(version: int) -> None:
    async def scenario() -> None:
        async with ScriptedServer() as server:
            client = await server.client(version=version)
            server.send_bytes(encode(PubAck(1), version) + b"\x36\x00")  # PUBLISH with QoS 3 (§3.3.1.2)
            reason = await client.wait_closed()
            assert str(reason) == "upstream sent a malformed packet: PUBLISH with QoS 3 (§3.3.1.2)"
            if version == MQTT_5:  # §4.13.1: the client says why before closing
                assert await server.next() == Disconnect(Reason.MALFORMED_PACKET)
            assert client._task is not None and client._task.done()

    run(scenario())


def test_an_unexpected_packet_type_is_a_protocol_error() -> None:
    async def scenario() -> None:
        async with ScriptedServer() as server:
            client = await server.client()
            server.send(ConnAck())  # a second CONNACK (§3.2)
            assert str(await client.wait_closed()) == "upstream sent an unexpected CONNACK packet (protocol error)"

    run(scenario())


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers


def test_next_packet_id_wraps_and_skips_ids_in_flight() -> None:
    assert next_packet_id(0, {}) == 1
    assert next_packet_id(65535, {}) == 1  # §2.2.1: 0 is never a packet identifier
    assert next_packet_id(65534, {65535: None}, {1}) == 2
    with pytest.raises(RuntimeError, match="all 65,535 packet identifiers are in flight"):
        next_packet_id(5, set(range(1, 65536)))


def test_connack_error_wording() -> None:
    refused = connack_error(ConnAck(Reason.NOT_AUTHORIZED, properties={Prop.REASON_STRING: "no"}), MQTT_5)
    assert str(refused).startswith('upstream refused the connection: not authorized (CONNACK 0x87): "no"; check')
    # An unknown 3.1.1 return code reaches us as 0x80 (the codec's mapping): no code number to show.
    assert str(connack_error(ConnAck(Reason.UNSPECIFIED_ERROR), MQTT_311)) == (
        "upstream refused the connection: unspecified error (CONNACK)"
    )
    assert describe_reason(0x42) == "reason code 0x42"


def test_unsupported_protocol_version_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="use MQTT_311"):
        run(UpstreamClient.connect(HOST, 1, client_id="x", version=3))
