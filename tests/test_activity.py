"""gateway/activity.py on its own: states, the usual interval, overdue devices, the bounds."""

from __future__ import annotations

import pytest

import gateway.activity
from gateway.activity import Activity


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_000_000.0]
    monkeypatch.setattr(gateway.activity.time, "time", lambda: now[0])  # type: ignore[attr-defined]
    return now


def test_a_devices_states_and_its_usual_interval(clock: list[float]) -> None:
    seen = Activity()
    seen.connected("s1", "mqtt", "10.0.0.5:4000")
    for _ in range(5):
        seen.message("s1", "mqtt", "10.0.0.5:4000", "db/append/T")
        clock[0] += 300
    [device] = seen.devices()
    assert (device["state"], device["messages"], device["interval_s"]) == ("connected", 5, 300.0)
    assert device["overdue"] is False  # silent for one interval: on time
    clock[0] += 3 * 300
    assert seen.devices()[0]["overdue"] is True  # four intervals without a word
    seen.asleep("s1")
    assert seen.devices()[0]["state"] == "asleep"
    seen.gone("s1")
    assert (seen.devices()[0]["state"], seen.devices()[0]["overdue"]) == ("gone", False)


def test_messages_of_one_report_do_not_make_the_interval(clock: list[float]) -> None:
    seen = Activity()
    for _ in range(3):
        seen.message("s1", "mqtt-sn", "a", "t")
        seen.message("s1", "mqtt-sn", "a", "t")  # a batch or a retry, the same second
        clock[0] += 60
    assert seen.devices()[0]["interval_s"] == 60.0


def test_connected_and_asleep_come_before_gone_each_newest_first(clock: list[float]) -> None:
    seen = Activity()
    for name in ("old", "gone-recently", "new"):
        seen.message(name, "mqtt", "a", "t")
        clock[0] += 10
    seen.gone("gone-recently")
    assert [d["client_id"] for d in seen.devices()] == ["new", "old", "gone-recently"]


def test_beyond_the_limit_the_device_gone_longest_is_forgotten(clock: list[float]) -> None:
    seen = Activity(max_devices=2)
    seen.message("a", "mqtt", "x", "t")
    seen.gone("a")
    clock[0] += 1
    seen.message("b", "mqtt", "x", "t")
    clock[0] += 1
    seen.message("c", "mqtt", "x", "t")
    assert sorted(str(d["client_id"]) for d in seen.devices()) == ["b", "c"]


def test_refusals_are_kept_newest_last_and_bounded() -> None:
    seen = Activity(max_errors=2)
    for n in range(3):
        seen.rejected(f"c{n}", "mqtt", "x", "db/append/T", f"reason {n}")
    assert [r.reason for r in seen.errors] == ["reason 1", "reason 2"]
    assert seen.refusals == 3
