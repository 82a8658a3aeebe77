"""Tile matrix sets by id, and whether a tile index exists in one (morecantile only).

Apart from ``service`` so that the HTTP layer checks a request's tile matrix set and
index without loading the drawing libraries (rio-tiler, rasterio), which ``service``
imports and the node loads on its first picture (``eoshare.tiles.lazy``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from eoshare.errors import NotFoundError

if TYPE_CHECKING:
    import morecantile


@functools.lru_cache(maxsize=64)
def _known_tms(tms_id: str) -> morecantile.TileMatrixSet:
    # morecantile deep-copies a set on every get() (~2 ms for WebMercatorQuad); the sets
    # are never changed here, so each is built once; morecantile (and pyproj) load here,
    # on the first tile request
    import morecantile

    return morecantile.tms.get(tms_id)


def get_tms(tms_id: str) -> morecantile.TileMatrixSet:
    """A tile matrix set by id (``WebMercatorQuad``...); NotFoundError for others."""
    from morecantile.errors import InvalidIdentifier

    try:
        return _known_tms(tms_id)
    except InvalidIdentifier:
        raise NotFoundError(
            f"unknown tile matrix set {tms_id!r}; GET /tiles/tileMatrixSets lists them"
        ) from None


def check_tile_index(tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> None:
    """NotFoundError for a tile that the tile matrix set does not have."""
    top = len(tms.tileMatrices) - 1
    if not 0 <= z <= top:
        raise NotFoundError(f"zoom {z} does not exist in {tms.id} (0 to {top})")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise NotFoundError(f"tile {z}/{x}/{y} does not exist in {tms.id}")
