"""The disk guard and retention, on a real RocksDB and the real file system."""

import asyncio
import os
from pathlib import Path

import pytest

from gateway.store import keys
from gateway.store.database import Retention, TimeSeriesStore
from gateway.store.maintenance import DiskFull, DiskGuard, apply_retention

DAY = 86_400_000_000_000


def test_the_disk_guard_refuses_writes_below_the_free_space_threshold(tmp_path: Path) -> None:
    stats = os.statvfs(tmp_path)
    free = stats.f_bavail * stats.f_frsize

    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        store.guard = DiskGuard(tmp_path, min_free_bytes=free + (1 << 40))  # more than the disk has
        with pytest.raises(DiskFull, match="nearly full"):
            await store.append("t", [("a", 1, 1.0)], durable=True)
        assert store.table("t") is None  # nothing at all was written, not even the new table
        store.guard = DiskGuard(tmp_path, min_free_bytes=1)
        await store.append("t", [("a", 1, 1.0)], durable=True)
        assert list(store.scan("t", "a")) == [(1, 1.0)]
        await store.close()

    asyncio.run(scenario())


def test_retention_deletes_only_readings_older_than_the_window(tmp_path: Path) -> None:
    now = 1_000 * DAY

    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        readings = [(name, now - age * DAY, float(age)) for name in ("a", "b") for age in (40, 31, 29, 1)]
        await store.append("t", readings, durable=True)
        await store.append("u", [("a", now - 100 * DAY, 1.0)], durable=True)
        assert await apply_retention(store, Retention(raw=30), now_ns=now) == 3
        for name in ("a", "b"):
            assert [v for _t, v in store.scan("t", name)] == [29.0, 1.0]
        assert list(store.scan("u", "a")) == []
        await store.close()

    asyncio.run(scenario())


def test_each_table_keeps_readings_and_each_rollup_level_as_long_as_it_says(tmp_path: Path) -> None:
    now = 1_000 * DAY
    ages = (400, 100, 40, 10, 1)

    def kept(store: TimeSeriesStore, table: str, space: bytes | None) -> list[int]:
        """The ages in days of what `table` still holds of series a: readings (None) or rollups."""
        if space is None:
            return [(now - t) // DAY for t, _value in store.scan(table, "a")]
        return [(now - t) // DAY for t, _agg in store.scan_rollups(table, "a", space)]

    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.create_table("short", retention=Retention(raw=7, minute=30))
        await store.create_table("forever", retention=Retention(raw=0, minute=0, hour=0))
        for table in ("short", "forever", "default"):
            await store.append(table, [("a", now - age * DAY, 1.0) for age in ages], durable=True)
        await apply_retention(store, Retention(raw=30, minute=60, hour=365), now_ns=now)
        assert kept(store, "short", None) == [1]
        assert kept(store, "short", keys.MINUTE_ROLLUP) == [10, 1]
        assert kept(store, "short", keys.HOUR_ROLLUP) == [100, 40, 10, 1]  # the default for hours
        assert kept(store, "default", None) == [10, 1]
        assert kept(store, "default", keys.MINUTE_ROLLUP) == [40, 10, 1]
        for space in (None, keys.MINUTE_ROLLUP, keys.HOUR_ROLLUP):
            assert kept(store, "forever", space) == list(ages)
        # A table's retention is stored with it, and changed by set_retention.
        await store.set_retention("forever", Retention(raw=2))
        await store.close()
        store = TimeSeriesStore(tmp_path / "db")
        assert store.table("short").retention == Retention(raw=7, minute=30)  # type: ignore[union-attr]
        await apply_retention(store, Retention(), now_ns=now)
        assert kept(store, "forever", None) == [1]
        assert kept(store, "forever", keys.HOUR_ROLLUP) == list(ages)
        await store.close()

    asyncio.run(scenario())
