"""What to draw: the rendering request (``RenderSpec``), the default rendering of an item
(``render_defaults``), and the plan that resolves a request against one item's raster
assets (``plan_for``): which bands of which stored files to read, and how to combine them.

Only assets that eoshare itself stores are ever opened: an asset is a raster asset when it
carries ``eoshare:key`` (a key into the ``Store``) and is a GeoTIFF. Hrefs written in
documents are never followed (that would let a document make the server fetch any URL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eoshare.catalog.assetkeys import held_assets
from eoshare.errors import InvalidRequestError
from eoshare.tiles.expression import Expression, parse_expression

JSON = dict[str, Any]

RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")
_VISUAL_KEYS = ("visual", "tci", "rgb", "truecolor", "true_color")
_BAND_REF = re.compile(r"^(?P<asset>.+)_b(?P<index>\d+)$")
_INDEX_REF = re.compile(r"^b(?P<index>\d+)$")


@dataclass(frozen=True)
class ImageFormat:
    """One output format: its GDAL driver and media type."""

    name: str
    driver: str
    media_type: str

    @property
    def is_image(self) -> bool:
        """True for formats a browser shows (PNG, JPEG, WebP); False for GeoTIFF."""
        return self.driver != "GTIFF"


PNG = ImageFormat("png", "PNG", "image/png")
FORMATS: dict[str, ImageFormat] = {
    "png": PNG,
    "jpg": ImageFormat("jpg", "JPEG", "image/jpeg"),
    "jpeg": ImageFormat("jpg", "JPEG", "image/jpeg"),
    "webp": ImageFormat("webp", "WEBP", "image/webp"),
    "tif": ImageFormat("tif", "GTIFF", "image/tiff; application=geotiff"),
    "tiff": ImageFormat("tif", "GTIFF", "image/tiff; application=geotiff"),
}


def image_format(name: str | None) -> ImageFormat:
    """The format for an extension (``png``, ``jpg``, ``webp``, ``tif``); PNG when None."""
    if name is None or name == "":
        return PNG
    fmt = FORMATS.get(name.lower())
    if fmt is None:
        raise InvalidRequestError(
            f"format {name!r} is not supported; use one of png, jpg, jpeg, webp, tif"
        )
    return fmt


@dataclass(frozen=True)
class RenderSpec:
    """A rendering request, already checked: the query parameters shared by tiles,
    previews, point values and statistics. Hashable, so it is part of cache keys."""

    assets: tuple[str, ...] = ()
    expression: str | None = None
    bidx: tuple[int, ...] = ()
    # one (min, max) for every band, or one per output band
    rescale: tuple[tuple[float, float], ...] = ()
    colormap_name: str | None = None
    resampling: str = "nearest"
    nodata: float | None = None
    return_mask: bool = True

    @property
    def is_default(self) -> bool:
        return not self.assets and not self.expression

    def query(self) -> list[tuple[str, str]]:
        """The query parameters that ask for this rendering again (for URLs)."""
        out: list[tuple[str, str]] = [("assets", a) for a in self.assets]
        if self.expression:
            out.append(("expression", self.expression))
        out += [("bidx", str(i)) for i in self.bidx]
        out += [("rescale", f"{_num(lo)},{_num(hi)}") for lo, hi in self.rescale]
        if self.colormap_name:
            out.append(("colormap_name", self.colormap_name))
        if self.resampling != "nearest":
            out.append(("resampling", self.resampling))
        if self.nodata is not None:
            out.append(("nodata", _num(self.nodata)))
        if not self.return_mask:
            out.append(("return_mask", "false"))
        return out

    def without_style(self) -> RenderSpec:
        """The same bands without rescale/colour map (the key of its value range)."""
        return RenderSpec(
            assets=self.assets,
            expression=self.expression,
            bidx=self.bidx,
            resampling=self.resampling,
            nodata=self.nodata,
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def make_spec(
    *,
    assets: Iterable[str] = (),
    expression: str | None = None,
    bidx: Iterable[int] = (),
    rescale: Iterable[str] = (),
    colormap_name: str | None = None,
    resampling: str | None = None,
    nodata: str | float | None = None,
    return_mask: bool = True,
    max_expression_chars: int = 512,
) -> RenderSpec:
    """Check raw query values and build a ``RenderSpec``; raises InvalidRequestError."""
    names = tuple(a for raw in assets for a in raw.split(",") if a.strip())
    names = tuple(a.strip() for a in names)
    if len(set(names)) != len(names):
        raise InvalidRequestError("each asset may be named once in 'assets'")
    expr = expression.strip() if expression else None
    if expr:
        parse_expression(expr, max_chars=max_expression_chars)  # syntax errors now, as 400
    indexes = tuple(bidx)
    if any(i < 1 for i in indexes):
        raise InvalidRequestError("band indexes (bidx) start at 1")
    if expr and indexes:
        raise InvalidRequestError("give either an expression or bidx, not both")
    ranges: list[tuple[float, float]] = []
    for raw in rescale:
        parts = raw.split(",")
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise InvalidRequestError(
                f"rescale {raw!r} must be two numbers: min,max (e.g. rescale=0,3000)"
            ) from None
        if not (lo == lo and hi == hi) or lo in (float("inf"), float("-inf")):
            raise InvalidRequestError(f"rescale {raw!r} must be finite numbers")
        if hi <= lo:
            raise InvalidRequestError(f"rescale {raw!r}: max must be greater than min")
        ranges.append((lo, hi))
    if colormap_name is not None:
        # rio-tiler (and rasterio, xarray) load here, on the first picture asked for
        from rio_tiler.colormap import cmap

        colormap_name = colormap_name.strip().lower()
        if colormap_name not in cmap.list():
            raise InvalidRequestError(
                f"unknown colormap_name {colormap_name!r}; for example viridis, magma, "
                "rdylgn, greys, terrain (GET /tiles/colormaps lists them all)"
            )
    method = (resampling or "nearest").lower()
    if method not in RESAMPLING:
        raise InvalidRequestError(
            f"resampling {resampling!r} is not one of {', '.join(RESAMPLING)}"
        )
    nodata_value: float | None = None
    if nodata is not None and nodata != "":
        try:
            nodata_value = float(nodata)
        except ValueError:
            raise InvalidRequestError(f"nodata {nodata!r} must be a number or 'nan'") from None
    return RenderSpec(
        assets=names,
        expression=expr,
        bidx=indexes,
        rescale=tuple(ranges),
        colormap_name=colormap_name,
        resampling=method,
        nodata=nodata_value,
        return_mask=return_mask,
    )


# --- the item's raster assets ----------------------------------------------------------
def raster_assets(item: JSON) -> dict[str, JSON]:
    """The assets of an item that tiles may open: stored by eoshare for this very item
    (``eoshare:key`` bound to it, see ``eoshare.catalog.assetkeys``), GeoTIFF, and not a
    thumbnail or overview picture. In document order."""
    out: dict[str, JSON] = {}
    for key, asset, bound in held_assets(item):  # keys bound to this item only
        media = str(asset.get("type", "")).lower()
        roles = asset.get("roles") or []
        store_key = bound.lower()
        tiff = "image/tiff" in media or (not media and store_key.endswith((".tif", ".tiff")))
        if tiff and "thumbnail" not in roles and "overview" not in roles:
            out[key] = asset
    return out


def _bands(asset: JSON) -> list[JSON]:
    for name in ("bands", "eo:bands", "raster:bands"):
        value = asset.get(name)
        if isinstance(value, list) and value:
            return [b if isinstance(b, dict) else {} for b in value]
    return []


def band_count(asset: JSON) -> int | None:
    """How many bands the asset says it has; None when its metadata does not say."""
    return len(_bands(asset)) or None


def _common_name(band: JSON) -> str | None:
    name = band.get("eo:common_name", band.get("common_name"))
    return name.lower() if isinstance(name, str) else None


def _data_type(asset: JSON) -> str | None:
    types = {b.get("data_type", b.get("raster:data_type")) for b in _bands(asset)}
    types.discard(None)
    return str(types.pop()) if len(types) == 1 else None


def render_defaults(item: JSON) -> RenderSpec:
    """How an item is drawn when the caller names no assets and no expression.

    1. a visual/TCI-like asset with 3 (or more) 8-bit bands: its first three bands;
    2. else an RGB of the single-band assets whose common names are red, green, blue;
    3. else the first raster asset, band 1, greyscale (rescaled at render time to the
       2nd-98th percentile of its values, since no range is given).

    Reads metadata only (never a file), so item decorators can call it for every item."""
    rasters = raster_assets(item)
    if not rasters:
        raise InvalidRequestError(f"item {item.get('id')!r} has no raster asset to render")
    for key, asset in rasters.items():
        roles = asset.get("roles") or []
        count = band_count(asset)
        visual = key.lower() in _VISUAL_KEYS or "visual" in roles
        if visual and (count is None or count >= 3) and _data_type(asset) in (None, "uint8"):
            return RenderSpec(assets=(key,), bidx=(1, 2, 3) if count != 3 else ())
    by_colour: dict[str, str] = {}
    for key, asset in rasters.items():
        bands = _bands(asset)
        if len(bands) == 1:
            name = _common_name(bands[0])
            if name in ("red", "green", "blue"):
                by_colour.setdefault(name, key)
    if len(by_colour) == 3:
        return RenderSpec(assets=(by_colour["red"], by_colour["green"], by_colour["blue"]))
    first = next(iter(rasters))
    return RenderSpec(assets=(first,), bidx=(1,))


# --- resolving a request against an item ----------------------------------------------
@dataclass(frozen=True)
class BandRef:
    """Band ``index`` (from 1) of the raster asset ``asset``."""

    asset: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.asset}_b{self.index}"


@dataclass(frozen=True)
class Plan:
    """A request resolved against one item: the bands to read per asset (in order), and
    either the expression over them or the list of bands that form the output."""

    spec: RenderSpec
    reads: dict[str, tuple[int, ...]]
    outputs: tuple[BandRef, ...] = ()
    expression: Expression | None = None
    # expression name -> band, for the evaluation
    names: dict[str, BandRef] = field(default_factory=dict)

    @property
    def assets(self) -> list[str]:
        return list(self.reads)

    @property
    def band_names(self) -> list[str]:
        if self.expression is not None:
            texts = [t.strip() for t in self.expression.text.split(";") if t.strip()]
            return (
                texts
                if len(texts) == len(self.expression.bands)
                else [f"expression_{i + 1}" for i in range(len(self.expression.bands))]
            )
        return [b.name for b in self.outputs]

    @property
    def count(self) -> int:
        if self.expression is not None:
            return len(self.expression.bands)
        return len(self.outputs)


def _find_asset(rasters: dict[str, JSON], name: str) -> str | None:
    if name in rasters:
        return name
    folded = [k for k in rasters if k.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def _unknown_asset(item: JSON, rasters: dict[str, JSON], name: str) -> InvalidRequestError:
    known = ", ".join(rasters) or "none"
    return InvalidRequestError(
        f"item {item.get('id')!r} has no raster asset {name!r}; its raster assets: {known}"
    )


def _check_index(item: JSON, rasters: dict[str, JSON], asset: str, index: int) -> None:
    count = band_count(rasters[asset])
    if count is not None and not 1 <= index <= count:
        raise InvalidRequestError(
            f"asset {asset!r} of item {item.get('id')!r} has {count} band(s); "
            f"band {index} does not exist"
        )


def _resolve_name(item: JSON, rasters: dict[str, JSON], name: str, base: str | None) -> BandRef:
    """A band name in an expression -> the band it means (see the module docstring)."""
    asset = _find_asset(rasters, name)
    if asset is not None:
        count = band_count(rasters[asset])
        if count is not None and count > 1:
            raise InvalidRequestError(
                f"asset {asset!r} has {count} bands; name one of them as {asset}_b1 .. "
                f"{asset}_b{count}"
            )
        return BandRef(asset, 1)
    m = _BAND_REF.match(name)
    if m and (asset := _find_asset(rasters, m.group("asset"))) is not None:
        ref = BandRef(asset, int(m.group("index")))
        _check_index(item, rasters, ref.asset, ref.index)
        return ref
    m = _INDEX_REF.match(name)
    if m:
        if base is None:
            raise InvalidRequestError(
                f"band {name!r} is ambiguous: item {item.get('id')!r} has several raster "
                "assets; give one in 'assets' or write ASSET_b1 (e.g. B04_b1)"
            )
        ref = BandRef(base, int(m.group("index")))
        _check_index(item, rasters, ref.asset, ref.index)
        return ref
    common = [
        BandRef(key, i + 1)
        for key, asset in rasters.items()
        for i, band in enumerate(_bands(asset))
        if _common_name(band) == name.lower()
    ]
    if common:
        return common[0]
    raise InvalidRequestError(
        f"expression: {name!r} is not a band of item {item.get('id')!r}; use an asset name "
        f"({', '.join(rasters)}), ASSET_bN, bN, or a common name (red, nir...)"
    )


def plan_for(item: JSON, spec: RenderSpec, *, max_expression_chars: int = 512) -> Plan:
    """Resolve ``spec`` against ``item``; raises InvalidRequestError for unknown assets,
    bands or names, so that nothing is read for a request that cannot succeed."""
    rasters = raster_assets(item)
    if not rasters:
        raise InvalidRequestError(f"item {item.get('id')!r} has no raster asset to render")
    if spec.is_default:
        defaults = render_defaults(item)
        spec = RenderSpec(
            assets=defaults.assets,
            bidx=spec.bidx or defaults.bidx,
            rescale=spec.rescale,
            colormap_name=spec.colormap_name,
            resampling=spec.resampling,
            nodata=spec.nodata,
            return_mask=spec.return_mask,
        )
    assets: list[str] = []
    for name in spec.assets:
        found = _find_asset(rasters, name)
        if found is None:
            raise _unknown_asset(item, rasters, name)
        assets.append(found)

    if spec.expression:
        expr = parse_expression(spec.expression, max_chars=max_expression_chars)
        base = (
            assets[0] if len(assets) == 1 else (next(iter(rasters)) if len(rasters) == 1 else None)
        )
        names = {n: _resolve_name(item, rasters, n, base) for n in expr.names}
        reads: dict[str, list[int]] = {}
        for ref in names.values():
            indexes = reads.setdefault(ref.asset, [])
            if ref.index not in indexes:
                indexes.append(ref.index)
        return Plan(
            spec=spec,
            reads={k: tuple(v) for k, v in reads.items()},
            expression=expr,
            names=names,
        )

    if spec.bidx and len(assets) > 1:
        raise InvalidRequestError(
            "bidx selects bands of one asset; for several assets write an expression "
            "such as B04_b1;B03_b1;B02_b1"
        )
    outputs: list[BandRef] = []
    for asset in assets:
        if spec.bidx:
            for index in spec.bidx:
                _check_index(item, rasters, asset, index)
            outputs += [BandRef(asset, i) for i in spec.bidx]
        else:
            count = band_count(rasters[asset]) or 1
            outputs += [BandRef(asset, i + 1) for i in range(count)]
    reads = {}
    for ref in outputs:
        reads.setdefault(ref.asset, []).append(ref.index)
    return Plan(spec=spec, reads={k: tuple(v) for k, v in reads.items()}, outputs=tuple(outputs))
