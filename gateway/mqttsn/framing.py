"""Sans-I/O framings of MQTT-SN on serial lines.

A serial line is a byte stream with noise on it, so both framers cut frames out of whatever bytes arrive, in
pieces of any size, and find their way back after garbage. Nothing here reads a port or a clock: the transport
feeds bytes in and writes the bytes out.

- `LengthFramer`: MQTT-SN messages back to back, delimited by their own Length (MQTT-SN 1.2 §5.2.1), each one
  optionally wrapped in the forwarder encapsulation (§5.5) whose Wireless Node Id tells the nodes behind one
  coordinator apart. There is no start marker, so a frame is only accepted when it decodes (`codec.decode`,
  and the carried message too for an encapsulation); otherwise one byte is dropped and the search goes on.
- `XBeeFramer`: Digi XBee API mode 2 (AP=2), i.e. escaped API frames. RX Packet frames (0x90) come in, Transmit
  Request frames (0x10) go out (`encode_tx`), the sender's 64-bit address is the node id. The start delimiter
  0x7E never occurs escaped, so it always starts a new frame: that is the resynchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mqttsn.codec import Encapsulated, MalformedMessage, MsgType, decode

_KNOWN_TYPES = frozenset(int(t) for t in MsgType)
_FE = int(MsgType.ENCAPSULATED)


def _frame_size(buf: bytearray, pos: int, max_frame: int, inner: bool = False) -> int:
    """The size of the frame whose header starts at `pos`: > 0 when plausible, 0 when more bytes are needed to
    tell, -1 when the header is impossible (noise)."""
    avail = len(buf) - pos
    if avail < 1:
        return 0
    first = buf[pos]
    if first == 0x00:
        return -1
    if first == 0x01:  # the 3-octet Length (§5.2.1)
        if avail < 4:
            return 0
        size = (buf[pos + 1] << 8) | buf[pos + 2]
        kind = buf[pos + 3]
        if size < 4 or size > max_frame or kind not in _KNOWN_TYPES or kind == _FE:  # §5.5 has no 3-octet form
            return -1
        return size
    if avail < 2:
        return 0
    kind = buf[pos + 1]
    if kind not in _KNOWN_TYPES:
        return -1
    if kind != _FE:
        return first if first <= max_frame else -1
    # §5.5: the encapsulation's Length counts its own header; the carried message follows with its own Length.
    if inner or first < 3:
        return -1  # a forwarder does not nest encapsulations
    carried = _frame_size(buf, pos + first, max_frame - first, inner=True)
    return carried if carried <= 0 else first + carried


def _is_message(frame: bytes) -> bool:
    try:
        message = decode(frame)
        if isinstance(message, Encapsulated):
            decode(message.inner)
    except MalformedMessage:
        return False
    return True


class LengthFramer:
    """Cuts MQTT-SN frames (plain or forwarder-encapsulated) out of a serial byte stream.

    Frames longer than `max_frame` octets are treated as noise, which bounds the buffer: after `feed` it holds
    less than one frame. `discarded` counts the bytes skipped as noise.
    """

    __slots__ = ("_buf", "discarded", "max_frame")

    def __init__(self, max_frame: int = 1024) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self.discarded = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the line; return every frame now complete, in order."""
        self._buf += data
        return self._extract(line_idle=False)

    def idle(self) -> list[bytes]:
        """Tell the framer that the line has gone quiet (the transport's inter-frame timeout).

        Noise that looks like the start of a long frame would otherwise hold back the real frames behind it until
        enough bytes arrive to prove it wrong; a quiet line proves it now. The buffer is empty afterwards.
        """
        return self._extract(line_idle=True)

    def _extract(self, line_idle: bool) -> list[bytes]:
        buf = self._buf
        frames: list[bytes] = []
        pos = 0
        while pos < len(buf):
            size = _frame_size(buf, pos, self.max_frame)
            if size > 0 and pos + size <= len(buf):
                frame = bytes(buf[pos : pos + size])
                if _is_message(frame):
                    frames.append(frame)
                    pos += size
                    continue
            elif size >= 0 and not line_idle:
                break  # a plausible frame, still incomplete: wait for the rest
            pos += 1  # noise, or a frame that does not decode: resynchronise one byte further
            self.discarded += 1
        del buf[:pos]
        return frames


# ---------------------------------------------------------------------------------------------------------------
# XBee API mode 2. Frame: 0x7E, length (2 octets, MSB first), frame data, checksum = 0xFF - (sum of frame data
# & 0xFF); in mode 2 every octet after the start delimiter that is 0x7E, 0x7D, 0x11 or 0x13 is sent as 0x7D
# followed by the octet XOR 0x20.

START = 0x7E
ESCAPE = 0x7D
_NEEDS_ESCAPE = frozenset((0x7E, 0x7D, 0x11, 0x13))
RX_PACKET = 0x90
TX_REQUEST = 0x10
BROADCAST_64 = b"\x00\x00\x00\x00\x00\x00\xff\xff"
UNKNOWN_16 = 0xFFFE  # "address unknown / use the 64-bit address" in the 16-bit fields


