# Settings of the MQTT battery sensor. Copy this file to the board next to main.py and edit it there.
import sys

# Wi-Fi: the network the gateway is on (2.4 GHz: neither board has 5 GHz).
WIFI_SSID = "my-network"
WIFI_PASSWORD = "my-password"
WIFI_TIMEOUT_MS = 10000

# After power-on or the reset button (not after a deep-sleep wake): seconds to stop main.py from the REPL
# (mpremote, Ctrl-C) before the board deep-sleeps and drops off USB.
BOOT_DELAY_S = 3

# This node: its MQTT client id, and the prefix of its series (<DEVICE>.temperature, <DEVICE>.battery, ...).
DEVICE = "garden-1"

# The gateway. Found by its mDNS name first (<GATEWAY_NAME>.local on MQTT_PORT), then by a DNS-SD query for
# _mqtt._tcp, which also tells the port. GATEWAY_ADDRESS = "192.168.1.10" skips discovery altogether.
GATEWAY_NAME = "gateway"
MQTT_PORT = 1883
GATEWAY_ADDRESS = None
DISCOVERY_TIMEOUT_MS = 1500  # per DNS-SD query round
# Only for a gateway with a password file (its DNS-SD TXT record then says auth=1).
MQTT_USER = None
MQTT_PASSWORD = None

# Where readings go: the gateway's ingest topic db/append/<TABLE>.
TABLE = "SENSORS"
DIGITS = 2  # decimals kept of each reading

# Timing.
INTERVAL_S = 300  # one reading every 5 minutes
ACK_TIMEOUT_S = 5  # TCP connect and PUBACK wait

# Readings the gateway did not acknowledge wait in flash, at most this many (oldest dropped first): four days at
# one reading of four series every 5 minutes, about 200 KB. They go as one db/append batch, split beyond
# BATCH_BYTES (a message is built in RAM: an ESP32 without PSRAM has about 100 KB free).
SPOOL_MAX_ROWS = 4608
BATCH_BYTES = 8192

# The clock: set by NTP at the first wake and once a day (the ESP32 keeps time through deep sleep; the Pico W
# does not, so it asks at every wake). None asks the gateway's own address (run chrony there with `allow`).
NTP_HOST = "pool.ntp.org"
NTP_EVERY_S = 86400

# Wiring (see README.md).
if sys.platform == "rp2":  # Raspberry Pi Pico W
    I2C_ID, I2C_SDA, I2C_SCL = 0, 4, 5
    BATTERY_ADC_PIN = 29  # VSYS through the board's own 200k/100k divider
    BATTERY_DIVIDER = 3.0
else:  # ESP32 DevKitC (ESP32-WROOM-32)
    I2C_ID, I2C_SDA, I2C_SCL = 0, 21, 22
    BATTERY_ADC_PIN = 34  # battery + through 1M / 1M to GND, the middle to GPIO34 (100 nF to GND)
    BATTERY_DIVIDER = 2.0
BME280_ADDRESS = 0x76  # 0x77 when SDO is tied high
