"""MQTT over WebSocket (MQTT 5.0 §6, 3.1.1 §6): browsers and MQTT.js reach the same broker as TCP clients.

`WebSocketFrames` is sans-I/O, on wsproto: bytes from the socket in; the MQTT byte stream, and what must be sent
back (the handshake's answer, pongs, close frames), out. Frame boundaries mean nothing to MQTT: the payloads of
binary frames are joined into one stream, which the connection's own packet reader splits, so a packet may span
frames and a frame may hold several packets.

`WebSocketConnection` puts it under an unchanged `MqttConnection`: it is the socket's protocol, and gives the
MQTT connection a transport whose writes leave as binary frames. Authentication, limits, backpressure and
shutdown are therefore the TCP listener's own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from gateway.mqtt.connection import READ_SIZE, Listening, MqttConnection

log = logging.getLogger("gateway.mqtt")

# The WebSocket subprotocols of MQTT: "mqtt" (MQTT 3.1.1 and 5), and "mqttv3.1", which older clients (and some
# that speak 3.1.1 all the same) offer. The client's own first choice among them is answered.
SUBPROTOCOLS = ("mqtt", "mqttv3.1")

_READABLE = frozenset((ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING))
_REASONS = {400: "Bad Request", 404: "Not Found", 426: "Upgrade Required"}


@dataclass(slots=True)
class Received:
    """What one read of the socket amounts to."""

    mqtt: bytes = b""  # the MQTT stream's next bytes, to be fed to the packet reader
    reply: bytes = b""  # to be written to the socket (after whatever the MQTT bytes cause)
    opened: bool = False  # the handshake was accepted in this read
    close: bool = False  # close the socket once `reply` is written
    problem: str = ""  # why it closes, for the log; empty for a close the client asked for


def _http_error(status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    # Written by hand rather than by h11: after a request h11 could not parse it may refuse to answer at all, and
    # these few lines are the same every time.
    body = text.encode() + b"\n"
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}".encode()]
    lines += [name + b": " + value for name, value in headers or []]
    lines += [b"Content-Type: text/plain; charset=utf-8", b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class WebSocketFrames:
    """The server's end of one WebSocket carrying MQTT, without I/O."""

    __slots__ = ("_handshake", "_ws", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        # The HTTP handshake (h11 and its buffers) is dropped once accepted: after it only the frame layer is
        # needed, and a gateway may hold many idle connections.
        self._handshake: WSConnection | None = WSConnection(ConnectionType.SERVER)
        self._ws: Connection | None = None

    @property
    def open(self) -> bool:
        """The handshake is done and no close frame has been sent or received."""
        return self._ws is not None and self._ws.state is ConnectionState.OPEN

    def receive(self, data: bytes) -> Received:
        if self._ws is not None:
            return self._frames(data)
        if self._handshake is None:
            return Received()  # rejected already: the socket is closing
        return self._request(self._handshake, data)

    def wrap(self, mqtt: bytes) -> bytes:
        """MQTT bytes as one binary frame (nothing once the WebSocket is closing)."""
        if not self.open:
            return b""
        assert self._ws is not None
        return self._ws.send(BytesMessage(data=mqtt))

    def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "") -> bytes:
        """A close frame, if one may still be sent."""
        if not self.open:
            return b""
        assert self._ws is not None
        return self._ws.send(CloseConnection(code=code, reason=reason))

    def _request(self, handshake: WSConnection, data: bytes) -> Received:
        try:
            handshake.receive_data(data)
            request = next((event for event in handshake.events() if isinstance(event, Request)), None)
        except RemoteProtocolError as exc:
            self._handshake = None
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            headers = list(hint.headers) if isinstance(hint, RejectConnection) else []
            text = f"this port speaks MQTT over WebSocket only: connect to ws://<host>:<port>{self.path} ({exc})"
            return Received(reply=_http_error(status, text, headers), close=True, problem=f"not a WebSocket: {exc}")
        if request is None:
            return Received()  # the request is not complete yet; h11 bounds how much of it is buffered
        self._handshake = None
        path = request.target.split("?", 1)[0]
        if path != self.path:
            text = f"MQTT over WebSocket is at {self.path}, not {path}"
            return Received(reply=_http_error(404, text), close=True, problem=text)
        offered = [protocol.strip().lower() for protocol in request.subprotocols]
        if offered:
            chosen = next((p for p in request.subprotocols if p.strip().lower() in SUBPROTOCOLS), None)
            if chosen is None:
                text = f"no MQTT subprotocol offered ({', '.join(offered)}): offer {' or '.join(SUBPROTOCOLS)}"
                return Received(reply=_http_error(400, text), close=True, problem=text)
        else:
            # §6 requires "mqtt", but a client that offers nothing still gets MQTT: there is nothing else here.
            chosen = None
        reply = handshake.send(AcceptConnection(subprotocol=chosen))
        self._ws = handshake.connection
        return Received(reply=reply, opened=True)

    def _frames(self, data: bytes) -> Received:
        ws = self._ws
        assert ws is not None
        if ws.state not in _READABLE:
            return Received()  # closed both ways: what still comes is not read
        ws.receive_data(data)
        mqtt: list[bytes | bytearray] = []
        reply: list[bytes] = []
        for event in ws.events():
            if isinstance(event, BytesMessage):
                if ws.state is ConnectionState.OPEN:  # after our close frame, only the answer to it matters
                    mqtt.append(event.data)
            elif isinstance(event, Ping):
                reply.append(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                state = ws.state
                if state is ConnectionState.REMOTE_CLOSING:  # the client's close frame: answer it
                    reply.append(ws.send(event.response()))
                    return Received(b"".join(mqtt), b"".join(reply), close=True)
                if state is ConnectionState.CLOSED:  # the answer to our own close frame
                    return Received(b"".join(mqtt), b"".join(reply), close=True)
                # wsproto reports a frame it cannot parse as a close with the code to send back.
                reply.append(ws.send(CloseConnection(code=event.code, reason=event.reason)))
                problem = f"malformed WebSocket frame: {event.reason or event.code}"
                return Received(b"".join(mqtt), b"".join(reply), close=True, problem=problem)
            elif isinstance(event, TextMessage):
                # §6: MQTT travels in binary frames; any other data frame closes the connection.
                reply.append(ws.send(CloseConnection(code=CloseReason.UNSUPPORTED_DATA, reason="binary frames only")))
                problem = "a text frame (MQTT needs binary frames, §6)"
                return Received(b"".join(mqtt), b"".join(reply), close=True, problem=problem)
            # A Pong answers nothing we sent: ignored.
        return Received(b"".join(mqtt), b"".join(reply))


class FramedTransport(asyncio.Transport):
    """The transport an `MqttConnection` over WebSocket writes to: each write leaves as one binary frame (the
    connection writes once per event-loop turn, so that is one frame per turn)."""

    __slots__ = ("_frames", "_raw")

    def __init__(self, raw: asyncio.Transport, frames: WebSocketFrames) -> None:
        super().__init__()
        self._raw = raw
        self._frames = frames

    def write(self, data: bytes | bytearray | memoryview) -> None:
        frame = self._frames.wrap(bytes(data))
        if frame:
            self._raw.write(frame)

    def close(self) -> None:
        if not self._raw.is_closing():
            self._raw.write(self._frames.close())
            self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._raw.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)


