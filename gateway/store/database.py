"""The time-series store: tag tables of series of (time, value) readings in one RocksDB, sized for a small board.

Knows nothing of MQTT or HTTP. Tables and series are numbered as they first appear; their records travel in the
same batch as the first reading that needs them, so after a crash no reading refers to an unknown series.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Protocol, cast

from rocksdict import BlockBasedOptions, Cache, Options, Rdict

from gateway.rocks import board_options
from gateway.store import keys
from gateway.store.arrivals import ArrivalLog
from gateway.store.rollups import Aggregate, RollupTracker, key_range, span
from gateway.store.writer import DeleteRange, Op, Put, Writer

MAX_NAME_BYTES = 200
log = logging.getLogger("gateway.store")


class Guard(Protocol):
    def check(self) -> None: ...


# Told of every stored batch, on the event loop, once it is written: the table name and its (name, time, value)s.
Listener = Callable[[str, Sequence[tuple[str, int, float]]], None]


class StoreError(Exception):
    """A request the store cannot carry out; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Retention:
    """Days to keep readings and each rollup level; 0 keeps them for ever, None follows the gateway's default."""

    raw: float | None = None
    minute: float | None = None
    hour: float | None = None

    def over(self, default: Retention) -> Retention:
        """This retention, with `default`'s days wherever this one says None."""
        return Retention(
            default.raw if self.raw is None else self.raw,
            default.minute if self.minute is None else self.minute,
            default.hour if self.hour is None else self.hour,
        )


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    id: int
    created_ns: int
    retention: Retention = Retention()

    def record(self) -> bytes:
        retention = {"raw": self.retention.raw, "minute": self.retention.minute, "hour": self.retention.hour}
        return json.dumps(
            {"name": self.name, "id": self.id, "created_ns": self.created_ns, "retention": retention}
        ).encode()

    @classmethod
    def from_record(cls, data: bytes) -> Table:
        record = json.loads(data)
        return cls(record["name"], record["id"], record["created_ns"], Retention(**record.get("retention", {})))


@dataclass(slots=True)
class StoreOptions:
    write_buffer_bytes: int = 4 << 20
    block_cache_bytes: int = 8 << 20
    max_open_files: int = 64
    commit_interval: float = 0.002
    auto_create_tables: bool = True


def _rocksdb_options(options: StoreOptions) -> Options:
    opts = board_options(write_buffer_bytes=options.write_buffer_bytes, max_open_files=options.max_open_files)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(options.block_cache_bytes))  # an LRU cache
    table.set_bloom_filter(10, False)
    # Index and filter blocks otherwise live outside the cache, one set per open table file, growing with the
    # data: in the cache they are bounded by it; level 0's stay pinned there, as they are read by every lookup.
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    opts.set_block_based_table_factory(table)
    return opts


