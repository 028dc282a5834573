"""What the page tests publish, as a small garden would: three hours of history for a few series (so that sparklines
and the history chart have a shape), readings that land while a view is open, an MQTT-SN probe that goes to sleep
between reports, and a payload the gateway refuses."""

from __future__ import annotations

import json
import math
import time

from gateway.mqttsn import codec
from gateway.mqttsn.codec import ReturnCode
from tests.conftest import Client
from tests.system.test_mqttsn import SnClient

MINUTE_NS = 60_000_000_000
HISTORY_MINUTES = 180
BAD_PAYLOAD = '[["garden-1.temperature", 1700000000000000000, "warm"]]'


def history(now_ns: int) -> dict[str, list[list[object]]]:
    """Rows [name, time, value] by table: one per minute for SENSORS, every 30 s for POWER."""
    sensors: list[list[object]] = []
    power: list[list[object]] = []
    for k in range(HISTORY_MINUTES, 0, -1):
        t = now_ns - k * MINUTE_NS
        phase = k / 40
        sensors += [
            ["garden-1.temperature", t, round(17.5 + 3.5 * math.sin(phase) + 0.4 * math.sin(k / 3), 2)],
            ["garden-1.humidity", t, round(62 + 9 * math.cos(phase * 0.8), 1)],
            ["garden-1.battery", t, round(3.98 - (HISTORY_MINUTES - k) * 0.0012, 3)],
            ["greenhouse.temperature", t, round(24 + 2.5 * math.sin(phase + 1.2), 2)],
            ["greenhouse.co2", t, round(640 + 120 * math.sin(phase * 1.7) + 15 * math.cos(k), 0)],
        ]
        for half in (0, 1):
            watts = 180 + 70 * math.sin(k / 9) + (900 if 60 < k < 75 else 0) + 20 * half
            power.append(["meter.watts", t + half * MINUTE_NS // 2, round(watts, 1)])
    return {"SENSORS": sensors, "POWER": power}


def publish_history(client: Client) -> int:
    """Publishes the history at QoS 1 (stored when acknowledged); returns the number of readings."""
    count = 0
    for table, rows in history(time.time_ns()).items():
        client.publish(f"db/append/{table}", json.dumps(rows), qos=1)
        count += len(rows)
    return count


def sleepy_probe(port: int, client_id: str = "pond-probe") -> SnClient:
    """An MQTT-SN sensor: connects, reports its water temperature at QoS 1, and goes to sleep for 10 minutes."""
    sn = SnClient(port)
    sn.send(codec.Connect(client_id, 60))
    assert sn.receive() == codec.ConnAck(ReturnCode.ACCEPTED)
    sn.send(codec.Register(0, 1, "db/append/SENSORS"))
    regack = sn.receive()
    assert isinstance(regack, codec.RegAck) and regack.return_code == ReturnCode.ACCEPTED
    reading = json.dumps([f"{client_id}.water_temp", time.time_ns(), 14.25]).encode()
    sn.send(codec.Publish(regack.topic_id, 2, reading, qos=1))
    assert sn.receive() == codec.PubAck(regack.topic_id, 2, ReturnCode.ACCEPTED)
    sn.send(codec.Disconnect(600))
    assert sn.receive() == codec.Disconnect()
    return sn
