"""numberMatched: exact up to the count limit, left out past it (ADR 0002)."""

from __future__ import annotations

from pathlib import Path

from eoshare.catalog import SearchQuery
from eoshare.catalog.sqlite import SqliteCatalog


def _catalog(tmp_path: Path, n: int, count_limit: int) -> SqliteCatalog:
    catalog = SqliteCatalog(tmp_path / "c.db", count_limit=count_limit)
    catalog.create_collection(
        {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": "c",
            "description": "d",
            "license": "CC0-1.0",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [],
        }
    )
    catalog.upsert_items(
        {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": f"i{k:03d}",
            "collection": "c",
            "geometry": {"type": "Point", "coordinates": [k % 90, 0]},
            "properties": {"datetime": f"2020-01-{1 + k % 28:02d}T00:00:00Z", "n": k},
            "links": [],
            "assets": {},
        }
        for k in range(n)
    )
    return catalog


def test_counts_are_exact_under_the_limit(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, 40, count_limit=100)
    page = catalog.search(SearchQuery(limit=3, offset=6))
    assert page.number_matched == 40
    assert len(page.items) == 3 and page.next_offset == 9 and page.prev_offset == 3


def test_counts_past_the_limit_are_left_out(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, 40, count_limit=10)
    assert catalog.search(SearchQuery(limit=3)).number_matched is None
    # a page that holds every match needs no count, whatever the limit
    assert catalog.search(SearchQuery(limit=50)).number_matched == 40
    # a filter that matches fewer than the limit is counted exactly
    few = {"op": "<", "args": [{"property": "n"}, 7]}
    assert catalog.search(SearchQuery(limit=2, filter=few)).number_matched == 7


def _collection(cid: str) -> dict[str, object]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": "d",
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def _point(cid: str, k: int) -> dict[str, object]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"{cid}-{k}",
        "collection": cid,
        "geometry": {"type": "Point", "coordinates": [k % 90, 1]},
        "properties": {"datetime": f"20{10 + k % 15:02d}-06-01T00:00:00Z"},
        "links": [],
        "assets": {},
    }


def test_paging_counts_follow_every_write(tmp_path: Path) -> None:
    """Counts of collection-only searches come from kept per-collection counts; they
    must equal a count of what is really there after inserts, updates and deletes."""
    catalog = SqliteCatalog(tmp_path / "c.db")
    for cid in ("a", "b", "c"):
        catalog.create_collection(_collection(cid))
    catalog.upsert_items([_point(cid, k) for cid in ("a", "b", "c") for k in range(30)])
    catalog.upsert_items([_point("a", k) for k in range(10)], on_conflict="update")
    catalog.upsert_items([_point("b", k) for k in range(25, 35)], on_conflict="skip")
    catalog.delete_item("a", "a-3")
    catalog.delete_collection("c")

    present = [(i["collection"], i["properties"]["datetime"]) for i in catalog.iter_items()]
    cutoff = "2018-01-01T00:00:00Z"
    embargo_b = {  # all of a, and the items of b acquired before the cut-off
        "op": "or",
        "args": [
            {"op": "=", "args": [{"property": "collection"}, "a"]},
            {
                "op": "and",
                "args": [
                    {"op": "=", "args": [{"property": "collection"}, "b"]},
                    {"op": "<=", "args": [{"property": "datetime"}, {"timestamp": cutoff}]},
                ],
            },
        ],
    }
    cases = [
        (None, (), lambda c, d: True),
        (None, ("b",), lambda c, d: c == "b"),
        (embargo_b, (), lambda c, d: c == "a" or (c == "b" and d <= cutoff)),
        (embargo_b, ("b",), lambda c, d: c == "b" and d <= cutoff),
        (embargo_b, ("c",), lambda c, d: False),
    ]
    for visible, collections, rule in cases:
        expected = sum(
            1 for c, d in present if (not collections or c in collections) and rule(c, d)
        )
        page = catalog.search(
            SearchQuery(collections=collections, visible=visible, limit=2, offset=2)
        )
        assert page.number_matched == expected, (visible, collections)
    reopened = SqliteCatalog(tmp_path / "c.db")  # counts persist with the file
    assert reopened.search(SearchQuery(limit=1, offset=1)).number_matched == len(present)


def _no_separate_count(catalog: SqliteCatalog) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("counted in a second query")

    catalog._count = refuse  # type: ignore[method-assign]


def test_few_candidates_are_paged_and_counted_in_one_pass(tmp_path: Path) -> None:
    """A box (or ids) whose index candidates are few: the page and an exact numberMatched
    come from one read of every match, not from a page and then a count."""
    catalog = _catalog(tmp_path, 40, count_limit=100)
    _no_separate_count(catalog)
    # points at x = k % 90, y = 0: the box [4.5, 20.5] holds k = 5..20 (16 items)
    box = (4.5, -1.0, 20.5, 1.0)
    everything = catalog.search(SearchQuery(bbox=box, limit=100)).items
    assert len(everything) == 16
    ordered = [i["id"] for i in everything]
    for offset in (0, 3, 15):
        page = catalog.search(SearchQuery(bbox=box, limit=3, offset=offset))
        assert page.number_matched == 16
        assert [i["id"] for i in page.items] == ordered[offset : offset + 3]
        assert page.next_offset == (offset + 3 if offset + 3 < 16 else None)
    ids = ("i001", "i002", "i003", "i039", "nope")
    page = catalog.search(SearchQuery(ids=ids, collections=("c",), limit=2, offset=1))
    assert page.number_matched == 4 and len(page.items) == 2
    # the visibility filter applies inside the one pass as well
    only_early = {
        "op": "<",
        "args": [{"property": "datetime"}, {"timestamp": "2020-01-10T00:00:00Z"}],
    }
    page = catalog.search(SearchQuery(bbox=box, limit=3, visible=only_early))
    expected = sum(1 for k in range(5, 21) if 1 + k % 28 < 10)
    assert page.number_matched == expected
    # past the count limit the count is left out, never wrong
    small = SqliteCatalog(tmp_path / "c.db", count_limit=10)
    assert small.search(SearchQuery(bbox=box, limit=3)).number_matched is None


def test_ids_with_collections_use_the_id_index(tmp_path: Path) -> None:
    """5 ids with collections: SQLite must look the ids up, not scan the collection along
    its (collection, datetime) index (484 ms against 4 ms at 100k items)."""
    catalog = _catalog(tmp_path, 40, count_limit=100)
    with catalog._use() as conn:
        conn.execute("ANALYZE")
        query = SearchQuery(ids=("i001", "i002"), collections=("c",), limit=10)
        where, params = catalog._where(query)
        order, order_params = catalog._order(query.sortby, query)
        plan = " ".join(
            str(row[3])
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT rowid FROM items WHERE {where} ORDER BY {order}",
                [*params, *order_params],
            )
        )
    assert "items_id" in plan, plan
