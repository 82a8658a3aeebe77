"""Map tiles, previews, point values and statistics of stored raster assets, honouring
access decisions (ARCHITECTURE.md: ``tiles/``).

* ``render``: what to draw (``RenderSpec``, ``render_defaults``, ``plan_for``);
* ``expression``: band math parsed by a small grammar, never ``eval``;
* ``access``: reduced-resolution decisions turned into zoom and size limits;
* ``service``: ``TileService``, built once in ``create_app``, drawing with rio-tiler;
* ``wmts``: OGC WMTS capabilities documents.

Why thin routes on rio-tiler rather than titiler.core's factories: every route must first
find the item through the caller's visibility filter, ask the access policy per asset,
limit zooms for reduced decisions and audit the bytes it returns; and assets must be
opened from the store by key, never from an href. The factories would need each of these
wedged into path dependencies; here they are plain code in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eoshare.tiles.render import RenderSpec, make_spec, plan_for, raster_assets, render_defaults
from eoshare.tiles.tms import get_tms

if TYPE_CHECKING:
    from eoshare.tiles.service import TileInfo, TileService


def __getattr__(name: str) -> Any:
    # the service (and rio-tiler, rasterio, xarray under it) is imported when first asked
    # for, not with the package: a node builds it on its first picture (eoshare.tiles.lazy)
    if name in ("TileInfo", "TileService"):
        from eoshare.tiles import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RenderSpec",
    "TileInfo",
    "TileService",
    "get_tms",
    "make_spec",
    "plan_for",
    "raster_assets",
    "render_defaults",
]
