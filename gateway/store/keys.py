"""Key encoding of the time-series store (sans-I/O).

One RocksDB holds every table. Each key starts with a one-byte space:

    t <TABLE>                          -> table record (JSON)
    n <table id:4> <series name>       -> series id (8 bytes)
    s <series id:8>                    -> table id (4 bytes) + series name: the reverse lookup
    r <series id:8> <time:8>           -> value (8-byte IEEE 754 double, big-endian)
    m <series id:8> <minute start:8>   -> rollup of the readings of that minute (rollups.Aggregate)
    h <series id:8> <hour start:8>     -> rollup of that hour
    d <series id:8> <minute start:8>   -> empty: that minute's rollups must be recomputed from the readings
    v rollups                          -> version of the rollup scheme the stored rollups follow

All integers are big-endian, so byte order is numeric order and one series over one interval is one contiguous
range of `r` keys. Times are signed nanoseconds shifted by 2**63, so that times before 1970 still sort first.
"""

from __future__ import annotations

import struct

TABLE = b"t"
SERIES_BY_NAME = b"n"
SERIES = b"s"
READING = b"r"
MINUTE_ROLLUP = b"m"
HOUR_ROLLUP = b"h"
DIRTY = b"d"
ROLLUPS_VERSION = b"vrollups"

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# Space, series id, time + TIME_SHIFT: the ingest loop packs reading keys with it directly.
SERIES_TIME = struct.Struct(">cQQ")
VALUE = struct.Struct(">d")
TIME_SHIFT = 1 << 63
MIN_TIME = -(1 << 63)
MAX_TIME = (1 << 63) - 1


def space_end(space: bytes) -> bytes:
    """The first key after every key of a one-byte key space."""
    return bytes([space[0] + 1])


def table_key(table: str) -> bytes:
    return TABLE + table.encode()


def series_by_name_key(table_id: int, name: str) -> bytes:
    return SERIES_BY_NAME + _U32.pack(table_id) + name.encode()


def series_key(series_id: int) -> bytes:
    return SERIES + _U64.pack(series_id)


def series_record(table_id: int, name: str) -> bytes:
    return _U32.pack(table_id) + name.encode()


def parse_series_record(data: bytes) -> tuple[int, str]:
    return _U32.unpack_from(data)[0], data[4:].decode()


def encode_series_id(series_id: int) -> bytes:
    return _U64.pack(series_id)


def decode_series_id(data: bytes) -> int:
    value: int = _U64.unpack(data)[0]
    return value


def reading_key(series_id: int, time_ns: int, space: bytes = READING) -> bytes:
    """The key of a reading, or with `space` of a rollup or dirty mark starting at `time_ns`."""
    return SERIES_TIME.pack(space, series_id, time_ns + TIME_SHIFT)


def reading_prefix(series_id: int, space: bytes = READING) -> bytes:
    return space + _U64.pack(series_id)


def reading_time(key: bytes) -> int:
    """The time of a reading (or rollup, or dirty mark) key; the series is its bytes 1 to 9."""
    shifted: int = _U64.unpack_from(key, 9)[0]
    return shifted - TIME_SHIFT


def key_series(key: bytes) -> int:
    """The series of a reading, rollup or dirty mark key."""
    series_id: int = _U64.unpack_from(key, 1)[0]
    return series_id


def encode_value(value: float) -> bytes:
    return VALUE.pack(value)


def decode_value(data: bytes) -> float:
    value: float = VALUE.unpack(data)[0]
    return value
