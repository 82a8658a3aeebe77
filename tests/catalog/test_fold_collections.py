"""fold_collections: what a visibility filter says about collections, decided before SQL.

Checked against a direct evaluation of the filter for every collection of the search."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eoshare.catalog.cql2filter import fold_collections

NAMES = ["a", "b", "c", "d"]
OPAQUE = {"op": "<=", "args": [{"property": "datetime"}, {"timestamp": "2025-01-01T00:00:00Z"}]}


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    prop = {"property": "collection"}
    return st.one_of(
        st.sampled_from(NAMES).map(lambda n: {"op": "=", "args": [prop, n]}),
        st.sampled_from(NAMES).map(lambda n: {"op": "=", "args": [n, prop]}),
        st.sampled_from(NAMES).map(lambda n: {"op": "<>", "args": [prop, n]}),
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(
            lambda ns: {"op": "in", "args": [prop, ns]}
        ),
        st.just(OPAQUE),
    )


EXPRS = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        inner.map(lambda e: {"op": "not", "args": [e]}),
        st.lists(inner, min_size=1, max_size=3).map(lambda es: {"op": "and", "args": es}),
        st.lists(inner, min_size=1, max_size=3).map(lambda es: {"op": "or", "args": es}),
    ),
    max_leaves=8,
)


def evaluate(expr: Any, collection: str, opaque: bool) -> bool:
    """The filter's truth for an item of ``collection`` (OPAQUE's truth given)."""
    if isinstance(expr, bool):
        return expr
    if expr == OPAQUE:
        return opaque
    op, args = expr["op"], expr["args"]
    if op == "and":
        return all(evaluate(a, collection, opaque) for a in args)
    if op == "or":
        return any(evaluate(a, collection, opaque) for a in args)
    if op == "not":
        return not evaluate(args[0], collection, opaque)
    value = next(a for a in args if not (isinstance(a, dict) and "property" in a))
    if op == "=":
        return collection == value
    if op == "<>":
        return collection != value
    assert op == "in"
    return collection in value


@settings(max_examples=400, deadline=None)
@given(EXPRS, st.sets(st.sampled_from(NAMES), min_size=1))
def test_folding_keeps_the_meaning(expr: dict[str, Any], collections: set[str]) -> None:
    folded = fold_collections(expr, frozenset(collections))
    for collection in collections:
        for opaque in (True, False):
            assert evaluate(folded, collection, opaque) == evaluate(expr, collection, opaque)


def test_a_search_of_open_collections_drops_the_filter() -> None:
    hidden = {"op": "in", "args": [{"property": "collection"}, ["secret", "embargoed"]]}
    visible = {
        "op": "or",
        "args": [
            {"op": "not", "args": [hidden]},
            {
                "op": "and",
                "args": [{"op": "=", "args": [{"property": "collection"}, "embargoed"]}, OPAQUE],
            },
        ],
    }
    assert fold_collections(visible, frozenset({"open-one"})) is True
    assert fold_collections(visible, frozenset({"secret"})) is False
    assert fold_collections(visible, frozenset({"embargoed"})) == OPAQUE
    # nothing known about the collection: the filter stays whole
    assert fold_collections(visible, frozenset()) == visible
