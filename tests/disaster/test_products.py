"""Value-added products of an activation (issue 9, item 6), on real data.

The pre-event scene is the shared Sentinel-2 tile 29RKH (B04 red, B08 NIR) as it is. The
post-event scene is made from it, honestly synthetic: the same B04, and B08 with the NIR of
the western half scaled by 0.6 (vegetation loss). The hazard is "other", so the product is
the NDVI change; its pixels are checked against numpy over the input files. Then the map
(PNG) and the report (PDF) are opened and read, and a caller without rights sees nothing.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from PIL import Image
from pypdf import PdfReader

from eoshare.ingest.raster import ingest_rasters

from .conftest import AREA, EVENT_TIME, RELEASED, SCENE_TIME, Node, json_of

PRE_TIME = EVENT_TIME - timedelta(days=5)
STATE: dict[str, Any] = {}


def _ingest(node: Node, files: list[Path], item_id: str, when: Any) -> None:
    report = ingest_rasters(
        files, catalog=node.app.state.catalog, store=node.app.state.store,
        collection_id=RELEASED, one_item=True, datetime=when, item_id=item_id,
    )  # fmt: skip
    assert not report.failures, report.failures


def _post_scene(raster: Path, out: Path) -> list[Path]:
    """B04 copied, B08 with the western half's NIR scaled by 0.6."""
    red = out / "S2A_29RKH_20200219_post_B04.tif"
    nir = out / "S2A_29RKH_20200219_post_B08.tif"
    red.write_bytes((raster / "S2A_29RKH_20200219_0_L2A_B04.tif").read_bytes())
    with rasterio.open(raster / "S2A_29RKH_20200219_0_L2A_B08.tif") as src:
        profile = src.profile
        data = src.read(1)
    half = data.shape[1] // 2
    data[:, :half] = (data[:, :half].astype("float64") * 0.6).astype(data.dtype)
    with rasterio.open(nir, "w", **profile) as dst:
        dst.write(data, 1)
    return [red, nir]


def _ndvi(red_path: Path, nir_path: Path) -> tuple[Any, Any]:
    with rasterio.open(red_path) as r, rasterio.open(nir_path) as n:
        red = r.read(1).astype("float32")
        nir = n.read(1).astype("float32")
        nodata = r.nodata
        transform = r.transform
    nd = (nir - red) / (nir + red)
    if nodata is not None:
        nd[(red == nodata) | (nir == nodata)] = np.nan
    return nd, transform


@pytest.fixture(scope="module")
def product(node: Node, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    raster = node.shared / "raster"
    body = {"hazard": "other", "area": AREA, "event_time": EVENT_TIME.isoformat(),
            "description": "landslide", "pre_days": 30, "post_days": 30}  # fmt: skip
    aid = json_of(node.post("/activations", "focal", body))["id"]
    pre_files = [raster / "S2A_29RKH_20200219_0_L2A_B04.tif",
                 raster / "S2A_29RKH_20200219_0_L2A_B08.tif"]  # fmt: skip
    _ingest(node, pre_files, "S2_29RKH_pre", PRE_TIME)
    node.clock.now = EVENT_TIME + timedelta(hours=3)
    assert json_of(node.post(f"/activations/{aid}/approve", "ops", {}))["state"] == "approved"
    # before a post-event scene, there is nothing to make
    assert node.post(f"/activations/{aid}/products", "focal").status_code == 409
    post_files = _post_scene(raster, tmp_path_factory.mktemp("post"))
    started = time.monotonic()
    _ingest(node, post_files, "S2_29RKH_post", SCENE_TIME)
    deadline = time.monotonic() + 90
    products: list[Any] = []
    while time.monotonic() < deadline and not products:
        products = json_of(node.get(f"/activations/{aid}/summary", "focal"))["products"]
        time.sleep(0.2)
    assert products, node.app.state.products.errors
    STATE["ingest_to_product_s"] = time.monotonic() - started
    return {"aid": aid, "pre": pre_files, "post": post_files, **products[0]}


def test_the_product_appears_after_the_post_event_ingest(product: dict[str, Any]) -> None:
    assert product["collection"] == f"activation-{product['aid']}"
    assert product["trigger"] == "post-event scene"
    assert product["seconds_from_approval"] >= 0
    assert product["statistics"]["loss_area_km2"] > 0


def _item(node: Node, product: dict[str, Any], who: str | None) -> Any:
    return node.get(f"/collections/{product['collection']}/items/{product['item']}", who)


def _asset(node: Node, product: dict[str, Any], key: str, who: str | None) -> Any:
    return node.get(f"/download/{product['collection']}/{product['item']}/{key}", who)


def test_pixels_equal_numpy_ndvi_change(node: Node, product: dict[str, Any]) -> None:
    item = json_of(_item(node, product, "analyst"))
    links = {link["title"] for link in item["links"] if link["rel"] == "derived_from"}
    assert links == {f"{RELEASED}/S2_29RKH_pre", f"{RELEASED}/S2_29RKH_post"}
    assert "load_collection" in item["properties"]["processing:lineage"]
    r = _asset(node, product, "product", "analyst")
    assert r.status_code == 200
    with rasterio.MemoryFile(r.content) as mem, mem.open() as ds:
        got = ds.read(1)
        t = ds.transform
    before, src_t = _ndvi(*product["pre"])
    after, _ = _ndvi(*product["post"])
    col = round((t.c - src_t.c) / src_t.a)
    row = round((t.f - src_t.f) / src_t.e)
    assert abs(t.a - src_t.a) < 1e-6
    want = (after - before)[row : row + got.shape[0], col : col + got.shape[1]]
    assert want.shape == got.shape
    assert np.allclose(got, want, atol=1e-5, equal_nan=True)
    assert np.isfinite(got).sum() > 1000 and (got < -0.05).sum() > 100


def test_map_png_is_a_real_map(node: Node, product: dict[str, Any]) -> None:
    r = _asset(node, product, "map", "focal")
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert img.size == (1200, 900)
    pixels = np.asarray(img)
    assert len({tuple(p) for p in pixels.reshape(-1, 3)[::7]}) > 50
    legend = pixels[360:540, 860:1180]  # the legend panel, right of the map
    assert (legend.min(axis=2) < 200).sum() > 500


def test_report_pdf_says_what_it_shows(node: Node, product: dict[str, Any]) -> None:
    r = _asset(node, product, "report", "focal")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(r.content))
    assert len(reader.pages) == 1
    text = " ".join(reader.pages[0].extract_text().split())
    stats = product["statistics"]
    for needle in ("Area:", "km2", "2020-02-18", "2020-02-13", "2020-02-19", "S2_29RKH_pre",
                   "S2_29RKH_post", f"{stats['loss_area_km2']:.3f}"):  # fmt: skip
        assert needle in text, (needle, text[:500])


def test_callers_without_rights_see_no_product(node: Node, product: dict[str, Any]) -> None:
    for who in ("outsider", None):
        assert _item(node, product, who).status_code == 404
        assert _asset(node, product, "product", who).status_code in (401, 403, 404)
    assert node.post(f"/activations/{product['aid']}/products", "outsider").status_code == 404


def test_the_action_remakes_the_product(node: Node, product: dict[str, Any]) -> None:
    r = node.post(f"/activations/{product['aid']}/products", "focal")
    assert r.status_code == 201, r.text
    doc = json_of(r)
    assert doc["item"] == product["item"] and doc["statistics"] == product["statistics"]
