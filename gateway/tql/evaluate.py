"""Runs a parsed TQL script (syntax.py) over records: a source, map functions, a sink.

Sans-I/O: the evaluator never reads the store; it gets `run_sql`, a function that answers one SELECT of the
gateway's SQL subset (gateway/http/sql.py) with (columns, types, rows), and `now_ns`, the time `now` stands for.
What it returns (`Output`) is data: the HTTP layer (gateway/http/tql.py) turns it into CSV, JSON or a chart.

As in machbase-neo, a record is a key and a list of values: the source's rows become records whose values are the
row's columns (the key is the row number from 1, which no output of the subset shows). The map functions change
the values of every record; `value(i)` is the i-th value (from 0) of the record at hand. Times stay `Instant`s (an
int of nanoseconds) through the maps, so that CHART can hand ECharts the milliseconds its time axis wants.

Statements:

- sources: `SQL_SELECT(field..., from(table, name), between(from, to) [, limit([offset,] count)])` and `SQL(text)`;
- maps: `MAPVALUE(idx, expr [, name])`, `PUSHVALUE(idx, expr [, name])`, `POPVALUE(idx...)`, `FILTER(cond)`;
- sinks: `CSV([header(bool)])`, `JSON()`, `CHART(size(w, h), chartID(id), theme(name), chartOption({...}),
  chartJson(bool))`, every argument of CHART optional.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal, NoReturn, TypeAlias, TypeVar

from gateway.http.times import TimeError, parse_duration, parse_time
from gateway.tql.syntax import Array, Binary, Call, Constant, Expr, Name, Object, Pos, Script, TqlError, Unary

__all__ = ["MAX_ROWS", "Chart", "Instant", "Output", "RunSql", "SourceError", "Table", "run", "time_point"]

# The rows a script may read: they are held in memory (a chart needs them all), on a board with little of it.
MAX_ROWS = 100_000
Rows: TypeAlias = tuple[list[str], list[str], Iterable[Sequence[object]]]
RunSql: TypeAlias = Callable[[str], Rows]

_SOURCES = ("SQL_SELECT", "SQL")
_MAPS = ("MAPVALUE", "PUSHVALUE", "POPVALUE", "FILTER")
_SINKS = ("CSV", "JSON", "CHART")
_FIELDS = {"name": "NAME", "time": "TIME", "value": "VALUE"}
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_$]*")
_RELATIVE = re.compile(r"\s*(now|last)\s*(?:([-+])\s*(\S+))?\s*", re.IGNORECASE)
_INTEGER = re.compile(r"\s*-?[0-9]{1,19}\s*")
T = TypeVar("T")


class Instant(int):
    """A time in a record, nanoseconds since 1970. Arithmetic on it gives plain ints."""

    __slots__ = ()


class SourceError(Exception):
    """What `run_sql` raises when it cannot answer: the reason is reported at the source statement."""


@dataclass(slots=True)
class Table:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True, slots=True)
class Chart:
    chart_id: str | None  # None: the HTTP layer makes one up
    width: str
    height: str
    theme: str
    option: dict[str, Any]  # JSON-ready, times in milliseconds
    json: bool  # chartJson(true): a JSON answer even when HTML is asked for


@dataclass(slots=True)
class Output:
    sink: Literal["csv", "json", "chart"]
    table: Table
    header: bool = False  # CSV: a header line of the column names
    chart: Chart | None = None


def run(script: Script, run_sql: RunSql, *, now_ns: int, max_rows: int = MAX_ROWS) -> Output:
    """Runs `script`. Raises TqlError, naming the line and column of what failed."""
    statements = script.statements
    if not statements:
        raise TqlError(
            "the script is empty: start with SQL_SELECT(...) or SQL(...) and end with CSV(), JSON() or CHART(...)",
            Pos(1, 1),
        )
    first, last = statements[0], statements[-1]
    if first.name not in _SOURCES:
        _check_known(first)
        raise TqlError(f"a script starts with a source, SQL_SELECT(...) or SQL(...), not {first.name}()", first.pos)
    if len(statements) == 1 or last.name not in _SINKS:
        if last.name not in _SOURCES:
            _check_known(last)
        raise TqlError(
            "the script ends without a sink: end it with CSV(), JSON() or CHART(...)",
            last.pos,
        )
    table = _source(first, run_sql, now_ns, max_rows)
    for statement in statements[1:-1]:
        _check_known(statement)
        if statement.name in _SOURCES:
            raise TqlError(f"{statement.name}() is a source: a script has one, as its first statement", statement.pos)
        if statement.name in _SINKS:
            raise TqlError(f"{statement.name}() is a sink: a script has one, as its last statement", statement.pos)
        table = _map(statement, table)
    return _sink(last, table)


def _check_known(call: Call) -> None:
    if call.name not in (*_SOURCES, *_MAPS, *_SINKS):
        upper = call.name.upper()
        hint = f" (function names are case-sensitive: {upper})" if upper in (*_SOURCES, *_MAPS, *_SINKS) else ""
        raise TqlError(
            f"{call.name}() is not supported{hint}: the gateway runs SQL_SELECT, SQL, MAPVALUE, PUSHVALUE, POPVALUE, "
            "FILTER, CSV, JSON and CHART",
            call.pos,
        )


# ---------------------------------------------------------------------------------------------------------------
# Sources


def time_point(value: object, now_ns: int, last: Callable[[], int | None]) -> int | None:
    """A time of between(): nanoseconds since 1970, 'now', 'last' (the newest reading's time; None when the series
    has none), either with a duration added or taken ('last-60s', 'now-1h', 'now+500ms'), RFC 3339, or a number of
    nanoseconds. Raises ValueError with the reason."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"a time is a string such as 'now-1h' or 'last' or a number of nanoseconds, not {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"a time is a whole number of nanoseconds, not {value!r}")
        value = int(value)
    if isinstance(value, int):
        return value
    if _INTEGER.fullmatch(value):
        return int(value)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        word, sign, offset = relative.groups()
        at = now_ns if word.lower() == "now" else last()
        if at is None:
            return None
        if offset is None:
            return at
        try:
            duration = parse_duration(offset)
        except TimeError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return at + duration if sign == "+" else at - duration
    try:
        return parse_time(value, now_ns)
    except TimeError:
        raise ValueError(
            f"{value!r} is not a time: give 'now', 'last', 'now-1h', 'last-60s', RFC 3339 such as "
            "'2024-05-01T12:00:00Z', or nanoseconds since 1970"
        ) from None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source(call: Call, run_sql: RunSql, now_ns: int, max_rows: int) -> Table:
    if call.name == "SQL":
        if len(call.args) != 1:
            where = call.args[1].pos if len(call.args) > 1 else call.pos
            reason = "SQL() takes the query alone" if call.args else "SQL() needs a query, SQL('select ...')"
            raise TqlError(reason + " (bind parameters are not supported: write the values in the query)", where)
        text = _constant(call.args[0], str, "SQL(): the query is a string, SQL('select ...')")
        return _read(call, run_sql, text, max_rows)
    return _read(call, run_sql, _sql_select(call, run_sql, now_ns), max_rows)


