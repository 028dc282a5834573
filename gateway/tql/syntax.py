"""TQL text to a syntax tree: the lexer and the parser of the subset of machbase-neo's TQL that the gateway runs.

Pure: text in, frozen dataclasses out. A script the parser cannot read raises `TqlError` with the line and column
(both from 1) of the first thing that is wrong, and a reason a person can act on. What the calls mean (which
functions exist, how many arguments they take) is the evaluator's business (evaluate.py): the grammar is small and
knows no function names, so that an unknown function is reported as such, not as a syntax error.

Grammar (`//` and `/* */` are comments; newlines are spaces)::

    script   := statement*                  -- one call per statement: a source, map functions, a sink
    statement:= call
    call     := IDENT '(' [expr (',' expr)* [',']] ')'
    expr     := or
    or       := and ('||' and)*
    and      := not ('&&' not)*
    not      := '!' not | compare
    compare  := sum [('==' | '!=' | '<' | '<=' | '>' | '>=') sum]
    sum      := product (('+' | '-') product)*
    product  := unary (('*' | '/' | '%') unary)*
    unary    := ('-' | '+') unary | primary
    primary  := NUMBER | STRING | 'true' | 'false' | 'null' | call | IDENT | '(' expr ')' | object | array
    object   := '{' [key ':' expr (',' key ':' expr)* [',']] '}'     -- a JavaScript object literal
    key      := IDENT | STRING | NUMBER
    array    := '[' [expr (',' expr)* [',']] ']'

Strings are in single quotes, double quotes or backquotes (neo writes SQL in backquotes); `\\n`, `\\t`, `\\\\`,
`\\'`, `\\"`, `` \\` `` and `\\uXXXX` are escapes in the first two, backquoted strings are raw and may span lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NoReturn, TypeAlias

__all__ = [
    "Array",
    "Binary",
    "Call",
    "Constant",
    "Expr",
    "Name",
    "Object",
    "Pos",
    "Script",
    "TqlError",
    "Unary",
    "parse",
]

# Nesting goes through recursion: a bound keeps hostile input from reaching Python's recursion limit.
_MAX_NESTING = 64


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    column: int


class TqlError(Exception):
    """A script that cannot be read or run: `reason` says why, `pos` where (line and column from 1)."""

    def __init__(self, reason: str, pos: Pos) -> None:
        super().__init__(reason, pos)
        self.reason = reason
        self.pos = pos

    def __str__(self) -> str:
        return f"line {self.pos.line}, column {self.pos.column}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Constant:
    """A number, a string, true, false or null."""

    value: int | float | str | bool | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Name:
    """A bare identifier outside an object key: no TQL function of the subset takes one, the evaluator says so."""

    name: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # as written: neo's function names are case-sensitive
    args: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Unary:
    op: Literal["-", "+", "!"]
    operand: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Binary:
    op: Literal["||", "&&", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]
    left: Expr
    right: Expr
    pos: Pos  # of the operator


@dataclass(frozen=True, slots=True)
class Object:
    items: tuple[tuple[str, Expr], ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Array:
    items: tuple[Expr, ...]
    pos: Pos


Expr: TypeAlias = Constant | Name | Call | Unary | Binary | Object | Array


@dataclass(frozen=True, slots=True)
class Script:
    statements: tuple[Call, ...]


def parse(text: str) -> Script:
    """The syntax tree of a TQL script. Raises TqlError."""
    return _Parser(_tokenize(text)).script()


# ---------------------------------------------------------------------------------------------------------------
# Tokens

TokenKind: TypeAlias = Literal["ident", "number", "string", "op", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str  # as written (strings: their value, unescaped)
    pos: Pos
    value: int | float | str | None = None


# Longest first, so that "<=" is not read as "<" and "=".
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", "(", ")", "{", "}", "[", "]", ",", ":", "+", "-", "*", "/", "%")
_OPERATORS_1 = ("<", ">", "!")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "`": "`", "0": "\0", "/": "/"}
_QUOTES = {"'": "single quote", '"': "double quote", "`": "backquote"}


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0

    def pos(self, at: int | None = None) -> Pos:
        """The position of offset `at` (default: here); `at` must be on the current line."""
        at = self.i if at is None else at
        return Pos(self.line, at - self.line_start + 1)

    def advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self.text[self.i] == "\n":
                self.line += 1
                self.line_start = self.i + 1
            self.i += 1

    def fail(self, reason: str, pos: Pos | None = None) -> NoReturn:
        raise TqlError(reason, pos or self.pos())

    def tokens(self) -> list[_Token]:
        text, tokens = self.text, []
        while True:
            self.skip_space()
            if self.i >= len(text):
                tokens.append(_Token("end", "", self.pos()))
                return tokens
            c = text[self.i]
            start = self.pos()
            if c.isascii() and (c.isalpha() or c == "_"):
                begin = self.i
                while self.i < len(text) and text[self.i].isascii() and (text[self.i].isalnum() or text[self.i] == "_"):
                    self.i += 1
                tokens.append(_Token("ident", text[begin : self.i], start))
            elif (c.isascii() and c.isdigit()) or (c == "." and text[self.i + 1 : self.i + 2].isdigit()):
                tokens.append(self.number(start))
            elif c in _QUOTES:
                tokens.append(self.string(start))
            else:
                op = next((op for op in _OPERATORS if text.startswith(op, self.i)), None)
                if op is None and c in _OPERATORS_1:
                    op = c
                if op is None:
                    hint = ": to compare, write ==" if c == "=" else ""
                    hint = ": logical and/or are && and ||" if c in "&|" else hint
                    self.fail(f"unexpected character {c!r}{hint}")
                self.i += len(op)
                tokens.append(_Token("op", op, start))

    def skip_space(self) -> None:
        text = self.text
        while self.i < len(text):
            if text[self.i] in " \t\r\n\f\v":
                self.advance()
            elif text.startswith("//", self.i):
                while self.i < len(text) and text[self.i] != "\n":
                    self.i += 1
            elif text.startswith("/*", self.i):
                start = self.pos()
                end = text.find("*/", self.i + 2)
                if end < 0:
                    self.fail("unterminated comment: this /* has no closing */", start)
                self.advance(end + 2 - self.i)
            else:
                return

    def number(self, start: Pos) -> _Token:
        text, begin = self.text, self.i
        while self.i < len(text) and text[self.i].isascii() and text[self.i].isdigit():
            self.i += 1
        is_float = False
        if text.startswith(".", self.i):
            is_float = True
            self.i += 1
            while self.i < len(text) and text[self.i].isascii() and text[self.i].isdigit():
                self.i += 1
        if self.i < len(text) and text[self.i] in "eE":
            exponent = self.i + 1
            if exponent < len(text) and text[exponent] in "+-":
                exponent += 1
            if exponent < len(text) and text[exponent].isascii() and text[exponent].isdigit():
                is_float = True
                self.i = exponent
                while self.i < len(text) and text[self.i].isascii() and text[self.i].isdigit():
                    self.i += 1
        if self.i < len(text) and text[self.i].isascii() and (text[self.i].isalpha() or text[self.i] == "_"):
            while self.i < len(text) and text[self.i].isascii() and text[self.i].isalnum():
                self.i += 1
            written = text[begin : self.i]
            self.fail(
                f"{written!r} is not a number: durations and times are written in quotes, e.g. 'now-{written}'",
                start,
            )
        written = text[begin : self.i]
        return _Token("number", written, start, float(written) if is_float else int(written))

    def string(self, start: Pos) -> _Token:
        text, quote = self.text, self.text[self.i]
        self.i += 1
        parts: list[str] = []
        while True:
            if self.i >= len(text):
                self.fail(f"unterminated string: the {_QUOTES[quote]} here is never closed", start)
            c = text[self.i]
            if c == quote:
                self.i += 1
                value = "".join(parts)
                return _Token("string", value, start, value)
            if c == "\n" and quote != "`":
                self.fail(
                    f"unterminated string: the {_QUOTES[quote]} here is not closed on its line "
                    "(backquoted strings may span lines)",
                    start,
                )
            if c == "\\" and quote != "`":
                escape_pos = self.pos()
                code = text[self.i + 1 : self.i + 2]
                if code == "u":
                    digits = text[self.i + 2 : self.i + 6]
                    if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                        self.fail("bad escape: \\u takes four hexadecimal digits", escape_pos)
                    parts.append(chr(int(digits, 16)))
                    self.i += 6
                    continue
                if code not in _ESCAPES:
                    self.fail(f"unknown escape \\{code}: use \\n, \\t, \\r, \\\\, \\', \\\" or \\uXXXX", escape_pos)
                parts.append(_ESCAPES[code])
                self.i += 2
                continue
            parts.append(c)
            self.advance()


def _tokenize(text: str) -> list[_Token]:
    return _Lexer(text).tokens()


# ---------------------------------------------------------------------------------------------------------------
# Parser

_COMPARE = ("==", "!=", "<", "<=", ">", ">=")
_WORDS: dict[str, bool | None] = {"true": True, "false": False, "null": None}


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def is_op(self, op: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text == op

    def accept(self, op: str) -> bool:
        if self.is_op(op):
            self.take()
            return True
        return False

    def expect(self, op: str, why: str) -> _Token:
        if not self.is_op(op):
            self.unexpected(f"{op} {why}")
        return self.take()

    def unexpected(self, expected: str) -> NoReturn:
        token = self.peek()
        found = "the end of the script" if token.kind == "end" else _describe(token)
        raise TqlError(f"expected {expected}, found {found}", token.pos)

    def script(self) -> Script:
        statements = []
        while self.peek().kind != "end":
            token = self.peek()
            if token.kind != "ident":
                self.unexpected("a function call such as SQL_SELECT(...), MAPVALUE(...) or CSV()")
            self.take()
            if not self.is_op("("):
                self.unexpected(f"( after {token.text}: each statement is a function call")
            statements.append(self.call(token))
        return Script(tuple(statements))

    def call(self, name: _Token) -> Call:
        self.expect("(", f"after {name.text}")
        args = self.items(")", f"to close {name.text}(")
        return Call(name.text, tuple(args), name.pos)

    def items(self, close: str, why: str) -> list[Expr]:
        """Comma-separated expressions up to `close`; a trailing comma is allowed, as in JavaScript."""
        items: list[Expr] = []
        while not self.is_op(close) and self.peek().kind != "end":
            items.append(self.expr())
            if not self.accept(","):
                break
        self.expect(close, why)
        return items

    def nest(self, pos: Pos) -> None:
        """One level deeper in the tree. A chain `a + b + c` is a tree as deep as it is long, and the evaluator
        recurses through it: chains count as nesting."""
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise TqlError(f"the expression nests too deeply (more than {_MAX_NESTING} levels)", pos)

    def expr(self) -> Expr:
        depth = self.depth
        self.nest(self.peek().pos)
        try:
            return self.logical_or()
        finally:
            self.depth = depth

    def logical_or(self) -> Expr:
        depth = self.depth
        left = self.logical_and()
        while self.is_op("||"):
            op = self.take()
            self.nest(op.pos)
            left = Binary("||", left, self.logical_and(), op.pos)
        self.depth = depth
        return left

    def logical_and(self) -> Expr:
        depth = self.depth
        left = self.logical_not()
        while self.is_op("&&"):
            op = self.take()
            self.nest(op.pos)
            left = Binary("&&", left, self.logical_not(), op.pos)
        self.depth = depth
        return left

    def logical_not(self) -> Expr:
        if self.is_op("!"):
            op = self.take()
            depth = self.depth
            self.nest(op.pos)
            try:
                return Unary("!", self.logical_not(), op.pos)
            finally:
                self.depth = depth
        return self.compare()

    def compare(self) -> Expr:
        left = self.sum()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARE:
            self.take()
            right = self.sum()
            after = self.peek()
            if after.kind == "op" and after.text in _COMPARE:
                raise TqlError(
                    f"comparisons do not chain: write a {token.text} b && b {after.text} c instead", after.pos
                )
            return Binary(token.text, left, right, token.pos)  # type: ignore[arg-type]
        return left

    def sum(self) -> Expr:
        depth = self.depth
        left = self.product()
        while self.is_op("+") or self.is_op("-"):
            op = self.take()
            self.nest(op.pos)
            left = Binary(op.text, left, self.product(), op.pos)  # type: ignore[arg-type]
        self.depth = depth
        return left

    def product(self) -> Expr:
        depth = self.depth
        left = self.unary()
        while self.is_op("*") or self.is_op("/") or self.is_op("%"):
            op = self.take()
            self.nest(op.pos)
            left = Binary(op.text, left, self.unary(), op.pos)  # type: ignore[arg-type]
        self.depth = depth
        return left

    def unary(self) -> Expr:
        if self.is_op("-") or self.is_op("+"):
            op = self.take()
            depth = self.depth
            self.nest(op.pos)
            try:
                return Unary(op.text, self.unary(), op.pos)  # type: ignore[arg-type]
            finally:
                self.depth = depth
        return self.primary()

    def primary(self) -> Expr:
        token = self.peek()
        if token.kind in ("number", "string"):
            self.take()
            return Constant(token.value, token.pos)
        if token.kind == "ident":
            self.take()
            if self.is_op("("):
                return self.call(token)
            if token.text in _WORDS:
                return Constant(_WORDS[token.text], token.pos)
            return Name(token.text, token.pos)
        if self.accept("("):
            inner = self.expr()
            self.expect(")", "to close the parenthesis")
            return inner
        if self.is_op("{"):
            return self.object()
        if self.is_op("["):
            self.take()
            return Array(tuple(self.items("]", "to close the array")), token.pos)
        self.unexpected("a value (a number, a string, a function call, {...} or [...])")

    def object(self) -> Object:
        start = self.take()
        items: list[tuple[str, Expr]] = []
        seen: set[str] = set()
        while not self.is_op("}"):
            key = self.peek()
            if key.kind not in ("ident", "string", "number"):
                self.unexpected("a key (a name or a quoted string) or } in the object")
            self.take()
            if key.text in seen:
                raise TqlError(f"the key {key.text!r} appears twice in this object", key.pos)
            seen.add(key.text)
            self.expect(":", f"after the key {key.text!r}")
            items.append((key.text, self.expr()))
            if not self.accept(","):
                break
        self.expect("}", "to close the object (or a comma between its entries)")
        return Object(tuple(items), start.pos)


def _describe(token: _Token) -> str:
    if token.kind == "string":
        return f"the string {token.text!r}"
    if token.kind == "number":
        return f"the number {token.text}"
    return token.text
