# Bosch BME280 (temperature, pressure, humidity) over I2C, in forced mode: one measurement per wake, after which the
# sensor sleeps by itself (0.1 uA). The compensation is the datasheet's integer code (BME280 datasheet §4.2.3,
# the same for T and P as the BMP280's §3.11.3), so every port computes the same result whatever its float size.
import struct

from clock import remaining_ms, sleep_ms, ticks_add, ticks_ms

CHIP_ID = 0x60


class BME280:
    def __init__(self, i2c, address=0x76):
        self.i2c = i2c
        self.address = address
        chip = i2c.readfrom_mem(address, 0xD0, 1)[0]
        if chip != CHIP_ID:
            raise OSError(19, "no BME280 at 0x%02x (chip id 0x%02x)" % (address, chip))  # ENODEV
        c = i2c.readfrom_mem(address, 0x88, 24)
        (self.t1, self.t2, self.t3, self.p1, self.p2, self.p3, self.p4, self.p5, self.p6, self.p7, self.p8, self.p9) = (
            struct.unpack("<HhhHhhhhhhhh", c)
        )
        self.h1 = i2c.readfrom_mem(address, 0xA1, 1)[0]
        e = i2c.readfrom_mem(address, 0xE1, 7)
        self.h2 = struct.unpack("<h", e[0:2])[0]
        self.h3 = e[2]
        self.h4 = _s12((e[3] << 4) | (e[4] & 0x0F))
        self.h5 = _s12((e[5] << 4) | (e[4] >> 4))
        self.h6 = e[6] - 256 if e[6] > 127 else e[6]

    def raw(self, timeout_ms=50):
        """(adc_T, adc_P, adc_H) of one forced measurement, oversampling x1 each (about 9.3 ms)."""
        self.i2c.writeto_mem(self.address, 0xF2, b"\x01")  # ctrl_hum first: it takes effect with ctrl_meas
        self.i2c.writeto_mem(self.address, 0xF4, b"\x25")  # osrs_t x1, osrs_p x1, forced mode
        deadline = ticks_add(ticks_ms(), timeout_ms)
        sleep_ms(10)
        while self.i2c.readfrom_mem(self.address, 0xF3, 1)[0] & 0x08:
            if remaining_ms(deadline) <= 0:
                raise OSError(110, "BME280 measurement did not finish")
            sleep_ms(2)
        d = self.i2c.readfrom_mem(self.address, 0xF7, 8)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        return adc_t, adc_p, adc_h

    def compensate(self, adc_t, adc_p, adc_h):
        """(temperature in 0.01 degC, pressure in Pa/256, humidity in %RH/1024), as integers."""
        var1 = (((adc_t >> 3) - (self.t1 << 1)) * self.t2) >> 11
        var2 = (((((adc_t >> 4) - self.t1) * ((adc_t >> 4) - self.t1)) >> 12) * self.t3) >> 14
        t_fine = var1 + var2
        temperature = (t_fine * 5 + 128) >> 8

        var1 = t_fine - 128000
        var2 = var1 * var1 * self.p6
        var2 = var2 + ((var1 * self.p5) << 17)
        var2 = var2 + (self.p4 << 35)
        var1 = ((var1 * var1 * self.p3) >> 8) + ((var1 * self.p2) << 12)
        var1 = (((1 << 47) + var1) * self.p1) >> 33
        if var1 == 0:
            pressure = 0  # the datasheet's guard against a division by zero
        else:
            p = 1048576 - adc_p
            p = _div((p << 31) - var2, 3125, var1)
            var1 = (self.p9 * (p >> 13) * (p >> 13)) >> 25
            var2 = (self.p8 * p) >> 19
            pressure = ((p + var1 + var2) >> 8) + (self.p7 << 4)

        v = t_fine - 76800
        v = ((((adc_h << 14) - (self.h4 << 20) - (self.h5 * v)) + 16384) >> 15) * (
            ((((((v * self.h6) >> 10) * (((v * self.h3) >> 11) + 32768)) >> 10) + 2097152) * self.h2 + 8192) >> 14
        )
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * self.h1) >> 4)
        v = 0 if v < 0 else (419430400 if v > 419430400 else v)
        return temperature, pressure, v >> 12

    def read(self):
        """{"temperature": degC, "pressure": hPa, "humidity": %RH}."""
        t, p, h = self.compensate(*self.raw())
        return {"temperature": t / 100, "pressure": p / 25600, "humidity": h / 1024}


def _s12(v):
    return v - 4096 if v & 0x800 else v


def _div(a, b, c):
    """a * b / c truncated toward zero, as C's 64-bit division does (Python's // floors)."""
    q = abs(a * b) // abs(c)
    return q if (a * b < 0) == (c < 0) else -q
