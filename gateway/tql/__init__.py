"""The part of machbase-neo's TQL that people use for charts and exports (`POST /db/tql`, docs/tql.md).

syntax.py reads a script into a syntax tree, evaluate.py runs it over records with a function that answers SQL;
both are pure. gateway/http/tql.py is the HTTP side: the store, the answer's format, the chart's JavaScript.
"""

from gateway.tql.evaluate import MAX_ROWS, Chart, Instant, Output, RunSql, SourceError, Table, run, time_point
from gateway.tql.syntax import Pos, Script, TqlError, parse

__all__ = [
    "MAX_ROWS",
    "Chart",
    "Instant",
    "Output",
    "Pos",
    "RunSql",
    "Script",
    "SourceError",
    "Table",
    "TqlError",
    "parse",
    "run",
    "time_point",
]
