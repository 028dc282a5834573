"""Store and forward: the store's arrival log, passed on to the upstream in order, at least once.

The forwarder reads chunks from its cursor, publishes them at QoS 1 within an in-flight window and a rate, and
moves the cursor past a chunk once every message of it is acknowledged. The cursor is saved at most once a second
(and at stop); after a crash the last second's chunks go again, which the receiving side absorbs, as a reading's
key is (table, name, time). The entries behind the cursor are deleted once a minute, with one range delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from gateway.store.arrivals import entry_header
from gateway.store.database import Retention, TimeSeriesStore
from gateway.store.maintenance import DAY
from gateway.uplink.batches import DROPPED_TABLE, Chunk, Format, make_chunk
from gateway.uplink.client import UpstreamClient, UpstreamError, describe_reason

log = logging.getLogger("gateway.uplink")
CONSUMER = "uplink"
SAVE_EVERY = 1.0
TRIM_EVERY = 60.0
QUOTA_EXCEEDED = 0x97


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    format: Format = field(default_factory=Format)
    max_delay: float = 1.0
    max_rate: float = 0.0  # readings per second; 0: no limit
    max_inflight: int = 8


Pending = deque[tuple[Chunk, list[asyncio.Future[int]]]]


class Refused(UpstreamError):
    """The upstream acknowledged a message with a failure code that may pass (quota): try again later."""


class Forwarder:
    def __init__(self, store: TimeSeriesStore, settings: ForwardSettings, default_retention: Retention) -> None:
        self.store = store
        self.settings = settings
        self.default_retention = default_retention
        self.arrivals = store.arrivals
        self.arrivals.enabled = True
        self.cursor = self.arrivals.cursor(CONSUMER)
        self.backlog: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # per table, readings the upstream refused (MQTT 5 reason codes)
        self.forwarded = 0
        self.messages = 0
        self._recent: deque[tuple[float, int]] = deque()  # (when, readings) acknowledged, for the rate
        self._arrived = asyncio.Event()
        self._acked = asyncio.Event()
        self._saved = self.cursor.next
        self._inflight = 0
        self._tokens, self._filled_at = 0.0, 0.0
        self._fresh = 0  # readings stored since the forwarder last read the log
        self._want = 1  # how many it waits for
        self._saved_at = 0.0
        self._trimmed_at = time.monotonic()
        self._warned: set[tuple[object, ...]] = set()
        self._count_backlog()
        self.arrivals.on_written = self._written

    def _count_backlog(self) -> None:
        headers = (entry_header(value) for _key, value in self.arrivals.entries(self.cursor.next))
        self._add_to_backlog((table_id, count) for table_id, _arrival, count in headers)

    def _written(self, entries: list[tuple[int, int]]) -> None:
        """New entries are readable: counted in the backlog when they become so, never before the reader sees them."""
        self._fresh += self._add_to_backlog(entries)
        if self._fresh >= self._want:
            self._arrived.set()

    def _add_to_backlog(self, entries: Iterable[tuple[int, int]]) -> int:
        """Count (table id, readings) entries into the backlog; returns how many readings that was."""
        per_table: dict[int, int] = {}
        for table_id, count in entries:
            per_table[table_id] = per_table.get(table_id, 0) + count
        for table_id, count in per_table.items():
            table = self.store.table_by_id(table_id)
            name = table.name if table is not None else DROPPED_TABLE
            self.backlog[name] = self.backlog.get(name, 0) + count
        return sum(per_table.values())

    # -- status ---------------------------------------------------------------------------------------------------

    def oldest_arrival_ns(self) -> int | None:
        """When the oldest reading not yet forwarded arrived (None: nothing waits). Safe on HTTP threads."""
        for _key, value in self.arrivals.entries(self.cursor.next):
            return entry_header(value)[1]
        return None

    def rate(self, now: float | None = None) -> float:
        """Readings acknowledged per second over the last ten seconds."""
        now = time.monotonic() if now is None else now
        recent = [count for when, count in list(self._recent) if when > now - 10]
        return sum(recent) / 10

    # -- forwarding -------------------------------------------------------------------------------------------

    def _cutoffs(self) -> dict[str, int]:
        now = time.time_ns()
        cutoffs = {}
        for table in self.store.tables():
            days = table.retention.over(self.default_retention).raw
            if days:
                cutoffs[table.name] = now - int(days * DAY)
        return cutoffs

    async def run(self, client: UpstreamClient) -> None:
        """Forward until the connection ends; raises the UpstreamError that ended it."""
        window = max(1, min(self.settings.max_inflight, client.receive_maximum))
        fmt = replace(self.settings.format, max_packet_size=client.maximum_packet_size)
        position = self.cursor.next
        pending: Pending = deque()
        self._inflight = 0
        self._tokens, self._filled_at = float(fmt.batch_size), time.monotonic()
        try:
            while True:
                chunk = await self._ready_chunk(position, fmt, client, pending)
                futures: list[asyncio.Future[int]] = []
                for message in chunk.messages:
                    while self._inflight >= window:
                        self._acked.clear()
                        await self._wait(self._acked, client, 1.0, pending)
                    await self._pace(message.count, fmt.batch_size)
                    future = client.publish(message.topic, message.payload, qos=1)
                    self._inflight += 1
                    future.add_done_callback(self._ack_arrived)
                    futures.append(future)
                    await client.drain()
                pending.append((chunk, futures))
                position = chunk.end
                self._settle(pending)
                # A turn for everything else on the loop between chunks: a backlog catching up must not hold up
                # local ingest for a whole window of chunks.
                await asyncio.sleep(0)
        finally:
            with contextlib.suppress(UpstreamError):
                self._settle(pending)  # what was acknowledged before the end counts, also when cancelled
            for _chunk, futures in pending:
                for future in futures:
                    future.remove_done_callback(self._ack_arrived)
                    if future.done() and not future.cancelled():
                        future.exception()  # retrieved: the connection's end is what is reported

    async def _ready_chunk(self, position: int, fmt: Format, client: UpstreamClient, pending: Pending) -> Chunk:
        """The next chunk once it is full, or its oldest reading has waited max_delay."""
        max_delay = self.settings.max_delay
        while True:
            if client.closed:
                raise await client.wait_closed()
            self._fresh = 0
            entries = self.arrivals.read(position, fmt.batch_size)
            size = sum(entry.count for entry in entries)
            wait = max_delay  # with nothing to send: to settle and save the cursor now and then
            if entries:
                wait = entries[0].arrival_ns / 1e9 + max_delay - time.time()
                if size >= fmt.batch_size or wait <= 0:
                    return make_chunk(entries, self.store, self._cutoffs(), fmt)
            # Woken when the batch can fill, not at every arrival: each wake-up reads the log again.
            self._want = fmt.batch_size - size
            self._arrived.clear()
            await self._wait(self._arrived, client, wait, pending)

    async def _pace(self, count: int, batch_size: int) -> None:
        """Keep to max_rate readings a second (a token bucket holding at most a second's or a batch's worth)."""
        rate = self.settings.max_rate
        if not rate:
            return
        now = time.monotonic()
        self._tokens = min(self._tokens + (now - self._filled_at) * rate, max(rate, batch_size))
        self._filled_at = now
        if self._tokens < count:
            await asyncio.sleep((count - self._tokens) / rate)
            self._tokens, self._filled_at = float(count), time.monotonic()
        self._tokens -= count

    def _ack_arrived(self, _future: asyncio.Future[int]) -> None:
        self._inflight -= 1
        self._acked.set()

    async def _wait(self, event: asyncio.Event, client: UpstreamClient, timeout: float, pending: Pending) -> None:
        """Wait for `event`, `timeout` or the connection's end, whichever comes first; then settle what is done."""
        closed = asyncio.ensure_future(client.wait_closed())
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((closed, waiter), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (closed, waiter):
                task.cancel()
            await asyncio.gather(closed, waiter, return_exceptions=True)
        self._settle(pending)
        self._save_soon()

    def _settle(self, pending: Pending) -> None:
        """Move the cursor past every chunk at the head whose messages are all acknowledged."""
        while pending and all(f.done() for f in pending[0][1]):
            chunk, futures = pending[0]
            refused = 0
            for message, future in zip(chunk.messages, futures, strict=True):
                if future.cancelled():
                    raise UpstreamError("forwarding was cancelled")
                exc = future.exception()
                if exc is not None:
                    raise exc
                code = future.result()
                if code == QUOTA_EXCEEDED:
                    raise Refused(f"the upstream refused a message of table {message.table}: {describe_reason(code)}")
                if code >= 0x80:
                    refused += message.count
                    self.refused[message.table] = self.refused.get(message.table, 0) + message.count
                    self._warn_once(
                        ("refused", message.table, code),
                        "the upstream refused %d readings of table %s on %s: %s; they are not sent again (check the "
                        "upstream's access rules for this client; later refusals are only counted, in the status)",
                        message.count,
                        message.table,
                        message.topic,
                        describe_reason(code),
                    )
            pending.popleft()
            self._passed(chunk, refused)

    def _passed(self, chunk: Chunk, refused: int = 0) -> None:
        self.cursor.next = chunk.end
        for table, count in chunk.readings.items():
            left = self.backlog.get(table, 0) - count
            if left > 0:
                self.backlog[table] = left
            else:
                self.backlog.pop(table, None)
        for table, count in chunk.dropped.items():
            self.cursor.dropped[table] = self.cursor.dropped.get(table, 0) + count
            self._warn_once(
                ("dropped", table),
                "%d readings of table %s were deleted (by retention, or with their table) before they could be "
                "forwarded; later ones are only counted, in the status",
                count,
                table,
            )
        sent = sum(m.count for m in chunk.messages) - refused
        self.forwarded += sent
        self.messages += len(chunk.messages)
        now = time.monotonic()
        self._recent.append((now, sent))
        while self._recent and self._recent[0][0] < now - 10:
            self._recent.popleft()
        self._save_soon()

    def _warn_once(self, what: tuple[object, ...], message: str, *args: object) -> None:
        """Log a kind of loss the first time it happens in a run: the status counts every one."""
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message, *args)

    # -- the cursor ---------------------------------------------------------------------------------------------

    def _save_soon(self) -> None:
        now = time.monotonic()
        if self.cursor.next != self._saved and now - self._saved_at >= SAVE_EVERY:
            self._save(trim=now - self._trimmed_at >= TRIM_EVERY)

    def _save(self, *, trim: bool) -> asyncio.Future[None]:
        now = time.monotonic()
        self._saved, self._saved_at = self.cursor.next, now
        ops = self.arrivals.advance(CONSUMER, self.cursor, trim=trim)
        if trim:
            self._trimmed_at = now
        # Not synced: a cursor lost in a power cut only means that some readings go up twice.
        future = self.store.writer.submit(ops, durable=False)
        future.add_done_callback(_report_failed_save)
        return future

    async def skip_expired(self) -> None:
        """While the upstream is away: step the cursor over readings retention deleted, so that the log does not
        outgrow the tables' retention."""
        fmt, cutoffs = self.settings.format, self._cutoffs()
        while entries := self.arrivals.read(self.cursor.next, 1):  # one entry at a time
            chunk = make_chunk(entries, self.store, cutoffs, fmt)
            if chunk.messages:
                break
            self._passed(chunk)
        await self.flush()

    async def flush(self) -> None:
        """Save the cursor now (at stop)."""
        if self.cursor.next != self._saved:
            await asyncio.shield(self._save(trim=True))


def _report_failed_save(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error(
            "saving the uplink's position failed: %s; readings since the last save go up again", future.exception()
        )
