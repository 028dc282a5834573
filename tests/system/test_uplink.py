"""The uplink from the outside: a gateway forwarding to Debian's mosquitto (plain, TLS with a password file) and to
a second gateway as hub, surviving a stopped upstream and a kill -9, and passing commands down.

The upstream's subscriber keeps a persistent session (clean session off, QoS 1), so that what the gateway forwards
while it is not connected waits for it in mosquitto, as it would for a central application.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from gateway.mqttsn import codec
from tests.conftest import Client, Gateway, wait_until
from tests.system.test_mqttsn import SnClient
from tests.uplink.upstream import Subscriber, Upstream, make_client_certificate

GatewayFactory = Callable[..., Gateway]
S = 1_000_000_000
T0 = 1_700_000_000 * S


def get(gateway: Gateway, path: str) -> Any:
    try:
        with urllib.request.urlopen(gateway.http_url + path, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{path}: {exc.code} {exc.read()!r}") from None


def uplink(gateway: Gateway) -> dict[str, Any]:
    status: dict[str, Any] = get(gateway, "/api/uplink")
    return status


def persistent_upstream(tmp_path: Path, **options: Any) -> Upstream:
    """mosquitto keeping sessions across its restarts (saved at SIGTERM)."""
    store = tmp_path / "mosquitto-db"
    store.mkdir()
    return Upstream(tmp_path, extra=f"persistence true\npersistence_location {store}/\n", **options)


def watcher(upstream: Upstream, **options: Any) -> Subscriber:
    """A central application's subscriber to db/append/#, with a session that outlives its connection."""
    return Subscriber(upstream, "#", client_id="central", clean_session=False, **options)


def rows_by_table(messages: list[tuple[str, bytes]]) -> dict[str, list[tuple[str, int, float]]]:
    out: dict[str, list[tuple[str, int, float]]] = {}
    for topic, payload in messages:
        if "/db/append/" in f"/{topic}":
            table = topic.rsplit("/", 1)[1]
            out.setdefault(table, []).extend((name, t, v) for name, t, v in orjson.loads(payload))
    return out


