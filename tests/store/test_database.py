"""The time-series store on a real RocksDB: writes, replacement, range scans, group commit, reopening."""

import asyncio
from pathlib import Path

import pytest

from gateway.store import keys
from gateway.store.database import StoreError, StoreOptions, TimeSeriesStore

S = 1_000_000_000


def run(coro):
    return asyncio.run(coro)


def test_readings_come_back_in_time_order_within_half_open_ranges(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("example", [("temp", t * S, float(t)) for t in (3, 1, 2, 5, 4)], durable=True)
        assert list(store.scan("EXAMPLE", "temp")) == [(t * S, float(t)) for t in (1, 2, 3, 4, 5)]
        assert list(store.scan("example", "temp", 2 * S, 4 * S)) == [(2 * S, 2.0), (3 * S, 3.0)]
        assert list(store.scan("example", "temp", 2 * S, 4 * S, reverse=True)) == [(3 * S, 3.0), (2 * S, 2.0)]
        assert next(store.scan("example", "temp", reverse=True)) == (5 * S, 5.0)
        assert list(store.scan("example", "absent")) == []
        await store.close()

    run(scenario())


def test_a_reading_written_twice_is_stored_once_with_the_last_value(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("t", [("a", S, 1.0)], durable=True)
        await store.append("t", [("a", S, 2.0)], durable=True)
        assert list(store.scan("t", "a")) == [(S, 2.0)]
        await store.close()

    run(scenario())


def test_series_do_not_bleed_into_each_other(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("t", [("a", S, 1.0), ("b", S, 2.0), ("a", 2 * S, 3.0)], durable=True)
        await store.append("u", [("a", S, 9.0)], durable=True)
        assert list(store.scan("t", "a")) == [(S, 1.0), (2 * S, 3.0)]
        assert list(store.scan("t", "b")) == [(S, 2.0)]
        assert list(store.scan("u", "a")) == [(S, 9.0)]
        assert store.series_names("t") == ["a", "b"]
        await store.close()

    run(scenario())


def test_everything_survives_reopening(tmp_path: Path) -> None:
    async def write() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("example", [("temp", S, 21.5)], durable=True)
        await store.append("example", [("hum", S, 40.0)], durable=False)
        await store.close()

    async def read() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        assert [t.name for t in store.tables()] == ["EXAMPLE"]
        assert store.series_names("example") == ["hum", "temp"]
        assert list(store.scan("example", "temp")) == [(S, 21.5)]
        # New series after a reopen get fresh ids: nothing of the old ones is overwritten.
        await store.append("example", [("new", S, 1.0)], durable=True)
        assert list(store.scan("example", "temp")) == [(S, 21.5)]
        await store.close()

    run(write())
    run(read())


def test_concurrent_writes_share_group_commits(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await asyncio.gather(*(store.append("t", [("a", i, float(i))], durable=True) for i in range(500)))
        assert len(list(store.scan("t", "a"))) == 500
        assert store.writer.batches < 50, f"{store.writer.batches} commits for 500 concurrent writes"
        await store.close()

    run(scenario())


def test_tables_must_exist_when_auto_creation_is_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db", StoreOptions(auto_create_tables=False))
        with pytest.raises(StoreError, match="no table EXAMPLE"):
            await store.append("example", [("a", S, 1.0)], durable=True)
        await store.create_table("Example")
        await store.append("example", [("a", S, 1.0)], durable=True)
        with pytest.raises(StoreError, match="already exists"):
            await store.create_table("EXAMPLE")
        await store.close()

    run(scenario())


def test_key_order_is_time_order_including_before_1970() -> None:
    times = [-(2**62), -1, 0, 1, 2**62]
    encoded = [keys.reading_key(7, t) for t in times]
    assert encoded == sorted(encoded)
    assert [keys.reading_time(k) for k in encoded] == times
    assert keys.reading_key(7, 2**62) < keys.reading_prefix(8)


def test_scan_bounds_past_the_time_range_are_open_ended(tmp_path: Path) -> None:
    """A query's `TIME <= 2**63 - 1` ends one past the last nanosecond: that bound means "to the end"."""

    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("t", [("a", keys.MAX_TIME, 1.0), ("a", keys.MIN_TIME, 2.0)], durable=False)
        assert list(store.scan("t", "a", 0, 2**63)) == [(keys.MAX_TIME, 1.0)]
        assert list(store.scan("t", "a", -(2**63) - 5, 0)) == [(keys.MIN_TIME, 2.0)]
        assert list(store.scan("t", "a", 2**63, None)) == []
        await store.close()

    run(scenario())
