"""Rollups: 1-minute and 1-hour aggregates of every series (count, sum, min, max, first, last), kept up to date at
ingest, so that a chart over a year reads one record per hour instead of millions of readings.

They stay exact without reading anything back on the ingest path:
- Per series the tracker remembers the newest time written (`last_time`, counting readings still waiting for
  their batch) and the running aggregates of its current minute and hour. A reading newer than `last_time` cannot
  replace a stored one, so it is simply added; the changed rollup records go into the same WriteBatch as the
  readings (`take`), so a crash never keeps one without the other.
- A reading at or before `last_time` may replace a stored value (a QoS 1 redelivery) or land in an older bucket.
  Its minute is marked dirty instead: a `d` key in the same batch, and once the batch is written the writer thread
  recomputes that minute from its readings and the hour from its minutes (`recompute`), then deletes the mark.
  Marks left behind by a crash are recomputed when the store opens (`recover`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import groupby
from typing import cast

from rocksdict import Rdict, ReadOptions, WriteBatch

from gateway.store import keys

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
# Coarsest first: a query uses the coarsest rollup its buckets are made of.
LEVELS = ((HOUR, keys.HOUR_ROLLUP), (MINUTE, keys.MINUTE_ROLLUP))
_VERSION = b"1"
_RECORD = struct.Struct(">Qdddqdqd")
# The puts of one rebuild batch: bounds the memory a rebuild of a large store needs.
_REBUILD_BATCH = 10_000


@dataclass(slots=True)
class Aggregate:
    """Count, sum, min, max and the first and last value (with their times) of a run of readings of one series."""

    count: int
    total: float
    low: float
    high: float
    first_time: int
    first: float
    last_time: int
    last: float

    @classmethod
    def of(cls, time_ns: int, value: float) -> Aggregate:
        return cls(1, value, value, value, time_ns, value, time_ns, value)

    def add(self, time_ns: int, value: float) -> None:
        """Add a reading later in time than all before."""
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        elif value > self.high:
            self.high = value
        self.last_time, self.last = time_ns, value

    def merge(self, later: Aggregate) -> None:
        """Add the aggregate of a run that comes after this one in time."""
        self.count += later.count
        self.total += later.total
        self.low = min(self.low, later.low)
        self.high = max(self.high, later.high)
        self.last_time, self.last = later.last_time, later.last

    def encode(self) -> bytes:
        return _RECORD.pack(
            self.count, self.total, self.low, self.high, self.first_time, self.first, self.last_time, self.last
        )

    @classmethod
    def decode(cls, data: bytes) -> Aggregate:
        return cls(*_RECORD.unpack(data))


def bucket_start(time_ns: int, width: int) -> int:
    # The very first bucket starts before the earliest time a key can hold: it is cut off there.
    return max(time_ns - time_ns % width, keys.MIN_TIME)


def key_range(db: Rdict, low: bytes, high: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
    """The keys and values from `low` (included) to `high` (excluded), in key order or reversed."""
    # The upper bound in the read options: RocksDB stops there, with no comparison per key in Python. The options
    # must outlive the iteration (rocksdict does not keep them), hence a generator, not a returned iterator.
    options = ReadOptions()
    options.set_iterate_upper_bound(high)
    if not reverse:
        yield from cast(Iterator[tuple[bytes, bytes]], db.items(from_key=low, read_opt=options))  # raw mode: bytes
        return
    for key, value in cast(Iterator[tuple[bytes, bytes]], db.items(backwards=True, from_key=high, read_opt=options)):
        if key < low:  # backwards, rocksdict does not stop at a lower bound
            return
        yield key, value


def span(series_id: int, start: int, end: int, space: bytes) -> tuple[bytes, bytes]:
    """The keys of a series' `space` from time `start` to `end` (excluded), `end` allowed past the last time."""
    high = (
        keys.reading_key(series_id, end, space) if end <= keys.MAX_TIME else keys.reading_prefix(series_id + 1, space)
    )
    return keys.reading_key(series_id, start, space), high


def aggregate_readings(readings: Iterable[tuple[int, float]]) -> Aggregate | None:
    """The aggregate of (time, value) readings in time order; None if there are none."""
    result = None
    for time_ns, value in readings:
        if result is None:
            result = Aggregate.of(time_ns, value)
        else:
            result.add(time_ns, value)
    return result


def merge_all(parts: Iterable[Aggregate]) -> Aggregate | None:
    result = None
    for part in parts:
        if result is None:
            result = replace(part)  # a copy: `part` is not changed
        else:
            result.merge(part)
    return result


