"""gateway/service.py in-process, against a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.service import Notifier


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its NOTIFY_SOCKET value (a short path: sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="notify-") as directory:
        path = str(Path(directory) / "n")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path
        sock.close()


def received(sock: socket.socket, wait: float) -> list[str]:
    """Every datagram that arrives within `wait` seconds (0: those already queued)."""
    messages: list[str] = []
    if wait == 0:
        sock.setblocking(False)
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages
        finally:
            sock.setblocking(True)
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def test_no_notify_socket_is_a_no_op() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "200000"})
    assert not notifier.enabled
    notifier.ready("listening")  # nothing to send to, and no error
    notifier.stopping()
    notifier.close()


def test_ready_and_stopping_reach_a_path_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("listening mqtt=127.0.0.1:1883")
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening mqtt=127.0.0.1:1883"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    notifier.close()


def test_abstract_socket_name() -> None:
    name = f"gateway-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()


def test_a_missing_socket_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    notifier.ready("up")
    notifier.close()
    assert "cannot notify systemd" in caplog.text


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),  # no WATCHDOG_PID: for us, as sd_watchdog_enabled(3) decides
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/notify", **env}).watchdog_interval == interval


def test_watchdog_pings_come_from_the_loop_and_stop_when_it_hangs(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # a ping every 50 ms

    async def run() -> tuple[list[str], list[str], list[str]]:
        notifier.start_watchdog()
        await asyncio.sleep(0.5)
        alive = received(sock, 0)
        time.sleep(0.5)  # the loop hangs: blocked in a call that does not return to it
        hung = received(sock, 0.3)  # (the loop is still blocked here too)
        await notifier.stop_watchdog()
        stopped = received(sock, 0.3)
        return alive, hung, stopped

    alive, hung, stopped = asyncio.run(run())
    notifier.close()
    assert len(alive) >= 5 and set(alive) == {"WATCHDOG=1"}
    assert hung == []
    assert stopped == []
