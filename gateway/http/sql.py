"""The SQL that machbase-neo users send to `/db/query?q=...`, parsed into a plan for the tag-table store.

Pure: text in, frozen dataclasses out, no I/O and no clock (`parse` takes `now_ns` so that `now - 1h` is
reproducible). Only the subset people use on tag tables is accepted; anything else is refused with a `SqlError`
that says which part of the query is not supported and where, rather than being half-understood.

A tag table has three columns: NAME (varchar, the series), TIME (datetime, ns since the epoch), VALUE (double).

Grammar (keywords, identifiers, function names and time units are case-insensitive; table names are upper-cased;
`-- ...` and `/* ... */` are comments)::

    statement := (select | create | drop) [';']
    select    := SELECT item (',' item)* FROM table [WHERE cond (AND cond)*]
                 [GROUP BY group (',' group)*] [ORDER BY order (',' order)*]
                 [LIMIT int [OFFSET int] | LIMIT int ',' int]              -- LIMIT offset, count as in neo
    item      := '*' | (column | aggregate | bucket) [[AS] alias]          -- '*' is NAME, TIME, VALUE
    column    := NAME | TIME | VALUE
    aggregate := COUNT '(' ('*' | column) ')' | (SUM | AVG | MIN | MAX) '(' VALUE ')'
               | (FIRST | LAST) '(' [TIME ','] VALUE ')'
    bucket    := DATE_TRUNC '(' unit ',' TIME [',' int] ')'
               | (ROLLUP | DATE_BIN) '(' unit ',' int ',' TIME [',' time] ')'   -- the time is the origin
    unit      := 'nanosecond' | 'nsec' | 'microsecond' | 'usec' | 'millisecond' | 'msec'
               | 'second' | 'sec' | 'minute' | 'min' | 'hour' | 'day' | 'week'
    cond      := '(' cond (AND cond)* ')'
               | NAME '=' string | NAME IN '(' string (',' string)* ')'
               | TIME cmp time | TIME BETWEEN time AND time
               | VALUE (cmp | '!=' | '<>') number | VALUE BETWEEN number AND number
    cmp       := '=' | '<' | '<=' | '>' | '>='
    time      := primary (('+' | '-') duration)*
    primary   := ['-'] int                             -- ns since the epoch
               | string                                -- RFC 3339, or 'YYYY-MM-DD[ HH:MM[:SS[.fffffffff]]]', UTC
               | NOW ['(' ')'] | SYSDATE
               | (TO_TIMESTAMP | FROM_TIMESTAMP) '(' time ')'    -- both are the identity on ns here
               | TO_DATE '(' string [',' format] ')'  | '(' time ')'
    duration  := int | <int><unit>...                  -- ns; or 1h, 30s, 2d6h15m with ns us ms s m h d w
    group     := NAME | bucket | alias                 -- the alias of a NAME or bucket item
    order     := (NAME | TIME | bucket | alias) [ASC | DESC]   -- NAME ascending only
    create    := CREATE TAG TABLE [IF NOT EXISTS] table
                 '(' NAME VARCHAR '(' int ')' PRIMARY KEY ',' TIME DATETIME (BASETIME | BASE TIME) ','
                     VALUE DOUBLE [SUMMARIZED] ')'
    drop      := DROP TABLE [IF EXISTS] table

Decisions:

- Time buckets are fixed-width (`Bucket`) counted from an origin, in UTC: DATE_TRUNC's day is a UTC day, its week
  starts on Sunday as in Machbase. Calendar months and years are refused: they have no fixed width.
- ROLLUP is computed from the raw data (there is no rollup table to read); it is DATE_BIN by another name.
- OR, NOT, joins, subqueries, HAVING, DISTINCT, expressions and other functions are refused, each with a reason.
- In WHERE the column comes first (`TIME > now - 1h`, not `now - 1h < TIME`).
- VARCHAR(N) is checked to be a positive number and then ignored: series names are not truncated.
- With aggregates (or GROUP BY), every plain item must be grouped: NAME needs GROUP BY NAME, a bucket needs
  GROUP BY that bucket, TIME and VALUE cannot appear at all. GROUP BY without aggregates lists the groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from math import isfinite
from typing import Literal, NoReturn, TypeAlias

from gateway.store.query import ColumnKind, CompareOp, Direction, Query

__all__ = [
    "Bucket",
    "CreateTable",
    "DropTable",
    "Select",
    "SelectItem",
    "SqlError",
    "Statement",
    "ValueFilter",
    "parse",
]

# One vocabulary for the parser and the store that executes its plans.
ItemKind: TypeAlias = ColumnKind


class SqlError(Exception):
    """A query the gateway cannot answer: `reason` says why, `position` is the character offset it is about."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason, position)
        self.reason = reason
        self.position = position

    def __str__(self) -> str:
        return f"{self.reason} (at position {self.position})"


@dataclass(frozen=True, slots=True)
class SelectItem:
    """One output column: what it holds and its label as neo prints it (`NAME`, `AVG(VALUE)`, or the alias)."""

    kind: ItemKind
    alias: str


@dataclass(frozen=True, slots=True)
class ValueFilter:
    """`VALUE <op> value`; `<>` arrives as `!=`."""

    op: CompareOp
    value: float

    def accepts(self, value: float) -> bool:
        match self.op:
            case "=":
                return value == self.value
            case "!=":
                return value != self.value
            case "<":
                return value < self.value
            case "<=":
                return value <= self.value
            case ">":
                return value > self.value
            case ">=":
                return value >= self.value


