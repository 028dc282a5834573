"""The TQL evaluator (gateway/tql/evaluate.py) over a fake `run_sql`: the SQL each source sends, what every map
function and expression does to the records, what each sink gives, and every refusal with its line and column."""

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tql import MAX_ROWS, Instant, Output, Pos, SourceError, TqlError, parse, run, time_point

NOW = 1_700_000_000_000_000_000
S = 1_000_000_000
LAST = NOW - 3600 * S  # the newest reading of the fake series
TV = (["TIME", "VALUE"], ["datetime", "double"])


class FakeSql:
    """Answers the SQL it is sent with fixed rows, and remembers what it was sent."""

    def __init__(
        self, rows: Sequence[Sequence[object]] = (), head: tuple[list[str], list[str]] = TV, last: int | None = LAST
    ) -> None:
        self.rows = [list(row) for row in rows]
        self.head = head
        self.last = last
        self.sent: list[str] = []

    def __call__(self, text: str) -> tuple[list[str], list[str], list[list[object]]]:
        self.sent.append(text)
        if "ORDER BY TIME DESC LIMIT 1" in text:
            return ["TIME"], ["datetime"], [] if self.last is None else [[self.last]]
        return list(self.head[0]), list(self.head[1]), [list(row) for row in self.rows]


ROWS = [[NOW - 3 * S, 20.5], [NOW - 2 * S, 21.0], [NOW - S, 19.25]]


def go(script: str, sql: FakeSql | None = None, **options: int) -> Output:
    return run(parse(script), sql or FakeSql(ROWS), now_ns=NOW, **options)


def refused(script: str, sql: FakeSql | None = None, **options: int) -> TqlError:
    with pytest.raises(TqlError) as caught:
        go(script, sql, **options)
    return caught.value


# ---------------------------------------------------------------------------------------------------------------
# The walk-through


WALKTHROUGH = """SQL_SELECT("time", "value", from("example", "temperature"), between("last-60s", "last"))
MAPVALUE(0, list(value(0), value(1)))
POPVALUE(1)
CHART(size("600px", "400px"), chartID('rspChart'), theme('dark'),
      chartOption({ xAxis:{ type: "time", axisLabel: { rotate: 30, interval:5 } }, yAxis:{ },
                    animation: true, series:[ { type:"line", data:column(0) } ] }))"""


def test_the_walkthrough_reads_the_last_minute_and_charts_time_value_pairs_in_milliseconds() -> None:
    sql = FakeSql(ROWS)
    output = go(WALKTHROUGH, sql)
    assert sql.sent == [
        "SELECT TIME FROM example WHERE NAME = 'temperature' ORDER BY TIME DESC LIMIT 1",
        f"SELECT TIME, VALUE FROM example WHERE NAME = 'temperature' AND TIME BETWEEN {LAST - 60 * S} AND {LAST}",
    ]
    assert output.sink == "chart" and output.chart is not None
    chart = output.chart
    assert (chart.chart_id, chart.width, chart.height, chart.theme, chart.json) == (
        "rspChart",
        "600px",
        "400px",
        "dark",
        False,
    )
    assert chart.option == {
        "xAxis": {"type": "time", "axisLabel": {"rotate": 30, "interval": 5}},
        "yAxis": {},
        "animation": True,
        "series": [
            {
                "type": "line",
                "data": [[(NOW - 3 * S) // 10**6, 20.5], [(NOW - 2 * S) // 10**6, 21.0], [(NOW - S) // 10**6, 19.25]],
            }
        ],
    }
    # The records themselves keep nanoseconds: value 0 is the [time, value] pair, value 1 is gone.
    assert output.table.columns == ["TIME"] and output.table.types == ["list"]
    assert output.table.rows == [[[NOW - 3 * S, 20.5]], [[NOW - 2 * S, 21.0]], [[NOW - S, 19.25]]]
    assert isinstance(output.table.rows[0][0][0], Instant)


def test_last_of_a_series_without_readings_reads_nothing() -> None:
    sql = FakeSql([], last=None)
    output = go(WALKTHROUGH, sql)
    assert len(sql.sent) == 2 and "TIME < 0 AND TIME > 0" in sql.sent[1]
    assert output.chart is not None and output.chart.option["series"][0]["data"] == []


# ---------------------------------------------------------------------------------------------------------------
# Times of between()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("last", LAST),
        ("last-60s", LAST - 60 * S),
        ("last - 1m", LAST - 60 * S),
        ("now-1h", NOW - 3600 * S),
        ("now+500ms", NOW + 500_000_000),
        ("now-1d", NOW - 86400 * S),
        ("now-1h30m", NOW - 5400 * S),
        ("-1h", NOW - 3600 * S),
        ("1700000000000000000", 1_700_000_000_000_000_000),
        ("2024-05-01T12:00:00Z", 1_714_564_800 * S),
        ("2024-05-01T14:00:00.5+02:00", 1_714_564_800 * S + 500_000_000),
        (1_690_000_000_000_000_000, 1_690_000_000_000_000_000),
        (1.69e18, 1_690_000_000_000_000_000),
    ],
)
def test_time_points(text: str | int | float, expected: int) -> None:
    assert time_point(text, NOW, lambda: LAST) == expected


