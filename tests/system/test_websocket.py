"""MQTT over WebSocket, seen from outside: paho-mqtt (transport="websockets"), MQTT.js run by Node, and raw
sockets for the bytes no client sends, against a real gateway beside TCP clients on the same broker."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client, Gateway, wait_until
from tests.rawmqtt import CONNACK, PINGREQ, PINGRESP, Will, connect_packet, packet, publish_packet, subscribe_packet
from tests.system.test_operations import code, make_password_file
from tests.websocket.rawws import BINARY, CLOSE, CONTINUATION, TEXT, RawWebSocket, binary, frame

GatewayFactory = Callable[..., Gateway]
NODE_DIR = Path(__file__).resolve().parent.parent / "websocket" / "node"
WS = ("--ws-port", "0")  # the default, 8083, would be shared by tests running at once
S = 1_000_000_000
T0 = 1_700_000_000 * S


def ws_client(
    gateway: Gateway, client_id: str, clients: list[Client], *, path: str = "/mqtt", **options: Any
) -> Client:
    """A paho client over WebSocket, connected unless connect=False."""
    connect = options.pop("connect", True)
    client = Client(gateway.endpoints["mqtt-ws"], client_id, connect=False, **options)
    client.paho.transport = "websockets"
    client.paho.ws_set_options(path=path)
    clients.append(client)
    if connect:
        _flags, rc, _props = client.connect()
        assert code(rc) == 0, rc
    return client


def tcp_client(gateway: Gateway, client_id: str, clients: list[Client], **options: Any) -> Client:
    client = Client(gateway.mqtt_port, client_id, **options)
    clients.append(client)
    return client


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def query(gateway: Gateway, sql: str) -> Any:
    status, body = http_get(f"{gateway.http_url}/db/query?" + urllib.parse.urlencode({"q": sql}))
    assert status == 200, body
    return json.loads(body)["data"]["rows"]


def mqttjs(url: str, timeout: float = 30.0, **options: Any) -> subprocess.Popen[str]:
    node = shutil.which("node")
    assert node, "Node.js runs MQTT.js (Debian: nodejs)"
    assert (NODE_DIR / "node_modules" / "mqtt").exists(), (
        "MQTT.js is not installed: `make test` runs `npm ci` in tests/websocket/node"
    )
    command = [node, "mqttjs.mjs", url, json.dumps({"timeout": int(timeout * 1000), **options})]
    return subprocess.Popen(command, cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def next_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"MQTT.js ended early (exit {process.wait(10)}): {process.stderr.read() if process.stderr else ''}"
    result: dict[str, Any] = json.loads(line)
    return result


def rest_of(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """The remaining lines, once MQTT.js has ended (it has its own timeout). Read through the same buffered file
    as next_line: communicate() would read the pipe beneath it and miss lines already buffered."""
    assert process.stdout is not None and process.stderr is not None
    lines = [json.loads(line) for line in process.stdout.read().splitlines()]
    assert process.wait(10) == 0 and lines[-1:] == [{"done": True}], (lines, process.stderr.read())
    return lines


# ---------------------------------------------------------------------------------------------------------------


def test_the_listener_is_logged_reported_and_follows_its_options(gateway_factory: GatewayFactory) -> None:
    """`--ws-port 0` picks a port, shown in the start-up line and /api/status; ws_enabled = false has none."""
    gateway = gateway_factory(extra_args=WS)
    port = gateway.endpoints["mqtt-ws"]
    assert port > 0 and port not in (gateway.mqtt_port, gateway.endpoints["http"])
    assert f"mqtt-ws=127.0.0.1:{port}" in gateway.log()
    status, body = http_get(f"{gateway.http_url}/api/status")
    assert status == 200
    listeners = {item["name"]: item for item in json.loads(body)["listeners"]}
    assert listeners["mqtt-ws"] == {"name": "mqtt-ws", "host": "127.0.0.1", "port": port}
    gateway.stop()

    off = gateway_factory("[mqtt]\nws_enabled = false\n", name="off", extra_args=WS)
    assert "mqtt-ws" not in off.endpoints and set(off.endpoints) >= {"mqtt", "http"}
    off.stop()

    bad = gateway_factory('[mqtt]\nws_path = "mqtt"\n', name="bad", extra_args=WS, start=False)
    with pytest.raises(RuntimeError, match=r"ws_path 'mqtt'"):
        bad.start()


def test_a_websocket_publish_to_db_append_is_durable_and_read_back_over_http(
    gateway_factory: GatewayFactory, clients: list[Client]
) -> None:
    gateway = gateway_factory(extra_args=WS)
    browser = ws_client(gateway, "dashboard-writer", clients, v5=True)
    rows = [["ws.temperature", T0 + i * S, 20.5 + i] for i in range(3)]
    info = browser.publish("db/append/WS", json.dumps(rows), qos=1)
    assert info.is_published()  # the PUBACK, which the gateway sends once the rows are written
    _mid, rc, _props = browser.acks.get(timeout=10)
    assert code(rc) == 0
    assert query(gateway, "select name, time, value from ws order by time") == rows

    # A reading the store refuses is refused over WebSocket as over TCP (MQTT 5 reason code, not a silent drop).
    browser.publish("db/append/WS", "not json", qos=1)
    _mid, rc, _props = browser.acks.get(timeout=10)
    assert code(rc) >= 0x80
    assert query(gateway, "select count(*) from ws") == [[3]]


def test_websocket_and_tcp_clients_share_live_and_retained_messages_at_qos_1(
    gateway_factory: GatewayFactory, clients: list[Client]
) -> None:
    gateway = gateway_factory(extra_args=WS)
    sensor = tcp_client(gateway, "tcp-sensor", clients)
    sensor.publish("dash/retained", b"kept", qos=1, retain=True)

    browser = ws_client(gateway, "ws-dashboard", clients, v5=True)
    assert [code(c) for c in browser.subscribe("dash/#", qos=1)] == [1]
    retained = browser.expect()
    assert (retained.topic, retained.payload, retained.qos, retained.retain) == ("dash/retained", b"kept", 1, True)

    sensor.publish("dash/live", b"21.5", qos=1)
    live = browser.expect()
    assert (live.topic, live.payload, live.qos, live.retain) == ("dash/live", b"21.5", 1, False)

    # The other way: a WebSocket publish reaches a TCP subscriber, and its retained message a later one.
    assert [code(c) for c in sensor.subscribe("cmd/#", qos=1)] == [1]
    browser.publish("cmd/fan", b"on", qos=1, retain=True)
    command = sensor.expect()
    assert (command.topic, command.payload, command.qos) == ("cmd/fan", b"on", 1)
    late = tcp_client(gateway, "tcp-late", clients)
    late.subscribe("cmd/#", qos=1)
    kept = late.expect()
    assert (kept.topic, kept.payload, kept.retain) == ("cmd/fan", b"on", True)

    # 3.1.1 over WebSocket too, and a large message: many frames' worth on the way in and out.
    big = bytes(range(256)) * 1024
    old = ws_client(gateway, "ws-311", clients)
    old.subscribe("big/+", qos=1)
    sensor.publish("big/blob", big, qos=1)
    assert old.expect().payload == big
    sensor.subscribe("big/+", qos=1)
    old.publish("big/again", big, qos=1)
    assert sensor.expect().payload == big


def test_authentication_and_limits_are_the_tcp_listeners(
    gateway_factory: GatewayFactory, clients: list[Client], tmp_path: Path
) -> None:
    users = make_password_file(tmp_path / "passwd", {"alice": "wonderland"})
    config = f'[mqtt]\nallow_anonymous = false\npassword_file = "{users}"\nmax_packet_size = 1024\n'
    gateway = gateway_factory(config, extra_args=WS)

    anonymous = ws_client(gateway, "ws-anonymous", clients, connect=False)
    _flags, rc, _props = anonymous.connect()
    assert code(rc) == 0x87  # paho's reason code for 3.1.1's return code 5, not authorized
    wrong = ws_client(gateway, "ws-wrong", clients, v5=True, username="alice", password="guess", connect=False)
    _flags, rc, _props = wrong.connect()
    assert code(rc) == 0x86  # bad user name or password

    alice = ws_client(gateway, "ws-alice", clients, v5=True, username="alice", password="wonderland")
    alice.subscribe("alice/#", qos=1)
    alice.publish("alice/x", b"mine", qos=1)
    assert alice.expect().payload == b"mine"

    # max_packet_size holds over WebSocket: a larger PUBLISH closes that connection (MQTT 5: 0x95).
    alice.publish("alice/big", b"x" * 2000, qos=0)
    assert code(alice.disconnects.get(timeout=10)) == 0x95
    assert wait_until(
        lambda: "ws-alice (127.0.0.1:" in gateway.log() and "exceeds the maximum of 1024" in gateway.log()
    )

    refused = mqttjs(f"ws://127.0.0.1:{gateway.endpoints['mqtt-ws']}/mqtt", clientId="js-anonymous")
    line = next_line(refused)
    assert "error" in line and refused.wait(20) == 1, line


def test_a_malformed_frame_closes_only_its_connection(gateway_factory: GatewayFactory, clients: list[Client]) -> None:
    gateway = gateway_factory(extra_args=WS)
    port = gateway.endpoints["mqtt-ws"]
    watcher = ws_client(gateway, "ws-watcher", clients)
    watcher.subscribe("wills/#", qos=1)

    raw = RawWebSocket(port)
    try:
        status, headers = raw.upgrade()
        assert (status, headers["sec-websocket-protocol"]) == (101, "mqtt")
        # CONNECT split over a fragmented message, then SUBSCRIBE and PINGREQ coalesced in one frame.
        hello = connect_packet("raw-ws", will=Will("wills/raw-ws", b"gone", qos=1))
        raw.send(frame(BINARY, hello[:5], fin=False) + frame(CONTINUATION, hello[5:]))
        assert raw.next_frame().payload == bytes([CONNACK, 2, 0, 0])
        raw.send(binary(subscribe_packet(1, [("raw/#", 1)]) + packet(PINGREQ, b"")))
        replies = raw.next_frame().payload
        assert replies == bytes([0x90, 3, 0, 1, 1, PINGRESP, 0])  # SUBACK and PINGRESP: one write, one frame
        watcher.publish("raw/hello", b"to raw", qos=0)
        assert raw.next_frame().payload == publish_packet("raw/hello", b"to raw")

        raw.send(b"\x8f\xff garbage, not a frame \x00\x01\x02")
        closing = raw.next_frame()
        assert closing.opcode == CLOSE and int.from_bytes(closing.payload[:2], "big") == 1002
        assert raw.closed()
    finally:
        raw.close()
    # Closed without DISCONNECT: the will goes, as when a TCP connection breaks.
    will = watcher.expect()
    assert (will.topic, will.payload) == ("wills/raw-ws", b"gone")
    assert wait_until(lambda: "malformed WebSocket frame" in gateway.log())

    # MQTT in a text frame is refused (§6) with 1003, and also closes only that connection.
    text = RawWebSocket(port)
    try:
        assert text.upgrade()[0] == 101
        text.send(frame(TEXT, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"))
        closing = text.next_frame()
        assert closing.opcode == CLOSE and int.from_bytes(closing.payload[:2], "big") == 1003
        assert text.closed()
    finally:
        text.close()

    watcher.publish("wills/still", b"here", qos=1)
    assert watcher.expect().payload == b"here"


def test_anything_but_an_mqtt_upgrade_gets_a_4xx_and_a_log_line(
    gateway_factory: GatewayFactory, clients: list[Client]
) -> None:
    gateway = gateway_factory('[mqtt]\nws_path = "/live"\nconnect_timeout = 2.0\n', extra_args=WS)
    port = gateway.endpoints["mqtt-ws"]
    # connect_timeout covers the HTTP handshake: a request that never ends does not hold a connection for ever.
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    silent.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n")
    status, body = http_get(f"http://127.0.0.1:{port}/live")  # a browser's address bar
    assert 400 <= status < 500 and b"/live" in body
    assert wait_until(lambda: "not a WebSocket" in gateway.log())

    wrong_path = RawWebSocket(port)
    try:
        assert wrong_path.upgrade("/mqtt")[0] == 404
        assert wrong_path.closed()
    finally:
        wrong_path.close()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as tcp:
        tcp.sendall(connect_packet("lost-tcp-client"))  # MQTT straight to the WebSocket port
        assert tcp.recv(64).startswith(b"HTTP/1.1 400")

    browser = ws_client(gateway, "ws-custom-path", clients, path="/live")
    browser.subscribe("p/#")
    browser.publish("p/1", b"ok")
    assert browser.expect().payload == b"ok"

    with silent:
        assert silent.recv(64) == b""  # closed by the gateway, without an answer


def test_mqttjs_subscribes_publishes_and_gets_live_messages(
    gateway_factory: GatewayFactory, clients: list[Client]
) -> None:
    gateway = gateway_factory(extra_args=WS)
    url = f"ws://127.0.0.1:{gateway.endpoints['mqtt-ws']}/mqtt"
    sensor = tcp_client(gateway, "tcp-sensor", clients)
    sensor.publish("farm/retained", b"last", qos=1, retain=True)
    sensor.subscribe("from-js/#", qos=1)

    rows = [["js.humidity", T0, 55.5]]
    js = mqttjs(
        url,
        clientId="mqttjs-dashboard",
        protocolVersion=5,
        subscribe=["farm/#"],
        publish=[["from-js/hello", "hi from MQTT.js", 1, False], ["db/append/JS", json.dumps(rows), 1, False]],
        expect=2,
    )
    try:
        assert next_line(js) == {"connected": {"sessionPresent": False, "reasonCode": 0}}
        # The retained message may come before MQTT.js has told of its SUBACK, which came in the same read.
        lines = [next_line(js)]
        while "subscribed" not in lines[-1]:
            lines.append(next_line(js))
        assert lines[-1] == {"subscribed": [{"topic": "farm/#", "qos": 1}]}
        sensor.publish("farm/live", b"from tcp", qos=1)
        lines += rest_of(js)
    finally:
        js.kill()
    messages = [line["message"] for line in lines if "message" in line]
    assert messages == [
        {"topic": "farm/retained", "payload": "last", "qos": 1, "retain": True},
        {"topic": "farm/live", "payload": "from tcp", "qos": 1, "retain": False},
    ]
    published = [line["published"] for line in lines if "published" in line]
    assert published == [{"topic": "from-js/hello", "reasonCode": 0}, {"topic": "db/append/JS", "reasonCode": 0}]
    got = sensor.expect()
    assert (got.topic, got.payload, got.qos) == ("from-js/hello", b"hi from MQTT.js", 1)
    assert query(gateway, "select name, time, value from js") == rows

    # MQTT 3.1.1 from MQTT.js as well.
    old = mqttjs(url, clientId="mqttjs-311", protocolVersion=4, subscribe=["farm/retained"], expect=1)
    lines = rest_of(old)
    assert [line["message"]["payload"] for line in lines if "message" in line] == ["last"]


def test_a_stopping_gateway_closes_websocket_clients_cleanly(
    gateway_factory: GatewayFactory, clients: list[Client]
) -> None:
    gateway = gateway_factory(extra_args=WS)
    browser = ws_client(gateway, "ws-at-shutdown", clients, v5=True)
    browser.subscribe("x/#", qos=1)
    raw = RawWebSocket(gateway.endpoints["mqtt-ws"])
    try:
        raw.upgrade()  # a handshake and no CONNECT: shut down all the same
        assert gateway.stop() == 0
        assert code(browser.disconnects.get(timeout=10)) == 0x8B  # server shutting down
        closing = raw.next_frame()
        assert closing.opcode == CLOSE
        assert raw.closed()
    finally:
        raw.close()