@dataclass(frozen=True, slots=True)
class Bucket:
    """Fixed-width time buckets: a bucket starts at `origin + k * width` (ns) and holds the next `width` ns."""

    width: int
    origin: int = 0

    def start(self, time: int) -> int:
        return time - (time - self.origin) % self.width


@dataclass(frozen=True, slots=True)
class Select:
    """A SELECT on one tag table.

    - `names`: the series to read, in the order given; None reads every series.
    - `time_from` / `time_to`: the half-open range [from, to) of TIME; None leaves that side open. Times in the
      query are signed 64-bit; a bound one past the last nanosecond (`TIME <= 2**63 - 1`) is 2**63.
    - `value_filters`: all must accept a row's VALUE.
    - `bucket`, `group_by_name`: the GROUP BY; the query aggregates when either is set or an item is an aggregate
      (`aggregated`), giving one row per group (one row in all without GROUP BY).
    - `order`: the direction of TIME (of the bucket when grouping by one).
      `order_by_name`: rows come series by series, names ascending, each series in `order`; otherwise the rows
      of all series are merged in `order` of TIME (ties in ascending name).
    - `limit` / `offset`: applied last, as in SQL.
    """

    table: str
    items: tuple[SelectItem, ...]
    names: tuple[str, ...] | None = None
    time_from: int | None = None
    time_to: int | None = None
    value_filters: tuple[ValueFilter, ...] = ()
    bucket: Bucket | None = None
    group_by_name: bool = False
    order: Direction = "asc"
    order_by_name: bool = True
    limit: int | None = None
    offset: int = 0

    @property
    def aggregated(self) -> bool:
        return self.bucket is not None or self.group_by_name or any(i.kind in _AGGREGATES for i in self.items)


@dataclass(frozen=True, slots=True)
class CreateTable:
    """CREATE TAG TABLE of the one layout the gateway stores: (NAME, TIME, VALUE)."""

    table: str
    if_not_exists: bool = False


@dataclass(frozen=True, slots=True)
class DropTable:
    table: str
    if_exists: bool = False


Statement: TypeAlias = Select | CreateTable | DropTable


def parse(sql: str, *, now_ns: int) -> Statement:
    """The plan for one statement; `now_ns` is the time `NOW` stands for. Raises SqlError."""
    return _Parser(sql, now_ns).statement()


# ---------------------------------------------------------------------------------------------------------------
# Tokens

_NS, _US, _MS, _S = 1, 1_000, 1_000_000, 1_000_000_000
_MIN, _HOUR, _DAY = 60 * _S, 3600 * _S, 86400 * _S
_WEEK = 7 * _DAY
_DURATION_UNITS = {"ns": _NS, "us": _US, "ms": _MS, "s": _S, "m": _MIN, "h": _HOUR, "d": _DAY, "w": _WEEK}
# The alternation tries two-letter units first, so "5ms" is 5 milliseconds, not 5 minutes and a stray "s".
_DURATION = re.compile(r"(?:[0-9]+(?:ns|us|ms|s|m|h|d|w))+", re.IGNORECASE)
_DURATION_PART = re.compile(r"([0-9]+)(ns|us|ms|s|m|h|d|w)", re.IGNORECASE)
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+")
_MAX_INT = 2**63 - 1
_MIN_INT = -(2**63)
# Parentheses nest through recursion: a bound keeps hostile input from reaching Python's recursion limit.
_MAX_NESTING = 32
_OPERATORS = ("<=", ">=", "<>", "!=", "=", "<", ">", "(", ")", ",", ";", "*", "+", "-", ".", "/", "%")
_SPACE = " \t\r\n\f\v"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["ident", "int", "float", "duration", "string", "op", "end"]
    value: str  # identifiers upper-cased, strings unescaped, anything else as written
    text: str  # as written
    pos: int


def _is_ident_start(c: str) -> bool:
    return c.isascii() and (c.isalpha() or c == "_")


def _is_ident_char(c: str) -> bool:
    # `$` appears in Machbase's own table names (V$EXAMPLE_STAT, M$SYS_TABLES).
    return c.isascii() and (c.isalnum() or c in "_$")


def _tokenize(sql: str) -> list[_Token]:
    tokens: list[_Token] = []
    depth = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in _SPACE:
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise SqlError("unterminated comment: a /* comment starting here has no closing */", i)
            i = end + 2
        elif _is_ident_start(c):
            start = i
            while i < n and _is_ident_char(sql[i]):
                i += 1
            tokens.append(_Token("ident", sql[start:i].upper(), sql[start:i], start))
        elif c.isascii() and c.isdigit():
            token = _number(sql, i)
            tokens.append(token)
            i += len(token.text)
        elif c == "'":
            token = _string(sql, i)
            tokens.append(token)
            i += len(token.text)
        elif c == '"':
            raise SqlError("double quotes are not supported: write strings in single quotes and names bare", i)
        else:
            op = next((op for op in _OPERATORS if sql.startswith(op, i)), None)
            if op is None:
                raise SqlError(f"unexpected character {c!r}", i)
            depth += {"(": 1, ")": -1}.get(op, 0)
            if depth > _MAX_NESTING:
                raise SqlError(f"too many nested parentheses (more than {_MAX_NESTING})", i)
            tokens.append(_Token("op", op, op, i))
            i += len(op)
    tokens.append(_Token("end", "", "", n))
    return tokens


