"""`network` under CPython: a station interface that is always on the test's network (loopback), unless
FIRMWARE_WIFI=down says the access point is gone."""

from __future__ import annotations

import os
from typing import Any

STA_IF, AP_IF = 0, 1
_hostname = "micropython"


def hostname(name: str | None = None) -> str:
    global _hostname
    if name is not None:
        _hostname = name
    return _hostname


class WLAN:
    def __init__(self, interface: int = STA_IF) -> None:
        self._active = False
        self._connected = False

    def active(self, on: bool | None = None) -> bool:
        if on is not None:
            self._active = bool(on)
            if not on:
                self._connected = False
        return self._active

    def connect(self, ssid: str, password: str = "", **kwargs: Any) -> None:
        if not self._active:
            raise OSError("WLAN not active")
        self._connected = os.environ.get("FIRMWARE_WIFI", "up") != "down"

    def isconnected(self) -> bool:
        return self._connected

    def disconnect(self) -> None:
        self._connected = False

    def ifconfig(self) -> tuple[str, str, str, str]:
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def status(self, *args: Any) -> int:
        return 1010 if self._connected else 0
