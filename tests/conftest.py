"""Fixtures shared by every test folder: a real gateway process on loopback, and independent MQTT clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from gateway.store.database import TimeSeriesStore
from tests.rawmqtt import RawClient, RawFactory

REPO = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening (.*)$", re.MULTILINE)


@dataclass
class Gateway:
    """A gateway process started by a test: `gateway serve` on 127.0.0.1 (or `bind`) with ports picked by the kernel."""

    data_dir: Path
    config: Path | None = None
    extra_args: tuple[str, ...] = ()
    bind: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    endpoints: dict[str, int] = field(default_factory=dict)
    log_path: Path | None = None
    env: dict[str, str] | None = None  # added to the test's environment, e.g. systemd's NOTIFY_SOCKET
    _starts: int = 0

    @property
    def mqtt_port(self) -> int:
        return self.endpoints["mqtt"]

    @property
    def mqttsn_port(self) -> int:
        return self.endpoints["mqtt-sn"]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.endpoints['http']}"

    def start(self, *, mqtt_port: int = 0, mqttsn_port: int = 0, timeout: float = 20.0) -> Gateway:
        self._starts += 1
        self.log_path = self.data_dir.parent / f"gateway-{self.data_dir.name}-{self._starts}.log"
        args = [sys.executable, "-m", "gateway", "serve", "--bind", self.bind, "--data-dir", str(self.data_dir)]
        args += ["--mqtt-port", str(mqtt_port), "--http-port", "0", "--mqttsn-port", str(mqttsn_port), "--ws-port", "0"]
        if self.config is not None:
            args += ["--config", str(self.config)]
        args += list(self.extra_args)
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            env = None if self.env is None else {**os.environ, **self.env}
            self.process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log())
            if match:
                self.endpoints = {
                    name: int(addr.rsplit(":", 1)[1])
                    for name, addr in (item.split("=", 1) for item in match.group(1).split())
                }
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not start within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, the way systemd stops it; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"gateway did not stop on SIGTERM within {timeout} s:\n{self.log()}") from None
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> Gateway:
        ports = self.mqtt_port, self.endpoints.get("mqtt-sn", 0)
        self.stop()
        return self.start(mqtt_port=ports[0], mqttsn_port=ports[1])


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(
        config_text: str | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        start: bool = True,
        name: str = "data",
        bind: str = "127.0.0.1",
        env: dict[str, str] | None = None,
    ) -> Gateway:
        config = None
        if config_text is not None:
            config = tmp_path / f"{name}.toml"
            config.write_text(config_text)
        gw = Gateway(tmp_path / name, config, extra_args, bind=bind, env=env)
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        gw.kill()


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory()


# ---------------------------------------------------------------------------------------------------------------
# paho-mqtt clients, the independent reference client for MQTT 3.1.1 and 5


class Client:
    """A paho client running its network loop in a thread, with received messages in a queue."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        v5: bool = False,
        clean: bool = True,
        keepalive: int = 60,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        connect_properties: Properties | None = None,
        will_properties: Properties | None = None,
        connect: bool = True,
    ) -> None:
        protocol = paho.MQTTv5 if v5 else paho.MQTTv311
        kwargs: dict[str, Any] = {"protocol": protocol, "client_id": client_id}
        if not v5:
            kwargs["clean_session"] = clean
        self.v5 = v5
        self.clean = clean
        self.port = port
        self.keepalive = keepalive
        self.connect_properties = connect_properties
        self.paho = paho.Client(CallbackAPIVersion.VERSION2, **kwargs)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.acks: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
        self.subacks: queue.Queue[tuple[int, list[Any]]] = queue.Queue()
        self.paho.on_message = lambda c, u, m: self.messages.put(m)
        self.paho.on_connect = lambda c, u, flags, rc, props: self.connack.put((flags, rc, props))
        self.paho.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        self.paho.on_publish = lambda c, u, mid, rc, props: self.acks.put((mid, rc, props))
        self.paho.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put((mid, rcs))
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            self.paho.will_set(will[0], will[1], will[2], will[3], properties=will_properties)
        if connect:
            self.connect()

    def connect(self, timeout: float = 10.0) -> tuple[Any, Any, Any]:
        kwargs: dict[str, Any] = {"keepalive": self.keepalive}
        if self.v5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = self.connect_properties
        self.paho.connect("127.0.0.1", self.port, **kwargs)
        self.paho.loop_start()
        result = self.connack.get(timeout=timeout)
        return result

    def subscribe(self, topic: str, qos: int = 0, timeout: float = 10.0, **kwargs: Any) -> list[Any]:
        _rc, mid = self.paho.subscribe(topic, qos, **kwargs)
        while True:
            got_mid, codes = self.subacks.get(timeout=timeout)
            if got_mid == mid:
                return codes

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        wait: bool = True,
        properties: Properties | None = None,
    ) -> paho.MQTTMessageInfo:
        info = self.paho.publish(topic, payload, qos, retain, properties)
        if wait:
            info.wait_for_publish(10)
        return info

    def expect(self, timeout: float = 10.0) -> paho.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def expect_none(self, wait: float = 0.5) -> None:
        try:
            message = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {message.topic}: {message.payload!r}")

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crashing client would."""
        self.paho.loop_stop()
        sock = self.paho.socket()
        if sock is not None:
            sock.close()


@pytest.fixture
def clients(gateway_factory: Callable[..., Gateway]) -> Iterator[list[Client]]:
    """Collects clients made by a test so that they are closed even when it fails.

    DISCONNECT goes first, to every client, while the gateways still run (they are stopped by `gateway_factory`,
    requested here so that its teardown comes after this one): it wakes each paho network thread, which then
    ends at once, instead of after its select timeout or a reconnect delay when the loop is stopped first."""
    del gateway_factory
    made: list[Client] = []
    yield made
    for client in made:
        with contextlib.suppress(Exception):
            client.paho.disconnect()
    for client in made:
        with contextlib.suppress(Exception):
            client.paho.loop_stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Polls `predicate` until it is true or `timeout` has passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------------------------------------------------------
# Raw MQTT clients (tests/rawmqtt.py), for the bytes no client library sends


@pytest.fixture
def raw_timeout() -> float:
    """How long the `raw` fixture's clients wait by default for a packet or for the server to close; a test
    module may override this fixture."""
    return 10.0


@pytest.fixture
def raw(raw_timeout: float) -> Iterator[RawFactory]:
    """Makes raw clients, closed at the end of the test: `raw(port)` opens the TCP connection only,
    `raw(port, client_id, **options)` also sends CONNECT (`RawClient.connect`, which by default asserts that the
    CONNACK accepts) and keeps the CONNACK in `connack`."""
    made: list[RawClient] = []

    def make(
        port: int,
        client_id: str | None = None,
        *,
        version: int = 4,
        timeout: float | None = None,
        rcvbuf: int | None = None,
        **connect_options: Any,
    ) -> RawClient:
        client = RawClient(port, version=version, timeout=raw_timeout if timeout is None else timeout, rcvbuf=rcvbuf)
        made.append(client)
        if client_id is not None:
            client.connect(client_id, **connect_options)
        return client

    yield make
    for client in made:
        client.close()


def mosquitto_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HOME", None)  # mosquitto clients read ~/.config/mosquitto_pub: keep the tests independent of it
    return env


def stored_readings(data_dir: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Everything in the store of a stopped gateway: (table, name) -> [(time, value)]."""

    async def read() -> dict[tuple[str, str], list[tuple[int, float]]]:
        store = TimeSeriesStore(data_dir / "store")
        try:
            return {
                (table.name, name): list(store.scan(table.name, name))
                for table in store.tables()
                for name in store.series_names(table.name)
            }
        finally:
            await store.close()

    return asyncio.run(read())
