"""The node's tile service, built on its first picture.

``TileService`` draws with rio-tiler, whose imports (rasterio, xarray, dask, pandas) are
most of a node's start-up time, and most requests (search, items, downloads) never draw.
``create_app`` therefore sets ``app.state.tiles`` to a ``LazyTileService``: the render
cache is made at once (``/metrics`` and the dashboard read it), the service and its
libraries on first use, once, whichever thread asks first.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from eoshare.settings import TilesSettings
from eoshare.storage.base import Store
from eoshare.tiles.cache import RenderCache

if TYPE_CHECKING:
    from eoshare.tiles.service import TileService


class LazyTileService:
    """Stands for a ``TileService`` (attributes are the built service's)."""

    def __init__(self, store: Store, settings: TilesSettings) -> None:
        self._store = store
        self._settings = settings
        self.cache = RenderCache(settings.cache_bytes)
        self._service: TileService | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._service is not None

    @property
    def service(self) -> TileService:
        service = self._service
        if service is None:
            with self._lock:
                if self._service is None:
                    from eoshare.tiles.service import TileService

                    self._service = TileService(self._store, self._settings, cache=self.cache)
                service = self._service
        return service

    def __getattr__(self, name: str) -> Any:
        # only for names this object does not have itself: the service's methods
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.service, name)
