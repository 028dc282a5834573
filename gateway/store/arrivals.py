"""The arrival log: every appended batch of readings in the order it arrived, for consumers that pass them on
(the uplink) and must resume after a restart, a kill or a power cut exactly where they stopped.

Readings are keyed by (series, time), which says nothing of when they arrived; the log does. Each append writes one
log entry in the same WriteBatch as its readings, so an entry exists if and only if its readings do:

    a <seq:8>     -> table id:4, arrival time ns:8, then one 25-byte row per reading: the reading's key and value
    A <consumer>  -> the consumer's cursor (JSON): the next sequence number to pass on, and what it had to drop

Sequence numbers grow by one per entry; a batch that failed to write leaves a gap, which readers step over. A
consumer moves its cursor and deletes the entries behind it in one write; the log is written only while a consumer
is configured (`ArrivalLog.enabled`), so a gateway without one pays nothing for it.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from rocksdict import Rdict

from gateway.store import keys
from gateway.store.rollups import key_range
from gateway.store.writer import DeleteRange, Op, Put

ARRIVAL = b"a"
CONSUMER = b"A"
_SEQ = struct.Struct(">Q")
_HEAD = struct.Struct(">Iq")
# A row is the reading's key (space byte, series id, shifted time) followed by its value: the bytes the append
# already made, joined.
ROW = struct.Struct(">cQQd")


def entry_key(seq: int) -> bytes:
    return ARRIVAL + _SEQ.pack(seq)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One logged append: `count` readings of one table, in the order they were given."""

    seq: int
    table_id: int
    arrival_ns: int
    data: bytes  # the rows

    @property
    def count(self) -> int:
        return len(self.data) // ROW.size


def encode_entry(table_id: int, arrival_ns: int, rows: bytes) -> bytes:
    return _HEAD.pack(table_id, arrival_ns) + rows


def decode_entry(key: bytes, value: bytes) -> Arrival:
    table_id, arrival_ns = _HEAD.unpack_from(value)
    seq: int = _SEQ.unpack_from(key, 1)[0]
    return Arrival(seq, table_id, arrival_ns, value[_HEAD.size :])


def entry_header(value: bytes) -> tuple[int, int, int]:
    """(table id, arrival time, count) of an entry, without reading its rows."""
    table_id, arrival_ns = _HEAD.unpack_from(value)
    return table_id, arrival_ns, (len(value) - _HEAD.size) // ROW.size


@dataclass(slots=True)
class Cursor:
    """Where a consumer stands: the first sequence number it has not passed on yet, and how many readings per table
    it never could (deleted by retention, or their table dropped, before their turn)."""

    next: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"next": self.next, "dropped": self.dropped}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Cursor:
        record = json.loads(data)
        return cls(int(record["next"]), {str(k): int(v) for k, v in record.get("dropped", {}).items()})


@dataclass(slots=True)
class _Unwritten:
    """The entries recorded into one batch of the writer, until it is written."""

    end: int = 0  # the sequence number after the last of them
    counts: list[tuple[int, int]] = field(default_factory=list)  # (table id, readings) per entry


class ArrivalLog:
    def __init__(self, db: Rdict) -> None:
        self._db = db
        self.enabled = False
        # Told, on the event loop, of the entries of each batch once it is written: (table id, readings) each.
        self.on_written: Callable[[list[tuple[int, int]]], None] | None = None
        self._batch: asyncio.Future[None] | None = None
        self._unwritten = _Unwritten()
        last = next(key_range(db, ARRIVAL, keys.space_end(ARRIVAL), reverse=True), None)
        self.next_seq = _SEQ.unpack_from(last[0], 1)[0] + 1 if last is not None else 1
        # A consumer that passed every entry on has deleted them all: numbering goes on past its cursor, or new
        # entries would fall behind it.
        for _key, value in key_range(db, CONSUMER, keys.space_end(CONSUMER)):
            self.next_seq = max(self.next_seq, Cursor.decode(value).next)
        # Entries below it are written: a batch is in RocksDB before it is synced and its writers are answered, so
        # readers stop here rather than pass on readings the gateway has not acknowledged yet.
        self.readable = self.next_seq

    def record(self, table_id: int, arrival_ns: int, rows: bytes) -> Put:
        """The log entry of one append, to be written in the same batch as its readings."""
        seq = self.next_seq
        self.next_seq = seq + 1
        return entry_key(seq), encode_entry(table_id, arrival_ns, rows)

    def submitted(self, batch: asyncio.Future[None], table_id: int, count: int) -> None:
        """The entry just recorded, of `count` readings of a table, went into `batch` (the writer's shared future)."""
        if batch is not self._batch:
            self._batch, self._unwritten = batch, _Unwritten()
            batch.add_done_callback(partial(self._written, self._unwritten))
        self._unwritten.end = self.next_seq
        self._unwritten.counts.append((table_id, count))

    def _written(self, unwritten: _Unwritten, batch: asyncio.Future[None]) -> None:
        if batch.cancelled() or batch.exception() is not None:
            return  # nothing of it exists: a gap in the numbers
        self.readable = max(self.readable, unwritten.end)
        if self.on_written is not None:
            self.on_written(unwritten.counts)

    def entries(self, start_seq: int) -> Iterator[tuple[bytes, bytes]]:
        """The raw entries from `start_seq` on, in order (decode_entry or entry_header reads them)."""
        return key_range(self._db, entry_key(start_seq), keys.space_end(ARRIVAL))

    def read(self, start_seq: int, max_rows: int) -> list[Arrival]:
        """Written entries from `start_seq` on, as many as hold up to `max_rows` readings (at least one, if any)."""
        out: list[Arrival] = []
        rows = 0
        for key, value in self.entries(start_seq):
            entry = decode_entry(key, value)
            if entry.seq >= self.readable or (out and rows + entry.count > max_rows):
                break
            out.append(entry)
            rows += entry.count
            if rows >= max_rows:
                break
        return out

    def cursor(self, consumer: str) -> Cursor:
        data = self._db.get(CONSUMER + consumer.encode())
        if data is None:
            return Cursor()
        return Cursor.decode(data)

    def advance(self, consumer: str, cursor: Cursor, *, trim: bool) -> list[Op]:
        """The writes that save `cursor` and, with `trim`, delete the entries behind it (one range delete). Only one
        consumer may trim the log."""
        ops: list[Op] = [(CONSUMER + consumer.encode(), cursor.encode())]
        if trim:
            ops.append(DeleteRange(entry_key(0), entry_key(cursor.next)))
        return ops
