"""The SQL parser for `/db/query`: queries from machbase-neo's documentation, exact plans, every refusal with its
reason and position, and fuzzing that nothing but SqlError ever escapes."""

import operator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.http.sql import Bucket, CreateTable, DropTable, Select, SelectItem, SqlError, ValueFilter, parse

NOW = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
S = 1_000_000_000
MIN, HOUR, DAY = 60 * S, 3600 * S, 86400 * S
STAR = (SelectItem("name", "NAME"), SelectItem("time", "TIME"), SelectItem("value", "VALUE"))


def utc(text: str) -> int:
    """ns since the epoch of a UTC time, computed independently of the parser."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * S


def select(sql: str) -> Select:
    plan = parse(sql, now_ns=NOW)
    assert isinstance(plan, Select)
    return plan


# ---------------------------------------------------------------------------------------------------------------
# Queries as people copy them from neo's documentation and tutorials, and the exact plans

DOCUMENTED = [
    (
        "select * from example where name = 'temperature' order by time desc limit 10",
        Select("EXAMPLE", STAR, names=("temperature",), order="desc", order_by_name=False, limit=10),
    ),
    (
        "SELECT time, value FROM EXAMPLE WHERE name='temperature' AND time BETWEEN now - 60s AND now",
        Select(
            "EXAMPLE",
            (SelectItem("time", "TIME"), SelectItem("value", "VALUE")),
            names=("temperature",),
            time_from=NOW - 60 * S,
            time_to=NOW + 1,
        ),
    ),
    (
        "select DATE_TRUNC('minute', time) as t, avg(value) from example where name = 'x' group by t order by t",
        Select(
            "EXAMPLE",
            (SelectItem("bucket", "T"), SelectItem("avg", "AVG(VALUE)")),
            names=("x",),
            bucket=Bucket(MIN),
            order_by_name=False,
        ),
    ),
    (
        "select * from tag ORDER BY name, time;",
        Select("TAG", STAR),
    ),
    (
        "select * from tag where name = 'TAG_0002' and time between to_date('2018-02-01') and to_date('2018-02-05') "
        "ORDER BY name, time;",
        Select(
            "TAG",
            STAR,
            names=("TAG_0002",),
            time_from=utc("2018-02-01"),
            time_to=utc("2018-02-05") + 1,
        ),
    ),
    (
        "select * from tag where name = 'TAG_0002' and time > to_date('2018-02-01') and time < to_date('2018-02-05') "
        "ORDER BY name, time;",
        Select("TAG", STAR, names=("TAG_0002",), time_from=utc("2018-02-01") + 1, time_to=utc("2018-02-05")),
    ),
    (
        "select * from tag where name in ('TAG_0002', 'TAG_0001') and time between to_date('2018-01-05') "
        "and to_date('2018-02-05') ORDER BY name, time;",
        Select(
            "TAG",
            STAR,
            names=("TAG_0002", "TAG_0001"),
            time_from=utc("2018-01-05"),
            time_to=utc("2018-02-05") + 1,
        ),
    ),
    (
        "select * from tag where name = 'TAG_0002' and value > 12 and value < 15 and time between "
        "to_date('2018-02-01') and to_date('2018-02-05') ORDER BY name, time;",
        Select(
            "TAG",
            STAR,
            names=("TAG_0002",),
            time_from=utc("2018-02-01"),
            time_to=utc("2018-02-05") + 1,
            value_filters=(ValueFilter(">", 12.0), ValueFilter("<", 15.0)),
        ),
    ),
    (
        "SELECT\n    ROLLUP('hour', 1, time) as mtime,\n    MIN(value),\n    MAX(value)\nFROM TAG\n"
        "WHERE name = 'TAG_00001'\n"
        "  AND time BETWEEN TO_DATE('2023-01-01 00:00:00') AND TO_DATE('2023-01-31 23:59:59')\n"
        "GROUP BY mtime\nORDER BY mtime;",
        Select(
            "TAG",
            (SelectItem("bucket", "MTIME"), SelectItem("min", "MIN(VALUE)"), SelectItem("max", "MAX(VALUE)")),
            names=("TAG_00001",),
            time_from=utc("2023-01-01"),
            time_to=utc("2023-01-31T23:59:59") + 1,
            bucket=Bucket(HOUR),
            order_by_name=False,
        ),
    ),
    (
        "SELECT rollup('min', 1, time) AS rt,\n       COUNT(value), MIN(value), MAX(value),\n"
        "       FIRST(time, value), LAST(time, value)\n  FROM tag\n GROUP BY rt\n ORDER BY rt;",
        Select(
            "TAG",
            (
                SelectItem("bucket", "RT"),
                SelectItem("count", "COUNT(VALUE)"),
                SelectItem("min", "MIN(VALUE)"),
                SelectItem("max", "MAX(VALUE)"),
                SelectItem("first", "FIRST(TIME, VALUE)"),
                SelectItem("last", "LAST(TIME, VALUE)"),
            ),
            bucket=Bucket(MIN),
            order_by_name=False,
        ),
    ),
    (
        "SELECT ROLLUP('day', 1, time, '2024-01-01') as day_interval, FIRST(time, value), LAST(time, value) "
        "FROM TAG_WITH_EXTENSION WHERE name = 'SENSOR_B' GROUP BY day_interval ORDER BY day_interval",
        Select(
            "TAG_WITH_EXTENSION",
            (
                SelectItem("bucket", "DAY_INTERVAL"),
                SelectItem("first", "FIRST(TIME, VALUE)"),
                SelectItem("last", "LAST(TIME, VALUE)"),
            ),
            names=("SENSOR_B",),
            bucket=Bucket(DAY, utc("2024-01-01")),
            order_by_name=False,
        ),
    ),
    (
        "SELECT /*+ ROLLUP_TABLE(_iot_ru_1m) */ rollup('min', 1, time) AS rt, AVG(value) AS avg_val, "
        "MAX(value) AS max_val FROM iot_sensor WHERE name = 'PUMP-01' AND time BETWEEN NOW - 1h AND NOW "
        "GROUP BY rt ORDER BY rt",
        Select(
            "IOT_SENSOR",
            (SelectItem("bucket", "RT"), SelectItem("avg", "AVG_VAL"), SelectItem("max", "MAX_VAL")),
            names=("PUMP-01",),
            time_from=NOW - HOUR,
            time_to=NOW + 1,
            bucket=Bucket(MIN),
            order_by_name=False,
        ),
    ),
    (
        "SELECT COUNT(*), DATE_TRUNC('second', time, 2) tm FROM t GROUP BY tm ORDER BY tm",
        Select(
            "T",
            (SelectItem("count", "COUNT(*)"), SelectItem("bucket", "TM")),
            bucket=Bucket(2 * S),
            order_by_name=False,
        ),
    ),
    (
        "SELECT TIME, VALUE\nFROM EXAMPLE\nWHERE NAME = 'ps:cpu_percent'\n  AND TIME > NOW - 1h\nORDER BY TIME;",
        Select(
            "EXAMPLE",
            (SelectItem("time", "TIME"), SelectItem("value", "VALUE")),
            names=("ps:cpu_percent",),
            time_from=NOW - HOUR + 1,
            order_by_name=False,
        ),
    ),
    (
        "select count(*) from example",
        Select("EXAMPLE", (SelectItem("count", "COUNT(*)"),), order_by_name=False),
    ),
    (
        "select name, count(*) as n, avg(value) from example group by name",
        Select(
            "EXAMPLE",
            (SelectItem("name", "NAME"), SelectItem("count", "N"), SelectItem("avg", "AVG(VALUE)")),
            group_by_name=True,
        ),
    ),
    (
        "select name, date_trunc('minute', time) as t, last(value) from example where name in ('a', 'b') "
        "group by name, t order by name, t desc",
        Select(
            "EXAMPLE",
            (SelectItem("name", "NAME"), SelectItem("bucket", "T"), SelectItem("last", "LAST(VALUE)")),
            names=("a", "b"),
            bucket=Bucket(MIN),
            group_by_name=True,
            order="desc",
        ),
    ),
    (
        "select * from example where time >= 1700000000000000000 and time < 1700000060000000000 limit 100 offset 200",
        Select("EXAMPLE", STAR, time_from=NOW, time_to=NOW + MIN, limit=100, offset=200),
    ),
    (
        "SELECT * FROM EXAMPLE WHERE NAME = 'wave.sin' ORDER BY TIME DESC LIMIT 20, 5",
        Select("EXAMPLE", STAR, names=("wave.sin",), order="desc", order_by_name=False, limit=5, offset=20),
    ),
    (
        "select name from example group by name",
        Select("EXAMPLE", (SelectItem("name", "NAME"),), group_by_name=True),
    ),
    (
        "create tag table example (name varchar(100) primary key, time datetime basetime, value double summarized)",
        CreateTable("EXAMPLE"),
    ),
    (
        "CREATE TAG TABLE IF NOT EXISTS TAG_ANALYZER_DEMO (\n    NAME VARCHAR(80) PRIMARY KEY,\n"
        "    TIME DATETIME BASETIME,\n    VALUE DOUBLE SUMMARIZED\n);",
        CreateTable("TAG_ANALYZER_DEMO", if_not_exists=True),
    ),
    (
        "CREATE TAG TABLE other_tag (name VARCHAR(20) PRIMARY KEY, time DATETIME BASE TIME, value DOUBLE)",
        CreateTable("OTHER_TAG"),
    ),
    ("DROP TABLE test_table", DropTable("TEST_TABLE")),
    ("drop table if exists example; -- clean up", DropTable("EXAMPLE", if_exists=True)),
]


@pytest.mark.parametrize(("sql", "plan"), DOCUMENTED, ids=[sql[:60] for sql, _ in DOCUMENTED])
def test_documented_queries_give_exact_plans(sql, plan) -> None:
    assert parse(sql, now_ns=NOW) == plan


def test_keywords_identifiers_and_functions_are_case_insensitive_but_names_are_not() -> None:
    lower = select("select date_trunc('minute', time) t, avg(value) from ex where name = 'Temp' group by t")
    upper = select("SELECT DATE_TRUNC('MINUTE', TIME) T, AVG(VALUE) FROM EX WHERE NAME = 'Temp' GROUP BY T")
    mixed = select("SeLeCt Date_Trunc('Minute', tImE) t, aVg(VaLuE) FrOm Ex wHeRe NaMe = 'Temp' GrOuP bY t")
    assert lower == upper == mixed
    assert lower.names == ("Temp",)
    assert select("select * from ex where name = 'temp'").names == ("temp",)


# ---------------------------------------------------------------------------------------------------------------
# Times

TIMES = [
    ("1700000000000000000", NOW),
    ("0", 0),
    ("-5", -5),
    ("now", NOW),
    ("NOW()", NOW),
    ("sysdate", NOW),
    ("now - 1h", NOW - HOUR),
    ("now + 30m", NOW + 30 * MIN),
    ("now-90s", NOW - 90 * S),
    ("now - 2d6h15m", NOW - 2 * DAY - 6 * HOUR - 15 * MIN),
    ("now + 3s125ms10us4ns", NOW + 3 * S + 125_000_000 + 10_000 + 4),
    ("now - 1w", NOW - 7 * DAY),
    ("now - 1000000000", NOW - S),
    ("now - 1h - 30m + 1s", NOW - HOUR - 30 * MIN + S),
    ("(now - 1h)", NOW - HOUR),
    ("'2024-05-01'", utc("2024-05-01")),
    ("'2024-05-01 12:34'", utc("2024-05-01T12:34:00")),
    ("'2024-05-01 12:34:56'", utc("2024-05-01T12:34:56")),
    ("'2024-05-01T12:34:56Z'", utc("2024-05-01T12:34:56")),
    ("'2024-05-01T12:34:56.5Z'", utc("2024-05-01T12:34:56") + 500_000_000),
    ("'2024-05-01 12:34:56.123456789'", utc("2024-05-01T12:34:56") + 123_456_789),
    ("'2024-05-01T14:34:56+02:00'", utc("2024-05-01T12:34:56")),
    ("'2024-05-01T10:04:56-0230'", utc("2024-05-01T12:34:56")),
    ("'2024-05-01 12:34:56 001:002:003'", utc("2024-05-01T12:34:56") + 1_002_003),
    ("'1969-12-31 23:59:59'", -S),
    ("TO_DATE('2024-05-01 12:34:56')", utc("2024-05-01T12:34:56")),
    ("to_date('2024-05-01 12:34:56', 'YYYY-MM-DD HH24:MI:SS')", utc("2024-05-01T12:34:56")),
    ("TO_DATE('2024-05-01') + 3d", utc("2024-05-04")),
    ("TO_TIMESTAMP(1714566896000000000)", utc("2024-05-01T12:34:56")),
    ("from_timestamp(1714566896000000000)", utc("2024-05-01T12:34:56")),
    ("to_timestamp(now - 1h)", NOW - HOUR),
]


@pytest.mark.parametrize(("expression", "ns"), TIMES)
def test_time_literals(expression, ns) -> None:
    assert select(f"select * from t where time >= {expression}").time_from == ns


@pytest.mark.parametrize(
    ("condition", "time_from", "time_to"),
    [
        ("time >= 10", 10, None),
        ("time > 10", 11, None),
        ("time <= 20", None, 21),
        ("time < 20", None, 20),
        ("time = 15", 15, 16),
        ("time between 10 and 20", 10, 21),
        ("time between 20 and 10", 20, 11),  # empty, as in SQL
        ("time > 10 and time >= 12 and time < 30 and time <= 25", 12, 26),
        ("(time > 10 and (time < 20))", 11, 20),
    ],
)
def test_time_conditions_become_one_half_open_range(condition, time_from, time_to) -> None:
    plan = select(f"select * from t where {condition}")
    assert (plan.time_from, plan.time_to) == (time_from, time_to)


COMPARISONS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    st.sampled_from(sorted(COMPARISONS)),
    st.integers(-(2**62), 2**62),
    st.integers(-3, 3),
    st.sampled_from(sorted(COMPARISONS)),
    st.integers(-3, 3),
)
def test_the_time_range_holds_exactly_the_times_the_conditions_accept(op1, base, d1, op2, d2) -> None:
    """Brute force: the plan's [from, to) agrees with evaluating both comparisons on times around the edges."""
    plan = select(f"select * from t where time {op1} {base + d1} and time {op2} {base + d2}")
    low = plan.time_from if plan.time_from is not None else -(2**64)
    high = plan.time_to if plan.time_to is not None else 2**64
    for t in range(base - 5, base + 6):
        expected = COMPARISONS[op1](t, base + d1) and COMPARISONS[op2](t, base + d2)
        assert (low <= t < high) == expected, t


