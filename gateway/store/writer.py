"""Group commit: readings from every connection are written together, one WriteBatch and one fsync at a time.

A write waits for the batch that carries it. While a batch is being written (on the store's own writer thread,
so that an fsync on an SD card does not stall the event loop), new writes gather for the next one; under load
a batch holds whatever arrived during one fsync, so durability costs one fsync per batch, not per reading.
`commit_interval` spaces batches out when the load is light, so that a trickle of readings does not fsync for
each one.

A durable write (QoS 1/2) returns once its batch is in the write-ahead log *and* synced to the card. A
non-durable one (QoS 0) returns once its batch is written to the log without a sync: it survives a crash of the
gateway, and is lost in a power cut only if the cut comes before the next durable batch or RocksDB's own flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rocksdict import Rdict, WriteBatch

from gateway.store.rollups import Dirty, RollupTracker

log = logging.getLogger("gateway.store")

Put = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete keys from `start` (included) to `end` (excluded), in order with the puts around it."""

    start: bytes
    end: bytes


Op = Put | DeleteRange


class WriteFailed(Exception):
    """The batch could not be written: nothing in it is stored."""


class Writer:
    def __init__(self, db: Rdict, commit_interval: float = 0.002, rollups: RollupTracker | None = None) -> None:
        self._db = db
        self._rollups = rollups
        self.commit_interval = commit_interval
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._puts: list[Op] = []
        self._durable = False
        # Done when the batch being gathered is written: one future for everything in it, not one per write.
        self._batch: asyncio.Future[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        # Figures for /metrics and the benchmarks.
        self.batches = 0
        self.readings = 0
        self.sync_seconds = 0.0
        self.syncs = 0

    def submit(self, puts: list[Op], *, durable: bool) -> asyncio.Future[None]:
        """Queue `puts` for the next batch. The future returned is shared by everything in that batch: it is done
        once the batch is written (and synced, if anything in it is durable), or fails with WriteFailed. Callers
        that await it must shield it: cancelling it would cancel the whole batch's."""
        self._puts += puts
        self._durable |= durable
        batch = self._batch
        if batch is None:
            batch = self._batch = asyncio.get_running_loop().create_future()
            if self._running is None:
                self._running = asyncio.create_task(self._commit_while_pending(), name="store-group-commit")
        return batch

    async def write(self, puts: list[Op], *, durable: bool) -> None:
        """Store `puts`; returns when they are written (and synced, if `durable`). Raises WriteFailed."""
        await asyncio.shield(self.submit(puts, durable=durable))

    async def _commit_while_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._batch is not None:
                wait = self._last_commit + self.commit_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                puts, durable, batch = self._puts, self._durable, self._batch
                self._puts, self._durable, self._batch = [], False, None
                self._last_commit = time.monotonic()
                written = len(puts)
                dirty: Dirty = set()
                if self._rollups is not None:
                    records, dirty = self._rollups.take()
                    puts.extend(records)
                try:
                    await loop.run_in_executor(self._thread, self._commit, puts, durable, dirty)
                except Exception as exc:
                    log.error("writing %d readings failed: %s", written, exc)
                    if self._rollups is not None:
                        self._rollups.failed()
                    batch.set_exception(WriteFailed(f"the store could not write: {exc}"))
                    continue
                self.batches += 1
                self.readings += written
                batch.set_result(None)
        finally:
            self._running = None

    def _commit(self, puts: list[Op], durable: bool, dirty: Dirty) -> None:
        batch = WriteBatch(raw_mode=True)
        for op in puts:
            if type(op) is tuple:
                batch.put(op[0], op[1])
            else:
                assert isinstance(op, DeleteRange)
                batch.delete_range(op.start, op.end)
        self._db.write(batch)
        if durable:
            # A write with sync set holds the GIL through the fsync (rocksdict), freezing the event loop for as
            # long as the card takes; flush_wal lets it run meanwhile.
            started = time.monotonic()
            self._db.flush_wal(True)
            self.sync_seconds += time.monotonic() - started
            self.syncs += 1
        if dirty and self._rollups is not None:
            try:
                self._rollups.recompute(dirty)
            except Exception as exc:
                # The readings are stored; the dirty marks stay in the database and are recomputed at the next start.
                log.error(
                    "recomputing %d minutes of rollups failed: %s; they are redone at the next start", len(dirty), exc
                )

    async def stop(self) -> None:
        """Finish what is pending, then stop the writer thread."""
        while self._running is not None:
            await asyncio.shield(self._running)
        self._thread.shutdown(wait=True)
