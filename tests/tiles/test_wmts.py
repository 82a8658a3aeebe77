"""WMTS capabilities as QGIS-style clients read them: OWSLib against a live server on
127.0.0.1, fetching real tiles through the advertised RESTful template."""

from __future__ import annotations

import io
import warnings
from urllib.parse import quote

import morecantile
import pytest
from owslib.wmts import WebMapTileService
from PIL import Image

from .conftest import S2, S2C

LON, LAT = -11.43, 24.8


def _wmts(url: str) -> WebMapTileService:
    with warnings.catch_warnings():
        # OWSLib's own use of deprecated stdlib calls is not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        return WebMapTileService(url, version="1.0.0", timeout=60)


@pytest.mark.parametrize("tms_id", ["WebMercatorQuad", "WGS1984Quad"])
def test_owslib_reads_item_capabilities_and_fetches_a_tile(live_tiles: str, tms_id: str) -> None:
    url = (
        f"{live_tiles}/tiles/collections/{S2C}/items/{S2}/WMTSCapabilities.xml"
        f"?tileMatrixSetId={tms_id}&expression={quote('(B08-B04)/(B08+B04)')}"
        "&rescale=-0.1,0.3&colormap_name=rdylgn"
    )
    wmts = _wmts(url)
    assert list(wmts.contents) == [S2]
    layer = wmts.contents[S2]
    assert tms_id in layer.tilematrixsetlinks
    west, south, east, north = layer.boundingBoxWGS84
    assert west < LON < east and south < LAT < north
    assert "image/png" in layer.formats
    tms = morecantile.tms.get(tms_id)
    matrix_set = wmts.tilematrixsets[tms_id]
    limits = layer.tilematrixsetlinks[tms_id].tilematrixlimits
    z = max(int(k) for k in limits)
    assert str(z) in matrix_set.tilematrix
    tile = tms.tile(LON, LAT, z)
    lim = limits[str(z)]
    assert lim.mintilecol <= tile.x <= lim.maxtilecol
    assert lim.mintilerow <= tile.y <= lim.maxtilerow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        response = wmts.gettile(
            layer=S2, tilematrixset=tms_id, tilematrix=str(z), row=tile.y, column=tile.x,
            format="image/png",
        )  # fmt: skip
    img = Image.open(io.BytesIO(response.read()))
    assert img.format == "PNG" and img.size == (256, 256) and img.mode == "RGBA"


def test_owslib_reads_collection_mosaic_capabilities(live_tiles: str) -> None:
    wmts = _wmts(f"{live_tiles}/tiles/collections/{S2C}/WMTSCapabilities.xml?assets=TCI")
    layer = wmts.contents[S2C]
    limits = layer.tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits
    z = max(int(k) for k in limits)
    tile = morecantile.tms.get("WebMercatorQuad").tile(LON, LAT, z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        response = wmts.gettile(
            layer=S2C, tilematrixset="WebMercatorQuad", tilematrix=str(z), row=tile.y,
            column=tile.x,
        )  # fmt: skip
    assert Image.open(io.BytesIO(response.read())).size == (256, 256)
