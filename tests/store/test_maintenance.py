"""The disk guard and retention, on a real RocksDB and the real file system."""

import asyncio
import os
from pathlib import Path

import pytest

from gateway.store.database import TimeSeriesStore
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
        assert list(store.scan("t", "a")) == []
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
        assert await apply_retention(store, 30 * DAY, now_ns=now) == 3
        for name in ("a", "b"):
            assert [v for _t, v in store.scan("t", name)] == [29.0, 1.0]
        assert list(store.scan("u", "a")) == []
        await store.close()

    asyncio.run(scenario())
