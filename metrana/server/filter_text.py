"""A filter typed as text — ``config/lr >= 1e-3 and config/algo == "ppo" and return.last > 100``
— turned into the condition tree of :mod:`.store.filters` (which checks it against the project
and compiles it to SQL). The dashboard's filter box and ``fetch_runs(filter="...")`` send text;
the tree they get is the one ``metrana.query``'s ``AttrFilter``/``SeriesFilter`` build.

Grammar (keywords in any case)::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "(" expr ")" | comparison
    comparison := operand OP value | operand ("in" | "not in") "[" value ("," value)* "]"
                | operand "exists" | PATH "contains" "string"
    operand    := PATH               an attribute: config/lr, sys/name, sys/created, ...
                | METRIC "." FN      a series summary: loss.last, episode/return.mean
                | METRIC "@" SCALE "." FN      at a scale: return@EPISODE.last
    OP         := "==" | "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := NUMBER | "string" | 'string' | true | false
    FN         := last | min | max | mean | count

A name with spaces or other characters is written in backquotes: ```my metric`.last``.
A mistake is a :class:`~.errors.QueryError` saying what was expected where (column numbers
from 1), which the dashboard shows under the box.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import QueryError
from .store.filters import FUNCTIONS

__all__ = ["MAX_FILTER_TEXT", "parse_filter"]

MAX_FILTER_TEXT = 10_000
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w/]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]+`(?:@[A-Za-z_]+)?(?:\.[A-Za-z]+)?)
  | (?P<op>==|!=|<=|>=|<|>|=)
  | (?P<punct>[()\[\],])
  | (?P<name>[A-Za-z_][\w./@:\-]*)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "exists", "contains", "true", "false"}


class _Token:
    __slots__ = ("column", "kind", "text")

    def __init__(self, kind: str, text: str, column: int) -> None:
        self.kind, self.text, self.column = kind, text, column

    def is_word(self, word: str) -> bool:
        return self.kind == "name" and self.text.lower() == word

    def describe(self) -> str:
        return "the end" if self.kind == "end" else repr(self.text)


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise QueryError(f"filter: unexpected {text[position]!r} at column {position + 1}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            out.append(_Token(kind, match.group(), position + 1))
        position = match.end()
    out.append(_Token("end", "", len(text) + 1))
    return out


def _series(name: str) -> tuple[dict[str, Any], str] | None:
    """``metric[@SCALE].fn`` as (series node, fn), or None when ``name`` is no summary."""
    stem, dot, fn = name.rpartition(".")
    if not dot or fn.lower() not in FUNCTIONS or not stem:
        return None
    metric, at, scale = stem.partition("@")
    if metric.startswith("`") and metric.endswith("`"):
        metric = metric[1:-1]
    node: dict[str, Any] = {"metric": metric}
    if at:
        node["scale"] = scale.upper()
    return node, fn.lower()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def fail(self, expected: str) -> QueryError:
        token = self.peek()
        return QueryError(f"filter: expected {expected} at column {token.column}, found "
                          f"{token.describe()}")

    def expression(self) -> dict[str, Any]:
        parts = [self.term()]
        while self.peek().is_word("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else {"or": parts}

    def term(self) -> dict[str, Any]:
        parts = [self.factor()]
        while self.peek().is_word("and"):
            self.take()
            parts.append(self.factor())
        flat: list[dict[str, Any]] = []
        for part in parts:  # (a and b) and c: one list
            flat.extend(part["and"] if list(part) == ["and"] else [part])
        return flat[0] if len(flat) == 1 else {"and": flat}

    def factor(self) -> dict[str, Any]:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.take()
            inner = self.expression()
            if not (self.peek().kind == "punct" and self.peek().text == ")"):
                raise self.fail("')'")
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> dict[str, Any]:
        token = self.peek()
        if token.kind not in ("name", "quoted") or token.text.lower() in _KEYWORDS:
            raise self.fail("a config key (config/lr), a run field (sys/name) or a metric "
                            "summary (loss.last)")
        self.take()
        summary = _series(token.text)
        if token.kind == "quoted" and summary is None:
            raise QueryError(f"filter: a quoted name at column {token.column} is a metric: "
                             "follow it with .last, .min, .max, .mean or .count")
        subject: dict[str, Any] = ({"series": summary[0]} if summary
                                   else {"attr": token.text})
        fn = {"fn": summary[1]} if summary else {}
        following = self.peek()
        if following.is_word("exists"):
            self.take()
            return {**subject, "op": "exists"}
        if following.is_word("contains"):  # sys/tags contains "baseline"
            self.take()
            return {**subject, **fn, "op": "contains", "value": self.value()}
        if following.is_word("in") or following.is_word("not"):
            self.take()
            op = "in"
            if following.is_word("not"):
                if not self.peek().is_word("in"):
                    raise self.fail("'in' after 'not'")
                self.take()
                op = "not_in"
            return {**subject, **fn, "op": op, "value": self.values()}
        if following.kind != "op":
            raise self.fail("a comparison (==, !=, <, <=, >, >=, in, not in, exists, contains)")
        self.take()
        op = "==" if following.text == "=" else following.text
        return {**subject, **fn, "op": op, "value": self.value()}

    def values(self) -> list[Any]:
        if not (self.peek().kind == "punct" and self.peek().text == "["):
            raise self.fail("'[' opening a list of values")
        self.take()
        out = [self.value()]
        while self.peek().kind == "punct" and self.peek().text == ",":
            self.take()
            out.append(self.value())
        if not (self.peek().kind == "punct" and self.peek().text == "]"):
            raise self.fail("',' or ']'")
        self.take()
        return out

    def value(self) -> Any:
        token = self.peek()
        if token.kind == "number":
            self.take()
            number = float(token.text)
            if re.fullmatch(r"[-+]?\d+", token.text):
                return int(token.text)
            return number
        if token.kind == "string":
            self.take()
            body = token.text[1:-1]
            if token.text[0] == "'":
                body = body.replace('\\"', '"').replace('"', '\\"').replace("\\'", "'")
            try:
                decoded: str = json.loads(f'"{body}"')
            except ValueError:
                raise QueryError(f"filter: a string at column {token.column} has a bad escape"
                                 ) from None
            return decoded
        if token.is_word("true") or token.is_word("false"):
            self.take()
            return token.text.lower() == "true"
        raise self.fail('a value (a number, "a string", true or false)')


def parse_filter(text: str) -> dict[str, Any] | None:
    """The condition tree of a filter typed as text; None for blank text."""
    if len(text) > MAX_FILTER_TEXT:
        raise QueryError(f"filter: at most {MAX_FILTER_TEXT:,} characters")
    if not text.strip():
        return None
    parser = _Parser(text)
    tree = parser.expression()
    if parser.peek().kind != "end":
        raise parser.fail("'and', 'or' or the end")
    return tree
