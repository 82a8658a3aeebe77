"""The offline base map: countries that cross the antimeridian are drawn where they are
(no stripes across the world), the 1:50m outlines replace the 1:110m ones once zoomed in,
and an operator's online base map (EOSHARE_WEB__BASEMAP_URL) is announced to the page."""

from __future__ import annotations

import json
from typing import Any

from eoshare.web import STATIC, index_html

from .conftest import SCREENSHOTS, Node

# checked in the browser against the shipped Natural Earth data itself
SPANS = """async () => {
  const { unwrapAntimeridian } = await import("./js/map.js");
  const topology = await (await fetch("vendor/world-atlas/countries-110m.json")).json();
  // the widest single ring of a country: a ring drawn across the map is a stripe
  const rings = (g) => (g.type === "Polygon" ? g.coordinates : g.coordinates.flat());
  const span = (f) => Math.max(...rings(f.geometry).map((r) => {
    const lons = r.map((p) => p[0]);
    return Math.max(...lons) - Math.min(...lons);
  }));
  const raw = topojson.feature(topology, topology.objects.countries).features;
  const fixed = unwrapAntimeridian(topojson.feature(topology, topology.objects.countries)).features;
  const named = (fs) => Object.fromEntries(fs.filter((f) => f.geometry).map(
    (f) => [f.properties.name, span(f)]));
  return { raw: named(raw), fixed: named(fixed) };
}"""


def test_no_country_is_drawn_across_the_antimeridian(open_page: Any, web_node: Node) -> None:
    page = open_page()
    spans = page.evaluate(SPANS)
    # the data itself jumps at the antimeridian (else this test would prove nothing)...
    assert spans["raw"]["Russia"] > 300 and spans["raw"]["Fiji"] > 300
    # ...and what the map draws does not, Antarctica (which does go round) aside
    wide = {name: s for name, s in spans["fixed"].items() if s > 300 and name != "Antarctica"}
    assert not wide, wide
    assert spans["fixed"]["Russia"] < 200
    assert spans["fixed"]["Fiji"] < 10


def test_finer_outlines_once_zoomed_in(open_page: Any, web_node: Node) -> None:
    page = open_page()
    fetched: list[str] = []
    page.on("response", lambda r: fetched.append(r.url) if "world-atlas" in r.url else None)
    page.wait_for_selector(".leaflet-base-pane path", state="attached")
    page.wait_for_timeout(500)
    assert not any("countries-50m" in url for url in fetched), fetched
    with page.expect_response(lambda r: "countries-50m.json" in r.url) as answer:
        for _ in range(3):  # zoom 2 -> 5
            page.locator(".leaflet-control-zoom-in").click()
            page.wait_for_timeout(300)
    assert answer.value.status == 200
    # the finer outlines replace the coarse ones (not drawn over them): one path per
    # country of the 1:50m file
    vendor = STATIC / "vendor" / "world-atlas"
    fine = len(
        json.loads((vendor / "countries-50m.json").read_text())["objects"]["countries"][
            "geometries"
        ]
    )
    coarse = len(
        json.loads((vendor / "countries-110m.json").read_text())["objects"]["countries"][
            "geometries"
        ]
    )
    assert fine != coarse
    paths = ".leaflet-base-pane path"
    for _ in range(40):
        if page.locator(paths).count() == fine:
            break
        page.wait_for_timeout(250)
    assert page.locator(paths).count() == fine, (page.locator(paths).count(), fine, coarse)
    page.screenshot(path=str(SCREENSHOTS / "base-map-zoom5.png"))


def test_an_online_base_map_is_announced_escaped() -> None:
    page = index_html(
        "/ui/", "en", basemap_url="https://tiles.example.org/{z}/{x}/{y}.png",
        basemap_attribution='© "Example" <maps>',
    )  # fmt: skip
    assert (
        '<meta name="eoshare-basemap" content="https://tiles.example.org/{z}/{x}/{y}.png" '
        'data-attribution="© &quot;Example&quot; &lt;maps&gt;">'
    ) in page
    assert '<meta name="eoshare-basemap" content="" data-attribution="">' in index_html("/ui/")
