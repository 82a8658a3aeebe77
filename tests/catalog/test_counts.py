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
