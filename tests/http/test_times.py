"""The REST API's time and duration parameters (gateway/http/times.py)."""

from __future__ import annotations

import pytest

from gateway.http.times import TimeError, parse_duration, parse_time

S = 1_000_000_000
NOW = 1_700_000_000 * S
H = 3600 * S


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000000000000", 1_700_000_000 * S),
        ("-5", -5),
        ("0", 0),
        ("2023-11-14T22:13:20Z", 1_700_000_000 * S),
        ("2023-11-14t22:13:20z", 1_700_000_000 * S),
        ("2023-11-14 22:13:20Z", 1_700_000_000 * S),
        ("2023-11-14T22:13:20", 1_700_000_000 * S),  # no zone: UTC
        ("2023-11-14T22:13:20.5Z", 1_700_000_000 * S + 500_000_000),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000 * S + 123_456_789),
        ("2023-11-15T00:13:20+02:00", 1_700_000_000 * S),
        ("2023-11-15T00:13:20 02:00", 1_700_000_000 * S),  # '+' decoded to a space in a query string
        ("2023-11-14T20:13:20-0200", 1_700_000_000 * S),
        ("2023-11-14T22:13Z", 1_699_999_980 * S),
        ("2023-11-14", 1_699_920_000 * S),
        ("1969-12-31T23:59:59Z", -S),
        ("now", NOW),
        ("NOW", NOW),
        (" now ", NOW),
        ("now-1h", NOW - H),
        ("now - 1h", NOW - H),
        ("now+15m", NOW + 15 * 60 * S),
        ("now 15m", NOW + 15 * 60 * S),  # now+15m with the '+' decoded to a space
        ("-1h", NOW - H),
        ("-1h30m", NOW - H - 30 * 60 * S),
        ("-500ms", NOW - 500_000_000),
        ("now-10", NOW - 10),
    ],
)
def test_times(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("yesterday", "is not a time"),
        ("", "is not a time"),
        ("2023-02-30", "day is out of range"),
        ("2023-11-14T25:00:00Z", "hour must be in"),
        ("2023-11-14T22:13:20+25:00", "time zone offset"),
        ("now-", "is not a time"),
        ("now-1x", "is not a duration"),
        ("-x", "is not a duration"),
        ("now1h", "is not a time"),
        ("99999999999999999999", "is not a time"),  # 20 digits: not an integer it accepts
        ("9223372036854775808", "out of range"),
        ("now+15000w", "out of range"),
        ("-0s", "not positive"),
        ("1.5", "is not a time"),
    ],
)
def test_bad_times_say_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(TimeError, match=says):
        parse_time(text, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("10s", 10 * S),
        ("1m", 60 * S),
        ("5ms", 5_000_000),  # milliseconds, not 5 minutes and an "s"
        ("250us", 250_000),
        ("1h30m", 90 * 60 * S),
        ("1d", 86400 * S),
        ("1w", 7 * 86400 * S),
        ("2H", 2 * H),
    ],
)
def test_durations(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0", "not positive"),
        ("0s", "not positive"),
        ("-5", "not positive"),
        ("1y", "is not a duration"),
        ("", "is not"),
    ],
)
def test_bad_durations(text: str, says: str) -> None:
    with pytest.raises(TimeError, match=says):
        parse_duration(text)
