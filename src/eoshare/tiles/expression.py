"""Band-math expressions (NDVI, NDWI...) parsed by a small grammar and evaluated on
numpy arrays: never Python ``eval``, never numexpr on raw input.

The grammar, one output band per ``;``-separated expression::

    expression := sum (";" sum)*
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := ("+" | "-") unary | power
    power      := atom ("**" unary)?
    atom       := NUMBER | NAME | FUNCTION "(" sum ("," sum)* ")" | "(" sum ")"

``NAME`` is a band reference (``B04``, ``b1``, ``TCI_b2``, ``nir``...) that the caller
resolves against an item (see ``eoshare.tiles.render``); ``FUNCTION`` is one of
:data:`FUNCTIONS`. Anything else is an ``InvalidRequestError`` naming the position.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from eoshare.errors import InvalidRequestError

Array = npt.NDArray[np.float64]

# name -> (number of arguments, implementation on float64 arrays)
FUNCTIONS: dict[str, tuple[int, Callable[..., Array]]] = {
    "abs": (1, np.abs),
    "sqrt": (1, np.sqrt),
    "log": (1, np.log),
    "log10": (1, np.log10),
    "exp": (1, np.exp),
    "min": (2, np.minimum),
    "max": (2, np.maximum),
    "clip": (3, np.clip),
}
_MAX_DEPTH = 32
_MAX_NODES = 200
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/(),;]))"
)


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Unary:
    op: str
    arg: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]


Node = Num | Name | Unary | Binary | Call


@dataclass(frozen=True)
class Expression:
    """A parsed expression: one tree per output band, and the text it came from."""

    text: str
    bands: tuple[Node, ...]

    @property
    def names(self) -> list[str]:
        """Every band name used, in order of first appearance."""
        seen: dict[str, None] = {}
        for tree in self.bands:
            _collect(tree, seen)
        return list(seen)

    def evaluate(
        self, values: Mapping[str, np.ma.MaskedArray], shape: tuple[int, ...]
    ) -> list[np.ma.MaskedArray]:
        """Evaluate every band on masked arrays (one per name, all of ``shape``).

        A pixel is masked in the result where any input used is masked or where the
        arithmetic is undefined (x/0, log of a negative...)."""
        out = []
        for tree in self.bands:
            with np.errstate(all="ignore"):
                raw = _eval(tree, values)
                if np.ndim(raw) == 0:  # a constant band
                    arr = np.ma.masked_array(np.full(shape, float(raw)))
                else:
                    arr = np.ma.asarray(raw, dtype=np.float64)
                data = np.ma.getdata(arr)
                mask = np.ma.getmaskarray(arr) | ~np.isfinite(data)
            out.append(np.ma.masked_array(data, mask=mask))
        return out


def _collect(node: Node, seen: dict[str, None]) -> None:
    if isinstance(node, Name):
        seen.setdefault(node.id)
    elif isinstance(node, Unary):
        _collect(node.arg, seen)
    elif isinstance(node, Binary):
        _collect(node.left, seen)
        _collect(node.right, seen)
    elif isinstance(node, Call):
        for arg in node.args:
            _collect(arg, seen)


def _eval(node: Node, values: Mapping[str, np.ma.MaskedArray]) -> Any:
    """A masked array (or a plain number for constant sub-trees)."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Name):
        return values[node.id].astype(np.float64)
    if isinstance(node, Unary):
        arg = _eval(node.arg, values)
        return -arg if node.op == "-" else arg
    if isinstance(node, Binary):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        if node.op == "/":
            return np.ma.true_divide(left, right)
        return np.ma.power(left, right)  # type: ignore[no-untyped-call]
    _, func = FUNCTIONS[node.func]
    return func(*(_eval(a, values) for a in node.args))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                bad = text[pos:].lstrip()[:1]
                at = len(text) - len(text[pos:].lstrip())
                raise InvalidRequestError(
                    f"expression {text!r}: unexpected character {bad!r} at position {at + 1}"
                )
            kind = m.lastgroup or "op"
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0
        self.nodes = 0

    def fail(self, what: str) -> InvalidRequestError:
        if self.i < len(self.tokens):
            _, value, at = self.tokens[self.i]
            return InvalidRequestError(
                f"expression {self.text!r}: {what}, found {value!r} at position {at + 1}"
            )
        return InvalidRequestError(f"expression {self.text!r}: {what} at the end")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def node(self, n: Node) -> Node:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise InvalidRequestError(
                f"expression {self.text!r} is too complex (over {_MAX_NODES} terms)"
            )
        return n

    def parse(self) -> Expression:
        if not self.tokens:
            raise InvalidRequestError("the expression is empty")
        bands = [self.sum(0)]
        while self.peek() == ";":
            self.take()
            if self.peek() is None:  # a trailing ';' is harmless
                break
            bands.append(self.sum(0))
        if self.i != len(self.tokens):
            raise self.fail("expected an operator or the end")
        return Expression(self.text, tuple(bands))

    def sum(self, depth: int) -> Node:
        if depth > _MAX_DEPTH:
            raise InvalidRequestError(f"expression {self.text!r} is nested too deeply")
        left = self.product(depth)
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            left = self.node(Binary(op, left, self.product(depth)))
        return left

    def product(self, depth: int) -> Node:
        left = self.unary(depth)
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            left = self.node(Binary(op, left, self.unary(depth)))
        return left

    def unary(self, depth: int) -> Node:
        if depth > _MAX_DEPTH:
            raise InvalidRequestError(f"expression {self.text!r} is nested too deeply")
        if self.peek() in ("+", "-"):
            op = self.take()[1]
            return self.node(Unary(op, self.unary(depth + 1)))
        base = self.atom(depth)
        if self.peek() == "**":
            self.take()
            return self.node(Binary("**", base, self.unary(depth + 1)))
        return base

    def atom(self, depth: int) -> Node:
        if self.i >= len(self.tokens):
            raise self.fail("expected a number, a band name or '('")
        kind, value, _ = self.tokens[self.i]
        if kind == "num":
            self.take()
            return self.node(Num(float(value)))
        if kind == "name":
            self.take()
            if self.peek() == "(":
                return self.call(value, depth)
            return self.node(Name(value))
        if value == "(":
            self.take()
            inner = self.sum(depth + 1)
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.take()
            return inner
        raise self.fail("expected a number, a band name or '('")

    def call(self, func: str, depth: int) -> Node:
        if func not in FUNCTIONS:
            raise InvalidRequestError(
                f"expression {self.text!r}: unknown function {func!r}; "
                f"known: {', '.join(sorted(FUNCTIONS))}"
            )
        self.take()  # (
        args = [self.sum(depth + 1)]
        while self.peek() == ",":
            self.take()
            args.append(self.sum(depth + 1))
        if self.peek() != ")":
            raise self.fail("expected ',' or ')'")
        self.take()
        arity = FUNCTIONS[func][0]
        if len(args) != arity:
            raise InvalidRequestError(
                f"expression {self.text!r}: {func}() takes {arity} argument(s), not {len(args)}"
            )
        return self.node(Call(func, tuple(args)))


def parse_expression(text: str, *, max_chars: int = 512) -> Expression:
    """Parse a band-math expression; raises ``InvalidRequestError`` with the position of
    the first problem. Function names are not band names."""
    if len(text) > max_chars:
        raise InvalidRequestError(f"the expression is longer than {max_chars} characters")
    expr = _Parser(text).parse()
    clash = [n for n in expr.names if n in FUNCTIONS]
    if clash:
        raise InvalidRequestError(
            f"expression {text!r}: {clash[0]!r} is a function; call it as {clash[0]}(...)"
        )
    return expr
