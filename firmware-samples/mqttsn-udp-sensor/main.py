# MQTT-SN UDP sensor: a sleeping MQTT-SN client (§6.14). Each wake: PINGREQ with the client id, which collects the
# commands published to the node while it slept; then the readings, at QoS 1 (CONNECT, PUBLISH, PUBACK, DISCONNECT
# with the sleep duration) or at QoS -1 (one datagram to a pre-defined topic id); then deep sleep.

import clock
import commands
import config
import guard
import machine
import mqttsn
import mqttsn_udp
import payload
import sensors
import wifi
from state import State
from store_forward import Spool


def log(*args):
    print("[%s]" % config.DEVICE, *args)


def interval_s(state):
    return state.get("interval", config.INTERVAL_S)


def duration_s(state):
    """The sleep duration told to the gateway: the interval and a margin for the time awake and a slow clock; the
    gateway takes a sleeper as lost after 1.5 times it."""
    return min(65535, interval_s(state) + 60)


def command_handler(state):
    def handle(topic, data):
        log("command", topic, data)
        interval = commands.interval_s(topic, data)
        if interval is not None:
            state["interval"] = interval

    return handle


def find_gateway(state, transport):
    if config.GATEWAY_ADDRESS:
        return [config.GATEWAY_ADDRESS, config.GATEWAY_PORT]
    if state.get("gw"):
        return state["gw"]
    found = mqttsn_udp.search(
        transport, config.DISCOVERY_GROUP, config.DISCOVERY_PORT, 1, config.SEARCH_TIMEOUT_MS, config.SEARCH_TRIES
    )
    if found is None and config.ADVERTISE_WAIT_MS:
        heard = mqttsn_udp.wait_advertise(config.DISCOVERY_GROUP, config.DISCOVERY_PORT, config.ADVERTISE_WAIT_MS)
        found = heard[:2] if heard else None
    if found is None:
        log("no GWINFO or ADVERTISE: no gateway found")
        return None
    gw_id, address = found
    log("gateway", gw_id, "at", address)
    return [address[0], address[1]]


def main():
    started = clock.ticks_ms()
    state = State()
    values = sensors.read(config, log)
    wlan = transport = None
    spool = Spool("spool.ndjson", config.SPOOL_MAX_ROWS) if config.QOS > 0 else None
    # QoS -1 readings carry no time: the gateway stamps their arrival, and the node needs no clock (no NTP).
    timed = config.QOS > 0
    rows = payload.rows(config.DEVICE, values, clock.now_ns() if timed else None, config.DIGITS)
    try:
        wlan = wifi.connect(config.WIFI_SSID, config.WIFI_PASSWORD, config.WIFI_TIMEOUT_MS, config.DEVICE)
        transport = mqttsn_udp.UdpTransport(None, config.LOCAL_PORT)
        gateway = find_gateway(state, transport)
        if timed and clock.sync(state, config.NTP_HOST, config.NTP_EVERY_S, log) and ",null," in "".join(rows):
            rows = payload.rows(config.DEVICE, values, clock.now_ns(), config.DIGITS)  # set just now
        if gateway is None:
            raise OSError(113, "no gateway")  # EHOSTUNREACH
        transport.gateway = mqttsn_udp.address(gateway[0], gateway[1])
        cycle(state, transport, rows, spool)
        state["gw"] = gateway
        state["fails"] = 0
        rows = []
    except (OSError, mqttsn.Refused) as e:
        log("gateway", e)
        fails = state.get("fails", 0) + 1
        state["fails"] = fails
        if fails >= 2 and not config.GATEWAY_ADDRESS:
            state["gw"] = None  # search again at the next wake
        if isinstance(e, mqttsn.Refused):
            state["asleep"] = False  # the gateway has no session for us: CONNECT next time
    if spool is not None and rows:
        spool.append([r for r in rows if ",null," not in r])
    if transport is not None:
        transport.close()
    state.save()
    wifi.off(wlan)
    awake = clock.ticks_diff(clock.ticks_ms(), started)
    machine.deepsleep(max(1000, interval_s(state) * 1000 - awake))


def cycle(state, transport, rows, spool):
    topics = {}
    for tid, name in state.get("topics", []):
        topics[tid] = name
    before = interval_s(state)
    client = mqttsn.Client(
        transport, config.DEVICE, command_handler(state), config.ANSWER_TIMEOUT_MS, config.RETRIES, topics
    )
    active = False
    if state.get("asleep") and client.wake():
        log("PINGRESP: awake, and what was buffered is collected")
    else:
        # First wake, or the gateway does not know this node as a sleeper (it was restarted without its state,
        # or the node's address changed): a persistent session, which keeps the subscription while it sleeps.
        client.connect(duration_s(state), clean=False)
        client.subscribe(config.COMMAND_TOPIC, 1)
        active = True
    state["asleep"] = False
    if config.QOS < 0:
        if rows:
            body = payload.batch(rows)
            client.publish(config.PREDEFINED_TOPIC_ID, body, qos=-1, topic_type=mqttsn.TOPIC_PREDEFINED)
        if active or interval_s(state) != before:
            client.sleep(duration_s(state))  # while asleep this sets the new duration
    else:
        if not active:
            client.connect(duration_s(state), clean=False)  # only a connected client may publish
        if rows and ",null," not in rows[0] and len(spool):
            spool.append(rows)  # behind older readings: in order, in the same batch
            del rows[:]
        acknowledged = 0
        chunks = spool.chunks(config.BATCH_BYTES)
        try:
            for count, body in chunks:
                client.publish_to(config.TOPIC, body, config.QOS)
                acknowledged += count
            while rows:
                count, body = payload.batches(rows, config.BATCH_BYTES)[0]
                client.publish_to(config.TOPIC, body, config.QOS)
                del rows[:count]
        finally:
            chunks.close()
            spool.remove_first(acknowledged)
        client.sleep(duration_s(state))
    state["asleep"] = True
    state["topics"] = [[tid, name] for tid, name in client.topics.items()]


guard.run(main, config.INTERVAL_S, config.BOOT_DELAY_S)
