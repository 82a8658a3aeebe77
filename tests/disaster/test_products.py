"""Value-added products of an activation (issue 9, item 6), on real data.

The pre-event scene is the shared Sentinel-2 tile 29RKH (B04 red, B08 NIR) as it is. The
post-event scene is made from it, honestly synthetic: the same B04, and B08 with the NIR of
the western half scaled by 0.6 (vegetation loss). The hazard is "other", so the product is
the NDVI change; its pixels are checked against numpy over the input files. Then the map
(PNG) and the report (PDF) are opened and read, and a caller without rights sees nothing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from PIL import Image
from pypdf import PdfReader

from eoshare.access.base import Principal
from eoshare.ingest.raster import ingest_rasters

from .conftest import AREA, EVENT_TIME, RELEASED, SCENE_TIME, Node, json_of

PRE_TIME = EVENT_TIME - timedelta(days=5)
OPS = Principal(user="ops", roles=frozenset({"operator"}))
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


def test_the_product_appears_after_the_post_event_ingest(
    node: Node, product: dict[str, Any]
) -> None:
    assert product["collection"] == f"activation-{product['aid']}"
    assert product["trigger"] == "post-event scene"
    assert product["seconds_from_approval"] >= 0
    assert product["statistics"]["loss_area_km2"] > 0
    summary = json_of(node.get(f"/activations/{product['aid']}/summary", "focal"))
    assert summary["seconds_approval_to_first_product"] == product["seconds_from_approval"]
    # the archive still lists scenes only
    archive = json_of(node.get(f"/activations/{product['aid']}/archive", "focal"))
    assert [f["id"] for f in archive["features"]] == ["S2_29RKH_post", "S2_29RKH_pre"]


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


def test_cli_makes_the_product(node: Node, product: dict[str, Any]) -> None:
    data_dir = str(node.app.state.settings.data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eoshare.cli", "activations", "product", *args,
             "--data-dir", data_dir, "--json"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip

    done = cli(product["aid"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["item"] == product["item"]
    bad = cli("act-nope")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


# --- flood and fire on tiny synthetic scenes with known values --------------------------
# The shared scene has no green or SWIR band, so these two hazards run on small GeoTIFFs
# written here (UTM 32N, 30 m pixels, 60 x 60) whose indices are known by construction.
SYN_EVENT = EVENT_TIME - timedelta(days=8)  # 2020-02-10, away from the S2 activation
SYN_ORIGIN = (500_010.0, 5_000_010.0)  # UTM 32N (lon ~9.0, lat ~45.15)
SYN_AREA = {
    "type": "Polygon",
    "coordinates": [[[8.995, 45.13], [9.03, 45.13], [9.03, 45.16], [8.995, 45.16],
                     [8.995, 45.13]]],
}  # fmt: skip
PIXEL_KM2 = 30 * 30 / 1e6


def _write_bands(out: Path, stem: str, bands: dict[str, Any]) -> list[Path]:
    from rasterio.transform import from_origin

    paths = []
    for name, data in bands.items():
        path = out / f"{stem}_{name}.tif"
        profile = {"driver": "GTiff", "width": 60, "height": 60, "count": 1, "dtype": "uint16",
                   "crs": "EPSG:32632", "transform": from_origin(*SYN_ORIGIN, 30, 30),
                   "nodata": 0}  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype("uint16"), 1)
        paths.append(path)
    return paths


def _synthetic_product(
    node: Node, tmp: Path, hazard: str, pre: dict[str, Any], post: dict[str, Any]
) -> tuple[dict[str, Any], Any]:
    body = {"hazard": hazard, "area": SYN_AREA, "event_time": SYN_EVENT.isoformat(),
            "pre_days": 3, "post_days": 3}  # fmt: skip
    aid = json_of(node.post("/activations", "focal", body))["id"]
    _ingest(node, _write_bands(tmp, f"SYN_{hazard}_pre", pre), f"syn-{hazard}-pre",
            SYN_EVENT - timedelta(days=1))  # fmt: skip
    assert json_of(node.post(f"/activations/{aid}/approve", "ops", {}))["state"] == "approved"
    _ingest(node, _write_bands(tmp, f"SYN_{hazard}_post", post), f"syn-{hazard}-post",
            SYN_EVENT + timedelta(days=1))  # fmt: skip
    deadline = time.monotonic() + 60  # the automatic product first
    while (
        time.monotonic() < deadline
        and not node.app.state.disaster.activations.summary(OPS, aid)["products"]
    ):
        time.sleep(0.1)
    r = node.post(f"/activations/{aid}/products", "analyst")
    assert r.status_code == 201, r.text
    doc = json_of(r)
    content = _asset(node, doc, "product", "analyst").content
    with rasterio.MemoryFile(content) as mem, mem.open() as ds:
        got = ds.read(1)
        t = ds.transform
    col = round((SYN_ORIGIN[0] - t.c) / 30)
    row = round((t.f - SYN_ORIGIN[1]) / 30)
    return doc, got[row : row + 60, col : col + 60]


def test_flood_extent_from_ndwi_on_synthetic_scenes(node: Node, tmp_path: Path) -> None:
    dry_g, dry_n = np.full((60, 60), 500), np.full((60, 60), 1500)  # NDWI -0.5
    post_g, post_n = dry_g.copy(), dry_n.copy()
    post_g[10:30, 10:40], post_n[10:30, 10:40] = 1500, 500  # NDWI 0.5: new water, 600 px
    pre_g, pre_n = dry_g.copy(), dry_n.copy()
    for g, n in ((pre_g, pre_n), (post_g, post_n)):
        g[45:50, 0:20], n[45:50, 0:20] = 1500, 500  # a river, water before and after
    doc, got = _synthetic_product(node, tmp_path, "flood", {"B03": pre_g, "B08": pre_n},
                                  {"B03": post_g, "B08": post_n})  # fmt: skip
    water = [(g - n) / (g + n) > 0 for g, n in ((pre_g, pre_n), (post_g, post_n))]
    want = water[1].astype(float) - water[0]
    want[water[0] & water[1]] = 2
    assert got.shape == (60, 60) and np.array_equal(got, want)
    stats = doc["statistics"]
    assert stats["flooded_area_km2"] == pytest.approx(600 * PIXEL_KM2, abs=1e-6)
    assert stats["water_before_km2"] == pytest.approx(100 * PIXEL_KM2, abs=1e-6)


def test_fire_burn_severity_classes_on_synthetic_scenes(node: Node, tmp_path: Path) -> None:
    pre_n, pre_s = np.full((60, 60), 3000), np.full((60, 60), 1000)  # NBR 0.5
    post_n, post_s = pre_n.copy(), pre_s.copy()
    post_n[0:20, 0:20], post_s[0:20, 0:20] = 1000, 3000  # NBR -0.5: dNBR 1.0, class 7
    post_n[30:40, 30:60], post_s[30:40, 30:60] = 2000, 1400  # dNBR 0.32: class 5
    doc, got = _synthetic_product(node, tmp_path, "fire", {"B08": pre_n, "B12": pre_s},
                                  {"B08": post_n, "B12": post_s})  # fmt: skip
    dnbr = (pre_n - pre_s) / (pre_n + pre_s) - (post_n - post_s) / (post_n + post_s)
    want = np.digitize(dnbr, [-0.25, -0.1, 0.1, 0.27, 0.44, 0.66]) + 1  # USGS classes 1..7
    assert np.array_equal(got, want)
    assert set(np.unique(got)) == {3, 5, 7}
    assert doc["statistics"]["burned_area_km2"] == pytest.approx(700 * PIXEL_KM2, abs=1e-6)


def test_activation_page_shows_the_map_and_report(
    node: Node, product: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """In Chromium, the activation's page (signed in as an operator) shows the product's
    map and links its report; no script errors."""
    from playwright.sync_api import sync_playwright

    store = node.app.state.access_services.store
    store.put_user("ops", member=None, roles=["operator"], password="products-ops-pw", who="t")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=os.environ.get("EOSHARE_CHROMIUM", "/usr/bin/chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1400})
            r = context.request.post(
                node.url + "/auth/login",
                data={"username": "ops", "password": "products-ops-pw"},
                headers={"X-Requested-With": "eoshare-ui"},
            )
            assert r.ok, r.text()
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(node.url + f"/ui/activations.html?lang=en#{product['aid']}")
            page.wait_for_selector("div.product img")
            page.wait_for_function(
                "document.querySelector('div.product img').naturalWidth === 1200"
            )
            assert page.locator("div.product a", has_text="Report (PDF)").count() == 1
            shots = tmp_path_factory.mktemp("product-shots")
            page.screenshot(path=str(shots / "activation-product-en.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
