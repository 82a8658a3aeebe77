"""Access decisions applied to pictures: turning a reduced decision (``max_resolution_m``)
into the finest zoom, or the largest preview, that a caller may get.

The decisions themselves come from ``eoshare.access`` (``AssetGate.pictures``, which
also combines the decisions of several assets); nothing here decides who may see what,
it only measures pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

from eoshare.access import Decision
from eoshare.errors import AccessDeniedError

if TYPE_CHECKING:
    import morecantile
    from pyproj import Geod

# morecantile and pyproj load on the first tile, not with the node (eoshare.tiles.lazy)
# WGS84 ellipsoid, for the length of a parallel
_A = 6378137.0
_E2 = 6.69437999014e-3


def _agreement(decision: Decision) -> str:
    return f" (agreement {decision.agreement!r})" if decision.agreement else ""


def parallel_metres(lat: float, degrees: float) -> float:
    """Length in metres of ``degrees`` of longitude along the parallel ``lat``."""
    phi = math.radians(lat)
    radius = _A * math.cos(phi) / math.sqrt(1.0 - _E2 * math.sin(phi) ** 2)
    return abs(radius * math.radians(degrees))


@lru_cache(maxsize=1)
def _geod() -> Geod:
    from pyproj import Geod

    return Geod(ellps="WGS84")


def meridian_metres(lon: float, south: float, north: float) -> float:
    """Length in metres along the meridian ``lon`` from ``south`` to ``north``."""
    _, _, dist = _geod().inv(lon, south, lon, north)
    return float(abs(dist))


def extent_metres(bounds: tuple[float, float, float, float]) -> tuple[float, float]:
    """(east-west, north-south) size in metres of a lon/lat box, measured through its
    middle."""
    west, south, east, north = bounds
    width = east - west if east >= west else east + 360.0 - west
    mid_lat = (south + north) / 2.0
    mid_lon = west + width / 2.0
    return parallel_metres(mid_lat, width), meridian_metres(mid_lon, south, north)


@lru_cache(maxsize=65536)
def tile_pixel_metres(tms_id: str, z: int, x: int, y: int, pixels: int) -> float:
    """The ground size of one pixel of a tile, in metres: the smaller of its east-west and
    north-south sizes at the tile's centre (the finer one is what a caller gets)."""
    import morecantile

    tms = morecantile.tms.get(tms_id)  # once per tile: the function's own cache
    b = tms.bounds(morecantile.Tile(x, y, z))
    ew, ns = extent_metres((b.left, b.bottom, b.right, b.top))
    return min(ew, ns) / pixels


def check_tile(
    decision: Decision, tms: morecantile.TileMatrixSet, z: int, x: int, y: int, pixels: int
) -> None:
    """Raise AccessDeniedError when a reduced decision does not allow this tile: its
    pixels are finer than ``max_resolution_m``."""
    limit = decision.max_resolution_m
    if decision.kind != "reduced" or limit is None:
        return
    size = tile_pixel_metres(tms.id, z, x, y, pixels)
    if size < limit * (1.0 - 1e-9):
        allowed = max_zoom(decision, tms, x_center_lonlat(tms, z, x, y), pixels / _tile_px(tms, z))
        hint = f"; zoom {allowed} is the finest allowed here" if allowed is not None else ""
        raise AccessDeniedError(
            f"tile {z}/{x}/{y} of {tms.id} has {size:.1f} m pixels, finer than the "
            f"{limit:g} m this caller may get{_agreement(decision)}{hint}"
        )


def _tile_px(tms: morecantile.TileMatrixSet, z: int) -> int:
    return int(tms.matrix(z).tileWidth)


def x_center_lonlat(tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> tuple[float, float]:
    import morecantile

    b = tms.bounds(morecantile.Tile(x, y, z))
    return (b.left + b.right) / 2.0, (b.bottom + b.top) / 2.0


def max_zoom(
    decision: Decision,
    tms: morecantile.TileMatrixSet,
    at: tuple[float, float],
    scale: float = 1.0,
) -> int | None:
    """The finest zoom of ``tms`` whose tile at ``at`` (lon, lat) has pixels at least as
    coarse as a reduced decision's limit; the TMS's own maximum for other decisions; None
    when not even its coarsest zoom is coarse enough."""
    top = len(tms.tileMatrices) - 1
    limit = decision.max_resolution_m
    if decision.kind != "reduced" or limit is None:
        return top
    best: int | None = None
    for z in range(top + 1):
        tile = tms.tile(at[0], at[1], z)
        pixels = round(_tile_px(tms, z) * scale)
        if tile_pixel_metres(tms.id, z, tile.x, tile.y, pixels) >= limit * (1.0 - 1e-9):
            best = z
        else:
            break
    return best


def clamp_size(decision: Decision, extent_m: tuple[float, float], size: int) -> int:
    """The longest side, in pixels, of a whole-asset picture whose pixels must not be
    finer than a reduced decision's limit (at least 1)."""
    limit = decision.max_resolution_m
    if decision.kind != "reduced" or limit is None:
        return size
    longest = max(extent_m)
    return max(1, min(size, math.floor(longest / limit)))
