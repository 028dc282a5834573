"""GET /db/watch/<TABLE> against a running gateway: an HTTP client reads the event stream while paho publishes."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Client, Gateway, wait_until

T0 = 1_700_000_000_000_000_000
MAX_WATCHERS = 6  # the HTTP server's 8 threads, less two kept for everything else


class EventStream:
    """A client of one event stream, reading it line by line as a browser's EventSource would."""

    def __init__(self, gateway: Gateway, path: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", gateway.endpoints["http"], timeout=10)
        self.connection.request("GET", path)
        self.response = self.connection.getresponse()
        self.status = self.response.status

    def next(self) -> tuple[str, Any]:
        """The next event: (type, data); raises EOFError when the stream ends."""
        kind, data = "message", None
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError
            text = line.decode().rstrip("\n")
            if text == "":
                if data is not None:
                    return kind, data
                kind = "message"
            elif text.startswith("event: "):
                kind = text.removeprefix("event: ")
            elif text.startswith("data: "):
                data = json.loads(text.removeprefix("data: "))
            else:
                assert text.startswith((":", "retry: ")), text  # comments and the reconnection delay

    def close(self) -> None:
        self.response.close()
        self.connection.close()


@pytest.fixture
def streams() -> Iterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        stream.close()


def watch(gateway: Gateway, streams: list[EventStream], path: str) -> EventStream:
    stream = EventStream(gateway, path)
    streams.append(stream)
    return stream


def watchers(gateway: Gateway) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.endpoints["http"], timeout=10)
    try:
        connection.request("GET", "/api/status")
        return int(json.loads(connection.getresponse().read())["status"]["http_watchers"])
    finally:
        connection.close()


def make_table(gateway: Gateway, clients: list[Client], table: str) -> Client:
    sensor = Client(gateway.mqtt_port, f"sensor-{table.lower()}")
    clients.append(sensor)
    sensor.publish(f"db/append/{table}", json.dumps(["setup", T0 - 1, 0.0]), 1)
    return sensor


def test_readings_published_over_mqtt_arrive_as_events(
    gateway: Gateway, clients: list[Client], streams: list[EventStream]
) -> None:
    sensor = make_table(gateway, clients, "EXAMPLE")
    everything = watch(gateway, streams, "/db/watch/example")
    humidity = watch(gateway, streams, "/db/watch/EXAMPLE?name=hum&name=pressure")
    assert everything.status == 200 and everything.response.getheader("Content-Type") == "text/event-stream"
    assert everything.response.getheader("Cache-Control") == "no-cache"
    assert wait_until(lambda: watchers(gateway) == 2)

    sensor.publish("db/append/EXAMPLE", json.dumps([["temp", T0, 21.5], ["hum", T0, 40.0]]), 1)
    sensor.publish("db/append/OTHER", json.dumps([["temp", T0, 99.0]]), 1)
    sensor.publish("db/append/EXAMPLE:csv", f"pressure,{T0 + 1},1013.25\n", 0)

    assert everything.next() == ("message", {"name": "temp", "time": T0, "value": 21.5})
    assert everything.next() == ("message", {"name": "hum", "time": T0, "value": 40.0})
    # Nothing of table OTHER came in between.
    assert everything.next() == ("message", {"name": "pressure", "time": T0 + 1, "value": 1013.25})
    assert humidity.next() == ("message", {"name": "hum", "time": T0, "value": 40.0})
    assert humidity.next() == ("message", {"name": "pressure", "time": T0 + 1, "value": 1013.25})


def test_watchers_are_capped_and_a_closed_stream_frees_its_slot(
    gateway: Gateway, clients: list[Client], streams: list[EventStream]
) -> None:
    sensor = make_table(gateway, clients, "CAP")
    opened = [watch(gateway, streams, "/db/watch/cap") for _ in range(MAX_WATCHERS)]
    assert [stream.status for stream in opened] == [200] * MAX_WATCHERS
    refused = watch(gateway, streams, "/db/watch/cap")
    assert refused.status == 503 and refused.response.getheader("Content-Type") == "application/json"
    assert f"already {MAX_WATCHERS} watchers" in json.loads(refused.response.read())["reason"]
    # Other requests are still served while every watcher slot is taken.
    assert watchers(gateway) == MAX_WATCHERS

    opened[0].close()
    assert wait_until(lambda: watchers(gateway) == MAX_WATCHERS - 1, timeout=5)
    again = watch(gateway, streams, "/db/watch/cap")
    assert again.status == 200
    sensor.publish("db/append/CAP", json.dumps(["x", T0, 1.0]), 1)
    assert again.next() == ("message", {"name": "x", "time": T0, "value": 1.0})
    assert opened[-1].next() == ("message", {"name": "x", "time": T0, "value": 1.0})


def test_stopping_the_gateway_ends_open_streams_promptly(
    gateway: Gateway, clients: list[Client], streams: list[EventStream]
) -> None:
    make_table(gateway, clients, "STOPPING")
    opened = [watch(gateway, streams, "/db/watch/stopping") for _ in range(3)]
    assert wait_until(lambda: watchers(gateway) == 3)
    started = time.monotonic()
    assert gateway.stop() == 0
    assert time.monotonic() - started < 5
    for stream in opened:
        assert stream.next() == ("end", {"reason": "the gateway is stopping"})
        with pytest.raises(EOFError):
            stream.next()