def _number(sql: str, start: int) -> _Token:
    """An integer, a decimal number, or a duration such as `1h` or `2d6h15m` (a number glued to a unit)."""
    i, n = start, len(sql)
    while i < n and sql[i].isascii() and sql[i].isdigit():
        i += 1
    kind: Literal["int", "float", "duration"] = "int"
    if i + 1 < n and sql[i] == "." and sql[i + 1].isascii() and sql[i + 1].isdigit():
        kind = "float"
        i += 1
        while i < n and sql[i].isascii() and sql[i].isdigit():
            i += 1
    exponent = _EXPONENT.match(sql, i)
    if exponent:
        kind = "float"
        i = exponent.end()
    if kind == "int" and i < n and _is_ident_char(sql[i]):
        while i < n and _is_ident_char(sql[i]):
            i += 1
        text = sql[start:i]
        if not _DURATION.fullmatch(text):
            raise SqlError(f"bad duration {text!r}: write a number with a unit of ns, us, ms, s, m, h, d or w", start)
        kind = "duration"
    text = sql[start:i]
    return _Token(kind, text, text, start)


def _string(sql: str, start: int) -> _Token:
    parts: list[str] = []
    i = start + 1
    while True:
        end = sql.find("'", i)
        if end < 0:
            raise SqlError("unterminated string: the string starting here has no closing quote", start)
        parts.append(sql[i:end])
        if sql.startswith("''", end):  # '' is a quote inside the string
            parts.append("'")
            i = end + 2
        else:
            return _Token("string", "".join(parts), sql[start : end + 1], start)


# ---------------------------------------------------------------------------------------------------------------
# Parser

_AGGREGATES = frozenset({"count", "sum", "avg", "min", "max", "first", "last"})
_COLUMNS: dict[str, ItemKind] = {"NAME": "name", "TIME": "time", "VALUE": "value"}
_VALUE_AGGREGATES: dict[str, ItemKind] = {"SUM": "sum", "AVG": "avg", "MIN": "min", "MAX": "max"}
_FUNCTIONS = "COUNT, SUM, AVG, MIN, MAX, FIRST, LAST, DATE_TRUNC, ROLLUP and DATE_BIN"
_BUCKET_UNITS = {
    "NANOSECOND": _NS,
    "NSEC": _NS,
    "MICROSECOND": _US,
    "USEC": _US,
    "MILLISECOND": _MS,
    "MILISECOND": _MS,  # Machbase's documentation spells it so
    "MSEC": _MS,
    "SECOND": _S,
    "SEC": _S,
    "MINUTE": _MIN,
    "MIN": _MIN,
    "HOUR": _HOUR,
    "DAY": _DAY,
    "WEEK": _WEEK,
}
# Machbase's DATE_TRUNC weeks start on Sunday; the epoch was a Thursday, the first Sunday three days later.
_SUNDAY = 3 * _DAY
_COMPARE: dict[str, CompareOp] = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_JOIN = "JOIN is not supported: the gateway answers SELECT on one tag table"
_SHAPE = "select NAME, TIME, VALUE, an aggregate or a time bucket"
# Words that start something the gateway does not do: said plainly instead of "unexpected X".
_UNSUPPORTED = {
    "JOIN": _JOIN,
    "INNER": _JOIN,
    "LEFT": _JOIN,
    "RIGHT": _JOIN,
    "FULL": _JOIN,
    "CROSS": _JOIN,
    "NATURAL": _JOIN,
    "OR": "OR is not supported: combine conditions with AND (NAME IN ('a', 'b') selects several series)",
    "NOT": "NOT is not supported: write the condition without it",
    "HAVING": "HAVING is not supported: filter rows with WHERE",
    "UNION": "UNION is not supported: send one query at a time",
    "INTERSECT": "INTERSECT is not supported: send one query at a time",
    "EXCEPT": "EXCEPT is not supported: send one query at a time",
    "DISTINCT": "DISTINCT is not supported: GROUP BY NAME lists the series",
    "WITH": "WITH is not supported: the gateway answers a single SELECT",
}
# Never a table name or an alias: so that `FROM t WHERE` and `AVG(VALUE) FROM` read as clauses.
_RESERVED = frozenset(
    {"SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "LIMIT", "OFFSET", "AS", "AND", "IN", "BETWEEN", "ON"}
    | {"ASC", "DESC"}
    | _UNSUPPORTED.keys()
)
_TIME_FORMATS = frozenset(
    {"YYYY-MM-DD", "YYYY-MM-DD HH24:MI", "YYYY-MM-DD HH24:MI:SS", "YYYY-MM-DD HH24:MI:SS MMM:UUU:NNN"}
)
# RFC 3339, ISO 8601 with a space, and Machbase's own 'YYYY-MM-DD HH24:MI:SS mmm:uuu:nnn'.
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9})| ([0-9]{3}):([0-9]{3}):([0-9]{3}))?)?)?"
    r" ?([Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_BAD_TIME = "write RFC 3339 ('2024-05-01T12:00:00Z') or 'YYYY-MM-DD HH:MM:SS[.fffffffff]' (UTC)"


@dataclass(frozen=True, slots=True)
class _Item:
    kind: ItemKind
    label: str  # as neo prints the expression
    alias: str | None  # the alias written in the query, upper-cased
    bucket: Bucket | None
    pos: int


