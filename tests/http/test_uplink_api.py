"""GET /api/uplink, the uplink's lines of /metrics and its summary in /api/status, against a real gateway process:
one without an uplink, and one whose upstream is a loopback port where nothing listens (so that readings wait)."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.conftest import Client, Gateway, wait_until

# A sample line of the text format: name, labels, value.
SAMPLE = re.compile(r"(gateway_[a-z_]+)(?:\{([^}]*)\})? (\S+)")


def get(gateway: Gateway, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(gateway.http_url + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(gateway: Gateway, path: str) -> Any:
    status, body = get(gateway, path)
    assert status == 200, body
    return json.loads(body)


def uplink_samples(text: str) -> dict[tuple[str, str], float]:
    """{(name, labels): value} of the gateway_uplink_* samples of a /metrics answer."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE.fullmatch(line)
        if match and match.group(1).startswith("gateway_uplink_"):
            found[match.group(1), match.group(2) or ""] = float(match.group(3))
    return found


def closed_port() -> int:
    """A loopback port that was bound and closed: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_without_an_uplink_it_is_disabled_everywhere(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory()
    assert get_json(gateway, "/api/uplink") == {"success": True, "enabled": False}
    status, metrics = get(gateway, "/metrics")
    assert status == 200 and b"gateway_ingest_readings_total" in metrics
    assert b"gateway_uplink_" not in metrics
    answer = get_json(gateway, "/api/status")
    assert answer["uplink"] == {"enabled": False}
    assert not any(name.startswith("uplink_") for name in answer["status"])


def test_it_needs_the_token_when_reads_do(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory('[http]\ntoken = "s3cret"\ntoken_for_reads = true\n')
    status, body = get(gateway, "/api/uplink")
    assert status == 401
    assert json.loads(body) == {
        "success": False,
        "reason": "this gateway's API needs the API token: send 'Authorization: Bearer <token>'",
    }
    status, body = get(gateway, "/api/uplink", token="s3cret")
    assert status == 200 and json.loads(body) == {"success": True, "enabled": False}


def test_an_unreachable_upstream_shows_its_error_and_the_readings_waiting(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    port = closed_port()
    gateway = gateway_factory(f'[uplink]\nurl = "mqtt://127.0.0.1:{port}"\n')
    assert wait_until(lambda: get_json(gateway, "/api/uplink")["connect_attempts"] >= 1)
    uplink = get_json(gateway, "/api/uplink")
    assert uplink["success"] is True and uplink["enabled"] is True
    assert uplink["url"] == f"mqtt://127.0.0.1:{port}"
    assert uplink["connected"] is False and uplink["connected_since"] is None
    assert uplink["last_error"].startswith(f"connection to 127.0.0.1:{port} refused")
    assert abs(uplink["last_error_at"] - time.time()) < 30
    assert uplink["forwarding"]["backlog"] == 0
    assert uplink["forwarding"]["oldest_waiting_seconds"] is None

    # Readings stored while the upstream is away wait in the store, counted per table.
    client = Client(gateway.mqtt_port, "probe")
    clients.append(client)
    now = time.time_ns()
    client.publish("db/append/PLANT", json.dumps([["temp", now, 21.5], ["hum", now, 40.0]]), qos=1)
    client.publish("db/append/garden", json.dumps([["soil", now, 0.31]]), qos=1)
    assert wait_until(lambda: get_json(gateway, "/api/uplink")["forwarding"]["backlog"] == 3)
    time.sleep(0.3)  # the oldest reading has waited a little

    before = get_json(gateway, "/api/uplink")
    status, body = get(gateway, "/metrics")
    after = get_json(gateway, "/api/uplink")
    assert status == 200
    forwarding = after["forwarding"]
    assert forwarding["backlog_by_table"] == {"GARDEN": 1, "PLANT": 2}
    assert 0.3 <= forwarding["oldest_waiting_seconds"] < 60
    assert forwarding["forwarded"] == forwarding["messages"] == 0
    assert forwarding["dropped_by_table"] == forwarding["refused_by_table"] == {}
    assert after["connected"] is False and "refused" in after["last_error"]

    text = body.decode()
    samples = uplink_samples(text)
    assert samples["gateway_uplink_connected", ""] == 0
    assert samples["gateway_uplink_backlog_readings", 'table="PLANT"'] == 2
    assert samples["gateway_uplink_backlog_readings", 'table="GARDEN"'] == 1
    assert forwarding["oldest_waiting_seconds"] >= samples["gateway_uplink_oldest_waiting_seconds", ""] >= 0.3
    assert samples["gateway_uplink_forwarded_readings_total", ""] == 0
    assert samples["gateway_uplink_messages_total", ""] == 0
    attempts = samples["gateway_uplink_connect_attempts_total", ""]
    assert before["connect_attempts"] <= attempts <= after["connect_attempts"]
    assert samples["gateway_uplink_commands_received_total", ""] == after["commands_received"] == 0
    assert "bridge" not in after, "no [uplink] bridge filters: no bridge figures"
    assert not [name for name, _labels in samples if "bridge" in name]
    # Nothing was dropped or refused: those metrics have no table to show.
    assert not [name for name, _labels in samples if "dropped" in name or "refused" in name]
    # One HELP and one TYPE per metric, its samples (one per table) under them.
    assert text.count("# TYPE gateway_uplink_backlog_readings gauge\n") == 1
    assert text.count("# HELP gateway_uplink_backlog_readings ") == 1
    lines = text.splitlines()
    at = lines.index("# TYPE gateway_uplink_backlog_readings gauge")
    assert lines[at + 1 : at + 3] == [
        'gateway_uplink_backlog_readings{table="GARDEN"} 1',
        'gateway_uplink_backlog_readings{table="PLANT"} 2',
    ]

    answer = get_json(gateway, "/api/status")
    summary = answer["uplink"]
    assert summary["enabled"] is True and summary["connected"] is False and summary["backlog"] == 3
    assert summary["last_error"].startswith(f"connection to 127.0.0.1:{port} refused")
    assert answer["status"]["uplink_connected"] == 0
    assert answer["status"]["uplink_forwarded_readings_total"] == 0