class WebSocketConnection(asyncio.Protocol):
    """The socket's protocol on the WebSocket listener: frames outside, an `MqttConnection` inside."""

    __slots__ = ("_frames", "_raw", "mqtt")

    def __init__(self, shared: Listening, path: str) -> None:
        self.mqtt = MqttConnection(shared)
        self._frames = WebSocketFrames(path)
        self._raw: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        if hasattr(transport, "max_size"):
            # As for TCP: small reads, so that the MQTT connection's backpressure acts before memory fills.
            transport.max_size = READ_SIZE
        # The MQTT connection exists from the first byte: its connect timeout covers the HTTP handshake too, and
        # it counts against max_connections and is closed by a shutdown like any other.
        self.mqtt.connection_made(FramedTransport(transport, self._frames))

    def data_received(self, data: bytes) -> None:
        raw = self._raw
        if raw is None or raw.is_closing():
            return
        received = self._frames.receive(data)
        if received.mqtt:
            self.mqtt.data_received(received.mqtt)
        if received.reply and not raw.is_closing():
            raw.write(received.reply)
        if received.problem:
            self.mqtt.broker.stats.protocol_errors += 1
            log.warning("WebSocket client %s: %s; closing the connection", self.mqtt.peer, received.problem[:300])
        if received.close:
            raw.close()

    def eof_received(self) -> bool | None:
        return None  # the socket closes; the MQTT connection learns it in connection_lost

    def pause_writing(self) -> None:
        self.mqtt.pause_writing()

    def resume_writing(self) -> None:
        self.mqtt.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.mqtt.connection_lost(exc)
