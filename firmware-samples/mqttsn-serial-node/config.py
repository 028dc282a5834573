# Settings of the MQTT-SN serial node. Copy this file to the board next to main.py and edit it there.
import sys

# This node: its MQTT-SN client id, and the prefix of its series.
DEVICE = "cellar-1"

# The UART to the gateway: a wire to the gateway's serial port (3.3 V levels, crossed TX/RX, common GND), or a radio
# modem in transparent mode (HC-12, APC220, an XBee in AT mode, ...). The gateway's side: [mqttsn] serial_device,
# serial_baudrate (the same as here) and serial_framing = "length".
BAUDRATE = 9600
if sys.platform == "rp2":  # Raspberry Pi Pico (or Pico W with its radio unused): UART0 on GP0 (TX) and GP1 (RX)
    UART_ID, UART_TX, UART_RX = 0, 0, 1
    I2C_ID, I2C_SDA, I2C_SCL = 0, 4, 5
    BATTERY_ADC_PIN = 29
    BATTERY_DIVIDER = 3.0
else:  # ESP32 DevKitC: UART2 on GPIO17 (TX) and GPIO16 (RX); UART0 is the USB console
    UART_ID, UART_TX, UART_RX = 2, 17, 16
    I2C_ID, I2C_SDA, I2C_SCL = 0, 21, 22
    BATTERY_ADC_PIN = 34
    BATTERY_DIVIDER = 2.0
BME280_ADDRESS = 0x76

# Where readings go, at QoS 1. Without IP the node has no clock to set: the gateway stamps readings on arrival.
TOPIC = "db/append/SENSORS"
DIGITS = 2
COMMAND_TOPIC = "cmd/" + DEVICE + "/#"  # cmd/<DEVICE>/interval: seconds between readings

INTERVAL_S = 60
# SLEEP = False: the node stays connected and listens between readings (commands arrive at once; it draws its
# awake current all the time: for a powered node). SLEEP = True: between readings it tells the gateway it sleeps
# (DISCONNECT with a duration) and light-sleeps; commands wait in the gateway until its next wake (PINGREQ).
SLEEP = False
ANSWER_TIMEOUT_MS = 3000  # a radio modem at 9600 baud adds tens of milliseconds each way
RETRIES = 2
READINGS = 0  # stop after this many readings; 0: never (a test runs a few)