def _sql_select(call: Call, run_sql: RunSql, now_ns: int) -> str:
    """The SQL of SQL_SELECT(...) on our tag tables."""
    fields: list[str] = []
    source: tuple[str, str] | None = None
    range_call: Call | None = None
    limit: tuple[int, int] | None = None
    for arg in call.args:
        if isinstance(arg, Constant) and isinstance(arg.value, str):
            if source is not None or range_call is not None:
                raise TqlError("SQL_SELECT: the fields come first, before from(...) and between(...)", arg.pos)
            column = _FIELDS.get(arg.value.strip().lower())
            if column is None:
                raise TqlError(
                    f"SQL_SELECT: unknown field {arg.value!r}: a tag table has name, time and value", arg.pos
                )
            fields.append(column)
        elif isinstance(arg, Call) and arg.name == "from":
            if source is not None:
                raise TqlError("SQL_SELECT takes one from(...)", arg.pos)
            if len(arg.args) != 2:
                raise TqlError("from() takes a table and a series name: from('example', 'temperature')", arg.pos)
            table = _constant(arg.args[0], str, "from(): the table is a string")
            name = _constant(arg.args[1], str, "from(): the series name is a string")
            if not _TABLE.fullmatch(table):
                raise TqlError(f"from(): {table!r} is not a table name (letters, digits and _)", arg.args[0].pos)
            source = (table, name)
        elif isinstance(arg, Call) and arg.name == "between":
            if range_call is not None:
                raise TqlError("SQL_SELECT takes one between(...)", arg.pos)
            if len(arg.args) != 2:
                raise TqlError(
                    "between() takes two times, between('last-60s', 'last') (a period for rollups is not supported)",
                    arg.pos,
                )
            range_call = arg
        elif isinstance(arg, Call) and arg.name == "limit":
            if limit is not None:
                raise TqlError("SQL_SELECT takes one limit(...)", arg.pos)
            numbers = [_constant(a, int, "limit() takes whole numbers: limit([offset,] count)") for a in arg.args]
            if len(numbers) not in (1, 2) or min(numbers) < 0:
                raise TqlError("limit() takes a count, or an offset and a count: limit(10), limit(100, 10)", arg.pos)
            limit = (0, numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
        else:
            raise TqlError(
                "SQL_SELECT takes field names ('time', 'value', 'name'), from(table, name), between(from, to) and "
                "limit(...)",
                arg.pos,
            )
    if not fields:
        raise TqlError(
            "SQL_SELECT needs the fields to read first: SQL_SELECT('time', 'value', from(...), ...)", call.pos
        )
    if source is None:
        raise TqlError("SQL_SELECT needs from(table, name)", call.pos)
    table, name = source
    where = f"NAME = {_quote(name)}"
    if range_call is not None:
        bounds = []
        last_cache: list[int | None] = []

        def last() -> int | None:
            if not last_cache:
                rows = _answer(call, run_sql, f"SELECT TIME FROM {table} WHERE {where} ORDER BY TIME DESC LIMIT 1")
                found = next(iter(rows[2]), None)
                last_cache.append(None if found is None else int(found[0]))  # type: ignore[call-overload]
            return last_cache[0]

        for bound in range_call.args:
            value = _value(bound, None)
            try:
                at = time_point(value, now_ns, last)
            except ValueError as exc:
                raise TqlError(f"between(): {exc}", bound.pos) from None
            if at is None:  # 'last' of a series without readings: there is nothing to read
                where += " AND TIME < 0 AND TIME > 0"
                break
            bounds.append(at)
        else:
            where += f" AND TIME BETWEEN {bounds[0]} AND {bounds[1]}"
    text = f"SELECT {', '.join(fields)} FROM {table} WHERE {where}"
    if limit is not None:
        text += f" LIMIT {limit[1]} OFFSET {limit[0]}"
    return text


def _answer(call: Call, run_sql: RunSql, text: str) -> Rows:
    try:
        return run_sql(text)
    except SourceError as exc:
        raise TqlError(f"{call.name}(): {exc}", call.pos) from None


def _read(call: Call, run_sql: RunSql, text: str, max_rows: int) -> Table:
    columns, types, rows = _answer(call, run_sql, text)
    times = [i for i, kind in enumerate(types) if kind == "datetime"]
    table: list[list[Any]] = []
    for row in islice(rows, max_rows + 1):
        record = list(row)
        for i in times:
            if record[i] is not None:
                record[i] = Instant(record[i])  # type: ignore[call-overload]
        table.append(record)
    if len(table) > max_rows:
        raise TqlError(f"{call.name}() reads more than {max_rows} rows: narrow the time range or add a limit", call.pos)
    return Table(list(columns), list(types), table)


# ---------------------------------------------------------------------------------------------------------------
# Maps


def _index(expr: Expr, what: str) -> int:
    index = _constant(expr, int, f"{what}: the index is a whole number from 0")
    if index < 0:
        raise TqlError(f"{what}: the index is a whole number from 0, not {index}", expr.pos)
    return index


def _map(call: Call, table: Table) -> Table:
    name = call.name
    if name == "FILTER":
        if len(call.args) != 1:
            raise TqlError("FILTER() takes one condition, FILTER(value(1) > 20)", call.pos)
        kept = []
        for record in table.rows:
            verdict = _value(call.args[0], record)
            if not isinstance(verdict, bool):
                raise TqlError(f"FILTER(): the condition gives {_kind(verdict)}, not true or false", call.args[0].pos)
            if verdict:
                kept.append(record)
        return Table(table.columns, table.types, kept)
    if name == "POPVALUE":
        if not call.args:
            raise TqlError("POPVALUE() takes the indexes of the values to remove, POPVALUE(1)", call.pos)
        indexes = set()
        for arg in call.args:
            index = _index(arg, "POPVALUE()")
            if index >= len(table.columns):
                raise TqlError(_out_of_range("POPVALUE()", index, len(table.columns)), arg.pos)
            indexes.add(index)
        keep = [i for i in range(len(table.columns)) if i not in indexes]
        return Table(
            [table.columns[i] for i in keep],
            [table.types[i] for i in keep],
            [[record[i] for i in keep] for record in table.rows],
        )
    # MAPVALUE(idx, expr [, name]) replaces a value (idx == the count appends one); PUSHVALUE inserts one.
    if len(call.args) not in (2, 3):
        raise TqlError(
            f"{name}() takes an index, an expression and optionally a column name: {name}(0, value(1))", call.pos
        )
    index = _index(call.args[0], f"{name}()")
    width = len(table.columns)
    if index > width:
        raise TqlError(
            f"{name}(): index {index} is out of range: the records have {width} value(s), so it is 0 to {width} "
            f"({width} adds a value at the end)",
            call.args[0].pos,
        )
    label = _constant(call.args[2], str, f"{name}(): the column name is a string") if len(call.args) == 3 else None
    expr = call.args[1]
    values = [_value(expr, record) for record in table.rows]
    columns, types = list(table.columns), list(table.types)
    kind = _type_of(values)
    if name == "MAPVALUE" and index < width:
        columns[index] = label or columns[index]
        types[index] = (
            types[index] if all(_same(v, o[index]) for v, o in zip(values, table.rows, strict=True)) else kind
        )
        rows = [
            [*record[:index], value, *record[index + 1 :]] for record, value in zip(table.rows, values, strict=True)
        ]
    else:
        columns.insert(index, label or f"column{index}")
        types.insert(index, kind)
        rows = [[*record[:index], value, *record[index:]] for record, value in zip(table.rows, values, strict=True)]
    return Table(columns, types, rows)


def _same(new: object, old: object) -> bool:
    return type(new) is type(old)


def _out_of_range(what: str, index: int, count: int) -> str:
    if count == 0:
        return f"{what}: index {index} is out of range: the records have no values"
    return f"{what}: index {index} is out of range: the records have {count} value(s), 0 to {count - 1}"


def _type_of(values: list[Any]) -> str:
    """The column type, as neo names them, of the first value that is not null."""
    found = next((v for v in values if v is not None), None)
    if isinstance(found, Instant):
        return "datetime"
    if isinstance(found, bool):
        return "boolean"
    if isinstance(found, int):
        return "int64"
    if isinstance(found, float):
        return "double"
    if isinstance(found, str):
        return "string"
    if isinstance(found, list):
        return "list"
    return "any"


# ---------------------------------------------------------------------------------------------------------------
# Sinks


def _sink(call: Call, table: Table) -> Output:
    if call.name == "JSON":
        if call.args:
            raise TqlError("JSON() takes no options in the gateway", call.args[0].pos)
        return Output("json", table)
    if call.name == "CSV":
        header = False
        for arg in call.args:
            if isinstance(arg, Call) and arg.name == "header" and len(arg.args) == 1:
                header = _constant(arg.args[0], bool, "header() takes true or false")
            else:
                raise TqlError("CSV() takes only header(true) or header(false) in the gateway", arg.pos)
        return Output("csv", table, header=header)
    return Output("chart", table, chart=_chart(call, table))


@dataclass
class _ChartSettings:
    chart_id: str | None = None
    width: str = "600px"
    height: str = "600px"
    theme: str = "white"
    option: dict[str, Any] = field(default_factory=dict)
    json: bool = False


def _chart(call: Call, table: Table) -> Chart:
    settings = _ChartSettings()
    seen: set[str] = set()
    for arg in call.args:
        if not isinstance(arg, Call):
            raise TqlError(
                "CHART() takes size(w, h), chartID(id), theme(name), chartOption({...}) and chartJson(bool)", arg.pos
            )
        name = "chartID" if arg.name == "chartId" else arg.name  # chartId() is neo's older spelling
        if name in seen:
            raise TqlError(f"CHART() takes one {name}(...)", arg.pos)
        seen.add(name)
        if name == "size":
            if len(arg.args) != 2:
                raise TqlError("size() takes a width and a height: size('600px', '400px')", arg.pos)
            settings.width, settings.height = (_css_length(a) for a in arg.args)
        elif name == "chartID":
            settings.chart_id = _one_string(arg, "chartID('myChart')")
            if not settings.chart_id:
                raise TqlError("chartID(): the id is empty", arg.pos)
        elif name == "theme":
            settings.theme = _one_string(arg, "theme('dark')")
        elif name == "chartJson":
            if len(arg.args) != 1:
                raise TqlError("chartJson() takes true or false", arg.pos)
            settings.json = _constant(arg.args[0], bool, "chartJson() takes true or false")
        elif name == "chartOption":
            if len(arg.args) != 1 or not isinstance(arg.args[0], Object):
                raise TqlError("chartOption() takes an object literal: chartOption({ xAxis: {...}, ... })", arg.pos)
            option = _chart_value(arg.args[0], table)
            assert isinstance(option, dict)
            settings.option = option
        else:
            raise TqlError(
                f"{arg.name}() is not an option of CHART() in the gateway: use size, chartID, theme, chartOption "
                "or chartJson",
                arg.pos,
            )
    return Chart(settings.chart_id, settings.width, settings.height, settings.theme, settings.option, settings.json)


def _one_string(call: Call, example: str) -> str:
    if len(call.args) != 1:
        raise TqlError(f"{call.name}() takes one string: {example}", call.pos)
    return _constant(call.args[0], str, f"{call.name}() takes a string: {example}")


def _css_length(expr: Expr) -> str:
    value = _value(expr, None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}px"
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*(px|%|em|rem|vw|vh)?\s*", value):
        return value.strip()
    raise TqlError(f"size(): {value!r} is not a length such as '600px', '100%' or 600", expr.pos)


def _to_chart(value: Any) -> Any:
    """A value as ECharts takes it: times in whole milliseconds since 1970 (ECharts' dates have no finer unit)."""
    if isinstance(value, Instant):
        return int(value) // 1_000_000
    if isinstance(value, list):
        return [_to_chart(v) for v in value]
    return value


def _chart_value(expr: Expr, table: Table) -> Any:
    """A value of chartOption: JSON, with column(n) standing for the n-th column of the data."""
    if isinstance(expr, Object):
        return {key: _chart_value(value, table) for key, value in expr.items}
    if isinstance(expr, Array):
        return [_chart_value(item, table) for item in expr.items]
    if isinstance(expr, Call) and expr.name == "column":
        if len(expr.args) != 1:
            raise TqlError("column() takes the index of a column: column(0)", expr.pos)
        index = _index(expr.args[0], "column()")
        if index >= len(table.columns):
            raise TqlError(_out_of_range("column()", index, len(table.columns)), expr.args[0].pos)
        return [_to_chart(record[index]) for record in table.rows]
    value = _value(expr, None)
    if isinstance(value, float) and not math.isfinite(value):
        raise TqlError("chartOption(): the value is not a finite number", expr.pos)
    return _to_chart(value)


# ---------------------------------------------------------------------------------------------------------------
# Expressions


def _constant(expr: Expr, kind: type[T], reason: str) -> T:
    """An argument that must evaluate, without a record, to a value of `kind` (int accepts whole floats)."""
    try:
        value = _value(expr, None)
    except TqlError:
        raise TqlError(reason, expr.pos) from None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise TqlError(f"{reason}, found {_kind(value)}", expr.pos)
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Instant):
        return f"the time {int(value)}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _fail(reason: str, pos: Pos) -> NoReturn:
    raise TqlError(reason, pos)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _value(expr: Expr, record: list[Any] | None) -> Any:
    """The value of `expr` for `record` (None: outside a map function, where value() has no record)."""
    if isinstance(expr, Constant):
        return expr.value
    if isinstance(expr, Name):
        _fail(f"unknown name {expr.name}: strings are written in quotes, '{expr.name}'", expr.pos)
    if isinstance(expr, Call):
        return _call(expr, record)
    if isinstance(expr, Unary):
        operand = _value(expr.operand, record)
        if expr.op == "!":
            if not isinstance(operand, bool):
                _fail(f"! takes true or false, not {_kind(operand)}", expr.pos)
            return not operand
        if not _is_number(operand):
            _fail(f"{expr.op} takes a number, not {_kind(operand)}", expr.pos)
        return -operand if expr.op == "-" else +operand
    if isinstance(expr, Binary):
        return _binary(expr, record)
    if isinstance(expr, Array):
        return [_value(item, record) for item in expr.items]
    return {key: _value(value, record) for key, value in expr.items}


