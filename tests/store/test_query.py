"""Queries on a real store: rows, aggregates, buckets, ordering, LIMIT push-down, and a naive model to agree with."""

import asyncio
import itertools
import operator
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.http.sql import Select, parse, to_query
from gateway.store.database import StoreError, TimeSeriesStore
from gateway.store.query import AGGREGATES, ColumnKind, Direction, Query, Result, execute, latest, series_summary

S = 1_000_000_000
Columns = tuple[tuple[ColumnKind, str], ...]
STAR: Columns = (("name", "NAME"), ("time", "TIME"), ("value", "VALUE"))
Reading = tuple[str, int, float]  # as written: name, time, value


def write(store: TimeSeriesStore, table: str, readings: list[Reading]) -> None:
    asyncio.run(store.append(table, readings, durable=False))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TimeSeriesStore]:
    opened = TimeSeriesStore(tmp_path / "db")
    yield opened
    asyncio.run(opened.close())


def count_pulled(store: TimeSeriesStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the readings the query takes out of the store's scans: [count], updated as they are pulled."""
    pulled = [0]
    scan = store.scan

    def counting_scan(*args: Any, **kwargs: Any) -> Iterator[tuple[int, float]]:
        for reading in scan(*args, **kwargs):
            pulled[0] += 1
            yield reading

    monkeypatch.setattr(store, "scan", counting_scan)
    return pulled


def sql(store: TimeSeriesStore, text: str) -> Result:
    select = parse(text, now_ns=0)
    assert isinstance(select, Select)
    return execute(store, to_query(select))


# -- a naive model: filter everything, sort everything, group in dicts ------------------------------------------

OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def naive_aggregate(kind: str, readings: list[tuple[int, str, float]]) -> object:
    values = [value for _, _, value in sorted(readings)]  # by time, then name
    if kind == "count":
        return len(values)
    if not values:
        return None
    return {
        "sum": sum(values),
        "avg": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
        "first": values[0],
        "last": values[-1],
    }[kind]


def naive(readings: list[Reading], query: Query) -> list[list[object]]:
    passing = [
        (time, name, value)
        for name, time, value in readings
        if (query.names is None or name in query.names)
        and (query.time_from is None or time >= query.time_from)
        and (query.time_to is None or time < query.time_to)
        and all(OPS[op](value, operand) for op, operand in query.value_filters)
    ]
    sign = -1 if query.order == "desc" else 1
    if not query.aggregated:
        if query.order_by_name:
            passing.sort(key=lambda r: (r[1], sign * r[0]))
        else:
            passing.sort(key=lambda r: (sign * r[0], r[1]))
        cells = [{"time": t, "name": n, "value": v} for t, n, v in passing]
        rows = [[cell[kind] for kind, _ in query.columns] for cell in cells]
    else:
        groups: dict[tuple[str, int], list[tuple[int, str, float]]] = defaultdict(list)
        for time, name, value in passing:
            start = 0
            if query.bucket_width is not None:
                start = query.bucket_origin + (time - query.bucket_origin) // query.bucket_width * query.bucket_width
            groups[(name if query.group_by_name else "", start)].append((time, name, value))
        if query.bucket_width is None and not query.group_by_name:
            groups[("", 0)] += []  # one row even over nothing
        if query.group_by_name and query.order_by_name:
            keys = sorted(groups, key=lambda k: (k[0], sign * k[1]))
        else:
            keys = sorted(groups, key=lambda k: (sign * k[1], k[0]))
        rows = []
        for name, start in keys:
            row: list[object] = []
            for kind, _ in query.columns:
                if kind == "name":
                    row.append(name)
                elif kind == "bucket":
                    row.append(start)
                else:
                    row.append(naive_aggregate(kind, groups[(name, start)]))
            rows.append(row)
    stop = None if query.limit is None else query.offset + query.limit
    return rows[query.offset : stop]


# -- rows -------------------------------------------------------------------------------------------------------


def test_rows_have_neo_columns_and_types(store: TimeSeriesStore) -> None:
    write(store, "t", [("a", 2, 2.5), ("a", 1, 1.5)])
    result = execute(store, Query("T", STAR))
    assert result.columns == ["NAME", "TIME", "VALUE"]
    assert result.types == ["string", "datetime", "double"]
    assert result.rows == [["a", 1, 1.5], ["a", 2, 2.5]]
    result = sql(store, "select count(*) c, avg(value), first(time, value) from t")
    assert result.columns == ["C", "AVG(VALUE)", "FIRST(TIME, VALUE)"]
    assert result.types == ["int64", "double", "double"]
    assert result.rows == [[2, 2.0, 1.5]]


def test_rows_come_series_by_series_or_merged_by_time(store: TimeSeriesStore) -> None:
    write(store, "t", [("b", 3, 4.0), ("a", 1, 1.0), ("b", 2, 3.0), ("a", 3, 2.0)])

    def rows(**options: Any) -> list[tuple[object, object]]:
        return [(row[0], row[1]) for row in execute(store, Query("t", STAR, **options)).rows]

    assert rows() == [("a", 1), ("a", 3), ("b", 2), ("b", 3)]
    assert rows(order="desc") == [("a", 3), ("a", 1), ("b", 3), ("b", 2)]
    assert rows(order_by_name=False) == [("a", 1), ("b", 2), ("a", 3), ("b", 3)]
    # Newest first, but a time shared by several series still lists them in ascending name.
    assert rows(order_by_name=False, order="desc") == [("a", 3), ("b", 3), ("b", 2), ("a", 1)]
    assert rows(names=("b", "nothing")) == [("b", 2), ("b", 3)]


def test_time_range_is_half_open_and_value_filters_all_apply(store: TimeSeriesStore) -> None:
    write(store, "t", [("a", t, float(t)) for t in range(10)])
    query = Query("t", (("time", "TIME"),), time_from=2, time_to=8, value_filters=((">", 3.0), ("!=", 5.0)))
    assert execute(store, query).rows == [[4], [6], [7]]
    assert sql(store, "select time from t where time between 2 and 4 and value <> 3").rows == [[2], [4]]


def test_time_bounds_beyond_64_bits_leave_the_range_open_or_empty(store: TimeSeriesStore) -> None:
    # TIME <= 2**63 - 1 arrives as time_to = 2**63, which no key can hold.
    write(store, "t", [("a", -(2**63), 1.0), ("a", 2**63 - 1, 2.0)])
    assert len(execute(store, Query("t", STAR, time_to=2**63, time_from=-(2**63) - 1)).rows) == 2
    assert sql(store, "select value from t where time <= 9223372036854775807").rows == [[1.0], [2.0]]
    assert execute(store, Query("t", STAR, time_from=2**63)).rows == []
    assert execute(store, Query("t", STAR, time_to=-(2**63))).rows == []


# -- aggregates -------------------------------------------------------------------------------------------------


@pytest.fixture
def noisy(store: TimeSeriesStore) -> list[Reading]:
    """Three series of random floats at irregular times, some shared between series."""
    rng = random.Random(7)
    readings = {(name, rng.randrange(-5000, 50_000)): rng.uniform(-100, 100) for name in "xyz" for _ in range(600)}
    write(store, "n", [(name, time, value) for (name, time), value in readings.items()])
    return [(name, time, value) for (name, time), value in readings.items()]


@pytest.mark.parametrize("kind", sorted(AGGREGATES))
def test_each_aggregate_matches_brute_force(store: TimeSeriesStore, noisy: list[Reading], kind: ColumnKind) -> None:
    label = f"{kind.upper()}(VALUE)"
    queries = [
        Query("n", ((kind, label),)),
        Query("n", (("name", "NAME"), (kind, label)), group_by_name=True),
        Query("n", (("bucket", "B"), (kind, label)), bucket_width=1000, bucket_origin=-300),
        Query(
            "n",
            (("name", "NAME"), ("bucket", "B"), (kind, label)),
            bucket_width=777,
            group_by_name=True,
            order="desc",
            value_filters=((">", -50.0),),
            time_from=100,
        ),
    ]
    for query in queries:
        got, expected = execute(store, query).rows, naive(noisy, query)
        # Sums are added up in scan order, the brute force in time order: the last bits may differ.
        assert got == [[pytest.approx(c, rel=1e-9) if isinstance(c, float) else c for c in row] for row in expected]
        assert len(got) > 0


def test_buckets_count_from_their_origin_and_come_in_either_order(store: TimeSeriesStore) -> None:
    write(store, "t", [("a", t, float(t)) for t in range(10)])
    columns: Columns = (("bucket", "B"), ("count", "C"), ("sum", "S"), ("first", "F"), ("last", "L"))
    ascending = [[-3, 1, 0.0, 0.0, 0.0], [1, 4, 10.0, 1.0, 4.0], [5, 4, 26.0, 5.0, 8.0], [9, 1, 9.0, 9.0, 9.0]]
    assert execute(store, Query("t", columns, bucket_width=4, bucket_origin=1)).rows == ascending
    descending = execute(store, Query("t", columns, bucket_width=4, bucket_origin=1, order="desc")).rows
    assert descending == ascending[::-1]  # FIRST and LAST stay the earliest and latest reading
    rows = sql(store, "select date_bin('nanosecond', 4, time, 1) b, count(*) from t group by b order by b desc").rows
    assert rows == [[9, 1], [5, 4], [1, 4], [-3, 1]]


def test_grouping_by_name_and_bucket_orders_by_name_or_by_time(store: TimeSeriesStore) -> None:
    write(store, "t", [("b", 0, 1.0), ("a", 5, 2.0), ("b", 12, 3.0), ("a", 11, 4.0)])
    by_name = "select name, rollup('nsec', 10, time) b, sum(value) from t group by name, b"
    assert sql(store, by_name).rows == [["a", 0, 2.0], ["a", 10, 4.0], ["b", 0, 1.0], ["b", 10, 3.0]]
    by_time = by_name + " order by b desc, name"
    assert sql(store, by_time).rows == [["a", 10, 4.0], ["b", 10, 3.0], ["a", 0, 2.0], ["b", 0, 1.0]]
    assert sql(store, "select name from t group by name").rows == [["a"], ["b"]]


def test_empty_results(store: TimeSeriesStore) -> None:
    write(store, "t", [])
    assert execute(store, Query("t", STAR)).rows == []
    result = sql(store, "select count(*), sum(value), last(value) from t")
    assert result.rows == [[0, None, None]]  # aggregates without GROUP BY always give one row
    assert sql(store, "select name, count(*) from t group by name").rows == []
    write(store, "t", [("a", 1, 1.0)])
    assert sql(store, "select * from t where name = 'b'").rows == []
    assert sql(store, "select * from t where time > 1").rows == []
    assert sql(store, "select * from t where value > 1").rows == []
    assert sql(store, "select date_trunc('second', time) s, min(value) from t where value > 1 group by s").rows == []
    assert sql(store, "select min(value), count(*) from t where name in ('b')").rows == [[None, 0]]
    assert sql(store, "select * from t limit 0").rows == []
    assert sql(store, "select * from t limit 5 offset 1").rows == []


def test_unknown_tables_are_refused(store: TimeSeriesStore) -> None:
    for call in (
        lambda: execute(store, Query("nope", STAR)),
        lambda: latest(store, "nope"),
        lambda: series_summary(store, "nope"),
    ):
        with pytest.raises(StoreError, match="no table NOPE"):
            call()


@pytest.mark.parametrize(
    "options",
    [
        {"columns": STAR, "bucket_width": 0},
        {"columns": STAR, "limit": -1},
        {"columns": (("bucket", "B"),)},
        {"columns": (("time", "TIME"), ("count", "C"))},
        {"columns": (("name", "NAME"), ("count", "C"))},
    ],
)
def test_inconsistent_queries_are_caller_bugs(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Query("t", **options)


# -- LIMIT push-down --------------------------------------------------------------------------------------------


def test_the_last_readings_of_a_series_read_only_those(store: TimeSeriesStore, monkeypatch: pytest.MonkeyPatch) -> None:
    write(store, "t", [("x", t * S, float(t)) for t in range(20_000)] + [("y", 5, 1.0)])
    pulled = count_pulled(store, monkeypatch)
    result = sql(store, "select * from t where name = 'x' order by time desc limit 10")
    assert [row[1] for row in result.rows] == [t * S for t in range(19_999, 19_989, -1)]
    assert pulled[0] == 10  # independent of the series' length: a year at 1 Hz reads 10 keys too


def test_limit_and_offset_stop_every_kind_of_scan_early(
    store: TimeSeriesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(store, "t", [(name, t, float(t)) for name in "abc" for t in range(5000)])
    pulled = count_pulled(store, monkeypatch)

    def reads(text: str) -> int:
        pulled[0] = 0
        sql(store, text)
        return pulled[0]

    assert reads("select * from t limit 100, 10") == 110
    assert reads("select * from t order by time desc limit 10") <= 10 + 3  # the merge looks ahead one per series
    assert reads("select * from t where name = 'c' limit 0") == 0
    # Buckets are complete as soon as the next one starts: two buckets of 3 x 100 readings, and a peek beyond.
    grouped = "select rollup('nsec', 100, time) b, avg(value) from t group by b order by b desc limit 2"
    assert reads(grouped) <= 2 * 300 + 3
    assert reads("select name, date_trunc('nsec', time, 50) b, max(value) from t group by name, b limit 3") == 151


# -- latest, summary --------------------------------------------------------------------------------------------


def test_latest_and_summary(store: TimeSeriesStore, monkeypatch: pytest.MonkeyPatch) -> None:
    write(store, "t", [("b", 7, 1.5), ("a", 1, 0.5), ("a", 3, 2.5), ("b", -2, 9.0)])
    pulled = count_pulled(store, monkeypatch)
    assert latest(store, "t") == [("a", 3, 2.5), ("b", 7, 1.5)]
    assert pulled[0] == 2
    assert latest(store, "t", ["b", "missing"]) == [("b", 7, 1.5)]
    assert series_summary(store, "t") == [
        {"name": "a", "count": 2, "first_time": 1, "last_time": 3, "last_value": 2.5},
        {"name": "b", "count": 2, "first_time": -2, "last_time": 7, "last_value": 1.5},
    ]
    write(store, "empty", [])
    assert latest(store, "empty") == []
    assert series_summary(store, "empty") == []


# -- the model --------------------------------------------------------------------------------------------------

NAMES = ("a", "b", "c")
# Every shape of query the SQL layer produces: (aggregated, GROUP BY NAME, GROUP BY a bucket, order, order_by_name).
SHAPES: list[tuple[bool, bool, bool, Direction, bool]] = [
    *((False, False, False, order, by_name) for order in ("asc", "desc") for by_name in (True, False)),
    (True, False, False, "asc", False),
    *((True, False, True, order, False) for order in ("asc", "desc")),
    (True, True, False, "asc", True),
    *((True, True, True, order, by_name) for order in ("asc", "desc") for by_name in (True, False)),
]
ALL_AGGREGATES: Columns = tuple((kind, kind.upper()) for kind in sorted(AGGREGATES))

# Strategies are built once, here: building them anew for every draw costs more than running the queries.
_KEYS = st.tuples(st.sampled_from(NAMES), st.integers(-20, 40))
_VALUES = st.integers(-40, 40).map(lambda i: i / 4)  # quarters: every sum is exact, in any order
# Hypothesis keeps collections short: a second strategy makes sure buckets and series often hold several readings.
_DATA = st.dictionaries(_KEYS, _VALUES, max_size=10) | st.dictionaries(_KEYS, _VALUES, min_size=10, max_size=60)
_OPTIONS: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "names": st.none() | st.lists(st.sampled_from((*NAMES, "zz")), unique=True).map(tuple),
        "time_from": st.none() | st.integers(-25, 45),
        "time_to": st.none() | st.integers(-25, 45),
        "value_filters": st.lists(
            st.tuples(st.sampled_from(sorted(OPS)), st.integers(-12, 12).map(float)), max_size=2
        ).map(tuple),
        "limit": st.none() | st.integers(0, 8),
        "offset": st.integers(0, 4),
        "bucket_width": st.integers(1, 12),
        "bucket_origin": st.integers(-15, 15),
    }
)


def shaped(table: str, shape: tuple[bool, bool, bool, Direction, bool], options: dict[str, Any]) -> Query:
    aggregated, by_name, bucketed, order, order_by_name = shape
    columns: Columns = STAR
    if aggregated:
        columns = (("name", "NAME"),) * by_name + (("bucket", "B"),) * bucketed + ALL_AGGREGATES
    if not bucketed:
        options = {**options, "bucket_width": None}
    return Query(table, columns, group_by_name=by_name, order=order, order_by_name=order_by_name, **options)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    opened = TimeSeriesStore(tmp_path_factory.mktemp("model") / "db")
    yield opened
    asyncio.run(opened.close())


_tables = itertools.count()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA, choices=st.data())
def test_execute_agrees_with_a_naive_model(
    shared_store: TimeSeriesStore, data: dict[tuple[str, int], float], choices: st.DataObject
) -> None:
    table = f"M{next(_tables)}"
    readings = [(name, time, value) for (name, time), value in data.items()]
    write(shared_store, table, readings)
    for shape in SHAPES:
        query = shaped(table, shape, choices.draw(_OPTIONS))
        assert execute(shared_store, query).rows == naive(readings, query), query
