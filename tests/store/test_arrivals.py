"""The arrival log on a real RocksDB: one entry per append, in the same write as its readings, in arrival order."""

import asyncio
import threading
from pathlib import Path

import pytest

from gateway.store.arrivals import ROW, Cursor, decode_entry
from gateway.store.database import TimeSeriesStore
from gateway.store.keys import TIME_SHIFT
from gateway.store.writer import Op, WriteFailed

S = 1_000_000_000


def logged(store: TimeSeriesStore, start: int = 0) -> list[tuple[int, str, list[tuple[str | None, int, float]]]]:
    """(seq, table, readings) of every entry from `start` on."""
    out: list[tuple[int, str, list[tuple[str | None, int, float]]]] = []
    for key, value in store.arrivals.entries(start):
        entry = decode_entry(key, value)
        table = store.table_by_id(entry.table_id)
        assert table is not None
        rows = [(store.series_name(series), t - TIME_SHIFT, v) for _r, series, t, v in ROW.iter_unpack(entry.data)]
        out.append((entry.seq, table.name, rows))
    return out


def test_nothing_is_logged_until_a_consumer_enables_the_log(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        await store.append("t", [("a", S, 1.0)], durable=True)
        assert logged(store) == []
        store.arrivals.enabled = True
        await store.append("t", [("a", 2 * S, 2.0)], durable=True)
        assert logged(store) == [(1, "T", [("a", 2 * S, 2.0)])]
        await store.close()

    asyncio.run(scenario())


def test_entries_keep_the_order_of_arrival_not_of_time_and_survive_a_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        await store.append("t", [("b", 5 * S, 5.0), ("a", 1 * S, 1.0)], durable=False)
        await store.append("u", [("x", 3 * S, -3.5)], durable=False)
        await store.append("t", [("a", 0, 0.25)], durable=True)
        first = logged(store)
        assert first == [
            (1, "T", [("b", 5 * S, 5.0), ("a", S, 1.0)]),
            (2, "U", [("x", 3 * S, -3.5)]),
            (3, "T", [("a", 0, 0.25)]),
        ]
        await store.close()
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        assert logged(store) == first
        await store.append("t", [("c", S, 7.0)], durable=True)
        assert logged(store, 4) == [(4, "T", [("c", S, 7.0)])], "sequence numbers go on after a reopen"
        await store.close()

    asyncio.run(scenario())


def test_a_batch_that_fails_leaves_neither_readings_nor_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        await store.append("t", [("a", S, 1.0)], durable=True)

        def broken(*_args: object) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(store.writer, "_commit", broken)
        with pytest.raises(WriteFailed):
            await store.append("t", [("a", 2 * S, 2.0)], durable=True)
        monkeypatch.undo()
        await store.append("t", [("a", 3 * S, 3.0)], durable=True)
        assert [seq for seq, _t, _r in logged(store)] == [1, 3], "the failed batch leaves a gap readers step over"
        assert list(store.scan("t", "a")) == [(S, 1.0), (3 * S, 3.0)]
        await store.close()

    asyncio.run(scenario())


def test_read_stops_at_the_row_budget_but_returns_at_least_one_entry(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        await store.append("t", [("a", i * S, float(i)) for i in range(5)], durable=False)
        await store.append("t", [("a", 10 * S, 1.0)], durable=False)
        await store.append("t", [("a", 11 * S, 1.0)], durable=True)
        assert [e.seq for e in store.arrivals.read(1, 3)] == [1]
        assert [e.seq for e in store.arrivals.read(1, 6)] == [1, 2]
        assert [e.seq for e in store.arrivals.read(2, 100)] == [2, 3]
        assert store.arrivals.read(4, 100) == []
        await store.close()

    asyncio.run(scenario())


def test_advancing_a_cursor_saves_it_and_deletes_the_entries_behind_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        for i in range(4):
            await store.append("t", [("a", i * S, float(i))], durable=True)
        assert store.arrivals.cursor("up") == Cursor()
        await store.writer.write(store.arrivals.advance("up", Cursor(3, {"T": 2}), trim=True), durable=True)
        await store.close()
        store = TimeSeriesStore(tmp_path / "db")
        assert store.arrivals.cursor("up") == Cursor(3, {"T": 2})
        assert [seq for seq, _t, _r in logged(store)] == [3, 4]
        assert store.arrivals.next_seq == 5
        assert len(list(store.scan("t", "a"))) == 4, "the readings themselves stay"
        await store.close()

    asyncio.run(scenario())


def test_numbering_goes_on_past_a_cursor_that_passed_every_entry(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        for i in range(3):
            await store.append("t", [("a", i * S, float(i))], durable=True)
        await store.writer.write(store.arrivals.advance("up", Cursor(4), trim=True), durable=True)
        await store.close()
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        assert logged(store) == []
        await store.append("t", [("a", 9 * S, 9.0)], durable=True)
        assert logged(store, store.arrivals.cursor("up").next) == [(4, "T", [("a", 9 * S, 9.0)])]
        await store.close()

    asyncio.run(scenario())


def test_an_entry_is_readable_only_once_its_batch_is_synced_and_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's thread puts a batch into RocksDB before it syncs it and answers its writers: a reader must not
    pass on readings the gateway has not acknowledged yet (they could still be lost in a power cut)."""

    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        store.arrivals.enabled = True
        told: list[list[tuple[int, int]]] = []
        store.arrivals.on_written = told.append
        synced = threading.Event()
        commit = store.writer._commit

        def slow_sync(puts: list[Op], durable: bool, dirty: set[tuple[int, int]]) -> None:
            commit(puts, False, dirty)  # in RocksDB, not yet synced
            synced.wait(10)

        monkeypatch.setattr(store.writer, "_commit", slow_sync)
        batch = store.append_nowait("t", [("a", S, 1.0), ("b", S, 2.0)], durable=True)
        await asyncio.sleep(0.2)
        assert [seq for seq, _t, _r in logged(store)] == [1], "the entry is in RocksDB"
        assert store.arrivals.read(1, 100) == [] and told == []
        synced.set()
        await asyncio.shield(batch)
        assert [entry.seq for entry in store.arrivals.read(1, 100)] == [1]
        table = store.table("t")
        assert table is not None and told == [[(table.id, 2)]]
        await store.close()

    asyncio.run(scenario())
