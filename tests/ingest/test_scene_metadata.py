"""Ingest keeps what a scene's own metadata files say (issue 12, item 7).

Each real scene from ../shared/data/raster is ingested with the metadata file that came
with it; the expected values are read here from those files independently (plain text
parsing / json), never from eoshare's reader. The stored assets must be valid COGs.
CBERS has no file in shared data: its XML is made by the test (INPE's layout)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from eoshare.catalog import Catalog, open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.ingest.scene_meta import SidecarError, parse_xml, read_scene_metadata
from eoshare.storage.local import LocalStore

LC8 = "LC08_L1TP_016037_20170813_20170814_01_RT"
S2 = "S2A_29RKH_20200219_0_L2A"
S1 = "S1A_IW_GRDH_1SDV_20180716T004042"


@pytest.fixture(scope="module")
def raster(shared_data: Path) -> Path:
    return shared_data / "raster"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Catalog, LocalStore]]:
    root = tmp_path_factory.mktemp("scene-meta")
    catalog = open_catalog(f"sqlite:///{root / 'catalog.db'}")
    yield catalog, LocalStore(root / "store")
    catalog.close()


def _ingest(node: tuple[Catalog, LocalStore], cid: str, paths: list[Path]) -> dict[str, Any]:
    catalog, store = node
    report = ingest_rasters(
        paths, catalog=catalog, store=store, collection_id=cid, create_collection=True
    )
    assert report.ok, report.failures
    assert len(report.item_ids) == 1, report.item_ids
    return catalog.get_item(cid, report.item_ids[0])


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _assert_real_cogs(node: tuple[Catalog, LocalStore], item: dict[str, Any]) -> None:
    _, store = node
    for key, asset in item["assets"].items():
        if "data" not in asset["roles"]:
            continue
        path = store.root / asset["eoshare:key"]
        valid, errors, warns = cog_validate(path, quiet=True)
        assert valid and not warns, (key, errors, warns)
        with rasterio.open(path) as ds:
            assert ds.profile.get("tiled"), key
            assert ds.compression is not None, key


@pytest.fixture(scope="module")
def landsat(raster: Path, node: tuple[Catalog, LocalStore]) -> dict[str, Any]:
    return _ingest(node, "landsat", [raster / f"{LC8}_B4.TIF", raster / f"{LC8}_B5.TIF"])


def _mtl(raster: Path) -> dict[str, str]:
    found = re.findall(
        r"^\s*(\w+) = \"?([^\"\n]*)\"?$", (raster / f"{LC8}_MTL.txt").read_text(), re.M
    )
    return dict(found)


def test_landsat_mtl(landsat: dict[str, Any], raster: Path, node: Any) -> None:
    mtl = _mtl(raster)
    props = landsat["properties"]
    centre = f"{mtl['DATE_ACQUIRED']}T{mtl['SCENE_CENTER_TIME'][:15]}+00:00"  # 15:54:15.788464
    assert _when(props["datetime"]) == datetime.fromisoformat(centre)
    assert _when(props["datetime"]).hour == 15  # not midnight
    assert props["platform"] == "landsat-8" == mtl["SPACECRAFT_ID"].lower().replace("_", "-")
    assert props["instruments"] == ["oli", "tirs"]
    assert props["view:sun_azimuth"] == float(mtl["SUN_AZIMUTH"])
    assert props["view:sun_elevation"] == float(mtl["SUN_ELEVATION"])
    assert props["eo:cloud_cover"] == float(mtl["CLOUD_COVER"])
    assert props["processing:level"] == mtl["DATA_TYPE"] == "L1TP"
    assert props["landsat:wrs_path"] == f"{int(mtl['WRS_PATH']):03d}" == "016"
    assert props["landsat:wrs_row"] == "037"
    exts = landsat["stac_extensions"]
    assert any("/view/" in e for e in exts) and any("/landsat/" in e for e in exts)
    # the striped source files were converted into real COGs
    with rasterio.open(raster / f"{LC8}_B4.TIF") as src:
        assert src.block_shapes[0][1] == src.width  # striped, the case being tested
    _assert_real_cogs(node, landsat)


def test_sentinel2_stac_sidecar(raster: Path, node: tuple[Catalog, LocalStore]) -> None:
    item = _ingest(node, "s2", [raster / f"{S2}_B04.tif", raster / f"{S2}_B08.tif"])
    side = json.loads((raster / f"{S2}_stac-item.json").read_text())
    props, want = item["properties"], side["properties"]
    assert _when(props["datetime"]) == _when(want["datetime"])  # 11:34:25.405Z
    for key in ("platform", "constellation", "instruments", "eo:cloud_cover"):
        assert props[key] == want[key], key
    assert props["view:sun_azimuth"] == want["view:sun_azimuth"]
    assert props["view:sun_elevation"] == want["view:sun_elevation"]
    red = next(a for a in side["assets"].values() if a["href"].endswith("/B04.tif"))
    band = item["assets"]["B04"]["bands"][0]
    assert band["eo:common_name"] == red["eo:bands"][0]["common_name"] == "red"
    assert band["eo:center_wavelength"] == red["eo:bands"][0]["center_wavelength"]
    _assert_real_cogs(node, item)


def test_sentinel1_product_info(raster: Path, node: tuple[Catalog, LocalStore]) -> None:
    item = _ingest(node, "s1", [raster / f"{S1}_iw-vv.tiff"])
    info = json.loads((raster / f"{S1}_productInfo.json").read_text())
    props = item["properties"]
    assert _when(props["datetime"]) == datetime.fromisoformat(info["startTime"]).replace(tzinfo=UTC)
    assert _when(props["end_datetime"]) == datetime.fromisoformat(info["stopTime"]).replace(
        tzinfo=UTC
    )
    assert props["platform"] == "sentinel-1a" and info["missionId"] == "S1A"
    assert props["sar:instrument_mode"] == info["mode"] == "IW"
    assert props["sar:polarizations"] == ["VV", "VH"]  # "DV": dual, VV + VH
    assert props["sar:product_type"] == info["productType"]
    assert props["sat:absolute_orbit"] == info["absoluteOrbitNumber"]
    assert any("/sar/" in e for e in item["stac_extensions"])
    _assert_real_cogs(node, item)


def test_small_striped_file_becomes_a_real_cog(
    raster: Path, node: tuple[Catalog, LocalStore], tmp_path: Path
) -> None:
    # a striped, uncompressed file under 512 px: cog_validate alone calls it a COG
    src = tmp_path / "small_20200101.tif"
    with rasterio.open(
        src, "w", driver="GTiff", width=300, height=200, count=1, dtype="uint8",
        crs="EPSG:32631", transform=Affine(10, 0, 500000, 0, -10, 5000000),
    ) as ds:  # fmt: skip
        ds.write(np.arange(60000, dtype=np.uint32).reshape(1, 200, 300).astype("uint8"))
    assert cog_validate(src, quiet=True)[0]
    item = _ingest(node, "small", [src])
    _assert_real_cogs(node, item)


def test_striped_4096_by_8192_uint16(node: tuple[Catalog, LocalStore], tmp_path: Path) -> None:
    # failed before with "conversion to COG failed: Overview of index 2 is not tiled"
    src = tmp_path / "tall_20200101.tif"
    with rasterio.open(
        src, "w", driver="GTiff", width=4096, height=8192, count=1, dtype="uint16",
        crs="EPSG:32631", transform=Affine(10, 0, 500000, 0, -10, 5000000),
    ) as ds:  # fmt: skip
        row = (np.arange(4096, dtype=np.uint16) % 3000)[None, :]
        for y in range(0, 8192, 1024):
            ds.write(np.repeat(row, 1024, axis=0)[None], window=((y, y + 1024), (0, 4096)))
    item = _ingest(node, "tall", [src])
    _assert_real_cogs(node, item)
    _, store = node
    with rasterio.open(store.root / item["assets"]["data"]["eoshare:key"]) as ds:
        assert ds.overviews(1)  # big enough to warrant overviews


CBERS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<prdf xmlns="http://www.gisplan.com.br/xmlsat">
  <satellite><name>CBERS</name><number>4</number><instrument>MUX</instrument></satellite>
  <image>
    <timeStamp>
      <begin>2017-04-20T12:49:22</begin>
      <center>2017-04-20T12:49:36</center>
      <end>2017-04-20T12:49:50</end>
    </timeStamp>
    <sunPosition><elevation>39.7</elevation><sunAzimuth>52.1</sunAzimuth></sunPosition>
  </image>
</prdf>
"""
CBERS = "CBERS_4_MUX_20170420_057_094_L2"


