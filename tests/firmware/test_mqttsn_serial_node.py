"""firmware-samples/mqttsn-serial-node under CPython against a running gateway whose serial_device is one end of a
pseudo-terminal pair; the node's UART is the other end. It connects, publishes at QoS 1, takes a command published
by a paho-mqtt client (at once while it listens; at its next PINGREQ when it sleeps as an MQTT-SN sleeping client);
its readings are read back over HTTP."""

from __future__ import annotations

import os
import tty
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client, Gateway, wait_until
from tests.firmware.board import Board, Boot, query

SAMPLE = "mqttsn-serial-node"
SERIES = ["cellar-1.battery", "cellar-1.humidity", "cellar-1.pressure", "cellar-1.temperature"]


@pytest.fixture
def line() -> Iterator[tuple[int, str]]:
    """(the node's end, the gateway's device path) of a pseudo-terminal pair."""
    master, slave = os.openpty()
    tty.setraw(master)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def run(
    gateway_factory: Callable[..., Gateway], line: tuple[int, str], tmp_path: Path, **extra: Any
) -> tuple[Gateway, Board]:
    gateway = gateway_factory(f'[mqttsn]\nserial_device = "{line[1]}"\nserial_baudrate = 9600\n')
    assert wait_until(lambda: f"MQTT-SN serial {line[1]} open" in gateway.log())
    settings = {"DEVICE": "cellar-1", "COMMAND_TOPIC": "cmd/cellar-1/#", "TOPIC": "db/append/CELLAR", **extra}
    return gateway, Board(tmp_path, SAMPLE, settings)


def counts(gateway: Gateway) -> dict[str, int]:
    return {name: n for name, n in query(gateway, "select name, count(*) from cellar group by name")}


def published(gateway: Gateway, n: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return counts(gateway) == dict.fromkeys(SERIES, n)
        except OSError:  # no table yet
            return False

    return check


def test_a_listening_node_publishes_and_takes_a_command_at_once(
    gateway_factory: Callable[..., Gateway], line: tuple[int, str], tmp_path: Path
) -> None:
    gateway, board = run(gateway_factory, line, tmp_path, INTERVAL_S=1, READINGS=3)
    with ThreadPoolExecutor(1) as thread:
        node = thread.submit(board.boot, 30.0, (line[0],), FIRMWARE_UART_FD=str(line[0]))
        assert wait_until(published(gateway, 1), timeout=15), gateway.log()
        operator = Client(gateway.mqtt_port, "operator")
        operator.publish("cmd/cellar-1/interval", b"2", qos=1)
        operator.close()
        boot: Boot = node.result()
    assert boot.returncode == 0 and "Traceback" not in boot.output, boot
    assert "command cmd/cellar-1/interval b'2'" in boot.output, boot
    assert counts(gateway) == dict.fromkeys(SERIES, 3)
    assert "MQTT-SN client cellar-1 connected from /dev/" in gateway.log()  # over the serial line


def test_a_sleeping_node_collects_a_command_at_its_next_wake(
    gateway_factory: Callable[..., Gateway], line: tuple[int, str], tmp_path: Path
) -> None:
    gateway, board = run(gateway_factory, line, tmp_path, INTERVAL_S=2, READINGS=3, SLEEP=True)
    with ThreadPoolExecutor(1) as thread:
        node = thread.submit(board.boot, 30.0, (line[0],), FIRMWARE_UART_FD=str(line[0]))
        assert wait_until(lambda: "MQTT-SN client cellar-1 asleep for 62 s" in gateway.log(), timeout=15)
        operator = Client(gateway.mqtt_port, "operator")
        operator.publish("cmd/cellar-1/interval", b"1", qos=1)
        operator.close()
        boot: Boot = node.result()
    assert boot.returncode == 0 and "Traceback" not in boot.output, boot
    command = boot.output.find("command cmd/cellar-1/interval b'1'")
    assert 0 <= command < boot.output.find("PINGRESP"), boot
    assert counts(gateway) == dict.fromkeys(SERIES, 3)
