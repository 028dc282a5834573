"""Rollups on a real store: always equal to the aggregates of the stored readings (replacements, out-of-order
writes, failed batches, crashes, restarts), and used by aggregating queries with the same answers as the readings."""

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import keys
from gateway.store.database import TimeSeriesStore
from gateway.store.query import ColumnKind, Query, execute, series_summary
from gateway.store.rollups import HOUR, MINUTE, Aggregate, key_range
from gateway.store.writer import WriteFailed
from tests.store.test_query import Reading, count_pulled, naive

T0 = 1_700_000_000 * 10**9 // HOUR * HOUR  # an hour boundary


def stored(store: TimeSeriesStore) -> dict[tuple[bytes, int, int], Aggregate]:
    """Every rollup record: (space, series id, bucket start) -> aggregate."""
    found = {}
    for space in (keys.MINUTE_ROLLUP, keys.HOUR_ROLLUP):
        for key, value in key_range(store.db, space, keys.space_end(space)):
            found[(space, keys.key_series(key), keys.reading_time(key))] = Aggregate.decode(value)
    return found


def expected(store: TimeSeriesStore) -> dict[tuple[bytes, int, int], Aggregate]:
    """The rollups computed by brute force from the stored readings."""
    runs: dict[tuple[bytes, int, int], list[tuple[int, float]]] = defaultdict(list)
    for key, value in key_range(store.db, keys.READING, keys.space_end(keys.READING)):
        series, time = keys.key_series(key), keys.reading_time(key)
        for space, width in ((keys.MINUTE_ROLLUP, MINUTE), (keys.HOUR_ROLLUP, HOUR)):
            runs[(space, series, time - time % width)].append((time, keys.decode_value(value)))
    result = {}
    for bucket, readings in runs.items():
        values = [v for _, v in readings]
        result[bucket] = Aggregate(
            len(values), sum(values), min(values), max(values), readings[0][0], values[0], readings[-1][0], values[-1]
        )
    return result


def assert_rollups_exact(store: TimeSeriesStore) -> None:
    got, want = stored(store), expected(store)
    assert got.keys() == want.keys()
    for bucket, agg in want.items():
        assert got[bucket].total == pytest.approx(agg.total), bucket
        assert replace(got[bucket], total=agg.total) == agg, bucket
    assert list(key_range(store.db, keys.DIRTY, keys.space_end(keys.DIRTY))) == []  # no marks left behind


async def settle(store: TimeSeriesStore) -> None:
    """Waits until the writer has written (and recomputed) everything handed to it."""
    await store.append("settle", [("x", 0, 0.0)], durable=False)


# Times over three hours, drawn from a small set so that replacements and out-of-order writes are common.
times = st.integers(0, 179).map(lambda k: T0 + k * MINUTE + (k * 7919 % 60) * 10**9)
readings = st.tuples(st.sampled_from("ab"), times, st.integers(-50, 50).map(float))
batches = st.lists(st.lists(readings, min_size=1, max_size=8), min_size=1, max_size=12)


@given(batches=batches, together=st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rollups_equal_the_aggregates_of_the_stored_readings(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[Reading]], together: bool
) -> None:
    path = tmp_path_factory.mktemp("db")

    async def scenario() -> None:
        store = TimeSeriesStore(path)
        if together:  # several messages in one group-commit batch
            await asyncio.gather(*(store.append("t", batch, durable=False) for batch in batches))
        else:
            for batch in batches:
                await store.append("t", batch, durable=True)
        await settle(store)
        assert_rollups_exact(store)
        await store.close()
        # After a restart the tracker starts from the database: more readings, in order and not, stay exact.
        store = TimeSeriesStore(path)
        for batch in batches[:3]:
            await store.append("t", [(name, time + HOUR, value + 1) for name, time, value in batch], durable=False)
        await settle(store)
        assert_rollups_exact(store)
        await store.close()

    asyncio.run(scenario())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TimeSeriesStore]:
    opened = TimeSeriesStore(tmp_path / "db")
    yield opened
    asyncio.run(opened.close())