@dataclass(frozen=True, slots=True)
class XBeeRx:
    """An RX Packet (0x90): `source64` (8 octets) identifies the sending node."""

    source64: bytes
    source16: int
    options: int
    payload: bytes


def escape(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if byte in _NEEDS_ESCAPE:
            out += bytes((ESCAPE, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def encode_frame(frame_data: bytes) -> bytes:
    """One API mode 2 frame around `frame_data` (frame type first)."""
    if not 0 < len(frame_data) <= 0xFFFF:
        raise ValueError(f"frame data of {len(frame_data)} octets")
    checksum = 0xFF - (sum(frame_data) & 0xFF)
    return bytes((START,)) + escape(len(frame_data).to_bytes(2, "big") + frame_data + bytes((checksum,)))


def encode_tx(
    payload: bytes,
    dest64: bytes,
    dest16: int = UNKNOWN_16,
    *,
    frame_id: int = 0,
    radius: int = 0,
    options: int = 0,
) -> bytes:
    """A Transmit Request (0x10) frame. `frame_id` 0 asks the module for no Transmit Status; `radius` 0 means the
    network's maximum hops."""
    if len(dest64) != 8:
        raise ValueError(f"a 64-bit destination is 8 octets, not {len(dest64)}")
    for what, value, limit in (("frame id", frame_id, 0xFF), ("radius", radius, 0xFF), ("options", options, 0xFF)):
        if not 0 <= value <= limit:
            raise ValueError(f"{what} {value} does not fit one octet")
    if not 0 <= dest16 <= 0xFFFF:
        raise ValueError(f"16-bit destination {dest16} does not fit two octets")
    header = bytes((TX_REQUEST, frame_id)) + dest64 + dest16.to_bytes(2, "big") + bytes((radius, options))
    return encode_frame(header + payload)


class XBeeFramer:
    """Decodes a stream of API mode 2 frames into RX packets.

    Counters: `discarded` bytes outside any frame, `bad_frames` (checksum errors, frames cut short by a new start
    delimiter, impossible lengths, RX packets too short to hold their header), `ignored` frames of other types by
    type (e.g. 0x8B Transmit Status, or 0x91 when the module runs with AO=1).
    """

    __slots__ = ("_escaped", "_frame", "_in_frame", "bad_frames", "discarded", "ignored", "max_length")

    def __init__(self, max_length: int = 1024) -> None:
        self._frame = bytearray()  # unescaped octets after the start delimiter: length, frame data, checksum
        self._in_frame = False
        self._escaped = False
        self.max_length = max_length
        self.discarded = 0
        self.bad_frames = 0
        self.ignored: dict[int, int] = {}

    @property
    def buffered(self) -> int:
        return len(self._frame)

    def feed(self, data: bytes) -> list[XBeeRx]:
        """Add bytes from the line; return the RX packets now complete, in order."""
        packets: list[XBeeRx] = []
        frame = self._frame
        i = 0
        n = len(data)
        while i < n:
            if not self._in_frame:
                start = data.find(START, i)  # hunt for the start delimiter
                if start < 0:
                    self.discarded += n - i
                    return packets
                self.discarded += start - i
                self._begin()
                i = start + 1
                continue
            byte = data[i]
            i += 1
            if byte == START:  # never escaped, so a new frame starts here: the current one was cut short
                self.bad_frames += 1
                self._begin()
                continue
            if self._escaped:
                byte ^= 0x20
                self._escaped = False
            elif byte == ESCAPE:
                self._escaped = True
                continue
            frame.append(byte)
            if len(frame) == 2:
                length = (frame[0] << 8) | frame[1]
                if not 0 < length <= self.max_length:
                    self.bad_frames += 1
                    self._in_frame = False
                    frame.clear()
            elif len(frame) > 2 and len(frame) == ((frame[0] << 8) | frame[1]) + 3:
                self._in_frame = False
                packet = self._finish(bytes(frame[2:]))
                frame.clear()
                if packet is not None:
                    packets.append(packet)
        return packets

    def _begin(self) -> None:
        self._frame.clear()
        self._in_frame = True
        self._escaped = False

    def _finish(self, data_and_checksum: bytes) -> XBeeRx | None:
        if sum(data_and_checksum) & 0xFF != 0xFF:
            self.bad_frames += 1
            return None
        data = data_and_checksum[:-1]
        kind = data[0]
        if kind != RX_PACKET:
            self.ignored[kind] = self.ignored.get(kind, 0) + 1
            return None
        if len(data) < 12:  # type, 64-bit source, 16-bit source, options
            self.bad_frames += 1
            return None
        return XBeeRx(data[1:9], (data[9] << 8) | data[10], data[11], data[12:])