def _cbers_band(path: Path, value: int) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
        crs="EPSG:32722", transform=Affine(20, 0, 300000, 0, -20, 7000000),
    ) as ds:  # fmt: skip
        ds.write(np.full((1, 64, 64), value, dtype=np.uint8))


def test_cbers_bands_grouped_and_dated_from_xml(
    node: tuple[Catalog, LocalStore], tmp_path: Path
) -> None:
    for band, value in (("BAND15", 40), ("BAND16", 90)):
        _cbers_band(tmp_path / f"{CBERS}_{band}.tif", value)
    (tmp_path / f"{CBERS}_BAND15.xml").write_text(CBERS_XML)
    item = _ingest(
        node, "cbers", [tmp_path / f"{CBERS}_BAND15.tif", tmp_path / f"{CBERS}_BAND16.tif"]
    )
    assert item["id"] == CBERS
    assert set(item["assets"]) == {"BAND15", "BAND16", "thumbnail"}
    props = item["properties"]
    assert props["datetime"] == "2017-04-20T12:49:36Z"
    assert props["platform"] == "cbers-4" and props["instruments"] == ["mux"]
    assert props["view:sun_elevation"] == 39.7 and props["view:sun_azimuth"] == 52.1
    assert item["assets"]["BAND15"]["bands"][0]["eo:common_name"] == "red"


