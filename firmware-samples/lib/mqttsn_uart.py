# MQTT-SN over a UART: frames are plain MQTT-SN messages, each starting with its own Length (§5.2.1), the
# gateway's `serial_framing = "length"`. Works on a wire or through a radio modem in transparent mode.
import mqttsn
from clock import remaining_ms, sleep_ms, ticks_add, ticks_diff, ticks_ms

MAX_FRAME = 1024  # beyond this a "length" is line noise


class UartTransport:
    def __init__(self, uart, poll_ms=2, gap_ms=100):
        self.uart = uart
        self.poll_ms = poll_ms
        self.gap_ms = gap_ms  # a frame's octets come back to back: a pause this long inside one means it is noise
        self.buf = b""
        self.last = ticks_ms()

    def send(self, data):
        self.uart.write(data)

    def _frame(self):
        """The first whole frame in the buffer, or None. A start that cannot be a frame (noise on the line, a
        byte lost by the modem) is dropped one octet at a time until the stream makes sense again."""
        while len(self.buf) >= 2:
            if self.buf[0] == 1:
                if len(self.buf) < 4:
                    return None
                length = self.buf[1] << 8 | self.buf[2]
                header = 4
            else:
                length = self.buf[0]
                header = 2
            if length < header or length > MAX_FRAME:
                self.buf = self.buf[1:]
                continue
            if len(self.buf) < length:
                return None
            frame = self.buf[:length]
            try:
                mqttsn.decode(frame)
            except (ValueError, IndexError, UnicodeError):
                self.buf = self.buf[1:]
                continue
            self.buf = self.buf[length:]
            return frame
        return None

    def receive(self, timeout_ms):
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if remaining_ms(deadline) <= 0:
                return None
            n = self.uart.any()
            chunk = self.uart.read(n) if n else None
            if chunk:
                self.buf += chunk
                self.last = ticks_ms()
            elif self.buf and ticks_diff(ticks_ms(), self.last) > self.gap_ms:
                self.buf = self.buf[1:]  # a "length" that no frame followed
            else:
                sleep_ms(self.poll_ms)
