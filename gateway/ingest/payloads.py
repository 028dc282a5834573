"""Ingest payloads: the bytes of an MQTT message in, readings out (machbase-neo's MQTT write formats).

Pure functions: no I/O and no clock; the arrival time comes in as `ParseOptions.now_ns`. A payload is taken
whole or not at all: one bad row raises `PayloadError` naming the row, and nothing of the message is stored.

Formats (`parse`):

- `json`: `["name", time, value]`, or `["name", value]` (time: now), or a list of such rows, or
  `{"data": {"columns": ["name", "time", "value"], "rows": [[...], ...]}}` (columns in any order and case; time
  may be left out).
- `csv`: `name,time,value` lines, or `name,value` (time: now). An optional first line names the columns (any order,
  any case). Blank lines are skipped; quoting as RFC 4180 (strict).
- `ndjson`: one object per line with the keys name, time, value (any case); time may be left out.
- `line`: InfluxDB line protocol; see `parse_line_protocol`.

Rows:

- Names are non-empty strings of at most `MAX_NAME_BYTES` (200) bytes of UTF-8, without control characters.
- Values are numbers, or strings holding a decimal number (CSV has nothing else, and some JSON encoders quote
  numbers); JSON booleans are 1.0 and 0.0. NaN and infinities are refused: they are not readings.
- Times: a missing, null or empty time is the arrival time. Otherwise `ParseOptions.time_format` says what they are:
  `ns` (default), `us`, `ms`, `s`: numbers or numeric strings, fractions allowed, rounded half to even to whole
  nanoseconds, computed exactly (decimal, not binary floating point); `rfc3339` and `default` (neo's
  `2006-01-02 15:04:05.999999999` layout): strings; both accept `2026-11-27T20:00:00.123456789Z` and
  `2026-11-27 20:00:00`, a 'T' or a space between date and time, up to 9 fraction digits kept exactly, and an
  optional `Z` or `+hh:mm` offset. Times without an offset are in `ParseOptions.tz` (an IANA name; default UTC):
  an ambiguous local time (when clocks go back) is the first of the two, a time skipped when clocks go forward is
  read with the offset in force before the change (zoneinfo's fold=0, as Go does). A time must lie within what
  the store holds: 1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z (int64 nanoseconds).

Limits: a payload of more than `max_size` bytes (16 MiB), or a gzip payload inflating to more, is refused; gzip is
inflated incrementally, so a gzip bomb costs at most `max_size` of memory. A UTF-8 byte order mark is skipped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import NamedTuple
from zoneinfo import ZoneInfo

import orjson

MAX_SIZE = 16 * 1024 * 1024
MAX_NAME_BYTES = 200
MAX_NS = 2**63 - 1
TIME_FORMATS = ("ns", "us", "ms", "s", "rfc3339", "default")

_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_COLUMNS = ("name", "time", "value")
_COLUMNS_BY_COUNT = {3: _COLUMNS, 2: ("name", "value")}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)?", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Precise enough that scaling a time to nanoseconds rounds only once, at the end.
_EXACT = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN)
_BOM = b"\xef\xbb\xbf"


class Reading(NamedTuple):
    name: str
    time_ns: int
    value: float


# What the parsers return: Readings, or plain (name, time ns, value) tuples from the fast JSON path.
Row = tuple[str, int, float]


class PayloadError(Exception):
    """A message that cannot be stored. `reason` tells its sender what is wrong and what to do."""

    def __init__(self, reason: str, row: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.row = row  # 1-based row (JSON) or line (CSV, NDJSON, line protocol) of the problem, if in one


@dataclass(frozen=True, slots=True)
class ParseOptions:
    time_format: str = "ns"
    tz: str | None = None  # IANA zone of time strings without an offset; None: UTC
    now_ns: int = 0  # arrival time: the time of rows that have none


def parse(data: bytes, fmt: str, compress: str | None, options: ParseOptions, *, max_size: int = MAX_SIZE) -> list[Row]:
    """The readings in a payload of format `fmt` (json, csv, ndjson or line), gzip-compressed if `compress`."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise PayloadError(f"unknown format {fmt!r}; use json, csv, ndjson or line")
    unit_ns = _UNIT_NS.get(options.time_format)
    if fmt == "json" and compress is None and unit_ns and options.tz is None and len(data) <= max_size:
        rows = _parse_json_fast(data, unit_ns)
        if rows is not None:
            return rows
    clock = _clock(options)
    return list(parser(_text(data, compress, max_size), clock))


