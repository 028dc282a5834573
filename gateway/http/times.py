"""Times and durations as the REST API's query parameters give them. Pure: text in, nanoseconds out, no clock
(`parse_time` takes `now_ns`).

- A time: nanoseconds since 1970 (`1700000000000000000`, negative before 1970); RFC 3339
  (`2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.123456789+02:00`, a space instead of the T, a date alone; no zone
  means UTC); `now`; `now-1h`, `now+15m`, and `-1h` for `now-1h`.
- A duration: `10s`, `1m`, `1h30m`, `500ms`, `2d`, `1w` (units ns, us, ms, s, m, h, d, w), or nanoseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["TimeError", "parse_duration", "parse_time"]

_S = 1_000_000_000
_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": _S, "m": 60 * _S, "h": 3600 * _S, "d": 86400 * _S}
_UNITS["w"] = 7 * _UNITS["d"]
# Two-letter units come first in the alternation, so that "5ms" is 5 milliseconds, not 5 minutes and a stray "s".
_DURATION = re.compile(r"(?:[0-9]{1,19}(?:ns|us|ms|s|m|h|d|w))+", re.IGNORECASE)
_DURATION_PART = re.compile(r"([0-9]+)(ns|us|ms|s|m|h|d|w)", re.IGNORECASE)
_INTEGER = re.compile(r"-?[0-9]{1,19}")
# In a URL query string '+' stands for a space, so "now+1h" and "+02:00" often arrive as "now 1h" and " 02:00":
# a space is taken for a plus where only a plus makes sense.
_RELATIVE = re.compile(r"now(?:\s*([-+ ])\s*(.+))?|-\s*(.+)", re.IGNORECASE)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"\s*([Zz]|[-+ ][0-9]{2}:?[0-9]{2})?)?"
)
_MIN_TIME, _MAX_TIME = -(2**63), 2**63 - 1
_TIME_FORMS = "nanoseconds since 1970, RFC 3339 such as 2024-05-01T12:00:00Z, now, now-1h or -1h"
_DURATION_FORMS = "a duration such as 10s, 1m, 1h30m or 1d, or nanoseconds"


class TimeError(ValueError):
    """A parameter that is not a time or a duration; the message says which forms are accepted."""


def parse_duration(text: str) -> int:
    """A positive duration in nanoseconds."""
    text = text.strip()
    if _INTEGER.fullmatch(text):
        ns = int(text)
    elif _DURATION.fullmatch(text):
        ns = sum(int(n) * _UNITS[unit.lower()] for n, unit in _DURATION_PART.findall(text))
    else:
        raise TimeError(f"{text!r} is not {_DURATION_FORMS}")
    if ns <= 0:
        raise TimeError(f"{text!r} is not positive: give {_DURATION_FORMS}")
    if ns > _MAX_TIME:
        raise TimeError(f"{text!r} is too long: durations go up to about 292 years")
    return ns


def parse_time(text: str, now_ns: int) -> int:
    """A time in nanoseconds since 1970 (UTC)."""
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return _in_range(int(text), text)
    relative = _RELATIVE.fullmatch(text)
    if relative:
        sign, offset, before = relative.groups()
        if before is not None:
            return _in_range(now_ns - _offset(before, text), text)
        if offset is None:
            return now_ns
        return _in_range(now_ns + (-1 if sign == "-" else 1) * _offset(offset, text), text)
    match = _RFC3339.fullmatch(text)
    if not match:
        raise TimeError(f"{text!r} is not a time: give {_TIME_FORMS}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = UTC
    if zone and zone not in "Zz":
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        if hours > 23 or minutes > 59:
            raise TimeError(f"{text!r}: no such time zone offset")
        tz = timezone((-1 if zone[0] == "-" else 1) * timedelta(hours=hours, minutes=minutes))
    try:
        at = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=tz)
    except ValueError as exc:
        raise TimeError(f"{text!r}: {exc}") from None
    # Whole seconds through datetime, the fraction added as is: a float would lose the nanoseconds.
    seconds = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    return _in_range(seconds * _S + int((fraction or "0").ljust(9, "0")), text)


def _offset(text: str, whole: str) -> int:
    try:
        return parse_duration(text)
    except TimeError as exc:
        raise TimeError(f"{whole!r}: {exc}") from None


def _in_range(ns: int, text: str) -> int:
    if not _MIN_TIME <= ns <= _MAX_TIME:
        raise TimeError(f"{text!r} is out of range: times are signed 64-bit nanoseconds since 1970")
    return ns
