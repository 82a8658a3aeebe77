"""Ready-made algorithms, offered as processes next to openEO's own (``GET /processes``
lists them with these specs): spectral indices found by ``eo:common_name``, cloud masks,
composites, change, flood extent, burn severity and zonal statistics.

They take the cubes that ``load_collection`` builds here: dimensions ``t``, ``bands``,
``y``, ``x``, with a ``common_name`` coordinate on ``bands``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from eoshare.processing.errors import ProcessParameterInvalid

JSON = dict[str, Any]
CUBE: JSON = {"type": "object", "subtype": "datacube"}

# the usual other names of a common name (Landsat's NIR is "nir08")
ALIASES = {"nir": ("nir", "nir08"), "swir22": ("swir22",), "green": ("green",)}
# Sentinel-2 scene classes that are not clear ground: no data, saturated, cloud shadow,
# cloud medium and high probability, thin cirrus
SCL_MASKED = (0, 1, 3, 8, 9, 10)
# Landsat Collection 2 QA_PIXEL bits: fill, dilated cloud, cirrus, cloud, cloud shadow
QA_BITS = (0, 1, 2, 3, 4)
# USGS burn severity classes of dNBR (Key and Benson 2006): upper bounds and codes
DNBR_CLASSES = (
    (-0.25, 1, "enhanced regrowth, high"),
    (-0.1, 2, "enhanced regrowth, low"),
    (0.1, 3, "unburned"),
    (0.27, 4, "low severity"),
    (0.44, 5, "moderate-low severity"),
    (0.66, 6, "moderate-high severity"),
    (float("inf"), 7, "high severity"),
)


def _band(data: Any, name: str) -> Any:
    """One band of ``data`` by band name or by common name (aliases included)."""
    names = [str(v) for v in data["bands"].values]
    if name in names:
        return data.sel(bands=name, drop=True)
    if "common_name" in data.coords:
        common = [str(v) for v in data["common_name"].values]
        for alias in ALIASES.get(name, (name,)):
            if alias in common:
                return data.isel(bands=common.index(alias), drop=True)
    raise ProcessParameterInvalid(
        f"The data cube has no band '{name}' (by name or eo:common_name); it has {', '.join(names)}"
    )


def _nd(a: Any, b: Any) -> Any:
    a = a.astype("float32")
    b = b.astype("float32")
    return (a - b) / (a + b)


def _drop_bands(data: Any, name: str) -> Any:
    return data.sel(bands=[b for b in data["bands"].values if str(b) != name])


def _split(data: Any, at: Any) -> tuple[Any, Any]:
    when = np.datetime64(_instant(at).replace(tzinfo=None), "ns")
    before = data.sel(t=data["t"] < when)
    after = data.sel(t=data["t"] >= when)
    if before.sizes["t"] == 0 or after.sizes["t"] == 0:
        raise ProcessParameterInvalid(
            f"The value passed for parameter 'split' is invalid: {at} does not divide the "
            "cube's dates into two periods"
        )
    return before, after


def _instant(value: Any) -> datetime:
    from eoshare.processing.execute import parse_instant

    dt = parse_instant(value)
    if dt is None:
        raise ProcessParameterInvalid("The value passed for parameter 'split' is invalid")
    return dt


def ndwi(data: Any, **_: Any) -> Any:
    return _nd(_band(data, "green"), _band(data, "nir"))


def nbr(data: Any, **_: Any) -> Any:
    return _nd(_band(data, "nir"), _band(data, "swir22"))


def cloud_mask_scl(data: Any, band: str = "SCL", **_: Any) -> Any:
    scl = _band(data, band)
    clear = ~scl.isin(list(SCL_MASKED)) & scl.notnull()
    return _drop_bands(data, band).where(clear)


def cloud_mask_qa_pixel(data: Any, band: str = "QA_PIXEL", **_: Any) -> Any:
    qa = _band(data, band).fillna(1).astype("uint16")
    bad = sum(1 << b for b in QA_BITS)
    clear = (qa & bad) == 0
    return _drop_bands(data, band).where(clear)


def median_composite(data: Any, **_: Any) -> Any:
    return data.median(dim="t", skipna=True)


def change(data: Any, split: Any, **_: Any) -> Any:
    before, after = _split(data, split)
    return after.median(dim="t", skipna=True) - before.median(dim="t", skipna=True)


def flood_extent(data: Any, threshold: float = 0.0, **_: Any) -> Any:
    index = ndwi(data)
    return (index > threshold).where(index.notnull()).astype("float32")


def flood_extent_sar(data: Any, band: str = "VV", threshold_db: float = -18.0, **_: Any) -> Any:
    sigma0 = _band(data, band).astype("float32")
    db = 10 * np.log10(sigma0.where(sigma0 > 0))
    return (db < threshold_db).where(db.notnull()).astype("float32")


def dnbr_classes(data: Any, split: Any, **_: Any) -> Any:
    before, after = _split(data, split)
    dnbr = nbr(before).median(dim="t", skipna=True) - nbr(after).median(dim="t", skipna=True)
    out = dnbr * np.nan
    lower = -np.inf
    for upper, code, _name in DNBR_CLASSES:
        out = out.where(~((dnbr >= lower) & (dnbr < upper)), float(code))
        lower = upper
    return out.astype("float32")


def zonal_statistics(data: Any, geometries: Any, reducer: str = "mean", **_: Any) -> Any:
    """Per feature, band and date: the reducer over the pixels whose centres fall in the
    feature. Returns a JSON-able list of records (JSON, GeoJSON or CSV output)."""
    import rasterio.features
    from pyproj import Transformer
    from shapely.geometry import mapping, shape

    reducers: dict[str, Callable[[Any], float]] = {
        "mean": np.nanmean, "median": np.nanmedian, "min": np.nanmin, "max": np.nanmax,
        "sum": np.nansum, "sd": np.nanstd, "count": lambda a: float(np.isfinite(a).sum()),
    }  # fmt: skip
    if reducer not in reducers:
        raise ProcessParameterInvalid(
            f"The value passed for parameter 'reducer' is invalid: one of {', '.join(reducers)}"
        )
    if hasattr(geometries, "model_dump"):
        geometries = geometries.model_dump(exclude_none=True)
    if not isinstance(geometries, dict):
        raise ProcessParameterInvalid("'geometries' must be a GeoJSON object")
    features = (
        geometries.get("features", [])
        if geometries.get("type") == "FeatureCollection"
        else [{"type": "Feature", "properties": {}, "geometry": geometries}]
        if geometries.get("type") != "Feature"
        else [geometries]
    )
    crs = data.rio.crs
    to_cube = Transformer.from_crs(4326, crs, always_xy=True)
    transform = data.rio.transform()
    shape_yx = (int(data.sizes["y"]), int(data.sizes["x"]))
    values = data.compute()
    records: list[JSON] = []
    for n, feature in enumerate(features):
        geom = shape(feature["geometry"])
        coords = mapping(_reproject(geom, to_cube))
        inside = rasterio.features.geometry_mask(
            [coords], out_shape=shape_yx, transform=transform, invert=True
        )
        props = dict(feature.get("properties") or {})
        fid = feature.get("id", props.get("id", n))
        times = values["t"].values if "t" in values.dims else [None]
        bands = values["bands"].values if "bands" in values.dims else [None]
        for t in times:
            for b in bands:
                arr = values
                if t is not None:
                    arr = arr.sel(t=t)
                if b is not None:
                    arr = arr.sel(bands=b)
                pixels = np.asarray(arr.values, dtype="float64")[inside]
                stat = reducers[reducer](pixels) if pixels.size else float("nan")
                records.append(
                    {
                        "feature": fid,
                        "date": str(t)[:19] if t is not None else None,
                        "band": str(b) if b is not None else None,
                        reducer: None if not np.isfinite(stat) else float(stat),
                        "pixels": int(np.isfinite(pixels).sum()),
                    }
                )
    return records


def _reproject(geom: Any, transformer: Any) -> Any:
    import shapely

    return shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(*xy.T)))


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "ndwi": ndwi,
    "nbr": nbr,
    "cloud_mask_scl": cloud_mask_scl,
    "cloud_mask_qa_pixel": cloud_mask_qa_pixel,
    "median_composite": median_composite,
    "change": change,
    "flood_extent": flood_extent,
    "flood_extent_sar": flood_extent_sar,
    "dnbr_classes": dnbr_classes,
    "zonal_statistics": zonal_statistics,
}


def _spec(pid: str, summary: str, description: str, params: list[JSON], returns: JSON) -> JSON:
    return {
        "id": pid,
        "summary": summary,
        "description": description,
        "categories": ["eoshare", "cubes"],
        "parameters": params,
        "returns": returns,
    }


def _data(description: str = "A raster data cube from load_collection.") -> JSON:
    return {"name": "data", "description": description, "schema": CUBE}


def _opt(name: str, description: str, schema: JSON, default: Any) -> JSON:
    return {"name": name, "description": description, "schema": schema, "optional": True,
            "default": default}  # fmt: skip


_SPLIT = {
    "name": "split",
    "description": "The date that separates the period before from the period after.",
    "schema": {"type": "string", "format": "date-time", "subtype": "date-time"},
}
_RESULT = {"description": "A raster data cube.", "schema": CUBE}

SPECS: dict[str, JSON] = {
    "ndwi": _spec("ndwi", "Normalized difference water index (McFeeters)",
                  "(green - nir) / (green + nir), bands found by eo:common_name.",
                  [_data()], _RESULT),
    "nbr": _spec("nbr", "Normalized burn ratio",
                 "(nir - swir22) / (nir + swir22), bands found by eo:common_name.",
                 [_data()], _RESULT),
    "cloud_mask_scl": _spec(
        "cloud_mask_scl", "Sentinel-2 cloud mask from the scene classification (SCL)",
        "Sets to no-data the pixels whose SCL class is no data, saturated, cloud shadow, "
        "cloud (medium or high probability) or thin cirrus, and drops the SCL band.",
        [_data(), _opt("band", "The SCL band's name.", {"type": "string"}, "SCL")], _RESULT),
    "cloud_mask_qa_pixel": _spec(
        "cloud_mask_qa_pixel", "Landsat cloud mask from QA_PIXEL",
        "Sets to no-data the pixels flagged fill, dilated cloud, cirrus, cloud or cloud "
        "shadow in Landsat Collection 2 QA_PIXEL, and drops that band.",
        [_data(), _opt("band", "The QA band's name.", {"type": "string"}, "QA_PIXEL")], _RESULT),
    "median_composite": _spec("median_composite", "Median composite over time",
                              "The per-pixel median of every band over the cube's dates.",
                              [_data()], _RESULT),
    "change": _spec("change", "Change between two periods",
                    "median(after) - median(before), per band and pixel.",
                    [_data(), _SPLIT], _RESULT),
    "flood_extent": _spec(
        "flood_extent", "Flood extent from optical data",
        "1 where NDWI is above the threshold (water), 0 elsewhere, no-data where unknown.",
        [_data(), _opt("threshold", "NDWI threshold.", {"type": "number"}, 0.0)], _RESULT),
    "flood_extent_sar": _spec(
        "flood_extent_sar", "Flood extent from SAR backscatter",
        "1 where the backscatter (linear sigma0, in dB) is below the threshold (open "
        "water), 0 elsewhere.",
        [_data(), _opt("band", "The backscatter band.", {"type": "string"}, "VV"),
         _opt("threshold_db", "Threshold in dB.", {"type": "number"}, -18.0)], _RESULT),
    "dnbr_classes": _spec(
        "dnbr_classes", "Burn severity (dNBR) in USGS classes",
        "dNBR = NBR(before) - NBR(after), medians over each period, in the USGS classes: "
        + "; ".join(f"{code} {name} (below {upper})" for upper, code, name in DNBR_CLASSES),
        [_data(), _SPLIT], _RESULT),
    "zonal_statistics": _spec(
        "zonal_statistics", "Zonal statistics of polygons",
        "Per feature, band and date, a statistic of the pixels whose centres fall inside "
        "the feature; saved as JSON, GeoJSON or CSV records.",
        [_data(), {"name": "geometries", "description": "GeoJSON polygons (WGS 84).",
                   "schema": {"type": "object", "subtype": "geojson"}},
         _opt("reducer", "mean, median, min, max, sum, sd or count.", {"type": "string"},
              "mean")],
        {"description": "Records: feature, date, band, the statistic, pixels.",
         "schema": {"type": "array"}}),
}  # fmt: skip