def publish_readings(
    gateway: Gateway, table: str, count: int, *, per_message: int = 10, start: int = 0
) -> list[tuple[str, int, float]]:
    """`count` readings as db/append messages at QoS 1 with mosquitto_pub (one per line), acknowledged = stored.
    Times go down and up, so that arrival order and time order differ."""
    readings = [(f"s{i % 3}", T0 + ((i * 7919) % 100_003) * S, float(i)) for i in range(start, start + count)]
    lines = [json.dumps([list(r) for r in readings[i : i + per_message]]) for i in range(0, count, per_message)]
    subprocess.run(
        ["mosquitto_pub", "-p", str(gateway.mqtt_port), "-t", f"db/append/{table}", "-q", "1", "-l"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=60,
    )
    return readings


def uplink_config(upstream: Upstream, extra: str = "") -> str:
    return f'[mdns]\nenabled = false\nname = "site-a"\n[uplink]\nurl = "{upstream.url}"\n{extra}'


def test_readings_stored_while_the_upstream_is_stopped_arrive_in_order_per_table_once_it_starts(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    upstream = persistent_upstream(tmp_path)
    with upstream:
        watcher(upstream).start().stop()  # the session exists; from now on mosquitto keeps its messages
    gw = gateway_factory(uplink_config(upstream, "batch_size = 100\nmax_delay = 0.2\n"))
    temp = publish_readings(gw, "temp", 600)
    hum = publish_readings(gw, "hum", 250, per_message=1)
    status = uplink(gw)
    assert status["enabled"] and not status["connected"]
    assert "refused" in status["last_error"], status["last_error"]
    assert status["forwarding"]["backlog"] == 850
    assert status["forwarding"]["backlog_by_table"] == {"HUM": 250, "TEMP": 600}
    assert status["forwarding"]["oldest_waiting_seconds"] > 0

    with upstream, watcher(upstream) as central:
        assert wait_until(lambda: uplink(gw)["forwarding"]["backlog"] == 0, timeout=30), uplink(gw)
        assert wait_until(lambda: sum(len(r) for r in rows_by_table(central.messages).values()) >= 850, timeout=10)
        got = rows_by_table(central.messages)
        status = uplink(gw)
    assert got == {"TEMP": temp, "HUM": hum}, "every reading once, in the order each table received them"
    assert status["connected"]
    assert status["forwarding"]["forwarded"] == 850
    assert all(topic.startswith("db/append/") for topic, _ in central.messages)


def test_tls_with_a_throwaway_ca_and_a_password_file(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    upstream = persistent_upstream(
        tmp_path, tls=True, users={"site-a": "s3cret pass", "central": "c"}, allow_anonymous=False
    )
    with upstream:
        watcher(upstream, username="central", password="c").start().stop()
    password_file = tmp_path / "uplink-password"
    password_file.write_text("s3cret pass\n")
    extra = f'username = "site-a"\npassword_file = "{password_file}"\ncafile = "{upstream.ca_file}"\nmax_delay = 0.1\n'
    gw = gateway_factory(uplink_config(upstream, extra))
    readings = publish_readings(gw, "temp", 120)
    with upstream, watcher(upstream, username="central", password="c") as central:
        assert wait_until(lambda: len(rows_by_table(central.messages).get("TEMP", [])) >= 120, timeout=30), uplink(gw)
    assert rows_by_table(central.messages) == {"TEMP": readings}
    assert uplink(gw)["url"].startswith("mqtts://127.0.0.1:")


def test_a_client_certificate_for_brokers_that_require_one(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    with Upstream(tmp_path, tls=True, extra="require_certificate true\n") as upstream:
        assert upstream.ca_file is not None and upstream.ca_key is not None
        cert, key = make_client_certificate(tmp_path, upstream.ca_file, upstream.ca_key, "site-a")
        central = Subscriber(upstream, "db/#", certificate=(cert, key)).start()
        try:
            tls = f'cafile = "{upstream.ca_file}"\nmax_delay = 0.1\n'
            without = gateway_factory(uplink_config(upstream, tls), name="without")
            assert wait_until(lambda: uplink(without)["last_error"] is not None)
            assert not uplink(without)["connected"]
            # TLS 1.3 tells of the refusal after the handshake: the alert, or a reset if it comes first.
            assert re.search("wants a client certificate|lost before CONNACK", uplink(without)["last_error"])
            gw = gateway_factory(uplink_config(upstream, tls + f'certfile = "{cert}"\nkeyfile = "{key}"\n'))
            readings = publish_readings(gw, "temp", 20)
            assert wait_until(lambda: len(rows_by_table(central.messages).get("TEMP", [])) >= 20), uplink(gw)
        finally:
            central.stop()
    assert rows_by_table(central.messages) == {"TEMP": readings}


def test_wrong_credentials_show_in_the_status_and_local_ingest_goes_on(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    with Upstream(tmp_path, users={"site-a": "right"}, allow_anonymous=False) as upstream:
        url = upstream.url.replace("mqtt://", "mqtt://site-a:wrong@")
        gw = gateway_factory(f'[mdns]\nenabled = false\n[uplink]\nurl = "{url}"\n')
        assert wait_until(lambda: uplink(gw)["last_error"] is not None)
        status = uplink(gw)
        assert "not authorized" in status["last_error"] and "check the user name and password" in status["last_error"]
        assert not status["connected"]
        assert "wrong" not in status["url"], "the password is never shown"
        publish_readings(gw, "temp", 300)
        assert get(gw, "/db/query?q=" + quote("select count(*) from temp"))["data"]["rows"] == [[300]]
        assert uplink(gw)["forwarding"]["backlog"] == 300
    assert gw.log().count("not authorized") == 1, "logged once per change, not at every retry"


def test_kill_9_in_the_middle_of_a_backlog_loses_nothing(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    upstream = persistent_upstream(tmp_path)
    with upstream:
        watcher(upstream).start().stop()
    # Slow forwarding (a rate limit), so that the kill comes with most of the backlog still to go.
    gw = gateway_factory(uplink_config(upstream, "batch_size = 50\nmax_rate = 1000\nmax_delay = 0.1\n"))
    readings = publish_readings(gw, "temp", 4000, per_message=20)
    with upstream, watcher(upstream) as central:
        assert wait_until(lambda: uplink(gw)["forwarding"]["forwarded"] > 500, timeout=30)
        gw.kill()
        before = len(rows_by_table(central.messages).get("TEMP", []))
        assert before < 4000
        gw.start()
        assert wait_until(lambda: len(rows_by_table(central.messages).get("TEMP", [])) >= 4000, timeout=60), uplink(gw)
        assert wait_until(lambda: uplink(gw)["forwarding"]["backlog"] == 0, timeout=30)
        time.sleep(0.5)
        got = rows_by_table(central.messages)["TEMP"]
    counts = Counter(got)
    assert set(counts) == set(readings), "every reading arrived at least once"
    duplicates = sum(n - 1 for n in counts.values())
    print(f"kill -9 after {before} of 4000 readings: {duplicates} duplicates sent again after the restart")
    assert duplicates <= 1200, "at most about a second of forwarding (plus the window) goes again"
    first: dict[tuple[str, int, float], int] = {}
    for index, reading in enumerate(got):
        first.setdefault(reading, index)
    assert sorted(first, key=first.__getitem__) == readings, "first arrivals keep the order of arrival"


def test_a_second_gateway_as_hub_stores_exactly_the_site_readings(gateway_factory: GatewayFactory) -> None:
    hub = gateway_factory("[mdns]\nenabled = false\n", name="hub")
    site = gateway_factory(
        f'[mdns]\nenabled = false\n[uplink]\nurl = "mqtt://127.0.0.1:{hub.mqtt_port}"\ncompress = "gzip"\n'
        "max_delay = 0.1\n",
        name="site",
    )
    publish_readings(site, "temp", 500)
    publish_readings(site, "hum", 40, per_message=1)
    hub.stop()
    publish_readings(site, "temp", 300, start=500)  # while the hub is down: waits in the site's store
    publish_readings(site, "temp", 100, start=200)  # readings sent twice to the site: still one row each
    hub.start(mqtt_port=hub.mqtt_port)

    def rows(gateway: Gateway, table: str) -> list[list[Any]]:
        sql = f"select name, time, value from {table} order by name, time"
        result: list[list[Any]] = get(gateway, "/db/query?timeformat=ns&q=" + quote(sql))["data"]["rows"]
        return result

    assert wait_until(lambda: uplink(site)["forwarding"]["backlog"] == 0, timeout=30), uplink(site)

    def same(table: str) -> bool:
        return rows(hub, table) == rows(site, table)

    for table in ("temp", "hum"):
        assert wait_until(partial(same, table), timeout=10), table
    assert len(rows(hub, "temp")) == 800 and len(rows(hub, "hum")) == 40


def test_commands_from_upstream_reach_a_local_subscriber_and_a_sleeping_mqttsn_client(
    gateway_factory: GatewayFactory, tmp_path: Path, clients: list[Client]
) -> None:
    with Upstream(tmp_path) as upstream:
        gw = gateway_factory(uplink_config(upstream, 'topic_prefix = "fleet/"\n'))
        assert wait_until(lambda: uplink(gw)["connected"])
        assert uplink(gw)["command_topic"] == "fleet/cmd/site-a/#"
        local = Client(gw.mqtt_port, "actuator")
        clients.append(local)
        local.subscribe("cmd/#", 1)
        sleeper = SnClient(gw.mqttsn_port)
        try:
            sleeper.connect("valve", clean_session=False)
            sleeper.send(codec.Subscribe(1, "cmd/valve/#", qos=1))
            assert isinstance(sleeper.receive(), codec.SubAck)
            sleeper.send(codec.Disconnect(600))  # asleep for up to ten minutes
            assert sleeper.receive() == codec.Disconnect()
            assert wait_until(lambda: uplink(gw)["connected"])
            upstream.publish("fleet/cmd/site-a/valve/open", b"30", qos=1)
            upstream.publish("fleet/cmd/other-site/valve/open", b"never", qos=1)
            message = local.expect()
            assert (message.topic, message.payload) == ("cmd/valve/open", b"30")
            local.expect_none(0.5)
            assert sleeper.nothing(0.3), "asleep: it gets the command when it wakes"
            sleeper.send(codec.PingReq("valve"))
            register = sleeper.receive()
            assert isinstance(register, codec.Register) and register.topic_name == "cmd/valve/open"
            sleeper.send(codec.RegAck(register.topic_id, register.msg_id, codec.ReturnCode.ACCEPTED))
            publish = sleeper.receive()
            assert isinstance(publish, codec.Publish) and publish.data == b"30"
        finally:
            sleeper.close()
        assert uplink(gw)["commands_received"] == 1


@pytest.mark.parametrize("version", ["3.1.1", "5"])
def test_commands_sent_while_the_gateway_is_away_wait_upstream_for_it(
    gateway_factory: GatewayFactory, tmp_path: Path, clients: list[Client], version: str
) -> None:
    with Upstream(tmp_path) as upstream:
        gw = gateway_factory(uplink_config(upstream, f'version = "{version}"\n'))
        assert wait_until(lambda: uplink(gw)["connected"])
        actuator = Client(gw.mqtt_port, "actuator", clean=False)
        clients.append(actuator)
        actuator.subscribe("cmd/#", 1)
        actuator.close()
        gw.stop()
        upstream.publish("cmd/site-a/pump/speed", b"3", qos=1)  # the gateway's session at the upstream keeps it
        gw.start()
        back = Client(gw.mqtt_port, "actuator", clean=False)
        clients.append(back)
        message = back.expect(timeout=20)
        assert (message.topic, message.payload) == ("cmd/pump/speed", b"3")


def test_mqtt5_refusals_are_counted_per_table_and_the_rest_goes_on(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    acl = "topic write db/append/TEMP\ntopic read #\n"
    with Upstream(tmp_path, acl=acl) as upstream, Subscriber(upstream, "db/#") as central:
        gw = gateway_factory(uplink_config(upstream, 'version = "5"\nmax_delay = 0.1\n'))
        readings = publish_readings(gw, "temp", 30)
        publish_readings(gw, "secret", 20)
        assert wait_until(lambda: uplink(gw)["forwarding"]["backlog"] == 0, timeout=20), uplink(gw)
        assert wait_until(lambda: len(rows_by_table(central.messages).get("TEMP", [])) == 30)
    status = uplink(gw)["forwarding"]
    assert status["refused_by_table"] == {"SECRET": 20}
    assert status["forwarded"] == 30
    assert rows_by_table(central.messages) == {"TEMP": readings}
    assert len(re.findall(r"refused \d+ readings of table SECRET", gw.log())) == 1, "logged once, then counted"


def test_bridged_topics_go_up_under_the_prefix_also_after_the_upstream_was_away(
    gateway_factory: GatewayFactory, tmp_path: Path, clients: list[Client]
) -> None:
    upstream = persistent_upstream(tmp_path)
    with upstream:
        watcher(upstream).start().stop()
    gw = gateway_factory(uplink_config(upstream, 'topic_prefix = "site-a/"\nbridge = ["alerts/#"]\n'))
    device = Client(gw.mqtt_port, "device")
    clients.append(device)
    device.publish("alerts/door", b"open", qos=1)
    device.publish("other/topic", b"not bridged", qos=1)
    with upstream, watcher(upstream) as central:
        device.publish("alerts/smoke", b"yes", qos=1)
        assert wait_until(lambda: len(central.messages) >= 2, timeout=20), uplink(gw)
        time.sleep(0.3)
    assert sorted(central.messages) == [("site-a/alerts/door", b"open"), ("site-a/alerts/smoke", b"yes")]
    assert uplink(gw)["bridge"]["sent"] == 2
    with urllib.request.urlopen(gw.http_url + "/metrics", timeout=10) as response:
        assert "\ngateway_uplink_bridge_sent_total 2\n" in response.read().decode()


@pytest.mark.parametrize("url", ["http://hub", "mqtt://"])
def test_a_bad_uplink_url_on_the_command_line_is_refused_with_the_form(url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path), "--uplink", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "mqtt://[user[:password]@]host[:port]" in result.stderr