class _SeriesState:
    """What the tracker knows of one series. Per reading only the current minute's aggregate changes; the hour's
    is the merge of its closed minutes (`hour_base`, None before the first) and the current one. `minute_agg`
    None, or `hour_known` False, mean that bucket is not known exactly: it is dirty, and recomputed."""

    __slots__ = ("hour", "hour_base", "hour_known", "last_time", "minute", "minute_agg")

    def __init__(self, last_time: int) -> None:
        self.last_time = last_time
        self.minute: int | None = None
        self.minute_agg: Aggregate | None = None
        self.hour: int | None = None
        self.hour_base: Aggregate | None = None
        self.hour_known = True

    def hour_agg(self) -> Aggregate | None:
        """The current hour's aggregate, if known."""
        if not self.hour_known or self.minute_agg is None:
            return None
        if self.hour_base is None:
            return self.minute_agg
        return merge_all((self.hour_base, self.minute_agg))


Dirty = set[tuple[int, int]]  # (series id, minute start)


class RollupTracker:
    """Lives on the event loop next to the store; `recompute` alone runs on the writer thread."""

    def __init__(self, db: Rdict) -> None:
        self._db = db
        self._states: dict[int, _SeriesState] = {}
        self._touched: set[int] = set()
        self._closed: list[tuple[bytes, bytes]] = []  # records of buckets a series has left since the last take
        self._dirty: Dirty = set()

    # -- on the event loop -----------------------------------------------------------------------------------

    def add(self, series_id: int, time_ns: int, value: float) -> None:
        # The hot path of ingest (once per reading): the common case is inlined.
        state = self._states.get(series_id)
        if state is None:
            state = self._states[series_id] = self._load(series_id)
        self._touched.add(series_id)
        minute = time_ns - time_ns % MINUTE
        if time_ns <= state.last_time:
            self._out_of_order(state, series_id, max(minute, keys.MIN_TIME))
            return
        state.last_time = time_ns
        if minute != state.minute:
            self._next_minute(state, series_id, max(minute, keys.MIN_TIME), time_ns, value)
            return
        agg = state.minute_agg
        if agg is None or not state.hour_known:
            self._dirty.add((series_id, minute))  # recomputing the minute recomputes its hour too
            if agg is None:
                return
        agg.count += 1
        agg.total += value
        if value < agg.low:
            agg.low = value
        elif value > agg.high:
            agg.high = value
        agg.last_time = time_ns
        agg.last = value

    def _out_of_order(self, state: _SeriesState, series_id: int, minute: int) -> None:
        """A reading at or before the newest one: it may replace a stored value, so its buckets are recomputed."""
        self._dirty.add((series_id, minute))
        if minute == state.minute:
            state.minute_agg = None
        if bucket_start(minute, HOUR) == state.hour:
            state.hour_known = False

    def _next_minute(self, state: _SeriesState, series_id: int, minute: int, time_ns: int, value: float) -> None:
        closing = state.minute_agg
        _record(self._closed, series_id, state.minute, closing, keys.MINUTE_ROLLUP)
        hour = bucket_start(minute, HOUR)
        if hour == state.hour:
            if closing is None:
                state.hour_known = False  # the closed minute is dirty; its recomputation redoes the hour
            elif state.hour_known:
                state.hour_base = merge_all((state.hour_base, closing) if state.hour_base else (closing,))
        else:
            _record(self._closed, series_id, state.hour, state.hour_agg(), keys.HOUR_ROLLUP)
            state.hour, state.hour_base, state.hour_known = hour, None, True
        state.minute, state.minute_agg = minute, Aggregate.of(time_ns, value)
        if not state.hour_known:
            self._dirty.add((series_id, minute))  # recomputing the minute recomputes its hour too

    def _load(self, series_id: int) -> _SeriesState:
        """The state of a series seen for the first time since the store opened: nothing of it is waiting to be
        written, so the database has it all."""
        low, high = span(series_id, keys.MIN_TIME, keys.MAX_TIME + 1, keys.READING)
        last = next(key_range(self._db, low, high, reverse=True), None)
        if last is None:
            return _SeriesState(keys.MIN_TIME - 1)
        state = _SeriesState(keys.reading_time(last[0]))
        minute = bucket_start(state.last_time, MINUTE)
        hour = bucket_start(minute, HOUR)
        data = self._db.get(keys.reading_key(series_id, minute, keys.MINUTE_ROLLUP))
        state.minute, state.minute_agg = minute, None if data is None else Aggregate.decode(data)
        low, high = span(series_id, hour, minute, keys.MINUTE_ROLLUP)
        closed = (Aggregate.decode(value) for _key, value in key_range(self._db, low, high))
        state.hour, state.hour_base, state.hour_known = hour, merge_all(closed), True
        return state

    def take(self) -> tuple[list[tuple[bytes, bytes]], Dirty]:
        """The rollup records and dirty marks that belong in the batch being taken, and the dirty minutes that the
        writer recomputes once that batch is written."""
        puts, self._closed = self._closed, []
        for series_id in self._touched:
            state = self._states.get(series_id)
            if state is not None:  # None: its table was dropped
                _record(puts, series_id, state.minute, state.minute_agg, keys.MINUTE_ROLLUP)
                _record(puts, series_id, state.hour, state.hour_agg(), keys.HOUR_ROLLUP)
        dirty, self._touched, self._dirty = self._dirty, set(), set()
        puts.extend((keys.reading_key(series_id, minute, keys.DIRTY), b"") for series_id, minute in dirty)
        return puts, dirty

    def failed(self) -> None:
        """A batch could not be written. The aggregates in memory may count its readings, which are not stored:
        none of them is trusted any more, and what waits for the next batch is recomputed after it instead."""
        for key, _record_data in self._closed:
            self._dirty.add((keys.key_series(key), keys.reading_time(key)))  # an hour start is a minute start
        self._closed = []
        for series_id in self._touched:
            state = self._states.get(series_id)
            if state is not None and state.minute is not None:
                self._dirty.add((series_id, state.minute))
        for state in self._states.values():
            state.minute_agg = None
            state.hour_known = False

    def forget(self, series_ids: Iterable[int]) -> None:
        for series_id in series_ids:
            self._states.pop(series_id, None)
        self._dirty = {(series_id, minute) for series_id, minute in self._dirty if series_id in self._states}

    # -- on the writer thread (or at open) -------------------------------------------------------------------

    def recompute(self, dirty: Dirty) -> None:
        """Recompute the dirty minutes from their readings and their hours from their minutes; then drop the
        marks. Runs after the batch that marked them is written, before the next one."""
        minutes = WriteBatch(raw_mode=True)
        hours: set[tuple[int, int]] = set()
        for series_id, minute in dirty:
            low, high = span(series_id, minute, minute + MINUTE, keys.READING)
            readings = (
                (keys.reading_time(key), keys.decode_value(value)) for key, value in key_range(self._db, low, high)
            )
            _put_or_delete(
                minutes, keys.reading_key(series_id, minute, keys.MINUTE_ROLLUP), aggregate_readings(readings)
            )
            hours.add((series_id, bucket_start(minute, HOUR)))
        self._db.write(minutes)
        batch = WriteBatch(raw_mode=True)
        for series_id, hour in hours:
            low, high = span(series_id, hour, hour + HOUR, keys.MINUTE_ROLLUP)
            parts = (Aggregate.decode(value) for _key, value in key_range(self._db, low, high))
            _put_or_delete(batch, keys.reading_key(series_id, hour, keys.HOUR_ROLLUP), merge_all(parts))
        for series_id, minute in dirty:
            batch.delete(keys.reading_key(series_id, minute, keys.DIRTY))
        self._db.write(batch)

    def recover(self) -> None:
        """At open: build the rollups of a store written before they existed, and recompute the minutes a crash
        left dirty."""
        if self._db.get(keys.ROLLUPS_VERSION) != _VERSION:
            self._rebuild()
        low, high = keys.DIRTY, keys.space_end(keys.DIRTY)
        dirty = {(keys.key_series(key), keys.reading_time(key)) for key, _value in key_range(self._db, low, high)}
        if dirty:
            self.recompute(dirty)

    def _rebuild(self) -> None:
        """Every rollup from the readings, streaming: one series' minute at a time is in memory."""
        for space in (keys.MINUTE_ROLLUP, keys.HOUR_ROLLUP, keys.DIRTY):
            self._db.delete_range(space, keys.space_end(space))
        batch = WriteBatch(raw_mode=True)
        low, high = keys.READING, keys.space_end(keys.READING)
        readings = (
            (keys.key_series(key), keys.reading_time(key), value) for key, value in key_range(self._db, low, high)
        )
        for (series_id, hour), of_hour in groupby(readings, lambda r: (r[0], bucket_start(r[1], HOUR))):
            minutes = []
            for minute, of_minute in groupby(of_hour, lambda r: bucket_start(r[1], MINUTE)):
                agg = aggregate_readings((time_ns, keys.decode_value(value)) for _s, time_ns, value in of_minute)
                assert agg is not None  # groupby makes no empty groups
                batch.put(keys.reading_key(series_id, minute, keys.MINUTE_ROLLUP), agg.encode())
                minutes.append(agg)
            hour_agg = merge_all(minutes)
            assert hour_agg is not None
            batch.put(keys.reading_key(series_id, hour, keys.HOUR_ROLLUP), hour_agg.encode())
            if len(batch) >= _REBUILD_BATCH:
                self._db.write(batch)
                batch = WriteBatch(raw_mode=True)
        batch.put(keys.ROLLUPS_VERSION, _VERSION)
        self._db.write(batch)


def _record(
    into: list[tuple[bytes, bytes]], series_id: int, start: int | None, agg: Aggregate | None, space: bytes
) -> None:
    if start is not None and agg is not None:
        into.append((keys.reading_key(series_id, start, space), agg.encode()))


def _put_or_delete(batch: WriteBatch, key: bytes, agg: Aggregate | None) -> None:
    if agg is None:
        batch.delete(key)
    else:
        batch.put(key, agg.encode())
