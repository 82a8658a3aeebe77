"""Running a process graph: the cube that ``load_collection`` builds from resolved inputs
(odc-stac, lazily, in chunks), the processes of ``openeo-processes-dask``, and the files
``save_result`` writes.

Nothing here reads the catalogue or decides access: a ``Resolver`` hands over what
``inputs.resolve_collection`` allowed. The same code runs in the node (synchronous
``/result``) and in a job's own process (``worker.py``).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eoshare.processing.errors import (
    FormatUnsupported,
    ProcessGraphComplexity,
    ProcessGraphInvalid,
    ProcessParameterInvalid,
)
from eoshare.processing.inputs import CollectionInput

JSON = dict[str, Any]
log = logging.getLogger("eoshare.processing")

# collection id, bbox (lon/lat), start, end, bands -> what may be read
Resolver = Callable[
    [str, tuple[float, float, float, float] | None, datetime | None, datetime | None,
     list[str] | None],
    CollectionInput,
]  # fmt: skip

# openEO output formats: name -> (media type, file extension, what it can hold)
FORMATS: dict[str, tuple[str, str, str]] = {
    "GTIFF": ("image/tiff; application=geotiff", ".tif", "raster"),
    "COG": ("image/tiff; application=geotiff; profile=cloud-optimized", ".tif", "raster"),
    "NETCDF": ("application/x-netcdf", ".nc", "raster"),
    "PNG": ("image/png", ".png", "raster"),
    "JSON": ("application/json", ".json", "any"),
    "GEOJSON": ("application/geo+json", ".geojson", "vector"),
    "CSV": ("text/csv", ".csv", "vector"),
}
CHUNK = 1024  # pixels per side of a dask chunk: ~2-8 MB a chunk, whatever the scene


@dataclass
class Output:
    """One file a graph produced."""

    path: Path
    media_type: str
    format: str
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    shape: tuple[int, ...] | None = None
    epsg: int | None = None
    transform: list[float] | None = None

    def to_dict(self) -> JSON:
        d = dict(vars(self))
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_dict(cls, d: JSON) -> Output:
        d = dict(d)
        d["path"] = Path(d["path"])
        for key in ("bbox", "shape"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


def parse_instant(text: Any, *, end: bool = False) -> datetime | None:
    """RFC 3339 date-time or date -> aware UTC; a date as an end means its whole day."""
    if text is None:
        return None
    value = getattr(text, "root", text)  # pg-parser's Date/DateTime models
    value = getattr(value, "root", value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    s = str(value).strip()
    try:
        if len(s) == 10:
            dt = datetime.fromisoformat(s).replace(tzinfo=UTC)
            return dt
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProcessParameterInvalid(
            f"The value passed for parameter 'temporal_extent' is invalid: {s!r} is not a date"
        ) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _bbox_of(extent: Any) -> tuple[float, float, float, float] | None:
    if extent is None:
        return None
    from eoshare.processing.graph import _bbox

    if hasattr(extent, "model_dump"):
        extent = extent.model_dump()
    return _bbox(extent, "load_collection")


class Run:
    """One execution of one graph. ``resolver`` supplies the inputs; files go to
    ``out_dir``; ``max_pixels`` bounds each loaded cube (synchronous calls)."""

    def __init__(
        self,
        resolver: Resolver,
        out_dir: Path,
        *,
        max_pixels: int | None = None,
        logger: Callable[[str, str], None] | None = None,
        dask_address: str | None = None,
    ) -> None:
        self.resolver = resolver
        self.out_dir = out_dir
        self.max_pixels = max_pixels
        self.saved: list[tuple[Any, str, JSON]] = []
        self.inputs: list[CollectionInput] = []
        self.logger = logger or (lambda level, message: log.info(message))
        self.dask_address = dask_address

    # --- processes this node implements itself ----------------------------------------
    def load_collection(
        self,
        id: str,
        spatial_extent: Any = None,
        temporal_extent: Any = None,
        bands: Any = None,
        properties: Any = None,
        **_: Any,
    ) -> Any:
        import numpy as np
        import odc.stac
        import pystac
        import xarray as xr

        bbox = _bbox_of(spatial_extent)
        start = end = None
        if temporal_extent is not None:
            interval = getattr(temporal_extent, "root", temporal_extent)
            start = parse_instant(interval[0])
            end = parse_instant(interval[1], end=True)
            if end is not None:
                end = end - timedelta(microseconds=1)  # openEO's end is exclusive
        band_names = list(bands) if bands else None
        inp = self.resolver(str(id), bbox, start, end, band_names)
        self.inputs.append(inp)
        self.logger("info", f"load_collection {id}: {len(inp.items)} scene(s)")
        if not inp.items:
            raise ProcessParameterInvalid(
                f"load_collection of '{id}' found no scene that you may process in the "
                "requested extent"
            )
        items = [pystac.Item.from_dict(dict(it)) for it in inp.items]
        native = min((b.resolution_m for b in inp.bands if b.resolution_m), default=None)
        resolution = native
        if inp.max_resolution_m is not None:
            resolution = max(native or 0.0, inp.max_resolution_m)
            self.logger(
                "warning",
                f"load_collection {id}: reduced access, read at {resolution:g} m",
            )
        kwargs: JSON = {}
        if bbox is not None:
            kwargs["bbox"] = bbox
        if resolution is not None and _geographic(inp.items[0]):
            # the scenes' grid is in degrees: native pixels unless reduced (metres -> degrees)
            resolution = None
            if inp.max_resolution_m is not None:
                kwargs["resolution"] = inp.max_resolution_m / 111_320.0
        if resolution is not None:
            kwargs["resolution"] = resolution
            anchor = _anchor(inp.items[0], [b.asset for b in inp.bands], resolution)
            if anchor is not None:
                kwargs["anchor"] = anchor
        if inp.gdal_env:
            odc.stac.configure_rio(**dict[str, Any](inp.gdal_env))
        assets = [b.asset for b in inp.bands]
        try:
            ds = odc.stac.load(
                items,
                bands=assets,
                chunks={"x": CHUNK, "y": CHUNK},
                groupby="solar_day",
                fail_on_error=True,
                **kwargs,
            )
        except ValueError as exc:
            raise ProcessParameterInvalid(f"load_collection of '{id}': {exc}") from exc
        npix = int(ds.sizes.get("x", 0)) * int(ds.sizes.get("y", 0)) * int(ds.sizes["time"])
        if self.max_pixels is not None and npix * len(assets) > self.max_pixels:
            raise ProcessGraphComplexity(
                f"The process is too complex for synchronous processing: load_collection of "
                f"'{id}' reads {npix * len(assets)} pixels (limit {self.max_pixels}). "
                "Use a batch job, or narrow the extent."
            )
        names_xy = {"time": "t", "latitude": "y", "longitude": "x"}
        cube = ds.to_dataarray(dim="bands").rename(
            {k: v for k, v in names_xy.items() if k in ds.dims}
        )
        cube = cube.transpose("t", "bands", "y", "x")
        common = [b.common_name or b.name for b in inp.bands]
        names = [b.name for b in inp.bands]
        cube = cube.assign_coords(bands=names, common_name=("bands", np.array(common)))
        nodata = [b.nodata for b in inp.bands]
        if any(v is not None for v in nodata):
            fill = xr.DataArray(
                [np.nan if v is None else v for v in nodata], dims="bands", coords={"bands": names}
            )
            cube = cube.where(cube != fill)
        return cube

    def load_stac(
        self,
        url: str,
        spatial_extent: Any = None,
        temporal_extent: Any = None,
        bands: Any = None,
        properties: Any = None,
        **_: Any,
    ) -> Any:
        """``load_stac`` of a collection of this node (``.../collections/{id}``)."""
        from eoshare.processing.graph import collection_of_url

        cid = collection_of_url(url, None)
        if cid is None:
            raise ProcessParameterInvalid(
                "The value passed for parameter 'url' in process 'load_stac' is invalid: "
                "it must be the URL of a collection of this node"
            )
        return self.load_collection(cid, spatial_extent, temporal_extent, bands, properties)

    def save_result(self, data: Any, format: str, options: Any = None, **_: Any) -> bool:
        fmt = str(format).upper()
        if fmt in ("GEOTIFF", "TIFF", "TIF"):
            fmt = "GTIFF"
        if fmt not in FORMATS:
            raise FormatUnsupported(
                f"File format {format} not allowed. Allowed file formats: {', '.join(FORMATS)}"
            )
        self.saved.append((data, fmt, dict(options or {})))
        return True

    # --- running ----------------------------------------------------------------------
    def execute(self, graph: JSON, registry: Any) -> tuple[Any, list[Output]]:
        """Run ``graph`` and write what it saved (or its result) to ``out_dir``."""
        import dask
        from openeo_pg_parser_networkx import OpenEOProcessGraph

        try:
            pg = OpenEOProcessGraph(pg_data={"process_graph": graph})
            func = pg.to_callable(process_registry=registry)
        except Exception as exc:  # the parser raises many kinds on bad input
            raise ProcessGraphInvalid(f"The process graph cannot be parsed: {exc}") from exc
        client = _client(self.dask_address)
        scheduler: Any = client if client is not None else "threads"
        with dask.config.set(scheduler=scheduler):
            result = func()
            if not self.saved:
                self.saved.append((result, "JSON" if not _is_cube(result) else "GTIFF", {}))
            outputs: list[Output] = []
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for n, (data, fmt, options) in enumerate(self.saved):
                outputs.extend(self._write(data, fmt, options, n, client))
        return result, outputs

    def _write(self, data: Any, fmt: str, options: JSON, n: int, client: Any) -> list[Output]:
        media, ext, kind = FORMATS[fmt]
        stem = f"result{'' if n == 0 else f'-{n}'}"
        if not _is_cube(data):
            if kind == "raster":
                raise FormatUnsupported(f"{fmt} needs a raster data cube; this result is not one")
            path = self.out_dir / f"{stem}{ext}"
            value = _jsonable(data)
            if fmt == "CSV":
                _write_csv(value, path)
            elif fmt == "GEOJSON":
                path.write_text(json.dumps(_feature_collection(value)), encoding="utf-8")
            else:
                path.write_text(json.dumps(value), encoding="utf-8")
            return [Output(path, media, fmt)]
        if fmt == "JSON":
            path = self.out_dir / f"{stem}.json"
            path.write_text(json.dumps(_jsonable(data.compute().values.tolist())), encoding="utf-8")
            return [Output(path, media, fmt)]
        if fmt == "NETCDF":
            path = self.out_dir / f"{stem}.nc"
            clean = data.copy()
            clean.attrs = {k: v for k, v in data.attrs.items() if isinstance(v, str | int | float)}
            clean = clean.drop_vars(
                [c for c in clean.coords if clean.coords[c].dtype == object], errors="ignore"
            )
            clean.to_netcdf(path)
            return [Output(path, media, fmt, **_grid(data))]
        return self._write_rasters(data, fmt, stem, client)

    def _write_rasters(self, data: Any, fmt: str, stem: str, client: Any) -> list[Output]:
        media, ext, _ = FORMATS[fmt]
        dims = list(data.dims)
        tdim = next((d for d in dims if d in ("t", "time")), None)
        slices: list[tuple[str | None, Any]] = []
        if tdim is not None:
            labels = data[tdim].values
            for i in range(data.sizes[tdim]):
                label = str(labels[i])[:19] if len(labels) else None
                slices.append((label, data.isel({tdim: i})))
        else:
            slices.append((None, data))
        out: list[Output] = []
        for label, arr in slices:
            other = [d for d in arr.dims if d not in ("x", "y")]
            if len(other) > 1:
                raise FormatUnsupported(
                    f"{fmt} holds x, y and one more dimension; this cube has {arr.dims}"
                )
            if other:
                arr = arr.transpose(other[0], "y", "x")
                descriptions = [str(v) for v in arr[other[0]].values]
            else:
                arr = arr.transpose("y", "x")
                descriptions = []
            drop = [c for c in arr.coords if c not in (*arr.dims, "spatial_ref")]
            arr = arr.drop_vars(drop)
            if arr.dtype == bool:
                arr = arr.astype("uint8")
            suffix = "" if len(slices) == 1 or label is None else f"-{label[:10]}"
            path = self.out_dir / f"{stem}{suffix}{ext}"
            if fmt == "PNG":
                _write_png(arr, path)
            else:
                _write_tiff(arr, path, client, descriptions)
            grid = _grid(arr)
            out.append(Output(path, media, fmt, datetime=_iso(label), **grid))
        return out


def _geographic(item: JSON) -> bool:
    """Whether the scene's grid is in degrees (EPSG:4326 and the like)."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    props = item.get("properties") or {}
    code = props.get("proj:code") or (
        f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None
    )
    if not code:
        return False
    try:
        return bool(CRS.from_user_input(code).is_geographic)
    except CRSError:
        return False


