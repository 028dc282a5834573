"""The TQL parser (gateway/tql/syntax.py): the walk-through's script, every construct as an exact tree, every
refusal with its line, column and reason, and fuzzing that nothing but TqlError ever escapes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tql.syntax import Array, Binary, Call, Constant, Name, Object, Pos, Script, TqlError, Unary, parse
from tests.tql.walkthrough import WALKTHROUGH


def P(line: int, column: int) -> Pos:
    return Pos(line, column)


def expr(text: str) -> object:
    """The tree of one expression, as the only argument of F(...) on line 1 (so columns count from 3)."""
    script = parse(f"F({text})")
    assert len(script.statements) == 1 and len(script.statements[0].args) == 1
    return script.statements[0].args[0]


def test_the_walkthrough_script_is_read_into_its_exact_tree() -> None:
    script = parse(WALKTHROUGH)
    assert [call.name for call in script.statements] == ["SQL_SELECT", "MAPVALUE", "POPVALUE", "CHART"]
    source, mapvalue, popvalue, chart = script.statements
    assert source == Call(
        "SQL_SELECT",
        (
            Constant("time", P(2, 14)),
            Constant("value", P(2, 22)),
            Call("from", (Constant("example", P(2, 36)), Constant("temperature", P(2, 47))), P(2, 31)),
            Call("between", (Constant("last-60s", P(2, 71)), Constant("last", P(2, 83))), P(2, 63)),
        ),
        P(2, 3),
    )
    assert mapvalue == Call(
        "MAPVALUE",
        (
            Constant(0, P(3, 12)),
            Call(
                "list",
                (Call("value", (Constant(0, P(3, 26)),), P(3, 20)), Call("value", (Constant(1, P(3, 36)),), P(3, 30))),
                P(3, 15),
            ),
        ),
        P(3, 3),
    )
    assert popvalue == Call("POPVALUE", (Constant(1, P(4, 12)),), P(4, 3))
    assert [arg.name for arg in chart.args if isinstance(arg, Call)] == ["size", "chartID", "theme", "chartOption"]
    option = chart.args[3]
    assert isinstance(option, Call) and isinstance(option.args[0], Object)
    keys = [key for key, _ in option.args[0].items]
    assert keys == ["xAxis", "yAxis", "animation", "series"]
    series = dict(option.args[0].items)["series"]
    line = WALKTHROUGH.splitlines()[6]  # line 7: the script starts with a newline

    def at(needle: str) -> Pos:
        return P(7, line.index(needle) + 1)

    assert series == Array(
        (
            Object(
                (
                    ("type", Constant("line", at('"line"'))),
                    ("data", Call("column", (Constant(0, at("0)")),), at("column"))),
                ),
                at("{ type"),
            ),
        ),
        at("[ {"),
    )


def test_an_empty_script_and_comments_only_have_no_statements() -> None:
    assert parse("") == Script(())
    assert parse("  // nothing\n /* here\n either */ \n") == Script(())


def test_comments_are_skipped_and_positions_count_past_them() -> None:
    script = parse("/* a\n comment */ CSV( // a line comment\n header(true) )")
    assert script == Script((Call("CSV", (Call("header", (Constant(True, P(3, 9)),), P(3, 2)),), P(2, 13)),))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("1700000000000000000", 1700000000000000000),
        ("1.5", 1.5),
        (".5", 0.5),
        ("2e3", 2000.0),
        ("2.5E-1", 0.25),
        ("'single'", "single"),
        ('"double"', "double"),
        ("`back\nquoted \\n raw`", "back\nquoted \\n raw"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\\tb\\nc\\\\d'", "a\tb\nc\\d"),
        ("'\\u00e9t\\u00E9'", "été"),
        ("'été ✓'", "été ✓"),
        ("''", ""),
        ("true", True),
        ("false", False),
        ("null", None),
    ],
)
def test_constants(text: str, value: object) -> None:
    found = expr(text)
    assert isinstance(found, Constant)
    assert found.value == value and type(found.value) is type(value)
    assert found.pos == P(1, 3)


def test_a_bare_name_is_kept_for_the_evaluator_to_refuse() -> None:
    assert expr("temperature") == Name("temperature", P(1, 3))


def test_operator_precedence_and_associativity() -> None:
    # 1 + 2 * 3 - 4 % 5 / 6 groups as (1 + (2 * 3)) - ((4 % 5) / 6)
    tree = expr("1 + 2 * 3 - 4 % 5 / 6")
    assert tree == Binary(
        "-",
        Binary("+", Constant(1, P(1, 3)), Binary("*", Constant(2, P(1, 7)), Constant(3, P(1, 11)), P(1, 9)), P(1, 5)),
        Binary(
            "/", Binary("%", Constant(4, P(1, 15)), Constant(5, P(1, 19)), P(1, 17)), Constant(6, P(1, 23)), P(1, 21)
        ),
        P(1, 13),
    )


def test_logic_binds_looser_than_comparison_and_and_tighter_than_or() -> None:
    tree = expr("a == 1 || !b < 2 && c >= 3")
    assert isinstance(tree, Binary) and tree.op == "||"
    assert isinstance(tree.left, Binary) and tree.left.op == "=="
    right = tree.right
    assert isinstance(right, Binary) and right.op == "&&"
    assert isinstance(right.left, Unary) and right.left.op == "!"
    assert isinstance(right.left.operand, Binary) and right.left.operand.op == "<"
    assert isinstance(right.right, Binary) and right.right.op == ">="


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_every_comparison(op: str) -> None:
    assert expr(f"value(1) {op} 20") == Binary(
        op,  # type: ignore[arg-type]
        Call("value", (Constant(1, P(1, 9)),), P(1, 3)),
        Constant(20, P(1, 13 + len(op))),
        P(1, 12),
    )


def test_parentheses_and_unary_operators() -> None:
    assert expr("-(1 + 2)") == Unary("-", Binary("+", Constant(1, P(1, 5)), Constant(2, P(1, 9)), P(1, 7)), P(1, 3))
    assert expr("+-1") == Unary("+", Unary("-", Constant(1, P(1, 5)), P(1, 4)), P(1, 3))
    assert expr("!!true") == Unary("!", Unary("!", Constant(True, P(1, 5)), P(1, 4)), P(1, 3))


def test_javascript_object_literals_unquoted_and_quoted_keys_trailing_commas_nesting() -> None:
    text = "{ a: 1, 'b': [1, 'x', [true, null],], \"c\": { d: -2.5, }, 7: false, }"

    def at(needle: str) -> Pos:
        return P(1, 3 + text.index(needle))  # the text is F's argument, from column 3

    tree = expr(text)
    assert isinstance(tree, Object) and tree.pos == P(1, 3)
    assert [key for key, _ in tree.items] == ["a", "b", "c", "7"]
    items = dict(tree.items)
    assert items["a"] == Constant(1, at("1,"))
    assert items["b"] == Array(
        (
            Constant(1, at("1, 'x'")),
            Constant("x", at("'x'")),
            Array((Constant(True, at("true")), Constant(None, at("null"))), at("[true")),
        ),
        at("[1"),
    )
    assert items["c"] == Object((("d", Unary("-", Constant(2.5, at("2.5")), at("-2.5"))),), at("{ d"))
    assert items["7"] == Constant(False, at("false"))
    assert expr("{}") == Object((), P(1, 3))
    assert expr("[]") == Array((), P(1, 3))


def test_calls_take_trailing_commas_and_no_arguments() -> None:
    assert parse("CSV()") == Script((Call("CSV", (), P(1, 1)),))
    assert parse("list(1, 2,)").statements[0] == Call("list", (Constant(1, P(1, 6)), Constant(2, P(1, 9))), P(1, 1))


def test_statements_may_share_a_line_or_span_several() -> None:
    script = parse("SQL('select * from t') CSV(\n)")
    assert [(c.name, c.pos) for c in script.statements] == [("SQL", P(1, 1)), ("CSV", P(1, 24))]


def test_positions_count_lines_inside_backquoted_strings() -> None:
    script = parse("SQL(`select *\nfrom t\nwhere name = 'a'`)\nCSV()")
    assert script.statements[1].pos == P(4, 1)


# ---------------------------------------------------------------------------------------------------------------
# Refusals: line, column and reason

ERRORS = [
    ("CSV", P(1, 4), "expected ( after CSV: each statement is a function call, found the end of the script"),
    ("42", P(1, 1), "expected a function call such as SQL_SELECT(...), MAPVALUE(...) or CSV(), found the number 42"),
    ("CSV(\n  1,\n  2", P(3, 4), "expected ) to close CSV(, found the end of the script"),
    ("F(1 2)", P(1, 5), "expected ) to close F(, found the number 2"),
    ("F(,)", P(1, 3), "expected a value (a number, a string, a function call, {...} or [...]), found ,"),
    (
        "F('abc\n')",
        P(1, 3),
        "unterminated string: the single quote here is not closed on its line (backquoted strings may span lines)",
    ),
    ("F('abc)", P(1, 3), "unterminated string: the single quote here is never closed"),
    ('F("abc', P(1, 3), "unterminated string: the double quote here is never closed"),
    ("F(`abc\n", P(1, 3), "unterminated string: the backquote here is never closed"),
    ("F('a\\qb')", P(1, 5), "unknown escape \\q: use \\n, \\t, \\r, \\\\, \\', \\\" or \\uXXXX"),
    ("F('\\u12')", P(1, 4), "bad escape: \\u takes four hexadecimal digits"),
    ("F(1)\n/* open", P(2, 1), "unterminated comment: this /* has no closing */"),
    ("F(a = 1)", P(1, 5), "unexpected character '=': to compare, write =="),
    ("F(a & b)", P(1, 5), "unexpected character '&': logical and/or are && and ||"),
    ("F(a | b)", P(1, 5), "unexpected character '|': logical and/or are && and ||"),
    ("F(#)", P(1, 3), "unexpected character '#'"),
    ("F(1 < 2 < 3)", P(1, 9), "comparisons do not chain: write a < b && b < c instead"),
    ("F(now - 1h)", P(1, 9), "'1h' is not a number: durations and times are written in quotes, e.g. 'now-1h'"),
    ("F({a 1})", P(1, 6), "expected : after the key 'a', found the number 1"),
    ("F({a: 1 b: 2})", P(1, 9), "expected } to close the object (or a comma between its entries), found b"),
    ("F({a: 1, a: 2})", P(1, 10), "the key 'a' appears twice in this object"),
    ("F({[1]: 2})", P(1, 4), "expected a key (a name or a quoted string) or } in the object, found ["),
    ("F([1, 2)", P(1, 8), "expected ] to close the array, found )"),
    ("F((1 + 2", P(1, 9), "expected ) to close the parenthesis, found the end of the script"),
    ("F((1 + 2)", P(1, 10), "expected ) to close F(, found the end of the script"),
    ("F(1 +)", P(1, 6), "expected a value (a number, a string, a function call, {...} or [...]), found )"),
    (
        "CSV()\n  MAPVALUE(0, 1) ]",
        P(2, 18),
        "expected a function call such as SQL_SELECT(...), MAPVALUE(...) or CSV(), found ]",
    ),
    (
        "\t\tF('x') 'y'",
        P(1, 10),
        "expected a function call such as SQL_SELECT(...), MAPVALUE(...) or CSV(), found the string 'y'",
    ),
]


@pytest.mark.parametrize(("text", "pos", "reason"), ERRORS)
def test_refusals_name_line_column_and_reason(text: str, pos: Pos, reason: str) -> None:
    with pytest.raises(TqlError) as caught:
        parse(text)
    assert (caught.value.pos, caught.value.reason) == (pos, reason)
    assert str(caught.value) == f"line {pos.line}, column {pos.column}: {reason}"


def test_deep_nesting_is_refused_before_python_runs_out_of_stack() -> None:
    for text in (
        "F(" + "(" * 5000 + "1" + ")" * 5000 + ")",
        "F(" + "-" * 5000 + "1)",
        "F(" + "!" * 5000 + "1)",
        "F(" + "[" * 5000 + "]" * 5000 + ")",
        "F(" + "{a:" * 5000 + "1" + "}" * 5000 + ")",
    ):
        with pytest.raises(TqlError, match="nests too deeply"):
            parse(text)
    for chain in ("+", "*", "&&", "||", "%"):
        with pytest.raises(TqlError, match="nests too deeply") as caught:
            parse("F(" + f" {chain} ".join(["1"] * 20000) + ")")
        assert caught.value.pos.line == 1
    parse("F(" + "(" * 60 + "1" + ")" * 60 + ")")  # reasonable nesting is fine
    parse("F(" + " + ".join(["value(0)"] * 50) + ")")  # and so are reasonable chains


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="SQL_ELCTMAPVUOFRJHN()[]{},:'\"`\\/*+-%!=<>&|.0123456789 \n\tabcxyz_é", max_size=80))
def test_nothing_but_tqlerror_escapes(text: str) -> None:
    try:
        parse(text)
    except TqlError as exc:
        assert exc.pos.line >= 1 and exc.pos.column >= 1
        assert exc.pos.line <= text.count("\n") + 1
