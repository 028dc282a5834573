# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/mqttsn_uart.py: whole MQTT-SN frames out of a byte stream that arrives in pieces, with line noise."""

import mqttsn
from mqttsn_uart import UartTransport


class FakeUart:
    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.written = b""

    def any(self):
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, n):
        return self.chunks.pop(0) if self.chunks else None

    def write(self, data):
        self.written += data


def test_frames_split_and_joined_and_noise_between():
    connack = b"\x03\x05\x00"
    long = mqttsn.publish(1, b"z" * 300, qos=0)
    stream = b"\x00\xff" + connack + b"\x02\x17" + long
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    transport = UartTransport(FakeUart(chunks), poll_ms=0)
    assert transport.receive(100) == connack
    assert transport.receive(100) == b"\x02\x17"
    assert transport.receive(100) == long
    assert transport.receive(5) is None


def test_a_length_that_no_frame_follows_is_dropped_after_a_pause():
    transport = UartTransport(FakeUart([b"\x40"]), poll_ms=1, gap_ms=5)
    assert transport.receive(20) is None
    transport.uart.chunks.append(b"\x02\x17")
    assert transport.receive(50) == b"\x02\x17"


def test_sent_frames_go_out_as_they_are():
    transport = UartTransport(FakeUart([]))
    transport.send(mqttsn.pingreq("n"))
    assert transport.uart.written == b"\x03\x16n"
