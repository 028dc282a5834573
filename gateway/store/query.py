"""Queries over the time-series store: the plan the store executes, and the answers for the web page.

The store knows nothing of SQL. The HTTP layer parses a statement and turns its `Select` into a `Query`, field
for field; its bucket becomes `bucket_width` / `bucket_origin` and its value filters `(op, value)` pairs::

    Query(select.table, tuple((item.kind, item.alias) for item in select.items), select.names,
          select.time_from, select.time_to, tuple((f.op, f.value) for f in select.value_filters),
          select.bucket.width if select.bucket else None, select.bucket.origin if select.bucket else 0,
          select.group_by_name, select.order, select.order_by_name, select.limit, select.offset)

Results look like machbase-neo's: rows of NAME (string), TIME (datetime, ns), VALUE (double), or one row per
group with COUNT as int64 and the other aggregates as double (None when a group without GROUP BY is empty).

Everything streams: readings are pulled from RocksDB as rows are produced, so LIMIT stops the scans early and an
aggregation holds one group at a time (one per series within a bucket when grouping by name and time).
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Literal, TypeAlias, TypedDict

from gateway.store.database import TimeSeriesStore
from gateway.store.rollups import LEVELS, Aggregate

__all__ = [
    "AGGREGATES",
    "ColumnKind",
    "CompareOp",
    "Direction",
    "Query",
    "Result",
    "SeriesSummary",
    "execute",
    "latest",
    "series_summary",
    "stream",
]

ColumnKind: TypeAlias = Literal["name", "time", "value", "bucket", "count", "sum", "avg", "min", "max", "first", "last"]
CompareOp: TypeAlias = Literal["=", "!=", "<", "<=", ">", ">="]
Direction: TypeAlias = Literal["asc", "desc"]

AGGREGATES: frozenset[ColumnKind] = frozenset({"count", "sum", "avg", "min", "max", "first", "last"})
# The column types as neo names them.
_TYPES: dict[ColumnKind, str] = {
    "name": "string",
    "time": "datetime",
    "value": "double",
    "bucket": "datetime",
    "count": "int64",
    "sum": "double",
    "avg": "double",
    "min": "double",
    "max": "double",
    "first": "double",
    "last": "double",
}
_COMPARE: dict[CompareOp, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# Keys hold signed 64-bit times: a bound outside that range cannot be encoded, it just leaves that side open.
_MIN_TIME, _MAX_TIME = -(2**63), 2**63 - 1

# One reading on its way to a row: time (ns), series name, value. Tuples compare by time, then name. An aggregating
# query may get a rollup instead of a value: the aggregate of that series' readings in [time, time + its width).
Reading: TypeAlias = tuple[int, str, float | Aggregate]


@dataclass(frozen=True, slots=True)
class Query:
    """A SELECT on one tag table, as the store runs it.

    - `columns`: (kind, label) per output column; a "bucket" column is the start of the time bucket.
    - `names`: the series to read; None reads every series of the table. Unknown names read nothing.
    - `time_from` / `time_to`: the half-open range [from, to) of TIME; None leaves that side open.
    - `value_filters`: (op, value) pairs that must all accept a reading's VALUE, before any aggregation.
    - `bucket_width` / `bucket_origin`: GROUP BY a time bucket: buckets start at origin + k * width (ns).
    - `group_by_name`: GROUP BY NAME. With a bucket, an aggregate or this, the query aggregates.
    - `order`: the direction of TIME (of the bucket when aggregating).
    - `order_by_name`: rows series by series, names ascending; otherwise merged by TIME, ties in ascending name.
      An aggregation without GROUP BY NAME has no names to order by and ignores it.
    - `limit` / `offset`: applied last.
    """

    table: str
    columns: tuple[tuple[ColumnKind, str], ...]
    names: tuple[str, ...] | None = None
    time_from: int | None = None
    time_to: int | None = None
    value_filters: tuple[tuple[CompareOp, float], ...] = ()
    bucket_width: int | None = None
    bucket_origin: int = 0
    group_by_name: bool = False
    order: Direction = "asc"
    order_by_name: bool = True
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        # A Query is built by code, not typed by people: these are bugs in the caller, reported as such.
        if self.bucket_width is not None and self.bucket_width <= 0:
            raise ValueError(f"bucket_width must be positive, not {self.bucket_width}")
        if (self.limit is not None and self.limit < 0) or self.offset < 0:
            raise ValueError("limit and offset cannot be negative")
        kinds = {kind for kind, _ in self.columns}
        if "bucket" in kinds and self.bucket_width is None:
            raise ValueError("a bucket column needs bucket_width")
        if self.aggregated and kinds & {"time", "value"}:
            raise ValueError("an aggregating query can only have aggregates, NAME and the bucket as columns")
        if self.aggregated and "name" in kinds and not self.group_by_name:
            raise ValueError("a NAME column in an aggregating query needs group_by_name")

    @property
    def aggregated(self) -> bool:
        return (
            self.bucket_width is not None or self.group_by_name or any(kind in AGGREGATES for kind, _ in self.columns)
        )


@dataclass(slots=True)
class Result:
    columns: list[str]
    types: list[str]
    rows: list[list[object]]


def execute(store: TimeSeriesStore, query: Query) -> Result:
    """Runs `query`. Raises StoreError if the table does not exist."""
    columns, types, rows = stream(store, query)
    return Result(columns, types, list(rows))


def stream(store: TimeSeriesStore, query: Query) -> tuple[list[str], list[str], Iterator[list[object]]]:
    """`execute`, with the rows produced as they are read: a long answer is sent without being held whole.
    Raises StoreError at once if the table does not exist."""
    existing = store.series_names(query.table)  # raises StoreError for an unknown table
    names = existing if query.names is None else sorted(set(query.names).intersection(existing))
    rows: Iterator[list[object]]
    if query.aggregated:
        # Grouping by name series by series keeps one group in memory; any other grouping needs buckets in time
        # order across series, so the scans are merged. One group over everything takes them in any order.
        by_series = (
            len(names) <= 1
            or (query.group_by_name and query.order_by_name)
            or (query.bucket_width is None and not query.group_by_name)
        )
        rows = _aggregate(_readings(store, query, names, by_series=by_series, plain=False), query, by_series)
    elif query.order_by_name and not query.value_filters:
        rows = _series_rows(store, query, names)
    else:
        rows = _project(_readings(store, query, names, by_series=query.order_by_name, plain=True), query)
    stop = None if query.limit is None else query.offset + query.limit
    # islice pulls only the rows it returns, so the scans behind them stop there too.
    return (
        [label for _, label in query.columns],
        [_TYPES[kind] for kind, _ in query.columns],
        islice(rows, query.offset, stop),
    )


def _readings(
    store: TimeSeriesStore, query: Query, names: list[str], *, by_series: bool, plain: bool
) -> Iterator[Reading]:
    """The readings of `names` that pass the filters: series by series, or merged by time, in `query.order`."""
    time_from, time_to = query.time_from, query.time_to
    if (time_from is not None and time_from > _MAX_TIME) or (time_to is not None and time_to <= _MIN_TIME):
        return iter(())
    if time_from is not None and time_from < _MIN_TIME:
        time_from = None
    if time_to is not None and time_to > _MAX_TIME:
        time_to = None
    reverse = query.order == "desc"
    filters = [(_COMPARE[op], operand) for op, operand in query.value_filters]

    levels = _rollup_levels(query)

    def series(name: str) -> Iterator[Reading]:
        if levels:
            for time, piece in _pieces(store, query.table, name, time_from, time_to, levels, reverse):
                yield time, name, piece
            return
        for time, value in store.scan(query.table, name, time_from, time_to, reverse=reverse):
            if all(compare(value, operand) for compare, operand in filters):
                yield time, name, value

    scans = [series(name) for name in names]
    if by_series:
        return chain.from_iterable(scans)
    if reverse and plain:
        # Rows merged newest first still list a time's readings in ascending name, as the SQL layer promises.
        return heapq.merge(*scans, key=lambda reading: (-reading[0], reading[1]))
    # Aggregates only need each bucket's readings and rollups together; (time, name) never repeats in one table.
    return heapq.merge(*scans, reverse=reverse)


def _rollup_levels(query: Query) -> tuple[tuple[int, bytes], ...]:
    """The rollups an aggregation can read instead of readings: those whose buckets fit whole in the query's
    buckets. Value filters need every reading."""
    if not query.aggregated or query.value_filters:
        return ()
    width, origin = query.bucket_width, query.bucket_origin
    return tuple((size, space) for size, space in LEVELS if width is None or (width % size == 0 and origin % size == 0))


def _pieces(
    store: TimeSeriesStore,
    table: str,
    name: str,
    time_from: int | None,
    time_to: int | None,
    levels: tuple[tuple[int, bytes], ...],
    reverse: bool,
) -> Iterator[tuple[int, float | Aggregate]]:
    """One series over [time_from, time_to) as the coarsest rollups that fit whole, and finer rollups or readings
    at the ragged ends, in time order (or reversed)."""
    if not levels:
        return store.scan(table, name, time_from, time_to, reverse=reverse)
    (size, space), finer = levels[0], levels[1:]
    start = None if time_from is None else -(-time_from // size) * size
    end = None if time_to is None else time_to // size * size
    if start is not None and end is not None and start >= end:
        return _pieces(store, table, name, time_from, time_to, finer, reverse)
    parts: list[Iterator[tuple[int, float | Aggregate]]] = []
    if time_from is not None and start is not None and time_from < start:
        parts.append(_pieces(store, table, name, time_from, start, finer, reverse))
    parts.append(store.scan_rollups(table, name, space, start, end, reverse=reverse))
    if time_to is not None and end is not None and end < time_to:
        parts.append(_pieces(store, table, name, end, time_to, finer, reverse))
    return chain.from_iterable(reversed(parts) if reverse else parts)


def _series_rows(store: TimeSeriesStore, query: Query, names: list[str]) -> Iterator[list[object]]:
    """The rows of unfiltered readings, series by series: the common raw query, in one loop (a day at 1 Hz is
    86,400 rows, and every layer of generators costs about 0.4 µs a row)."""
    positions = [{"time": 0, "name": 1, "value": 2}[kind] for kind, _ in query.columns]
    reverse = query.order == "desc"
    for name in names:
        scan = store.scan(query.table, name, query.time_from, query.time_to, reverse=reverse)
        if positions == [0, 2]:
            for time, value in scan:
                yield [time, value]
        else:
            for time, value in scan:
                cells = (time, name, value)
                yield [cells[i] for i in positions]


def _project(readings: Iterable[Reading], query: Query) -> Iterator[list[object]]:
    positions = [{"time": 0, "name": 1, "value": 2}[kind] for kind, _ in query.columns]
    for reading in readings:
        yield [reading[i] for i in positions]


@dataclass(slots=True)
class _Group:
    """The running aggregates of one group. FIRST and LAST are the values at the least and greatest (time, name):
    readings and rollups arrive in bucket order, not reading by reading in time order."""

    count: int = 0
    total: float = 0.0
    low: float = 0.0
    high: float = 0.0
    first_at: tuple[int, str] = (0, "")
    first: float = 0.0
    last_at: tuple[int, str] = (0, "")
    last: float = 0.0

    def add(self, time: int, name: str, piece: float | Aggregate) -> None:
        if type(piece) is float:
            count, total, low, high = 1, piece, piece, piece
            first_at, first, last_at, last = (time, name), piece, (time, name), piece
        else:
            assert isinstance(piece, Aggregate)
            count, total, low, high = piece.count, piece.total, piece.low, piece.high
            first_at, first, last_at, last = (piece.first_time, name), piece.first, (piece.last_time, name), piece.last
        if self.count == 0:
            self.low, self.high = low, high
            self.first_at, self.first, self.last_at, self.last = first_at, first, last_at, last
        else:
            self.low = min(self.low, low)
            self.high = max(self.high, high)
            if first_at < self.first_at:
                self.first_at, self.first = first_at, first
            if last_at > self.last_at:
                self.last_at, self.last = last_at, last
        self.count += count
        self.total += total

    def get(self, kind: ColumnKind) -> object:
        if kind == "count":
            return self.count
        if self.count == 0:
            return None  # as SQL: only COUNT has a value over no readings
        if kind == "avg":
            return self.total / self.count
        if kind == "sum":
            return self.total
        if kind == "min":
            return self.low
        if kind == "max":
            return self.high
        return self.first if kind == "first" else self.last


def _aggregate(readings: Iterator[Reading], query: Query, by_series: bool) -> Iterator[list[object]]:
    """One row per group, in output order. The readings arrive group after group (`by_series`: a series' buckets
    one after another; otherwise buckets in time order, with every series in each), so a group is complete as
    soon as a reading of the next one shows up."""
    width, origin = query.bucket_width, query.bucket_origin

    kinds = [kind for kind, _ in query.columns]

    def row(name: str, start: int | None, group: _Group) -> list[object]:
        return [name if kind == "name" else start if kind == "bucket" else group.get(kind) for kind in kinds]

    if width is None and not query.group_by_name:
        everything = _Group()
        for time, name, piece in readings:
            everything.add(time, name, piece)
        yield row("", None, everything)  # aggregates without GROUP BY give one row, even over no readings
        return

    group_by_name = query.group_by_name
    current: tuple[str, int | None] | None = None
    groups: dict[str, _Group] = {}
    for time, name, piece in readings:
        start = None if width is None else time - (time - origin) % width
        key = (name if by_series else "", start)
        if key != current:
            if current is not None:
                for group_name in sorted(groups):
                    yield row(group_name, current[1], groups[group_name])
            current, groups = key, {}
        group_name = name if group_by_name else ""
        group = groups.get(group_name)
        if group is None:
            group = groups[group_name] = _Group()
        group.add(time, name, piece)
    if current is not None:
        for group_name in sorted(groups):
            yield row(group_name, current[1], groups[group_name])


def latest(store: TimeSeriesStore, table: str, names: Iterable[str] | None = None) -> list[tuple[str, int, float]]:
    """The last reading (name, time ns, value) of each series, names ascending; series without readings are left
    out. Reads one key per series. Raises StoreError if the table does not exist."""
    existing = store.series_names(table)
    wanted = existing if names is None else sorted(set(names).intersection(existing))
    result = []
    for name in wanted:
        last = next(store.scan(table, name, reverse=True), None)
        if last is not None:
            result.append((name, *last))
    return result


class SeriesSummary(TypedDict):
    name: str
    count: int
    first_time: int | None
    last_time: int | None
    last_value: float | None


def series_summary(store: TimeSeriesStore, table: str) -> list[SeriesSummary]:
    """Per series, names ascending: how many readings, the first and last time, the last value. Raises StoreError
    if the table does not exist."""
    summaries = []
    for name in store.series_names(table):
        first = next(store.scan(table, name), None)
        last = next(store.scan(table, name, reverse=True), None)
        if first is None or last is None:
            summaries.append(SeriesSummary(name=name, count=0, first_time=None, last_time=None, last_value=None))
            continue
        # Counted from rollups, over the span readings are still kept for (rollups may be kept longer).
        group = _Group()
        for time, piece in _pieces(store, table, name, first[0], last[0] + 1, LEVELS, reverse=False):
            group.add(time, name, piece)
        summaries.append(
            SeriesSummary(name=name, count=group.count, first_time=first[0], last_time=last[0], last_value=last[1])
        )
    return summaries
