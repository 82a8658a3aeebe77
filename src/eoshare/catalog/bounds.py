"""Bounds on what one request may ask the catalogue to parse: filter nesting, filter
length, geometry vertices. Checked in plain Python *before* the CQL2 parser or shapely
see the input, because past some depth the parser overflows the native stack (the whole
server process dies, not one request) and a polygon of a million vertices keeps a worker
busy for seconds.

The checks are deliberately cheap and conservative (linear, no recursion): a refusal is a
400 problem naming the limit and its setting (``EOSHARE_SECURITY__*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eoshare.errors import InvalidFilterError, InvalidRequestError


@dataclass(frozen=True)
class InputBounds:
    """Read once from ``Settings.security``; passed to ``build_query``."""

    max_filter_depth: int = 32
    max_filter_chars: int = 256 * 1024
    max_geometry_vertices: int = 100_000

    @classmethod
    def from_settings(cls, security: Any) -> InputBounds:
        return cls(
            max_filter_depth=security.max_filter_depth,
            max_filter_chars=security.max_filter_chars,
            max_geometry_vertices=security.max_geometry_vertices,
        )

    @property
    def max_json_depth(self) -> int:
        # one CQL2 level is two JSON levels ({"op", "args": [...]}); a geometry adds four
        return 2 * self.max_filter_depth + 8


DEFAULT_BOUNDS = InputBounds()
_UNARY_WORDS = ("NOT",)


def check_filter_text(text: str, bounds: InputBounds = DEFAULT_BOUNDS) -> None:
    """Refuse CQL2 text that is too long or nests too deep: parentheses, and runs of prefix
    operators (``NOT NOT ...``, ``- - ...``), which the parser also handles by recursion.
    Characters inside 'string literals' and "quoted identifiers" do not count. CQL2 JSON
    sent as text is bounded the same way ({ and [ levels) before it is parsed."""
    if len(text) > bounds.max_filter_chars:
        raise InvalidFilterError(
            f"the filter is {len(text)} characters long, over the limit of "
            f"{bounds.max_filter_chars} (EOSHARE_SECURITY__MAX_FILTER_CHARS)"
        )
    limit = bounds.max_filter_depth
    depth = deepest = 0
    brackets = deepest_brackets = 0  # CQL2 JSON given as text: {"op": ..., "args": [...]}
    unary = longest_unary = 0
    quote: str | None = None
    i, n = 0, len(text)
    upper = text.upper()
    while i < n:
        c = text[i]
        if quote is not None:
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "'\"":
            quote = c
            unary = 0
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth = max(0, depth - 1)
            unary = 0
        elif c in "[{":
            brackets += 1
            deepest_brackets = max(deepest_brackets, brackets)
        elif c in "]}":
            brackets = max(0, brackets - 1)
            unary = 0
        elif c in "+-":
            unary += 1
            longest_unary = max(longest_unary, unary)
        elif c.isspace():
            pass
        elif upper.startswith(_UNARY_WORDS, i) and (i + 3 >= n or not text[i + 3].isalnum()):
            unary += 1
            longest_unary = max(longest_unary, unary)
            i += 3
            continue
        else:
            unary = 0
        i += 1
    if deepest_brackets > bounds.max_json_depth:
        raise InvalidFilterError(
            f"the filter nests more than {bounds.max_json_depth} JSON levels deep "
            "(EOSHARE_SECURITY__MAX_FILTER_DEPTH)"
        )
    if deepest > limit or longest_unary > limit:
        raise InvalidFilterError(
            f"the filter nests {max(deepest, longest_unary)} levels deep, over the limit of "
            f"{limit} (EOSHARE_SECURITY__MAX_FILTER_DEPTH)"
        )


def check_json(value: Any, bounds: InputBounds = DEFAULT_BOUNDS, *, what: str = "filter") -> None:
    """Refuse a JSON value (a CQL2 JSON filter, a GeoJSON geometry) that nests deeper than
    the bound or holds more positions ([x, y] pairs) than ``max_geometry_vertices``.
    Iterative: a value nested 100,000 deep is refused, not a RecursionError."""
    max_depth = bounds.max_json_depth
    vertices = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            setting = "MAX_FILTER_DEPTH" if what == "filter" else "MAX_FILTER_DEPTH (x2 + 8)"
            raise InvalidRequestError(
                f"the {what} nests more than {max_depth} JSON levels deep "
                f"(EOSHARE_SECURITY__{setting})"
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            if node and _is_position(node[0]):
                # a ring or a line: count its positions at once, without walking them
                vertices += len(node)
            elif _is_position(node):
                vertices += 1
            else:
                stack.extend((v, depth + 1) for v in node)
                continue
            if vertices > bounds.max_geometry_vertices:
                raise InvalidRequestError(
                    f"the {what} has more than {bounds.max_geometry_vertices} vertices "
                    "(EOSHARE_SECURITY__MAX_GEOMETRY_VERTICES); simplify the geometry"
                )


def _is_position(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], int | float)
        and not isinstance(value[0], bool)
    )
