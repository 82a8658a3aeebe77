"""The /tiles routes through the real app, pixel values checked against rio-tiler and
rasterio reading the same stored files in-process."""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import morecantile
import numpy as np
import pytest
import rasterio
import rasterio.warp
from fastapi.testclient import TestClient
from PIL import Image

from eoshare.access import Decision

from .conftest import L8, L8C, S2, S2_LATER, S2C, ScriptedPolicy
from .conftest import quiet_reader as Reader

ITEM = f"/tiles/collections/{S2C}/items/{S2}"
WM = morecantile.tms.get("WebMercatorQuad")
# the S2 tile is in Western Sahara, around this point
LON, LAT = -11.43, 24.8
Z10 = WM.tile(LON, LAT, 10)
TILE10 = f"{ITEM}/tiles/WebMercatorQuad/10/{Z10.x}/{Z10.y}"


def _png(content: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(content))
    img.load()
    return img


def _problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    assert detail
    return detail


# --- STAC discovery -------------------------------------------------------------------
def test_items_carry_tile_links_and_rendered_preview(client: TestClient) -> None:
    item = client.get(f"/collections/{S2C}/items/{S2}").json()
    rels = {x["rel"]: x for x in item["links"]}
    assert rels["tilejson"]["type"] == "application/json"
    assert rels["xyz"]["type"] == "image/png"
    assert "/tiles/WebMercatorQuad/{z}/{x}/{y}.png" in rels["xyz"]["href"]
    preview = item["assets"]["rendered_preview"]
    assert preview["roles"] == ["overview"] and preview["type"] == "image/png"
    assert "thumbnail" in item["assets"]
    # every advertised URL works as it stands
    tj = client.get(rels["tilejson"]["href"])
    assert tj.status_code == 200
    assert _png(client.get(preview["href"]).content).format == "PNG"
    xyz = rels["xyz"]["href"].format(z=10, x=Z10.x, y=Z10.y)
    assert client.get(xyz).status_code == 200
    # search results are decorated too
    found = client.get("/search", params={"collections": L8C}).json()["features"]
    assert all("rendered_preview" in f["assets"] for f in found)


