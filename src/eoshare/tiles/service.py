"""``TileService``: tiles, previews, point values and statistics of the raster assets
eoshare stores, drawn with rio-tiler. Built once in ``create_app`` (``app.state.tiles``).

The HTTP layer (``api/routes/tiles.py``) finds the item (through the caller's visibility
filter), asks the access policy, and then calls one method here; this module knows
nothing about HTTP or principals: a reduced decision reaches it as a plain number, the
finest pixel size in metres (``min_pixel_m``) a picture may have.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import morecantile
import numpy as np
import rasterio
import rasterio.errors
import rasterio.features
import rasterio.warp
from rasterio.crs import CRS
from rio_tiler.colormap import cmap
from rio_tiler.errors import (
    EmptyMosaicError,
    InvalidBounds,
    PointOutsideBounds,
    RioTilerError,
    TileOutsideBounds,
)
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.mosaic.methods import FirstMethod

from eoshare.errors import InvalidRequestError, NotFoundError, StorageError
from eoshare.settings import TilesSettings
from eoshare.storage.base import Store
from eoshare.storage.gdal import rasterio_env
from eoshare.tiles.access import extent_metres, parallel_metres
from eoshare.tiles.cache import RenderCache, Rendered
from eoshare.tiles.encode import encode_png
from eoshare.tiles.readers import ReaderPool
from eoshare.tiles.render import ImageFormat, Plan, RenderSpec, plan_for, raster_assets
from eoshare.tiles.tms import check_tile_index, get_tms

__all__ = ["TileInfo", "TileService", "check_tile_index", "get_tms"]

log = logging.getLogger(__name__)

JSON = dict[str, Any]
WGS84 = CRS.from_epsg(4326)
TILE_SIZE = 256
_RANGE_SIZE = 256  # the preview size that automatic value ranges are measured on


def _tile_key(
    item: JSON,
    plan: Plan,
    tms: morecantile.TileMatrixSet,
    z: int,
    x: int,
    y: int,
    scale: int,
    fmt: ImageFormat,
) -> tuple[Hashable, ...]:
    return ("tile", item_version(item), plan.spec, tms.id, z, x, y, scale, fmt.name)


def item_version(item: JSON) -> tuple[Hashable, ...]:
    """What changes when an item's pictures change: its update time and the checksums
    (else the store keys) of its raster assets. Part of every cache key."""
    rasters = raster_assets(item)
    return (
        item.get("collection"),
        item.get("id"),
        (item.get("properties") or {}).get("updated"),
        tuple(
            (k, a.get("file:checksum") or a.get("eoshare:key")) for k, a in sorted(rasters.items())
        ),
    )


@dataclass(frozen=True)
class TileInfo:
    """What a TileJSON or WMTS document says about an item's layer."""

    bounds: tuple[float, float, float, float]  # lon/lat
    minzoom: int
    maxzoom: int


class _Lru:
    """A small thread-safe LRU for computed values (ranges, zoom levels)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value


_WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings of the libraries underneath that we handle, and only them.

    affine's PendingDeprecationWarning about ``*`` comes from inside rasterio/rio-tiler;
    rio-tiler's minzoom notice is about its own estimate, which we then use; GDAL's PNG,
    JPEG and WebP drivers say that they drop georeferencing, which we know."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Use `@` matmul", category=PendingDeprecationWarning
        )
        warnings.filterwarnings("ignore", message=r"Cannot determine m(in|ax)zoom")
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        yield


@contextlib.contextmanager
def _rio_errors(what: str) -> Iterator[None]:
    """rio-tiler and rasterio errors -> eoshare's, at the boundary."""
    try:
        with _quiet():
            yield
    except (TileOutsideBounds, EmptyMosaicError) as exc:
        raise NotFoundError(f"{what} is outside the data's bounds") from exc
    except PointOutsideBounds as exc:
        raise NotFoundError(f"{what} is outside the data's bounds") from exc
    except InvalidBounds as exc:
        raise InvalidRequestError(f"{what}: {exc}") from exc
    except IndexError as exc:  # a band index past the file's bands
        raise InvalidRequestError(f"{what}: a requested band does not exist ({exc})") from exc
    except rasterio.errors.RasterioIOError as exc:
        raise StorageError(f"{what}: the stored file cannot be read") from exc
    except RioTilerError as exc:
        raise InvalidRequestError(f"{what}: {exc}") from exc