def _parse_json_fast(data: bytes, unit_ns: int) -> list[Row] | None:
    """What sensors send nearly always, `["name", <int time>, <number>]` or a list of them, at a fraction of the
    exact parser's cost: orjson, plain types, integer times (exact in any unit). None for anything else, and for
    anything wrong: the exact parser then decides, with its row numbers and reasons. Results are the same: both
    round a decimal value to the nearest float."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not list or not document:
        return None
    rows = [document] if type(document[0]) is str else document
    known = _NAMES
    out: list[Row] = []
    for row in rows:
        if type(row) is not list or len(row) != 3:
            return None
        name, time_ns, value = row
        if type(name) is not str or type(time_ns) is not int:
            return None
        # The known copy of the name: its readings then share one string while they wait to be stored.
        name = known.get(name) or _valid_name(name)
        if name is None:
            return None
        time_ns *= unit_ns
        if not 0 <= time_ns <= MAX_NS:
            return None
        kind = type(value)
        if kind is not float:
            if kind is not int and kind is not bool:
                return None
            value = float(value)
        elif not math.isfinite(value):
            return None
        out.append((name, time_ns, value))
    return out


# Names already found valid: sensors send the same few over and over (bounded).
_NAMES: dict[str, str] = {}


def _valid_name(name: str) -> str | None:
    try:
        _name(name)
    except PayloadError:
        return None
    if len(_NAMES) >= 4096:
        _NAMES.clear()
    _NAMES[name] = name
    return name


def parse_line_protocol(
    data: bytes, compress: str | None, options: ParseOptions, *, max_size: int = MAX_SIZE
) -> list[Row]:
    """The readings in InfluxDB line protocol; timestamps are in units of `options.time_format` (ns, us, ms, s).

    `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, one point a line; `#` starts a comment
    line. Each numeric field is a reading named `<measurement>.<field>`, followed by the tags as `,tag=value`
    sorted by tag key (like line protocol's series key): `cpu,host=a,dc=x usage=1` -> `cpu.usage,dc=x,host=a`.
    Names are not escaped, so a ',' or '=' inside a tag makes a name that reads ambiguously, but stays the same
    for the same point. Floats, integers (`1i`, `1u`) and booleans (t, true, f, false, ...; 1.0 and 0.0) are
    readings; string fields are skipped, since the store holds numbers: a line of only strings adds nothing.
    """
    return parse(data, "line", compress, options, max_size=max_size)


def parse_sensor_object(device: str, data: bytes, options: ParseOptions, *, max_size: int = MAX_SIZE) -> list[Reading]:
    """The readings in `{"temp": 21.5, "door": true, "ts": ...}` from `sensors/<device>`: `<device>.<field>`.

    `ts` (optional; default the arrival time) is a number in units of `options.time_format`, or a time string
    (see the module's doc). Every other field must be a number or a boolean: a string, null, object or array
    refuses the whole message.
    """
    clock = _clock(options)
    document = _load_json(_text(data, None, max_size))
    if not isinstance(document, dict):
        raise PayloadError('expected a JSON object of numeric fields, like {"temp": 21.5, "door": true}')
    ts = document.pop("ts", None)
    try:
        time_ns = clock.from_string(ts) if isinstance(ts, str) else clock.ns(ts)
    except PayloadError as e:
        raise PayloadError(f"field 'ts': {e.reason}") from None
    readings = []
    for field, raw in document.items():
        try:
            if not field:
                raise PayloadError("a field name must not be empty")
            if isinstance(raw, str):
                raise PayloadError(f"value {_show(raw)} is a string; a sensor object holds numbers and booleans")
            readings.append(Reading(_name(f"{device}.{field}"), time_ns, _value(raw)))
        except PayloadError as e:
            raise PayloadError(f"field {field!r}: {e.reason}") from None
    return readings


def time_zone(name: str | None) -> tzinfo:
    """The zone called `name` (IANA, e.g. Europe/Berlin); UTC for None."""
    if name is None or name == "UTC":  # UTC needs no tz database
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found is a KeyError; a path-like name, a ValueError
        raise PayloadError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin, or UTC") from None


@dataclass(frozen=True, slots=True)
class _Clock:
    """Turns the time of a row into nanoseconds since the epoch, as `ParseOptions` say."""

    time_format: str
    unit_ns: int | None  # None: times are strings
    zone: tzinfo
    now_ns: int

    def ns(self, raw: object) -> int:
        if raw is None or raw == "":
            return self.now_ns
        if self.unit_ns is None:
            if isinstance(raw, str):
                return self.from_string(raw)
            raise PayloadError(
                f"time {_show(raw)} is not a string, but timeformat={self.time_format} expects one like "
                "2026-11-27T20:00:00Z; for numbers set timeformat to ns, us, ms or s"
            )
        number = _decimal(raw) if isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()) else raw
        if not isinstance(number, Decimal):
            raise PayloadError(
                f"time {_show(raw)} is not a number of {self.time_format}; send a number, "
                "or set timeformat=rfc3339 for time strings"
            )
        return self.from_number(number, self.unit_ns, _show(raw))

    def from_number(self, number: Decimal, unit_ns: int, shown: str) -> int:
        if not number.is_finite():
            raise PayloadError(f"time {shown} is not a finite number")
        # Far beyond the range, so the exact arithmetic below stays small.
        if number.adjusted() > 30:
            raise self._out_of_range(shown)
        return self._in_range(round(_EXACT.multiply(number, Decimal(unit_ns))), shown)

    def from_string(self, text: str) -> int:
        match = _TIME.fullmatch(text.strip())
        if match is None:
            raise PayloadError(
                f"time {_show(text)} is not like 2026-11-27T20:00:00.123456789Z or 2026-11-27 20:00:00 "
                "(at most 9 fraction digits, optional Z or +hh:mm)"
            )
        year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
        fraction, offset = match[7] or "", match[8]
        try:
            zone = self.zone if offset is None else _offset(offset)
            moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        except ValueError as e:
            raise PayloadError(f"time {_show(text)} is not a valid time: {e}") from None
        delta = moment - _EPOCH
        ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + int(fraction.ljust(9, "0"))
        return self._in_range(ns, _show(text))

    def _in_range(self, ns: int, shown: str) -> int:
        if 0 <= ns <= MAX_NS:
            return ns
        raise self._out_of_range(shown)

    def _out_of_range(self, shown: str) -> PayloadError:
        return PayloadError(
            f"time {shown} is outside what the store holds (1970-01-01 to 2262-04-11 UTC); "
            f"is timeformat={self.time_format} right?"
        )


def _clock(options: ParseOptions) -> _Clock:
    if options.time_format not in TIME_FORMATS:
        raise PayloadError(f"unknown timeformat {options.time_format!r}; use one of {', '.join(TIME_FORMATS)}")
    return _Clock(options.time_format, _UNIT_NS.get(options.time_format), time_zone(options.tz), options.now_ns)


def _offset(text: str) -> tzinfo:
    if text in ("Z", "z"):
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {text} is not between -23:59 and +23:59")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if text[0] == "-" else offset)


def _text(data: bytes, compress: str | None, max_size: int) -> str:
    if len(data) > max_size:
        raise PayloadError(f"the payload is {len(data):,} bytes, over the limit of {max_size:,}; send less at once")
    if compress == "gzip":
        data = _gunzip(data, max_size)
    elif compress is not None:
        raise PayloadError(f"unknown compression {compress!r}; use gzip, or none")
    data = data.removeprefix(_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PayloadError(f"the payload is not UTF-8 text: byte 0x{data[e.start]:02x} on line {line}") from None


def _gunzip(data: bytes, max_size: int) -> bytes:
    out = bytearray()
    while True:  # a gzip file may hold several members, one after another
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # 16+: a gzip header and trailer
        try:
            out += inflater.decompress(data, max_size + 1 - len(out))
        except zlib.error as e:
            raise PayloadError(f"the payload is not valid gzip ({e}); compress it with gzip or send it as is") from None
        if len(out) > max_size:
            raise PayloadError(f"the gzip payload inflates to more than {max_size:,} bytes; send less at once")
        if not inflater.eof:
            raise PayloadError("the gzip payload is cut short; send the whole gzip file")
        data = inflater.unused_data
        if not data:
            return bytes(out)


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal holds, such as 1e999999999999999999
        raise PayloadError(f"number {_show(text)} is out of any range a reading can have") from None


# Decimal keeps every digit, so that times in s, ms and us convert exactly. One decoder for every message:
# json.loads with these hooks would build a new one each time.
_JSON = json.JSONDecoder(parse_float=_decimal, parse_int=_decimal, parse_constant=Decimal)


def _load_json(text: str) -> object:
    try:
        return _JSON.decode(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}" if "\n" in text else f"column {e.colno}"
        raise PayloadError(f"not valid JSON: {e.msg} at {where}") from None
    except RecursionError:
        raise PayloadError("arrays or objects nest too deeply; send rows, not a tree") from None


def _in_row(where: str, number: int, error: PayloadError) -> PayloadError:
    return PayloadError(f"{where} {number}: {error.reason}", number)


def _parse_json(text: str, clock: _Clock) -> list[Reading]:
    document = _load_json(text)
    columns = None
    if isinstance(document, dict):
        data = document.get("data")
        if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("columns", "rows")):
            raise PayloadError('expected {"data": {"columns": ["name", "time", "value"], "rows": [[...], ...]}}')
        columns = _columns(data["columns"])
        rows = data["rows"]
    elif isinstance(document, list):
        rows = [document] if document and isinstance(document[0], str) else document  # one row, or a list of rows
    else:
        raise PayloadError('expected ["name", time, value], a list of them, or {"data": {"columns": ..., "rows": ...}}')
    readings = []
    for number, row in enumerate(rows, 1):
        try:
            if not isinstance(row, list):
                raise PayloadError(f'expected an array like ["name", time, value], got {_show(row)}')
            readings.append(_reading(columns, row, clock))
        except PayloadError as e:
            raise _in_row("row", number, e) from None
    return readings


def _parse_csv(text: str, clock: _Clock) -> list[Reading]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns = None
    first = True
    readings = []
    try:
        for fields in reader:
            if not "".join(fields).strip():
                continue
            try:
                if first and all(field.strip().lower() in _COLUMNS for field in fields):
                    columns = _columns([field.strip() for field in fields])
                else:
                    readings.append(_reading(columns, fields, clock))
            except PayloadError as e:
                raise _in_row("line", reader.line_num, e) from None
            first = False
    except csv.Error as e:
        raise PayloadError(f"line {reader.line_num}: not valid CSV: {e}", reader.line_num) from None
    return readings


def _parse_ndjson(text: str, clock: _Clock) -> list[Reading]:
    readings = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = _load_json(line)
            if not isinstance(record, dict):
                raise PayloadError(f'expected an object like {{"name": "a", "value": 2}}, got {_show(record)}')
            readings.append(_reading(_columns(list(record)), list(record.values()), clock))
        except PayloadError as e:
            raise _in_row("line", number, e) from None
    return readings


def _columns(names: Sequence[object]) -> tuple[str, ...]:
    columns: list[str] = []
    for name in names:
        if not isinstance(name, str) or name.lower() not in _COLUMNS:
            raise PayloadError(f"unknown field {_show(name)}; the fields are name, time (optional) and value")
        if name.lower() in columns:
            raise PayloadError(f"field {name!r} is given twice")
        columns.append(name.lower())
    if "name" not in columns or "value" not in columns:
        raise PayloadError("the fields must include name and value (time is optional)")
    return tuple(columns)


def _reading(columns: tuple[str, ...] | None, fields: Sequence[object], clock: _Clock) -> Reading:
    if columns is None:
        columns = _COLUMNS_BY_COUNT.get(len(fields))
        if columns is None:
            raise PayloadError(f"expected 3 fields (name, time, value) or 2 (name, value), got {len(fields)}")
    elif len(fields) != len(columns):
        raise PayloadError(f"expected {len(columns)} fields ({', '.join(columns)}), got {len(fields)}")
    record = dict(zip(columns, fields, strict=True))
    return Reading(_name(record["name"]), clock.ns(record.get("time")), _value(record["value"]))


def _name(raw: object) -> str:
    if not isinstance(raw, str):
        raise PayloadError(f"name {_show(raw)} is not a string")
    if not raw:
        raise PayloadError("the name is empty")
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:
        raise PayloadError(f"name {_show(raw)} holds half a surrogate pair (a bad \\ud800-style escape)") from None
    if size > MAX_NAME_BYTES:
        raise PayloadError(f"name {_show(raw)} is {size} bytes of UTF-8; at most {MAX_NAME_BYTES} are allowed")
    if _CONTROL.search(raw):
        raise PayloadError(f"name {_show(raw)} holds a control character")
    return raw


def _value(raw: object) -> float:
    if isinstance(raw, bool):
        return float(raw)
    number = _decimal(raw) if isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()) else raw
    if not isinstance(number, Decimal):
        raise PayloadError(f"value {_show(raw)} is not a number")
    value = float(number)
    if not math.isfinite(value):
        raise PayloadError(f"value {_show(raw)} is not a finite number (NaN, infinities and beyond ±1.8e308)")
    return value


def _show(raw: object) -> str:
    """`raw` as its sender wrote it, cut short: error messages quote what they refuse."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, list):
        return "[...]"
    if isinstance(raw, dict):
        return "{...}"
    text = repr(raw) if isinstance(raw, str) else str(raw)
    return text if len(text) <= 60 else text[:57] + "..."


# Line protocol. A backslash pairs with the character after it, whatever it is; whether the pair is an escape
# (backslash dropped) or a literal backslash depends on where it stands (see _unescape).
_LP_MEASUREMENT = re.compile(r"(?:\\.|[^\\ ,])+")
_LP_KEY = re.compile(r"(?:\\.|[^\\ ,=])+")  # tag keys, tag values and field keys
_LP_FIELD_VALUE = re.compile(r'"(?:\\.|[^"\\])*"|[^ ,"]+')
_LP_EQUALS = re.compile(r"=")
_LP_SPACES = re.compile(r" +")
_LP_TAIL = re.compile(r"(?: +-?\d+)? *\Z")
_LP_INTEGER = re.compile(r"-?\d+", re.ASCII)
_LP_MEASUREMENT_ESCAPE = re.compile(r"\\([\\ ,])")
_LP_KEY_ESCAPE = re.compile(r"\\([\\ ,=])")
_LP_BOOLEANS = dict.fromkeys(("t", "T", "true", "True", "TRUE"), 1.0) | dict.fromkeys(
    ("f", "F", "false", "False", "FALSE"), 0.0
)
_LP_INTEGER_RANGES = {"i": (-(2**63), 2**63 - 1, "a signed"), "u": (0, 2**64 - 1, "an unsigned")}


def _parse_line(text: str, clock: _Clock) -> list[Reading]:
    if clock.unit_ns is None:
        raise PayloadError(
            f"line protocol timestamps are numbers: set timeformat to ns, us, ms or s, not {clock.time_format}"
        )
    readings = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        try:
            readings += _point(_Line(line), clock, clock.unit_ns)
        except PayloadError as e:
            raise _in_row("line", number, e) from None
    return readings


class _Line:
    """A cursor over one line of line protocol."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def take(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise PayloadError(f"expected {what} at column {self.pos + 1}")
        self.pos = match.end()
        return match[0]

    def skip(self, char: str) -> bool:
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False


def _point(line: _Line, clock: _Clock, unit_ns: int) -> list[Reading]:
    measurement = _LP_MEASUREMENT_ESCAPE.sub(r"\1", line.take(_LP_MEASUREMENT, "a measurement name"))
    tags = []
    while line.skip(","):
        key = _unescape(line.take(_LP_KEY, "a tag key"))
        line.take(_LP_EQUALS, f"'=' after tag key {key!r}")
        tags.append((key, _unescape(line.take(_LP_KEY, f"a value for tag {key!r}"))))
    line.take(_LP_SPACES, "a space, then the fields (field=value)")
    fields = []
    while True:
        key = _unescape(line.take(_LP_KEY, "a field key"))
        line.take(_LP_EQUALS, f"'=' after field key {key!r}")
        value = _field_value(key, line.take(_LP_FIELD_VALUE, f'a value for field {key!r} (1.5, 1i, true or "text")'))
        if value is not None:
            fields.append((key, value))
        if not line.skip(","):
            break
    timestamp = line.take(_LP_TAIL, "a space and a timestamp (an integer), or the end of the line").strip()
    time_ns = clock.from_number(Decimal(timestamp), unit_ns, timestamp) if timestamp else clock.now_ns
    series = "".join(f",{key}={value}" for key, value in sorted(tags))
    return [Reading(_name(f"{measurement}.{key}{series}"), time_ns, value) for key, value in fields]


def _unescape(text: str) -> str:
    return _LP_KEY_ESCAPE.sub(r"\1", text)


def _field_value(key: str, raw: str) -> float | None:
    if raw.startswith('"'):
        return None  # a string: the store holds numbers
    if raw in _LP_BOOLEANS:
        return _LP_BOOLEANS[raw]
    if raw[-1] in _LP_INTEGER_RANGES and _LP_INTEGER.fullmatch(raw[:-1]):
        low, high, kind = _LP_INTEGER_RANGES[raw[-1]]
        integer = Decimal(raw[:-1])  # not int(): no limit on digits to convert
        if not low <= integer <= high:
            raise PayloadError(f"field {key!r}: {raw} is outside the range of {kind} 64-bit integer")
        return float(integer)
    if _NUMBER.fullmatch(raw):
        value = float(raw)
        if math.isfinite(value):
            return value
    raise PayloadError(f'field {key!r}: {raw!r} is not a finite number, an integer (1i, 1u), a boolean or a "string"')


_PARSERS: dict[str, Callable[[str, _Clock], list[Reading]]] = {
    "json": _parse_json,
    "csv": _parse_csv,
    "ndjson": _parse_ndjson,
    "line": _parse_line,
}
