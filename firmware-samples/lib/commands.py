# Commands that a node takes from the topics cmd/<DEVICE>/<name>, published (by anyone) while it sleeps or listens.


def interval_s(topic, data, low=10, high=86400):
    """The new interval in seconds from a command on cmd/<DEVICE>/interval, or None for anything else (another
    command, a payload that is not a number, a number out of [low, high])."""
    if topic is None or not topic.endswith("/interval"):
        return None
    try:
        value = int(float(bytes(data).decode()))
    except (ValueError, UnicodeError):
        return None
    return value if low <= value <= high else None
