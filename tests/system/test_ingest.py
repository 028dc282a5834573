"""Ingest over MQTT into the store, seen from outside: independent clients publish, the store is read back."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import Client, Gateway, mosquitto_env, stored_readings

S = 1_000_000_000


def test_mosquitto_pub_and_paho_readings_land_in_the_store(gateway: Gateway, clients: list[Client]) -> None:
    port = str(gateway.mqtt_port)
    subprocess.run(
        [
            "mosquitto_pub",
            "-p",
            port,
            "-q",
            "1",
            "-t",
            "db/append/EXAMPLE",
            "-m",
            '["temperature", 1700000000000000000, 21.5]',
        ],
        check=True,
        timeout=10,
        env=mosquitto_env(),
    )
    pub = Client(gateway.mqtt_port, "paho-sensor", v5=True)
    clients.append(pub)
    pub.publish("db/append/example:csv", b"name,time,value\nhumidity,1700000000000000000,40\n", 1)
    pub.publish("sensors/kitchen", json.dumps({"temp": 20.5, "ts": 1700000000000000000}).encode(), 1)
    pub.close()
    gateway.stop()
    data = stored_readings(gateway.data_dir)
    assert data[("EXAMPLE", "temperature")] == [(1700000000000000000, 21.5)]
    assert data[("EXAMPLE", "humidity")] == [(1700000000000000000, 40.0)]
    assert data[("SENSORS", "kitchen.temp")] == [(1700000000000000000, 20.5)]


def test_a_bad_row_stores_nothing_and_is_reported(gateway: Gateway, clients: list[Client]) -> None:
    """The whole message is refused: an MQTT 5 publisher gets PUBACK 0x99 with the reason; a 3.1.1 one its PUBACK,
    and both get the row and reason on db/reply/<client id>; the connection stays open."""
    watcher = Client(gateway.mqtt_port, "watcher")
    clients.append(watcher)
    watcher.subscribe("db/reply/#", 1)
    v5 = Client(gateway.mqtt_port, "v5-sensor", v5=True)
    v3 = Client(gateway.mqtt_port, "v3-sensor")
    clients.extend([v5, v3])
    bad = b'[["good", 1700000000000000000, 1.0], ["bad", 1700000000000000000, "warm"]]'
    info = v5.publish("db/append/EXAMPLE", bad, 1)
    mid, rc, props = v5.acks.get(timeout=10)
    assert mid == info.mid and rc == 0x99 and "row 2" in props.ReasonString
    v3.publish("db/append/EXAMPLE", bad, 1)
    reports = {}
    for _ in range(2):
        message = watcher.expect()
        reports[message.topic] = json.loads(message.payload)
    assert set(reports) == {"db/reply/v5-sensor", "db/reply/v3-sensor"}
    for report in reports.values():
        assert report["success"] is False and report["row"] == 2 and "warm" in report["reason"]
    v3.publish("db/append/EXAMPLE", b'[["ok", 1700000000000000000, 2.0]]', 1)
    assert v3.paho.is_connected() and v5.paho.is_connected()
    for client in (v5, v3):
        client.close()
    gateway.stop()
    data = stored_readings(gateway.data_dir)
    assert ("EXAMPLE", "good") not in data and ("EXAMPLE", "bad") not in data
    assert data[("EXAMPLE", "ok")] == [(1700000000000000000, 2.0)]
    assert "row 2" in gateway.log()


def test_every_acknowledged_reading_survives_a_kill_9(gateway: Gateway) -> None:
    """The power-cut test: several clients publish QoS 1 readings and count their PUBACKs; the gateway is killed
    with -9 mid-stream; after a restart every acknowledged reading is in the store."""
    published: dict[str, list[tuple[paho.MQTTMessageInfo, int]]] = {}
    acks = [0]
    stop = threading.Event()

    def sensor(client_id: str) -> None:
        infos: list[tuple[paho.MQTTMessageInfo, int]] = []
        published[client_id] = infos
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        client.on_publish = lambda *_args: acks.__setitem__(0, acks[0] + 1)
        client.connect("127.0.0.1", gateway.mqtt_port)
        client.loop_start()
        for i in range(100_000):
            if stop.is_set():
                break
            t = S * 1_700_000_000 + i
            infos.append((client.publish("db/append/POWERCUT", json.dumps([client_id, t, float(i)]), 1), t))
            if i % 50 == 0:
                time.sleep(0.002)
        client.loop_stop()

    threads = [threading.Thread(target=sensor, args=(f"sensor-{n}",), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while acks[0] < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    gateway.kill()
    stop.set()
    for thread in threads:
        thread.join(10)
    expected = {client_id: {t for info, t in infos if info.is_published()} for client_id, infos in published.items()}
    assert sum(len(t) for t in expected.values()) >= 2000, "too few readings acknowledged before the kill"
    gateway.start(mqtt_port=gateway.mqtt_port)
    gateway.stop()
    data = stored_readings(gateway.data_dir)
    for client_id, times in expected.items():
        present = {t for t, _v in data.get(("POWERCUT", client_id), [])}
        missing = times - present
        assert not missing, f"{client_id}: {len(missing)} acknowledged readings lost, e.g. {sorted(missing)[:3]}"


def test_a_nearly_full_disk_refuses_readings_so_that_clients_keep_them(
    gateway_factory: Callable[..., Gateway], clients: list[Client]
) -> None:
    """Below [store] min_free_bytes nothing is written: an MQTT 5 publisher gets 0x97 (quota exceeded) with the
    reason, and a 3.1.1 publisher is disconnected without a PUBACK, so that it keeps the reading and resends."""
    gateway = gateway_factory("[store]\nmin_free_bytes = 1152921504606846976\n")  # 1 EiB: more than any disk
    v5 = Client(gateway.mqtt_port, "v5-full", v5=True)
    clients.append(v5)
    info = v5.publish("db/append/FULL", b'["a", 1700000000000000000, 1.0]', 1)
    mid, rc, props = v5.acks.get(timeout=10)
    assert mid == info.mid and rc == 0x97 and "nearly full" in props.ReasonString
    v3 = Client(gateway.mqtt_port, "v3-full")
    clients.append(v3)
    unacked = v3.publish("db/append/FULL", b'["a", 1700000000000000000, 1.0]', 1, wait=False)
    v3.disconnects.get(timeout=10)
    assert not unacked.is_published()
    assert "nearly full" in gateway.log()


def test_time_formats_from_topic_options_and_user_properties(gateway: Gateway, clients: list[Client]) -> None:
    """MQTT 3.1.1 clients (mosquitto_pub) name the time unit and zone after '?' in the topic; MQTT 5 clients may
    use user properties, which win over the topic."""
    publishes = [
        ("db/append/TF?timeformat=s", '["s", 1700000000, 1]'),
        ("db/append/TF?timeformat=ms", '["ms", 1700000000123, 2]'),
        ("db/append/TF:csv?timeformat=default&tz=Europe/Berlin", "berlin,2023-11-14 23:13:20,3"),
        ("db/append/TF?timeformat=rfc3339", '["rfc", "2023-11-14T22:13:20.5Z", 4]'),
    ]
    for topic, payload in publishes:
        subprocess.run(
            ["mosquitto_pub", "-p", str(gateway.mqtt_port), "-q", "1", "-t", topic, "-m", payload],
            check=True,
            timeout=10,
            env=mosquitto_env(),
        )
    v5 = Client(gateway.mqtt_port, "v5-times", v5=True)
    clients.append(v5)
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("timeformat", "us")]
    v5.publish("db/append/TF?timeformat=s", b'["us", 1700000000000001, 5]', 1, properties=properties)
    v5.close()
    gateway.stop()
    data = stored_readings(gateway.data_dir)
    t = 1_700_000_000 * S
    assert {name: readings for (table, name), readings in data.items() if table == "TF"} == {
        "s": [(t, 1.0)],
        "ms": [(t + 123_000_000, 2.0)],
        "berlin": [(t, 3.0)],
        "rfc": [(t + S // 2, 4.0)],
        "us": [(t + 1000, 5.0)],
    }


def test_queries_over_mqtt_are_answered_on_the_reply_topic(gateway: Gateway, clients: list[Client]) -> None:
    """machbase-neo's db/query: the answer goes to the request's `reply`, else the MQTT 5 Response Topic (with
    the Correlation Data), else db/reply; a query that cannot be answered gets success false and the reason."""
    v3 = Client(gateway.mqtt_port, "v3-asker")
    v5 = Client(gateway.mqtt_port, "v5-asker", v5=True)
    clients.extend([v3, v5])
    v3.publish("db/append/Q", json.dumps([["temp", 1700000000000000000 + i * S, 20.0 + i] for i in range(3)]), 1)
    v3.subscribe("db/reply/#", 1)
    v3.subscribe("db/reply", 1)
    question = {"q": "select name, time, value from q order by time desc limit 2", "reply": "db/reply/mine"}
    v3.publish("db/query", json.dumps(question), 1)
    answer = v3.expect()
    assert answer.topic == "db/reply/mine" and answer.qos == 1
    body = json.loads(answer.payload)
    assert body["success"] is True and body["data"]["columns"] == ["NAME", "TIME", "VALUE"]
    assert body["data"]["rows"] == [
        ["temp", 1700000000000000000 + 2 * S, 22.0],
        ["temp", 1700000000000000000 + S, 21.0],
    ]
    v3.publish("db/query", json.dumps({"q": "select count(*) from q", "format": "csv"}), 1)
    answer = v3.expect()
    assert (answer.topic, answer.payload) == ("db/reply", b"COUNT(*)\n3\n")
    for bad, reason in [
        (b"select * from q", "the query is not JSON"),
        (b'{"sql": "select * from q"}', "the query has no SQL"),
        (b"null", "the query has no SQL"),
        (b'{"q": "drop table q"}', "only SELECT is answered over MQTT"),
        (b'{"q": "select * from nowhere"}', "no table NOWHERE"),
        (b'{"q": "select * from q", "format": "xml"}', "unknown format 'xml'"),
    ]:
        v3.publish("db/query", bad, 1)
        answer = v3.expect()
        body = json.loads(answer.payload)
        assert answer.topic == "db/reply" and body["success"] is False and reason in body["reason"], (bad, body)
    assert v3.paho.is_connected()

    v5.subscribe("answers/v5", 1)
    properties = Properties(PacketTypes.PUBLISH)
    properties.ResponseTopic = "answers/v5"
    properties.CorrelationData = b"ask-1"
    v5.publish("db/query", json.dumps({"q": "select max(value) from q"}), 1, properties=properties)
    answer = v5.expect()
    assert answer.topic == "answers/v5" and getattr(answer.properties, "CorrelationData", None) == b"ask-1"
    assert json.loads(answer.payload)["data"]["rows"] == [[22.0]]
