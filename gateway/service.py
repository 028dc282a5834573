"""systemd's service notification protocol (sd_notify): READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

Written here rather than taken from PyPI's `sdnotify` (0.3.2, unchanged since 2017): that package does map an
abstract '@name' to '\\0name', but it reads NOTIFY_SOCKET once when constructed and swallows every send error
silently, and the protocol is a dozen lines of socket code (the sd_notify(3) man page documents it as stable and
gives the same reference implementation). Everything is a no-op when NOTIFY_SOCKET is unset, i.e. outside systemd
or under a unit that is not Type=notify.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("gateway.service")


class Notifier:
    """Sends state lines to the socket named by NOTIFY_SOCKET (a path, or '@name' for an abstract socket)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if name.startswith("@"):
            self.address = "\0" + name[1:]  # Linux abstract namespace: a leading NUL byte instead of '@'
        elif name.startswith("/"):
            self.address = name
        elif name:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket: not notifying systemd", name)
        self.watchdog_interval = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> None:
        """One datagram with `lines`; a failure is logged, never raised: systemd's bookkeeping must not stop the
        gateway (a missed READY=1 or WATCHDOG=1 is acted on by systemd itself, through its timeouts)."""
        if self.address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.warning("cannot notify systemd at %r: %s", self.address, exc.strerror or exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def start_watchdog(self) -> None:
        """WATCHDOG=1 every half watchdog interval, from a task on the event loop: a hung loop stops the pings and
        systemd restarts the service. Not from a thread, which would keep pinging for a dead loop."""
        if self.enabled and self.watchdog_interval is not None and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._ping(self.watchdog_interval / 2), name="systemd-watchdog")

    async def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None

    async def _ping(self, every: float) -> None:
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(every)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds, when systemd asked this process for keep-alive pings (WatchdogSec=), as sd_watchdog_enabled(3)
    decides: WATCHDOG_USEC set and positive, and WATCHDOG_PID, if set, this process's pid (a child started by
    the service would otherwise ping for it)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
