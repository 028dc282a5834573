"""Who has been seen, and the last refusals: the web page's Devices and Errors views, and their API.

The parts that meet clients (the MQTT connections, the MQTT-SN gateway, the HTTP write endpoint) tell an Activity
what happens; app.py makes one and hands it to each, so that none of them needs to know the others. It only keeps
plain numbers per client id, bounded: a gateway that has seen more than `max_devices` clients forgets the ones
gone longest ago first.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

CONNECTED, ASLEEP, GONE = "connected", "asleep", "gone"
# A device silent for this many of its usual intervals (and at least OVERDUE_MIN_S) is flagged: sensors report on
# a schedule, so a few missed reports mean a flat battery, a lost radio link or a crashed firmware.
OVERDUE_INTERVALS = 3.0
OVERDUE_MIN_S = 60.0
# How much one new gap moves the usual interval: enough to follow a changed schedule within a few reports,
# little enough that one retry burst does not make a 5-minute sensor look like a 1-second one.
INTERVAL_WEIGHT = 0.25
# Messages closer together than this are one report (a batch, a retry): they say nothing of the schedule.
SAME_REPORT_S = 1.0


@dataclass(slots=True)
class Device:
    client_id: str
    protocol: str
    address: str
    state: str
    since: float  # wall-clock time of the last state change
    last_seen: float | None = None  # wall-clock time of its last message
    messages: int = 0
    interval_s: float | None = None
    last_topic: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    time: float
    client_id: str
    protocol: str
    address: str
    topic: str
    reason: str


class Activity:
    def __init__(self, max_devices: int = 1000, max_errors: int = 100) -> None:
        self._devices: dict[str, Device] = {}
        self._max_devices = max_devices
        self.errors: deque[Refusal] = deque(maxlen=max_errors)
        self.refusals = 0

    def connected(self, client_id: str, protocol: str, address: str) -> None:
        device = self._device(client_id, protocol, address)
        device.state, device.since = CONNECTED, time.time()

    def asleep(self, client_id: str) -> None:
        device = self._devices.get(client_id)
        if device is not None:
            device.state, device.since = ASLEEP, time.time()

    def gone(self, client_id: str) -> None:
        device = self._devices.get(client_id)
        if device is not None and device.state != GONE:
            device.state, device.since = GONE, time.time()

    def message(self, client_id: str, protocol: str, address: str, topic: str) -> None:
        """A publish or a write arrived (called once per message: keep it cheap)."""
        device = self._devices.get(client_id)
        if device is None or device.address != address:
            device = self._device(client_id, protocol, address)
        now = time.time()
        last = device.last_seen
        if last is not None and now - last >= SAME_REPORT_S:
            gap = now - last
            usual = device.interval_s
            device.interval_s = gap if usual is None else usual + INTERVAL_WEIGHT * (gap - usual)
        device.last_seen = now
        device.messages += 1
        device.last_topic = topic

    def rejected(self, client_id: str, protocol: str, address: str, topic: str, reason: str) -> None:
        self.refusals += 1
        self.errors.append(Refusal(time.time(), client_id, protocol, address, topic, reason))

    def devices(self, now: float | None = None) -> list[dict[str, object]]:
        """Every device as the API shows it: connected and asleep first, then gone, each newest first."""
        now = time.time() if now is None else now
        devices = list(self._devices.values())  # HTTP threads read while the event loop writes
        devices.sort(key=lambda d: (d.state == GONE, -(d.last_seen or d.since)))
        return [
            {
                "client_id": device.client_id,
                "protocol": device.protocol,
                "address": device.address,
                "state": device.state,
                "since": device.since,
                "last_seen": device.last_seen,
                "messages": device.messages,
                "interval_s": device.interval_s,
                "overdue": self._overdue(device, now),
                "last_topic": device.last_topic,
            }
            for device in devices
        ]

    @staticmethod
    def _overdue(device: Device, now: float) -> bool:
        interval = device.interval_s
        if device.state == GONE or interval is None:
            return False
        return now - (device.last_seen or device.since) > max(OVERDUE_INTERVALS * interval, OVERDUE_MIN_S)

    def _device(self, client_id: str, protocol: str, address: str) -> Device:
        device = self._devices.get(client_id)
        if device is None:
            if len(self._devices) >= self._max_devices:
                self._forget_one()
            device = self._devices[client_id] = Device(client_id, protocol, address, CONNECTED, time.time())
        device.protocol, device.address = protocol, address
        return device

    def _forget_one(self) -> None:
        gone = [d for d in self._devices.values() if d.state == GONE]
        oldest = min(gone or self._devices.values(), key=lambda d: d.last_seen or d.since)
        del self._devices[oldest.client_id]
