# Time helpers that behave the same on MicroPython (ESP32, Pico W, the WebAssembly port) and on CPython, where the
# samples also run in the project's tests.
import time

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
except AttributeError:  # CPython

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def sleep_ms(ms):
        time.sleep(ms / 1000)


# Ports differ in their epoch: most boards count from 2000-01-01, CPython and newer ports from 1970.
EPOCH_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0
# A clock earlier than this was never set (a board counts from its epoch after power-on until NTP sets it).
VALID_AFTER_S = 1704067200  # 2024-01-01


def unix_s():
    return int(time.time()) + EPOCH_OFFSET_S


def now_ns():
    """Nanoseconds since 1970 from the board's clock, or None while the clock has not been set."""
    if unix_s() < VALID_AFTER_S:
        return None
    if hasattr(time, "time_ns"):
        return time.time_ns() + EPOCH_OFFSET_S * 1000000000
    return unix_s() * 1000000000


def remaining_ms(deadline):
    return ticks_diff(deadline, ticks_ms())


def sync(state, host, every_s, log=print):
    """Sets the clock by NTP from `host` when it was never set or `every_s` have passed since the last time;
    remembers when in `state`. True if the clock is now set."""
    if now_ns() is not None and unix_s() - state.get("ntp", 0) < every_s:
        return True
    if host:
        try:
            import ntptime

            ntptime.host = host
            ntptime.settime()
            state["ntp"] = unix_s()
        except (ImportError, OSError, OverflowError, IndexError) as e:
            log("NTP", host, e)
    return now_ns() is not None
