"""The forwarder's bookkeeping on a real store: the backlog it counts, and readings retention deleted before their
turn, stepped over while the upstream is away, counted and kept counted across a restart."""

import asyncio
import time
from pathlib import Path

from gateway.store.database import Retention, TimeSeriesStore
from gateway.uplink.forwarder import CONSUMER, Forwarder, ForwardSettings

S = 1_000_000_000
DAY = 86_400 * S


def test_the_backlog_is_counted_per_table_at_start_and_as_readings_arrive(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        forwarder = Forwarder(store, ForwardSettings(), Retention())
        await store.append("a", [("x", i, 1.0) for i in range(3)], durable=False)
        await store.append("b", [("y", 1, 1.0)], durable=True)
        assert forwarder.backlog == {"A": 3, "B": 1}
        oldest = forwarder.oldest_arrival_ns()
        assert oldest is not None and abs(oldest - time.time_ns()) < 60 * S
        await store.close()
        store = TimeSeriesStore(tmp_path / "db")
        assert Forwarder(store, ForwardSettings(), Retention()).backlog == {"A": 3, "B": 1}
        await store.close()

    asyncio.run(scenario())


def test_readings_past_retention_are_stepped_over_and_counted_while_the_upstream_is_away(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = TimeSeriesStore(tmp_path / "db")
        forwarder = Forwarder(store, ForwardSettings(), Retention(raw=7))
        now = time.time_ns()
        await store.append("old", [("x", now - 30 * DAY + i, 1.0) for i in range(5)], durable=False)
        await store.append("kept", [("y", now - 30 * DAY, 1.0)], durable=False)
        await store.set_retention("kept", Retention(raw=0))  # this table keeps everything: its reading waits
        await store.append("old", [("x", now - 40 * DAY, 2.0)], durable=True)
        await forwarder.skip_expired()
        assert forwarder.cursor.dropped == {"OLD": 5}
        assert forwarder.cursor.next == 2, "stopped at the first entry that still has a reading to send"
        assert forwarder.backlog == {"KEPT": 1, "OLD": 1}
        await store.close()
        store = TimeSeriesStore(tmp_path / "db")
        assert store.arrivals.cursor(CONSUMER).dropped == {"OLD": 5}, "saved, so never counted twice or lost"
        assert Forwarder(store, ForwardSettings(), Retention(raw=7)).backlog == {"KEPT": 1, "OLD": 1}
        await store.close()

    asyncio.run(scenario())
