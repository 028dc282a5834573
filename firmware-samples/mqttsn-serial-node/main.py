# MQTT-SN serial node: MQTT-SN 1.2 frames on a UART (the gateway's "length" framing), for a device without IP.
# Connects with a persistent session, subscribes to its commands, publishes its readings at QoS 1 every interval,
# and between readings either listens (SLEEP = False) or sleeps as an MQTT-SN sleeping client (SLEEP = True).
import clock
import commands
import config
import machine
import mqttsn
import payload
import sensors
from backoff import delay_ms
from mqttsn_uart import UartTransport


def log(*args):
    print("[%s]" % config.DEVICE, *args)


class Node:
    def __init__(self, transport):
        self.interval_s = config.INTERVAL_S
        self.client = mqttsn.Client(transport, config.DEVICE, self.command, config.ANSWER_TIMEOUT_MS, config.RETRIES)
        self.connected = False
        self.asleep = False
        self.failures = 0
        self.keepalive = self.keepalive_s()

    def keepalive_s(self):
        return min(65535, self.interval_s + 60)

    def command(self, topic, data):
        log("command", topic, data)
        interval = commands.interval_s(topic, data, 1)
        if interval is not None:
            self.interval_s = interval

    def connect(self):
        """A persistent session: its subscription survives the node's absences, and what was published to it then
        is delivered after the CONNACK."""
        self.keepalive = self.keepalive_s()  # what the gateway holds the node to until it connects again
        self.client.connect(self.keepalive, clean=False)
        self.client.subscribe(config.COMMAND_TOPIC, 1)
        self.connected = True
        self.asleep = False

    def listen(self, ms):
        """Answers what the gateway sends for `ms`, with a PINGREQ before the keep-alive given at CONNECT runs out
        (a command may have made the interval longer than it)."""
        deadline = clock.ticks_add(clock.ticks_ms(), ms)
        last = clock.ticks_ms()
        while clock.remaining_ms(deadline) > 0:
            wait = min(clock.remaining_ms(deadline), self.keepalive * 1000 - clock.ticks_diff(clock.ticks_ms(), last))
            if wait <= 0:
                self.client.ping()
                last = clock.ticks_ms()
                continue
            got = self.client.receive(wait)
            if got is not None:
                self.client.handle(*got)

    def run_once(self):
        values = sensors.read(config, log)
        body = payload.batch(payload.rows(config.DEVICE, values, None, config.DIGITS))
        if self.asleep:
            if self.client.wake():  # commands published while it slept come in this exchange
                log("PINGRESP: awake, and what was buffered is collected")
            else:
                self.connected = False
        if not self.connected or self.asleep:
            self.connect()
        self.client.publish_to(config.TOPIC, body, 1)
        log("published", body)


def main():
    uart = machine.UART(
        config.UART_ID, baudrate=config.BAUDRATE, tx=machine.Pin(config.UART_TX), rx=machine.Pin(config.UART_RX)
    )
    node = Node(UartTransport(uart))
    readings = 0
    while config.READINGS == 0 or readings < config.READINGS:
        started = clock.ticks_ms()
        try:
            node.run_once()
            readings += 1
            node.failures = 0
        except (OSError, mqttsn.Refused) as e:
            log("gateway", e)
            node.connected = False
            node.failures += 1
            clock.sleep_ms(delay_ms(node.failures - 1, 2000, 300000))
            continue
        if config.READINGS and readings >= config.READINGS:
            break
        rest = max(0, node.interval_s * 1000 - clock.ticks_diff(clock.ticks_ms(), started))
        try:
            if config.SLEEP:
                node.client.sleep(node.keepalive_s())
                node.asleep = True
                machine.lightsleep(rest)  # the UART sleeps too: the gateway buffers what comes meanwhile
            else:
                node.listen(rest)
        except OSError as e:
            log("gateway", e)
            node.connected = False
    node.client.disconnect()


main()
