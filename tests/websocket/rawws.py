"""WebSocket bytes written by hand (RFC 6455), independent of wsproto: the client's upgrade request and masked
frames, and a parser of the server's frames. For the bytes no WebSocket library sends."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
from typing import NamedTuple

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
KEY = base64.b64encode(b"sixteen byte key").decode()

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_token(key: str) -> str:
    """Sec-WebSocket-Accept for `key` (§4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(path: str = "/mqtt", protocols: str | None = "mqtt", *, key: str = KEY) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = b"\x5a\x01\xc3\x7e") -> bytes:
    """One client frame, masked as a client's must be (§5.3) unless `mask` is None."""
    head = bytes([(0x80 if fin else 0) | opcode])
    flag = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        head += bytes([flag | size])
    elif size < 1 << 16:
        head += bytes([flag | 126]) + struct.pack("!H", size)
    else:
        head += bytes([flag | 127]) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def binary(payload: bytes, **options: object) -> bytes:
    return frame(BINARY, payload, **options)  # type: ignore[arg-type]


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes


def parse_frame(data: bytes) -> tuple[Frame, bytes] | None:
    """The first frame a server sent (unmasked, §5.1) and the bytes after it; None while it is incomplete."""
    if len(data) < 2:
        return None
    fin, opcode = bool(data[0] & 0x80), data[0] & 0x0F
    assert not data[1] & 0x80, "a server's frames are not masked"
    size, at = data[1] & 0x7F, 2
    if size == 126:
        size, at = (struct.unpack("!H", data[2:4])[0], 4) if len(data) >= 4 else (1 << 64, 4)
    elif size == 127:
        size, at = (struct.unpack("!Q", data[2:10])[0], 10) if len(data) >= 10 else (1 << 64, 10)
    if len(data) < at + size:
        return None
    return Frame(fin, opcode, data[at : at + size]), data[at + size :]


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Every complete frame a server sent, and the bytes left over."""
    frames = []
    while (parsed := parse_frame(data)) is not None:
        got, data = parsed
        frames.append(got)
    return frames, data


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """An HTTP response's status, headers (lower-case names) and what follows the head."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


class RawWebSocket:
    """A blocking client socket that speaks WebSocket by hand."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def upgrade(self, path: str = "/mqtt", protocols: str | None = "mqtt") -> tuple[int, dict[str, str]]:
        self.sock.sendall(upgrade_request(path, protocols))
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the handshake after {self.buffer!r}"
            self.buffer += chunk
        status, headers, self.buffer = split_response(self.buffer)
        return status, headers

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_frame(self) -> Frame:
        while (parsed := parse_frame(self.buffer)) is None:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed while a frame was expected; left: {self.buffer!r}"
            self.buffer += chunk
        got, self.buffer = parsed
        return got

    def closed(self) -> bool:
        """Reads until the server closes the socket; true if it did (a timeout raises)."""
        while self.sock.recv(65536):
            pass
        return True

    def close(self) -> None:
        self.sock.close()
