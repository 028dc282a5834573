# The samples' wiring: a BME280 on I2C and the battery through a divider on an ADC pin, named by the sample's
# config (I2C_ID, I2C_SDA, I2C_SCL, BME280_ADDRESS, BATTERY_ADC_PIN, BATTERY_DIVIDER).
import sys

import battery
import bme280


def battery_adc(config):
    import machine

    if sys.platform == "rp2" and config.BATTERY_ADC_PIN == 29:
        # On the Pico W, GPIO29 (VSYS/3) is shared with the radio's SPI clock: read it before Wi-Fi is on, with
        # GPIO25 (the radio's chip select) high.
        machine.Pin(25, machine.Pin.OUT, value=1)
        machine.Pin(29, machine.Pin.IN, pull=None)
        return machine.ADC(3)
    adc = machine.ADC(machine.Pin(config.BATTERY_ADC_PIN))
    if hasattr(adc, "atten"):
        adc.atten(machine.ADC.ATTN_11DB)  # ESP32: the full 0-3.1 V range
    return adc


def read(config, log=print):
    """{"battery": V, "temperature": degC, "pressure": hPa, "humidity": %RH}; a part that failed is left out."""
    import machine

    values = {}
    try:
        values["battery"] = battery.volts(battery_adc(config), config.BATTERY_DIVIDER)
    except (OSError, ValueError) as e:
        log("battery:", e)
    try:
        i2c = machine.I2C(config.I2C_ID, sda=machine.Pin(config.I2C_SDA), scl=machine.Pin(config.I2C_SCL))
        values.update(bme280.BME280(i2c, config.BME280_ADDRESS).read())
    except OSError as e:
        log("BME280:", e)
    return values
