# Readings the gateway did not acknowledge, kept in flash until it does: one JSON row a line, so that a batch is the
# lines joined (nothing to parse), and delivering a row twice is harmless (the gateway stores a series' reading at
# one time once). The file is only ever read line by line: a few days of readings are more than a board's RAM.
# Each row is written after a newline rather than before one: a row cut off by a power loss then stays alone on
# its line, skipped, instead of swallowing the next row written.
import os

import payload


class Spool:
    def __init__(self, path="spool.ndjson", max_rows=500):
        self.path = path
        self.max_rows = max_rows
        self.dropped = 0  # rows dropped, oldest first, to stay within max_rows

    def _lines(self):
        try:
            with open(self.path) as f:
                for raw in f:
                    row = raw.strip()
                    if row.startswith("[") and row.endswith("]"):
                        yield row
        except OSError:  # no spool file: nothing waits
            return

    def rows(self):
        return list(self._lines())

    def __len__(self):
        n = 0
        for _ in self._lines():
            n += 1
        return n

    def append(self, row_texts):
        with open(self.path, "a") as f:
            for r in row_texts:
                f.write("\n" + r)
        excess = len(self) - self.max_rows
        if excess > 0:
            self.dropped += excess
            self.remove_first(excess)

    def chunks(self, max_bytes):
        """The rows as db/append message bodies of at most `max_bytes` (a longer row goes alone), oldest first:
        (count, body) pairs, so that the caller can remove what each acknowledgement covers."""
        batch = []
        size = 2
        for row in self._lines():
            if batch and size + len(row) + 1 > max_bytes:
                yield len(batch), payload.batch(batch)
                batch = []
                size = 2
            batch.append(row)
            size += len(row) + 1
        if batch:
            yield len(batch), payload.batch(batch)

    def remove_first(self, n):
        """Drops the first `n` rows: the gateway acknowledged them (or the spool is full)."""
        if n <= 0:
            return
        tmp = self.path + ".tmp"
        kept = 0
        with open(tmp, "w") as out:
            for i, row in enumerate(self._lines()):
                if i >= n:
                    out.write("\n" + row)
                    kept += 1
        if not kept:
            self.clear()
            _remove(tmp)
            return
        try:
            os.rename(tmp, self.path)  # all or nothing: littlefs replaces the old file atomically
        except OSError:  # FAT does not rename onto an existing file
            _remove(self.path)
            os.rename(tmp, self.path)

    def clear(self):
        _remove(self.path)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
