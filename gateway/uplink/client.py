"""A small asyncio MQTT 3.1.1 / 5 client for the uplink: QoS 0/1 publishes to an upstream broker, subscriptions
for its commands (incoming QoS 0, 1 and 2).

Built on the sans-I/O codec; one reader task per connection, owned by the client. It does not reconnect: the
caller decides when to try again, and `connect` resolves the host anew each time (DNS may have moved).

Section numbers: "§x.y" is MQTT 5.0, "3.1.1 §x.y" is MQTT 3.1.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as _ssl
from collections.abc import Callable, Collection

from gateway.mqtt.codec import (
    MQTT_5,
    MQTT_311,
    Acknowledgement,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PingReq,
    PingResp,
    Prop,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Reader,
    Reason,
    SubAck,
    Subscribe,
    Subscription,
    encode,
)

__all__ = ["UpstreamClient", "UpstreamError", "connack_error", "describe_reason", "next_packet_id"]

logger = logging.getLogger("gateway.uplink")

# 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3) by the MQTT 5 reason the codec maps them to, for messages that use
# the code a 3.1.1 broker's documentation and logs use.
_V311_RETURN_CODES = {0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}
_V311_WORDS = {
    0x84: "unacceptable protocol version",
    0x85: "identifier rejected",
    0x88: "server unavailable",
}
# What the person reading the error can do about the most common refusals.
_HINTS = {
    0x84: "try the other MQTT version",
    0x85: "use another client id",
    0x86: "check the user name and password",
    # mosquitto answers a wrong password with this too (not 0x86), so the password comes first
    0x87: "check the user name and password, and the broker's access rules for this client",
    0x8A: "the broker has banned this client",
}
_READ_SIZE = 65536
_CHECK = "is the MQTT version, port or TLS right?"  # a broker that drops CONNECT unanswered
_CLOSE_TIMEOUT = 2.0  # seconds a polite close may take before the transport is aborted


class UpstreamError(Exception):
    """The upstream connection failed or was refused; str(exc) is a one-line reason for people."""


def describe_reason(code: int) -> str:
    """An MQTT 5 reason code in words, e.g. 0x87 -> "not authorized"."""
    try:
        return Reason(code).name.lower().replace("_", " ")
    except ValueError:
        return f"reason code 0x{code:02X}"


def connack_error(connack: ConnAck, version: int) -> UpstreamError:
    """The error for a refused CONNACK, in words, with its code as that protocol version writes it."""
    code = connack.reason_code
    if version == MQTT_5:
        words, number = describe_reason(code), f"CONNACK 0x{code:02X}"
    else:
        # The codec maps 3.1.1 return codes to MQTT 5 reasons; unknown ones become 0x80 (3.1.1 §3.2.2.3).
        words = _V311_WORDS.get(code) or describe_reason(code)
        number = f"CONNACK return code {_V311_RETURN_CODES[code]}" if code in _V311_RETURN_CODES else "CONNACK"
    message = f"upstream refused the connection: {words} ({number})"
    reason_string = connack.properties.get(Prop.REASON_STRING)
    if reason_string:
        message += f': "{reason_string}"'
    if code in _HINTS:
        message += f"; {_HINTS[code]}"
    return UpstreamError(message)


def next_packet_id(last: int, *in_use: Collection[int]) -> int:
    """The packet identifier after `last` in 1..65535 that none of `in_use` holds (§2.2.1)."""
    if sum(map(len, in_use)) >= 65535:
        raise RuntimeError("all 65,535 packet identifiers are in flight: wait for acknowledgements first")
    candidate = last
    while True:
        candidate = candidate % 65535 + 1
        if not any(candidate in ids for ids in in_use):
            return candidate


def _connect_error(exc: OSError, host: str, port: int) -> UpstreamError:
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return UpstreamError(f"cannot resolve {host}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return UpstreamError(f"connection to {where} refused; is the broker running and is the port right?")
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return UpstreamError(f"TLS handshake with {where} failed: certificate verify failed: {exc.verify_message}")
    if isinstance(exc, _ssl.SSLError):
        return UpstreamError(f"TLS handshake with {where} failed: {exc.reason or exc}; is it a TLS port?")
    return UpstreamError(f"cannot connect to {where}: {exc.strerror or exc}")


class UpstreamClient:
    """One connection to an upstream broker. Use `connect` to make one."""

    receive_maximum: int
    maximum_packet_size: int | None
    maximum_qos: int
    session_present: bool

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: Reader,
        connack: ConnAck,
        keep_alive: int,
        on_message: Callable[[Publish], None] | None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = parser
        self._version = parser.version or MQTT_311
        props = connack.properties
        self.session_present = connack.session_present
        self.receive_maximum = props.get(Prop.RECEIVE_MAXIMUM, 65535)
        self.maximum_packet_size = props.get(Prop.MAXIMUM_PACKET_SIZE)
        self.maximum_qos = props.get(Prop.MAXIMUM_QOS, 2)
        # §3.2.2.3.14: the server's keep alive, when it sends one, replaces ours.
        self.keep_alive: int = props.get(Prop.SERVER_KEEP_ALIVE, keep_alive)
        self._on_message = on_message
        self._publishes: dict[int, asyncio.Future[int]] = {}
        self._subscribes: dict[int, asyncio.Future[list[int]]] = {}
        self._qos2_received: set[int] = set()
        self._last_id = 0
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._last_sent = self._last_received = loop.time()
        self._ping_outstanding = False
        self._reason: UpstreamError | None = None
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        version: int = MQTT_311,
        username: str | None = None,
        password: bytes | None = None,
        ssl: _ssl.SSLContext | None = None,
        keep_alive: int = 60,
        clean_start: bool = True,
        session_expiry: int | None = None,
        on_message: Callable[[Publish], None] | None = None,
        timeout: float = 10.0,
    ) -> UpstreamClient:
        """TCP (+TLS) connect, CONNECT, wait for CONNACK; raises UpstreamError with the reason, within `timeout`
        seconds in all.

        `session_expiry` (MQTT 5 only, seconds): None keeps the session as 3.1.1 does, for ever when
        `clean_start` is False (0xFFFFFFFF) and not past the connection when it is True (§3.1.2.11.2).
        """
        if version not in (MQTT_311, MQTT_5):
            raise ValueError(f"MQTT protocol level {version} is not supported: use MQTT_311 (4) or MQTT_5 (5)")
        where = f"{host}:{port}"
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                try:
                    reader, writer = await asyncio.open_connection(
                        host, port, ssl=ssl, server_hostname=host if ssl else None
                    )
                except OSError as exc:
                    raise _connect_error(exc, host, port) from None
                parser = Reader(version=version)
                connect = Connect(client_id, version, clean_start, keep_alive, username, password)
                if version == MQTT_5:
                    # Without this property an MQTT 5 session ends with the connection, clean_start or not.
                    expiry = session_expiry if session_expiry is not None else 0 if clean_start else 0xFFFFFFFF
                    if expiry:
                        connect.properties[Prop.SESSION_EXPIRY_INTERVAL] = expiry
                writer.write(encode(connect, version))
                connack, rest = await _read_connack(reader, parser, where)
        except TimeoutError:
            if writer is not None:
                writer.transport.abort()
            stage = "no CONNACK from" if writer is not None else "could not connect to"
            raise UpstreamError(f"{stage} {where} within {timeout:g} s") from None
        except BaseException:
            if writer is not None:
                writer.transport.abort()
            raise
        if connack.reason_code >= 0x80:
            writer.transport.abort()
            raise connack_error(connack, version)
        client = cls(reader, writer, parser, connack, keep_alive, on_message)
        client._task = asyncio.create_task(client._run(rest), name=f"uplink reader {where}")
        return client

    # -- sending ------------------------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> asyncio.Future[int]:
        """Send a PUBLISH now. The future resolves with the PUBACK's reason code (always 0 in 3.1.1; >= 0x80 means
        refused in MQTT 5) or fails with UpstreamError if the connection ends first, or has already ended.
        QoS 0: the future is already done with 0."""
        if qos not in (0, 1):
            raise ValueError(f"QoS {qos} is not supported for outgoing messages: use 0 or 1")
        if qos > self.maximum_qos:
            raise ValueError(f"the upstream broker accepts QoS {self.maximum_qos} at most (CONNACK Maximum QoS)")
        future: asyncio.Future[int] = self._loop.create_future()
        if self._reason is not None:
            future.set_exception(self._reason)
            return future
        packet_id = 0
        if qos:
            packet_id = self._last_id = next_packet_id(self._last_id, self._publishes, self._subscribes)
        data = encode(Publish(topic, payload, qos, retain, packet_id=packet_id or None), self._version)
        if self.maximum_packet_size is not None and len(data) > self.maximum_packet_size:
            # §3.2.2.3.6: the client must not send it; the broker would disconnect us.
            raise ValueError(
                f"a PUBLISH of {len(data)} bytes exceeds the upstream's Maximum Packet Size of "
                f"{self.maximum_packet_size}: send a smaller payload"
            )
        self._write(data)
        if qos:
            self._publishes[packet_id] = future
        else:
            future.set_result(0)
        return future

    @property
    def in_flight(self) -> int:
        """QoS 1 publishes sent and not yet acknowledged."""
        return len(self._publishes)

    async def subscribe(self, filters: list[tuple[str, int]]) -> list[int]:
        """SUBSCRIBE and wait for SUBACK; returns granted QoS / reason codes (0x80+ = refused)."""
        if not filters:
            raise ValueError("subscribe needs at least one topic filter (§3.8.3)")
        if self._reason is not None:
            raise self._reason
        packet_id = self._last_id = next_packet_id(self._last_id, self._publishes, self._subscribes)
        future: asyncio.Future[list[int]] = self._loop.create_future()
        self._subscribes[packet_id] = future
        self._send(Subscribe(packet_id, [Subscription(topic_filter, qos) for topic_filter, qos in filters]))
        return await future

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark; UpstreamError if closed."""
        if self._reason is not None:
            raise self._reason
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            self._close(UpstreamError(f"connection to upstream lost: {exc}"))
        if self._reason is not None:
            raise self._reason

    async def wait_closed(self) -> UpstreamError:
        """Wait until the connection ends for any reason; returns the reason (never raises)."""
        await self._closed.wait()
        if self._task is not None:
            # asyncio.wait, not await: cancelling this waiter must not cancel the reader task.
            await asyncio.wait({self._task})
        assert self._reason is not None
        return self._reason

    @property
    def closed(self) -> bool:
        return self._reason is not None

    async def disconnect(self) -> None:
        """Send DISCONNECT and close; pending futures fail with UpstreamError. Idempotent."""
        if self._reason is None:
            self._send(Disconnect())
            self._close(UpstreamError("disconnected by the gateway"), abort=False)
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._writer.wait_closed()
            self._writer.transport.abort()  # a no-op once closed; ends a close the broker did not answer
        await self.wait_closed()

    def _send(self, packet: Packet) -> None:
        self._write(encode(packet, self._version))

    def _write(self, data: bytes) -> None:
        # A write to a lost transport is dropped silently by asyncio; the reader task then sees the loss and
        # fails whatever waits for an answer.
        self._writer.write(data)
        self._last_sent = self._loop.time()

    # -- receiving ----------------------------------------------------------------------------------------------

    async def _run(self, first: list[Packet]) -> None:
        try:
            self._handle_all(first)
            while True:
                data = await self._read()
                if not data:
                    raise UpstreamError("upstream closed the connection")
                self._last_received = self._loop.time()
                self._ping_outstanding = False
                try:
                    packets = self._parser.feed(data)
                except MalformedPacket as exc:
                    self._handle_all(exc.packets)
                    if self._version == MQTT_5:
                        self._send(Disconnect(exc.reason))  # §4.13.1: say why before closing
                    self._close(UpstreamError(f"upstream sent a malformed packet: {exc}"), abort=False)
                    return
                self._handle_all(packets)
        except UpstreamError as exc:
            self._close(exc)
        except _ssl.SSLError as exc:
            self._close(UpstreamError(f"TLS error on the upstream connection: {exc.reason or exc}"))
        except OSError as exc:
            self._close(UpstreamError(f"connection to upstream lost: {exc.strerror or exc}"))
        except Exception as exc:  # a bug here must still end the connection, not leave it half alive
            logger.exception("uplink reader failed")
            self._close(UpstreamError(f"uplink client error: {exc!r}"))

    async def _read(self) -> bytes:
        """The next bytes from the broker, sending PINGREQ when due; UpstreamError when the broker went quiet."""
        if not self.keep_alive:
            return await self._reader.read(_READ_SIZE)
        while True:
            now = self._loop.time()
            # Any packet proves the broker is alive (§3.1.2.10). PINGREQ is due when we sent nothing for a
            # keep-alive period (the broker needs to hear from us) and also when we heard nothing for one: a
            # gateway sending only QoS 0 gets no answers, and would otherwise take a dead broker for a quiet one.
            dead_at = self._last_received + 1.5 * self.keep_alive
            if now >= dead_at:
                raise UpstreamError(
                    f"upstream stopped answering (no PINGRESP within 1.5 keep-alive, {1.5 * self.keep_alive:g} s)"
                )
            wake = dead_at
            if not self._ping_outstanding:
                ping_at = min(self._last_sent, self._last_received) + self.keep_alive
                if now >= ping_at:
                    self._send(PingReq())
                    self._ping_outstanding = True
                else:
                    wake = min(dead_at, ping_at)
            try:
                async with asyncio.timeout(max(wake - now, 0.0)):
                    return await self._reader.read(_READ_SIZE)
            except TimeoutError:
                continue

    def _handle_all(self, packets: list[Packet]) -> None:
        for packet in packets:
            self._handle(packet)

    def _handle(self, packet: Packet) -> None:
        if isinstance(packet, Publish):
            self._received_publish(packet)
        elif isinstance(packet, PubAck):
            future = self._publishes.pop(packet.packet_id, None)
            if future is None:
                logger.debug("PUBACK for packet id %d, which is not in flight", packet.packet_id)
            elif not future.done():
                future.set_result(packet.reason_code)
        elif isinstance(packet, PubRel):
            known = packet.packet_id in self._qos2_received
            self._qos2_received.discard(packet.packet_id)
            # §4.3.3: PUBCOMP even for an id we do not hold (e.g. received before a reconnect); MQTT 5 says so.
            code = Reason.SUCCESS if known or self._version != MQTT_5 else Reason.PACKET_IDENTIFIER_NOT_FOUND
            self._send(PubComp(packet.packet_id, code))
        elif isinstance(packet, SubAck):
            sub = self._subscribes.pop(packet.packet_id, None)
            if sub is not None and not sub.done():
                sub.set_result(packet.reason_codes)
        elif isinstance(packet, Disconnect):
            message = (
                f"upstream disconnected: {describe_reason(packet.reason_code)} (DISCONNECT 0x{packet.reason_code:02X})"
            )
            reason_string = packet.properties.get(Prop.REASON_STRING)
            if reason_string:
                message += f': "{reason_string}"'
            raise UpstreamError(message)
        elif isinstance(packet, PingResp | PubRec | PubComp):
            # PINGRESP only proves liveness; we never send QoS 2, so PUBREC and PUBCOMP answer nothing of ours.
            return
        else:
            name = "acknowledgement" if isinstance(packet, Acknowledgement) else type(packet).__name__.upper()
            raise UpstreamError(f"upstream sent an unexpected {name} packet (protocol error)")

    def _received_publish(self, packet: Publish) -> None:
        packet_id = packet.packet_id or 0
        # QoS 2 is MQTT 3.1.1 §4.3.3 "method B" (the same in MQTT 5 §4.3.3): deliver at once, keep the id until
        # PUBREL, and answer any PUBLISH with a held id (a DUP resend) with PUBREC again without delivering it.
        duplicate = packet.qos == 2 and packet_id in self._qos2_received
        if not duplicate and self._on_message is not None:
            try:
                self._on_message(packet)
            except Exception:
                logger.exception("uplink on_message failed for a message on %r", packet.topic)
        if packet.qos == 1:
            self._send(PubAck(packet_id))
        elif packet.qos == 2:
            self._qos2_received.add(packet_id)
            self._send(PubRec(packet_id))

    # -- closing ------------------------------------------------------------------------------------------------

    def _close(self, reason: UpstreamError, *, abort: bool = True) -> None:
        """End the connection once, with `reason`: fail what waits for an answer, stop the reader task."""
        if self._reason is not None:
            return
        self._reason = reason
        if abort:
            self._writer.transport.abort()
        else:
            self._writer.close()
        for future in self._publishes.values():
            if not future.done():
                future.set_exception(reason)
        for sub in self._subscribes.values():
            if not sub.done():
                sub.set_exception(reason)
        self._publishes.clear()
        self._subscribes.clear()
        self._closed.set()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()


async def _read_connack(reader: asyncio.StreamReader, parser: Reader, where: str) -> tuple[ConnAck, list[Packet]]:
    """The CONNACK, and any packets that came in the same read (a resumed session's messages)."""
    while True:
        try:
            data = await reader.read(_READ_SIZE)
        except _ssl.SSLError as exc:
            hint = ""
            if "CERTIFICATE_REQUIRED" in str(exc.reason):
                hint = ": the upstream wants a client certificate ([uplink] certfile and keyfile)"
            raise UpstreamError(f"TLS error with {where} before CONNACK: {exc.reason or exc}{hint}") from None
        except OSError as exc:
            raise UpstreamError(f"connection to {where} lost before CONNACK: {exc.strerror or exc}; {_CHECK}") from None
        if not data:
            raise UpstreamError(f"upstream {where} closed the connection without a CONNACK; {_CHECK}")
        try:
            packets = parser.feed(data)
        except MalformedPacket as exc:
            raise UpstreamError(f"upstream {where} sent a malformed CONNACK: {exc}") from None
        if packets:
            first, *rest = packets
            if not isinstance(first, ConnAck):
                raise UpstreamError(f"upstream {where} answered CONNECT with {type(first).__name__.upper()}")
            return first, rest