class TimeSeriesStore:
    def __init__(self, path: Path, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        path.mkdir(parents=True, exist_ok=True)
        rocksdb_options = _rocksdb_options(self.options)
        try:
            self.db = Rdict(str(path), rocksdb_options)
        except Exception as exc:
            raise StoreError(
                f"cannot open the readings database in {path}: {exc}. Is another gateway running with the same "
                "data directory?"
            ) from exc
        self.rollups = RollupTracker(self.db)
        self.rollups.recover()
        self.writer = Writer(self.db, self.options.commit_interval, self.rollups)
        # Set by the gateway (maintenance.DiskGuard): consulted before every append.
        self.guard: Guard | None = None
        self.listeners: list[Listener] = []
        # The batch whose readings the listeners are told of once it is written, and those readings.
        self._told_batch: asyncio.Future[None] | None = None
        self._to_tell: list[tuple[str, Sequence[tuple[str, int, float]]]] = []
        self._tables: dict[str, Table] = {}
        self._table_names: dict[int, str] = {}  # by table id, for the arrival log's readers
        self._series: dict[tuple[int, str], int] = {}
        self._series_names: dict[int, str] = {}  # the reverse of _series, for the arrival log's readers
        # Written only while something consumes it (the uplink sets enabled).
        self.arrivals = ArrivalLog(self.db)
        self._next_table = 1
        self._next_series = 1
        self._load_catalog()

    def _load_catalog(self) -> None:
        for _key, value in key_range(self.db, keys.TABLE, keys.space_end(keys.TABLE)):
            table = Table.from_record(value)
            self._tables[table.name] = table
            self._table_names[table.id] = table.name
            self._next_table = max(self._next_table, table.id + 1)
        for key, value in key_range(self.db, keys.SERIES, keys.space_end(keys.SERIES)):
            series_id = keys.decode_series_id(key[1:])
            table_id, name = keys.parse_series_record(value)
            self._series[(table_id, name)] = series_id
            self._series_names[series_id] = name
            self._next_series = max(self._next_series, series_id + 1)

    async def close(self) -> None:
        await self.writer.stop()
        self.db.flush_wal(True)
        self.db.close()

    # -- tables ---------------------------------------------------------------------------------------------

    def tables(self) -> list[Table]:
        return sorted(self._tables.values(), key=lambda t: t.name)

    def table(self, name: str) -> Table | None:
        return self._tables.get(name.upper())

    def table_by_id(self, table_id: int) -> Table | None:
        name = self._table_names.get(table_id)
        return None if name is None else self._tables.get(name)

    async def create_table(self, name: str, *, exist_ok: bool = False, retention: Retention = Retention()) -> Table:
        name = name.upper()
        existing = self._tables.get(name)
        if existing is not None:
            if exist_ok:
                return existing
            raise StoreError(f"table {name} already exists")
        puts: list[Op] = []
        table = self._new_table(name, puts, retention)
        await self.writer.write(puts, durable=True)
        return table

    async def set_retention(self, name: str, retention: Retention) -> Table:
        """Change how long a table keeps its readings and rollups (applied by the next retention run)."""
        table = replace(self._require(name), retention=retention)
        self._tables[table.name] = table
        await self.writer.write([(keys.table_key(table.name), table.record())], durable=True)
        return table

    async def drop_table(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete a table with all its readings."""
        name = name.upper()
        table = self._tables.pop(name, None)
        if table is None:
            if missing_ok:
                return
            raise StoreError(f"no table {name}")
        del self._table_names[table.id]
        ops: list[Op] = [DeleteRange(keys.table_key(name), keys.table_key(name) + b"\x00")]
        dropped = [(n, i) for (t, n), i in self._series.items() if t == table.id]
        for series_name, series_id in dropped:
            del self._series[(table.id, series_name)]
            del self._series_names[series_id]
            by_name = keys.series_by_name_key(table.id, series_name)
            ops.append(DeleteRange(by_name, by_name + b"\x00"))
            ops.append(DeleteRange(keys.series_key(series_id), keys.series_key(series_id + 1)))
            for space in (keys.READING, keys.MINUTE_ROLLUP, keys.HOUR_ROLLUP, keys.DIRTY):
                ops.append(
                    DeleteRange(keys.reading_prefix(series_id, space), keys.reading_prefix(series_id + 1, space))
                )
        self.rollups.forget(series_id for _name, series_id in dropped)
        await self.writer.write(ops, durable=True)

    def _new_table(self, name: str, puts: list[Op], retention: Retention = Retention()) -> Table:
        table = Table(name, self._next_table, time.time_ns(), retention)
        self._next_table += 1
        self._tables[name] = table
        self._table_names[table.id] = name
        puts.append((keys.table_key(name), table.record()))
        return table

    # -- writing --------------------------------------------------------------------------------------------

    async def append(self, table_name: str, readings: Sequence[tuple[str, int, float]], *, durable: bool) -> int:
        """Store readings (name, time in ns, value) in a table; an existing (name, time) is replaced, so a
        message delivered twice does not store anything twice. Returns how many readings were written."""
        await asyncio.shield(self.append_nowait(table_name, readings, durable=durable))
        return len(readings)

    def append_nowait(
        self, table_name: str, readings: Sequence[tuple[str, int, float]], *, durable: bool
    ) -> asyncio.Future[None]:
        """`append` without a coroutine: queues the readings and returns the future of the batch that carries them
        (shared with everything else in it; shield it before awaiting). Raises StoreError or DiskFull at once."""
        if self.guard is not None:
            self.guard.check()
        name = table_name.upper()
        puts: list[Op] = []
        table = self._tables.get(name)
        if table is None:
            if not self.options.auto_create_tables:
                raise StoreError(f"no table {name}: create it first (CREATE TAG TABLE or the HTTP API)")
            table = self._new_table(name, puts)
        series = self._series
        rollups = self.rollups
        # keys.reading_key and encode_value, inlined: this loop runs once per reading.
        pack_key, shift, pack_value, space = keys.SERIES_TIME.pack, keys.TIME_SHIFT, keys.VALUE.pack, keys.READING
        table_id = table.id
        try:
            for series_name, time_ns, value in readings:
                series_id = series.get((table_id, series_name))
                if series_id is None:
                    series_id = self._new_series(table_id, series_name, puts)
                puts.append((pack_key(space, series_id, time_ns + shift), pack_value(value)))
                rollups.add(series_id, time_ns, value)
        except BaseException:
            rollups.failed()  # it has counted readings that will not be written
            raise
        logged = self.arrivals.enabled and bool(readings)
        if logged:
            # The rows are the readings' keys and values, already made; appends put nothing but Puts.
            reading = keys.READING[0]
            rows = b"".join(key + value for key, value in cast(list[Put], puts) if key[0] == reading)
            puts.append(self.arrivals.record(table_id, time.time_ns(), rows))
        batch = self.writer.submit(puts, durable=durable)
        if logged:
            self.arrivals.submitted(batch, table_id, len(readings))
        if self.listeners:
            if batch is not self._told_batch:
                self._told_batch, self._to_tell = batch, []
                batch.add_done_callback(partial(self._tell, self._to_tell))
            self._to_tell.append((table.name, readings))
        return batch

    def _tell(self, stored: list[tuple[str, Sequence[tuple[str, int, float]]]], batch: asyncio.Future[None]) -> None:
        if batch.cancelled() or batch.exception() is not None:
            return
        for table_name, readings in stored:
            for listener in self.listeners:
                try:
                    listener(table_name, readings)
                except Exception:
                    # The readings are stored: a failing watcher must not turn that into an error for the writer.
                    log.exception("a listener of table %s failed", table_name)

    def _new_series(self, table_id: int, name: str, puts: list[Op]) -> int:
        series_id = self._next_series
        self._next_series += 1
        self._series[(table_id, name)] = series_id
        self._series_names[series_id] = name
        puts.append((keys.series_by_name_key(table_id, name), keys.encode_series_id(series_id)))
        puts.append((keys.series_key(series_id), keys.series_record(table_id, name)))
        return series_id

    # -- reading ---------------------------------------------------------------------------------------------

    def series_ids(self, table_name: str) -> list[int]:
        table = self._require(table_name)
        return [series_id for (table_id, _name), series_id in list(self._series.items()) if table_id == table.id]

    def series_name(self, series_id: int) -> str | None:
        return self._series_names.get(series_id)

    def series_names(self, table_name: str) -> list[str]:
        table = self._require(table_name)
        # list() copies the keys in one step: HTTP threads read while the event loop adds series.
        return sorted(name for (table_id, name) in list(self._series) if table_id == table.id)

    def _require(self, table_name: str) -> Table:
        table = self._tables.get(table_name.upper())
        if table is None:
            raise StoreError(f"no table {table_name.upper()}")
        return table

    def _span(
        self, table_name: str, name: str, time_from: int | None, time_to: int | None, space: bytes, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        table = self._require(table_name)
        series_id = self._series.get((table.id, name))
        if series_id is None:
            return iter(())
        # Bounds beyond what a reading's time can be (a query's "<= the last nanosecond" ends one past it).
        if (time_from is not None and time_from > keys.MAX_TIME) or (time_to is not None and time_to <= keys.MIN_TIME):
            return iter(())
        low, high = span(
            series_id,
            keys.MIN_TIME if time_from is None else max(time_from, keys.MIN_TIME),
            keys.MAX_TIME + 1 if time_to is None else time_to,
            space,
        )
        return key_range(self.db, low, high, reverse=reverse)

    def scan(
        self,
        table_name: str,
        name: str,
        time_from: int | None = None,
        time_to: int | None = None,
        *,
        reverse: bool = False,
    ) -> Iterator[tuple[int, float]]:
        """Readings (time ns, value) of one series with time_from <= time < time_to, in time order (or reversed).
        Raises StoreError if the table does not exist."""
        reading_time, decode_value = keys.reading_time, keys.decode_value
        for key, value in self._span(table_name, name, time_from, time_to, keys.READING, reverse):
            yield reading_time(key), decode_value(value)

    def scan_rollups(
        self,
        table_name: str,
        name: str,
        space: bytes,
        time_from: int | None = None,
        time_to: int | None = None,
        *,
        reverse: bool = False,
    ) -> Iterator[tuple[int, Aggregate]]:
        """The rollups (bucket start, aggregate) of one series in `space` (keys.MINUTE_ROLLUP or HOUR_ROLLUP) whose
        buckets start in [time_from, time_to), in time order (or reversed)."""
        for key, value in self._span(table_name, name, time_from, time_to, space, reverse):
            yield keys.reading_time(key), Aggregate.decode(value)
