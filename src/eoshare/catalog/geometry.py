"""GeoJSON geometry checks and the antimeridian.

Items arrive in two antimeridian styles: split correctly into a MultiPolygon whose parts
touch +180 and -180 (RFC 7946), or as one ring whose longitudes jump across the line.
Both are indexed as a geometry that lies inside [-180, 180] (the second is split), and
their bbox has ``minx > maxx`` as RFC 7946 section 5.2 prescribes.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import shapely
import shapely.affinity
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from eoshare.errors import InvalidRequestError

Bbox = tuple[float, float, float, float]

_POSITION_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


def check_geometry(geometry: Any, *, what: str = "geometry") -> None:
    """Raise InvalidRequestError, saying exactly what is wrong, unless ``geometry`` is a
    valid GeoJSON geometry in WGS84 longitude/latitude."""
    if not isinstance(geometry, dict):
        raise InvalidRequestError(f"{what} must be a GeoJSON geometry object")
    gtype = geometry.get("type")
    if gtype == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list) or not members:
            raise InvalidRequestError(f"{what}: a GeometryCollection needs a 'geometries' list")
        for i, member in enumerate(members):
            check_geometry(member, what=f"{what}.geometries[{i}]")
        return
    if gtype not in _POSITION_DEPTH:
        raise InvalidRequestError(
            f"{what}: unknown geometry type {gtype!r}; expected one of "
            + ", ".join(sorted([*_POSITION_DEPTH, "GeometryCollection"]))
        )
    coords = geometry.get("coordinates")
    if not isinstance(coords, list):
        raise InvalidRequestError(f"{what}: 'coordinates' must be an array")
    _check_coords(coords, _POSITION_DEPTH[gtype], gtype, what)


def _check_position(pos: Any, what: str) -> None:
    if not isinstance(pos, list) or len(pos) < 2 or len(pos) > 3:
        raise InvalidRequestError(f"{what}: a position must be [longitude, latitude(, height)]")
    for v in pos:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidRequestError(f"{what}: coordinates must be finite numbers, got {v!r}")
    lon, lat = pos[0], pos[1]
    if not -180.0 <= lon <= 180.0:
        raise InvalidRequestError(f"{what}: longitude {lon} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise InvalidRequestError(f"{what}: latitude {lat} is outside [-90, 90]")


def _check_coords(coords: list[Any], depth: int, gtype: str, what: str) -> None:
    if depth == 0:
        _check_position(coords, what)
        return
    if gtype in ("LineString",) and depth == 1 and len(coords) < 2:
        raise InvalidRequestError(f"{what}: a LineString needs at least 2 positions")
    if gtype in ("Polygon", "MultiPolygon") and depth == 1:
        # a linear ring
        if len(coords) < 4:
            raise InvalidRequestError(f"{what}: a polygon ring needs at least 4 positions")
        for pos in coords:
            _check_position(pos, what)
        if coords[0][:2] != coords[-1][:2]:
            raise InvalidRequestError(
                f"{what}: a polygon ring must be closed (first and last positions equal)"
            )
        return
    if not coords and depth >= 1 and gtype not in ("MultiPoint", "MultiLineString", "MultiPolygon"):
        raise InvalidRequestError(f"{what}: {gtype} coordinates must not be empty")
    for sub in coords:
        if not isinstance(sub, list):
            raise InvalidRequestError(f"{what}: malformed {gtype} coordinates")
        _check_coords(sub, depth - 1, gtype, what)


def check_bbox(bbox: Any, *, what: str = "bbox") -> Bbox:
    """Validate a STAC/GeoJSON bbox (4 or 6 numbers) and return its 2D part."""
    if not isinstance(bbox, list | tuple) or len(bbox) not in (4, 6):
        raise InvalidRequestError(f"{what} must have 4 or 6 numbers")
    for v in bbox:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidRequestError(f"{what} values must be finite numbers, got {v!r}")
    if len(bbox) == 6:
        minx, miny, minz, maxx, maxy, maxz = (float(v) for v in bbox)
        if minz > maxz:
            raise InvalidRequestError(f"{what}: minimum height {minz} is above maximum {maxz}")
    else:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
    for lon in (minx, maxx):
        if not -180.0 <= lon <= 180.0:
            raise InvalidRequestError(f"{what}: longitude {lon} is outside [-180, 180]")
    for lat in (miny, maxy):
        if not -90.0 <= lat <= 90.0:
            raise InvalidRequestError(f"{what}: latitude {lat} is outside [-90, 90]")
    if miny > maxy:
        raise InvalidRequestError(f"{what}: south latitude {miny} is above north latitude {maxy}")
    # minx > maxx is legal: the box crosses the antimeridian
    return (minx, miny, maxx, maxy)


def split_bbox(bbox: Bbox) -> list[Bbox]:
    """One box, or two when it crosses the antimeridian."""
    minx, miny, maxx, maxy = bbox
    if minx <= maxx:
        return [bbox]
    return [(minx, miny, 180.0, maxy), (-180.0, miny, maxx, maxy)]


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    gtype = geometry["type"]
    c: Any = geometry.get("coordinates")
    if gtype == "Point":
        return [[c]]
    if gtype in ("MultiPoint", "LineString"):
        return [c]
    if gtype in ("MultiLineString", "Polygon"):
        return list(c)
    if gtype == "MultiPolygon":
        return [ring for poly in c for ring in poly]
    if gtype == "GeometryCollection":
        return [r for g in geometry["geometries"] for r in _rings(g)]
    return []


def _jumps_antimeridian(geometry: dict[str, Any]) -> bool:
    """True when some edge jumps more than 180 degrees of longitude: the ring was
    written across the antimeridian instead of being split."""
    for ring in _rings(geometry):
        for a, b in pairwise(ring):
            if abs(a[0] - b[0]) > 180.0:
                return True
    return False


def _touches_both_sides(geometry: dict[str, Any]) -> bool:
    if geometry["type"] not in ("MultiPolygon", "MultiLineString", "GeometryCollection"):
        return False
    lons = [p[0] for ring in _rings(geometry) for p in ring]
    return 180.0 in lons and -180.0 in lons


def compute_bbox(geometry: dict[str, Any]) -> Bbox:
    """The bbox of a (valid) geometry, with minx > maxx when it crosses the antimeridian."""
    points = [p for ring in _rings(geometry) for p in ring]
    lons = [float(p[0]) for p in points]
    lats = [float(p[1]) for p in points]
    miny, maxy = min(lats), max(lats)
    if not (_jumps_antimeridian(geometry) or _touches_both_sides(geometry)):
        return (min(lons), miny, max(lons), maxy)
    # Smallest arc of longitude holding every vertex: the complement of the widest gap.
    ordered = sorted(set(lons))
    best_gap, minx, maxx = -1.0, ordered[0], ordered[-1]
    for a, b in pairwise(ordered):
        if b - a > best_gap:
            best_gap, minx, maxx = b - a, b, a
    if 360.0 - (ordered[-1] - ordered[0]) >= best_gap:
        return (ordered[0], miny, ordered[-1], maxy)
    return (minx, miny, maxx, maxy)


def _shift_east(geometry: dict[str, Any]) -> dict[str, Any]:
    """Move negative longitudes by +360 so that a jumping ring becomes continuous."""

    def walk(c: Any) -> Any:
        if c and isinstance(c[0], int | float):
            return [c[0] + 360.0 if c[0] < 0 else c[0], *c[1:]]
        return [walk(x) for x in c]

    if geometry["type"] == "GeometryCollection":
        return {**geometry, "geometries": [_shift_east(g) for g in geometry["geometries"]]}
    return {**geometry, "coordinates": walk(geometry["coordinates"])}


_WEST = box(-180.0, -90.0, 180.0, 90.0)
_EAST = box(180.0, -90.0, 540.0, 90.0)


def index_geometry(geometry: dict[str, Any]) -> BaseGeometry:
    """The shapely geometry used for spatial tests, inside [-180, 180]. A ring that jumps
    the antimeridian is unwrapped and cut into its western and eastern parts."""
    return reshaped_geometry(geometry)[0]


def reshaped_geometry(geometry: dict[str, Any]) -> tuple[BaseGeometry, bool]:
    """``index_geometry`` and whether it differs from the geometry as written (cut at
    the antimeridian or made valid)."""
    changed = _jumps_antimeridian(geometry)
    if not changed:
        geom = shape(geometry)
    else:
        unwrapped = shape(_shift_east(geometry))
        if not unwrapped.is_valid:
            unwrapped = shapely.make_valid(unwrapped)
        west = unwrapped.intersection(_WEST)
        east = shapely.affinity.translate(unwrapped.intersection(_EAST), xoff=-360.0)
        geom = west.union(east)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        changed = True
    return geom, changed


def bbox_geometry(bbox: Bbox) -> BaseGeometry:
    """A bbox as a geometry inside [-180, 180] (two boxes across the antimeridian)."""
    boxes = [box(*b) for b in split_bbox(bbox)]
    return boxes[0] if len(boxes) == 1 else shapely.MultiPolygon(boxes)