def test_collections_carry_a_wmts_link(client: TestClient) -> None:
    coll = client.get(f"/collections/{S2C}").json()
    wmts = [x for x in coll["links"] if x["rel"] == "wmts"]
    assert len(wmts) == 1
    response = client.get(wmts[0]["href"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")


# --- TileJSON and tiles ---------------------------------------------------------------
def test_tilejson_default_rendering(client: TestClient) -> None:
    doc = client.get(f"{ITEM}/tilejson.json").json()
    assert doc["tilejson"] == "3.0.0"
    (template,) = doc["tiles"]
    assert re.search(r"/tiles/WebMercatorQuad/\{z\}/\{x\}/\{y\}\.png\?assets=TCI$", template)
    west, south, east, north = doc["bounds"]
    assert west < LON < east and south < LAT < north
    # 100 m pixels: zoom 10 (~140 m at this latitude) is the first finer than the data
    assert doc["minzoom"] <= 8 and doc["maxzoom"] == 10
    tile = client.get(template.format(z=10, x=Z10.x, y=Z10.y))
    assert tile.status_code == 200
    assert tile.headers["content-type"] == "image/png"
    img = _png(tile.content)
    assert img.size == (256, 256) and img.mode == "RGBA"


def test_tilejson_keeps_parameters_and_other_tms(client: TestClient) -> None:
    params = {
        "expression": "(B08-B04)/(B08+B04)",
        "rescale": "-0.1,0.3",
        "colormap_name": "viridis",
        "tileMatrixSetId": "WGS1984Quad",
        "tile_format": "webp",
    }
    doc = client.get(f"{ITEM}/tilejson.json", params=params).json()
    url = urlsplit(doc["tiles"][0])
    assert "/tiles/WGS1984Quad/{z}/{x}/{y}.webp" in url.path
    query = parse_qs(url.query)
    assert query["expression"] == ["(B08-B04)/(B08+B04)"] and query["rescale"] == ["-0.1,0.3"]
    tms = morecantile.tms.get("WGS1984Quad")
    t = tms.tile(LON, LAT, 8)
    tile = client.get(doc["tiles"][0].format(z=8, x=t.x, y=t.y))
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/webp"
    assert _png(tile.content).size == (256, 256)


def test_rgb_tile_equals_rio_tiler(client: TestClient, store_path: Any) -> None:
    response = client.get(f"{TILE10}.png", params={"assets": "TCI"})
    ours = np.asarray(_png(response.content))
    with Reader(store_path(S2C, S2, "TCI")) as src:
        ref = src.tile(Z10.x, Z10.y, 10)
    np.testing.assert_array_equal(ours[..., :3], np.moveaxis(ref.data, 0, -1))
    np.testing.assert_array_equal(ours[..., 3], ref.mask)


def test_ndvi_tile_equals_computed_ndvi(client: TestClient, store_path: Any) -> None:
    response = client.get(f"{TILE10}.tif", params={"expression": "(B08-B04)/(B08+B04)"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/tiff; application=geotiff"
    with rasterio.MemoryFile(response.content) as mem, mem.open() as ds:
        ours = ds.read(1)
        valid = ds.read_masks(1) > 0
        assert ds.crs.to_epsg() == 3857
    with Reader(store_path(S2C, S2, "B08")) as nir, Reader(store_path(S2C, S2, "B04")) as red:
        n = nir.tile(Z10.x, Z10.y, 10).array[0].astype("float64")
        r = red.tile(Z10.x, Z10.y, 10).array[0].astype("float64")
    expected = (n - r) / (n + r)
    assert valid.sum() > 1000
    np.testing.assert_array_equal(valid, ~np.ma.getmaskarray(expected))
    np.testing.assert_allclose(ours[valid], expected.data[valid], rtol=1e-6)
    # common names mean the same bands
    by_name = client.get(f"{TILE10}.tif", params={"expression": "(nir-red)/(nir+red)"})
    assert by_name.content == response.content


def test_rescale_and_colormap_pixels(client: TestClient, store_path: Any) -> None:
    from rio_tiler.colormap import cmap

    grey = client.get(f"{TILE10}.png", params={"assets": "B04", "rescale": "0,6000"})
    with Reader(store_path(S2C, S2, "B04")) as src:
        ref = src.tile(Z10.x, Z10.y, 10)
    expected = np.clip(ref.array[0].astype("float64") / 6000 * 255, 0, 255).round()
    ours = np.asarray(_png(grey.content))
    assert ours.ndim == 3 and ours.shape[2] == 2  # grey + alpha
    valid = ours[..., 1] > 0
    assert np.abs(ours[..., 0][valid].astype(int) - expected[valid]).max() <= 1
    coloured = client.get(
        f"{TILE10}.png", params={"assets": "B04", "rescale": "0,6000", "colormap_name": "magma"}
    )
    rgba = np.asarray(_png(coloured.content).convert("RGBA"))
    magma = cmap.get("magma")
    y, x = np.argwhere(valid)[0]
    assert tuple(rgba[y, x]) == tuple(magma[int(ours[y, x, 0])])


def test_rgb_from_three_files(client: TestClient, store_path: Any) -> None:
    params = {"assets": ["B08", "B04", "SCL"], "rescale": ["0,6000", "0,6000", "0,11"]}
    response = client.get(f"{TILE10}.png", params=params)
    assert response.status_code == 200, response.text
    img = np.asarray(_png(response.content))
    assert img.shape == (256, 256, 4)
    valid = img[..., 3] > 0
    for channel, asset, top in ((0, "B08", 6000), (1, "B04", 6000), (2, "SCL", 11)):
        with Reader(store_path(S2C, S2, asset)) as src:
            band = src.tile(Z10.x, Z10.y, 10).array[0].astype("float64")
        expected = np.clip(band / top * 255, 0, 255).round()
        diff = np.abs(img[..., channel][valid].astype(int) - expected[valid])
        assert diff.max() <= 1, asset


def test_formats_scale_and_http_caching(client: TestClient, tiles_app: Any) -> None:
    magic = {"png": b"\x89PNG", "jpg": b"\xff\xd8\xff", "webp": b"RIFF", "tif": b"II*\x00"}
    types = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
    for ext, start in magic.items():
        r = client.get(f"{TILE10}.{ext}")
        assert r.status_code == 200, r.text
        assert r.content.startswith(start)
        assert r.headers["content-type"] == types.get(ext, "image/tiff; application=geotiff")
        assert r.headers["cache-control"] == "public, max-age=3600"
    assert _png(client.get(f"{TILE10}@2x.png").content).size == (512, 512)
    assert client.get(f"{TILE10}.jpeg").headers["content-type"] == "image/jpeg"
    # ETag: the same bytes, the same tag; If-None-Match answers 304 with no body
    first = client.get(TILE10, params={"assets": "B04"})
    hits = tiles_app.state.tiles.cache.hits
    again = client.get(TILE10, params={"assets": "B04"})
    assert tiles_app.state.tiles.cache.hits == hits + 1  # served from the in-process cache
    assert first.headers["etag"] == again.headers["etag"] and first.content == again.content
    cached = client.get(
        TILE10, params={"assets": "B04"}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == first.headers["etag"]
    other = client.get(TILE10, params={"assets": "B08"})
    assert other.headers["etag"] != first.headers["etag"]


def test_greyscale_default_uses_percentile_stretch(client: TestClient, store_path: Any) -> None:
    item = f"/tiles/collections/{L8C}/items/{L8}"
    img = np.asarray(_png(client.get(f"{item}/preview.png").content))
    assert img.ndim == 3 and img.shape[2] == 2  # one grey band + alpha
    with rasterio.open(store_path(L8C, L8, "B4")) as ds:
        data = ds.read(1).astype("float64")
    assert img.shape[:2] == data.shape  # smaller than max_size: the native grid
    lo, hi = np.percentile(data, [2, 98])
    expected = np.clip((data - lo) / (hi - lo) * 255, 0, 255)
    # the stretch is measured on a 256-pixel preview: nearly, not exactly, these bounds
    close = np.abs(img[..., 0].astype(float) - expected) <= 4
    assert close.mean() > 0.97


# --- previews, points, statistics -------------------------------------------------------
def test_preview_sizes(client: TestClient) -> None:
    img = _png(client.get(f"{ITEM}/preview.png", params={"max_size": 300}).content)
    assert max(img.size) == 300
    img = _png(client.get(f"{ITEM}/preview.jpg", params={"width": 120, "height": 80}).content)
    assert img.size == (120, 80) and img.mode == "RGB"
    r = client.get(f"{ITEM}/preview", params={"assets": "B04", "max_size": 64})
    assert r.headers["content-type"] == "image/png" and max(_png(r.content).size) == 64


def test_point_values(client: TestClient, store_path: Any) -> None:
    r = client.get(f"{ITEM}/point/{LON},{LAT}", params={"assets": ["B04", "B08"]})
    assert r.status_code == 200
    body = r.json()
    with (
        rasterio.open(store_path(S2C, S2, "B04")) as red,
        rasterio.open(store_path(S2C, S2, "B08")) as nir,
    ):
        xs, ys = rasterio.warp.transform("EPSG:4326", red.crs, [LON], [LAT])
        expected = [int(next(ds.sample([(xs[0], ys[0])]))[0]) for ds in (red, nir)]
    assert body["values"] == expected
    assert body["band_names"] == ["B04_b1", "B08_b1"]
    ndvi = client.get(f"{ITEM}/point/{LON},{LAT}", params={"expression": "(B08-B04)/(B08+B04)"})
    r4, n8 = expected
    assert ndvi.json()["values"][0] == pytest.approx((n8 - r4) / (n8 + r4), rel=1e-6)


def test_statistics_over_bbox_and_feature(client: TestClient, store_path: Any) -> None:
    box = (-11.6, 24.6, -11.3, 24.9)
    r = client.get(f"{ITEM}/statistics", params={"assets": "B04", "bbox": ",".join(map(str, box))})
    assert r.status_code == 200, r.text
    stats = r.json()["bands"]["B04_b1"]
    with rasterio.open(store_path(S2C, S2, "B04")) as ds:
        left, bottom, right, top = rasterio.warp.transform_bounds("EPSG:4326", ds.crs, *box)
        window = ds.window(left, bottom, right, top)
        data = ds.read(1, window=window, masked=True)
    assert stats["mean"] == pytest.approx(float(data.mean()), rel=0.01)
    assert stats["max"] <= float(data.max()) and stats["min"] >= float(data.min())
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[0], box[1]]]
            ],
        },
    }
    tri = client.post(f"{ITEM}/statistics", params={"assets": "B04"}, json=feature)
    assert tri.status_code == 200, tri.text
    tri_stats = tri.json()["bands"]["B04_b1"]
    # a triangle over half the box: about half the pixels
    assert 0.4 < tri_stats["count"] / stats["count"] < 0.65
    ndvi = client.get(
        f"{ITEM}/statistics",
        params={"expression": "(B08-B04)/(B08+B04)", "bbox": ",".join(map(str, box))},
    ).json()
    assert -0.2 < ndvi["bands"]["(B08-B04)/(B08+B04)"]["mean"] < 0.3


