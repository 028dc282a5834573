# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
"""lib/bme280.py against the worked example of the BMP280 datasheet (§3.12), whose temperature and pressure
compensation the BME280 shares: adc_T 519888 is 25.08 degC, adc_P 415148 is 100653.27 Pa (by the double-precision
formulas; the integer ones used here give 100653.25 Pa)."""

import struct

from bme280 import BME280
from mpytest import raises

CALIBRATION = struct.pack("<HhhHhhhhhhhh", 27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)


class FakeI2C:
    def __init__(self, chip_id=0x60):
        self.registers = bytearray(256)
        self.registers[0xD0] = chip_id
        self.registers[0x88 : 0x88 + 24] = CALIBRATION
        self.registers[0xA1] = 75
        # H2 362, H3 0, H4 313 (0x139), H5 50 (0x032), H6 30
        self.registers[0xE1 : 0xE1 + 7] = bytes((0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E))
        self.registers[0xF7:0xFF] = bytes((0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x69, 0x78))
        self.writes = []

    def readfrom_mem(self, address, register, n):
        if address != 0x76:
            raise OSError(19)
        return bytes(self.registers[register : register + n])

    def writeto_mem(self, address, register, data):
        self.writes.append((register, bytes(data)))


def test_the_datasheet_example():
    sensor = BME280(FakeI2C())
    assert (sensor.h4, sensor.h5, sensor.h6) == (313, 50, 30)
    assert sensor.raw() == (519888, 415148, 0x6978)
    temperature, pressure, humidity = sensor.compensate(519888, 415148, 0x6978)
    assert temperature == 2508
    assert pressure == 25767233  # Pa * 256
    assert abs(pressure / 256 - 100653.27) < 0.03
    assert 0 < humidity / 1024 < 100
    values = sensor.read()
    assert values["temperature"] == 25.08
    assert abs(values["pressure"] - 1006.5325) < 0.0001


def test_forced_mode_with_humidity_set_first():
    i2c = FakeI2C()
    BME280(i2c).raw()
    assert i2c.writes == [(0xF2, b"\x01"), (0xF4, b"\x25")]


def test_another_chip_is_refused():
    raises(OSError, BME280, FakeI2C(chip_id=0x58))  # a BMP280 has no humidity
    raises(OSError, BME280, FakeI2C(), 0x77)