# ---------------------------------------------------------------------------------------------------------------
# WHERE on NAME and VALUE


def test_name_conditions_intersect_in_the_order_first_given() -> None:
    assert select("select * from t where name in ('b', 'a', 'b')").names == ("b", "a")
    assert select("select * from t where name in ('a', 'b', 'c') and name in ('c', 'a')").names == ("a", "c")
    assert select("select * from t where name = 'a' and name = 'b'").names == ()
    assert select("select * from t").names is None
    assert select("select * from t where name = 'it''s'").names == ("it's",)
    assert select("select * from t where name = ''").names == ("",)


def test_value_filters() -> None:
    plan = select(
        "select * from t where value = 1 and value != 2 and value <> 3 and value < -4.5 and value <= +5e1 "
        "and value > 6 and value >= 7 and value between 1.5 and 2"
    )
    assert plan.value_filters == (
        ValueFilter("=", 1.0),
        ValueFilter("!=", 2.0),
        ValueFilter("!=", 3.0),
        ValueFilter("<", -4.5),
        ValueFilter("<=", 50.0),
        ValueFilter(">", 6.0),
        ValueFilter(">=", 7.0),
        ValueFilter(">=", 1.5),
        ValueFilter("<=", 2.0),
    )
    assert [f.accepts(2.0) for f in plan.value_filters] == [False, False, True, False, True, False, False, True, True]


