"""STAC Browser (the official STAC web UI, npm ``@radiantearth/stac-browser``) in Chromium,
served from another origin than the node, as it usually is (issue 12, item 1).

STAC Browser is built from ``web/stac-browser/package-lock.json`` by
``scripts/build_stac_browser.sh`` (``make test`` runs it through install-clients.sh;
this module runs it too, instant when the lock file has not changed). Its static files
are served here on their own port, with a ``config.js`` pointing at a live node; Debian's
Chromium (driven by Playwright, never its own builds) walks the catalogue, a collection,
an item (map footprint, tiles, thumbnail) and a search, with no console error.

Two things the offline test machine lacks are supplied, as the internet would: the
GeoJSON schema that the queryables document refers to (geojson.org, answered from the
offline schema mirror) and the base map (the build points it at ``./basemap/``; blank
tiles here). Runs here and in CI: no skips.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from live import free_port
from web.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

from .conftest import S2, S2C, RasterNode

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "web" / "stac-browser" / "dist"
# a 1x1 transparent PNG: the base map's tiles
BLANK_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000005000178b5c9f50000000049454e44ae426082"
)


class _Site(http.server.SimpleHTTPRequestHandler):
    node_url = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, body: bytes, media_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/config.js":
            config = f'{{"catalogUrl": "{self.node_url}/", "allowExternalAccess": false}}'
            self._answer(f"window.STAC_BROWSER_CONFIG = {config};".encode(), "text/javascript")
        elif path.startswith("/basemap/") or path == "/favicon.ico":
            self._answer(BLANK_PNG, "image/png")
        else:
            super().do_GET()


@pytest.fixture(scope="module")
def stac_browser(raster_node: RasterNode) -> Iterator[str]:
    """STAC Browser's static files on their own origin; yields its URL."""
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_stac_browser.sh")],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert (DIST / "index.html").is_file()
    handler = type("Site", (_Site,), {"node_url": raster_node.url})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), functools.partial(handler, directory=str(DIST))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_stac_browser_walks_the_node(
    stac_browser: str, raster_node: RasterNode, shared_data: Path
) -> None:
    from playwright.sync_api import sync_playwright

    assert raster_node.url.split(":")[-1] != stac_browser.split(":")[-1]  # two origins
    errors: list[str] = []
    node_answers: list[tuple[int, str]] = []
    geometry_schema = shared_data.parent / "stac-schemas" / "geojson.org/schema/Geometry.json"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on(
                "response",
                lambda r: (
                    node_answers.append((r.status, r.url))
                    if r.url.startswith(raster_node.url)
                    else None
                ),
            )
            page.route(
                "https://geojson.org/schema/**",
                lambda route: route.fulfill(path=geometry_schema, content_type="application/json"),
            )
            try:
                _walk(page, stac_browser)
            finally:
                page.screenshot(path=str(SCREENSHOTS / "stac_browser.png"))
        finally:
            browser.close()
    assert errors == []
    # everything STAC Browser asked the node for was there (map tiles outside the
    # scene answer 404: the layer has no extent, so the map asks for its whole view)
    documents = [(s, u) for s, u in node_answers if "/tiles/" not in u]
    assert documents and all(s == 200 for s, _ in documents), documents
    tiles = [s for s, u in node_answers if "/tiles/" in u and u.endswith("assets=TCI")]
    assert 200 in tiles, node_answers


def _walk(page: Any, site: str) -> None:
    # the catalogue: the node's landing page and its collections
    page.goto(f"{site}/")
    page.get_by_role("link", name=S2C).first.wait_for()
    assert page.get_by_text("An eoshare node").first.is_visible()
    # a collection: its description, extent and items
    page.get_by_role("link", name=S2C).first.click()
    page.wait_for_url(f"**/collections/{S2C}")
    page.get_by_text(f"Collection {S2C}, created by eoshare ingest.").first.wait_for()
    page.get_by_role("link", name=S2).first.wait_for()
    # an item: the map with its footprint and tiles, its thumbnail, its projection
    page.get_by_role("link", name=S2).first.click()
    page.wait_for_url(f"**/items/{S2}")
    page.locator(".map canvas, .ol-viewport canvas").first.wait_for()
    page.get_by_text("EPSG:32629").first.wait_for()
    page.get_by_role("tab", name="Thumbnails").click()
    thumbnail = page.locator(f"img[src$='/download/{S2C}/{S2}/thumbnail']").first
    thumbnail.wait_for()
    loaded = "img => img.complete && img.naturalWidth > 0"
    page.wait_for_function(loaded, arg=thumbnail.element_handle())
    # a search for items by free text
    page.get_by_role("link", name="Search").first.click()
    page.wait_for_url("**/search")
    page.get_by_role("tab", name="Search for Items").click()
    page.locator(".tab-pane.active .multiselect").first.click()
    page.keyboard.type("29RKH")
    page.keyboard.press("Enter")
    page.locator(".tab-pane.active").get_by_role("button", name="Submit").click()
    page.get_by_role("link", name=S2).first.wait_for()
    assert page.get_by_text("Please modify the search criteria").count() == 0
