"""The /db/watch fan-out (gateway/http/hub.py) and its event stream (gateway/http/watch.py), without HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator

import pytest

from gateway.http.hub import WatchHub, WatchRefused
from gateway.http.watch import stream

T0 = 1_700_000_000_000_000_000


def events(chunk: bytes) -> list[tuple[str, object]]:
    """(event type, data) of every event in a chunk; comments are left out."""
    found: list[tuple[str, object]] = []
    for block in chunk.decode().split("\n\n"):
        kind, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
        if data is not None:
            found.append((kind, data))
    return found


def start(hub: WatchHub, table: str = "T", names: frozenset[str] | None = None) -> Generator[bytes, None, None]:
    body = stream(hub, hub.add(table, names))
    assert next(body).startswith(b"retry: 3000\n: watching T")
    return body


def test_a_watcher_gets_the_readings_of_its_table_only() -> None:
    hub = WatchHub(keepalive=5)
    body = start(hub)
    hub.publish("OTHER", [("x", T0, 1.0)])
    hub.publish("T", [("temp", T0, 21.5), ("hum", T0, 40.0)])
    assert events(next(body)) == [
        ("message", {"name": "temp", "time": T0, "value": 21.5}),
        ("message", {"name": "hum", "time": T0, "value": 40.0}),
    ]


def test_name_filters() -> None:
    hub = WatchHub(keepalive=5)
    body = start(hub, names=frozenset({"hum"}))
    hub.publish("T", [("temp", T0, 21.5)])  # nothing for this watcher: not even queued
    hub.publish("T", [("temp", T0 + 1, 22.0), ("hum", T0 + 1, 41.0)])
    assert events(next(body)) == [("message", {"name": "hum", "time": T0 + 1, "value": 41.0})]


def test_a_slow_watcher_drops_readings_and_is_told() -> None:
    hub = WatchHub(max_pending=3, keepalive=5)
    body = start(hub)
    hub.publish("T", [("a", T0, 1.0), ("a", T0 + 1, 2.0)])
    hub.publish("T", [("a", T0 + 2, 3.0), ("a", T0 + 3, 4.0)])  # 4 pending would exceed 3: dropped whole
    hub.publish("T", [("a", T0 + 4, 5.0)])
    got = events(next(body))
    assert [data for kind, data in got if kind == "message"] == [
        {"name": "a", "time": T0, "value": 1.0},
        {"name": "a", "time": T0 + 1, "value": 2.0},
        {"name": "a", "time": T0 + 4, "value": 5.0},
    ]
    dropped = [data for kind, data in got if kind == "dropped"]
    assert dropped == [{"dropped": 2, "reason": "this client did not keep up: 2 reading(s) were not sent"}]
    assert hub.dropped == 2
    # Once taken, the queue has room again.
    hub.publish("T", [("a", T0 + 5, 6.0), ("a", T0 + 6, 7.0), ("a", T0 + 7, 8.0)])
    assert len(events(next(body))) == 3


def test_at_most_max_watchers_and_a_closed_stream_frees_its_slot() -> None:
    hub = WatchHub(max_watchers=2, keepalive=5)
    first, _second = start(hub), start(hub)
    with pytest.raises(WatchRefused, match="already 2 watchers"):
        hub.add("T", None)
    first.close()  # what the WSGI server does when the client goes away
    assert hub.watchers == 1
    _third = start(hub)
    assert hub.watchers == 2


def test_keep_alive_comments_when_idle() -> None:
    hub = WatchHub(keepalive=0.05)
    body = start(hub)
    started = time.monotonic()
    assert next(body) == b": keep-alive\n\n"
    assert time.monotonic() - started >= 0.04


def test_a_client_that_went_away_ends_its_stream() -> None:
    hub = WatchHub(keepalive=60)
    gone = threading.Event()
    body = stream(hub, hub.add("T", None), gone.is_set)
    next(body)
    threading.Timer(0.1, gone.set).start()
    started = time.monotonic()
    assert list(body) == []  # ends without waiting for the keep-alive
    assert time.monotonic() - started < 5
    assert hub.watchers == 0


def test_closing_the_hub_ends_every_stream_at_once() -> None:
    hub = WatchHub(keepalive=60)
    bodies = [start(hub), start(hub)]
    results: list[list[bytes]] = []
    threads = [threading.Thread(target=lambda b=body: results.append(list(b))) for body in bodies]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    hub.close()
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - started < 2
    assert [events(b"".join(chunks)) for chunks in results] == [[("end", {"reason": "the gateway is stopping"})]] * 2
    assert hub.watchers == 0
    with pytest.raises(WatchRefused, match="stopping"):
        hub.add("T", None)
