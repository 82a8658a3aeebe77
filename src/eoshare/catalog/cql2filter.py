"""CQL2 in, CQL2 JSON out: parsing and checking that does not depend on a backend.

The API accepts CQL2 text and CQL2 JSON (the filter extension) and the older STAC
``query`` extension; all three become one CQL2 JSON expression, which each backend
translates into its own query language (``sqlite_filter`` for SQLite).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import cql2

from eoshare.catalog.bounds import DEFAULT_BOUNDS, InputBounds, check_filter_text, check_json
from eoshare.errors import InvalidFilterError, InvalidRequestError

JSON = dict[str, Any]


def parse_filter(
    value: str | JSON, lang: str | None = None, bounds: InputBounds = DEFAULT_BOUNDS
) -> JSON:
    """Parse a filter given as CQL2 text or CQL2 JSON (a dict or a JSON string).

    Its length, nesting and vertices are bounded first (``eoshare.catalog.bounds``): the
    parser recurses natively, and a deep enough filter would crash the process."""
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidFilterError(
            f"filter-lang {lang!r} is not supported; use cql2-text or cql2-json"
        )
    try:
        if isinstance(value, str):
            check_filter_text(value, bounds)
            if lang == "cql2-json" or (lang is None and value.lstrip().startswith("{")):
                value = json.loads(value)
        if isinstance(value, dict):
            check_json(value, bounds)
            expr = cql2.parse_json(json.dumps(_legacy_between(value)))
        elif isinstance(value, str):
            expr = cql2.parse_text(value)
        else:
            raise InvalidFilterError("the filter must be CQL2 text or a CQL2 JSON object")
        result = expr.to_json()
        check_json(result, bounds)  # the vertices of WKT literals in CQL2 text
    except RecursionError as exc:
        raise InvalidFilterError(
            "the filter nests too deep (EOSHARE_SECURITY__MAX_FILTER_DEPTH)"
        ) from exc
    except (cql2.ParseError, cql2.ValidationError, ValueError) as exc:
        if isinstance(exc, InvalidRequestError):
            raise
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first if line.strip())[:500]
        raise InvalidFilterError(f"the filter is not valid CQL2: {detail}") from exc
    if not isinstance(result, dict):
        # a bare literal such as `true`
        if isinstance(result, bool):
            return {"op": "=", "args": [result, True]}
        raise InvalidFilterError("the filter must be a boolean expression")
    return result


def _legacy_between(expr: Any) -> Any:
    """Drafts of CQL2 JSON wrote ``between`` as ``[property, [low, high]]``; STAC API
    validators and older clients still send it. Rewrite it to ``[property, low, high]``."""
    if isinstance(expr, list):
        return [_legacy_between(x) for x in expr]
    if not isinstance(expr, dict):
        return expr
    out = {k: _legacy_between(v) for k, v in expr.items()}
    args = out.get("args")
    if (
        str(out.get("op", "")).lower() == "between"
        and isinstance(args, list)
        and len(args) == 2
        and isinstance(args[1], list)
        and len(args[1]) == 2
    ):
        out["args"] = [args[0], *args[1]]
    return out


_QUERY_OPS = {
    "eq": "=",
    "neq": "<>",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
}


def parse_query(query: Any) -> JSON | None:
    """The STAC query extension's object, from a body or a GET parameter (JSON text),
    checked: raises InvalidFilterError for anything query_to_cql2 would refuse."""
    if query is None or query == "":
        return None
    if isinstance(query, str):
        try:
            query = json.loads(query)
        except ValueError as exc:
            raise InvalidFilterError(f"query is not valid JSON: {exc}") from exc
    if not isinstance(query, dict):
        raise InvalidFilterError('query must be an object such as {"eo:cloud_cover": {"lt": 10}}')
    query_to_cql2(query)
    return query


def _number(value: Any) -> Any:
    """A query-extension operand written as text ("55.13") for a numeric property."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def query_to_cql2(query: Any, numeric: Callable[[str], bool] | None = None) -> JSON | None:
    """Translate the STAC query extension ({"eo:cloud_cover": {"lt": 10}}) into CQL2 JSON.

    The query extension is loosely typed (its GET form and many clients send every value
    as text); ``numeric(name)`` says which properties hold numbers, so that their text
    operands compare as numbers rather than as strings."""
    if query is None:
        return None
    if isinstance(query, str):
        query = parse_query(query)
    if not isinstance(query, dict):
        raise InvalidFilterError('query must be an object such as {"eo:cloud_cover": {"lt": 10}}')
    terms: list[JSON] = []
    for name, ops in query.items():
        if not isinstance(ops, dict) or not ops:
            raise InvalidFilterError(
                f'query: {name!r} must map operators to values, e.g. {{"lt": 10}}'
            )
        prop = {"property": name}
        as_number = numeric is not None and numeric(name)
        for op, value in ops.items():
            if as_number:
                value = [_number(v) for v in value] if isinstance(value, list) else _number(value)
            if op in _QUERY_OPS:
                terms.append({"op": _QUERY_OPS[op], "args": [prop, value]})
            elif op in ("startsWith", "endsWith", "contains"):
                if not isinstance(value, str):
                    raise InvalidFilterError(f"query: {op} needs a string")
                esc = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                pattern = {"startsWith": f"{esc}%", "endsWith": f"%{esc}", "contains": f"%{esc}%"}
                terms.append({"op": "like", "args": [prop, pattern[op]]})
            elif op == "in":
                if not isinstance(value, list):
                    raise InvalidFilterError("query: 'in' needs an array")
                terms.append({"op": "in", "args": [prop, value]})
            else:
                raise InvalidFilterError(
                    f"query: unknown operator {op!r}; use eq, neq, lt, lte, gt, gte, "
                    "startsWith, endsWith, contains or in"
                )
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"op": "and", "args": terms}