def test_a_redelivered_reading_replaces_its_value_in_the_rollups_too(store: TimeSeriesStore) -> None:
    async def scenario() -> None:
        await store.append("t", [("a", T0 + s * 10**9, 1.0) for s in range(10)], durable=True)
        await store.append("t", [("a", T0 + 3 * 10**9, 5.0)], durable=True)  # the same (name, time) again
        await settle(store)

    asyncio.run(scenario())
    assert_rollups_exact(store)
    minute = stored(store)[(keys.MINUTE_ROLLUP, 1, T0)]
    assert (minute.count, minute.total, minute.high) == (10, 14.0, 5.0)


def test_a_failed_batch_leaves_rollups_that_match_what_was_stored(
    store: TimeSeriesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = store.db.write
    failures = [1]

    def failing_write(batch: Any, *args: Any) -> None:
        if failures[0] and len(batch) > 1:
            failures[0] -= 1
            time.sleep(0.2)  # long enough for the next message to arrive while this batch is being written
            raise OSError("I/O error (simulated)")
        real_write(batch, *args)

    async def scenario() -> None:
        await store.append("t", [("a", T0 + s * 10**9, float(s)) for s in range(5)], durable=True)
        failing_db = type(
            "Db", (), {"write": staticmethod(failing_write), "flush_wal": staticmethod(store.db.flush_wal)}
        )
        monkeypatch.setattr(store.writer, "_db", failing_db())
        failed = asyncio.create_task(
            store.append("t", [("a", T0 + s * 10**9, 100.0) for s in range(5, 10)], durable=True)
        )
        await asyncio.sleep(0.1)
        # Counted in memory on top of the failing batch, and written in the next one.
        await store.append("t", [("a", T0 + s * 10**9, 7.0) for s in range(10, 12)], durable=True)
        with pytest.raises(WriteFailed):
            await failed
        await store.append("t", [("a", T0 + s * 10**9, 2.0) for s in range(60, 70)], durable=True)
        await settle(store)

    asyncio.run(scenario())
    assert failures == [0]
    assert [value for _time, value in store.scan("t", "a")][3:8] == [3.0, 4.0, 7.0, 7.0, 2.0]
    assert_rollups_exact(store)


def test_marks_left_by_a_crash_are_recomputed_at_open(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("t", [("a", T0 + s * 10**9, float(s)) for s in range(90)], durable=True)
        await settle(store)
        # As if the gateway died between a batch and its recomputation: a mark, and a rollup that is wrong.
        store.db[keys.reading_key(1, T0, keys.MINUTE_ROLLUP)] = Aggregate.of(T0, 999.0).encode()
        store.db[keys.reading_key(1, T0, keys.DIRTY)] = b""
        await store.close()
        reopened = TimeSeriesStore(tmp_path / "db")
        assert_rollups_exact(reopened)
        await reopened.close()

    asyncio.run(scenario())


def test_a_store_written_before_rollups_existed_gets_them_at_open(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("t", [(n, T0 + s * 7 * 10**9, float(s)) for n in "ab" for s in range(1200)], durable=True)
        await settle(store)
        for space in (keys.MINUTE_ROLLUP, keys.HOUR_ROLLUP):
            store.db.delete_range(space, keys.space_end(space))
        del store.db[keys.ROLLUPS_VERSION]
        await store.close()
        reopened = TimeSeriesStore(tmp_path / "db")
        rebuilt = [bucket for bucket in stored(reopened) if bucket[1] in (1, 2)]  # t's series a and b
        assert len(rebuilt) == 2 * (140 + 3)  # 140 minutes and 3 hours per series
        assert_rollups_exact(reopened)
        await reopened.close()

    asyncio.run(scenario())


def test_dropping_a_table_drops_its_rollups(store: TimeSeriesStore) -> None:
    async def scenario() -> None:
        await store.append("t", [("a", T0, 1.0)], durable=True)
        await store.append("u", [("a", T0, 1.0)], durable=True)
        await store.drop_table("t")
        await settle(store)

    asyncio.run(scenario())
    assert {series for _space, series, _start in stored(store)} == {2, 3}  # u's and settle's series
    assert_rollups_exact(store)


# -- queries read rollups -----------------------------------------------------------------------------------------


def test_a_year_at_one_hour_steps_reads_rollups_not_readings(
    store: TimeSeriesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    year = [("a", T0 + k * 600 * 10**9, rng.uniform(0, 10)) for k in range(6 * 24 * 365)]  # one every 10 minutes
    asyncio.run(store.append("t", year, durable=False))
    pulled = count_pulled(store, monkeypatch)
    columns: tuple[tuple[ColumnKind, str], ...] = (
        ("bucket", "B"),
        ("avg", "A"),
        ("count", "C"),
        ("first", "F"),
        ("last", "L"),
    )
    query = Query("t", columns, time_from=T0 + 90 * 10**9, time_to=T0 + 365 * 24 * HOUR, bucket_width=HOUR)
    rows = execute(store, query).rows
    assert len(rows) == 365 * 24
    assert pulled[0] <= 10  # the ragged first hour only; 8,759 hours come from their rollups
    # Python 3.12+ sums floats with compensation, the store adds them in order: the last bits may differ.
    assert rows == [
        [pytest.approx(c, rel=1e-12) if isinstance(c, float) else c for c in row] for row in naive(year, query)
    ]
    pulled[0] = 0
    [summary] = series_summary(store, "t")
    assert summary["count"] == len(year) and summary["last_value"] == year[-1][2]
    assert pulled[0] <= 3  # the first and the last reading, and the last again in its ragged minute


columns = st.lists(st.sampled_from(["count", "sum", "avg", "min", "max", "first", "last"]), min_size=1, max_size=3)


@given(
    kinds=columns,
    width=st.sampled_from([None, MINUTE, 5 * MINUTE, HOUR, 2 * HOUR]),
    origin=st.sampled_from([0, HOUR, 7 * MINUTE]),
    start=st.integers(-2 * HOUR, 5 * HOUR),
    length=st.integers(0, 6 * HOUR),
    by_name=st.booleans(),
    order=st.sampled_from(["asc", "desc"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_aggregates_from_rollups_equal_the_naive_model(
    noisy_hours: tuple[TimeSeriesStore, list[Reading]],
    kinds: list[str],
    width: int | None,
    origin: int,
    start: int,
    length: int,
    by_name: bool,
    order: str,
) -> None:
    store, readings = noisy_hours
    cols: list[tuple[Any, str]] = [("name", "N")] if by_name else []
    cols += [("bucket", "B")] if width else []
    cols += [(kind, kind) for kind in kinds]
    query = Query(
        "n",
        tuple(cols),
        time_from=T0 + start,
        time_to=T0 + start + length,
        bucket_width=width,
        bucket_origin=T0 + origin,
        group_by_name=by_name,
        order=order,  # type: ignore[arg-type]
    )
    got, want = execute(store, query).rows, naive(readings, query)
    assert got == [[pytest.approx(c, rel=1e-9) if isinstance(c, float) else c for c in row] for row in want]


@pytest.fixture(scope="module")
def noisy_hours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TimeSeriesStore, list[Reading]]]:
    """Three series over four hours at random times, written out of order (so with recomputed rollups)."""
    rng = random.Random(11)
    readings = {(n, T0 + rng.randrange(0, 4 * HOUR)): rng.uniform(-100, 100) for n in "xyz" for _ in range(3000)}
    rows = [(name, time, value) for (name, time), value in readings.items()]
    store = TimeSeriesStore(tmp_path_factory.mktemp("noisy"))
    for k in range(0, len(rows), 500):
        asyncio.run(store.append("n", rows[k : k + 500], durable=False))
    assert_rollups_exact(store)
    yield store, rows
    asyncio.run(store.close())
