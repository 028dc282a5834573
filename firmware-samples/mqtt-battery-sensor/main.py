# MQTT battery sensor: wake from deep sleep, read a BME280 and the battery, deliver the readings to the gateway's
# ingest topic at QoS 1 (kept in flash until a PUBACK says they are stored), sleep again.

import clock
import config
import guard
import machine
import mdns
import payload
import sensors
import wifi
from backoff import wakes_to_skip
from state import State
from store_forward import Spool
from umqtt.simple import MQTTClient, MQTTException

INGEST = "db/append/"  # the gateway's default, when its TXT record does not say


def log(*args):
    print("[%s]" % config.DEVICE, *args)


def find_gateway():
    """[address, port, ingest topic prefix] of the gateway, or None: the configured address, else its .local name
    through the firmware's resolver, else a DNS-SD query for _mqtt._tcp, which also gives the port and, in the TXT
    record, the prefix of the ingest topics and whether a user name is required."""
    if config.GATEWAY_ADDRESS:
        return [config.GATEWAY_ADDRESS, config.MQTT_PORT, INGEST]
    found = mdns.resolve_local(config.GATEWAY_NAME, config.MQTT_PORT)
    if found is not None:
        log("gateway", found, "by its .local name")
        return [found[0], found[1], INGEST]
    service = mdns.discover("_mqtt._tcp.local", config.DISCOVERY_TIMEOUT_MS, prefer=config.GATEWAY_NAME)
    if service is None:
        log("no gateway found")
        return None
    txt = service["txt"]
    log("gateway", service["address"], service["port"], "by DNS-SD:", service["instance"], txt)
    if txt.get("auth") == "1" and not config.MQTT_USER:
        log("the gateway wants a user name: set MQTT_USER and MQTT_PASSWORD in config.py")
    ingest = txt.get("ingest")
    return [service["address"], service["port"], ingest if isinstance(ingest, str) and ingest else INGEST]


def deliver(gateway, spool, rows):
    """Publishes the spool's rows, then `rows`, as db/append batches at QoS 1, each after the last one's PUBACK;
    removes from the spool what was acknowledged. (how many of `rows` were acknowledged, whether the gateway could
    be reached at all)."""
    client = MQTTClient(
        config.DEVICE, gateway[0], gateway[1], config.MQTT_USER, config.MQTT_PASSWORD or None, keepalive=60
    )
    topic = gateway[2] + config.TABLE
    try:
        try:
            client.connect(timeout=config.ACK_TIMEOUT_S)  # umqtt.simple from micropython-lib (mip) has a timeout
        except TypeError:  # older umqtt.simple: no timeout argument
            client.connect()
    except (OSError, IndexError, MQTTException) as e:  # unreachable, refused, or closed before CONNACK
        log("connect", gateway, e)
        _close(client)
        return 0, False
    acknowledged = sent = 0
    chunks = spool.chunks(config.BATCH_BYTES)
    try:
        client.sock.settimeout(config.ACK_TIMEOUT_S)  # publish() waits for the PUBACK: not for ever
        for count, body in chunks:
            client.publish(topic, body, qos=1)
            acknowledged += count
        for count, body in payload.batches(rows, config.BATCH_BYTES):
            client.publish(topic, body, qos=1)
            sent += count
        client.disconnect()
    except (OSError, IndexError, AssertionError) as e:
        log("publish", e)
        _close(client)
    finally:
        chunks.close()
        spool.remove_first(acknowledged)
    return sent, True


def _close(client):
    try:
        client.sock.close()
    except (AttributeError, OSError):
        pass


def main():
    started = clock.ticks_ms()
    state = State()
    spool = Spool("spool.ndjson", config.SPOOL_MAX_ROWS)
    values = sensors.read(config, log)  # before Wi-Fi: a quieter supply, and the Pico W's VSYS pin is free

    skip = state.get("skip", 0)
    if skip > 0:
        # The gateway failed several wakes in a row: keep this reading and spare the radio this time.
        state["skip"] = skip - 1
        log("the gateway failed", state.get("fails"), "wakes in a row: radio off, the reading waits in flash")
        keep(spool, payload.rows(config.DEVICE, values, clock.now_ns(), config.DIGITS))
        finish(state, None, started)
        return

    wlan = gateway = None
    try:
        wlan = wifi.connect(config.WIFI_SSID, config.WIFI_PASSWORD, config.WIFI_TIMEOUT_MS, config.DEVICE)
        gateway = state.get("gw") or find_gateway()
        clock.sync(state, config.NTP_HOST or (gateway[0] if gateway else None), config.NTP_EVERY_S, log)
    except OSError as e:
        log("network", e)
    time_ns = clock.now_ns()
    rows = payload.rows(config.DEVICE, values, time_ns, config.DIGITS)
    if time_ns is not None and len(spool):
        # Behind older readings: this one joins them, in order, in the same batch.
        keep(spool, rows)
        rows = []
    sent = 0
    if gateway is not None:
        sent, reached = deliver(gateway, spool, rows)
        if not reached and state.get("gw"):
            log("the remembered gateway", gateway, "failed: discovering it again")
            gateway = find_gateway()
            if gateway is not None:
                sent, reached = deliver(gateway, spool, rows)
        state["gw"] = gateway if reached else None
    keep(spool, rows[sent:])
    waiting = len(spool)
    if waiting == 0 and sent == len(rows):
        state["fails"] = 0
        state["skip"] = 0
    else:
        fails = state.get("fails", 0) + 1
        state["fails"] = fails
        state["skip"] = wakes_to_skip(fails)
    log("delivered" if waiting == 0 else "undelivered:", waiting, "readings in flash")
    finish(state, wlan, started)


def keep(spool, rows):
    # A reading without a time (the clock never set) cannot wait: it would be stored at its delivery's time.
    rows = [r for r in rows if ",null," not in r]
    if rows:
        spool.append(rows)
    if spool.dropped:
        log(spool.dropped, "oldest readings dropped: the spool is full")


def finish(state, wlan, started):
    state.save()
    wifi.off(wlan)
    awake = clock.ticks_diff(clock.ticks_ms(), started)
    machine.deepsleep(max(1000, config.INTERVAL_S * 1000 - awake))


guard.run(main, config.INTERVAL_S, config.BOOT_DELAY_S)
