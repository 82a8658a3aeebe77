"""Loading STAC documents (JSON, ItemCollection, ndjson, stac-geoparquet)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eoshare.catalog import open_catalog
from eoshare.catalog.base import Catalog
from eoshare.ingest.stacdocs import DocumentError, load_documents, read_documents


@pytest.fixture
def stac(shared_data: Path) -> Path:
    return shared_data / "stac"


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


def _count(catalog: Catalog, cid: str) -> int:
    return sum(1 for _ in catalog.iter_items(cid))


@pytest.mark.parametrize(
    ("name", "collection", "count"),
    [
        ("landsat-8-c2-l2_netherlands_pc.ndjson", "landsat-8-c2-l2", 250),
        ("pgstac_naip_test_items.ndjson", "pgstac-test-collection", 100),
        ("sentinel-1-grd_earthsearch.ndjson", "sentinel-1-grd", 3),
        ("sentinel-2-l2a_pc_and_earthsearch.ndjson", "sentinel-2-l2a", 44),
        ("rustac_100-sentinel-2-l2a-items.parquet", "sentinel-2-l2a", 100),
        ("itemcollection_landsat-c2-l2_pc_stacgeoparquet.json", "landsat-c2-l2", 4),
        ("item_S1A_IW_GRDH_1SDV_20220428T034417_pc.json", "sentinel-1-grd", 1),
    ],
)
def test_loads_each_shared_file(
    stac: Path, catalog: Catalog, name: str, collection: str, count: int
) -> None:
    report = load_documents([stac / name], catalog=catalog, create_collections=True)
    assert report.ok, report.problems
    assert report.inserted == count
    assert _count(catalog, collection) == count
    # the collection made from the items got their extent
    extent = catalog.get_collection(collection)["extent"]
    assert extent == catalog.collection_extent(collection)


def test_invalid_items_are_reported_by_line(stac: Path, catalog: Catalog) -> None:
    # 9 of these real items have an asset without 'href' (as the API returned them)
    path = stac / "landsat-8-c2-l2_chatham-islands_pc.ndjson"
    report = load_documents([path], catalog=catalog, create_collections=True)
    assert report.inserted == 241
    assert report.problem_count == 9
    assert report.problems[0].location == f"{path}:1"
    assert "ST_QA" in report.problems[0].reason
    assert report.files_failed == 1


def test_collections_first_then_items(stac: Path, catalog: Catalog) -> None:
    # items listed before their collection file still find it
    report = load_documents(
        [stac / "pgstac_naip_test_items.ndjson", stac / "pgstac_naip_test_collection.json"],
        catalog=catalog,
    )
    assert report.ok, report.problems
    assert report.collections_created == ["pgstac-test-collection"]
    assert _count(catalog, "pgstac-test-collection") == 100


def test_on_conflict(stac: Path, catalog: Catalog) -> None:
    files = [stac / "collection_sentinel-1-grd_pc.json", stac / "sentinel-1-grd_earthsearch.ndjson"]
    assert load_documents(files, catalog=catalog).inserted == 3
    again = load_documents(files, catalog=catalog)
    assert not again.ok
    assert any("already exists" in p.reason for p in again.problems)
    skipped = load_documents(files, catalog=catalog, on_conflict="skip")
    assert (skipped.skipped, skipped.inserted, skipped.ok) == (3, 0, True)
    updated = load_documents(files, catalog=catalog, on_conflict="update")
    assert (updated.updated, updated.collections_updated) == (3, ["sentinel-1-grd"])
    assert _count(catalog, "sentinel-1-grd") == 3


def test_missing_collection_is_reported_once(stac: Path, catalog: Catalog) -> None:
    path = stac / "sentinel-2-l2a_pc_and_earthsearch.ndjson"
    report = load_documents([path], catalog=catalog)
    assert report.inserted == 0
    assert report.problem_count == 44
    assert len(report.problems) == 2
    assert "--create-collections" in report.problems[0].reason
    assert "43 more items" in report.problems[1].reason


def test_malformed_line_names_file_and_line(tmp_path: Path, stac: Path, catalog: Catalog) -> None:
    lines = (stac / "sentinel-1-grd_earthsearch.ndjson").read_text().splitlines()
    bad = tmp_path / "bad.ndjson"
    bad.write_text("\n".join([lines[0], "{not json", "", lines[1], '{"type": "Feature"}']) + "\n")
    report = load_documents([bad], catalog=catalog, create_collections=True)
    assert report.inserted == 2
    assert [p.location for p in report.problems] == [f"{bad}:2", f"{bad}:5"]
    assert "not valid JSON" in report.problems[0].reason


def test_reader_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    with open(path, "w") as f:
        for i in range(10_000):
            f.write(json.dumps({"type": "Feature", "id": f"i{i}"}) + "\n")
    docs = read_documents(path)
    first = next(iter(docs))
    assert not isinstance(first, DocumentError)
    assert first.doc["id"] == "i0" and first.location == f"{path}:1"


def test_parquet_is_read_in_batches(stac: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    sizes: list[int] = []
    real = pq.ParquetFile.iter_batches

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        for batch in real(self, *args, **kwargs):
            sizes.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    docs = list(read_documents(stac / "rustac_100-sentinel-2-l2a-items.parquet", batch_size=30))
    assert len(docs) == 100
    assert sizes == [30, 30, 30, 10]


def test_unreadable_files(tmp_path: Path, catalog: Catalog) -> None:
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    report = load_documents(
        [
            tmp_path / "x.txt",
            tmp_path / "absent.ndjson",
            tmp_path / "broken.json",
            tmp_path / "broken.parquet",
        ],
        catalog=catalog,
    )
    reasons = {Path(p.location).name: p.reason for p in report.problems}
    assert "unknown file type" in reasons["x.txt"]
    assert reasons["absent.ndjson"] == "no such file"
    assert "not valid JSON" in reasons["broken.json"]
    assert "Parquet" in reasons["broken.parquet"]
    assert report.files_failed == 4


def test_conflicts_are_reported_at_their_own_line_and_the_rest_loads(
    stac: Path, catalog: Catalog, tmp_path: Path
) -> None:
    """An item that exists is one error at its own line; the new items of the same batch
    (and of the rest of the file) still load, and an id repeated in the file is caught."""
    lines = (stac / "landsat-8-c2-l2_netherlands_pc.ndjson").read_text().splitlines()
    first = tmp_path / "first.ndjson"
    first.write_text("\n".join(lines[:3]) + "\n")
    report = load_documents([first], catalog=catalog, create_collections=True)
    assert report.inserted == 3
    again = tmp_path / "again.ndjson"
    # lines 1-2 exist; 3-4 are new; 5 repeats line 3; 6-8 new (the second batch)
    again.write_text("\n".join([lines[1], lines[2], lines[3], lines[4], lines[3], *lines[5:8]]))
    report = load_documents([again], catalog=catalog, batch_size=5)
    where = sorted(p.location for p in report.problems)
    assert where == [f"{again}:1", f"{again}:2", f"{again}:5"], report.problems
    assert all("already exists" in p.reason for p in report.problems)
    assert report.inserted == 5
    assert _count(catalog, "landsat-8-c2-l2") == 8
