"""CQL2 in, CQL2 JSON out: parsing and checking that does not depend on a backend.

The API accepts CQL2 text and CQL2 JSON (the filter extension) and the older STAC
``query`` extension; all three become one CQL2 JSON expression, which each backend
translates into its own query language (``sqlite_filter`` for SQLite).
"""

from __future__ import annotations

import json
from typing import Any

import cql2

from eoshare.errors import InvalidFilterError

JSON = dict[str, Any]


def parse_filter(value: str | JSON, lang: str | None = None) -> JSON:
    """Parse a filter given as CQL2 text or CQL2 JSON (a dict or a JSON string)."""
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidFilterError(
            f"filter-lang {lang!r} is not supported; use cql2-text or cql2-json"
        )
    try:
        if isinstance(value, dict):
            expr = cql2.parse_json(json.dumps(value))
        elif lang == "cql2-json" or (lang is None and value.lstrip().startswith("{")):
            expr = cql2.parse_json(value)
        else:
            expr = cql2.parse_text(value)
        result = expr.to_json()
    except (cql2.ParseError, cql2.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first if line.strip())[:500]
        raise InvalidFilterError(f"the filter is not valid CQL2: {detail}") from exc
    if not isinstance(result, dict):
        # a bare literal such as `true`
        if isinstance(result, bool):
            return {"op": "=", "args": [result, True]}
        raise InvalidFilterError("the filter must be a boolean expression")
    return result


_QUERY_OPS = {
    "eq": "=",
    "neq": "<>",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
}


def query_to_cql2(query: Any) -> JSON | None:
    """Translate the STAC query extension ({"eo:cloud_cover": {"lt": 10}}) into CQL2 JSON."""
    if query is None:
        return None
    if isinstance(query, str):
        try:
            query = json.loads(query)
        except ValueError as exc:
            raise InvalidFilterError(f"query is not valid JSON: {exc}") from exc
    if not isinstance(query, dict):
        raise InvalidFilterError('query must be an object such as {"eo:cloud_cover": {"lt": 10}}')
    terms: list[JSON] = []
    for name, ops in query.items():
        if not isinstance(ops, dict) or not ops:
            raise InvalidFilterError(
                f'query: {name!r} must map operators to values, e.g. {{"lt": 10}}'
            )
        prop = {"property": name}
        for op, value in ops.items():
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
