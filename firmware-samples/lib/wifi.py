# Wi-Fi station up and down around one wake. Each wake joins the network anew: deep sleep powers the radio off.
from clock import remaining_ms, sleep_ms, ticks_add, ticks_ms


def connect(ssid, password, timeout_ms=10000, hostname=None):
    """The connected WLAN interface; raises OSError when it did not connect within `timeout_ms`."""
    import network

    if hostname and hasattr(network, "hostname"):
        network.hostname(hostname)  # also the name the firmware's own mDNS responder answers to
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, password)
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while not wlan.isconnected():
            if remaining_ms(deadline) <= 0:
                wlan.active(False)
                raise OSError(110, "Wi-Fi %r: not connected within %d ms" % (ssid, timeout_ms))
            sleep_ms(50)
    return wlan


def off(wlan):
    """Before deep sleep: the Pico W's radio stays powered through machine.deepsleep() unless it is turned off."""
    if wlan is None:
        return
    try:
        wlan.disconnect()
    except OSError:
        pass
    wlan.active(False)
