"""Arrival-log entries in, db/append messages out (sans-I/O).

A chunk is what the forwarder reads from the log at once: some consecutive entries, turned into one or more
messages per table, each a JSON array of [name, time_ns, value] rows in the order the readings arrived. The
cursor moves past a chunk only once every message of it is acknowledged, so a chunk is the unit of replay.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from gateway.store import keys
from gateway.store.arrivals import ROW, Arrival
from gateway.store.database import Table

# Bytes a PUBLISH adds to its payload beyond the topic: fixed header, topic length, packet id, properties.
PUBLISH_OVERHEAD = 16


class Names(Protocol):
    """What the chunk builder asks the store: the names behind the log's numbers."""

    def table_by_id(self, table_id: int) -> Table | None: ...

    def series_name(self, series_id: int) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    table: str
    topic: str
    payload: bytes
    count: int


@dataclass(slots=True)
class Chunk:
    end: int  # the sequence number after the chunk's last entry: the cursor once it is acknowledged
    messages: list[Outgoing] = field(default_factory=list)
    readings: dict[str, int] = field(default_factory=dict)  # per table, every reading the chunk covers
    dropped: dict[str, int] = field(default_factory=dict)  # per table, readings deleted before their turn
    oldest_ns: int = 0  # arrival time of the chunk's first entry


@dataclass(frozen=True, slots=True)
class Format:
    prefix: str = ""
    batch_size: int = 1000
    gzip: bool = False
    max_packet_size: int | None = None  # the upstream's, when it says (MQTT 5)

    def topic(self, table: str) -> str:
        return f"{self.prefix}db/append/{table}" + (":json:gzip" if self.gzip else "")


DROPPED_TABLE = "(dropped tables)"


def make_chunk(entries: Sequence[Arrival], names: Names, cutoffs: dict[str, int], fmt: Format) -> Chunk:
    """The messages for `entries` (consecutive, at least one). `cutoffs` holds, per table with a retention, the
    oldest time it keeps: older readings were (or are about to be) deleted, so they are counted, not sent."""
    chunk = Chunk(entries[-1].seq + 1, oldest_ns=entries[0].arrival_ns)
    rows: dict[str, list[tuple[str, int, float]]] = {}
    series_names: dict[int, str | None] = {}
    shift = keys.TIME_SHIFT
    for entry in entries:
        table = names.table_by_id(entry.table_id)
        label = table.name if table is not None else DROPPED_TABLE
        chunk.readings[label] = chunk.readings.get(label, 0) + entry.count
        if table is None:
            chunk.dropped[label] = chunk.dropped.get(label, 0) + entry.count
            continue
        # Shifted times compared with a shifted cutoff, names looked up once per series: this runs per reading.
        cutoff = cutoffs.get(table.name, keys.MIN_TIME) + keys.TIME_SHIFT
        kept = rows.setdefault(table.name, [])
        before = len(kept)
        for _space, series_id, shifted, value in ROW.iter_unpack(entry.data):
            name = series_names.get(series_id, "")
            if name == "":
                name = series_names[series_id] = names.series_name(series_id)
            if name is None or shifted < cutoff:
                continue
            kept.append((name, shifted - shift, value))
        lost = entry.count - (len(kept) - before)
        if lost:
            chunk.dropped[table.name] = chunk.dropped.get(table.name, 0) + lost
    for table_name, table_rows in rows.items():
        for start in range(0, len(table_rows), fmt.batch_size):
            chunk.messages += _messages(table_name, table_rows[start : start + fmt.batch_size], fmt)
    return chunk


def _messages(table: str, rows: list[tuple[str, int, float]], fmt: Format) -> list[Outgoing]:
    """One message for `rows`, or several if one would exceed the upstream's maximum packet size."""
    payload = orjson.dumps(rows)
    if fmt.gzip:
        payload = gzip.compress(payload, compresslevel=5, mtime=0)
    topic = fmt.topic(table)
    limit = fmt.max_packet_size
    if limit is not None and len(payload) + len(topic) + PUBLISH_OVERHEAD > limit and len(rows) > 1:
        half = len(rows) // 2
        return _messages(table, rows[:half], fmt) + _messages(table, rows[half:], fmt)
    return [Outgoing(table, topic, payload, len(rows))]
