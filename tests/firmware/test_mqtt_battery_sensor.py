"""firmware-samples/mqtt-battery-sensor under CPython against a running gateway: the sample's main.py with the
board shims and the real umqtt.simple, through deep sleeps (one process per wake). It finds the gateway by mDNS
(the firmware's `.local` resolution, or its own DNS-SD query answered by a python-zeroconf responder), publishes at
QoS 1, and its readings are read back over HTTP; with the gateway down it keeps them in flash and later delivers
them all in one db/append batch.

Multicast on loopback needs a network namespace of the test's own (tests/netns.py), and so root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Client, Gateway, wait_until
from tests.firmware.board import Board, query
from tests.firmware.responder import Responder
from tests.netns import LOOPBACK_MULTICAST, in_new_network_namespace

SAMPLE = "mqtt-battery-sensor"
# What the shims' BME280 and ADC give (tests/firmware/shims/machine.py): the BMP280 datasheet's worked example.
EXPECTED = {"battery": 3.9, "temperature": 25.08, "pressure": 1006.53}


def config(**extra: Any) -> dict[str, Any]:
    return {
        "DEVICE": "garden-1",
        "BOOT_DELAY_S": 0,
        "GATEWAY_NAME": "gw-test",
        "MQTT_PORT": 1,  # nothing listens there: the port must come from discovery unless a test sets it
        "TABLE": "GARDEN",
        "DISCOVERY_TIMEOUT_MS": 1000,
        "ACK_TIMEOUT_S": 3,
        "NTP_HOST": "ntp.test",
        **extra,
    }


def readings(gateway: Gateway) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name, value in query(gateway, "select name, value from garden"):
        out.setdefault(name, []).append(value)
    return out


def check_values(series: dict[str, list[float]], count: int) -> None:
    assert sorted(series) == ["garden-1.battery", "garden-1.humidity", "garden-1.pressure", "garden-1.temperature"]
    for name, values in series.items():
        assert len(values) == count, (name, values)
        field = name.split(".")[1]
        if field in EXPECTED:
            assert values == [EXPECTED[field]] * count, (name, values)
        else:
            assert all(20 < v < 80 for v in values), (name, values)


def test_found_by_dns_sd_publishes_and_remembers_the_gateway(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    def body() -> None:
        gateway = gateway_factory()
        board = Board(tmp_path, SAMPLE, config(), umqtt=True)
        with Responder("gw-test", gateway.mqtt_port):
            first = board.wake()
        assert "by DNS-SD: gw-test._mqtt._tcp.local" in first.output, first
        assert first.sleep_ms is not None and 290_000 < first.sleep_ms <= 300_000, first
        check_values(readings(gateway), 1)
        assert board.rtc_state()["gw"] == ["127.0.0.1", gateway.mqtt_port, "db/append/"]

        # The responder is gone: the next wake goes straight to the address kept in RTC memory.
        second = board.wake()
        assert "by DNS-SD" not in second.output, second
        check_values(readings(gateway), 2)
        assert board.spool() == []

    in_new_network_namespace(body, LOOPBACK_MULTICAST)


def test_found_by_its_local_name_on_a_pico_w(gateway_factory: Callable[..., Gateway], tmp_path: Path) -> None:
    """The firmware resolves <name>.local itself (a real mDNS A query); the SRV record's port is wrong on purpose:
    this path uses MQTT_PORT. On the Pico W, which has no RTC memory, the address is kept in a flash file."""

    def body() -> None:
        gateway = gateway_factory()
        board = Board(tmp_path, SAMPLE, config(MQTT_PORT=gateway.mqtt_port), board="rp2", umqtt=True)
        with Responder("gw-test", 1):
            boot = board.wake(FIRMWARE_NATIVE_MDNS="1")
        assert "by its .local name" in boot.output, boot
        check_values(readings(gateway), 1)
        assert not (board.flash / ".rtc-memory").exists()
        assert board.rtc_state()["gw"] == ["127.0.0.1", gateway.mqtt_port, "db/append/"]

    in_new_network_namespace(body, LOOPBACK_MULTICAST)


def test_readings_wait_in_flash_while_the_gateway_is_down_then_go_in_one_batch(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    """The gateway stops; the node keeps its readings in flash, backs off (wakes without the radio), and finds the
    gateway again when it comes back on another port (the remembered address fails: DNS-SD again). Everything
    arrives, in one db/append message."""

    def body() -> None:
        gateway = gateway_factory()
        board = Board(tmp_path, SAMPLE, config(), umqtt=True)
        with Responder("gw-test", gateway.mqtt_port) as responder:
            board.wake()
            gateway.stop()

            wakes = [board.wake() for _ in range(4)]
            assert "the remembered gateway" in wakes[0].output, wakes[0]
            assert "undelivered: 4 readings" in wakes[0].output and "undelivered: 8 readings" in wakes[1].output
            assert "radio off" in wakes[2].output and "connect" not in wakes[2].output, wakes[2]  # backing off
            assert "undelivered: 16 readings" in wakes[3].output, wakes[3]
            assert len(board.spool()) == 4 * 4

            gateway.start()  # another port
            responder.move(gateway.mqtt_port)
            watcher = Client(gateway.mqtt_port, "watcher")
            watcher.subscribe("db/append/GARDEN", 1)
            try:
                boots = 0
                while board.spool() or boots == 0:
                    boots += 1
                    assert boots <= 8, "the readings in flash were never delivered"
                    board.wake()
                batches = []
                while not watcher.messages.empty():
                    batches.append(watcher.expect().payload)
            finally:
                watcher.close()
        total = 1 + 4 + boots
        check_values(readings(gateway), total)
        # The wakes that only spooled put nothing on the air; the one that delivered sent everything at once.
        assert len(batches) == 1, batches
        assert batches[0].count(b'"garden-1.battery"') == total - 1
        assert board.rtc_state()["fails"] == 0

    in_new_network_namespace(body, LOOPBACK_MULTICAST)


def test_finds_the_gateways_own_mdns_advertisement(gateway_factory: Callable[..., Gateway], tmp_path: Path) -> None:
    """No stand-in responder: the gateway advertises itself ([mdns], gateway/discovery) and the sample finds it by
    DNS-SD, port and ingest prefix from its SRV and TXT records."""

    def body() -> None:
        gateway = gateway_factory('[mdns]\nname = "gw-real"\n')
        board = Board(tmp_path, SAMPLE, config(GATEWAY_NAME="gw-real"), umqtt=True)
        # It advertises once it has probed that nobody else holds the name (RFC 6762 §8.1).
        assert wait_until(lambda: "mDNS: advertising gw-real.local" in gateway.log()), gateway.log()
        boot = board.wake()
        assert "by DNS-SD: gw-real._mqtt._tcp.local" in boot.output, f"{boot}\n{gateway.log()}"
        check_values(readings(gateway), 1)

    in_new_network_namespace(body, LOOPBACK_MULTICAST)