# --- bad input --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "params", "status", "phrase"),
    [
        (f"{ITEM}/tiles/WebMercatorQuad/10/1/1.png", {}, 404, "outside"),
        (f"{ITEM}/tiles/WebMercatorQuad/30/0/0.png", {}, 404, "does not exist"),
        (f"{ITEM}/tiles/WebMercatorQuad/2/9/0.png", {}, 404, "does not exist"),
        (f"{ITEM}/tiles/NoSuchTMS/10/1/1.png", {}, 404, "tile matrix set"),
        (f"{ITEM}/tilejson.json", {"tileMatrixSetId": "NoSuchTMS"}, 404, "tile matrix set"),
        ("/tiles/tileMatrixSets/NoSuchTMS", {}, 404, "tile matrix set"),
        (f"{TILE10}.gif", {}, 400, "format"),
        (f"{TILE10}@9x.png", {}, 400, "scale"),
        (f"{ITEM}/tiles/WebMercatorQuad/10/1/abc", {}, 400, "tile row"),
        (TILE10, {"assets": "B99"}, 400, "no raster asset 'B99'"),
        (TILE10, {"assets": "TCI", "bidx": 7}, 400, "band 7"),
        (TILE10, {"expression": "B04 +"}, 400, "expression"),
        (TILE10, {"expression": "__import__('os').system('id')"}, 400, "expression"),
        (TILE10, {"expression": "B04 + B99"}, 400, "B99"),
        (TILE10, {"expression": "B04;B08"}, 400, "2"),
        (TILE10, {"assets": "TCI", "colormap_name": "viridis"}, 400, "colormap_name"),
        (TILE10, {"colormap_name": "nosuch"}, 400, "colormap_name"),
        (TILE10, {"rescale": "a,b"}, 400, "rescale"),
        (f"{ITEM}/preview.png", {"width": 100000, "height": 100000}, 400, "limit"),
        (f"{ITEM}/preview.png", {"max_size": 100000}, 400, "limit"),
        (f"{ITEM}/point/200,24.8", {}, 400, "longitude"),
        (f"{ITEM}/point/0,0", {}, 404, "outside"),
        (f"{ITEM}/point/abc,24.8", {}, 400, "lon"),
        (f"{ITEM}/statistics", {"bbox": "1,2,3"}, 400, "bbox"),
        (f"/tiles/collections/{S2C}/items/nope/tilejson.json", {}, 404, "nope"),
        ("/tiles/collections/nope/tiles/WebMercatorQuad/10/1/1.png", {}, 404, "nope"),
    ],
)
def test_bad_input_is_a_clear_problem(
    client: TestClient, path: str, params: dict[str, Any], status: int, phrase: str
) -> None:
    detail = _problem(client.get(path, params=params), status)
    assert phrase.lower() in detail.lower()