def test_cbers_acquisition_date_tag(node: tuple[Catalog, LocalStore], tmp_path: Path) -> None:
    path = tmp_path / f"{CBERS}_BAND7.tif"
    _cbers_band(path, 10)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**{"Acquisition Date": "2017-04-20T12:49:36"})
    item = _ingest(node, "cbers-tag", [path])
    assert item["properties"]["datetime"] == "2017-04-20T12:49:36Z"


def test_unsafe_sidecars_are_skipped(tmp_path: Path) -> None:
    with pytest.raises(SidecarError):
        parse_xml('<!DOCTYPE x [<!ENTITY a "aaaa">]><prdf>&a;</prdf>')
    raster = tmp_path / f"{CBERS}_BAND5.tif"
    _cbers_band(raster, 1)
    (tmp_path / f"{CBERS}_BAND5.xml").write_text(
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + CBERS_XML.split("?>", 1)[1]
    )
    (tmp_path / f"{CBERS}_MTL.txt").write_bytes(b"DATE_ACQUIRED = 2001-01-01\n" * 200_000)
    meta = read_scene_metadata([raster])
    assert meta.datetime is None and not meta.properties  # both refused, nothing read


def test_collection_summaries(
    landsat: dict[str, Any], raster: Path, node: tuple[Catalog, LocalStore]
) -> None:
    catalog, _ = node
    summaries = catalog.get_collection("landsat")["summaries"]
    assert summaries["platform"] == ["landsat-8"]
    assert summaries["instruments"] == ["oli", "tirs"]
    assert summaries["gsd"] == [landsat["properties"]["gsd"]]
    assert {b["name"]: b.get("eo:common_name") for b in summaries["bands"]} == {
        "B4": "red",
        "B5": "nir08",
    }
    cloud = float(_mtl(raster)["CLOUD_COVER"])
    assert summaries["eo:cloud_cover"] == {"minimum": cloud, "maximum": cloud}
    # a later ingest into the same eoshare-made collection keeps summaries and extent current
    _ingest(node, "landsat", [raster / f"{S2}_B04.tif"])  # another mission, on purpose
    collection = catalog.get_collection("landsat")
    assert collection["summaries"]["platform"] == ["landsat-8", "sentinel-2a"]
    assert collection["summaries"]["eo:cloud_cover"]["minimum"] == pytest.approx(4.051854)
    interval = collection["extent"]["temporal"]["interval"][0]
    assert interval[1].startswith("2020-02-19T11:34:25")


def test_items_with_scene_metadata_are_valid_stac(
    landsat: dict[str, Any], node: tuple[Catalog, LocalStore], stac_schemas: Path
) -> None:
    import sys
    import warnings

    sys.path.insert(0, str(stac_schemas))
    try:
        import offline  # noqa: F401  (serves schema URLs from the local mirror)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from stac_validator import stac_validator
    finally:
        sys.path.remove(str(stac_schemas))
    catalog, _ = node
    seen = 0
    for cid in [c["id"] for c in catalog.list_collections()]:
        for item in catalog.iter_items(cid):
            seen += 1
            validator = stac_validator.StacValidate()
            assert validator.validate_dict(item), (cid, item["id"], validator.message)
        validator = stac_validator.StacValidate()
        assert validator.validate_dict(catalog.get_collection(cid)), validator.message
    assert seen >= 1


def test_landsat_collection2_mtl_json(tmp_path: Path) -> None:
    # Collection 2's MTL.json layout (groups as objects); values as USGS writes them
    mtl = {
        "LANDSAT_METADATA_FILE": {
            "IMAGE_ATTRIBUTES": {
                "SPACECRAFT_ID": "LANDSAT_9",
                "SENSOR_ID": "OLI_TIRS",
                "WRS_PATH": "91",
                "WRS_ROW": "86",
                "CLOUD_COVER": "12.34",
                "DATE_ACQUIRED": "2024-04-17",
                "SCENE_CENTER_TIME": "23:55:01.1234560Z",
                "SUN_AZIMUTH": "36.5",
                "SUN_ELEVATION": "30.25",
            },
            "PRODUCT_CONTENTS": {"PROCESSING_LEVEL": "L2SP"},
        }
    }
    stem = "LC09_L2SP_091086_20240417_20240418_02_T1"
    raster = tmp_path / f"{stem}_SR_B4.TIF"
    raster.write_bytes(b"")
    (tmp_path / f"{stem}_MTL.json").write_text(json.dumps(mtl))
    meta = read_scene_metadata([raster])
    assert meta.datetime == datetime(2024, 4, 17, 23, 55, 1, 123456, tzinfo=UTC)
    assert meta.properties["platform"] == "landsat-9"
    assert meta.properties["eo:cloud_cover"] == 12.34
    assert meta.properties["view:sun_elevation"] == 30.25
    assert meta.properties["processing:level"] == "L2SP"


def test_extension_schemas_exist_in_the_mirror(stac_schemas: Path) -> None:
    from eoshare.ingest.scene_meta import EXTENSION_SCHEMAS

    for url in EXTENSION_SCHEMAS.values():
        assert (stac_schemas / url.removeprefix("https://")).is_file(), url
