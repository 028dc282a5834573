"""Publish hooks (`Broker.add_publish_hook`) seen from the network: a broker and its MQTT server run in-process on an
event loop in a thread, real clients talk to them over loopback sockets, and the hooks are held until the test lets
them finish."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from gateway.mqtt.auth import Authorizer
from gateway.mqtt.broker import Broker, BrokerSettings, ClientInfo, PublishRejected
from gateway.mqtt.connection import ConnectionLimits
from gateway.mqtt.server import Listener, MqttServer
from gateway.mqtt.session import Message
from tests.conftest import Client

# ---------------------------------------------------------------------------------------------------------------
# The broker under test, on its own event loop


class Gate:
    """A publish hook that holds every message until the test releases its payload (or opens the gate)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.calls: list[tuple[str, bytes, ClientInfo]] = []
        self.finished: list[bytes] = []
        self.running = 0
        self.max_running = 0
        self.is_open = False
        self.rejections: dict[bytes, list[PublishRejected]] = {}
        self._events: dict[bytes, asyncio.Event] = {}

    def _event(self, payload: bytes) -> asyncio.Event:
        return self._events.setdefault(payload, asyncio.Event())

    async def __call__(self, message: Message, client: ClientInfo) -> None:
        self.calls.append((message.topic, message.payload, client))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if not self.is_open:
                await self._event(message.payload).wait()
            rejections = self.rejections.get(message.payload)
            if rejections:
                raise rejections.pop(0)
        finally:
            self.running -= 1
            self.finished.append(message.payload)

    # -- from the test's thread

    def release(self, *payloads: bytes) -> None:
        def release() -> None:
            for payload in payloads:
                self._event(payload).set()

        self.harness.call(release)

    def open(self) -> None:
        def open_gate() -> None:
            self.is_open = True
            for event in self._events.values():
                event.set()

        self.harness.call(open_gate)

    def reject(self, payload: bytes, *errors: PublishRejected) -> None:
        """The next calls for `payload` raise `errors`, one each."""
        self.harness.call(lambda: self.rejections.setdefault(payload, []).extend(errors))

    def payloads(self) -> list[bytes]:
        return [payload for _topic, payload, _client in self.calls]


