"""Data cubes built from a search, as EO users build them (issue 12, item 3): pystac-client
finds the items, then stackstac and odc-stac read the COGs over HTTP (GDAL /vsicurl/ on
the download links) into xarray. The cubes hold the pixels of the source files.

stackstac 0.5 reads the CRS from ``proj:epsg`` only, so this also checks that items carry
it beside ``proj:code`` (api/compat.py). One limit is not ours: pystac (>= 1.12) migrates
every item it parses to projection v2 and drops ``proj:epsg`` on the way, so stackstac
given a pystac ``ItemCollection`` cannot find a CRS whatever the server sends; it is given
the search's plain documents (``item_collection_as_dict()``, as its own docs do for
pystac-client searches). Both run here and in CI (dev dependencies).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pystac import ItemCollection
from pystac_client import Client

from .conftest import S2, S2C, RasterNode

SEARCH = {"collections": [S2C], "bbox": [-12.0, 24.0, -10.5, 25.5]}


@pytest.fixture(scope="module")
def items(raster_node: RasterNode) -> Iterator[ItemCollection]:
    found = Client.open(raster_node.url).search(**SEARCH).item_collection()  # type: ignore[arg-type]
    assert [i.id for i in found] == [S2]
    yield found


def _truth(shared_data: Path, band: str) -> np.ndarray:
    with rasterio.open(shared_data / "raster" / f"{S2}_{band}.tif") as src:
        return src.read(1)


def test_stackstac_cube(raster_node: RasterNode, shared_data: Path) -> None:
    import stackstac

    search = Client.open(raster_node.url).search(**SEARCH)  # type: ignore[arg-type]
    items = search.item_collection_as_dict()["features"]
    assert items[0]["properties"]["proj:epsg"] == 32629

    with warnings.catch_warnings():
        # stackstac 0.5 passes arguments that newer dask/xarray deprecate; not ours
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        cube = stackstac.stack(
            items, assets=["B04", "B08"], resolution=100, dtype="float64", snap_bounds=False
        )
        assert cube.attrs["crs"] == "epsg:32629"
        assert cube.shape == (1, 2, 1098, 1098)
        values = cube.compute().values
    for k, band in enumerate(("B04", "B08")):
        assert np.array_equal(values[0, k], _truth(shared_data, band).astype("float64"))


def test_odc_stac_cube(items: ItemCollection, shared_data: Path) -> None:
    import odc.stac

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # affine's "use @ matmul" notice, raised inside odc-geo and rasterio
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        cube = odc.stac.load(items, bands=["B04", "B08"])
        assert cube.odc.crs.epsg == 32629
        assert cube["B04"].shape == (1, 1098, 1098)
        for band in ("B04", "B08"):
            assert np.array_equal(cube[band].values[0], _truth(shared_data, band))
