"""The SQLite catalogue upgrades a file written by an older schema in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eoshare.catalog import SearchQuery, open_catalog
from eoshare.catalog.validate import parse_datetime


def _item(iid: str, west: float, east: float, when: str) -> dict[str, object]:
    ring = [[west, -1.0], [east, -1.0], [east, 1.0], [west, 1.0], [west, -1.0]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": iid,
        "collection": "c",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"datetime": when},
        "links": [],
        "assets": {},
    }


def test_version_1_file_gets_a_datetime_rtree(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    catalog = open_catalog(f"sqlite:///{db}")
    catalog.create_collection(
        {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": "c",
            "description": "d",
            "license": "CC-BY-4.0",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [],
        }
    )
    # one item crossing the antimeridian (a jumping ring), one not
    crossing = _item("x", 179.0, -179.0, "2020-01-01T00:00:00Z")
    plain = _item("p", 10.0, 11.0, "2021-06-01T00:00:00Z")
    catalog.upsert_items([crossing, plain])
    catalog.close()

    # rewrite the file as version 1 wrote it: a five-column R*Tree, user_version 0
    conn = sqlite3.connect(db)
    conn.executescript(
        "DROP TABLE items_rtree;"
        "CREATE VIRTUAL TABLE items_rtree USING rtree (key, minx, maxx, miny, maxy);"
        "INSERT INTO items_rtree SELECT rowid * 2, minx, maxx, miny, maxy FROM items "
        "WHERE minx <= maxx;"
        "PRAGMA user_version = 0;"
    )
    conn.close()

    catalog = open_catalog(f"sqlite:///{db}")
    columns = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(items_rtree)")]
    assert columns[-2:] == ["dt_start", "dt_end"]

    def ids(**kw: object) -> set[str]:
        return {i["id"] for i in catalog.search(SearchQuery(limit=10, **kw)).items}  # type: ignore[arg-type]

    assert ids(bbox=(-179.5, -1.0, -179.2, 1.0)) == {"x"}  # the western part of x
    assert ids(bbox=(179.2, -1.0, 179.5, 1.0)) == {"x"}  # the eastern part
    assert ids(bbox=(170.0, -1.0, -170.0, 1.0)) == {"x"}  # a query crossing too
    since_2021 = parse_datetime("2021-01-01T00:00:00Z")
    assert ids(bbox=(-180.0, -1.0, 180.0, 1.0), datetime_start=since_2021) == {"p"}
    # new writes go to the new R*Tree
    catalog.upsert_items([_item("n", 10.5, 12.0, "2022-01-01T00:00:00Z")])
    assert ids(bbox=(11.5, -1.0, 11.8, 1.0), datetime_start=since_2021) == {"n"}
    catalog.close()