@dataclass(slots=True)
class _Where:
    """WHERE conditions AND-ed together: series names intersect, time ranges intersect, value filters add up."""

    names: tuple[str, ...] | None = None
    time_from: int | None = None
    time_to: int | None = None
    filters: list[ValueFilter] = field(default_factory=list)

    def add_names(self, names: list[str]) -> None:
        unique = tuple(dict.fromkeys(names))
        self.names = unique if self.names is None else tuple(n for n in self.names if n in unique)

    def add_range(self, start: int | None, end: int | None) -> None:
        if start is not None:
            self.time_from = start if self.time_from is None else max(self.time_from, start)
        if end is not None:
            self.time_to = end if self.time_to is None else min(self.time_to, end)


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the query"
    if token.kind == "string":
        return f"the string {token.text}"
    return token.text


def _small_int(digits: str, pos: int) -> int:
    # Checked before int(): Python refuses to convert more than 4,300 digits, and the plan promises 64-bit values.
    significant = digits.lstrip("0") or "0"
    if len(significant) > 19 or int(significant) > _MAX_INT:
        raise SqlError(f"{digits} is too large: numbers go up to {_MAX_INT}", pos)
    return int(significant)


def _duration(token: _Token) -> int:
    return sum(
        _small_int(n, token.pos) * _DURATION_UNITS[unit.lower()] for n, unit in _DURATION_PART.findall(token.text)
    )


def _parse_datetime(token: _Token) -> int:
    match = _DATETIME.fullmatch(token.value.strip(" "))
    if not match:
        raise SqlError(f"bad time {token.text}: {_BAD_TIME}", token.pos)
    year, month, day, hour, minute, second, fraction, milli, micro, nano, zone = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY
    except ValueError:
        raise SqlError(f"bad time {token.text}: there is no such date", token.pos) from None
    h, m, s = int(hour or 0), int(minute or 0), int(second or 0)
    if h > 23 or m > 59 or s > 59:
        raise SqlError(f"bad time {token.text}: there is no such time of day", token.pos)
    if fraction:
        ns = int(fraction.ljust(9, "0"))
    elif milli:
        ns = int(milli + micro + nano)
    else:
        ns = 0
    offset = 0
    if zone and zone not in "Zz":
        zh, zm = int(zone[1:3]), int(zone[-2:])
        if zh > 23 or zm > 59:
            raise SqlError(f"bad time {token.text}: no such time zone offset", token.pos)
        offset = (zh * 60 + zm) * _MIN * (1 if zone[0] == "+" else -1)
    return ((days * 86400 + h * 3600 + m * 60 + s) * _S + ns) - offset


def _check_item(item: _Item, aggregated: bool, by_name: bool, bucket: Bucket | None) -> None:
    """With aggregates (or GROUP BY) every item is an aggregate or a group key; without, no item is a bucket."""
    name = item.alias or item.label
    if item.kind in _AGGREGATES:
        return
    if item.kind == "bucket" and not aggregated:
        raise SqlError(f"{item.label} needs GROUP BY: add GROUP BY {name}", item.pos)
    if not aggregated:
        return
    if item.kind == "name" and not by_name:
        raise SqlError("NAME cannot be mixed with aggregates without GROUP BY NAME", item.pos)
    if item.kind == "time":
        raise SqlError(
            "TIME cannot be mixed with aggregates: group by a time bucket such as DATE_TRUNC('minute', TIME)", item.pos
        )
    if item.kind == "value":
        raise SqlError("VALUE cannot be mixed with aggregates: aggregate it, for example AVG(VALUE)", item.pos)
    if item.kind == "bucket" and bucket is None:
        raise SqlError(f"{item.label} cannot be mixed with aggregates without GROUP BY {name}", item.pos)
    if item.kind == "bucket" and item.bucket != bucket:
        raise SqlError(f"{item.label} is not the time bucket of GROUP BY: one bucket per query", item.pos)