def test_last_is_none_without_readings_and_asked_only_when_used() -> None:
    asked: list[bool] = []

    def last() -> int | None:
        asked.append(True)
        return None

    assert time_point("now-1h", NOW, last) == NOW - 3600 * S and not asked
    assert time_point("last-60s", NOW, last) is None and asked


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "'yesterday' is not a time: give 'now', 'last', 'now-1h', 'last-60s', RFC 3339"),
        ("now-1x", "'now-1x': '1x' is not a duration"),
        ("last-", "'last-' is not a time"),
        (1.5, "a time is a whole number of nanoseconds, not 1.5"),
        (True, "a time is a string such as 'now-1h' or 'last' or a number of nanoseconds, not True"),
        (None, "not None"),
    ],
)
def test_bad_time_points(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        time_point(value, NOW, lambda: LAST)


# ---------------------------------------------------------------------------------------------------------------
# Sources


def test_sql_select_fields_limit_and_quoting() -> None:
    sql = FakeSql([["it's", NOW, 1.0]], head=(["NAME", "TIME", "VALUE"], ["string", "datetime", "double"]))
    output = go("SQL_SELECT('name', 'TIME', 'Value', from('ex_1', \"it's\"), limit(5))\nCSV()", sql)
    assert sql.sent == ["SELECT NAME, TIME, VALUE FROM ex_1 WHERE NAME = 'it''s' LIMIT 5 OFFSET 0"]
    assert output.table.rows == [["it's", NOW, 1.0]] and isinstance(output.table.rows[0][1], Instant)
    go("SQL_SELECT('value', from('t', 'a'), between(1000, 'now'), limit(10, 20)) JSON()", sql)
    assert sql.sent[-1] == f"SELECT VALUE FROM t WHERE NAME = 'a' AND TIME BETWEEN 1000 AND {NOW} LIMIT 20 OFFSET 10"


def test_sql_passes_the_query_through() -> None:
    sql = FakeSql(ROWS)
    output = go("SQL(`select time, value from example where name = 'x'`)\nJSON()", sql)
    assert sql.sent == ["select time, value from example where name = 'x'"]
    assert output.sink == "json" and output.table.columns == ["TIME", "VALUE"] and output.table.rows == ROWS


def test_a_source_error_is_reported_at_the_source() -> None:
    def failing(text: str) -> tuple[list[str], list[str], list[list[object]]]:
        raise SourceError("no table NOTHERE: create it first")

    with pytest.raises(TqlError) as caught:
        run(parse("\n  SQL('select * from nothere')\n  CSV()"), failing, now_ns=NOW)
    assert caught.value.pos == Pos(2, 3)
    assert caught.value.reason == "SQL(): no table NOTHERE: create it first"


def test_more_rows_than_allowed_are_refused() -> None:
    sql = FakeSql([[NOW + i, 1.0] for i in range(11)])
    assert len(go("SQL('q') CSV()", sql, max_rows=11).table.rows) == 11
    error = refused("SQL('q') CSV()", sql, max_rows=10)
    assert error.reason == "SQL() reads more than 10 rows: narrow the time range or add a limit"
    assert MAX_ROWS == 100_000


SOURCE_ERRORS = [
    (
        "SQL() CSV()",
        Pos(1, 1),
        "SQL() needs a query, SQL('select ...') (bind parameters are not supported: write the values in the query)",
    ),
    (
        "SQL('a ?', 1) CSV()",
        Pos(1, 12),
        "SQL() takes the query alone (bind parameters are not supported: write the values in the query)",
    ),
    ("SQL(42) CSV()", Pos(1, 5), "SQL(): the query is a string, SQL('select ...'), found the number 42"),
    (
        "SQL_SELECT(from('t', 'a')) CSV()",
        Pos(1, 1),
        "SQL_SELECT needs the fields to read first: SQL_SELECT('time', 'value', from(...), ...)",
    ),
    ("SQL_SELECT('time') CSV()", Pos(1, 1), "SQL_SELECT needs from(table, name)"),
    (
        "SQL_SELECT('temp', from('t', 'a')) CSV()",
        Pos(1, 12),
        "SQL_SELECT: unknown field 'temp': a tag table has name, time and value",
    ),
    (
        "SQL_SELECT(from('t', 'a'), 'time') CSV()",
        Pos(1, 28),
        "SQL_SELECT: the fields come first, before from(...) and between(...)",
    ),
    (
        "SQL_SELECT('time', from('t')) CSV()",
        Pos(1, 20),
        "from() takes a table and a series name: from('example', 'temperature')",
    ),
    (
        "SQL_SELECT('time', from('t; drop', 'a')) CSV()",
        Pos(1, 25),
        "from(): 't; drop' is not a table name (letters, digits and _)",
    ),
    ("SQL_SELECT('time', from('t', 'a'), from('t', 'b')) CSV()", Pos(1, 36), "SQL_SELECT takes one from(...)"),
    (
        "SQL_SELECT('time', from('t', 'a'), between('now')) CSV()",
        Pos(1, 36),
        "between() takes two times, between('last-60s', 'last') (a period for rollups is not supported)",
    ),
    (
        "SQL_SELECT('time', from('t', 'a'), between('now', 'soon')) CSV()",
        Pos(1, 51),
        "between(): 'soon' is not a "
        "time: give 'now', 'last', 'now-1h', 'last-60s', RFC 3339 such as '2024-05-01T12:00:00Z', or nanoseconds "
        "since 1970",
    ),
    (
        "SQL_SELECT('time', from('t', 'a'), limit(-1)) CSV()",
        Pos(1, 36),
        "limit() takes a count, or an offset and a count: limit(10), limit(100, 10)",
    ),
    (
        "SQL_SELECT('time', from('t', 'a'), where('x')) CSV()",
        Pos(1, 36),
        "SQL_SELECT takes field names ('time', 'value', 'name'), from(table, name), between(from, to) and limit(...)",
    ),
]


@pytest.mark.parametrize(("script", "pos", "reason"), SOURCE_ERRORS)
def test_source_refusals(script: str, pos: Pos, reason: str) -> None:
    error = refused(script)
    assert (error.pos, error.reason) == (pos, reason)


# ---------------------------------------------------------------------------------------------------------------
# The shape of a script


SHAPE_ERRORS = [
    (
        "",
        Pos(1, 1),
        "the script is empty: start with SQL_SELECT(...) or SQL(...) and end with CSV(), JSON() or CHART(...)",
    ),
    ("CSV()", Pos(1, 1), "a script starts with a source, SQL_SELECT(...) or SQL(...), not CSV()"),
    ("SQL('q')", Pos(1, 1), "the script ends without a sink: end it with CSV(), JSON() or CHART(...)"),
    ("SQL('q')\nPOPVALUE(1)", Pos(2, 1), "the script ends without a sink: end it with CSV(), JSON() or CHART(...)"),
    ("SQL('q')\nSQL('r')\nCSV()", Pos(2, 1), "SQL() is a source: a script has one, as its first statement"),
    ("SQL('q')\nJSON()\nCSV()", Pos(2, 1), "JSON() is a sink: a script has one, as its last statement"),
    (
        "FAKE(linspace(0, 1, 2))\nCSV()",
        Pos(1, 1),
        "FAKE() is not supported: the gateway runs SQL_SELECT, SQL, "
        "MAPVALUE, PUSHVALUE, POPVALUE, FILTER, CSV, JSON and CHART",
    ),
    (
        "SQL('q')\nmapvalue(0, 1)\nCSV()",
        Pos(2, 1),
        "mapvalue() is not supported (function names are case-sensitive: "
        "MAPVALUE): the gateway runs SQL_SELECT, SQL, MAPVALUE, PUSHVALUE, POPVALUE, FILTER, CSV, JSON and CHART",
    ),
    (
        "SQL('q')\nHTML()",
        Pos(2, 1),
        "HTML() is not supported: the gateway runs SQL_SELECT, SQL, MAPVALUE, PUSHVALUE, "
        "POPVALUE, FILTER, CSV, JSON and CHART",
    ),
]


@pytest.mark.parametrize(("script", "pos", "reason"), SHAPE_ERRORS)
def test_shape_refusals(script: str, pos: Pos, reason: str) -> None:
    error = refused(script)
    assert (error.pos, error.reason) == (pos, reason)


# ---------------------------------------------------------------------------------------------------------------
# Map functions


def test_mapvalue_replaces_a_value_and_keeps_the_name_and_type_when_the_type_stays() -> None:
    output = go("SQL('q')\nMAPVALUE(1, value(1) * 2)\nJSON()")
    assert output.table.columns == ["TIME", "VALUE"] and output.table.types == ["datetime", "double"]
    assert [row[1] for row in output.table.rows] == [41.0, 42.0, 38.5]


def test_mapvalue_renames_retypes_and_appends() -> None:
    output = go("SQL('q')\nMAPVALUE(1, value(1) > 20, 'hot')\nMAPVALUE(2, 'x' + 'y')\nJSON()")
    assert output.table.columns == ["TIME", "hot", "column2"]
    assert output.table.types == ["datetime", "boolean", "string"]
    assert [row[1:] for row in output.table.rows] == [[True, "xy"], [True, "xy"], [False, "xy"]]


def test_pushvalue_inserts_and_popvalue_removes_several() -> None:
    output = go("SQL('q')\nPUSHVALUE(0, value(1) - 20, 'delta')\nPUSHVALUE(3, 7)\nJSON()")
    assert output.table.columns == ["delta", "TIME", "VALUE", "column3"]
    assert output.table.types == ["double", "datetime", "double", "int64"]
    assert output.table.rows[0] == [0.5, NOW - 3 * S, 20.5, 7]
    popped = go("SQL('q')\nPUSHVALUE(0, 1)\nPOPVALUE(0, 2, 0)\nJSON()")
    assert popped.table.columns == ["TIME"] and popped.table.rows == [[NOW - 3 * S], [NOW - 2 * S], [NOW - S]]


def test_filter_keeps_the_records_whose_condition_holds() -> None:
    output = go("SQL('q')\nFILTER(value(1) >= 20 && !(value(1) == 21))\nCSV()")
    assert output.table.rows == [ROWS[0]]
    assert go("SQL('q') FILTER(value(1) < 0 || false) CSV()").table.rows == []


def test_times_stay_times_through_the_maps_and_arithmetic_makes_numbers() -> None:
    output = go("SQL('q')\nMAPVALUE(1, value(0))\nPUSHVALUE(2, value(0) + 1)\nJSON()")
    assert output.table.types == ["datetime", "datetime", "int64"]
    row = output.table.rows[0]
    assert isinstance(row[1], Instant) and type(row[2]) is int and row[2] == NOW - 3 * S + 1


MAP_ERRORS = [
    (
        "SQL('q')\nMAPVALUE(3, 1)\nCSV()",
        Pos(2, 10),
        "MAPVALUE(): index 3 is out of range: the records have 2 value(s), so it is 0 to 2 (2 adds a value at the end)",
    ),
    ("SQL('q')\nMAPVALUE(-1, 1)\nCSV()", Pos(2, 10), "MAPVALUE(): the index is a whole number from 0, not -1"),
    (
        "SQL('q')\nMAPVALUE('a', 1)\nCSV()",
        Pos(2, 10),
        "MAPVALUE(): the index is a whole number from 0, found the string 'a'",
    ),
    (
        "SQL('q')\nMAPVALUE(0)\nCSV()",
        Pos(2, 1),
        "MAPVALUE() takes an index, an expression and optionally a column name: MAPVALUE(0, value(1))",
    ),
    ("SQL('q')\nMAPVALUE(0, 1, 2)\nCSV()", Pos(2, 16), "MAPVALUE(): the column name is a string, found the number 2"),
    (
        "SQL('q')\nPUSHVALUE(4, 1)\nCSV()",
        Pos(2, 11),
        "PUSHVALUE(): index 4 is out of range: the records have 2 "
        "value(s), so it is 0 to 2 (2 adds a value at the end)",
    ),
    ("SQL('q')\nPOPVALUE()\nCSV()", Pos(2, 1), "POPVALUE() takes the indexes of the values to remove, POPVALUE(1)"),
    (
        "SQL('q')\nPOPVALUE(0, 2)\nCSV()",
        Pos(2, 13),
        "POPVALUE(): index 2 is out of range: the records have 2 value(s), 0 to 1",
    ),
    (
        "SQL('q')\nPOPVALUE(0, 1)\nMAPVALUE(1, 2)\nCSV()",
        Pos(3, 10),
        "MAPVALUE(): index 1 is out of range: the records have 0 value(s), so it is 0 to 0 (0 adds a value at the end)",
    ),
    (
        "SQL('q')\nPOPVALUE(0, 1)\nFILTER(value(0) > 1)\nCSV()",
        Pos(3, 14),
        "value(): index 0 is out of range: the records have no values",
    ),
    (
        "SQL('q')\nFILTER(value(1))\nCSV()",
        Pos(2, 8),
        "FILTER(): the condition gives the number 20.5, not true or false",
    ),
    ("SQL('q')\nFILTER(1 > 0, 2)\nCSV()", Pos(2, 1), "FILTER() takes one condition, FILTER(value(1) > 20)"),
]


@pytest.mark.parametrize(("script", "pos", "reason"), MAP_ERRORS)
def test_map_refusals(script: str, pos: Pos, reason: str) -> None:
    error = refused(script)
    assert (error.pos, error.reason) == (pos, reason)


# ---------------------------------------------------------------------------------------------------------------
# Expressions


def value_of(expression: str) -> object:
    """The value of `expression` for the record [10, 4.0, 'ab', true] (PUSHVALUE(0, ...) then JSON)."""
    sql = FakeSql([[10, 4.0, "ab", True]], head=(["A", "B", "C", "D"], ["int64", "double", "string", "boolean"]))
    return go(f"SQL('q')\nPUSHVALUE(0, {expression})\nJSON()", sql).table.rows[0][0]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("value(0) + value(1)", 14.0),
        ("value(0) - 12", -2),
        ("value(0) * 3", 30),
        ("value(0) / 4", 2.5),
        ("value(0) / 5", 2.0),
        ("value(0) % 3", 1),
        ("-value(0) % 3", -1),  # the dividend's sign, as in Go and JavaScript
        ("7.5 % 2", 1.5),
        ("-7.5 % 2", -1.5),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-value(1)", -4.0),
        ("+value(1)", 4.0),
        ("value(2) + 'c'", "abc"),
        ("value(2) == 'ab'", True),
        ("value(2) != 'ab'", False),
        ("value(2) < 'b'", True),
        ("value(0) >= 10 && value(1) <= 4", True),
        ("value(0) > 10 || value(1) < 4", False),
        ("!value(3)", False),
        ("value(0) == 10.0", True),
        ("value(3) == 1", False),  # a boolean is never a number
        ("null == null", True),
        ("list(value(0), list(value(2)), null)", [10, ["ab"], None]),
        ("[1, 'a']", [1, "a"]),
        ("{ k: value(1) }", {"k": 4.0}),
        ("false && value(99) > 0", False),  # short-circuit: value(99) is never read
        ("true || value(99) > 0", True),
    ],
)
def test_expression_values(expression: str, expected: object) -> None:
    found = value_of(expression)
    assert found == expected and type(found) is type(expected)


