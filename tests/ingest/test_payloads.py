"""Ingest payloads: every format and time format, every kind of bad input, fuzzing and round trips."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.ingest import payloads
from gateway.ingest.payloads import (
    MAX_NAME_BYTES,
    MAX_NS,
    MAX_SIZE,
    ParseOptions,
    PayloadError,
    Reading,
    Row,
    parse,
    parse_line_protocol,
    parse_sensor_object,
)

NOW = 1_700_000_000_000_000_000
T = 1_670_380_342_000_000_000  # neo's example times
OPTIONS = ParseOptions(now_ns=NOW)
FUZZ = settings(derandomize=True, max_examples=1000, deadline=None)
ROUND_TRIP = settings(derandomize=True, max_examples=100, deadline=None)


def opts(time_format: str = "ns", tz: str | None = None) -> ParseOptions:
    return ParseOptions(time_format=time_format, tz=tz, now_ns=NOW)


def refused(
    data: bytes,
    fmt: str = "json",
    options: ParseOptions = OPTIONS,
    compress: str | None = None,
    max_size: int = MAX_SIZE,
) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        parse(data, fmt, compress, options, max_size=max_size)
    assert str(info.value) == info.value.reason
    return info.value


# JSON


def test_json_single_row() -> None:
    assert parse(b'[ "my-car", 1670380342000000000, 32.1 ]', "json", None, OPTIONS) == [Reading("my-car", T, 32.1)]


def test_json_rows() -> None:
    data = b'[["my-car", 1670380342000000000, 32.1], ["my-car", 1670380343000000000, 65.4], ["b", 0, -1]]'
    assert parse(data, "json", None, OPTIONS) == [
        Reading("my-car", T, 32.1),
        Reading("my-car", T + 1_000_000_000, 65.4),
        Reading("b", 0, -1.0),
    ]


def test_json_without_time_or_with_null_time_is_now() -> None:
    assert parse(b'[["a", 1.5], ["b", null, 2]]', "json", None, OPTIONS) == [
        Reading("a", NOW, 1.5),
        Reading("b", NOW, 2.0),
    ]


def test_json_booleans_and_numeric_strings() -> None:
    data = b'[["a", 1, true], ["b", 2, false], ["c", "1670380342000000000", "-2.5e3"]]'
    assert parse(data, "json", None, OPTIONS) == [Reading("a", 1, 1.0), Reading("b", 2, 0.0), Reading("c", T, -2500.0)]


def test_json_empty_list_is_no_readings() -> None:
    assert parse(b"[]", "json", None, OPTIONS) == []
    assert parse(b'{"data": {"columns": ["name", "value"], "rows": []}}', "json", None, OPTIONS) == []


def test_json_columns_any_order_and_case() -> None:
    data = b'{"data": {"columns": ["VALUE", "Name", "time"], "rows": [[1.5, "a", 10], [2, "b", 20]]}}'
    assert parse(data, "json", None, OPTIONS) == [Reading("a", 10, 1.5), Reading("b", 20, 2.0)]


def test_json_columns_without_time() -> None:
    data = b'{"data": {"columns": ["name", "value"], "rows": [["a", 1]]}}'
    assert parse(data, "json", None, OPTIONS) == [Reading("a", NOW, 1.0)]


def test_json_big_integers_and_exponents_are_exact() -> None:
    data = b'[["a", 9223372036854775807, 12345678901234567890123], ["b", 1.6703803420e18, 1e-320]]'
    assert parse(data, "json", None, OPTIONS) == [
        Reading("a", MAX_NS, 1.2345678901234568e22),
        Reading("b", T, 1e-320),
    ]


def test_json_utf8_names_and_byte_order_mark() -> None:
    data = '\ufeff[["température/℃ 🌡", 1, 2]]'.encode()
    assert parse(data, "json", None, OPTIONS) == [Reading("température/℃ 🌡", 1, 2.0)]


@pytest.mark.parametrize(
    ("data", "row", "reason"),
    [
        (b'[["a", 1, 2], ["b", 2, "x"], ["c", 3, 4]]', 2, "row 2: value 'x' is not a number"),
        (b'[["a", 1, 2], ["b", 2, 3], ["c", 3, null]]', 3, "row 3: value null is not a number"),
        (b'[["a", 1, [2]]]', 1, "row 1: value [...] is not a number"),
        (b'[["a", 1, {"v": 2}]]', 1, "row 1: value {...} is not a number"),
        (b'[["a", 1, NaN]]', 1, "row 1: value NaN is not a finite number"),
        (b'[["a", 1, Infinity]]', 1, "row 1: value Infinity is not a finite number"),
        (b'[["a", 1, -Infinity]]', 1, "row 1: value -Infinity is not a finite number"),
        (b'[["a", 1, 1e400]]', 1, "row 1: value 1E+400 is not a finite number"),
        (b'[["a", 1, "nan"]]', 1, "row 1: value 'nan' is not a number"),
        (b"[[1, 1, 2]]", 1, "row 1: name 1 is not a string"),
        (b'[["", 1, 2]]', 1, "row 1: the name is empty"),
        (b'[["a\\u0000b", 1, 2]]', 1, "row 1: name 'a\\x00b' holds a control character"),
        (b'[["a\\u0085", 1, 2]]', 1, "row 1: name 'a\\x85' holds a control character"),
        (b'[["a\\ud800", 1, 2]]', 1, "row 1: name 'a\\ud800' holds half a surrogate pair"),
        (b'[["a", "abc", 2]]', 1, "row 1: time 'abc' is not a number of ns; send a number, or set timeformat=rfc3339"),
        (b'[["a", true, 2]]', 1, "row 1: time true is not a number of ns"),
        (b'[["a", [1], 2]]', 1, "row 1: time [...] is not a number of ns"),
        (b'[["a", -1, 2]]', 1, "row 1: time -1 is outside what the store holds (1970-01-01 to 2262-04-11 UTC)"),
        (b'[["a", 9223372036854775808, 2]]', 1, "row 1: time 9223372036854775808 is outside what the store holds"),
        (b'[["a", 1e300, 2]]', 1, "row 1: time 1E+300 is outside what the store holds"),
        (b'[["a", NaN, 2]]', 1, "row 1: time NaN is not a finite number"),
        (b'[["a", 1, 2, 3]]', 1, "row 1: expected 3 fields (name, time, value) or 2 (name, value), got 4"),
        (b'[["a", 1, 2], ["b"]]', 2, "row 2: expected 3 fields (name, time, value) or 2 (name, value), got 1"),
        (b'[["a", 1, 2], []]', 2, "row 2: expected 3 fields"),
        (b'[["a", 1, 2], 5]', 2, 'row 2: expected an array like ["name", time, value], got 5'),
        (b'[["a", 1, 2], {"name": "b"}]', 2, "row 2: expected an array like"),
        (b'{"data": {"columns": ["name", "value"], "rows": [["a", 1], ["b", 1, 2]]}}', 2, "row 2: expected 2 fields"),
        (b'{"data": {"columns": ["name", "value"], "rows": [["a", 1], "b"]}}', 2, "row 2: expected an array like"),
    ],
)
def test_json_bad_rows(data: bytes, row: int, reason: str) -> None:
    error = refused(data)
    assert error.row == row
    assert error.reason.startswith(reason), error.reason


def test_json_name_limit_is_200_bytes_of_utf8() -> None:
    ok = "é" * (MAX_NAME_BYTES // 2)
    assert parse(json.dumps([ok, 1, 2]).encode(), "json", None, OPTIONS) == [Reading(ok, 1, 2.0)]
    error = refused(json.dumps([ok + "x", 1, 2]).encode())
    assert error.row == 1
    assert "is 201 bytes of UTF-8; at most 200 are allowed" in error.reason


def test_errors_quote_long_input_cut_short() -> None:
    error = refused(json.dumps(["a", 1, "x" * 100]).encode())
    assert error.reason == f"row 1: value '{'x' * 56}... is not a number"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON: Expecting value at column 1"),
        (b'[["a", 1, 2]', "not valid JSON: Expecting ',' delimiter at column 13"),
        (b'[\n["a", 1, 2]\n["b", 1, 2]]', "not valid JSON: Expecting ',' delimiter at line 3, column 1"),
        (b"5", 'expected ["name", time, value], a list of them, or {"data": '),
        (b'"a"', 'expected ["name", time, value]'),
        (b'{"rows": []}', 'expected {"data": {"columns": ["name", "time", "value"], "rows": [[...], ...]}}'),
        (b'{"data": {"columns": ["name", "value"]}}', 'expected {"data": {"columns"'),
        (b'{"data": {"columns": ["name", "value", "unit"], "rows": []}}', "unknown field 'unit'; the fields are name"),
        (b'{"data": {"columns": ["name", 5], "rows": []}}', "unknown field 5"),
        (b'{"data": {"columns": ["name", "value", "NAME"], "rows": []}}', "field 'NAME' is given twice"),
        (b'{"data": {"columns": ["name", "time"], "rows": []}}', "the fields must include name and value"),
        (b"[" * 100_000, "arrays or objects nest too deeply"),
        (b'[["a", 1e999999999999999999999, 2]]', "number '1e999999999999999999999' is out of any range"),
        (b'\xff[["a", 1, 2]]', "the payload is not UTF-8 text: byte 0xff on line 1"),
        (b'[["a", 1, 2],\n["\xc3(", 1, 2]]', "the payload is not UTF-8 text: byte 0xc3 on line 2"),
    ],
)
def test_json_bad_payloads(data: bytes, reason: str) -> None:
    error = refused(data)
    assert error.row is None
    assert error.reason.startswith(reason), error.reason


# CSV


def test_csv_without_header() -> None:
    data = b"my-car,1670380342000000000,32.1\nmy-car,1670380343000000000,65.4\n"
    assert parse(data, "csv", None, OPTIONS) == [Reading("my-car", T, 32.1), Reading("my-car", T + 10**9, 65.4)]


def test_csv_header_any_case_and_order_blank_lines_crlf() -> None:
    data = b"\r\n VALUE , Time,name\r\n\r\n1.5,10,a\r\n  \r\n-2,20,b\r\n"
    assert parse(data, "csv", None, OPTIONS) == [Reading("a", 10, 1.5), Reading("b", 20, -2.0)]


def test_csv_header_without_time_and_short_rows() -> None:
    assert parse(b"name,value\na,1\n", "csv", None, OPTIONS) == [Reading("a", NOW, 1.0)]
    assert parse(b"a,1\nb,,2\nc, 3 , 4 \n", "csv", None, OPTIONS) == [
        Reading("a", NOW, 1.0),
        Reading("b", NOW, 2.0),
        Reading("c", 3, 4.0),
    ]


def test_csv_quoted_fields() -> None:
    data = b'"room ""1"", east","1"," 2.5 "\n'
    assert parse(data, "csv", None, OPTIONS) == [Reading('room "1", east', 1, 2.5)]


def test_csv_empty_payload_is_no_readings() -> None:
    assert parse(b"", "csv", None, OPTIONS) == []
    assert parse(b"name,time,value\n", "csv", None, OPTIONS) == []


@pytest.mark.parametrize(
    ("data", "row", "reason"),
    [
        (b"a,1,2\nb,2,x\n", 2, "line 2: value 'x' is not a number"),
        (b"a,1,2\n\n\nb,2,1_000\n", 4, "line 4: value '1_000' is not a number"),
        (b"a,1,inf\n", 1, "line 1: value 'inf' is not a number"),
        (b"a,1,1e999\n", 1, "line 1: value '1e999' is not a finite number"),
        (b"a,1,2,3\n", 1, "line 1: expected 3 fields (name, time, value) or 2 (name, value), got 4"),
        (b"a\n", 1, "line 1: expected 3 fields"),
        (b"name,time,value\na,1\n", 2, "line 2: expected 3 fields (name, time, value), got 2"),
        (b"a,2026-11-27,1\n", 1, "line 1: time '2026-11-27' is not a number of ns"),
        (b",1,2\n", 1, "line 1: the name is empty"),
        (b"a\x01,1,2\n", 1, "line 1: name 'a\\x01' holds a control character"),
        (b'a,1,2\n"b"x,1,2\n', 2, "line 2: not valid CSV: ',' expected after '\"'"),
        (b'a,1,2\n"b,1,2\n', 2, "line 2: not valid CSV: unexpected end of data"),
        (b'a,"1\n2",3\n', 2, "line 2: time '1\\n2' is not a number of ns"),
        (b"name,name,value\n", 1, "line 1: field 'name' is given twice"),
        (b"time,value\n", 1, "line 1: the fields must include name and value"),
        (b"a,1,2\nname,time,value\n", 2, "line 2: time 'time' is not a number"),
    ],
)
def test_csv_bad_rows(data: bytes, row: int, reason: str) -> None:
    error = refused(data, "csv")
    assert error.row == row
    assert error.reason.startswith(reason), error.reason


# NDJSON


def test_ndjson() -> None:
    data = b'{"name": "a", "time": 1, "value": 1.5}\n\n{"NAME": "b", "Value": true}\r\n'
    data += b'{"value": 3, "name": "c", "TIME": "5"}'
    assert parse(data, "ndjson", None, OPTIONS) == [Reading("a", 1, 1.5), Reading("b", NOW, 1.0), Reading("c", 5, 3.0)]


@pytest.mark.parametrize(
    ("data", "row", "reason"),
    [
        (b'{"name": "a", "value": 1}\n{"name": "b"}', 2, "line 2: the fields must include name and value"),
        (b'\n\n{"name": "a", "value": 1, "unit": "C"}', 3, "line 3: unknown field 'unit'"),
        (b'{"name": "a", "value": 1, "NAME": "b"}', 1, "line 1: field 'NAME' is given twice"),
        (b'{"name": "a", "value": 1}\n[1]', 2, 'line 2: expected an object like {"name": "a", "value": 2}, got [...]'),
        (b'{"name": "a", "value": 1}\n{"name": "a", "value": 1', 2, "line 2: not valid JSON: Expecting ',' delimiter"),
        (b'{"name": "a", "value": "x"}', 1, "line 1: value 'x' is not a number"),
        (b'{"name": "a", "value": 1, "time": -5}', 1, "line 1: time -5 is outside what the store holds"),
    ],
)
def test_ndjson_bad_lines(data: bytes, row: int, reason: str) -> None:
    error = refused(data, "ndjson")
    assert error.row == row
    assert error.reason.startswith(reason), error.reason


# Time formats


@pytest.mark.parametrize(
    ("time_format", "raw", "expected"),
    [
        ("ns", "1670380342000000000", T),
        ("ns", "0", 0),
        ("ns", "9223372036854775807", MAX_NS),
        ("ns", "1.5", 2),  # rounded half to even
        ("ns", "2.5", 2),
        ("ns", "2.5000001", 3),
        ("us", "1670380342000000", T),
        ("us", "1.0005", 1_000),
        ("us", "1.0015", 1_002),
        ("ms", "1670380342000", T),
        ("ms", "1670380342123.456789", T + 123_456_789),
        ("s", "1670380342", T),
        ("s", "1670380342.123456789", T + 123_456_789),
        ("s", "1670380342.1234567895", T + 123_456_790),
        ("s", "1.670380342e9", T),
        ("s", "9223372036.854775807", MAX_NS),
        ("s", "-0", 0),
        ("s", "0.0000000001", 0),
        ("s", "1e-999999999", 0),
    ],
)
def test_numeric_time_formats_are_exact(time_format: str, raw: str, expected: int) -> None:
    for data, fmt in [
        (f'["a", {raw}, 1]'.encode(), "json"),
        (f'["a", "{raw}", 1]'.encode(), "json"),
        (f"a,{raw},1".encode(), "csv"),
        (f'{{"name": "a", "time": {raw}, "value": 1}}'.encode(), "ndjson"),
    ]:
        assert parse(data, fmt, None, opts(time_format)) == [Reading("a", expected, 1.0)], (data, fmt)


@pytest.mark.parametrize(
    ("time_format", "raw"), [("s", "9223372036.854775808"), ("ms", "1670380342000000000"), ("s", "-0.5")]
)
def test_numeric_times_out_of_range(time_format: str, raw: str) -> None:
    error = refused(f"a,{raw},1".encode(), "csv", opts(time_format))
    assert error.reason == (
        f"line 1: time {raw!r} is outside what the store holds (1970-01-01 to 2262-04-11 UTC); "
        f"is timeformat={time_format} right?"
    )


@pytest.mark.parametrize("time_format", ["rfc3339", "default"])
@pytest.mark.parametrize(
    ("raw", "tz", "expected"),
    [
        ("2026-11-27T20:00:00Z", None, 1_795_809_600_000_000_000),
        ("2026-11-27T20:00:00.123456789Z", None, 1_795_809_600_123_456_789),
        ("2026-11-27 20:00:00.000000001z", None, 1_795_809_600_000_000_001),
        ("2026-11-27t20:00:00.1Z", None, 1_795_809_600_100_000_000),
        ("2026-11-27T20:00:00.12+00:00", None, 1_795_809_600_120_000_000),
        ("2026-11-28T05:00:00.999999999+09:00", None, 1_795_809_600_999_999_999),
        ("2026-11-27T14:30:00-05:30", None, 1_795_809_600_000_000_000),
        ("2026-11-27T20:00:00-00:00", "Asia/Tokyo", 1_795_809_600_000_000_000),  # an offset beats tz
        ("2026-11-27 20:00:00", None, 1_795_809_600_000_000_000),
        ("2026-11-27 20:00:00", "UTC", 1_795_809_600_000_000_000),
        (" 2026-11-27 20:00:00 ", "UTC", 1_795_809_600_000_000_000),
        ("2026-11-27 20:00:00.5", "Etc/UTC", 1_795_809_600_500_000_000),
        ("2026-11-28 05:00:00", "Asia/Tokyo", 1_795_809_600_000_000_000),
        # Europe/Berlin: winter +01:00, summer +02:00, the change on 2026-03-29 and 2026-10-25
        ("2026-11-27 21:00:00.123456789", "Europe/Berlin", 1_795_809_600_123_456_789),
        ("2026-07-01 14:00:00", "Europe/Berlin", 1_782_907_200_000_000_000),
        ("2026-03-29 01:30:00", "Europe/Berlin", 1_774_744_200_000_000_000),
        ("2026-03-29 02:30:00", "Europe/Berlin", 1_774_747_800_000_000_000),  # skipped: read as +01:00
        ("2026-03-29 03:30:00", "Europe/Berlin", 1_774_747_800_000_000_000),
        ("2026-10-25 02:30:00", "Europe/Berlin", 1_792_888_200_000_000_000),  # twice: the first, +02:00
        ("2026-10-25 03:30:00", "Europe/Berlin", 1_792_895_400_000_000_000),
        ("2026-03-08 03:30:00", "America/New_York", 1_772_955_000_000_000_000),
        ("2026-11-01 01:30:00", "America/New_York", 1_793_511_000_000_000_000),  # twice: the first, EDT
        ("1970-01-01T00:00:00Z", None, 0),
        ("1970-01-01T01:00:00+01:00", None, 0),
        ("2262-04-11T23:47:16.854775807Z", None, MAX_NS),
        ("2024-02-29T00:00:00Z", None, 1_709_164_800_000_000_000),
    ],
)
def test_time_strings(time_format: str, raw: str, tz: str | None, expected: int) -> None:
    options = opts(time_format, tz)
    assert parse(f'["a", "{raw}", 1]'.encode(), "json", None, options) == [Reading("a", expected, 1.0)]
    assert parse(f"a,{raw},1".encode(), "csv", None, options) == [Reading("a", expected, 1.0)]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("2026-11-27T20:00:00.1234567891Z", "is not like 2026-11-27T20:00:00.123456789Z or 2026-11-27 20:00:00"),
        ("2026-11-27", "is not like"),
        ("2026-11-27T20:00Z", "is not like"),
        ("27.11.2026 20:00:00", "is not like"),
        ("2026-11-27T20:00:00+0100", "is not like"),
        ("2026-13-01T00:00:00Z", "is not a valid time: month must be in 1..12"),
        ("2026-02-29T00:00:00Z", "is not a valid time: day is out of range for month"),
        ("2026-11-27T24:00:00Z", "is not a valid time: hour must be in 0..23"),
        ("2026-12-31T23:59:60Z", "is not a valid time: second must be in 0..59"),
        ("2026-11-27T20:00:00+24:00", "is not a valid time: offset +24:00 is not between -23:59 and +23:59"),
        ("2026-11-27T20:00:00-01:60", "is not a valid time: offset -01:60 is not between"),
        ("0000-01-01T00:00:00Z", "is not a valid time: year 0 is out of range"),
        ("1969-12-31T23:59:59.999999999Z", "is outside what the store holds (1970-01-01 to 2262-04-11 UTC)"),
        ("1970-01-01T00:59:59+01:00", "is outside what the store holds"),
        ("2262-04-11T23:47:16.854775808Z", "is outside what the store holds"),
        ("9999-12-31T23:59:59Z", "is outside what the store holds"),
    ],
)
def test_bad_time_strings(raw: str, reason: str) -> None:
    error = refused(f"a,2026-11-27T20:00:00Z,1\nb,{raw},1".encode(), "csv", opts("rfc3339"))
    assert error.row == 2
    assert error.reason.startswith(f"line 2: time {raw!r} {reason}"), error.reason


def test_numbers_are_refused_when_times_are_strings() -> None:
    error = refused(b'["a", 1670380342, 1]', "json", opts("rfc3339"))
    assert error.reason == (
        "row 1: time 1670380342 is not a string, but timeformat=rfc3339 expects one like 2026-11-27T20:00:00Z; "
        "for numbers set timeformat to ns, us, ms or s"
    )


def test_missing_times_are_now_in_every_time_format() -> None:
    for time_format in ["ns", "s", "rfc3339", "default"]:
        assert parse(b'["a", 1]', "json", None, opts(time_format)) == [Reading("a", NOW, 1.0)]


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "Local", "", "/etc/localtime", "../etc", "Europe"])
def test_unknown_time_zone(tz: str) -> None:
    error = refused(b"[]", options=opts(tz=tz))
    assert error.reason == f"unknown time zone {tz!r}; use an IANA name such as Europe/Berlin, or UTC"


def test_unknown_time_format_and_format() -> None:
    assert refused(b"[]", options=opts("minutes")).reason == (
        "unknown timeformat 'minutes'; use one of ns, us, ms, s, rfc3339, default"
    )
    assert refused(b"[]", "xml").reason == "unknown format 'xml'; use json, csv, ndjson or line"


# Compression and limits


def test_gzip() -> None:
    data = gzip.compress(b'[["a", 1, 2]]', mtime=0)
    assert parse(data, "json", "gzip", OPTIONS) == [Reading("a", 1, 2.0)]


def test_gzip_of_several_members() -> None:
    data = gzip.compress(b"a,1,2\n", mtime=0) + gzip.compress(b"b,3,4\n", mtime=0)
    assert parse(data, "csv", "gzip", OPTIONS) == [Reading("a", 1, 2.0), Reading("b", 3, 4.0)]


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(bytes(17 * 1024 * 1024))
    assert len(bomb) < 20_000
    assert refused(bomb, "csv", compress="gzip").reason == (
        "the gzip payload inflates to more than 16,777,216 bytes; send less at once"
    )


def test_size_limits_are_inclusive() -> None:
    payload = b'["a", 1, 2]' + b" " * 100  # compresses well
    assert parse(payload, "json", None, OPTIONS, max_size=len(payload)) == [Reading("a", 1, 2.0)]
    assert parse(gzip.compress(payload, mtime=0), "json", "gzip", OPTIONS, max_size=len(payload)) == [
        Reading("a", 1, 2.0)
    ]
    assert refused(payload, max_size=len(payload) - 1).reason == (
        f"the payload is {len(payload)} bytes, over the limit of {len(payload) - 1}; send less at once"
    )
    two = gzip.compress(payload, mtime=0) + gzip.compress(b" ", mtime=0)
    assert refused(two, compress="gzip", max_size=len(payload)).reason.startswith("the gzip payload inflates")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the gzip payload is cut short; send the whole gzip file"),
        (gzip.compress(b"a,1,2\n", mtime=0)[:-3], "the gzip payload is cut short"),
        (b"a,1,2\n", "the payload is not valid gzip (Error -3 while decompressing data: incorrect header check)"),
        (gzip.compress(b"a,1,2\n", mtime=0) + b"junk", "the payload is not valid gzip"),
        (gzip.compress(b"\xff", mtime=0), "the payload is not UTF-8 text: byte 0xff on line 1"),
    ],
)
def test_bad_gzip(data: bytes, reason: str) -> None:
    assert refused(data, "csv", compress="gzip").reason.startswith(reason)


def test_unknown_compression() -> None:
    assert refused(b"[]", compress="zstd").reason == "unknown compression 'zstd'; use gzip, or none"


# Line protocol


def lp(text: str, time_format: str = "ns", compress: str | None = None) -> list[Row]:
    data = text.encode()
    return parse_line_protocol(gzip.compress(data, mtime=0) if compress else data, compress, opts(time_format))


def test_line_protocol_basics() -> None:
    assert lp("cpu,host=a usage=1") == [Reading("cpu.usage,host=a", NOW, 1.0)]
    assert lp("cpu,host=a,dc=x usage=1,idle=2 1556813561098000000") == [
        Reading("cpu.usage,dc=x,host=a", 1_556_813_561_098_000_000, 1.0),
        Reading("cpu.idle,dc=x,host=a", 1_556_813_561_098_000_000, 2.0),
    ]
    assert lp("mem free=5") == [Reading("mem.free", NOW, 5.0)]


def test_line_protocol_field_types() -> None:
    line = "m f1=1,f2=1.0,f3=-1.234456e+78,f4=1E-3,f5=.5,f6=5.,f7=1i,f8=-9223372036854775808i,f9=18446744073709551615u"
    assert [v for _n, _t, v in lp(line)] == [1.0, 1.0, -1.234456e78, 0.001, 0.5, 5.0, 1.0, -(2.0**63), 2.0**64]
    words = ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]
    booleans = "m " + ",".join(f"b{i}={word}" for i, word in enumerate(words))
    assert [value for _name, _time, value in lp(booleans)] == [1.0] * 5 + [0.0] * 5


def test_line_protocol_string_fields_are_skipped() -> None:
    assert lp('myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000') == []
    assert lp('m s="a \\"b\\", c=d e\\\\",x=1,t="",y=2i') == [Reading("m.x", NOW, 1.0), Reading("m.y", NOW, 2.0)]


@pytest.mark.parametrize(
    ("line", "name"),
    [
        # the examples of the InfluxDB reference, "Special characters" and "Escaping backslashes"
        ("my\\ Measurement fieldKey=1", "my Measurement.fieldKey"),
        ("my\\,Measurement fieldKey=1", "my,Measurement.fieldKey"),
        ("my=Measurement fieldKey=1", "my=Measurement.fieldKey"),
        ('my"Measurement fieldKey=1', 'my"Measurement.fieldKey'),
        (
            "myMeasurement,tag\\ Key1=tag\\ Value1,tag\\ Key2=tag\\ Value2 fieldKey=1",
            "myMeasurement.fieldKey,tag Key1=tag Value1,tag Key2=tag Value2",
        ),
        ("myMeasurement,tagKey=🍭 fieldKey=1", "myMeasurement.fieldKey,tagKey=🍭"),
        (
            "myMeasurement,tag\\=Key=tag\\,value field\\=Key\\ with\\ spaces=1",
            "myMeasurement.field=Key with spaces,tag=Key=tag,value",
        ),
        ('myMeasurement,tagKey="quoted" f=1', 'myMeasurement.f,tagKey="quoted"'),
        ("my\\Measurement f=1", "my\\Measurement.f"),
        ("my\\\\Measurement f=1", "my\\Measurement.f"),
        ("my\\\\\\Measurement f=1", "my\\\\Measurement.f"),
        ("my\\\\\\\\Measurement f=1", "my\\\\Measurement.f"),
        ("m\\=x f=1", "m\\=x.f"),  # '=' needs no escape in a measurement, so the backslash stays
        ("m,k=a\\\\ f=1", "m.f,k=a\\"),
        ("m fi\\eld=1", "m.fi\\eld"),
        ("m,b=2,a=1,c=0 f=1", "m.f,a=1,b=2,c=0"),
    ],
)
def test_line_protocol_escaping(line: str, name: str) -> None:
    assert lp(line) == [Reading(name, NOW, 1.0)]


def test_line_protocol_comments_blank_lines_and_whitespace() -> None:
    text = "# a comment\n\n   # an indented comment\n  cpu  usage=1   5  \r\n\t\ncpu usage=2 6\n"
    assert lp(text) == [Reading("cpu.usage", 5, 1.0), Reading("cpu.usage", 6, 2.0)]


@pytest.mark.parametrize(("time_format", "factor"), [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 10**9)])
def test_line_protocol_precision(time_format: str, factor: int) -> None:
    assert lp("m f=1 1556813561", time_format) == [Reading("m.f", 1_556_813_561 * factor, 1.0)]


def test_line_protocol_gzip_and_time_format_check() -> None:
    assert lp("m f=1 5", compress="gzip") == [Reading("m.f", 5, 1.0)]
    with pytest.raises(PayloadError) as info:
        lp("m f=1", "rfc3339")
    assert info.value.reason == "line protocol timestamps are numbers: set timeformat to ns, us, ms or s, not rfc3339"


@pytest.mark.parametrize(
    ("text", "row", "reason"),
    [
        ("cpu", 1, "line 1: expected a space, then the fields (field=value) at column 4"),
        ("# c\n\ncpu usage=1\ncpu", 4, "line 4: expected a space, then the fields"),
        (",host=a f=1", 1, "line 1: expected a measurement name at column 1"),
        ("cpu,host f=1", 1, "line 1: expected '=' after tag key 'host' at column 9"),
        ("cpu,host= f=1", 1, "line 1: expected a value for tag 'host' at column 10"),
        ("cpu,=a f=1", 1, "line 1: expected a tag key at column 5"),
        ("cpu f", 1, "line 1: expected '=' after field key 'f' at column 6"),
        ("cpu =1", 1, "line 1: expected a field key at column 5"),
        ("cpu f=", 1, "line 1: expected a value for field 'f' (1.5, 1i, true or \"text\") at column 7"),
        ('cpu f="abc', 1, "line 1: expected a value for field 'f'"),
        ("cpu f=1,", 1, "line 1: expected a field key at column 9"),
        ("cpu f=abc", 1, "line 1: field 'f': 'abc' is not a finite number, an integer (1i, 1u), a boolean"),
        ("cpu f=yes", 1, "line 1: field 'f': 'yes' is not a finite number"),
        ("cpu f=1e999", 1, "line 1: field 'f': '1e999' is not a finite number"),
        ("cpu f=1.5i", 1, "line 1: field 'f': '1.5i' is not a finite number"),
        ("cpu f=9223372036854775808i", 1, "line 1: field 'f': 9223372036854775808i is outside the range of a signed"),
        ("cpu f=-1u", 1, "line 1: field 'f': -1u is outside the range of an unsigned 64-bit integer"),
        ("cpu f=18446744073709551616u", 1, "line 1: field 'f': 18446744073709551616u is outside the range"),
        ('cpu f="a"b', 1, "line 1: expected a space and a timestamp (an integer), or the end of the line at column 10"),
        ("cpu f=1 12x", 1, "line 1: expected a space and a timestamp"),
        ("cpu f=1 1.5", 1, "line 1: expected a space and a timestamp"),
        ("cpu f=1 1 2", 1, "line 1: expected a space and a timestamp"),
        ("cpu f=1 -1", 1, "line 1: time -1 is outside what the store holds"),
        ("cpu f=1 9223372036854775808", 1, "line 1: time 9223372036854775808 is outside what the store holds"),
        ("cpu\\ f=1", 1, "line 1: expected a space, then the fields"),
        ("cpu\\", 1, "line 1: expected a space, then the fields (field=value) at column 4"),
        ("cpu,host=a\x01 f=1", 1, "line 1: name 'cpu.f,host=a\\x01' holds a control character"),
        ("c" * 200 + " f=1", 1, "line 1: name 'ccc"),
    ],
)
def test_line_protocol_errors(text: str, row: int, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        lp(text)
    assert info.value.row == row
    assert info.value.reason.startswith(reason), info.value.reason


def test_line_protocol_is_all_or_nothing() -> None:
    with pytest.raises(PayloadError) as info:
        lp("m f=1\nm f=2\nm f=x\nm f=4")
    assert info.value.row == 3


# Sensor objects


def sensor(data: bytes, options: ParseOptions = OPTIONS) -> list[Reading]:
    return parse_sensor_object("kitchen", data, options)


def test_sensor_object() -> None:
    assert sensor(b'{"temp": 21.5, "door": true, "count": 3}') == [
        Reading("kitchen.temp", NOW, 21.5),
        Reading("kitchen.door", NOW, 1.0),
        Reading("kitchen.count", NOW, 3.0),
    ]


def test_sensor_object_time() -> None:
    assert sensor(b'{"ts": 1670380342, "temp": 1}', opts("s")) == [Reading("kitchen.temp", T, 1.0)]
    assert sensor(b'{"temp": 1, "ts": 1670380342123}', opts("ms")) == [Reading("kitchen.temp", T + 123_000_000, 1.0)]
    assert sensor(b'{"temp": 1, "ts": "2026-11-27T20:00:00.5Z"}') == [
        Reading("kitchen.temp", 1_795_809_600_500_000_000, 1.0)
    ]
    assert sensor(b'{"temp": 1, "ts": "2026-11-27 21:00:00"}', opts(tz="Europe/Berlin")) == [
        Reading("kitchen.temp", 1_795_809_600_000_000_000, 1.0)
    ]
    assert sensor(b'{"temp": 1, "ts": null}') == [Reading("kitchen.temp", NOW, 1.0)]
    assert sensor(b'{"ts": 5}') == []
    assert sensor(b"{}") == []


@pytest.mark.parametrize(
    ("data", "options", "reason"),
    [
        (b'{"temp": 1, "status": "ok"}', OPTIONS, "field 'status': value 'ok' is a string; a sensor object holds"),
        (b'{"temp": {"c": 1}}', OPTIONS, "field 'temp': value {...} is not a number"),
        (b'{"temp": [1, 2]}', OPTIONS, "field 'temp': value [...] is not a number"),
        (b'{"temp": null}', OPTIONS, "field 'temp': value null is not a number"),
        (b'{"temp": NaN}', OPTIONS, "field 'temp': value NaN is not a finite number"),
        (b'{"": 1}', OPTIONS, "field '': a field name must not be empty"),
        (b'{"te\\nmp": 1}', OPTIONS, "field 'te\\nmp': name 'kitchen.te\\nmp' holds a control character"),
        (b'{"temp": 1, "ts": "yesterday"}', OPTIONS, "field 'ts': time 'yesterday' is not like 2026-11-27T20:00:00"),
        (b'{"temp": 1, "ts": true}', OPTIONS, "field 'ts': time true is not a number of ns"),
        (b'{"temp": 1, "ts": 5}', opts("rfc3339"), "field 'ts': time 5 is not a string, but timeformat=rfc3339"),
        (b'{"temp": 1, "ts": 1e12}', opts("s"), "field 'ts': time 1E+12 is outside what the store holds"),
        (b"[1, 2]", OPTIONS, 'expected a JSON object of numeric fields, like {"temp": 21.5, "door": true}'),
        (b"{", OPTIONS, "not valid JSON: Expecting property name enclosed in double quotes at column 2"),
    ],
)
def test_sensor_object_refused(data: bytes, options: ParseOptions, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        sensor(data, options)
    assert info.value.row is None
    assert info.value.reason.startswith(reason), info.value.reason


def test_sensor_object_size_limit() -> None:
    with pytest.raises(PayloadError, match="over the limit of 4"):
        parse_sensor_object("d", b'{"a": 1}', OPTIONS, max_size=4)


# Fuzzing: whatever arrives, the parsers answer with readings or a PayloadError, never anything else.


def check(call: Callable[[], Sequence[Row]]) -> None:
    try:
        readings = call()
    except PayloadError as e:
        assert e.reason
        assert e.row is None or e.row >= 1
        return
    for name, time_ns, value in readings:
        assert name
        assert len(name.encode()) <= MAX_NAME_BYTES
        assert 0 <= time_ns <= MAX_NS
        assert math.isfinite(value)


FORMATS = st.sampled_from(["json", "csv", "ndjson", "line"])
TIME_FORMATS = st.sampled_from(["ns", "us", "ms", "s", "rfc3339", "default"])


@FUZZ
@given(data=st.binary(max_size=200), fmt=FORMATS, time_format=TIME_FORMATS)
def test_fuzz_bytes(data: bytes, fmt: str, time_format: str) -> None:
    check(lambda: parse(data, fmt, None, opts(time_format)))
    check(lambda: parse(data, fmt, "gzip", opts(time_format)))
    check(lambda: parse(gzip.compress(data, mtime=0), fmt, "gzip", opts(time_format)))
    check(lambda: parse_sensor_object("d", data, opts(time_format)))


@FUZZ
@given(text=st.text(alphabet='ab,"\n\r 0123456789.eE+-:TZ_\\', max_size=60), time_format=TIME_FORMATS)
def test_fuzz_csv_like_text(text: str, time_format: str) -> None:
    check(lambda: parse(text.encode(), "csv", None, opts(time_format, "Europe/Berlin")))


@FUZZ
@given(text=st.text(alphabet='[]{}",:\n 0123456789.eE+-TZnametiuvlrsfNIy\\', max_size=60), fmt=FORMATS)
def test_fuzz_json_like_text(text: str, fmt: str) -> None:
    check(lambda: parse(text.encode(), fmt, None, OPTIONS))
    check(lambda: parse_sensor_object("d", text.encode(), opts("rfc3339")))


@FUZZ
@given(text=st.text(alphabet='cpu,= \\"\n#0123456789.eEtrfaliu+-\t', max_size=60), time_format=TIME_FORMATS)
def test_fuzz_line_protocol_like_text(text: str, time_format: str) -> None:
    check(lambda: parse_line_protocol(text.encode(), None, opts(time_format)))


# Round trips: readings written by other software in each format parse back to the same readings.

NAMES = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)
READINGS = st.lists(
    st.builds(Reading, NAMES, st.integers(0, MAX_NS), st.floats(allow_nan=False, allow_infinity=False)), max_size=8
)


@ROUND_TRIP
@given(readings=READINGS)
def test_csv_round_trip(readings: list[Reading]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "time", "value"])
    writer.writerows([r.name, r.time_ns, repr(r.value)] for r in readings)
    assert parse(out.getvalue().encode(), "csv", None, OPTIONS) == readings


@ROUND_TRIP
@given(readings=READINGS, columns=st.booleans())
def test_json_round_trip(readings: list[Reading], columns: bool) -> None:
    rows = [[r.name, r.time_ns, r.value] for r in readings]
    document = {"data": {"columns": ["NAME", "TIME", "VALUE"], "rows": rows}} if columns else rows
    assert parse(json.dumps(document).encode(), "json", None, OPTIONS) == readings


@ROUND_TRIP
@given(readings=READINGS)
def test_ndjson_round_trip(readings: list[Reading]) -> None:
    lines = [json.dumps({"value": r.value, "Name": r.name, "time": r.time_ns}, ensure_ascii=False) for r in readings]
    assert parse("\n".join(lines).encode(), "ndjson", None, OPTIONS) == readings


@ROUND_TRIP
@given(time_ns=st.integers(0, MAX_NS), offset=st.integers(-1439, 1439), space=st.booleans())
def test_time_string_round_trip(time_ns: int, offset: int, space: bool) -> None:
    zone = timezone(timedelta(minutes=offset))
    wall = datetime.fromtimestamp(time_ns // 10**9, zone)
    sign, minutes = ("-" if offset < 0 else "+"), abs(offset)
    text = wall.strftime("%Y-%m-%d" + (" " if space else "T") + "%H:%M:%S")
    text += f".{time_ns % 10**9:09d}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    assert parse(f"a,{text},1".encode(), "csv", None, opts("rfc3339")) == [Reading("a", time_ns, 1.0)]


@ROUND_TRIP
@given(
    seconds=st.integers(0, 4_102_444_800),  # up to 2100
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]),
)
def test_local_time_round_trip(seconds: int, tz: str) -> None:
    wall = datetime.fromtimestamp(seconds, ZoneInfo(tz))
    assume(wall.fold == 0)  # the second of two equal wall times reads as the first
    text = wall.strftime("%Y-%m-%d %H:%M:%S")
    assert parse(f"a,{text},1".encode(), "csv", None, opts("default", tz)) == [Reading("a", seconds * 10**9, 1.0)]


def lp_escape(text: str, specials: str) -> str:
    for char in "\\" + specials:
        text = text.replace(char, "\\" + char)
    return text


PARTS = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=6)  # names stay < 200 bytes
FIELD_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: (repr(v), v)),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: (f"{v}i", float(v))),
    st.integers(0, 2**64 - 1).map(lambda v: (f"{v}u", float(v))),
    st.sampled_from([("t", 1.0), ("True", 1.0), ("FALSE", 0.0), ("f", 0.0)]),
    PARTS.map(lambda s: ('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"', None)),
)


@ROUND_TRIP
@given(
    measurement=PARTS.filter(lambda m: not m.startswith("#")),
    tags=st.dictionaries(PARTS, PARTS, max_size=2),
    fields=st.lists(st.tuples(PARTS, FIELD_VALUES), min_size=1, max_size=4),
    time_ns=st.none() | st.integers(0, MAX_NS),
)
def test_line_protocol_round_trip(
    measurement: str, tags: dict[str, str], fields: list[tuple[str, tuple[str, float | None]]], time_ns: int | None
) -> None:
    line = lp_escape(measurement, ", ")
    line += "".join(f",{lp_escape(k, ',= ')}={lp_escape(v, ',= ')}" for k, v in tags.items())
    line += " " + ",".join(f"{lp_escape(k, ',= ')}={text}" for k, (text, _) in fields)
    line += "" if time_ns is None else f" {time_ns}"
    series = "".join(f",{k}={v}" for k, v in sorted(tags.items()))
    expected = [
        Reading(f"{measurement}.{k}{series}", NOW if time_ns is None else time_ns, value)
        for k, (_, value) in fields
        if value is not None
    ]
    assert lp(line) == expected


# The fast JSON path (orjson) and the exact parser agree on everything the fast path accepts.

JSON_VALUES = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63 - 1) | st.booleans()
JSON_ROWS = st.lists(
    st.tuples(st.text(min_size=1, max_size=12), st.integers(-(2**40), 2**63), JSON_VALUES), min_size=1, max_size=5
)


@FUZZ
@given(rows=JSON_ROWS, time_format=st.sampled_from(["ns", "us", "ms", "s"]), single=st.booleans())
def test_the_fast_json_path_agrees_with_the_exact_parser(
    rows: list[tuple[str, int, object]], time_format: str, single: bool
) -> None:
    document: object = list(rows[0]) if single else [list(row) for row in rows]
    data = json.dumps(document).encode()
    options = opts(time_format)
    fast = payloads._parse_json_fast(data, payloads._UNIT_NS[time_format])
    try:
        exact = payloads._PARSERS["json"](data.decode(), payloads._clock(options))
    except PayloadError as error:
        assert fast is None  # never accepts what the exact parser refuses
        with pytest.raises(PayloadError, match=re.escape(error.reason)):
            parse(data, "json", None, options)
        return
    if fast is not None:
        assert fast == exact
    assert parse(data, "json", None, options) == exact
