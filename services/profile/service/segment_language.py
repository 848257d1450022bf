"""The segment filter language: a hand-written tokenizer and recursive-descent parser
that compiles an expression into a predicate over a customer's view (no ``eval``).

Grammar (keywords are case-insensitive)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison | recency
    comparison := FIELD OP VALUE          OP: = != < <= > >=
    recency    := ("last_purchase_before" | "last_purchase_within") DURATION
    VALUE      := NUMBER | "quoted string" | bare word (e.g. Gold)
    DURATION   := NUMBER ("d" | "h" | "days" | "hours"), e.g. 60d or 60 days

Fields: tier, churn_band, language, preferred_channel (text); churn_risk,
order_count, total_spend, points_balance, last_nps, open_complaints (numbers).
A comparison with a field the customer has no value for is false.
``last_purchase_before 60d``: the last purchase is more than 60 days ago (a customer
who never bought is not matched); ``last_purchase_within 7d``: within the last 7 days.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

TEXT_FIELDS = frozenset({"tier", "churn_band", "language", "preferred_channel"})
NUMBER_FIELDS = frozenset(
    {"churn_risk", "order_count", "total_spend", "points_balance", "last_nps", "open_complaints"}
)
RECENCY = frozenset({"last_purchase_before", "last_purchase_within"})
UNITS = {"d": 24.0, "day": 24.0, "days": 24.0, "h": 1.0, "hour": 1.0, "hours": 1.0}
MAX_DAYS = 36_525  # a hundred years: any longer would overflow the clock arithmetic
TOKEN = re.compile(
    r'\s*(?:(?P<op><=|>=|!=|=|<|>)|(?P<paren>[()])|"(?P<str>[^"]*)"'
    r"|(?P<num>\d+(?:\.\d+)?)(?P<unit>[a-z]+)?\b|(?P<word>[A-Za-z_][A-Za-z0-9_\-]*))",
)
MAX_LENGTH = 1000

Facts = Mapping[str, Any]
Predicate = Callable[[Facts, datetime], bool]


class SegmentSyntaxError(ValueError):
    """The expression is not in the filter language; the message says where."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # op, paren, str, num, word
    text: str
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Compiled:
    predicate: Predicate
    time_based: bool


def tokenize(source: str) -> list[Token]:
    if len(source) > MAX_LENGTH:
        raise SegmentSyntaxError(f"expression longer than {MAX_LENGTH} characters")
    tokens, pos = [], 0
    while pos < len(source.rstrip()):
        match = TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise SegmentSyntaxError(f"unexpected character at {pos}: {source[pos : pos + 10]!r}")
        kind = next(k for k in ("op", "paren", "str", "num", "word") if match[k] is not None)
        tokens.append(Token(kind, match[kind], match["unit"]))
        pos = match.end()
    return tokens


def compile_expression(source: str) -> Compiled:
    parser = _Parser(tokenize(source))
    predicate = parser.expression()
    if parser.peek() is not None:
        raise SegmentSyntaxError(f"unexpected {parser.peek().text!r} after the expression")  # type: ignore[union-attr]
    return Compiled(predicate, parser.time_based)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens, self.pos, self.time_based = tokens, 0, False

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, what: str = "a value") -> Token:
        token = self.peek()
        if token is None:
            raise SegmentSyntaxError(f"expected {what} at the end of the expression")
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() == word:
            self.pos += 1
            return True
        return False

    def expression(self) -> Predicate:
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda f, now: any(p(f, now) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda f, now: all(p(f, now) for p in parts))

    def unary(self) -> Predicate:
        if self.keyword("not"):
            inner = self.unary()
            return lambda f, now: not inner(f, now)
        token = self.take("a condition")
        if token.kind == "paren" and token.text == "(":
            inner = self.expression()
            closing = self.take("')'")
            if closing.text != ")":
                raise SegmentSyntaxError(f"expected ')' but found {closing.text!r}")
            return inner
        if token.kind == "word" and token.text.lower() in RECENCY:
            return self.recency(token.text.lower())
        if token.kind == "word":
            return self.comparison(token.text.lower())
        raise SegmentSyntaxError(f"expected a field name but found {token.text!r}")

    def recency(self, which: str) -> Predicate:
        self.time_based = True
        span = self.duration()
        if which == "last_purchase_before":
            return lambda f, now: (
                f.get("last_purchase_at") is not None and f["last_purchase_at"] < now - span
            )
        return lambda f, now: (
            f.get("last_purchase_at") is not None and f["last_purchase_at"] >= now - span
        )

    def duration(self) -> timedelta:
        token = self.take("a duration such as 60d")
        unit = token.unit
        if token.kind == "num" and unit is None and (nxt := self.peek()) and nxt.kind == "word":
            unit = self.take().text.lower()
        if token.kind != "num" or unit not in UNITS:
            raise SegmentSyntaxError(f"expected a duration such as 60d, found {token.text!r}")
        hours = float(token.text) * UNITS[unit]
        if hours > MAX_DAYS * 24:
            raise SegmentSyntaxError(f"a duration of at most {MAX_DAYS} days, not {token.text!r}")
        return timedelta(hours=hours)

    def comparison(self, field: str) -> Predicate:
        if field not in TEXT_FIELDS | NUMBER_FIELDS:
            known = ", ".join(sorted(TEXT_FIELDS | NUMBER_FIELDS | RECENCY))
            raise SegmentSyntaxError(f"unknown field {field!r} (known: {known})")
        op = self.take("an operator")
        if op.kind != "op":
            raise SegmentSyntaxError(f"expected an operator after {field!r}, found {op.text!r}")
        value = self._value(field, self.take())
        return _compare(field, op.text, value)

    def _value(self, field: str, token: Token) -> Any:
        if field in TEXT_FIELDS:
            if token.kind not in ("str", "word"):
                raise SegmentSyntaxError(f"{field} takes text, found {token.text!r}")
            return token.text
        if token.kind != "num" or token.unit is not None:
            raise SegmentSyntaxError(f"{field} takes a number, found {token.text!r}")
        try:
            return Decimal(token.text)
        except InvalidOperation as exc:
            raise SegmentSyntaxError(f"bad number {token.text!r}") from exc


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(field: str, op: str, value: Any) -> Predicate:
    test = COMPARE[op]
    numeric = field in NUMBER_FIELDS

    def predicate(facts: Facts, _now: datetime) -> bool:
        held = facts.get(field)
        if held is None:
            return False
        return test(Decimal(str(held)) if numeric else held, value)

    return predicate
