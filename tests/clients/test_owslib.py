"""OWSLib (the WMTS client inside QGIS-style tools) following what STAC advertises: each
collection's ``wmts`` link opens, names its layer, and serves tiles of the mosaic. The
tile routes themselves are tested in depth in tests/tiles/test_wmts.py; this is the
discovery path a user takes. OWSLib is a dev dependency: here and in CI, no skips."""

from __future__ import annotations

import io
import warnings

import httpx
import morecantile
from owslib.wmts import WebMapTileService
from PIL import Image

from .conftest import L8C, S2C, RasterNode


def test_owslib_follows_the_collection_wmts_links(
    raster_node: RasterNode, raster_http: httpx.Client
) -> None:
    listed = raster_http.get("/collections").json()["collections"]
    links = {c["id"]: x["href"] for c in listed for x in c["links"] if x["rel"] == "wmts"}
    assert set(links) == {S2C, L8C}
    tms = morecantile.tms.get("WebMercatorQuad")
    for cid, href in links.items():
        with warnings.catch_warnings():
            # OWSLib's own use of deprecated stdlib calls is not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            wmts = WebMapTileService(href, version="1.0.0", timeout=60)
            layer = wmts.contents[cid]
            west, south, east, north = layer.boundingBoxWGS84
            limits = layer.tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits
            z = max(int(k) for k in limits)
            tile = tms.tile((west + east) / 2, (south + north) / 2, z)
            response = wmts.gettile(
                layer=cid, tilematrixset="WebMercatorQuad", tilematrix=str(z),
                row=tile.y, column=tile.x,
            )  # fmt: skip
        picture = Image.open(io.BytesIO(response.read()))
        assert picture.format == "PNG" and picture.size == (256, 256)
        assert picture.getextrema()[0][1] > 0, cid  # something drawn
