"""systemd integration: a real `gateway serve` notifying a real NOTIFY_SOCKET, and systemd/gateway.service checked
by systemd-analyze (verify, and the sandbox's exposure score)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Gateway
from tests.test_service import received

UNIT = REPO / "systemd" / "gateway.service"
INSTALLED_EXEC = "/opt/gateway/venv/bin/gateway"
MAX_EXPOSURE = 2.0  # issue 8: `systemd-analyze security gateway.service` at most 2.0


@pytest.fixture
def notify() -> Iterator[tuple[socket.socket, str]]:
    with tempfile.TemporaryDirectory(prefix="notify-") as directory:
        path = str(Path(directory) / "n")  # short: sun_path holds 108 bytes, pytest's tmp_path may be longer
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            yield sock, path


def next_message(sock: socket.socket, timeout: float = 10.0) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


def listeners(ready: str) -> dict[str, int]:
    """The ports in READY's STATUS=listening name=host:port ..."""
    status = dict(line.split("=", 1) for line in ready.splitlines())["STATUS"]
    assert status.startswith("listening "), ready
    return {name: int(addr.rsplit(":", 1)[1]) for name, addr in (item.split("=", 1) for item in status.split()[1:])}


def test_ready_watchdog_and_stopping_from_a_real_gateway(
    gateway_factory: Callable[..., Gateway], notify: tuple[socket.socket, str]
) -> None:
    sock, path = notify
    # No WATCHDOG_PID: systemd would set the service's main pid, unknown before it starts; none means "for us".
    gateway = gateway_factory(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert gateway.process is not None
    ready = next_message(sock)  # the first message: nothing (no ping) before READY=1
    assert ready.splitlines()[0] == "READY=1", ready
    ports = listeners(ready)
    assert ports == gateway.endpoints
    for name in ("mqtt", "http"):  # every TCP listener named in READY's status accepts connections
        socket.create_connection(("127.0.0.1", ports[name]), timeout=5).close()

    pings = received(sock, 1.0)  # a ping every 100 ms
    assert len(pings) >= 5 and set(pings) == {"WATCHDOG=1"}, pings

    gateway.process.send_signal(signal.SIGSTOP)  # a frozen process sends no pings: systemd would restart it
    try:
        time.sleep(0.2)
        received(sock, 0)
        assert received(sock, 0.6) == []
    finally:
        gateway.process.send_signal(signal.SIGCONT)
    assert "WATCHDOG=1" in received(sock, 0.5)

    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0
    after = received(sock, 0)
    assert "STOPPING=1\nSTATUS=stopping" in after, after
    assert after[-1] == "STOPPING=1\nSTATUS=stopping"  # no pings while the store flushes
    assert "stopped" in gateway.log()


def test_abstract_notify_socket_and_a_watchdog_for_another_pid(gateway_factory: Callable[..., Gateway]) -> None:
    name = f"gateway-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        # WATCHDOG_PID names another process (pid 1): the watchdog is not ours to feed.
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
        gateway = gateway_factory(env=env)
        assert next_message(sock).startswith("READY=1\nSTATUS=listening mqtt=")
        assert received(sock, 0.6) == []
        assert gateway.stop() == 0
        assert received(sock, 1.0) == ["STOPPING=1\nSTATUS=stopping"]


def test_without_notify_socket_nothing_changes(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(env={"WATCHDOG_USEC": "200000"})
    assert gateway.stop() == 0
    assert "systemd" not in gateway.log()


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


def test_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks that the unit's ExecStart= binary exists, which it does only on the SD image
    (/opt/gateway/venv): the unit verifies as written once that one complaint is set aside, and a copy whose
    ExecStart= names this venv's gateway verifies with no complaint at all."""
    as_written = analyze("verify", str(UNIT))
    complaints = [line for line in as_written.stderr.splitlines() if line.strip()]
    assert complaints == [f"gateway.service: Command {INSTALLED_EXEC} is not executable: No such file or directory"]

    here = Path(sys.executable).parent / "gateway"
    assert here.exists()
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_EXEC} ") == 1
    copy = tmp_path / "gateway.service"
    copy.write_text(text.replace(f"ExecStart={INSTALLED_EXEC} ", f"ExecStart={here} "))
    result = analyze("verify", str(copy))
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_sandbox_exposure_is_at_most_two() -> None:
    result = analyze("security", "--offline=yes", str(UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for gateway\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_journald_drop_in_and_sysusers_fragment_parse(tmp_path: Path) -> None:
    journald = (REPO / "systemd" / "journald.conf.d" / "gateway.conf").read_text()
    assert "\nStorage=volatile\n" in journald and "\nRuntimeMaxUse=" in journald
    # The fragment on standard input: a path given with --root would be looked up inside that root.
    result = subprocess.run(
        ["systemd-sysusers", "--dry-run", "--root", str(tmp_path), "-"],
        input=(REPO / "systemd" / "gateway.sysusers.conf").read_text(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Creating user 'gateway' (Edge gateway)" in result.stdout + result.stderr