EXPRESSION_ERRORS = [
    ("value(9)", Pos(2, 20), "value(): index 9 is out of range: the records have 4 value(s), 0 to 3"),
    ("value()", Pos(2, 14), "value() takes the index of a value: value(0)"),
    ("value(0) + value(2)", Pos(2, 23), "+ takes two numbers, not the number 10 and the string 'ab'"),
    ("value(0) * true", Pos(2, 23), "* takes two numbers, not the number 10 and the boolean true"),
    ("value(0) / 0", Pos(2, 23), "division by zero"),
    ("value(0) % 0.0", Pos(2, 23), "modulo by zero"),
    ("value(0) < 'x'", Pos(2, 23), "< compares two numbers or two strings, not the number 10 and the string 'x'"),
    ("value(0) && true", Pos(2, 23), "&& takes true or false, not the number 10"),
    ("false || 1", Pos(2, 20), "|| takes true or false, not the number 1"),
    ("!value(2)", Pos(2, 14), "! takes true or false, not the string 'ab'"),
    ("-value(2)", Pos(2, 14), "- takes a number, not the string 'ab'"),
    ("temperature", Pos(2, 14), "unknown name temperature: strings are written in quotes, 'temperature'"),
    (
        "sin(1)",
        Pos(2, 14),
        "unknown function sin(): expressions use value(i), list(...), numbers, strings and operators",
    ),
    ("column(0)", Pos(2, 14), "column() stands for a column of the data only inside chartOption({...})"),
]


