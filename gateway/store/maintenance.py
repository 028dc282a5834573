"""Keeping the card healthy: the disk guard, and retention that deletes old readings and rollups with range
deletes (one per series and kind, however much they hold)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from gateway.store import keys
from gateway.store.database import Retention, TimeSeriesStore
from gateway.store.writer import DeleteRange, Op, WriteFailed

log = logging.getLogger("gateway.store")
DAY = 86_400_000_000_000


class DiskFull(WriteFailed):
    """Free space is below the guard: new readings are refused rather than filling the card."""


class DiskGuard:
    """Refuses writes while the file system holding the store has less than `min_free_bytes` free. statvfs is
    asked at most once a second: the guard sits on the ingest path."""

    def __init__(self, path: Path, min_free_bytes: int) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self._checked_at = 0.0
        self.free_bytes = 0

    def check(self) -> None:
        if not self.min_free_bytes:
            return
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            stats = os.statvfs(self.path)
            self.free_bytes = stats.f_bavail * stats.f_frsize
            self._checked_at = now
        if self.free_bytes < self.min_free_bytes:
            raise DiskFull(
                f"the disk is nearly full ({self.free_bytes >> 20} MiB free, [store] min_free_bytes is "
                f"{self.min_free_bytes >> 20} MiB): readings are refused until space is freed or retention shortened"
            )


async def apply_retention(store: TimeSeriesStore, default: Retention, now_ns: int | None = None) -> int:
    """Delete readings and rollups older than their table's retention (`default` where the table names none);
    returns how many series were trimmed."""
    now = time.time_ns() if now_ns is None else now_ns
    ops: list[Op] = []
    trimmed = set()
    for table in store.tables():
        retention = table.retention.over(default)
        for days, space in (
            (retention.raw, keys.READING),
            (retention.minute, keys.MINUTE_ROLLUP),
            (retention.hour, keys.HOUR_ROLLUP),
        ):
            if not days:
                continue
            cutoff = max(now - int(days * DAY), keys.MIN_TIME)
            for series_id in store.series_ids(table.name):
                ops.append(
                    DeleteRange(keys.reading_prefix(series_id, space), keys.reading_key(series_id, cutoff, space))
                )
                trimmed.add(series_id)
    if ops:
        await store.writer.write(ops, durable=True)
    return len(trimmed)


async def retention_forever(store: TimeSeriesStore, default: Retention, every: float = 3600.0) -> None:
    """The background task the gateway runs: applies retention at start and then every `every` seconds."""
    while True:
        try:
            trimmed = await apply_retention(store, default)
            if trimmed:
                log.info("retention: old readings and rollups deleted from %d series", trimmed)
        except WriteFailed as exc:
            log.error("retention could not delete old readings: %s", exc)
        await asyncio.sleep(every)
