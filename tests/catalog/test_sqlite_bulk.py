"""``SqliteCatalog.bulk_load`` (what ``eoshare load`` writes under): the WAL is
checkpointed by a thread of its own, stays bounded however many batches come, is emptied
at the end, and the catalogue holds exactly what was written; plain writes afterwards
checkpoint as SQLite does by default again. Also the row a bulk load writes: the
document stored as TEXT (sent as UTF-8 bytes) and the footprint's WKB, which must be
byte for byte what the general path (shapely) gives."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import shapely

from eoshare.catalog.geometry import reshaped_geometry
from eoshare.catalog.prepared import plain_polygon_wkb, prepare_item
from eoshare.catalog.sqlite import SqliteCatalog
from eoshare.catalog.sqlite_bulk import BULK_CACHE_KIB


def _item(n: int, pad: int = 6000) -> dict[str, Any]:
    x = -170.0 + (n * 7.3) % 340.0
    y = -60.0 + (n * 3.1) % 120.0
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"it-{n:05d}",
        "collection": "c",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x, y], [x + 0.5, y], [x + 0.5, y + 0.5], [x, y + 0.5], [x, y]]],
        },
        "bbox": [x, y, x + 0.5, y + 0.5],
        "properties": {"datetime": "2021-05-01T10:00:00Z", "title": "é" + "x" * pad},
        "links": [],
        "assets": {},
    }


def _catalog(path: Path) -> SqliteCatalog:
    cat = SqliteCatalog(path)
    cat.create_collection(
        {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": "c",
            "description": "c",
            "license": "other",
            "links": [],
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
        }
    )
    return cat


def test_bulk_load_keeps_the_wal_bounded_and_empties_it(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    wal = Path(f"{db}-wal")
    cat = _catalog(db)
    batches = [[prepare_item(_item(b * 40 + i))[0] for i in range(40)] for b in range(25)]
    sizes = []
    try:
        with cat.bulk_load():
            checkpointer = cat._checkpointer
            assert checkpointer is not None
            checkpointer.limit_frames = 64  # 256 KiB: the writer waits past it
            for rows in batches:
                cat.write_prepared(rows)
                sizes.append(wal.stat().st_size)  # (the file's high-water mark)
            with cat._use() as conn:  # the writer's connection, with the larger cache
                assert conn.execute("PRAGMA cache_size").fetchone()[0] == -BULK_CACHE_KIB
        assert cat._checkpointer is None
        # 25 batches went through a WAL that never held more than a few of them
        assert max(sizes) < 64 * 4096 + 4 * sizes[0], sizes
        assert not wal.exists() or wal.stat().st_size == 0  # emptied at the end
        with cat._use() as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
            assert conn.execute("PRAGMA cache_size").fetchone()[0] == -cat.cache_kib
        # after the bulk load, a plain write is checkpointed by SQLite itself again
        cat.write_prepared([prepare_item(_item(100_000 + i))[0] for i in range(40)])
    finally:
        cat.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 25 * 40 + 40
        assert conn.execute("SELECT count(*) FROM items_rtree").fetchone()[0] == 25 * 40 + 40
        # the document is TEXT, whole, with its non-ASCII characters, for json_extract
        kind, title = conn.execute(
            "SELECT typeof(content), json_extract(content, '$.properties.title') "
            "FROM items WHERE id = 'it-00007'"
        ).fetchone()
        assert kind == "text" and title == "é" + "x" * 6000


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        {  # with a hole
            "type": "Polygon",
            "coordinates": [
                [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
                [[2, 2], [3, 2], [3, 3], [2, 3], [2, 2]],
            ],
        },
        {  # self-intersecting (a bow tie): made valid by the general path
            "type": "Polygon",
            "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
        },
        {  # jumps the antimeridian: cut by the general path
            "type": "Polygon",
            "coordinates": [[[179, 0], [-179, 0], [-179, 1], [179, 1], [179, 0]]],
        },
        {"type": "Polygon", "coordinates": [[[0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 0, 5]]]},
        {"type": "Point", "coordinates": [3.5, 51.2]},
    ],
)
def test_the_direct_wkb_of_a_polygon_is_shapelys(geometry: dict[str, Any]) -> None:
    expected, reshaped = reshaped_geometry(geometry)
    direct = plain_polygon_wkb(geometry)
    if direct is None:  # not a plain valid 2D polygon: the general path is taken
        assert reshaped or geometry["type"] != "Polygon" or len(geometry["coordinates"][0][0]) > 2
    else:
        assert not reshaped
        assert direct == shapely.to_wkb(expected)
    item = {**_item(1), "geometry": geometry}
    item.pop("bbox")
    row, _ = prepare_item(item)
    assert row.geom_wkb == shapely.to_wkb(expected)
    assert row.reshaped == reshaped


def test_bulk_load_in_memory_is_a_plain_load() -> None:
    cat = SqliteCatalog(":memory:")
    try:
        with cat.bulk_load():
            assert cat._checkpointer is None
    finally:
        cat.close()
