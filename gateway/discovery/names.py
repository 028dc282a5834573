"""The gateway's mDNS host name: what it is when the config gives none, and what it becomes after a conflict."""

from __future__ import annotations

import re
import socket

MAX_LABEL = 63  # bytes in one DNS label
# Host names that images and installers give every board alike: two gateways from the same image would fight over
# them, and they tell a user nothing.
GENERIC = frozenset(
    {"localhost", "raspberrypi", "raspberry", "pi", "debian", "ubuntu", "dietpi", "armbian", "alarmpi", "none"}
)
FALLBACK = "gateway"


def default_name(hostname: str | None = None) -> str:
    """The system's host name (its first label, as a DNS label), unless it is a generic one; then "gateway"."""
    label = (socket.gethostname() if hostname is None else hostname).split(".")[0].lower()
    label = re.sub(r"[^a-z0-9-]+", "-", label).strip("-")[:MAX_LABEL].rstrip("-")
    return label if label and label not in GENERIC else FALLBACK


def numbered(name: str, number: int) -> str:
    """`name` for the first try, then name-2, name-3, ... (shortened to stay one label)."""
    if number == 1:
        return name
    suffix = f"-{number}"
    return name[: MAX_LABEL - len(suffix)].rstrip("-") + suffix
