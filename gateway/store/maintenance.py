"""Keeping the card healthy: the disk guard, and retention that deletes old readings with range deletes."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from gateway.store import keys
from gateway.store.database import TimeSeriesStore
from gateway.store.writer import DeleteRange, Op, WriteFailed

log = logging.getLogger("gateway.store")


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


async def apply_retention(store: TimeSeriesStore, keep_ns: int, now_ns: int | None = None) -> int:
    """Delete readings older than `keep_ns` from every series; returns how many series were trimmed."""
    cutoff = (now_ns if now_ns is not None else time.time_ns()) - keep_ns
    ops: list[Op] = [
        DeleteRange(keys.reading_prefix(series_id), keys.reading_key(series_id, cutoff))
        for series_id in store.series_ids()
    ]
    if ops:
        await store.writer.write(ops, durable=True)
    return len(ops)


async def retention_forever(store: TimeSeriesStore, keep_ns: int, every: float = 3600.0) -> None:
    """The background task the gateway runs while `[store] retention_days` is set."""
    while True:
        try:
            trimmed = await apply_retention(store, keep_ns)
            log.info(
                "retention: readings older than %d days deleted from %d series", keep_ns // 86_400_000_000_000, trimmed
            )
        except WriteFailed as exc:
            log.error("retention could not delete old readings: %s", exc)
        await asyncio.sleep(every)