@pytest.mark.parametrize(("expression", "pos", "reason"), EXPRESSION_ERRORS)
def test_expression_refusals(expression: str, pos: Pos, reason: str) -> None:
    sql = FakeSql([[10, 4.0, "ab", True]], head=(["A", "B", "C", "D"], ["int64", "double", "string", "boolean"]))
    error = refused(f"SQL('q')\nPUSHVALUE(0, {expression})\nJSON()", sql)
    assert (error.pos, error.reason) == (pos, reason)


def test_value_outside_a_map_function_is_refused() -> None:
    error = refused("SQL('q')\nCHART(chartOption({ a: value(0) }))")
    assert (error.pos, error.reason) == (
        Pos(2, 24),
        "value() reads a record: it is used in MAPVALUE, PUSHVALUE and FILTER",
    )


# ---------------------------------------------------------------------------------------------------------------
# Sinks


def test_csv_and_its_header_option() -> None:
    assert go("SQL('q') CSV()").header is False
    output = go("SQL('q') CSV(header(true))")
    assert output.sink == "csv" and output.header is True and output.table.rows == ROWS


def test_chart_defaults_and_options() -> None:
    output = go("SQL('q') CHART()")
    assert output.chart is not None
    assert (output.chart.chart_id, output.chart.width, output.chart.height, output.chart.theme) == (
        None,
        "600px",
        "600px",
        "white",
    )
    assert output.chart.option == {} and output.chart.json is False
    other = go(
        "SQL('q') CHART(chartId('old'), size(800, '50%'), chartJson(true), chartOption({ a: [column(1)], "
        "b: 1 + 1, c: 'x', }))"
    )
    assert other.chart is not None
    assert (other.chart.chart_id, other.chart.width, other.chart.height, other.chart.json) == (
        "old",
        "800px",
        "50%",
        True,
    )
    assert other.chart.option == {"a": [[20.5, 21.0, 19.25]], "b": 2, "c": "x"}


