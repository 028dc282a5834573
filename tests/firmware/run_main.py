"""One boot of a board under CPython: main.py from the board's flash directory, with the shims for the board's
modules, until it deep-sleeps (machine.deepsleep raises SystemExit) or returns. Started by board.py, one process
per boot, so that nothing but RTC memory and the flash files lasts from one wake to the next, as on the board.

FIRMWARE_NATIVE_MDNS=1 stands in for the firmware's own `.local` resolver (ESP32 and Pico W builds answer
getaddrinfo("<name>.local") with an mDNS A query): a real query through python-zeroconf, 5 s at most as on the
ESP32. Otherwise `.local` names do not resolve, as on a build without it."""

from __future__ import annotations

import os
import runpy
import socket
import sys
import time
from pathlib import Path
from typing import Any

flash = os.environ["FIRMWARE_FLASH"]
sys.path[:] = [flash, str(Path(flash, "lib")), str(Path(__file__).resolve().parent / "shims"), *sys.path[1:]]
os.chdir(flash)

# MicroPython's additions to `time`.
setattr(time, "sleep_ms", lambda ms: time.sleep(ms / 1000))  # noqa: B010 - mypy: no such attribute in CPython
setattr(time, "sleep_us", lambda us: time.sleep(us / 1_000_000))  # noqa: B010
setattr(time, "ticks_ms", lambda: int(time.monotonic() * 1000))  # noqa: B010
setattr(time, "ticks_us", lambda: int(time.monotonic() * 1_000_000))  # noqa: B010
setattr(time, "ticks_diff", lambda a, b: a - b)  # noqa: B010
setattr(time, "ticks_add", lambda a, b: a + b)  # noqa: B010

_getaddrinfo = socket.getaddrinfo


def _resolve_local(name: str) -> str | None:
    from zeroconf import IPVersion, Zeroconf
    from zeroconf._services.info import AddressResolverIPv4  # not re-exported by the package

    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        resolver = AddressResolverIPv4(name.rstrip(".") + ".")
        if resolver.request(zc, 5000):
            addresses = resolver.parsed_addresses()
            return addresses[0] if addresses else None
        return None
    finally:
        zc.close()


def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and host.rstrip(".").endswith(".local"):
        address = _resolve_local(host) if os.environ.get("FIRMWARE_NATIVE_MDNS") == "1" else None
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not found")
        host = address
    return _getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = getaddrinfo

runpy.run_path("main.py", run_name="__main__")