# ---------------------------------------------------------------------------------------------------------------
# Select items, buckets, GROUP BY, ORDER BY, LIMIT


def test_labels_are_upper_cased_expressions_unless_aliased() -> None:
    plan = select(
        "select date_trunc( 'hour' ,time ), count( * ), count(value), sum(value), avg(value) as Mean, min(value) lo, "
        "max(value), first(value), last(time, value) from t group by date_trunc('hour', time)"
    )
    assert [item.alias for item in plan.items] == [
        "DATE_TRUNC('hour', TIME)",
        "COUNT(*)",
        "COUNT(VALUE)",
        "SUM(VALUE)",
        "MEAN",
        "LO",
        "MAX(VALUE)",
        "FIRST(VALUE)",
        "LAST(TIME, VALUE)",
    ]
    assert [item.kind for item in plan.items] == [
        "bucket", "count", "count", "sum", "avg", "min", "max", "first", "last"
    ]  # fmt: skip
    assert select("select name as series, time t, value as v from t").items == (
        SelectItem("name", "SERIES"),
        SelectItem("time", "T"),
        SelectItem("value", "V"),
    )
    assert select("select *, name from t").items == (*STAR, SelectItem("name", "NAME"))


@pytest.mark.parametrize(
    ("expression", "bucket"),
    [
        ("DATE_TRUNC('second', time)", Bucket(S)),
        ("DATE_TRUNC('sec', time, 15)", Bucket(15 * S)),
        ("DATE_TRUNC('nanosecond', time, 10)", Bucket(10)),
        ("DATE_TRUNC('usec', time, 10)", Bucket(10_000)),
        ("DATE_TRUNC('milisecond', time, 10)", Bucket(10_000_000)),
        ("DATE_TRUNC('minute', time, 5)", Bucket(5 * MIN)),
        ("DATE_TRUNC('HOUR', time)", Bucket(HOUR)),
        ("DATE_TRUNC('day', time)", Bucket(DAY)),
        ("DATE_TRUNC('week', time)", Bucket(7 * DAY, 3 * DAY)),  # Machbase weeks start on Sunday, 1970-01-04
        ("ROLLUP('min', 15, time)", Bucket(15 * MIN)),
        ("ROLLUP('week', 1, time)", Bucket(7 * DAY)),
        ("rollup('hour', 1, time, '2024-01-01 00:30:00')", Bucket(HOUR, utc("2024-01-01T00:30:00"))),
        ("DATE_BIN('minute', 10, time)", Bucket(10 * MIN)),
        ("DATE_BIN('day', 1, time, now)", Bucket(DAY, NOW)),
    ],
)
def test_buckets(expression, bucket) -> None:
    plan = select(f"select {expression} as b, avg(value) from t group by b")
    assert plan.bucket == bucket
    assert plan.aggregated