SINK_ERRORS = [
    ("SQL('q') CSV(header(1))", Pos(1, 21), "header() takes true or false, found the number 1"),
    ("SQL('q') CSV(timeformat('ms'))", Pos(1, 14), "CSV() takes only header(true) or header(false) in the gateway"),
    ("SQL('q') JSON(timeformat('ms'))", Pos(1, 15), "JSON() takes no options in the gateway"),
    (
        "SQL('q') CHART('x')",
        Pos(1, 16),
        "CHART() takes size(w, h), chartID(id), theme(name), chartOption({...}) and chartJson(bool)",
    ),
    ("SQL('q') CHART(size('600px'))", Pos(1, 16), "size() takes a width and a height: size('600px', '400px')"),
    ("SQL('q') CHART(size('big', '1px'))", Pos(1, 21), "size(): 'big' is not a length such as '600px', '100%' or 600"),
    ("SQL('q') CHART(chartID(''))", Pos(1, 16), "chartID(): the id is empty"),
    ("SQL('q') CHART(theme(1))", Pos(1, 22), "theme() takes a string: theme('dark'), found the number 1"),
    ("SQL('q') CHART(theme('a'), theme('b'))", Pos(1, 28), "CHART() takes one theme(...)"),
    (
        "SQL('q') CHART(chartOption('{}'))",
        Pos(1, 16),
        "chartOption() takes an object literal: chartOption({ xAxis: {...}, ... })",
    ),
    (
        "SQL('q') CHART(chartOption({ d: column(2) }))",
        Pos(1, 40),
        "column(): index 2 is out of range: the records have 2 value(s), 0 to 1",
    ),
    ("SQL('q') CHART(chartOption({ d: column() }))", Pos(1, 33), "column() takes the index of a column: column(0)"),
    ("SQL('q') CHART(chartOption({ d: 1 / 0 }))", Pos(1, 35), "division by zero"),
    (
        "SQL('q') CHART(plugins('x'))",
        Pos(1, 16),
        "plugins() is not an option of CHART() in the gateway: use size, chartID, theme, chartOption or chartJson",
    ),
]