def and_all(*exprs: JSON | None) -> JSON | None:
    """AND together the expressions that are not None."""
    present = [e for e in exprs if e is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"op": "and", "args": present}


def _collection_test(expr: JSON) -> tuple[str, set[str]] | None:
    """("=" | "<>" | "in", values) when ``expr`` compares the item's collection with
    literals; None otherwise."""
    op, args = expr.get("op"), expr.get("args")
    if not isinstance(args, list) or len(args) != 2:
        return None
    a, b = args
    if op in ("=", "<>", "!=") and isinstance(b, dict) and b.get("property") == "collection":
        a, b = b, a
    if not (isinstance(a, dict) and a.get("property") == "collection"):
        return None
    if op in ("=", "<>", "!=") and isinstance(b, str):
        return ("=" if op == "=" else "<>"), {b}
    if op == "in" and isinstance(b, list) and all(isinstance(v, str) for v in b):
        return "in", set(b)
    return None


def fold_collections(expr: Any, collections: frozenset[str]) -> Any:
    """Evaluate what a filter says about the item's collection, knowing that the item is
    in one of ``collections``: returns True, False, or a smaller expression.

    The access layer's visibility filter is mostly collection terms; a search already
    restricted to some collections usually makes it TRUE (nothing to test per row) or
    FALSE (nothing to read), which is what keeps enforcement nearly free."""
    if not collections or not isinstance(expr, dict):
        return expr
    test = _collection_test(expr)
    if test is not None:
        kind, values = test
        inside = collections <= values
        outside = not (collections & values)
        if kind in ("=", "in"):
            return True if inside else False if outside else expr
        return False if inside else True if outside else expr
    op, args = expr.get("op"), expr.get("args")
    if op in ("and", "or") and isinstance(args, list):
        absorbing = op == "or"  # True absorbs an OR, False absorbs an AND
        kept = []
        for arg in args:
            folded = fold_collections(arg, collections)
            if folded is absorbing:
                return absorbing
            if folded is not (not absorbing):
                kept.append(folded)
        if not kept:
            return not absorbing
        return kept[0] if len(kept) == 1 else {"op": op, "args": kept}
    if op == "not" and isinstance(args, list) and len(args) == 1:
        folded = fold_collections(args[0], collections)
        if isinstance(folded, bool):
            return not folded
        return {"op": "not", "args": [folded]}
    return expr