def test_bucket_start() -> None:
    minute = Bucket(MIN)
    assert minute.start(utc("2024-05-01T12:34:56") + 999) == utc("2024-05-01T12:34:00")
    assert minute.start(utc("2024-05-01T12:34:00")) == utc("2024-05-01T12:34:00")
    assert minute.start(-1) == -MIN
    week = Bucket(7 * DAY, 3 * DAY)
    assert week.start(utc("2024-05-01T12:00:00")) == utc("2024-04-28")  # a Wednesday, in the week from Sunday
    assert Bucket(HOUR, 30 * MIN).start(utc("2024-05-01T12:10:00")) == utc("2024-05-01T11:30:00")


def test_group_by_forms() -> None:
    by_expression = select(
        "select name, date_trunc('minute', time), count(*) from t "
        "group by date_trunc('minute', time), name order by time"
    )
    assert (by_expression.bucket, by_expression.group_by_name, by_expression.order_by_name) == (
        Bucket(MIN),
        True,
        False,
    )
    hidden_bucket = select("select avg(value) from t group by rollup('sec', 10, time)")
    assert hidden_bucket.bucket == Bucket(10 * S)
    assert hidden_bucket.items == (SelectItem("avg", "AVG(VALUE)"),)
    alias_named_time = select(
        "select date_trunc('hour', time) as time, max(value) from t group by time order by time desc"
    )
    assert (alias_named_time.bucket, alias_named_time.order) == (Bucket(HOUR), "desc")


@pytest.mark.parametrize(
    ("clause", "order", "order_by_name"),
    [
        ("", "asc", True),
        ("order by time", "asc", False),
        ("order by time asc", "asc", False),
        ("order by time desc", "desc", False),
        ("order by name", "asc", True),
        ("order by name asc, time desc", "desc", True),
        ("order by time desc, name", "desc", False),
    ],
)
def test_order_by(clause, order, order_by_name) -> None:
    plan = select(f"select * from t {clause}")
    assert (plan.order, plan.order_by_name) == (order, order_by_name)


