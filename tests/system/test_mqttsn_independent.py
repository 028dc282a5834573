"""The MQTT-SN gateway against an MQTT-SN client that is not ours: mqtt_sn_pub and mqtt_sn_sub from PyPI's
mqtt-sn-12 (Marco Ratto's MQTT-SN 1.2 client, tested by its author against EMQX and HiveMQ Edge), run as
programs, as a user would, next to mosquitto_pub."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Gateway, mosquitto_env, wait_until
from tests.system.test_mqttsn import rows

T0 = 1_700_000_000_000_000_000
BIN = Path(sys.executable).parent


def sn_tool(name: str, gateway: Gateway, *args: str) -> list[str]:
    return [str(BIN / name), "-h", "127.0.0.1", "-p", str(gateway.mqttsn_port), "--timeout", "10", *args]


def test_mqtt_sn_pub_stores_at_every_qos_and_with_a_predefined_id(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory('[mqttsn]\npredefined_topics = { 17 = "db/append/SNTOOLPRE" }\n')
    for qos in ("0", "1", "2"):
        reading = json.dumps([f"qos{qos}", T0, int(qos)])
        subprocess.run(
            sn_tool("mqtt_sn_pub", gateway, "-q", qos, "-t", "db/append/SNTOOL", "-m", reading), check=True, timeout=20
        )
    subprocess.run(
        sn_tool("mqtt_sn_pub", gateway, "-q", "-1", "-T", "17", "-m", json.dumps(["oneway", T0, 9])),
        check=True,
        timeout=20,
    )
    # QoS 1 and 2 were acknowledged, so stored; QoS 0 and -1 are read back once the store has them.
    expected = [["qos0", T0, 0.0], ["qos1", T0, 1.0], ["qos2", T0, 2.0]]
    assert wait_until(lambda: rows(gateway, "select name, time, value from sntool") == expected)
    assert wait_until(lambda: rows(gateway, "select name, time, value from sntoolpre") == [["oneway", T0, 9.0]])


def test_mqtt_sn_sub_receives_what_mosquitto_pub_publishes_through_a_wildcard(gateway: Gateway, tmp_path: Path) -> None:
    """The subscriber learns each topic by the gateway's REGISTER (§6.10) and answers REGACK before the PUBLISH.
    It subscribes at QoS 0: this tool sends no PUBACK for a QoS 1 delivery (the gateway then sends it again after
    retry_interval, as §6.13 says), and its -C (message count) option is not implemented, so it is stopped here."""
    received = tmp_path / "received.txt"
    with received.open("w") as out:
        subscriber = subprocess.Popen(sn_tool("mqtt_sn_sub", gateway, "-q", "0", "-t", "alerts/#"), stdout=out)
    try:
        assert wait_until(lambda: "MQTT-SN client mqtt-sn-python" in gateway.log())
        time.sleep(0.5)  # its SUBSCRIBE follows its CONNECT
        for topic, payload, qos in (("alerts/kitchen", "smoke", "1"), ("alerts/garage", "door", "0")):
            command = ["mosquitto_pub", "-p", str(gateway.mqtt_port), "-q", qos, "-t", topic, "-m", payload]
            subprocess.run(command, check=True, timeout=10, env=mosquitto_env())
        assert wait_until(lambda: received.read_text().split() == ["smoke", "door"]), received.read_text()
        assert subscriber.poll() is None  # still connected: nothing it received upset it
    finally:
        subscriber.kill()
        subscriber.wait()


def test_mqtt_sn_pub_going_to_sleep_is_a_sleeping_client(gateway: Gateway) -> None:
    subprocess.run(
        sn_tool("mqtt_sn_pub", gateway, "-c", "-e", "600", "-i", "napper", "-t", "x/y", "-m", "z"),
        check=True,
        timeout=20,
    )
    with urllib.request.urlopen(f"{gateway.http_url}/api/status", timeout=10) as response:
        status = json.loads(response.read())["status"]
    assert (status["mqttsn_clients_connected"], status["mqttsn_clients_asleep"]) == (1, 1)
    assert "MQTT-SN client napper asleep for 600 s" in gateway.log()
