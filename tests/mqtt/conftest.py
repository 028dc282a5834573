"""Fixtures of the in-process tests: a broker and its MQTT server on an event loop in a thread (`Harness`), with
publish hooks (`Gate`) that hold messages until the test lets them finish."""

from __future__ import annotations

import asyncio
import threading
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


def subscriber(harness: Harness, clients: list[Client], topic_filter: str = "#") -> Client:
    """A paho subscriber at QoS 1, to see what the broker routed, in order."""
    sub = Client(harness.port, "watcher")
    clients.append(sub)
    assert sub.subscribe(topic_filter, 1) == [1]
    return sub
