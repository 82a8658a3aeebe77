"""The area of an activation or a subscription, read safely from what a person pastes.

GeoJSON only (a Geometry, a Feature or a FeatureCollection of polygons, in lon/lat):
the text is bounded in size, the vertices in number, coordinates must be finite numbers
in range, and nothing in the document is fetched or followed (GeoJSON has no external
references; ``crs`` members are refused rather than honoured). The result is one valid
Polygon or MultiPolygon as a GeoJSON geometry.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import shapely
from shapely.geometry import mapping, shape

from eoshare.errors import InvalidRequestError, PayloadTooLargeError

JSON = dict[str, Any]
MAX_AREA_BYTES = 2 * 1024 * 1024
MAX_VERTICES = 50_000
_POLYGONAL = ("Polygon", "MultiPolygon")


def _count(coords: Any, depth: int = 0) -> int:
    if depth > 6:
        raise InvalidRequestError("the area's coordinates are nested too deeply")
    if isinstance(coords, list) and coords and isinstance(coords[0], int | float):
        if len(coords) < 2 or not all(
            isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
            for c in coords
        ):
            raise InvalidRequestError("each position of the area must be finite numbers [lon, lat]")
        lon, lat = coords[0], coords[1]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InvalidRequestError(
                f"position [{lon}, {lat}] is outside lon -180..180, lat -90..90"
            )
        return 1
    if not isinstance(coords, list):
        raise InvalidRequestError("the area's coordinates must be arrays of positions")
    return sum(_count(c, depth + 1) for c in coords)


def _geometries(doc: JSON) -> list[JSON]:
    kind = doc.get("type")
    if "crs" in doc:
        raise InvalidRequestError("GeoJSON 'crs' members are not supported: use lon/lat (WGS84)")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list) or not features:
            raise InvalidRequestError("the FeatureCollection has no features")
        out: list[JSON] = []
        for f in features:
            if not isinstance(f, dict):
                raise InvalidRequestError("every feature must be a GeoJSON Feature object")
            out.extend(_geometries(f))
        return out
    if kind == "Feature":
        geom = doc.get("geometry")
        if not isinstance(geom, dict):
            raise InvalidRequestError("the Feature has no geometry")
        return _geometries(geom)
    if kind == "GeometryCollection":
        parts = doc.get("geometries")
        if not isinstance(parts, list):
            raise InvalidRequestError("the GeometryCollection has no geometries")
        return [g for p in parts if isinstance(p, dict) for g in _geometries(p)]
    if kind in _POLYGONAL:
        return [doc]
    raise InvalidRequestError(
        f"the area must be polygons (Polygon, MultiPolygon, or Features of them), got {kind!r}"
    )


def parse_area(value: Any) -> JSON:
    """One Polygon/MultiPolygon GeoJSON geometry from a GeoJSON document (text, bytes or
    an already parsed object)."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_AREA_BYTES:
            raise PayloadTooLargeError(f"the area is over {MAX_AREA_BYTES} bytes")
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"the area is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("the area must be a GeoJSON object")
    geoms = _geometries(value)
    vertices = sum(_count(g.get("coordinates")) for g in geoms)
    if vertices > MAX_VERTICES:
        raise PayloadTooLargeError(f"the area has {vertices} vertices; at most {MAX_VERTICES}")
    try:
        parts = [shape(g) for g in geoms]
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidRequestError(f"the area is not valid GeoJSON: {exc}") from exc
    geom = shapely.make_valid(shapely.union_all(parts))
    geom = shapely.union_all([p for p in shapely.get_parts(geom) if p.geom_type in _POLYGONAL])
    if geom.is_empty or geom.area == 0:
        raise InvalidRequestError("the area is empty: draw a polygon with some surface")
    out: JSON = orjson.loads(orjson.dumps(mapping(geom)))
    return out


def bbox_area(bbox: list[float]) -> JSON:
    """A bbox ``[w, s, e, n]`` as a GeoJSON polygon."""
    if len(bbox) != 4:
        raise InvalidRequestError("bbox is four numbers: west,south,east,north")
    w, s, e, n = bbox
    if not (w < e and s < n):
        raise InvalidRequestError("bbox must have west < east and south < north")
    return parse_area(mapping(shapely.box(w, s, e, n)))
