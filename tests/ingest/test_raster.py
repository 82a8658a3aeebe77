"""Raster ingest against the real rasters in ../shared/data/raster."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.warp
from PIL import Image
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box, shape

from eoshare.catalog import open_catalog
from eoshare.catalog.base import Catalog
from eoshare.catalog.validate import check_item
from eoshare.errors import InvalidRequestError, NotFoundError, StorageError
from eoshare.ingest.checksums import hexdigest_from_multihash
from eoshare.ingest.raster import STAC_EXTENSIONS, group_files, ingest_rasters
from eoshare.storage.local import LocalStore

S2 = "S2A_29RKH_20200219_0_L2A"
LC8 = "LC08_L1TP_016037_20170813_20170814_01_RT"
S1 = "S1A_IW_GRDH_1SDV_20180716T004042_iw-vv.tiff"


@pytest.fixture
def raster(shared_data: Path) -> Path:
    return shared_data / "raster"


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _ingest(paths: list[Path], catalog: Catalog, store: LocalStore, **kw: Any) -> Any:
    kw.setdefault("create_collection", True)
    return ingest_rasters(paths, catalog=catalog, store=store, collection_id="c", **kw)


def _items(catalog: Catalog) -> list[dict[str, Any]]:
    return list(catalog.iter_items("c"))


def test_groups_bands_of_one_scene(raster: Path, catalog: Catalog, store: LocalStore) -> None:
    report = _ingest([raster / f"{S2}_B04.tif", raster / f"{S2}_B08.tif"], catalog, store)
    assert report.ok, report.failures
    assert report.item_ids == [S2]
    item = catalog.get_item("c", S2)
    check_item(item)
    assert set(item["assets"]) == {"B04", "B08", "thumbnail"}
    assert item["assets"]["B04"]["bands"][0]["eo:common_name"] == "red"
    assert item["assets"]["B08"]["bands"][0]["eo:common_name"] == "nir"
    assert item["assets"]["B04"]["bands"][0]["data_type"] == "uint16"
    assert item["assets"]["B04"]["bands"][0]["nodata"] == 0
    assert item["properties"]["datetime"] == "2020-02-19T11:34:25.405Z"  # the sidecar
    assert item["properties"]["proj:code"] == "EPSG:32629"
    assert item["properties"]["proj:shape"] == [1098, 1098]
    assert item["properties"]["gsd"] == 100.0
    assert item["stac_version"] == "1.1.0"
    assert item["assets"]["thumbnail"]["roles"] == ["thumbnail"]
    assert sorted(store.iter_keys()) == [
        f"c/{S2}/B04.tif",
        f"c/{S2}/B08.tif",
        f"c/{S2}/thumbnail.png",
    ]
    # the collection made for us got the extent of its item
    extent = catalog.get_collection("c")["extent"]
    assert extent["spatial"]["bbox"][0] == pytest.approx(item["bbox"])


def test_extension_schemas_exist_in_the_mirror(shared_data: Path) -> None:
    mirror = shared_data.parent / "stac-schemas"
    for url in STAC_EXTENSIONS:
        assert (mirror / url.removeprefix("https://")).is_file(), url


def test_checksums_match_stored_bytes(raster: Path, catalog: Catalog, store: LocalStore) -> None:
    _ingest([raster / f"{S2}_B04.tif", raster / f"{S2}_SCL.tif"], catalog, store)
    item = catalog.get_item("c", S2)
    for key in ("B04", "SCL"):
        asset = item["assets"][key]
        data = (store.root / asset["eoshare:key"]).read_bytes()
        assert asset["file:size"] == len(data)
        assert hexdigest_from_multihash(asset["file:checksum"]) == hashlib.sha256(data).hexdigest()
        assert asset["file:checksum"].startswith("1220")
        assert asset["href"] == f"{store.url}/{asset['eoshare:key']}"
    # SCL has its own grid (200 m): its projection fields stay on the asset
    assert item["assets"]["SCL"]["proj:shape"] == [549, 549]
    # an existing COG is stored byte for byte
    stored = (store.root / item["assets"]["B04"]["eoshare:key"]).read_bytes()
    assert stored == (raster / f"{S2}_B04.tif").read_bytes()


def test_footprint_matches_transformed_bounds(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    _ingest([raster / f"{S2}_B04.tif"], catalog, store)
    item = catalog.get_item("c", S2)
    with rasterio.open(raster / f"{S2}_B04.tif") as ds:
        expected = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    assert item["bbox"] == pytest.approx(list(expected), abs=1e-6)
    footprint = shape(item["geometry"])
    assert footprint.is_valid
    assert footprint.exterior.is_ccw  # RFC 7946 right-hand rule
    # the reprojected UTM square is slightly rotated: close to, but inside, its bbox
    assert footprint.area == pytest.approx(box(*expected).area, rel=0.05)


def test_non_cog_is_converted_to_a_valid_cog(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    source = raster / "rasterio_RGB.byte.tif"
    assert not cog_validate(source, quiet=True)[0]
    report = _ingest([source], catalog, store, datetime=datetime(2001, 1, 1, tzinfo=UTC))
    assert report.ok, report.failures
    item = catalog.get_item("c", "rasterio_RGB.byte")
    path = store.root / item["assets"]["data"]["eoshare:key"]
    valid, errors, _ = cog_validate(path, quiet=True)
    assert valid, errors
    with rasterio.open(path) as ds:
        assert ds.overviews(1), "a COG needs internal overviews"
        assert ds.profile["compress"] == "deflate"
        assert ds.crs.to_epsg() == 32618
    names = [b["eo:common_name"] for b in item["assets"]["data"]["bands"]]
    assert names == ["red", "green", "blue"]
    assert item["properties"]["datetime"] == "2001-01-01T00:00:00Z"


def test_striped_landsat_is_converted_and_dated_from_its_name(
    raster: Path, catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    # copies without their MTL file: the name is then the only source of the date
    bare = tmp_path / "bare"
    bare.mkdir()
    for band in ("B4", "B5"):
        shutil.copyfile(raster / f"{LC8}_{band}.TIF", bare / f"{LC8}_{band}.TIF")
    report = _ingest([bare / f"{LC8}_B4.TIF", bare / f"{LC8}_B5.TIF"], catalog, store)
    assert report.ok, report.failures
    item = catalog.get_item("c", LC8)
    # the first date in a Landsat name is the acquisition, the second the processing
    assert item["properties"]["datetime"] == "2017-08-13T00:00:00Z"
    assert [item["assets"][k]["bands"][0]["eo:common_name"] for k in ("B4", "B5")] == [
        "red",
        "nir08",
    ]
    for key in ("B4", "B5"):
        assert cog_validate(store.root / item["assets"][key]["eoshare:key"], quiet=True)[0]


def test_thumbnail_rgb_with_transparent_nodata(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    _ingest([raster / "rasterio_RGB.byte.tif"], catalog, store, datetime=datetime(2001, 1, 1))
    png = (store.root / "c" / "rasterio_RGB.byte" / "thumbnail.png").read_bytes()
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert max(image.size) <= 256
    assert image.mode == "RGBA"
    alpha = np.asarray(image)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255  # the tilted scene has nodata corners


def test_thumbnail_prefers_tci(raster: Path, catalog: Catalog, store: LocalStore) -> None:
    _ingest([raster / f"{S2}_B04.tif", raster / f"{S2}_TCI.tif"], catalog, store)
    png = (store.root / "c" / S2 / "thumbnail.png").read_bytes()
    assert Image.open(io.BytesIO(png)).mode == "RGBA"


def test_ingesting_twice_updates_one_item(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    files = [raster / f"{S2}_B04.tif", raster / f"{S2}_B08.tif"]
    first = _ingest(files, catalog, store)
    keys = sorted(store.iter_keys())
    second = _ingest(files, catalog, store)
    assert (first.inserted, first.updated) == (1, 0)
    assert (second.inserted, second.updated) == (0, 1)
    assert [i["id"] for i in _items(catalog)] == [S2]
    assert sorted(store.iter_keys()) == keys


def test_reingest_with_fewer_bands_drops_unused_objects(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    _ingest([raster / f"{S2}_B04.tif", raster / f"{S2}_B08.tif"], catalog, store)
    _ingest([raster / f"{S2}_B04.tif"], catalog, store)
    assert set(catalog.get_item("c", S2)["assets"]) == {"B04", "thumbnail"}
    assert sorted(store.iter_keys()) == [f"c/{S2}/B04.tif", f"c/{S2}/thumbnail.png"]


class _FailingCatalog:
    """A real catalogue whose item writes fail, as a full disk would make them."""

    def __init__(self, inner: Catalog) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert_items(self, *args: Any, **kwargs: Any) -> Any:
        raise StorageError("database or disk is full")


def test_failure_leaves_no_orphans_and_no_item(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    catalog.create_collection(_collection("c"))
    failing: Any = _FailingCatalog(catalog)
    report = ingest_rasters(
        [raster / f"{S2}_B04.tif", raster / f"{S2}_B08.tif"],
        catalog=failing,
        store=store,
        collection_id="c",
    )
    assert [f.reason for f in report.failures] == ["database or disk is full"] * 2
    assert list(store.iter_keys()) == []
    assert list(store.root.iterdir()) == []  # not even empty folders
    with pytest.raises(NotFoundError):
        catalog.get_item("c", S2)


def test_failed_update_restores_the_old_objects(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    _ingest([raster / f"{S2}_B04.tif"], catalog, store)
    before = {k: store.sha256(k) for k in store.iter_keys()}
    failing: Any = _FailingCatalog(catalog)
    report = ingest_rasters(
        [raster / f"{S2}_B04.tif"],
        catalog=failing,
        store=store,
        collection_id="c",
        datetime=datetime(2021, 1, 1, tzinfo=UTC),
    )
    assert not report.ok
    assert {k: store.sha256(k) for k in store.iter_keys()} == before
    assert catalog.get_item("c", S2)["properties"]["datetime"] == "2020-02-19T11:34:25.405Z"


def test_gcp_georeferenced_file_is_warped(
    raster: Path, catalog: Catalog, store: LocalStore
) -> None:
    report = _ingest([raster / S1], catalog, store)
    assert report.ok, report.failures
    item = catalog.get_item("c", "S1A_IW_GRDH_1SDV_20180716T004042_iw-vv")
    assert item["properties"]["proj:code"] == "EPSG:4326"
    assert item["properties"]["datetime"] == "2018-07-16T00:40:42Z"
    assert "gsd" not in item["properties"]  # degrees are not a ground distance
    path = store.root / item["assets"]["data"]["eoshare:key"]
    assert cog_validate(path, quiet=True)[0]
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4326
    # the footprint agrees with the product's own (productInfo.json)
    info = json.loads((raster / "S1A_IW_GRDH_1SDV_20180716T004042_productInfo.json").read_text())
    product = shape(info["footprint"])
    footprint = shape(item["geometry"])
    assert footprint.symmetric_difference(product).area / product.area < 0.02
    assert item["bbox"] == pytest.approx(list(product.bounds), abs=1e-3)


def test_text_file_is_refused_and_nothing_written(
    tmp_path: Path, catalog: Catalog, store: LocalStore
) -> None:
    bad = tmp_path / "notes_20200101.tif"
    bad.write_text("this is not a raster\n")
    report = _ingest([bad], catalog, store)
    assert [(f.path, f.reason) for f in report.failures] == [
        (str(bad), "not a raster file that GDAL can read")
    ]
    assert list(store.iter_keys()) == []
    # the collection created for this run is removed again: nothing went in
    with pytest.raises(NotFoundError):
        catalog.get_collection("c")


def test_file_without_georeferencing_is_refused(
    tmp_path: Path, catalog: Catalog, store: LocalStore
) -> None:
    path = tmp_path / "plain_20200101.tif"
    with warnings.catch_warnings():
        # writing a raster without a CRS is exactly what this test needs
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8"
        ) as ds:
            ds.write(np.ones((1, 8, 8), dtype="uint8"))
    report = _ingest([path], catalog, store)
    assert len(report.failures) == 1
    assert "has no georeferencing" in report.failures[0].reason
    assert list(store.iter_keys()) == []


def test_missing_date_is_refused_clearly(raster: Path, catalog: Catalog, store: LocalStore) -> None:
    report = _ingest([raster / "rasterio_RGB.byte.tif"], catalog, store)
    assert "pass --datetime" in report.failures[0].reason
    assert list(store.iter_keys()) == []


def test_missing_collection(raster: Path, catalog: Catalog, store: LocalStore) -> None:
    with pytest.raises(NotFoundError, match="--create-collection"):
        ingest_rasters(
            [raster / f"{S2}_B04.tif"], catalog=catalog, store=store, collection_id="nope"
        )
    assert list(store.iter_keys()) == []


def test_one_bad_file_does_not_stop_the_others(
    raster: Path, tmp_path: Path, catalog: Catalog, store: LocalStore
) -> None:
    report = _ingest([raster / f"{S2}_B04.tif", tmp_path / "absent_20200101.tif"], catalog, store)
    assert report.item_ids == [S2]
    assert [f.reason for f in report.failures] == ["no such file"]


def test_one_item_and_explicit_id(raster: Path, catalog: Catalog, store: LocalStore) -> None:
    files = [raster / f"{LC8}_B4.TIF", raster / f"{S2}_B08.tif"]
    report = _ingest(files, catalog, store, one_item=True, item_id="mixed")
    assert report.ok, report.failures
    item = catalog.get_item("c", "mixed")
    assert set(item["assets"]) == {"B4", "B08", "thumbnail"}
    # two grids: projection fields live on each asset
    assert "proj:code" not in item["properties"]
    assert item["assets"]["B4"]["proj:code"] == "EPSG:32617"


def test_grouping_rules(tmp_path: Path) -> None:
    groups = group_files([Path("x/S_B04.tif"), Path("x/S_B8A.tif"), Path("x/T_SCL.tif")])
    assert [(g.item_id, [m.asset_key for m in g.members]) for g in groups] == [
        ("S", ["B04", "B8A"]),
        ("T", ["SCL"]),
    ]
    custom = group_files([Path("scene-1.red.tif"), Path("scene-1.nir.tif")], pattern=r"\.(red|nir)")
    assert [(g.item_id, [m.asset_key for m in g.members]) for g in custom] == [
        ("scene-1", ["red", "nir"])
    ]
    with pytest.raises(InvalidRequestError, match="--id"):
        group_files([Path("A_B04.tif"), Path("B_B04.tif")], item_id="one")
    with pytest.raises(InvalidRequestError, match="not a valid regex"):
        group_files([Path("A_B04.tif")], pattern="(")
    with pytest.raises(InvalidRequestError, match="both be asset"):
        group_files([Path("a/A_B04.tif"), Path("b/A_B04.tif")])


def test_item_is_valid_stac(
    raster: Path, catalog: Catalog, store: LocalStore, stac_schemas: Path
) -> None:
    import sys

    sys.path.insert(0, str(stac_schemas))
    try:
        import offline  # noqa: F401  (serves schema URLs from the local mirror)

        with warnings.catch_warnings():
            # the package says it is deprecated in favour of stac_valid; same validator
            warnings.simplefilter("ignore", DeprecationWarning)
            from stac_validator import stac_validator
    finally:
        sys.path.remove(str(stac_schemas))
    _ingest([raster / f"{S2}_B04.tif", raster / f"{S2}_B08.tif"], catalog, store)
    validator = stac_validator.StacValidate()
    assert validator.validate_dict(catalog.get_item("c", S2)), validator.message
    validator = stac_validator.StacValidate()
    assert validator.validate_dict(catalog.get_collection("c")), validator.message


def _collection(cid: str) -> dict[str, Any]:
    from eoshare.ingest.collections import minimal_collection

    return minimal_collection(cid, made_by="a test")