@pytest.mark.parametrize(("script", "pos", "reason"), SINK_ERRORS)
def test_sink_refusals(script: str, pos: Pos, reason: str) -> None:
    error = refused(script)
    assert (error.pos, error.reason) == (pos, reason)


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing: scripts made of the subset's own pieces, in any order, fail with a TqlError or run; nothing else escapes.

PIECES = [
    "SQL('q')",
    "SQL_SELECT(",
    "'time'",
    "'value'",
    "'name'",
    "from('t', 'a')",
    "between(",
    "'last-60s'",
    "'now'",
    "limit(",
    "MAPVALUE(",
    "PUSHVALUE(",
    "POPVALUE(",
    "FILTER(",
    "CSV(",
    "JSON(",
    "CHART(",
    "chartOption(",
    "column(",
    "value(",
    "list(",
    "size(",
    "theme(",
    "header(",
    "{ a: ",
    "[",
    "]",
    "}",
    ")",
    ",",
    "0",
    "1",
    "2",
    "-1",
    "1.5",
    "'x'",
    "true",
    "null",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "<",
    "&&",
    "||",
    "!",
    "\n",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_nothing_but_tqlerror_escapes_the_evaluator(pieces: list[str]) -> None:
    try:
        script = parse(" ".join(pieces))
    except TqlError:
        return
    try:
        run(script, FakeSql(ROWS), now_ns=NOW)
    except TqlError as exc:
        assert exc.pos.line >= 1 and exc.pos.column >= 1 and exc.reason