def test_bad_statistics_bodies(client: TestClient) -> None:
    for body in ([1, 2], {"type": "Point", "coordinates": [0, 0]}, {"type": "Feature"}):
        _problem(client.post(f"{ITEM}/statistics", json=body), 400)
    _problem(client.post(f"{ITEM}/statistics", content=b"{not json"), 400)


# --- access -----------------------------------------------------------------------------
def test_hidden_item_answers_404_everywhere(client: TestClient, policy: ScriptedPolicy) -> None:
    policy.hidden.add(S2)
    for path in (
        f"{TILE10}.png", f"{ITEM}/tilejson.json", f"{ITEM}/preview.png",
        f"{ITEM}/point/{LON},{LAT}", f"{ITEM}/statistics", f"{ITEM}/WMTSCapabilities.xml",
    ):  # fmt: skip
        _problem(client.get(path), 404)
    assert policy.grants == []


def test_denied_answers_403_naming_the_agreement(
    client: TestClient, policy: ScriptedPolicy
) -> None:
    policy.decisions[S2] = Decision.denied("members only", agreement="s2-members")
    detail = _problem(client.get(f"{TILE10}.png"), 403)
    assert "members only" in detail and "s2-members" in detail
    _problem(client.get(f"{ITEM}/preview.png"), 403)
    _problem(client.get(f"{ITEM}/point/{LON},{LAT}"), 403)
    assert policy.grants == []


