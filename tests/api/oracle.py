"""The independent truth: what a search should return, computed with shapely and plain
Python over the documents that were loaded, without any of eoshare's code."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import shapely.affinity
from shapely.geometry import Polygon, box, shape
from shapely.geometry.base import BaseGeometry

JSON = dict[str, Any]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def interval(item: JSON) -> tuple[datetime, datetime]:
    """[start, end] of an item: start/end_datetime where given, else datetime."""
    p = item["properties"]
    start = p.get("start_datetime") or p["datetime"]
    end = p.get("end_datetime") or p["datetime"]
    return when(start), when(end)


def item_geometry(item: JSON, unwrapped: dict[str, Any] | None = None) -> BaseGeometry:
    """The footprint as a plane shape; antimeridian test items use their true, unwrapped
    ring (longitudes below -180) from when they were made."""
    if unwrapped and item["id"] in unwrapped:
        return Polygon(unwrapped[item["id"]][0])
    return shape(item["geometry"])


def query_box(bbox: tuple[float, float, float, float]) -> BaseGeometry:
    minx, miny, maxx, maxy = bbox
    if minx > maxx:  # crosses the antimeridian: continue east past 180
        maxx += 360.0
    return box(minx, miny, maxx, maxy)


def meets(a: BaseGeometry, b: BaseGeometry) -> bool:
    """Intersection on the cylinder: the plane shapes repeat every 360 degrees."""
    return any(
        a.intersects(shapely.affinity.translate(b, xoff=dx)) for dx in (-720, -360, 0, 360, 720)
    )


def expect(items: Iterable[JSON], keep: Callable[[JSON], bool]) -> set[str]:
    return {i["id"] for i in items if keep(i)}


def search_all(
    client: httpx.Client, body: JSON, *, max_pages: int = 200
) -> tuple[list[JSON], list[int | None]]:
    """POST /search and follow every next link; the features of all pages, and each
    page's numberMatched."""
    features: list[JSON] = []
    matched: list[int | None] = []
    r = client.post("/search", json=body)
    for _ in range(max_pages):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/geo+json")
        page = r.json()
        assert page["numberReturned"] == len(page["features"])
        features += page["features"]
        matched.append(page.get("numberMatched"))
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            return features, matched
        link = nxt[0]
        if link.get("method", "GET") == "POST":
            r = client.post(link["href"], json=link["body"])
        else:
            r = client.get(link["href"])
    raise AssertionError("more pages than expected")


def strip_server(doc: JSON) -> JSON:
    """A document as stored: without what the server adds when it answers (its links,
    the access layer's ``eoshare:agreement`` on collections and per-asset
    ``eoshare:access`` hints on items). The projection fields and extension are left
    out on both sides: the server serves ``proj:epsg`` beside ``proj:code`` (api/compat.py,
    tested in tests/clients/test_gdal.py)."""
    out = {k: v for k, v in doc.items() if k not in ("links", "eoshare:agreement")}
    out["stac_extensions"] = [
        x for x in out.get("stac_extensions", []) if "/projection/" not in str(x)
    ]
    if isinstance(out.get("properties"), dict):
        out["properties"] = _no_crs(out["properties"])
    if isinstance(out.get("assets"), dict):
        out["assets"] = {
            k: (
                _no_crs({x: y for x, y in a.items() if x != "eoshare:access"})
                if isinstance(a, dict)
                else a
            )
            for k, a in out["assets"].items()
        }
    return out


def _no_crs(fields: JSON) -> JSON:
    return {k: v for k, v in fields.items() if k not in ("proj:epsg", "proj:code")}


# --- free text (q) ---------------------------------------------------------------------

# the document fields free text searches (STAC API free-text extension: the item's id,
# title, description, keywords, and the platform/instrument/mission names)
TEXT_FIELDS = ("title", "description", "platform", "constellation", "mission")
TEXT_LISTS = ("keywords", "instruments")


def words(text: str) -> list[str]:
    """Lower-cased words, split at anything that is not a letter or a digit."""
    return [w.casefold() for w in re.findall(r"[^\W_]+", text)]


def text_matches(item: JSON, terms: Iterable[str]) -> bool:
    """Any term (a phrase: its words in a row) occurs in the item's text fields."""
    p = item["properties"]
    fields = [str(item["id"])]
    fields += [p[k] for k in TEXT_FIELDS if isinstance(p.get(k), str)]
    fields += [str(x) for k in TEXT_LISTS if isinstance(p.get(k), list) for x in p[k]]
    w = words(" ".join(fields))
    for term in terms:
        phrase, n = words(term), len(words(term))
        if phrase and any(w[i : i + n] == phrase for i in range(len(w) - n + 1)):
            return True
    return False
