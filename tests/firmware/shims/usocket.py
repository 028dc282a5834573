"""`usocket` under CPython, for umqtt.simple: MicroPython's sockets are streams with read() and write()."""

from __future__ import annotations

import socket as _socket
from typing import Any

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_DGRAM = _socket.SOCK_DGRAM
getaddrinfo = _socket.getaddrinfo


class socket:  # the name MicroPython gives it
    def __init__(self, family: int = AF_INET, kind: int = SOCK_STREAM, proto: int = 0) -> None:
        self._s = _socket.socket(family, kind, proto)

    def connect(self, address: Any) -> None:
        self._s.connect(address)

    def settimeout(self, seconds: float | None) -> None:
        self._s.settimeout(seconds)

    def setblocking(self, flag: bool) -> None:
        self._s.setblocking(flag)

    def write(self, data: Any, n: int | None = None) -> int:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if n is not None:
            raw = raw[:n]
        self._s.sendall(raw)
        return len(raw)

    def read(self, n: int) -> bytes | None:
        """n bytes, fewer only at the end of the stream; None when non-blocking and nothing has come."""
        out = b""
        while len(out) < n:
            try:
                chunk = self._s.recv(n - len(out))
            except BlockingIOError:
                return out or None
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        self._s.close()