@pytest.mark.parametrize(
    ("clause", "limit", "offset"),
    [
        ("", None, 0),
        ("limit 10", 10, 0),
        ("limit 0", 0, 0),
        ("limit 10 offset 5", 10, 5),
        ("limit 5, 10", 10, 5),
        ("limit " + "0" * 5000 + "7", 7, 0),  # beyond Python's int() digit limit, yet a small number
    ],
)
def test_limit(clause, limit, offset) -> None:
    plan = select(f"select * from t {clause}")
    assert (plan.limit, plan.offset) == (limit, offset)


def test_aggregated() -> None:
    assert not select("select * from t").aggregated
    assert select("select count(*) from t").aggregated
    assert select("select name from t group by name").aggregated


def test_comments_and_whitespace() -> None:
    assert select("-- the latest\nselect /* all */ *\r\n\tfrom t -- done") == select("select * from t")
    assert select("select * from t;") == select("select * from t")


# ---------------------------------------------------------------------------------------------------------------
# Refusals: the reason, and the position of the part that is refused (found by `marker`, see _position)

JOIN = "JOIN is not supported: the gateway answers SELECT on one tag table"
SUBQUERY = "subqueries are not supported: the gateway answers SELECT on one tag table"
OR = "OR is not supported: combine conditions with AND (NAME IN ('a', 'b') selects several series)"
UNKNOWN_FUNCTION = (
    "unknown function {}: the gateway supports COUNT, SUM, AVG, MIN, MAX, FIRST, LAST, DATE_TRUNC, ROLLUP and DATE_BIN"
)
LAYOUT = (
    "only tag tables of (name varchar(N) primary key, time datetime basetime, value double [summarized]) "
    "are supported: expected {}, found {}"
)
BAD_TIME = "bad time {}: write RFC 3339 ('2024-05-01T12:00:00Z') or 'YYYY-MM-DD HH:MM:SS[.fffffffff]' (UTC)"
STATEMENTS = "{} is not supported: the gateway answers SELECT, CREATE TAG TABLE and DROP TABLE"
SHAPE = "select NAME, TIME, VALUE, an aggregate or a time bucket"
END = None  # the marker for "at the end of the query"
N, T, V = "name varchar(20) primary key", "time datetime basetime", "value double"