def _call(call: Call, record: list[Any] | None) -> Any:
    if call.name == "value":
        if record is None:
            _fail("value() reads a record: it is used in MAPVALUE, PUSHVALUE and FILTER", call.pos)
        if len(call.args) != 1:
            _fail("value() takes the index of a value: value(0)", call.pos)
        index = _index(call.args[0], "value()")
        if index >= len(record):
            _fail(_out_of_range("value()", index, len(record)), call.args[0].pos)
        return record[index]
    if call.name == "list":
        return [_value(arg, record) for arg in call.args]
    if call.name == "column":
        _fail("column() stands for a column of the data only inside chartOption({...})", call.pos)
    _fail(
        f"unknown function {call.name}(): expressions use value(i), list(...), numbers, strings and operators", call.pos
    )


def _binary(expr: Binary, record: list[Any] | None) -> Any:
    op = expr.op
    left = _value(expr.left, record)
    if op in ("&&", "||"):
        if not isinstance(left, bool):
            _fail(f"{op} takes true or false, not {_kind(left)}", expr.pos)
        if (op == "&&" and not left) or (op == "||" and left):
            return left
        right = _value(expr.right, record)
        if not isinstance(right, bool):
            _fail(f"{op} takes true or false, not {_kind(right)}", expr.pos)
        return right
    right = _value(expr.right, record)
    if op in ("==", "!="):
        equal = left == right and (isinstance(left, bool) == isinstance(right, bool))
        return equal if op == "==" else not equal
    if op in ("<", "<=", ">", ">="):
        if not ((_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str))):
            _fail(f"{op} compares two numbers or two strings, not {_kind(left)} and {_kind(right)}", expr.pos)
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        return left > right if op == ">" else left >= right
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        _fail(f"{op} takes two numbers, not {_kind(left)} and {_kind(right)}", expr.pos)
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        _fail("division by zero" if op == "/" else "modulo by zero", expr.pos)
    if op == "/":
        return left / right
    # The remainder takes the sign of the dividend, as in Go and JavaScript (Python's % takes the divisor's).
    if isinstance(left, int) and isinstance(right, int):
        remainder = abs(left) % abs(right)
        return -remainder if left < 0 else remainder
    return math.fmod(left, right)
