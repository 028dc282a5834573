# Backoff for a node whose gateway does not answer: within one wake (seconds between tries), and across deep sleeps
# (wakes to skip the radio), so that an outage of days does not empty the battery on failed connections.


def delay_ms(attempt, base_ms=1000, cap_ms=60000, jitter=0.25, rand=None):
    """Wait before try `attempt` (0 for the first retry): base * 2^attempt, at most cap, less up to `jitter` of it
    at random so that nodes that failed together do not retry together. `rand` in [0, 1) for tests."""
    d = min(base_ms << attempt if attempt < 20 else cap_ms, cap_ms)
    if rand is None:
        rand = _random()
    return int(d - d * jitter * rand)


def wakes_to_skip(failures, cap=16):
    """Wakes that only take a reading (kept in flash) before the next try to reach the gateway, after `failures`
    failed wakes in a row: 0, 0, 1, 3, 7, ... up to `cap`. The first two failures retry at once (a gateway being
    restarted); a long outage costs one connection attempt per `cap` wakes."""
    if failures < 2:
        return 0
    n = (1 << (failures - 1 if failures < 12 else 11)) - 1
    return cap if n > cap else n


def _random():
    try:
        import random

        return random.getrandbits(16) / 65536
    except (ImportError, AttributeError):
        return 0.5