ERRORS = [
    # one table only
    ("select * from example join other on example.name = other.name", "join", JOIN),
    ("SELECT * FROM a INNER JOIN b ON a.name = b.name", "INNER", JOIN),
    ("select * from a left join b on a.name = b.name", "left", JOIN),
    ("select * from a, b", ",", JOIN),
    ("select * from (select * from example)", "(", SUBQUERY),
    ("select * from example where (select count(*) from b) > 1", "(", SUBQUERY),
    ("select * from example where time > (select max(time) from example)", "(", SUBQUERY),
    (
        "select * from example where name in (select name from other)",
        "select name",
        "subqueries are not supported: list the names, NAME IN ('a', 'b')",
    ),
    ("select * from a union select * from b", "union", "UNION is not supported: send one query at a time"),
    ("select * from a; select * from b", "select * from b", "only one statement per query is supported"),
    ("select * from db.example", ".", "qualified table names are not supported: write the table name alone"),
    ("select * from example e", "example |e", "unexpected e after the table name: table aliases are not supported"),
    (
        "select * from example as e",
        "example |as",
        "unexpected as after the table name: table aliases are not supported",
    ),
    ("select e.name from example e", "e.", "qualified names are not supported: write the column alone, not e."),
    # WHERE
    ("select * from example where name = 'a' or name = 'b'", "or", OR),
    ("select * from example where (name = 'a' or name = 'b')", "or", OR),
    ("select * from example where not name = 'a'", "not", "NOT is not supported: write the condition without it"),
    (
        "select * from example where name not in ('a')",
        "not",
        "NAME NOT is not supported: select series with NAME = 'x' or NAME IN ('a', 'b')",
    ),
    (
        "select * from example where name like 'temp%'",
        "like",
        "NAME LIKE is not supported: select series with NAME = 'x' or NAME IN ('a', 'b')",
    ),
    (
        "select * from example where name <> 'a'",
        "<>",
        "NAME <> is not supported: select series with NAME = 'x' or NAME IN ('a', 'b')",
    ),
    ("select * from example where name = 5", "5", "expected a series name in single quotes after NAME =, found 5"),
    ("select * from example where name in ()", ")", "expected a series name in single quotes, found )"),
    (
        "select * from example where time != 5",
        "!=",
        "TIME != is not supported: compare TIME with =, <, <=, >, >= or BETWEEN",
    ),
    ("select * from example where time in (1, 2)", "in", "expected =, <, <=, >, >= or BETWEEN after TIME, found in"),
    (
        "select * from example where value is null",
        "is",
        "expected =, !=, <>, <, <=, >, >= or BETWEEN after VALUE, found is",
    ),
    ("select * from example where value > 'x'", "'x'", "VALUE is a number: compare it with a number, not 'x'"),
    ("select * from example where value > 1e999", "1e999", "1e999 is out of range for a double"),
    ("select * from example where temp > 1", "temp", "unknown column TEMP: a tag table has NAME, TIME and VALUE"),
    (
        "select * from example where abs(value) > 1",
        "abs",
        "ABS(...) is not supported in WHERE: conditions compare NAME, TIME or VALUE",
    ),
    ("select * from example where 5 < value", "5", "put the column first in a condition: write TIME > x, not x < TIME"),
    (
        "select * from example where name = 'a' and",
        END,
        "expected a condition on NAME, TIME or VALUE, found the end of the query",
    ),
    ("select * from example where (name = 'a'", END, "expected ) to close the parenthesis, found the end of the query"),
    (
        "select * from example where " + "(" * 40 + "name = 'a'",
        "(" * 8 + "name",
        "too many nested parentheses (more than 32)",
    ),
    # time literals
    ("select * from example where time > 1.5", "1.5", "a time is a whole number of nanoseconds, found 1.5"),
    ("select * from example where time > 1h", "1h", "1h is a duration, not a time: write NOW - 1h"),
    (
        "select * from example where time > now - 1y",
        "1y",
        "bad duration '1y': write a number with a unit of ns, us, ms, s, m, h, d or w",
    ),
    (
        "select * from example where time > now - 'x'",
        "'x'",
        "expected a duration such as 1h, 30s or 2d6h15m, found the string 'x'",
    ),
    ("select * from example where time > 'yesterday'", "'yesterday'", BAD_TIME.format("'yesterday'")),
    ("select * from example where time > '2024-02-30'", "'2024", "bad time '2024-02-30': there is no such date"),
    (
        "select * from example where time > '2024-01-01 24:00:00'",
        "'2024",
        "bad time '2024-01-01 24:00:00': there is no such time of day",
    ),
    (
        "select * from example where time > '2024-01-01T00:00:00+25:00'",
        "'2024",
        "bad time '2024-01-01T00:00:00+25:00': no such time zone offset",
    ),
    (
        "select * from example where time > now + 1000000d",
        "now",
        "the time is out of range: times are signed 64-bit nanoseconds since 1970",
    ),
    (
        "select * from example where time > 99999999999999999999",
        "9",
        "99999999999999999999 is too large: numbers go up to 9223372036854775807",
    ),
    (
        "select * from example where time > to_date('01/02/2024', 'DD/MM/YYYY')",
        "'DD",
        "TO_DATE format 'DD/MM/YYYY' is not supported: use 'YYYY-MM-DD HH24:MI:SS' or leave it out",
    ),
    (
        "select * from example where time > to_char(now)",
        "to_char",
        "TO_CHAR(...) is not supported in a time: use NOW, TO_DATE or TO_TIMESTAMP",
    ),
    (
        "select * from example where time > yesterday",
        "yesterday",
        "expected a time (nanoseconds, 'YYYY-MM-DD HH:MM:SS', NOW, NOW - 1h or TO_DATE('...')), found yesterday",
    ),
    (
        "select * from example where time > now - interval '1' hour",
        "interval",
        "expected a duration such as 1h, 30s or 2d6h15m, found interval",
    ),
    # the select list
    ("select foo from example", "foo", "unknown column FOO: a tag table has NAME, TIME and VALUE"),
    ("select stddev(value) from example", "stddev", UNKNOWN_FUNCTION.format("STDDEV")),
    ("select to_char(time) from example", "to_char", UNKNOWN_FUNCTION.format("TO_CHAR")),
    ("select value * 2 from example", "*", f"expressions are not supported: {SHAPE}"),
    ("select 1 from example", "1", f"constants are not supported in the select list: {SHAPE}"),
    ("select distinct name from example", "distinct", "DISTINCT is not supported: GROUP BY NAME lists the series"),
    ("select min(time) from example", "time", "MIN(TIME) is not supported: write MIN(VALUE)"),
    ("select sum(name) from example", "name", "SUM(NAME) is not supported: write SUM(VALUE)"),
    ("select first(name, value) from example", "name", "FIRST(NAME) is not supported: write FIRST(TIME, VALUE)"),
    ("select count(value from example", "from", "expected ) to close COUNT(, found from"),
    ("select name value time from example", "time", "expected , or FROM, found time"),
    ("select * from", END, "expected a table name, found the end of the query"),
    ("select * from where", "where", "expected a table name, found where"),
    (
        'select "name" from example',
        '"',
        "double quotes are not supported: write strings in single quotes and names bare",
    ),
    # aggregates and grouping
    ("select name, avg(value) from example", "name", "NAME cannot be mixed with aggregates without GROUP BY NAME"),
    (
        "select time, count(*) from example",
        "time",
        "TIME cannot be mixed with aggregates: group by a time bucket such as DATE_TRUNC('minute', TIME)",
    ),
    (
        "select value, max(value) from example where name = 'a'",
        "value",
        "VALUE cannot be mixed with aggregates: aggregate it, for example AVG(VALUE)",
    ),
    ("select *, count(*) from example", "*", "NAME cannot be mixed with aggregates without GROUP BY NAME"),
    (
        "select name, time from example group by name",
        "time",
        "TIME cannot be mixed with aggregates: group by a time bucket such as DATE_TRUNC('minute', TIME)",
    ),
    (
        "select date_trunc('minute', time) as t, avg(value) from example",
        "date_trunc",
        "DATE_TRUNC('minute', TIME) cannot be mixed with aggregates without GROUP BY T",
    ),
    (
        "select date_trunc('minute', time), value from example",
        "date_trunc",
        "DATE_TRUNC('minute', TIME) needs GROUP BY: add GROUP BY DATE_TRUNC('minute', TIME)",
    ),
    (
        "select date_trunc('minute', time), avg(value) from example group by date_trunc('hour', time)",
        "date_trunc",
        "DATE_TRUNC('minute', TIME) is not the time bucket of GROUP BY: one bucket per query",
    ),
    (
        "select avg(value) from example group by date_trunc('minute', time), rollup('hour', 1, time)",
        "rollup",
        "only one time bucket per query",
    ),
    (
        "select avg(value) from example group by rollup('hour', 1, time), rollup('hour', 1, time)",
        "), |rollup",
        "GROUP BY lists the time bucket twice",
    ),
    ("select name, count(*) from example group by name, name", "name, |name", "GROUP BY lists NAME twice"),
    (
        "select count(*) from example group by time",
        "time",
        "GROUP BY TIME is not supported: group by a time bucket such as DATE_TRUNC('minute', TIME)",
    ),
    (
        "select count(*) from example group by value",
        "value",
        "GROUP BY value is not supported: group by NAME or a time bucket",
    ),
    (
        "select avg(value) a from example group by a",
        "by |a",
        "GROUP BY a is not supported: group by NAME or a time bucket",
    ),
    (
        "select name, count(*) from example group by 1",
        "1",
        "GROUP BY column numbers are not supported: name the column or its alias",
    ),
    (
        "select name, count(*) from example group by name having count(*) > 1",
        "having",
        "HAVING is not supported: filter rows with WHERE",
    ),
    # buckets
    (
        "select date_trunc('month', time) m, avg(value) from example group by m",
        "'month'",
        "'month' buckets are not supported: calendar months and years have no fixed width",
    ),
    (
        "select date_trunc('fortnight', time) m, avg(value) from example group by m",
        "'fortnight'",
        "unknown time unit 'fortnight': use nanosecond, microsecond, millisecond, second, minute, hour, day or week",
    ),
    (
        "select date_trunc('minute', value) m, avg(value) from example group by m",
        "value",
        "DATE_TRUNC buckets TIME, not VALUE",
    ),
    (
        "select date_trunc(minute, time) m, avg(value) from example group by m",
        "minute",
        "expected a time unit such as 'minute' first in DATE_TRUNC(, found minute",
    ),
    (
        "select rollup('min', 0, time) m, avg(value) from example group by m",
        "0",
        "the count in ROLLUP must be at least 1",
    ),
    (
        "select rollup('min', time) m, avg(value) from example group by m",
        "time",
        "expected a count in ROLLUP(, found time",
    ),
    (
        "select date_trunc('day', time, 9999999999999999) m, avg(value) from example group by m",
        "'day'",
        "the DATE_TRUNC bucket is too wide",
    ),
    # ORDER BY, LIMIT
    (
        "select * from example order by value",
        "value",
        "ORDER BY value is not supported: rows are sorted by NAME and TIME only",
    ),
    (
        "select * from example order by name desc",
        "name",
        "ORDER BY NAME DESC is not supported: series come in ascending name order",
    ),
    ("select * from example order by time, time desc", "time desc", "ORDER BY lists TIME twice"),
    (
        "select * from example order by 2",
        "2",
        "ORDER BY column numbers are not supported: name the column or its alias",
    ),
    (
        "select name, avg(value) as a from example group by name order by a",
        "by |a",
        "ORDER BY a is not supported: rows are sorted by NAME and TIME only",
    ),
    (
        "select name, count(*) from example group by name order by time",
        "time",
        "ORDER BY TIME needs a time bucket in GROUP BY when the query aggregates",
    ),
    (
        "select count(*) from example order by name",
        "name",
        "ORDER BY NAME needs GROUP BY NAME when the query aggregates",
    ),
    (
        "select * from example order by date_trunc('hour', time)",
        "date_trunc",
        "ORDER BY a time bucket needs GROUP BY that bucket",
    ),
    ("select * from example limit -1", "-", "expected a row count after LIMIT, found -"),
    ("select * from example limit 10 please", "please", "unexpected please after a complete statement"),
    (
        "select * from example limit 99999999999999999999",
        "9",
        "99999999999999999999 is too large: numbers go up to 9223372036854775807",
    ),
    (
        "select * from example order by time limit 1 where name = 'a'",
        "where",
        "unexpected where after a complete statement",
    ),
    # lexical
    (
        "select * from example where name = 'temp",
        "'temp",
        "unterminated string: the string starting here has no closing quote",
    ),
    ("select * /* hint", "/*", "unterminated comment: a /* comment starting here has no closing */"),
    ("select * from example where value > 1 # c", "#", "unexpected character '#'"),
    ("select * from example where name = \u2018x\u2019", "\u2018", "unexpected character '\u2018'"),
    ("select * from t;;", ";|;", "unexpected ; after a complete statement"),
    # statements
    ("", END, "the query is empty"),
    ("  -- nothing but a comment", END, "the query is empty"),
    (";", ";", "the query is empty"),
    ("insert into example values ('a', 1, 2)", "insert", STATEMENTS.format("INSERT")),
    ("delete from example", "delete", STATEMENTS.format("DELETE")),
    ("with x as (select 1) select * from x", "with", STATEMENTS.format("WITH")),
    ("(select * from t)", "(", SUBQUERY),
    (
        "create table t (a int)",
        "table",
        "CREATE TABLE is not supported: the gateway creates tag tables (CREATE TAG TABLE)",
    ),
    (
        "create log table t (a int)",
        "log",
        "CREATE log is not supported: the gateway creates tag tables (CREATE TAG TABLE)",
    ),
    ("drop index i", "index", "DROP index is not supported: the gateway drops tables (DROP TABLE)"),
    ("drop table if example", "example", "expected EXISTS after DROP TABLE IF, found example"),
    (f"create tag table t if not exists ({N}, {T}, {V})", "if", "expected ( and the column list, found if"),
    # the one tag-table layout
    (
        f"create tag table t (sensor_id varchar(20) primary key, {T}, {V})",
        "sensor_id",
        LAYOUT.format("the column NAME", "sensor_id"),
    ),
    (
        f"create tag table t ({N}, {T}, {V}, strval varchar(100))",
        ", strval",
        LAYOUT.format("the end of the column list", "a fourth column"),
    ),
    (f"create tag table t ({N}, {T}, value float)", "float", LAYOUT.format("DOUBLE", "float")),
    (f"create tag table t (name varchar(20), {T}, {V})", ", time", LAYOUT.format("PRIMARY", ",")),
    (
        f"create tag table t (name varchar(0) primary key, {T}, {V})",
        "0",
        LAYOUT.format("a length such as VARCHAR(100)", "0"),
    ),
    (f"create tag table t (name varchar primary key, {T}, {V})", "primary", LAYOUT.format("(", "primary")),
    (f"create tag table t ({N}, time datetime, {V})", ", value", LAYOUT.format("BASETIME", ",")),
    (f"create tag table t ({T}, {N}, {V})", "time", LAYOUT.format("the column NAME", "time")),
    (f"create tag table t ({N}, {T})", "basetime|)", LAYOUT.format(",", ")")),
    (
        f"create tag table t ({N}, {T}, {V}) with rollup",
        "with",
        "table options (with ...) are not supported: the gateway creates plain tag tables",
    ),
]


