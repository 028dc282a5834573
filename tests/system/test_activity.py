"""/api/devices and /api/errors on a running gateway: MQTT, MQTT-SN and HTTP clients as the web page sees them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode
from tests.conftest import Client, Gateway, wait_until
from tests.system.test_mqttsn import SnClient

T0 = 1_700_000_000_000_000_000


def get(gateway: Gateway, path: str) -> Any:
    with urllib.request.urlopen(f"{gateway.http_url}{path}", timeout=10) as response:
        return json.loads(response.read())


def post(gateway: Gateway, path: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"{gateway.http_url}{path}", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def devices_by_id(gateway: Gateway) -> dict[str, Any]:
    return {device["client_id"]: device for device in get(gateway, "/api/devices")["devices"]}


def test_devices_of_every_protocol_with_their_state_battery_and_refusals(
    gateway_factory: Any, clients: list[Client]
) -> None:
    gateway = gateway_factory('[http]\ntoken = "secret"\n')
    paho = Client(gateway.mqtt_port, "garden-1")
    clients.append(paho)
    paho.publish("db/append/SENSORS", json.dumps([["garden-1.battery", T0, 3.71], ["garden-1.temp", T0, 20.5]]), 1)
    paho.publish("db/append/SENSORS", b'[["garden-1.temp", 1, "warm"]]', 1)  # refused: a value must be a number
    sn = SnClient(gateway.mqttsn_port)
    try:
        sn.connect("balcony-1")
        regack = sn.register("db/append/SENSORS")
        sn.send(codec.Publish(regack.topic_id, 2, json.dumps(["balcony-1.temp", T0, 18.0]).encode(), qos=1))
        assert sn.receive() == codec.PubAck(regack.topic_id, 2, ReturnCode.ACCEPTED)
        sn.send(codec.Disconnect(600))
        assert sn.receive() == codec.Disconnect()
    finally:
        sn.close()
    assert post(gateway, "/db/write/SENSORS", b"not json") == 401  # no token: refused before it is read
    devices = devices_by_id(gateway)
    mqtt, mqttsn = devices["garden-1"], devices["balcony-1"]
    assert (mqtt["protocol"], mqtt["state"], mqtt["messages"]) == ("mqtt", "connected", 2)
    assert mqtt["address"].startswith("127.0.0.1:")
    assert mqtt["battery"] == {"table": "SENSORS", "series": "garden-1.battery", "value": 3.71, "time": T0}
    assert (mqttsn["protocol"], mqttsn["state"], mqttsn["messages"], mqttsn["battery"]) == (
        "mqtt-sn",
        "asleep",
        1,
        None,
    )
    assert mqttsn["last_topic"] == "db/append/SENSORS"
    errors = get(gateway, "/api/errors")
    assert errors["total"] == 1
    [refusal] = errors["errors"]
    assert (refusal["client_id"], refusal["protocol"], refusal["topic"]) == ("garden-1", "mqtt", "db/append/SENSORS")
    assert "warm" in refusal["reason"] or "number" in refusal["reason"]
    paho.close()
    assert wait_until(lambda: devices_by_id(gateway)["garden-1"]["state"] == "gone")
    assert list(devices_by_id(gateway)) == ["balcony-1", "garden-1"]  # asleep before gone


def test_an_http_writer_is_a_device_named_by_its_address_and_its_bad_body_an_error(gateway_factory: Any) -> None:
    gateway = gateway_factory('[http]\ntoken = "secret"\n')
    url = "/db/write/HTTPDEV?token=secret"
    assert post(gateway, url, json.dumps([["h", T0, 1]]).encode()) == 200
    assert post(gateway, url, b'[["h", 1, "x"]]') == 400
    devices = devices_by_id(gateway)
    device = devices["http 127.0.0.1"]
    assert (device["protocol"], device["messages"], device["last_topic"]) == ("http", 2, "db/write/HTTPDEV")
    [refusal] = get(gateway, "/api/errors")["errors"]
    assert (refusal["client_id"], refusal["protocol"]) == ("http 127.0.0.1", "http")


def test_status_names_the_gateway_and_its_listeners_with_their_real_ports(gateway_factory: Any) -> None:
    gateway = gateway_factory('[mdns]\nname = "barn"\n')
    status = get(gateway, "/api/status")
    assert status["name"] == "barn"  # also where mDNS advertises nothing (loopback here)
    listeners = {item["name"]: item for item in status["listeners"]}
    assert listeners["mqtt"] == {"name": "mqtt", "host": "127.0.0.1", "port": gateway.mqtt_port}
    assert listeners["mqtt-sn"]["port"] == gateway.mqttsn_port
    assert listeners["http"]["port"] == int(gateway.http_url.rsplit(":", 1)[1])
