"""firmware-samples/mqttsn-udp-sensor under CPython against a running gateway, through deep sleeps (one process
per wake): it finds the gateway with SEARCHGW (GWINFO), publishes at QoS 1 as a sleeping client, and collects at its
next wake (PINGREQ) a command that a paho-mqtt client published while it slept; in the QoS -1 mode its readings go
to a pre-defined topic id. The readings are read back over HTTP.

SEARCHGW goes to the multicast group: a network namespace of the test's own (tests/netns.py), so root."""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Client, Gateway, wait_until
from tests.firmware.board import Board, query
from tests.netns import LOOPBACK_MULTICAST, in_new_network_namespace

SAMPLE = "mqttsn-udp-sensor"
SERIES = ["balcony-1.battery", "balcony-1.humidity", "balcony-1.pressure", "balcony-1.temperature"]


def config(**extra: Any) -> dict[str, Any]:
    return {
        "DEVICE": "balcony-1",
        "BOOT_DELAY_S": 0,
        "COMMAND_TOPIC": "cmd/balcony-1/#",
        "TOPIC": "db/append/BALCONY",
        "SEARCH_TIMEOUT_MS": 1000,
        "ANSWER_TIMEOUT_MS": 1000,
        "NTP_HOST": None,
        **extra,
    }


def counts(gateway: Gateway, table: str) -> dict[str, int]:
    try:
        return {name: n for name, n in query(gateway, f"select name, count(*) from {table} group by name")}
    except urllib.error.HTTPError:  # no such table yet
        return {}


def test_searchgw_qos1_and_a_command_collected_at_the_next_wake(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    def body() -> None:
        gateway = gateway_factory("[mqttsn]\ngateway_id = 7\n")
        board = Board(tmp_path, SAMPLE, config())
        first = board.wake()
        assert f"gateway 7 at ('127.0.0.1', {gateway.mqttsn_port})" in first.output, first
        assert counts(gateway, "balcony") == dict.fromkeys(SERIES, 1)
        assert board.rtc_state()["asleep"] is True
        assert wait_until(lambda: "MQTT-SN client balcony-1 asleep for 360 s" in gateway.log())

        # While the node sleeps, someone sets its interval to 2 minutes.
        operator = Client(gateway.mqtt_port, "operator")
        operator.publish("cmd/balcony-1/interval", b"120", qos=1)
        operator.close()

        second = board.wake()
        # The command came during the PINGREQ exchange, before the PINGRESP: the sleeping-client wake of §6.14.
        command = second.output.find("command cmd/balcony-1/interval b'120'")
        assert 0 <= command < second.output.find("PINGRESP"), second
        assert second.sleep_ms is not None and 110_000 < second.sleep_ms <= 120_000, second
        assert counts(gateway, "balcony") == dict.fromkeys(SERIES, 2)
        # The node told the gateway its new sleep duration when it went to sleep again.
        assert wait_until(lambda: "MQTT-SN client balcony-1 asleep for 180 s" in gateway.log())

        third = board.wake()  # nothing was buffered: PINGREQ, PINGRESP
        assert "command" not in third.output, third
        assert counts(gateway, "balcony") == dict.fromkeys(SERIES, 3)
        assert board.rtc_state()["fails"] == 0

    in_new_network_namespace(body, LOOPBACK_MULTICAST)


def test_qos_minus_one_to_a_predefined_topic_id(gateway_factory: Callable[..., Gateway], tmp_path: Path) -> None:
    """The lowest-power mode: after the first wake (CONNECT, SUBSCRIBE, sleep) each wake is a PINGREQ exchange and
    one PUBLISH datagram with QoS -1 to pre-defined topic id 1, stamped by the gateway on arrival."""

    def body() -> None:
        gateway = gateway_factory('[mqttsn]\npredefined_topics = { 1 = "db/append/PREDEF" }\n')
        extra = {"QOS": -1, "PREDEFINED_TOPIC_ID": 1, "GATEWAY_ADDRESS": "127.0.0.1"}
        board = Board(tmp_path, SAMPLE, config(GATEWAY_PORT=gateway.mqttsn_port, **extra))
        boots = []
        for wake in range(1, 4):
            boots.append(board.wake())
            # Nothing comes back for QoS -1: the readings are there when the gateway has stored them.
            expected = dict.fromkeys(SERIES, wake)
            assert wait_until(lambda: counts(gateway, "predef") == expected), boots[-1]  # noqa: B023 - used at once
        assert "gateway 7 at" not in boots[0].output  # the configured address: no SEARCHGW
        assert all("PINGRESP" in boot.output for boot in boots[1:]), boots  # later wakes: PINGREQ, then one datagram
        assert "MQTT-SN client balcony-1 connected" in gateway.log()
        assert gateway.log().count("MQTT-SN client balcony-1 connected") == 1  # one CONNECT, the first wake's
        times = {t for _name, t in query(gateway, "select name, time from predef")}
        assert len(times) == 3  # stamped on arrival: one time per wake

    in_new_network_namespace(body, LOOPBACK_MULTICAST)


def test_found_by_its_advertise_when_searchgw_is_not_used(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    """§6.1's other way: the node joins the discovery group and waits for the gateway's periodic ADVERTISE."""

    def body() -> None:
        gateway = gateway_factory("[mqttsn]\ngateway_id = 9\nadvertise_interval = 1\n")
        board = Board(tmp_path, SAMPLE, config(SEARCH_TRIES=0, ADVERTISE_WAIT_MS=5000))
        boot = board.wake()
        assert f"gateway 9 at ('127.0.0.1', {gateway.mqttsn_port})" in boot.output, boot
        assert counts(gateway, "balcony") == dict.fromkeys(SERIES, 1)

    in_new_network_namespace(body, LOOPBACK_MULTICAST)