def _position(sql: str, marker: str | None) -> int:
    """Where the first occurrence of `marker` starts, or of its part after a `|`; None is the end of the query."""
    if marker is None:
        return len(sql)
    return sql.index(marker.replace("|", "")) + max(marker.find("|"), 0)


@pytest.mark.parametrize(("sql", "marker", "reason"), ERRORS, ids=[sql[:60] for sql, _, _ in ERRORS])
def test_refusals_say_what_and_where(sql, marker, reason) -> None:
    with pytest.raises(SqlError) as caught:
        parse(sql, now_ns=NOW)
    position = _position(sql, marker)
    assert (caught.value.reason, caught.value.position) == (reason, position)
    assert str(caught.value) == f"{reason} (at position {position})"


def test_the_error_message_example_from_the_brief() -> None:
    with pytest.raises(
        SqlError, match=r"^JOIN is not supported: the gateway answers SELECT on one tag table \(at position 22\)$"
    ):
        parse("select * from example join other on example.name = other.name", now_ns=NOW)


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing: whatever arrives in ?q=, the parser answers with a plan or a SqlError

VALID = [sql for sql, _ in DOCUMENTED]
VOCABULARY = [
    "select", "from", "where", "and", "or", "group", "by", "order", "limit", "offset", "as", "in", "between",
    "asc", "desc", "not", "join", "create", "tag", "table", "drop", "if", "exists", "name", "time", "value", "*",
    "count(*)", "avg(value)", "first(time, value)", "date_trunc('minute', time)", "rollup('min', 1, time)",
    "now", "now - 1h", "to_date('2024-01-01')", "'x'", "'", "''", "(", ")", ",", ";", "=", "<>", "<=", ">", "-",
    "+", ".", "0", "1", "-1", "1.5", "1e999", "99999999999999999999999", "5m", "1y", "--", "/*", "*/", "\n", " ",
]  # fmt: skip


