"""The SQLite catalogue's connections are a bounded pool: however many threads come and
go (anyio retires idle worker threads and starts new ones), the catalogue keeps at most
``pool_size`` connections, each with its own page cache and file mapping."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eoshare.catalog.base import SearchQuery
from eoshare.catalog.sqlite import SqliteCatalog


def _item(n: int) -> dict[str, object]:
    x = -10.0 + n * 0.01
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"it-{n}",
        "collection": "c",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x, 40.0], [x + 0.5, 40.0], [x + 0.5, 40.5], [x, 40.5], [x, 40.0]]],
        },
        "bbox": [x, 40.0, x + 0.5, 40.5],
        "properties": {"datetime": "2021-05-01T10:00:00Z"},
        "links": [],
        "assets": {},
    }


def _catalog(tmp_path: Path, pool_size: int = 3) -> SqliteCatalog:
    cat = SqliteCatalog(tmp_path / "catalog.db", pool_size=pool_size)
    cat.create_collection(
        {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": "c",
            "description": "pool",
            "license": "CC-BY-4.0",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [],
        }
    )
    cat.upsert_items([_item(n) for n in range(50)], collection_id="c")
    return cat


def _db_fds(path: Path) -> int:
    n = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(fd).startswith(str(path)):
                n += 1
        except OSError:
            pass
    return n


def test_threads_that_come_and_go_share_a_bounded_pool(tmp_path: Path) -> None:
    cat = _catalog(tmp_path, pool_size=3)
    try:
        # 40 short-lived threads one after another, then 16 at once
        for n in range(40):
            t = threading.Thread(target=cat.get_item, args=("c", f"it-{n}"))
            t.start()
            t.join()
        with ThreadPoolExecutor(16) as pool:
            boxes = [(-10.5 + (n % 10) * 0.05, 39.0, -8.0, 41.0) for n in range(64)]
            pages = list(pool.map(lambda b: cat.search(SearchQuery(bbox=b, limit=5)), boxes))
        assert all(p.items for p in pages)
        assert len(cat._all) <= 3
        # each connection holds the database, its -wal and its -shm open
        assert _db_fds(tmp_path) <= 3 * 3
    finally:
        cat.close()
    assert _db_fds(tmp_path) == 0


def test_a_read_inside_a_write_uses_the_writing_connection(tmp_path: Path) -> None:
    """delete_collection reads the collection inside its write transaction: with one
    connection in the pool that must not wait for itself."""
    cat = _catalog(tmp_path, pool_size=1)
    try:
        assert sum(1 for _ in cat.iter_items("c")) == 50
        cat.delete_collection("c")
        assert cat.list_collections() == []
        assert len(cat._all) == 1
    finally:
        cat.close()