def _anchor(item: JSON, assets: list[str], resolution: float) -> Any:
    """Pixel edges on the scene's own grid (odc-stac otherwise snaps them to multiples of
    the resolution, which resamples a grid such as Sentinel-2's x0 = 199980 m)."""
    from odc.geo import xy_

    for key in assets:
        t = (item.get("assets") or {}).get(key, {}).get("proj:transform")
        if isinstance(t, list) and len(t) >= 6:
            fx = (float(t[2]) % resolution) / resolution
            fy = (float(t[5]) % resolution) / resolution
            return xy_(fx % 1.0, fy % 1.0)
    return None


def _iso(label: str | None) -> str | None:
    if not label:
        return None
    try:
        dt = datetime.fromisoformat(label)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _records(value: Any) -> list[JSON]:
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    return [{"value": value}]


def _write_csv(value: Any, path: Path) -> None:
    import csv

    rows = _records(value)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _feature_collection(value: Any) -> JSON:
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": None, "properties": row} for row in _records(value)
        ],
    }


def _is_cube(value: Any) -> bool:
    import xarray as xr

    return isinstance(value, xr.DataArray) and "x" in value.dims and "y" in value.dims


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "compute"):
        value = value.compute()
    if hasattr(value, "values") and not isinstance(value, dict):
        value = value.values
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _grid(arr: Any) -> JSON:
    """bbox (lon/lat), epsg, shape and transform of a cube with a CRS."""
    try:
        crs = arr.rio.crs
        if crs is None:
            return {}
        from pyproj import Transformer

        left, bottom, right, top = arr.rio.bounds()
        tr = Transformer.from_crs(crs, 4326, always_xy=True)
        w, s, e, n = tr.transform_bounds(left, bottom, right, top)
        t = arr.rio.transform()
        return {
            "bbox": (round(w, 7), round(s, 7), round(e, 7), round(n, 7)),
            "epsg": crs.to_epsg(),
            "shape": (int(arr.sizes["y"]), int(arr.sizes["x"])),
            "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        }
    except Exception:  # a cube without a usable grid still gets written
        return {}


def _write_tiff(arr: Any, path: Path, client: Any, descriptions: list[str]) -> None:
    """A tiled, compressed GeoTIFF written chunk by chunk (the cube is never whole in
    memory)."""
    if client is not None:
        from distributed import Lock

        lock: Any = Lock("eoshare-write")  # type: ignore[no-untyped-call]
    else:
        lock = threading.Lock()
    arr = arr.chunk({"y": CHUNK, "x": CHUNK}) if hasattr(arr.data, "dask") else arr
    tmp = path.with_suffix(".part.tif")
    kwargs: JSON = {"tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    if hasattr(arr.data, "dask"):
        arr.rio.to_raster(tmp, lock=lock, compute=True, **kwargs)
    else:
        arr.rio.to_raster(tmp, **kwargs)
    if descriptions:
        import rasterio

        with rasterio.open(tmp, "r+") as ds:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
    tmp.replace(path)


def _write_png(arr: Any, path: Path) -> None:
    """A quick-look PNG: each band stretched to 0..255 between its 2nd and 98th percentile."""
    import numpy as np
    from PIL import Image

    values = np.asarray(arr.compute().values, dtype="float64")
    if values.ndim == 2:
        values = values[None]
    if values.shape[0] not in (1, 3):
        values = values[:1]
    out = np.zeros(values.shape, dtype="uint8")
    for i, band in enumerate(values):
        finite = band[np.isfinite(band)]
        lo, hi = 0.0, 1.0
        if finite.size:
            lo, hi = (float(v) for v in np.percentile(finite, [2, 98]))
        scaled = np.clip((band - lo) / ((hi - lo) or 1.0) * 255, 0, 255)
        out[i] = np.nan_to_num(scaled).astype("uint8")
    pixels = out[0] if out.shape[0] == 1 else np.moveaxis(out, 0, -1)  # type: ignore[misc]
    image = Image.fromarray(pixels)
    image.save(path, format="PNG")


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _client(address: str | None) -> Any:
    """A distributed Client for ``address`` (one per process), or None for Dask's local
    threaded scheduler."""
    if not address:
        return None
    with _clients_lock:
        client = _clients.get(address)
        if client is None or client.status not in ("running", "connecting"):
            from distributed import Client

            # the default client of this process: Dask's ``Lock`` and ``compute`` find it
            client = Client(address, timeout="20s")  # type: ignore[no-untyped-call]
            _clients[address] = client
        return client