def _parse_or_refuse(sql: str) -> None:
    try:
        plan = parse(sql, now_ns=NOW)
    except SqlError as error:
        assert error.reason
        assert 0 <= error.position <= len(sql)
    else:
        assert isinstance(plan, Select | CreateTable | DropTable)


@st.composite
def mutated_queries(draw: st.DrawFn) -> str:
    sql = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(sql)))
        end = draw(st.integers(start, min(len(sql), start + 10)))
        piece = draw(st.sampled_from(VOCABULARY) | st.text(max_size=3))
        sql = draw(
            st.sampled_from(
                [
                    sql[:start] + sql[end:],  # delete
                    sql[:start] + piece + sql[start:],  # insert
                    sql[:start] + piece + sql[end:],  # replace
                    sql[:end] + sql[start:end] + sql[end:],  # duplicate
                ]
            )
        )
    return sql


@settings(max_examples=350, derandomize=True, deadline=None)
@given(st.text())
def test_arbitrary_text_only_raises_sql_error(sql) -> None:
    _parse_or_refuse(sql)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=25).map(" ".join))
def test_arbitrary_sql_words_only_raise_sql_error(sql) -> None:
    _parse_or_refuse(sql)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(mutated_queries())
def test_mutated_valid_queries_only_raise_sql_error(sql) -> None:
    _parse_or_refuse(sql)
