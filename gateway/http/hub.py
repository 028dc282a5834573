"""The fan-out behind /db/watch: stored batches handed to the watchers of their table, each with a bounded queue.

The store calls `WatchHub.publish` on the event loop after every stored batch; each watcher's stream takes its
readings on a WSGI thread of its own (watch.py). A watcher that does not keep up has at most `max_pending` readings
waiting: beyond that readings are dropped for it and counted, so a slow client never grows memory. There are at
most `max_watchers` at once, since each stream holds one of the HTTP server's threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

__all__ = ["WatchHub", "WatchRefused", "Watcher"]


class WatchRefused(Exception):
    """No more watchers now (too many, or the gateway is stopping); the message says why."""


Readings = Sequence[tuple[str, int, float]]


class Watcher:
    """One stream's queue: batches handed over on the event loop, taken by the stream's thread."""

    def __init__(self, table: str, names: frozenset[str] | None, max_pending: int) -> None:
        self.table = table
        self.names = names
        self.max_pending = max_pending
        self._ready = threading.Condition()
        self._batches: deque[Readings] = deque()
        self._pending = 0
        self._dropped = 0
        self.dropped_total = 0
        self.closed = False

    def offer(self, readings: Readings) -> None:
        """Called on the event loop: must never block on the client."""
        if self.names is not None:
            readings = [reading for reading in readings if reading[0] in self.names]
            if not readings:
                return
        with self._ready:
            if self._pending + len(readings) > self.max_pending:
                self._dropped += len(readings)
                self.dropped_total += len(readings)
                return
            # The store's own sequence is kept, not copied: it is not changed after the listeners are told.
            self._batches.append(readings)
            self._pending += len(readings)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify()

    def take(self, timeout: float) -> tuple[list[Readings], int, bool]:
        """Waits up to `timeout` seconds for readings; returns the batches, how many readings were dropped since
        the last call, and whether the watcher is closed."""
        with self._ready:
            if not self._batches and not self._dropped and not self.closed:
                self._ready.wait(timeout)
            batches = list(self._batches)
            self._batches.clear()
            self._pending = 0
            dropped, self._dropped = self._dropped, 0
            return batches, dropped, self.closed


class WatchHub:
    def __init__(self, max_watchers: int = 6, *, max_pending: int = 10_000, keepalive: float = 15.0) -> None:
        self.max_watchers = max_watchers
        self.max_pending = max_pending
        self.keepalive = keepalive
        self._lock = threading.Lock()
        # Replaced, never changed in place, so that `publish` reads it on the event loop without the lock.
        self._watchers: tuple[Watcher, ...] = ()
        self._dropped_by_gone = 0
        self.closed = False

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    @property
    def dropped(self) -> int:
        """Readings dropped for slow watchers since the start (a counter for /metrics)."""
        return self._dropped_by_gone + sum(watcher.dropped_total for watcher in self._watchers)

    def publish(self, table: str, readings: Readings) -> None:
        """The store listener: called on the event loop after every stored batch."""
        for watcher in self._watchers:
            if watcher.table == table:
                watcher.offer(readings)

    def add(self, table: str, names: frozenset[str] | None) -> Watcher:
        with self._lock:
            if self.closed:
                raise WatchRefused("the gateway is stopping")
            if len(self._watchers) >= self.max_watchers:
                raise WatchRefused(
                    f"already {self.max_watchers} watchers, the most this gateway serves at once (each holds one of "
                    "the HTTP server's threads): close one, or poll /api/latest instead",
                )
            watcher = Watcher(table, names, self.max_pending)
            self._watchers = (*self._watchers, watcher)
            return watcher

    def remove(self, watcher: Watcher) -> None:
        with self._lock:
            if watcher in self._watchers:
                self._watchers = tuple(w for w in self._watchers if w is not watcher)
                self._dropped_by_gone += watcher.dropped_total

    def close(self) -> None:
        """Ends every stream and refuses new ones: the gateway is stopping."""
        with self._lock:
            self.closed = True
            watchers = self._watchers
        for watcher in watchers:
            watcher.close()
