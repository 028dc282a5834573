"""`machine` for a sample's main.py under CPython: what the ESP32 and Pico W ports offer, enough for the samples.

The board is described by environment variables that tests/firmware/board.py sets for each boot:
FIRMWARE_BOARD (esp32 | rp2), FIRMWARE_FLASH (the board's file system, also the working directory),
FIRMWARE_UART_FD (the serial line UART() uses), FIRMWARE_SLEEP_FILE (where deepsleep() writes its duration)."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5

# What the I2C bus answers at the BME280's address: the BMP280 datasheet's worked example (§3.12: adc_T 519888 is
# 25.08 degC, adc_P 415148 is 100653.27 Pa) and plausible humidity trimming, so that the driver's arithmetic is
# checked against published numbers.
_T_P_CALIBRATION = struct.pack(
    "<HhhHhhhhhhhh", 27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000
)
_H1 = 75
_H2, _H3, _H4, _H5, _H6 = 362, 0, 313, 50, 30
ADC_T, ADC_P, ADC_H = 519888, 415148, 27000
BATTERY_MICROVOLTS = 1_950_000  # at the pin: 3.9 V behind a 1:2 divider


def _board() -> str:
    return os.environ.get("FIRMWARE_BOARD", "esp32")


class DeepSleep(SystemExit):
    """machine.deepsleep(): the board powers down; main.py runs again from the start at the next boot."""


def deepsleep(ms: int = 0) -> None:
    sleep_file = os.environ.get("FIRMWARE_SLEEP_FILE")
    if sleep_file:
        Path(sleep_file).write_text(str(int(ms)))
    print(f"DEEPSLEEP {int(ms)}", flush=True)
    raise DeepSleep(0)


def lightsleep(ms: int = 0) -> None:
    time.sleep(ms / 1000)


def reset_cause() -> int:
    return DEEPSLEEP_RESET if Path(os.environ.get("FIRMWARE_FLASH", "."), ".rtc-memory").exists() else PWRON_RESET


def unique_id() -> bytes:
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(hz: int | None = None) -> int:
    return 240_000_000


class Pin:
    IN, OUT, OPEN_DRAIN = 0, 1, 2
    PULL_UP, PULL_DOWN = 1, 2

    def __init__(self, pin: Any, mode: int = -1, pull: int | None = None, *, value: int | None = None) -> None:
        self.pin = pin
        self._value = value or 0

    def value(self, v: int | None = None) -> int:
        if v is not None:
            self._value = v
        return self._value

    def on(self) -> None:
        self._value = 1

    def off(self) -> None:
        self._value = 0


class ADC:
    ATTN_0DB, ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0, 1, 2, 3

    def __init__(self, pin: Any, *, atten: int | None = None) -> None:
        self.pin = pin

    def atten(self, value: int) -> None:
        pass

    def read_u16(self) -> int:
        return BATTERY_MICROVOLTS * 65535 // 3_300_000

    def read_uv(self) -> int:
        return BATTERY_MICROVOLTS


class I2C:
    """A bus with one BME280 at 0x76, in forced mode: a measurement is ready at once."""

    def __init__(self, bus_id: int = 0, *, scl: Any = None, sda: Any = None, freq: int = 400_000) -> None:
        self.registers = bytearray(256)
        self.registers[0xD0] = 0x60
        self.registers[0x88 : 0x88 + 24] = _T_P_CALIBRATION
        self.registers[0xA1] = _H1
        h4, h5 = _H4 & 0xFFF, _H5 & 0xFFF
        e = struct.pack("<hB", _H2, _H3) + bytes((h4 >> 4, (h4 & 0x0F) | ((h5 & 0x0F) << 4), h5 >> 4, _H6 & 0xFF))
        self.registers[0xE1 : 0xE1 + 7] = e
        pressure = (ADC_P >> 12, (ADC_P >> 4) & 0xFF, (ADC_P & 0x0F) << 4)
        temperature = (ADC_T >> 12, (ADC_T >> 4) & 0xFF, (ADC_T & 0x0F) << 4)
        self.registers[0xF7:0xFF] = bytes(pressure + temperature) + struct.pack(">H", ADC_H)

    def scan(self) -> list[int]:
        return [0x76]

    def _check(self, address: int) -> None:
        if address != 0x76:
            raise OSError(19, "ENODEV")

    def readfrom_mem(self, address: int, register: int, n: int) -> bytes:
        self._check(address)
        return bytes(self.registers[register : register + n])

    def writeto_mem(self, address: int, register: int, data: bytes) -> None:
        self._check(address)
        self.registers[register : register + len(data)] = data


class UART:
    """The serial line: FIRMWARE_UART_FD, a terminal descriptor the process inherited (the master end of a
    pseudo-terminal pair whose other end the gateway opened as its serial_device)."""

    def __init__(self, uart_id: int, baudrate: int = 9600, **kwargs: Any) -> None:
        import tty

        self.fd = int(os.environ["FIRMWARE_UART_FD"])
        os.set_blocking(self.fd, False)
        tty.setraw(self.fd)

    def any(self) -> int:
        import fcntl
        import termios

        waiting: int = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        return waiting

    def read(self, n: int = -1) -> bytes | None:
        try:
            data = os.read(self.fd, n if n > 0 else 4096)
        except BlockingIOError:
            return None
        return data or None

    def write(self, data: bytes) -> int:
        view = memoryview(bytes(data))
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            view = view[written:]
        return len(data)


class RTC:
    """The ESP32's RTC keeps its user memory through deep sleep (a file here); the rp2 port's RTC has none."""

    def __init__(self) -> None:
        self._path = Path(os.environ.get("FIRMWARE_FLASH", "."), ".rtc-memory")

    def __getattr__(self, name: str) -> Any:
        if name == "memory" and _board() == "esp32":
            return self._memory
        raise AttributeError(name)

    def _memory(self, data: bytes | None = None) -> bytes | None:
        if data is None:
            return self._path.read_bytes() if self._path.exists() else b""
        if len(data) > 2048:
            raise ValueError("RTC memory holds 2048 bytes")
        self._path.write_bytes(bytes(data))
        return None

    def datetime(self, value: Any = None) -> Any:
        t = time.gmtime()
        return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0)


class WDT:
    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        pass

    def feed(self) -> None:
        pass
