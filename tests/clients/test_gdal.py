"""GDAL as EO users run it (issue 12, items 3 and 4): Debian's ``gdal-bin`` (GDAL 3.6 on
Debian 12, older than 3.9: it needs ``proj:epsg``) and the GDAL inside the rasterio
wheel, each through three doors: ``/vsicurl/`` on an asset's download link, the
``STACIT`` driver on a STAC API search, and the ``WMTS`` driver on a collection's
``wmts`` link. Pixels read through the node equal the source file's, read directly.

Runs here and in CI: ``gdalinfo`` comes from ``scripts/install-clients.sh`` (``make
test`` runs it), so a missing binary fails the test, never skips it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from api.conftest import Server

from .conftest import EMPTY, L8, L8C, S2, S2C, RasterNode

JSON = dict[str, Any]
# GDAL's WMS/WMTS drivers keep a tile cache in ./gdalwmscache unless told otherwise
NO_CACHE = {"GDAL_ENABLE_WMS_CACHE": "NO", "GDAL_DEFAULT_WMS_CACHE_PATH": "/tmp/eoshare-gdalwms"}


def _gdal(*args: str) -> str:
    exe = shutil.which(args[0])
    if exe is None:
        pytest.fail(f"{args[0]} is missing: run scripts/install-clients.sh", pytrace=False)
    done = subprocess.run(
        [exe, *args[1:]], capture_output=True, text=True, timeout=120, env=NO_CACHE
    )
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr, done.stderr
    return done.stdout


def _source_stats(path: Path) -> tuple[int, int, float]:
    with rasterio.open(path) as src:
        data = src.read(1, masked=True)
    return int(data.min()), int(data.max()), float(data.mean())


def test_debian_gdal_has_stacit() -> None:
    # Debian 12 ships GDAL 3.6, before 3.9 (which reads proj:code): the case that needs
    # proj:epsg. A newer Debian's GDAL reads both; STACIT itself came in 3.4.
    version = _gdal("gdalinfo", "--version")
    major, minor = (int(x) for x in version.split()[1].split(".")[:2])
    assert (major, minor) >= (3, 4), version
    assert "STACIT" in _gdal("gdalinfo", "--formats")


def test_debian_gdal_stacit_reads_a_search(raster_node: RasterNode, shared_data: Path) -> None:
    search = f"{raster_node.url}/search?collections={S2C}"
    listing = _gdal("gdalinfo", f'STACIT:"{search}"')
    for asset in ("B04", "B08", "TCI"):
        assert f'STACIT:"{search}":asset={asset}' in listing
    info = json.loads(_gdal("gdalinfo", "-json", "-stats", f'STACIT:"{search}":asset=B04'))
    assert info["size"] == [1098, 1098]
    assert 'ID["EPSG",32629]' in info["coordinateSystem"]["wkt"]
    meta = info["bands"][0]["metadata"][""]
    lo, hi, mean = _source_stats(shared_data / "raster" / f"{S2}_B04.tif")
    assert (int(meta["STATISTICS_MINIMUM"]), int(meta["STATISTICS_MAXIMUM"])) == (lo, hi)
    assert float(meta["STATISTICS_MEAN"]) == pytest.approx(mean, rel=1e-6)


def test_items_carry_both_projection_generations(raster_http: httpx.Client) -> None:
    item = raster_http.get(f"/collections/{S2C}/items/{S2}").json()
    props = item["properties"]
    assert props["proj:code"] == "EPSG:32629" and props["proj:epsg"] == 32629
    assert (
        "https://stac-extensions.github.io/projection/v1.2.0/schema.json" in item["stac_extensions"]
    )
    assert not [x for x in item["stac_extensions"] if "/projection/v2" in x]


def test_items_validate_with_both_projection_fields(
    raster_http: httpx.Client, stac_schemas: Path
) -> None:
    import sys
    import warnings

    sys.path.insert(0, str(stac_schemas))
    try:
        import offline  # noqa: F401  (serves schema URLs from the local mirror)

        with warnings.catch_warnings():
            # the package says it is deprecated in favour of stac_valid; same validator
            warnings.simplefilter("ignore", DeprecationWarning)
            from stac_validator import stac_validator
    finally:
        sys.path.remove(str(stac_schemas))
    item = raster_http.get(f"/collections/{S2C}/items/{S2}").json()
    validator = stac_validator.StacValidate()
    assert validator.validate_dict(item), validator.message


def test_debian_gdal_vsicurl_on_a_download_link(
    raster_http: httpx.Client, shared_data: Path
) -> None:
    item = raster_http.get(f"/collections/{L8C}/items/{L8}").json()
    href = item["assets"]["B4"]["href"]
    info = json.loads(_gdal("gdalinfo", "-json", "-stats", f"/vsicurl/{href}"))
    meta = info["bands"][0]["metadata"][""]
    lo, hi, mean = _source_stats(shared_data / "raster" / f"{L8}_B4.TIF")
    assert (int(meta["STATISTICS_MINIMUM"]), int(meta["STATISTICS_MAXIMUM"])) == (lo, hi)
    assert float(meta["STATISTICS_MEAN"]) == pytest.approx(mean, rel=1e-6)


def test_debian_gdal_wmts_on_a_collection_link(raster_http: httpx.Client, tmp_path: Path) -> None:
    coll = raster_http.get(f"/collections/{S2C}").json()
    (wmts,) = [x["href"] for x in coll["links"] if x["rel"] == "wmts"]
    info = _gdal("gdalinfo", f"WMTS:{wmts}")
    assert "Driver: WMTS" in info
    out = tmp_path / "mosaic.tif"
    _gdal("gdal_translate", "-q", "-outsize", "256", "0", f"WMTS:{wmts}", str(out))
    with rasterio.open(out) as ds:
        data = ds.read()
    # the tile pictures of the TCI mosaic: coloured pixels, not an empty canvas
    assert data.shape[0] >= 3 and int(data[:3].max()) > 0


def test_rasterio_wheel_gdal_reads_all_three_ways(
    raster_node: RasterNode, raster_http: httpx.Client, shared_data: Path
) -> None:
    item = raster_http.get(f"/collections/{S2C}/items/{S2}").json()
    with rasterio.open(shared_data / "raster" / f"{S2}_B08.tif") as src:
        truth = src.read(1, window=Window(300, 400, 64, 48))
    with rasterio.open(f"/vsicurl/{item['assets']['B08']['href']}") as ds:
        assert np.array_equal(ds.read(1, window=Window(300, 400, 64, 48)), truth)
    search = f"{raster_node.url}/search?collections={S2C}"
    with rasterio.open(f'STACIT:"{search}":asset=B08') as ds:
        assert ds.crs.to_epsg() == 32629
        assert np.array_equal(ds.read(1, window=Window(300, 400, 64, 48)), truth)
    coll = raster_http.get(f"/collections/{S2C}").json()
    (wmts,) = [x["href"] for x in coll["links"] if x["rel"] == "wmts"]
    with rasterio.Env(**NO_CACHE), rasterio.open(f"WMTS:{wmts}") as ds:
        assert ds.count >= 3 and ds.crs.to_epsg() == 3857
        picture = ds.read(out_shape=(ds.count, 128, 128))
        assert int(picture[:3].max()) > 0


def test_tile_links_only_where_they_work(
    raster_http: httpx.Client, http: httpx.Client, live_server: Server
) -> None:
    """Collections with assets elsewhere, or with no items, advertise no tiles."""

    def tile_links(client: httpx.Client, cid: str) -> list[JSON]:
        doc = client.get(f"/collections/{cid}").json()
        return [x for x in doc["links"] if x["rel"] in ("wmts", "tilejson")]

    links = tile_links(raster_http, S2C)
    assert {x["rel"] for x in links} == {"wmts", "tilejson"}
    for x in links:
        assert raster_http.get(x["href"]).status_code == 200
    assert tile_links(raster_http, EMPTY) == []
    assert raster_http.get(f"/tiles/collections/{EMPTY}/tilejson.json").status_code == 404
    # loaded STAC whose assets are on the Planetary Computer / Earth Search
    for cid in ("landsat-8-c2-l2", "sentinel-2-l2a"):
        assert tile_links(http, cid) == []
        assert http.get(f"/tiles/collections/{cid}/WMTSCapabilities.xml").status_code == 404
    # the collection list says the same as each collection
    listed = raster_http.get("/collections").json()["collections"]
    with_tiles = {c["id"] for c in listed if any(x["rel"] == "wmts" for x in c["links"])}
    assert with_tiles == {S2C, L8C}