class Harness:
    """Broker + MqttServer on 127.0.0.1 (port 0), run by `asyncio.run` in a thread until `close`."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.broker = Broker(BrokerSettings(), Authorizer(allow_anonymous=True), state=None)
        self.server = MqttServer(self.broker, limits, [Listener("mqtt", "127.0.0.1", 0)])
        self.gates: list[Gate] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="broker-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError("the broker did not start") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __init__ or close
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.broker.start()
        endpoints = await self.server.start()
        self.port = endpoints[0][2]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()
            await self.broker.stop()

    def gate(self, topic_filter: str = "db/#") -> Gate:
        gate = Gate(self)
        self.gates.append(gate)
        self.call(lambda: self.broker.add_publish_hook(topic_filter, gate))
        return gate

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the broker's loop and return its result."""

        async def run() -> Any:
            return fn()

        return self.run(run())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def close(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            for gate in self.gates:
                gate.open()
            stop = self._stop
            assert stop is not None
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the broker did not stop"
        if self._error is not None:
            raise self._error


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(limits: ConnectionLimits | None = None) -> Harness:
        harness = Harness(limits or ConnectionLimits())
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def harness(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        with contextlib.suppress(Exception):
            client.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------------------------------------------------------
# A raw client, to see exactly which acknowledgement arrives when

PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


class Raw:
    def __init__(self, port: int, client_id: str, version: int = 4) -> None:
        self.version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buf = b""
        body = _str("MQTT") + bytes([version, 0x02]) + struct.pack("!H", 60)
        body += (b"\x00" if version == 5 else b"") + _str(client_id)
        self.sock.sendall(_packet(0x10, body))
        first, ack = self.read()
        assert first == 0x20 and ack[1] == 0, f"CONNACK {first:#x} {ack!r}"

    def publish_bytes(self, topic: str, payload: bytes, qos: int, packet_id: int) -> bytes:
        props = b"\x00" if self.version == 5 else b""
        return _packet(0x30 | qos << 1, _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + props + payload)

    def publish(self, topic: str, payload: bytes, qos: int = 1, packet_id: int = 1) -> None:
        self.sock.sendall(self.publish_bytes(topic, payload, qos, packet_id))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _split(self) -> tuple[int, bytes] | None:
        buf = self._buf
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if len(buf) < i + length:
            return None
        self._buf = buf[i + length :]
        return buf[0], buf[i : i + length]

    def read(self, timeout: float = 10.0) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            split = self._split()
            if split is not None:
                return split
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete packet within {timeout} s")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self._buf += data

    def read_ack(self, timeout: float = 10.0) -> tuple[int, int, int, dict[int, Any]]:
        """The next packet as an acknowledgement: (first byte, packet id, reason code, properties)."""
        first, body = self.read(timeout)
        packet_id = struct.unpack("!H", body[:2])[0]
        reason = body[2] if len(body) > 2 else 0
        return first, packet_id, reason, _properties(body[3:]) if len(body) > 3 else {}

    def nothing_within(self, seconds: float) -> None:
        try:
            got = self.read(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet {got[0]:#04x} {got[1]!r}")

    def read_until_closed(self, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        packets = []
        while True:
            try:
                packets.append(self.read(timeout))
            except (EOFError, ConnectionResetError):
                return packets

    def close(self) -> None:
        self.sock.close()


def _properties(data: bytes) -> dict[int, Any]:
    length, shift, pos = 0, 0, 0
    while True:
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    end = pos + length
    props: dict[int, Any] = {}
    while pos < end:
        ident = data[pos]
        pos += 1
        if ident == 0x1F:  # Reason String
            size = struct.unpack("!H", data[pos : pos + 2])[0]
            props[ident] = data[pos + 2 : pos + 2 + size].decode()
            pos += 2 + size
        elif ident == 0x26:  # User Property
            pairs = []
            for _ in range(2):
                size = struct.unpack("!H", data[pos : pos + 2])[0]
                pairs.append(data[pos + 2 : pos + 2 + size].decode())
                pos += 2 + size
            props.setdefault(ident, []).append(tuple(pairs))
        else:
            raise AssertionError(f"unexpected property {ident:#x} in an acknowledgement")
    return props


@pytest.fixture
def raws() -> Iterator[list[Raw]]:
    made: list[Raw] = []
    yield made
    for raw in made:
        raw.close()


def subscriber(harness: Harness, clients: list[Client], topic_filter: str = "#") -> Client:
    sub = Client(harness.port, "watcher")
    clients.append(sub)
    assert sub.subscribe(topic_filter, 1) == [1]
    return sub


def payloads_of(sub: Client, count: int) -> list[bytes]:
    return [bytes(sub.expect().payload) for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# The acknowledgement waits for the hook


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("qos", [1, 2])
def test_ack_is_sent_only_after_the_hook_finished(
    harness: Harness, clients: list[Client], raws: list[Raw], version: int, qos: int
) -> None:
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = Raw(harness.port, "publisher", version)
    raws.append(pub)

    pub.publish("db/readings", b"held", qos, packet_id=7)
    assert wait_until(lambda: gate.payloads() == [b"held"])
    pub.nothing_within(0.3)
    sub.expect_none(0.01)

    gate.release(b"held")
    first, packet_id, reason, _props = pub.read_ack()
    assert (first, packet_id, reason) == (PUBACK if qos == 1 else PUBREC, 7, 0)
    assert gate.finished == [b"held"]
    message = sub.expect()
    assert (message.topic, message.payload) == ("db/readings", b"held")
    if qos == 2:
        pub.send(_packet(PUBREL, struct.pack("!H", 7)))
        assert pub.read_ack()[:3] == (PUBCOMP, 7, 0)
    assert gate.payloads() == [b"held"]  # called once


# ---------------------------------------------------------------------------------------------------------------
# Rejections


@pytest.mark.parametrize("retry", [False, True], ids=["final", "retry"])
@pytest.mark.parametrize("qos", [1, 2])
def test_rejection_gives_a_v5_publisher_the_reason_and_is_not_delivered(
    harness: Harness, clients: list[Client], raws: list[Raw], qos: int, retry: bool
) -> None:
    gate = harness.gate()
    gate.open()
    # MQTT 5 publishers are told in both cases; `retry` only matters to 3.1.1 clients.
    gate.reject(b"garbage", PublishRejected("bad payload", 0x99, retry=retry))
    sub = subscriber(harness, clients)
    pub = Raw(harness.port, "publisher-v5", 5)
    raws.append(pub)

    pub.publish("db/readings", b"garbage", qos, packet_id=1)
    first, packet_id, reason, props = pub.read_ack()
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
    harness: Harness, clients: list[Client], raws: list[Raw], qos: int
) -> None:
    gate = harness.gate()
    gate.open()
    gate.reject(b"garbage", PublishRejected("bad payload", 0x99, retry=False))
    sub = subscriber(harness, clients)
    pub = Raw(harness.port, "publisher-311", 4)
    raws.append(pub)

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


def test_rejection_with_retry_sends_no_ack_before_closing(harness: Harness, raws: list[Raw]) -> None:
    gate = harness.gate()
    gate.open()
    gate.reject(b"reading-1", PublishRejected("storage full", 0x97, retry=True))
    pub = Raw(harness.port, "raw-retrier", 4)
    raws.append(pub)
    pub.publish("db/readings", b"reading-1", 1, packet_id=1)
    assert pub.read_until_closed() == []


# ---------------------------------------------------------------------------------------------------------------
# Order (MQTT 3.1.1 §4.6, MQTT 5 §4.6)


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_acks_and_deliveries_keep_arrival_order(
    harness: Harness, clients: list[Client], raws: list[Raw], version: int
) -> None:
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = Raw(harness.port, "publisher", version)
    raws.append(pub)

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
    harness_factory: Callable[..., Harness], clients: list[Client], raws: list[Raw]
) -> None:
    harness = harness_factory(ConnectionLimits(receive_maximum=10))
    gate = harness.gate()
    sub = subscriber(harness, clients)
    pub = Raw(harness.port, "burst", 4)
    raws.append(pub)

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
    harness_factory: Callable[..., Harness], raws: list[Raw]
) -> None:
    """MQTT 5 §3.3.4: Receive Maximum limits unacknowledged QoS 1 and QoS 2 PUBLISH packets only. A v5 client
    with 5 QoS 2 messages awaiting PUBREL and 9 QoS 0 messages waiting for their hooks is within a quota of 10
    when it sends a QoS 1 message: it must not be told 0x93 (Receive Maximum exceeded)."""
    harness = harness_factory(ConnectionLimits(receive_maximum=10))
    gate = harness.gate()
    pub = Raw(harness.port, "mixed", 5)
    raws.append(pub)
    pub.send(b"".join(pub.publish_bytes("plain/q2", b"t%02d" % i, 2, 100 + i) for i in range(5)))
    assert [pub.read_ack()[:3] for _ in range(5)] == [(PUBREC, 100 + i, 0) for i in range(5)]
    pub.send(b"".join(pub.publish_bytes("db/q0", b"z%02d" % i, 0, 0) for i in range(9)))
    assert wait_until(lambda: len(gate.calls) >= 9)
    pub.publish("db/q1", b"one", 1, 1)
    time.sleep(0.3)
    gate.open()
    assert pub.read_ack()[:3] == (PUBACK, 1, 0)
    assert sorted(gate.finished) == sorted([b"z%02d" % i for i in range(9)] + [b"one"])
