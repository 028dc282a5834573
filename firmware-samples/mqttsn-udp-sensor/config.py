# Settings of the MQTT-SN UDP sensor. Copy this file to the board next to main.py and edit it there.
import sys

WIFI_SSID = "my-network"
WIFI_PASSWORD = "my-password"
WIFI_TIMEOUT_MS = 10000

# After power-on or the reset button (not after a deep-sleep wake): seconds to stop main.py from the REPL
# (mpremote, Ctrl-C) before the board deep-sleeps and drops off USB.
BOOT_DELAY_S = 3

# This node: its MQTT-SN client id, and the prefix of its series.
DEVICE = "balcony-1"

# The gateway: found with SEARCHGW to the discovery group ([mqttsn] multicast_group / multicast_port on the
# gateway), unless GATEWAY_ADDRESS = "192.168.1.10" names it (then on GATEWAY_PORT, [mqttsn] port).
GATEWAY_ADDRESS = None
GATEWAY_PORT = 1884
DISCOVERY_GROUP = "225.1.1.1"
DISCOVERY_PORT = 1883
SEARCH_TIMEOUT_MS = 3000  # per SEARCHGW; the specification's T_SEARCHGW is 5 s
SEARCH_TRIES = 2
# When no GWINFO came: listen this long for the gateway's ADVERTISE, which it sends every [mqttsn]
# advertise_interval seconds (15 minutes by default): worth it for a powered node, not for a battery's wake.
ADVERTISE_WAIT_MS = 0
# The node's own UDP port. Fixed, because the gateway knows a sleeping node by its address and port: a PINGREQ
# from another port would not find the buffered messages.
LOCAL_PORT = 1885

# How readings go:
#  QOS = 1: CONNECT, PUBLISH to TOPIC (registered once, its id kept through deep sleep), PUBACK, DISCONNECT with a
#           sleep duration. The gateway acknowledges only what it stored; unacknowledged readings wait in flash.
#  QOS = -1: one PUBLISH datagram to the pre-defined topic id PREDEFINED_TOPIC_ID, nothing comes back: the
#           fewest radio-on milliseconds. The gateway maps the id to a topic in its configuration:
#           [mqttsn] predefined_topics = { 1 = "db/append/SENSORS" }
QOS = 1
TOPIC = "db/append/SENSORS"
PREDEFINED_TOPIC_ID = 1
DIGITS = 2

# Commands for this node are published (by anyone, over MQTT or MQTT-SN) to cmd/<DEVICE>/<name> while it sleeps;
# the gateway buffers them and hands them over at the next wake. Understood here: cmd/<DEVICE>/interval, a number
# of seconds.
COMMAND_TOPIC = "cmd/" + DEVICE + "/#"

INTERVAL_S = 300
ANSWER_TIMEOUT_MS = 2000  # wait for each answer before sending again (the specification's T_RETRY is 10-15 s:
RETRIES = 2  # too long for a battery node on a LAN)
SPOOL_MAX_ROWS = 2000
BATCH_BYTES = 1000  # an MQTT-SN PUBLISH in one UDP datagram, under the usual 1500-octet MTU

if sys.platform == "rp2":  # Raspberry Pi Pico W
    I2C_ID, I2C_SDA, I2C_SCL = 0, 4, 5
    BATTERY_ADC_PIN = 29
    BATTERY_DIVIDER = 3.0
else:  # ESP32 DevKitC
    I2C_ID, I2C_SDA, I2C_SCL = 0, 21, 22
    BATTERY_ADC_PIN = 34  # battery + through 1M / 1M to GND, the middle to GPIO34 (100 nF to GND)
    BATTERY_DIVIDER = 2.0
BME280_ADDRESS = 0x76

# The clock, for QoS 1 readings (QoS -1 readings are stamped by the gateway on arrival): NTP at the first wake and
# once a day (at every wake on the Pico W, whose deep sleep resets its clock).
NTP_HOST = "pool.ntp.org"
NTP_EVERY_S = 86400