class TileService:
    """Renders the raster assets of items; caches finished pictures in memory."""

    def __init__(
        self,
        store: Store,
        settings: TilesSettings | None = None,
        *,
        cache: RenderCache | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or TilesSettings()
        self.cache = cache if cache is not None else RenderCache(self.settings.cache_bytes)
        self._ranges = _Lru(4096)
        self._info = _Lru(4096)
        self.readers = ReaderPool(self.settings.open_datasets)

    # --- plans and readers ----------------------------------------------------------
    def plan(self, item: JSON, spec: RenderSpec) -> Plan:
        """Resolve a request against an item; InvalidRequestError for unknown names."""
        return plan_for(item, spec, max_expression_chars=self.settings.max_expression_chars)

    def _version(self, key: str, asset: JSON) -> Hashable:
        """What changes when the stored file does: its checksum, and for a local file
        its modification time and size."""
        local = self.store.local_path(key)
        if local is None:
            return asset.get("file:checksum")
        try:
            st = local.stat()
        except OSError:
            return None  # opening it will say what is wrong
        return (asset.get("file:checksum"), st.st_mtime_ns, st.st_size)

    @contextlib.contextmanager
    def _open(
        self, item: JSON, asset: str, tms: morecantile.TileMatrixSet | None = None
    ) -> Iterator[Reader]:
        found = raster_assets(item)[asset]
        key = found["eoshare:key"]
        path, options = self.store.gdal_path(key)
        env = rasterio_env(options) if options else contextlib.nullcontext()
        grid = tms or _WEB_MERCATOR
        pool_key = (path, self._version(key, found), grid.id)
        try:
            with (
                _quiet(),
                env,
                self.readers.borrow(pool_key, lambda: Reader(path, tms=grid)) as reader,
            ):
                yield reader
        except rasterio.errors.RasterioIOError as exc:
            log.error("cannot open stored raster", extra={"key": key, "error": str(exc)})
            raise StorageError(
                f"asset {asset!r} of item {item.get('id')!r} cannot be read"
            ) from exc

    # --- reading --------------------------------------------------------------------
    def _combine(self, plan: Plan, images: dict[str, ImageData]) -> ImageData:
        """The output bands of a plan from the images read per asset (same grid)."""
        first = next(iter(images.values()))
        shape = first.array.shape[1:]

        def band(asset: str, index: int) -> np.ma.MaskedArray:
            pos = plan.reads[asset].index(index)
            found: np.ma.MaskedArray = images[asset].array[pos]
            return found

        if plan.expression is not None:
            values = {name: band(ref.asset, ref.index) for name, ref in plan.names.items()}
            bands = plan.expression.evaluate(values, shape)
            data = np.stack([np.where(np.ma.getmaskarray(b), 0.0, b.data) for b in bands])
            mask = np.stack([np.ma.getmaskarray(b) for b in bands])
            array = np.ma.masked_array(data.astype(np.float32), mask=mask)
        else:
            array = np.ma.stack([band(r.asset, r.index) for r in plan.outputs])
        return ImageData(
            array,
            bounds=first.bounds,
            crs=first.crs,
            band_names=plan.band_names,
            assets=list(plan.reads),
        )

    def _read_tile(
        self, item: JSON, plan: Plan, tms: morecantile.TileMatrixSet, tile: morecantile.Tile,
        tilesize: int,
    ) -> ImageData:  # fmt: skip
        images: dict[str, ImageData] = {}
        what = f"tile {tile.z}/{tile.x}/{tile.y} of item {item.get('id')!r}"
        with _rio_errors(what):
            for asset, indexes in plan.reads.items():
                with self._open(item, asset, tms) as reader:
                    images[asset] = reader.tile(
                        tile.x, tile.y, tile.z,
                        tilesize=tilesize,
                        indexes=indexes,
                        resampling_method=plan.spec.resampling,
                        reproject_method=_warp_method(plan.spec.resampling),
                        **_nodata(plan.spec),
                    )  # fmt: skip
        return self._combine(plan, images)

    def _read_aligned(
        self,
        item: JSON,
        plan: Plan,
        first_read: Callable[[Reader, tuple[int, ...]], ImageData],
        what: str,
    ) -> ImageData:
        """Read the first asset with ``first_read``, then every other asset on exactly the
        same grid (bounds, CRS, size), so that bands of different files line up."""
        images: dict[str, ImageData] = {}
        with _rio_errors(what):
            for asset, indexes in plan.reads.items():
                with self._open(item, asset) as reader:
                    if not images:
                        images[asset] = first_read(reader, indexes)
                        continue
                    ref = next(iter(images.values()))
                    assert ref.bounds is not None and ref.crs is not None
                    images[asset] = reader.part(
                        tuple(ref.bounds),
                        bounds_crs=ref.crs,
                        dst_crs=ref.crs,
                        width=ref.width,
                        height=ref.height,
                        indexes=indexes,
                        resampling_method=plan.spec.resampling,
                        reproject_method=_warp_method(plan.spec.resampling),
                        **_nodata(plan.spec),
                    )
        return self._combine(plan, images)

    def _check_pixels(self, width: int, height: int) -> None:
        if width * height > self.settings.max_pixels:
            raise InvalidRequestError(
                f"{width} x {height} pixels is over the limit of {self.settings.max_pixels} "
                "pixels per image; ask for a smaller size"
            )

    def _whole(
        self,
        item: JSON,
        plan: Plan,
        *,
        max_size: int,
        width: int | None = None,
        height: int | None = None,
        min_pixel_m: float | None = None,
    ) -> ImageData:
        """The whole extent of the plan's first asset, other assets aligned to it."""
        if max_size < 1 or (width is not None and width < 1) or (height is not None and height < 1):
            raise InvalidRequestError("sizes must be at least 1 pixel")

        def first(reader: Reader, indexes: tuple[int, ...]) -> ImageData:
            w, h = _preview_shape(reader, max_size, width, height)
            if min_pixel_m:
                # shrink (keeping the aspect) until pixels are as coarse as allowed
                ew, ns = _extent_m(reader)
                factor = min(1.0, (ew / w) / min_pixel_m, (ns / h) / min_pixel_m)
                if factor < 1.0:
                    w = max(1, math.floor(w * factor))
                    h = max(1, math.floor(h * factor))
            self._check_pixels(w, h)
            return reader.preview(
                indexes=indexes,
                width=w,
                height=h,
                max_size=None,  # type: ignore[arg-type]  # width/height rule
                resampling_method=plan.spec.resampling,
                **_nodata(plan.spec),
            )

        return self._read_aligned(item, plan, first, f"preview of item {item.get('id')!r}")

    # --- finishing ------------------------------------------------------------------
    def value_range(self, item: JSON, plan: Plan) -> tuple[tuple[float, float], ...]:
        """The 2nd-98th percentile of each output band, measured on a small preview and
        cached: the rescale used when a picture needs 8 bits and none was given."""
        key = ("range", item_version(item), plan.spec.without_style())

        def measure() -> tuple[tuple[float, float], ...]:
            img = self._whole(item, plan, max_size=_RANGE_SIZE)
            out = []
            for band in img.array:
                valid = band.compressed()
                valid = valid[np.isfinite(valid)]
                if valid.size == 0:
                    out.append((0.0, 1.0))
                    continue
                lo, hi = (float(v) for v in np.percentile(valid, [2, 98]))
                out.append((lo, hi if hi > lo else lo + 1.0))
            return tuple(out)

        result: tuple[tuple[float, float], ...] = self._ranges.get_or(key, measure)
        return result

    def _finish(
        self,
        img: ImageData,
        plan: Plan,
        fmt: ImageFormat,
        ranges: Callable[[], tuple[tuple[float, float], ...]],
    ) -> bytes:
        spec = plan.spec
        count = img.count
        if spec.colormap_name and count != 1:
            raise InvalidRequestError(
                f"colormap_name colours one band; this request makes {count} "
                "(use bidx=1 or a one-band expression)"
            )
        if spec.rescale and len(spec.rescale) not in (1, count):
            raise InvalidRequestError(
                f"give one rescale for all bands or one per band ({count}), not {len(spec.rescale)}"
            )
        if not fmt.is_image:
            if spec.rescale:
                img.rescale(in_range=spec.rescale)
            with _quiet():
                tiff: bytes = img.render(img_format="GTIFF", add_mask=spec.return_mask)
            return tiff
        if count not in (1, 3):
            raise InvalidRequestError(
                f"{fmt.name.upper()} pictures have 1 band (grey or colour-mapped) or 3 "
                f"(red, green, blue); this request makes {count}: choose bands with bidx, "
                "assets or an expression, or ask for .tif"
            )
        if spec.rescale:
            img.rescale(in_range=spec.rescale)
        elif img.array.dtype != np.uint8:
            img.rescale(in_range=ranges())
        colormap = cmap.get(spec.colormap_name) if spec.colormap_name else None
        add_mask = spec.return_mask and fmt.driver != "JPEG"
        zlevel = self.settings.png_zlevel
        if fmt.driver == "PNG" and colormap is None:
            fast = encode_png(img.array, add_mask=add_mask, level=zlevel)
            if fast is not None:
                return fast
        options = {"ZLEVEL": zlevel} if fmt.driver == "PNG" else {}
        with _quiet():
            content: bytes = img.render(
                img_format=fmt.driver, colormap=colormap, add_mask=add_mask, **options
            )
        return content

    # --- what the routes call ---------------------------------------------------------
    def cached_tile(
        self,
        item: JSON,
        plan: Plan,
        tms: morecantile.TileMatrixSet,
        z: int,
        x: int,
        y: int,
        *,
        scale: int = 1,
        fmt: ImageFormat,
    ) -> Rendered | None:
        """The tile if it is in the cache (cheap: the route answers it without a thread)."""
        return self.cache.get(_tile_key(item, plan, tms, z, x, y, scale, fmt))

    def tile(
        self,
        item: JSON,
        plan: Plan,
        tms: morecantile.TileMatrixSet,
        z: int,
        x: int,
        y: int,
        *,
        scale: int = 1,
        fmt: ImageFormat,
    ) -> Rendered:
        """One map tile. NotFoundError when it lies outside the item's data."""
        check_tile_index(tms, z, x, y)
        found = self.cached_tile(item, plan, tms, z, x, y, scale=scale, fmt=fmt)
        if found is not None:
            return found
        tile = morecantile.Tile(x, y, z)
        tilesize = int(tms.matrix(z).tileWidth) * scale
        img = self._read_tile(item, plan, tms, tile, tilesize)
        content = self._finish(img, plan, fmt, lambda: self.value_range(item, plan))
        rendered = Rendered.of(content, fmt.media_type)
        self.cache.put(_tile_key(item, plan, tms, z, x, y, scale, fmt), rendered)
        return rendered

    def preview(
        self,
        item: JSON,
        plan: Plan,
        *,
        fmt: ImageFormat,
        max_size: int,
        width: int | None = None,
        height: int | None = None,
        min_pixel_m: float | None = None,
    ) -> Rendered:
        """A picture of the whole asset, at most ``max_size`` on its longest side, with
        pixels no finer than ``min_pixel_m`` metres."""
        if max_size > self.settings.max_preview_size:
            raise InvalidRequestError(
                f"max_size {max_size} is over the limit of {self.settings.max_preview_size}"
            )
        key = (
            "preview", item_version(item), plan.spec, fmt.name, max_size, width, height,
            min_pixel_m,
        )  # fmt: skip
        found = self.cache.get(key)
        if found is not None:
            return found
        img = self._whole(
            item, plan, max_size=max_size, width=width, height=height, min_pixel_m=min_pixel_m
        )
        content = self._finish(img, plan, fmt, lambda: self.value_range(item, plan))
        rendered = Rendered.of(content, fmt.media_type)
        self.cache.put(key, rendered)
        return rendered

    def point(
        self, item: JSON, plan: Plan, lon: float, lat: float, *, min_pixel_m: float | None = None
    ) -> JSON:
        """The values of the output bands at a point (null where there is no data).
        With ``min_pixel_m``, the value is the average over a cell of that size."""
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise InvalidRequestError(f"point {lon},{lat} is not a longitude,latitude")
        what = f"point {lon},{lat} of item {item.get('id')!r}"

        def cell(reader: Reader, indexes: tuple[int, ...]) -> ImageData:
            assert min_pixel_m is not None
            xs, ys = rasterio.warp.transform(WGS84, reader.crs, [lon], [lat])
            if reader.crs.is_geographic:
                half_x = min_pixel_m / 2.0 / max(parallel_metres(lat, 1.0), 1e-6)
                half_y = min_pixel_m / 2.0 / 111_320.0
            else:
                half_x = half_y = min_pixel_m / 2.0
            left, bottom, right, top = reader.bounds
            if not (left <= xs[0] <= right and bottom <= ys[0] <= top):
                raise PointOutsideBounds("outside")
            return reader.part(
                (xs[0] - half_x, ys[0] - half_y, xs[0] + half_x, ys[0] + half_y),
                bounds_crs=reader.crs,
                dst_crs=reader.crs,
                width=1,
                height=1,
                indexes=indexes,
                resampling_method="average",
                reproject_method="average",
                **_nodata(plan.spec),
            )

        if min_pixel_m:
            img = self._read_aligned(item, plan, cell, what)
            array = img.array[:, 0, 0]
        else:
            images: dict[str, ImageData] = {}
            with _rio_errors(what):
                for asset, indexes in plan.reads.items():
                    with self._open(item, asset) as reader:
                        pt = reader.point(lon, lat, indexes=indexes, **_nodata(plan.spec))
                    images[asset] = ImageData(pt.array.reshape((-1, 1, 1)))
            array = self._combine(plan, images).array[:, 0, 0]
        masks = np.ma.getmaskarray(array)
        values = [None if m else _plain(v) for v, m in zip(array.data, masks, strict=True)]
        return {
            "coordinates": [lon, lat],
            "values": values,
            "band_names": plan.band_names,
            "resolution_m": min_pixel_m,
        }

    def statistics(
        self,
        item: JSON,
        plan: Plan,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        geometry: JSON | None = None,
        max_size: int,
        min_pixel_m: float | None = None,
        categorical: bool = False,
    ) -> JSON:
        """Per-band statistics over a lon/lat box or a GeoJSON geometry (or the whole
        asset when neither is given), read at most ``max_size`` pixels on a side."""
        if max_size < 1 or max_size > self.settings.max_preview_size:
            raise InvalidRequestError(
                f"max_size must be between 1 and {self.settings.max_preview_size}"
            )
        area = bbox
        if geometry is not None:
            area = _geometry_bounds(geometry)
        size = max_size
        if min_pixel_m and area is not None:
            longest = max(extent_metres(area))
            size = max(1, min(size, math.floor(longest / min_pixel_m)))
        what = f"statistics of item {item.get('id')!r}"
        if area is None:
            img = self._whole(item, plan, max_size=size, min_pixel_m=min_pixel_m)
        else:
            box = area

            def first(reader: Reader, indexes: tuple[int, ...]) -> ImageData:
                return reader.part(
                    box,
                    bounds_crs=WGS84,
                    dst_crs=reader.crs,
                    max_size=size,
                    indexes=indexes,
                    resampling_method=plan.spec.resampling,
                    reproject_method=_warp_method(plan.spec.resampling),
                    **_nodata(plan.spec),
                )

            img = self._read_aligned(item, plan, first, what)
        with _rio_errors(what):
            if geometry is not None:
                assert img.crs is not None
                shape = rasterio.warp.transform_geom(WGS84, img.crs, geometry)
                outside = rasterio.features.geometry_mask(
                    [shape], out_shape=(img.height, img.width), transform=img.transform,
                    all_touched=True,
                )  # fmt: skip
                img.array.mask = np.ma.getmaskarray(img.array) | outside[np.newaxis, :, :]
            stats = img.statistics(categorical=categorical, percentiles=[2, 98])
        return {
            "bands": {name: s.model_dump(mode="json") for name, s in stats.items()},
            "width": img.width,
            "height": img.height,
        }

    def info(self, item: JSON, plan: Plan, tms: morecantile.TileMatrixSet) -> TileInfo:
        """Bounds (lon/lat) and zoom range of a plan's first asset in ``tms``."""
        asset = plan.assets[0]
        key = ("info", item_version(item), asset, tms.id)

        def read() -> TileInfo:
            with _rio_errors(f"item {item.get('id')!r}"), self._open(item, asset, tms) as reader:
                west, south, east, north = reader.get_geographic_bounds(WGS84)
                return TileInfo(
                    bounds=(float(west), float(south), float(east), float(north)),
                    minzoom=int(reader.minzoom),
                    maxzoom=int(reader.maxzoom),
                )

        info: TileInfo = self._info.get_or(key, read)
        return info

    def mosaic_tile(
        self,
        entries: list[tuple[JSON, Plan]],
        spec: RenderSpec,
        tms: morecantile.TileMatrixSet,
        z: int,
        x: int,
        y: int,
        *,
        scale: int = 1,
        fmt: ImageFormat,
    ) -> tuple[Rendered, list[JSON]]:
        """One tile of a mosaic of items (first item on top: pass them newest first).
        Returns the picture and the items whose pixels it shows."""
        check_tile_index(tms, z, x, y)
        if not entries:
            raise NotFoundError(f"no visible item of this mosaic covers tile {z}/{x}/{y}")
        count = entries[0][1].count
        entries = [e for e in entries if e[1].count == count]
        key = (
            "mosaic", tuple(item_version(i) for i, _ in entries), spec, tms.id, z, x, y,
            scale, fmt.name,
        )  # fmt: skip
        by_id = {(i.get("collection"), i.get("id")): i for i, _ in entries}
        found = self.cache.get(key)
        if found is not None:
            return found, [by_id[s] for s in _sources(found)]
        tile = morecantile.Tile(x, y, z)
        tilesize = int(tms.matrix(z).tileWidth) * scale

        def read(entry: tuple[JSON, Plan], *_: Any, **__: Any) -> ImageData:
            item, plan = entry
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # mosaic of differing dtypes
                return self._read_tile(item, plan, tms, tile, tilesize)

        with _rio_errors(f"mosaic tile {z}/{x}/{y}"):
            try:
                img, used = mosaic_reader(
                    entries, read, x, y, z,
                    pixel_selection=FirstMethod(),
                    threads=min(4, len(entries)),
                    allowed_exceptions=(TileOutsideBounds, NotFoundError),
                )  # fmt: skip
            except EmptyMosaicError as exc:
                raise NotFoundError(
                    f"no visible item of this mosaic covers tile {z}/{x}/{y}"
                ) from exc
        used_items = [e[0] for e in used]
        first_item, first_plan = entries[0]
        content = self._finish(
            img, first_plan, fmt, lambda: self.value_range(first_item, first_plan)
        )
        rendered = _WithSources(
            content=content,
            media_type=fmt.media_type,
            etag=Rendered.of(content, fmt.media_type).etag,
            sources=tuple((i.get("collection"), i.get("id")) for i in used_items),
        )
        self.cache.put(key, rendered)
        return rendered, used_items


@dataclass(frozen=True)
class _WithSources(Rendered):
    """A mosaic tile remembers which items it shows, for the audit of cache hits."""

    sources: tuple[tuple[Any, Any], ...] = ()


def _sources(rendered: Rendered) -> tuple[tuple[Any, Any], ...]:
    return rendered.sources if isinstance(rendered, _WithSources) else ()


def _warp_method(resampling: str) -> str:
    return resampling if resampling != "mode" else "nearest"


def _nodata(spec: RenderSpec) -> dict[str, Any]:
    return {"nodata": spec.nodata} if spec.nodata is not None else {}


def _plain(value: Any) -> float | int | None:
    number = value.item() if hasattr(value, "item") else value
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return number  # type: ignore[no-any-return]


def _extent_m(reader: Reader) -> tuple[float, float]:
    """(width, height) of a dataset in metres: exact in a metric CRS, else measured on
    the ellipsoid through the middle of its lon/lat bounds."""
    crs = reader.crs
    if crs.is_projected and (crs.linear_units or "").lower() in ("metre", "meter", "m"):
        left, bottom, right, top = reader.bounds
        return float(right - left), float(top - bottom)
    west, south, east, north = reader.get_geographic_bounds(WGS84)
    return extent_metres((west, south, east, north))


def _preview_shape(
    reader: Reader, max_size: int, width: int | None, height: int | None
) -> tuple[int, int]:
    w0, h0 = int(reader.width or 1), int(reader.height or 1)
    if width and height:
        return width, height
    if width:
        return width, max(1, round(h0 * width / w0))
    if height:
        return max(1, round(w0 * height / h0)), height
    ratio = min(1.0, max_size / max(w0, h0))
    return max(1, round(w0 * ratio)), max(1, round(h0 * ratio))


def _geometry_bounds(geometry: JSON) -> tuple[float, float, float, float]:
    from shapely.geometry import shape

    try:
        geom = shape(geometry)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidRequestError(f"the geometry is not valid GeoJSON: {exc}") from exc
    if geom.is_empty:
        raise InvalidRequestError("the geometry is empty")
    west, south, east, north = geom.bounds
    return float(west), float(south), float(east), float(north)