def test_reduced_resolution_limits_zoom_and_previews(
    client: TestClient, policy: ScriptedPolicy
) -> None:
    policy.decisions[S2] = Decision.reduced(500.0, agreement="public-500m")
    doc = client.get(f"{ITEM}/tilejson.json").json()
    # zoom 8 pixels are ~555 m at 24.8 N, zoom 9 ~278 m
    assert doc["maxzoom"] == 8
    z8 = WM.tile(LON, LAT, 8)
    ok = client.get(f"{ITEM}/tiles/WebMercatorQuad/8/{z8.x}/{z8.y}.png")
    assert ok.status_code == 200
    z9 = WM.tile(LON, LAT, 9)
    detail = _problem(client.get(f"{ITEM}/tiles/WebMercatorQuad/9/{z9.x}/{z9.y}.png"), 403)
    assert "500 m" in detail and "public-500m" in detail and "zoom 8" in detail
    # @2x at zoom 8 has ~278 m pixels: refused as well
    _problem(client.get(f"{ITEM}/tiles/WebMercatorQuad/8/{z8.x}/{z8.y}@2x.png"), 403)
    # previews shrink so that pixels stay >= 500 m: the scene is 1098 x 100 m wide
    img = _png(client.get(f"{ITEM}/preview.png", params={"max_size": 1024}).content)
    assert max(img.size) == 1098 * 100 // 500
    # point values are averaged over a 500 m cell
    point = client.get(f"{ITEM}/point/{LON},{LAT}", params={"assets": "B04"}).json()
    assert point["resolution_m"] == 500.0 and point["values"][0] is not None
    stats = client.get(f"{ITEM}/statistics", params={"assets": "B04"}).json()
    assert max(stats["width"], stats["height"]) <= 1098 * 100 // 500
    assert all(g[2] == "reduced" for g in policy.grants)


def test_grants_are_recorded_with_bytes(client: TestClient, policy: ScriptedPolicy) -> None:
    r = client.get(f"{TILE10}.png", params={"assets": ["B04", "B08"], "expression": "B08-B04"})
    assert r.status_code == 200
    assert sorted(g[1] for g in policy.grants) == ["B04", "B08"]
    assert sum(g[3] for g in policy.grants) == len(r.content)


# --- mosaics ------------------------------------------------------------------------------
def test_mosaic_tile_of_a_search(
    client: TestClient, policy: ScriptedPolicy, store_path: Any
) -> None:
    url = f"/tiles/collections/{S2C}/tiles/WebMercatorQuad/10/{Z10.x}/{Z10.y}.png"
    r = client.get(url, params={"assets": "B04", "rescale": "0,6000"})
    assert r.status_code == 200, r.text
    single = client.get(f"{TILE10}.png", params={"assets": "B04", "rescale": "0,6000"})
    assert np.array_equal(np.asarray(_png(r.content)), np.asarray(_png(single.content)))
    assert next(g[0] for g in policy.grants if g[0] != S2) == S2_LATER  # newest on top
    # a datetime filter picks the older item alone; hidden items are never used
    policy.grants.clear()
    policy.hidden.add(S2_LATER)
    r = client.get(
        url, params={"assets": "B04", "datetime": "2020-02-01T00:00:00Z/2020-02-28T00:00:00Z"}
    )
    assert r.status_code == 200
    assert {g[0] for g in policy.grants} == {S2}
    policy.hidden.add(S2)
    _problem(client.get(url, params={"assets": "B04"}), 404)
    policy.hidden.clear()
    # outside every item: 404, like single-item tiles
    _problem(client.get(f"/tiles/collections/{S2C}/tiles/WebMercatorQuad/10/1/1.png"), 404)
    # reduced for every item and too fine: 403
    policy.decisions[S2] = policy.decisions[S2_LATER] = Decision.reduced(1000.0)
    _problem(client.get(url), 403)


def test_mosaic_tilejson_and_filter(client: TestClient) -> None:
    doc = client.get(
        f"/tiles/collections/{S2C}/tilejson.json",
        params={
            "datetime": "2020-02-01T00:00:00Z/2020-04-01T00:00:00Z",
            "filter": "id = 'S2A_29RKH_later'",
        },
    ).json()
    assert doc["maxzoom"] == 10
    template = doc["tiles"][0]
    assert "/tiles/collections/s2/tiles/WebMercatorQuad/{z}/{x}/{y}.png?" in template
    assert client.get(template.format(z=10, x=Z10.x, y=Z10.y)).status_code == 200
    _problem(client.get(f"/tiles/collections/{S2C}/tilejson.json", params={"filter": "(("}), 400)


def test_tile_matrix_sets(client: TestClient) -> None:
    sets = client.get("/tiles/tileMatrixSets").json()["tileMatrixSets"]
    ids = {s["id"] for s in sets}
    assert {"WebMercatorQuad", "WGS1984Quad", "WorldCRS84Quad"} <= ids
    one = client.get("/tiles/tileMatrixSets/WebMercatorQuad").json()
    assert one["id"] == "WebMercatorQuad" and len(one["tileMatrices"]) == 25