class _Parser:
    def __init__(self, sql: str, now_ns: int) -> None:
        self.tokens = _tokenize(sql)
        self.i = 0
        self.now_ns = now_ns

    # -- tokens ----------------------------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def is_word(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "ident" and token.value == word

    def is_op(self, op: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "op" and token.value == op

    def accept_word(self, word: str) -> bool:
        if self.is_word(word):
            self.take()
            return True
        return False

    def accept_op(self, op: str) -> bool:
        if self.is_op(op):
            self.take()
            return True
        return False

    def expect_word(self, word: str, context: str = "") -> None:
        if not self.accept_word(word):
            self.unexpected(word + context)

    def expect_op(self, op: str, context: str = "") -> None:
        if not self.accept_op(op):
            self.unexpected(op + context)

    def unexpected(self, expected: str) -> NoReturn:
        """Refuses the next token, naming what is unsupported when it starts something the gateway does not do."""
        token = self.peek()
        if token.kind == "ident" and token.value in _UNSUPPORTED:
            raise SqlError(_UNSUPPORTED[token.value], token.pos)
        if token.kind == "op" and token.value == "(" and self.is_word("SELECT", 1):
            raise SqlError("subqueries are not supported: the gateway answers SELECT on one tag table", token.pos)
        raise SqlError(f"expected {expected}, found {_describe(token)}", token.pos)

    def integer(self, expected: str) -> int:
        token = self.peek()
        if token.kind != "int":
            self.unexpected(expected)
        self.take()
        return _small_int(token.text, token.pos)

    def string(self, expected: str) -> _Token:
        token = self.peek()
        if token.kind != "string":
            self.unexpected(expected)
        return self.take()

    def table(self) -> str:
        token = self.peek()
        if token.kind != "ident" or token.value in _RESERVED:
            self.unexpected("a table name")
        self.take()
        if self.is_op("."):
            raise SqlError("qualified table names are not supported: write the table name alone", self.peek().pos)
        return token.value

    def finish(self) -> None:
        self.accept_op(";")
        token = self.peek()
        if token.kind == "end":
            return
        if token.kind == "ident" and token.value in ("SELECT", "CREATE", "DROP"):
            raise SqlError("only one statement per query is supported", token.pos)
        if token.kind == "ident" and token.value in _UNSUPPORTED:
            raise SqlError(_UNSUPPORTED[token.value], token.pos)
        raise SqlError(f"unexpected {_describe(token)} after a complete statement", token.pos)

    # -- statements ------------------------------------------------------------------------------------------

    def statement(self) -> Statement:
        token = self.peek()
        result: Statement
        if self.is_word("SELECT"):
            result = self.select()
        elif self.is_word("CREATE"):
            result = self.create()
        elif self.is_word("DROP"):
            result = self.drop()
        elif token.kind == "end" or self.is_op(";"):
            raise SqlError("the query is empty", token.pos)
        elif token.kind == "ident":
            raise SqlError(
                f"{token.value} is not supported: the gateway answers SELECT, CREATE TAG TABLE and DROP TABLE",
                token.pos,
            )
        else:
            self.unexpected("SELECT, CREATE or DROP")
        self.finish()
        return result

    def drop(self) -> DropTable:
        self.take()
        token = self.peek()
        if not self.accept_word("TABLE"):
            raise SqlError(
                f"DROP {_describe(token)} is not supported: the gateway drops tables (DROP TABLE)", token.pos
            )
        if_exists = self.accept_word("IF")
        if if_exists:
            self.expect_word("EXISTS", " after DROP TABLE IF")
        return DropTable(self.table(), if_exists)

    def create(self) -> CreateTable:
        self.take()
        token = self.peek()
        if not (self.is_word("TAG") and self.is_word("TABLE", 1)):
            what = "CREATE TABLE" if self.is_word("TABLE") else f"CREATE {_describe(token)}"
            raise SqlError(f"{what} is not supported: the gateway creates tag tables (CREATE TAG TABLE)", token.pos)
        self.take()
        self.take()
        if_not_exists = self.accept_word("IF")
        if if_not_exists:
            self.expect_word("NOT", " after CREATE TAG TABLE IF")
            self.expect_word("EXISTS", " after IF NOT")
        table = self.table()
        self.expect_op("(", " and the column list")
        self.column("NAME")
        self.layout("VARCHAR", "(")
        size = self.peek()
        if size.kind != "int" or not size.text.lstrip("0"):
            self.layout_error("a length such as VARCHAR(100)")
        self.take()
        self.layout(")", "PRIMARY", "KEY", ",")
        self.column("TIME")
        self.layout("DATETIME")
        self.layout(*(("BASE", "TIME") if self.is_word("BASE") else ("BASETIME",)))  # Machbase takes either
        self.layout(",")
        self.column("VALUE")
        self.layout("DOUBLE")
        self.accept_word("SUMMARIZED")
        if self.is_op(","):
            self.layout_error("the end of the column list", "a fourth column")
        self.layout(")")
        token = self.peek()
        if token.kind == "ident":
            raise SqlError(
                f"table options ({token.text} ...) are not supported: the gateway creates plain tag tables", token.pos
            )
        return CreateTable(table, if_not_exists)

    def column(self, name: str) -> None:
        if not self.accept_word(name):
            self.layout_error(f"the column {name}")

    def layout(self, *expected: str) -> None:
        for word in expected:
            if not (self.accept_op(word) if word in _OPERATORS else self.accept_word(word)):
                self.layout_error(word)

    def layout_error(self, expected: str, found: str | None = None) -> NoReturn:
        token = self.peek()
        raise SqlError(
            "only tag tables of (name varchar(N) primary key, time datetime basetime, value double [summarized]) "
            f"are supported: expected {expected}, found {found or _describe(token)}",
            token.pos,
        )

    # -- SELECT ----------------------------------------------------------------------------------------------

    def select(self) -> Select:
        self.take()
        items = self.select_items()
        table = self.table()
        token = self.peek()
        if token.kind == "op" and token.value == ",":
            raise SqlError(_JOIN, token.pos)
        if token.kind == "ident" and (token.value == "AS" or token.value not in _RESERVED):
            raise SqlError(f"unexpected {token.text} after the table name: table aliases are not supported", token.pos)
        where = _Where()
        if self.accept_word("WHERE"):
            self.conditions(where)
        by_name, bucket = self.group_by(items) if self.is_word("GROUP") else (False, None)
        aggregated = by_name or bucket is not None or any(item.kind in _AGGREGATES for item in items)
        for item in items:
            _check_item(item, aggregated, by_name, bucket)
        order: Direction = "asc"
        order_by_name = by_name or not aggregated
        if self.is_word("ORDER"):
            order, order_by_name = self.order_by(items, aggregated, by_name, bucket)
        limit, offset = None, 0
        if self.accept_word("LIMIT"):
            limit = self.integer("a row count after LIMIT")
            if self.accept_op(","):  # neo's LIMIT offset, count
                offset, limit = limit, self.integer("a row count after LIMIT offset,")
            elif self.accept_word("OFFSET"):
                offset = self.integer("a row count after OFFSET")
        return Select(
            table=table,
            items=tuple(SelectItem(item.kind, item.alias or item.label) for item in items),
            names=where.names,
            time_from=where.time_from,
            time_to=where.time_to,
            value_filters=tuple(where.filters),
            bucket=bucket,
            group_by_name=by_name,
            order=order,
            order_by_name=order_by_name,
            limit=limit,
            offset=offset,
        )

    def select_items(self) -> list[_Item]:
        items: list[_Item] = []
        while True:
            token = self.peek()
            if self.accept_op("*"):
                items += [_Item(kind, column, None, None, token.pos) for column, kind in _COLUMNS.items()]
            else:
                kind, label, bucket = self.expression("the select list")
                alias = None
                if self.accept_word("AS") or (self.peek().kind == "ident" and self.peek().value not in _RESERVED):
                    if self.peek().kind != "ident" or self.peek().value in _RESERVED:
                        self.unexpected("an alias after AS")
                    alias = self.take().value
                items.append(_Item(kind, label, alias, bucket, token.pos))
            if self.accept_op(","):
                continue
            if self.accept_word("FROM"):
                return items
            token = self.peek()
            if token.kind == "op" and token.value in "+-*/%":
                raise SqlError(f"expressions are not supported: {_SHAPE}", token.pos)
            self.unexpected(", or FROM")

    def expression(self, where: str) -> tuple[ItemKind, str, Bucket | None]:
        """A column, an aggregate or a time bucket: its kind, its label, and the bucket if it is one."""
        token = self.peek()
        if token.kind in ("int", "float", "string", "duration"):
            raise SqlError(f"constants are not supported in {where}: {_SHAPE}", token.pos)
        if token.kind != "ident" or token.value in _RESERVED:
            self.unexpected("NAME, TIME, VALUE, an aggregate or a time bucket")
        start = self.i
        self.take()
        if self.is_op("."):
            raise SqlError(f"qualified names are not supported: write the column alone, not {token.text}.", token.pos)
        if not self.accept_op("("):
            if token.value not in _COLUMNS:
                raise SqlError(f"unknown column {token.value}: a tag table has NAME, TIME and VALUE", token.pos)
            return _COLUMNS[token.value], token.value, None
        function = token.value
        kind: ItemKind
        bucket = None
        if function == "COUNT":
            if not self.accept_op("*"):
                self.column_argument(function, ("NAME", "TIME", "VALUE"), "* or VALUE")
            kind = "count"
        elif function in _VALUE_AGGREGATES:
            self.column_argument(function, ("VALUE",), "VALUE")
            kind = _VALUE_AGGREGATES[function]
        elif function in ("FIRST", "LAST"):
            if self.accept_word("TIME"):
                self.expect_op(",", f" in {function}(TIME, VALUE)")
            self.column_argument(function, ("VALUE",), "TIME, VALUE")
            kind = "first" if function == "FIRST" else "last"
        elif function in ("DATE_TRUNC", "ROLLUP", "DATE_BIN"):
            bucket = self.bucket(function)
            kind = "bucket"
        else:
            raise SqlError(f"unknown function {function}: the gateway supports {_FUNCTIONS}", token.pos)
        self.expect_op(")", f" to close {function}(")
        return kind, self.label(start), bucket

    def column_argument(self, function: str, columns: tuple[str, ...], shape: str) -> None:
        token = self.peek()
        if token.kind == "ident" and token.value in columns:
            self.take()
        elif token.kind == "ident" and token.value in _COLUMNS:
            raise SqlError(f"{function}({token.value}) is not supported: write {function}({shape})", token.pos)
        else:
            self.unexpected(f"{function}({shape})")

    def label(self, start: int) -> str:
        """The expression as neo labels its column: names upper-cased, one space after each comma."""
        parts = []
        for token in self.tokens[start : self.i]:
            parts.append(token.value if token.kind == "ident" else token.text)
            if token.kind == "op" and token.value == ",":
                parts.append(" ")
        return "".join(parts)

    def bucket(self, function: str) -> Bucket:
        unit_token = self.string(f"a time unit such as 'minute' first in {function}(")
        unit = unit_token.value.upper()
        if unit in ("MONTH", "YEAR"):
            raise SqlError(
                f"{unit_token.text} buckets are not supported: calendar months and years have no fixed width",
                unit_token.pos,
            )
        if unit not in _BUCKET_UNITS:
            raise SqlError(
                f"unknown time unit {unit_token.text}: use nanosecond, microsecond, millisecond, second, minute, "
                "hour, day or week",
                unit_token.pos,
            )
        width = _BUCKET_UNITS[unit]
        origin = _SUNDAY if function == "DATE_TRUNC" and width == _WEEK else 0
        count = 1
        if function == "DATE_TRUNC":  # DATE_TRUNC(unit, TIME [, count])
            self.expect_op(",", f" then TIME in {function}(")
            self.time_argument(function)
            if self.accept_op(","):
                count = self.count(function)
        else:  # ROLLUP / DATE_BIN(unit, count, TIME [, origin])
            self.expect_op(",", f" then a count in {function}(")
            count = self.count(function)
            self.expect_op(",", f" then TIME in {function}(")
            self.time_argument(function)
            if self.accept_op(","):
                origin = self.time()
        if width * count > _MAX_INT:
            raise SqlError(f"the {function} bucket is too wide", unit_token.pos)
        return Bucket(width * count, origin)

    def count(self, function: str) -> int:
        token = self.peek()
        count = self.integer(f"a count in {function}(")
        if count < 1:
            raise SqlError(f"the count in {function} must be at least 1", token.pos)
        return count

    def time_argument(self, function: str) -> None:
        token = self.peek()
        if token.kind == "ident" and token.value in ("NAME", "VALUE"):
            raise SqlError(f"{function} buckets TIME, not {token.value}", token.pos)
        self.expect_word("TIME", f" in {function}(")

    # -- GROUP BY, ORDER BY ----------------------------------------------------------------------------------

    def key(self, items: list[_Item], clause: str) -> tuple[ItemKind, Bucket | None, _Token]:
        """A GROUP BY or ORDER BY key: an alias from the select list (first, as SQL does), a column or a bucket."""
        token = self.peek()
        if token.kind == "int":
            raise SqlError(f"{clause} column numbers are not supported: name the column or its alias", token.pos)
        if token.kind == "ident" and not self.is_op("(", 1):
            for item in items:
                if item.alias == token.value:
                    self.take()
                    return item.kind, item.bucket, token
        kind, _, bucket = self.expression(clause)
        return kind, bucket, token

    def group_by(self, items: list[_Item]) -> tuple[bool, Bucket | None]:
        self.take()
        self.expect_word("BY", " after GROUP")
        by_name, bucket = False, None
        while True:
            kind, key_bucket, token = self.key(items, "GROUP BY")
            if kind == "name":
                if by_name:
                    raise SqlError("GROUP BY lists NAME twice", token.pos)
                by_name = True
            elif kind == "bucket":
                if bucket is not None:
                    twice = "GROUP BY lists the time bucket twice"
                    raise SqlError(twice if key_bucket == bucket else "only one time bucket per query", token.pos)
                bucket = key_bucket
            elif kind == "time":
                raise SqlError(
                    "GROUP BY TIME is not supported: group by a time bucket such as DATE_TRUNC('minute', TIME)",
                    token.pos,
                )
            else:
                raise SqlError(f"GROUP BY {token.text} is not supported: group by NAME or a time bucket", token.pos)
            if not self.accept_op(","):
                return by_name, bucket

    def order_by(
        self, items: list[_Item], aggregated: bool, by_name: bool, bucket: Bucket | None
    ) -> tuple[Direction, bool]:
        """ORDER BY NAME and/or TIME (the bucket when grouping): the time direction, and whether NAME sorts first."""
        self.take()
        self.expect_word("BY", " after ORDER")
        keys: list[str] = []
        order: Direction = "asc"
        while True:
            kind, key_bucket, token = self.key(items, "ORDER BY")
            direction: Direction = "desc" if self.accept_word("DESC") else "asc"
            if direction == "asc":
                self.accept_word("ASC")
            if kind == "name":
                if aggregated and not by_name:
                    raise SqlError("ORDER BY NAME needs GROUP BY NAME when the query aggregates", token.pos)
                if direction == "desc":
                    raise SqlError(
                        "ORDER BY NAME DESC is not supported: series come in ascending name order", token.pos
                    )
                key = "name"
            elif kind in ("time", "bucket"):
                if aggregated and bucket is None:
                    raise SqlError("ORDER BY TIME needs a time bucket in GROUP BY when the query aggregates", token.pos)
                if kind == "bucket" and key_bucket != bucket:
                    raise SqlError("ORDER BY a time bucket needs GROUP BY that bucket", token.pos)
                key, order = "time", direction
            else:
                raise SqlError(
                    f"ORDER BY {token.text} is not supported: rows are sorted by NAME and TIME only", token.pos
                )
            if key in keys:
                raise SqlError(f"ORDER BY lists {key.upper()} twice", token.pos)
            keys.append(key)
            if not self.accept_op(","):
                return order, keys[0] == "name"

    # -- WHERE -----------------------------------------------------------------------------------------------

    def conditions(self, where: _Where) -> None:
        self.condition(where)
        while self.accept_word("AND"):
            self.condition(where)

    def condition(self, where: _Where) -> None:
        token = self.peek()
        if token.kind == "op" and token.value == "(" and not self.is_word("SELECT", 1):
            self.take()
            self.conditions(where)
            self.expect_op(")", " to close the parenthesis")
            return
        if token.kind in ("int", "float", "string", "duration"):
            raise SqlError("put the column first in a condition: write TIME > x, not x < TIME", token.pos)
        if token.kind != "ident" or token.value in _RESERVED:
            self.unexpected("a condition on NAME, TIME or VALUE")
        self.take()
        if self.is_op("("):
            raise SqlError(
                f"{token.value}(...) is not supported in WHERE: conditions compare NAME, TIME or VALUE", token.pos
            )
        if self.is_op("."):
            raise SqlError(f"qualified names are not supported: write the column alone, not {token.text}.", token.pos)
        if token.value == "NAME":
            self.name_condition(where)
        elif token.value == "TIME":
            self.time_condition(where)
        elif token.value == "VALUE":
            self.value_condition(where)
        else:
            raise SqlError(f"unknown column {token.value}: a tag table has NAME, TIME and VALUE", token.pos)

    def name_condition(self, where: _Where) -> None:
        token = self.peek()
        if self.accept_op("="):
            where.add_names([self.string("a series name in single quotes after NAME =").value])
        elif self.accept_word("IN"):
            self.expect_op("(", " after NAME IN")
            if self.is_word("SELECT"):
                raise SqlError("subqueries are not supported: list the names, NAME IN ('a', 'b')", self.peek().pos)
            names = [self.string("a series name in single quotes").value]
            while self.accept_op(","):
                names.append(self.string("a series name in single quotes").value)
            self.expect_op(")", " to close NAME IN (")
            where.add_names(names)
        elif token.value in ("NOT", "LIKE", "!=", "<>") and token.kind in ("ident", "op"):
            raise SqlError(
                f"NAME {token.value} is not supported: select series with NAME = 'x' or NAME IN ('a', 'b')", token.pos
            )
        else:
            self.unexpected("= or IN after NAME")

    def time_condition(self, where: _Where) -> None:
        token = self.peek()
        if self.accept_word("BETWEEN"):
            low = self.time()
            self.expect_word("AND", " in TIME BETWEEN ... AND ...")
            where.add_range(low, self.time() + 1)
            return
        op = token.value if token.kind == "op" else ""
        if op in ("!=", "<>"):
            raise SqlError(f"TIME {op} is not supported: compare TIME with =, <, <=, >, >= or BETWEEN", token.pos)
        if op not in ("=", "<", "<=", ">", ">="):
            self.unexpected("=, <, <=, >, >= or BETWEEN after TIME")
        self.take()
        at = self.time()
        # Every comparison becomes part of the half-open range [from, to): on integers the edges are exact.
        if op == "=":
            where.add_range(at, at + 1)
        elif op == "<":
            where.add_range(None, at)
        elif op == "<=":
            where.add_range(None, at + 1)
        elif op == ">":
            where.add_range(at + 1, None)
        else:
            where.add_range(at, None)

    def value_condition(self, where: _Where) -> None:
        token = self.peek()
        if self.accept_word("BETWEEN"):
            low = self.number()
            self.expect_word("AND", " in VALUE BETWEEN ... AND ...")
            where.filters += [ValueFilter(">=", low), ValueFilter("<=", self.number())]
            return
        if token.kind != "op" or token.value not in _COMPARE:
            self.unexpected("=, !=, <>, <, <=, >, >= or BETWEEN after VALUE")
        self.take()
        where.filters.append(ValueFilter(_COMPARE[token.value], self.number()))

    def number(self) -> float:
        sign = -1.0 if self.accept_op("-") else 1.0
        if sign > 0:
            self.accept_op("+")
        token = self.peek()
        if token.kind == "string":
            raise SqlError(f"VALUE is a number: compare it with a number, not {token.text}", token.pos)
        if token.kind not in ("int", "float"):
            self.unexpected("a number")
        self.take()
        number = sign * float(token.text)
        if not isfinite(number):
            raise SqlError(f"{token.text} is out of range for a double", token.pos)
        return number

    # -- times -----------------------------------------------------------------------------------------------

    def time(self) -> int:
        start = self.peek()
        at = self.time_primary()
        while self.is_op("+") or self.is_op("-"):
            sign = 1 if self.take().value == "+" else -1
            token = self.peek()
            if token.kind == "int":
                at += sign * self.integer("a duration")
            elif token.kind == "duration":
                at += sign * _duration(self.take())
            else:
                self.unexpected("a duration such as 1h, 30s or 2d6h15m")
        if not _MIN_INT <= at <= _MAX_INT:
            raise SqlError("the time is out of range: times are signed 64-bit nanoseconds since 1970", start.pos)
        return at

    def time_primary(self) -> int:
        token = self.peek()
        expected = "a time (nanoseconds, 'YYYY-MM-DD HH:MM:SS', NOW, NOW - 1h or TO_DATE('...'))"
        if token.kind == "int":
            return self.integer(expected)
        if token.kind == "op" and token.value == "-" and self.peek(1).kind == "int":  # before 1970
            self.take()
            return -self.integer(expected)
        if token.kind == "string":
            return _parse_datetime(self.take())
        if token.kind == "float":
            raise SqlError(f"a time is a whole number of nanoseconds, found {token.text}", token.pos)
        if token.kind == "duration":
            raise SqlError(f"{token.text} is a duration, not a time: write NOW - {token.text}", token.pos)
        if token.kind == "op" and token.value == "(" and not self.is_word("SELECT", 1):
            self.take()
            at = self.time()
            self.expect_op(")", " to close the parenthesis")
            return at
        if token.kind != "ident" or token.value in _RESERVED:
            self.unexpected(expected)
        self.take()
        if token.value in ("NOW", "SYSDATE"):
            if self.accept_op("("):
                self.expect_op(")", f" after {token.value}(")
            return self.now_ns
        if token.value in ("TO_TIMESTAMP", "FROM_TIMESTAMP"):
            self.expect_op("(", f" after {token.value}")
            at = self.time()
            self.expect_op(")", f" to close {token.value}(")
            return at
        if token.value == "TO_DATE":
            self.expect_op("(", " after TO_DATE")
            text = self.string("a date in single quotes in TO_DATE(")
            if self.accept_op(","):
                form = self.string("a format in single quotes in TO_DATE(")
                if form.value.upper() not in _TIME_FORMATS:
                    raise SqlError(
                        f"TO_DATE format {form.text} is not supported: use 'YYYY-MM-DD HH24:MI:SS' or leave it out",
                        form.pos,
                    )
            self.expect_op(")", " to close TO_DATE(")
            return _parse_datetime(text)
        if self.is_op("("):
            raise SqlError(
                f"{token.value}(...) is not supported in a time: use NOW, TO_DATE or TO_TIMESTAMP", token.pos
            )
        raise SqlError(f"expected {expected}, found {token.text}", token.pos)


def to_query(select: Select) -> Query:
    """The store's plan for a parsed SELECT."""
    bucket = select.bucket
    return Query(
        select.table,
        tuple((item.kind, item.alias) for item in select.items),
        select.names,
        select.time_from,
        select.time_to,
        tuple((f.op, f.value) for f in select.value_filters),
        bucket.width if bucket else None,
        bucket.origin if bucket else 0,
        select.group_by_name,
        select.order,
        select.order_by_name,
        select.limit,
        select.offset,
    )
