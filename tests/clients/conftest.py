"""Nodes for the client tests: clients that EO users already have, none written here,
each driven against a real eoshare node on 127.0.0.1.

- ``live_server`` (from tests/api/conftest.py, the same instance): the shared STAC
  documents (Landsat, Sentinel-1/2 from the Planetary Computer and Earth Search),
  assets remote; for the STAC API clients (stac-api-validator, pystac-client).
- ``raster_node``: real rasters from ``../shared/data/raster`` ingested as COGs (the
  Sentinel-2 tile 29RKH: B04, B08, TCI; Landsat 8 B4, B5), so that clients read bytes:
  GDAL, stackstac, odc-stac, OWSLib, curl/wget, STAC Browser's thumbnails and map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.conftest import Server, catalog_backend, http, live_server  # noqa: F401  (shared fixtures)
from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.settings import load_settings
from eoshare.storage import open_store
from live import live_node

ADMIN_TOKEN = "clients-test-admin-token-0123456789"
S2 = "S2A_29RKH_20200219_0_L2A"
L8 = "LC08_L1TP_016037_20170813_20170814_01_RT"
S2C = "s2-29rkh"
L8C = "l8-016037"
EMPTY = "nothing-yet"


@dataclass
class RasterNode:
    url: str
    data_dir: Path

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def raster_node(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[RasterNode]:
    raster = shared_data / "raster"
    data_dir = tmp_path_factory.mktemp("eoshare-clients")
    settings = load_settings(data_dir=data_dir)
    catalog = open_catalog(settings.catalog_url)
    store = open_store(settings.storage_url)
    try:
        for files, cid in (
            ([raster / f"{S2}_{b}.tif" for b in ("B04", "B08", "TCI")], S2C),
            ([raster / f"{L8}_{b}.TIF" for b in ("B4", "B5")], L8C),
        ):
            report = ingest_rasters(
                files, catalog=catalog, store=store, collection_id=cid, create_collection=True
            )
            assert report.ok, report.failures
        # a collection with no items yet: it has nothing to draw
        doc = catalog.get_collection(S2C)
        catalog.create_collection({**doc, "id": EMPTY, "title": "Nothing yet"})
    finally:
        catalog.close()
    env = {"EOSHARE_LOG_LEVEL": "warning", "EOSHARE_API__ADMIN_TOKEN": ADMIN_TOKEN}
    with live_node(data_dir, env) as url:
        yield RasterNode(url, data_dir)
    log = (data_dir / "server.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture()
def raster_http(raster_node: RasterNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=raster_node.url, timeout=60) as client:
        yield client
