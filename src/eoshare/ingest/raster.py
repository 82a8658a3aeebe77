"""Raster files in -> Cloud-Optimized GeoTIFFs in the store + one STAC item per scene.

Called by ``eoshare ingest`` (cli.py) and by the demo builder through
:func:`ingest_rasters`. The steps for each scene (a group of per-band files):

1. read each file with rasterio and check its georeferencing: a CRS, or ground control
   points (then it is warped to EPSG:4326 through the GCPs); neither is refused;
2. copy a file that is already a real COG (valid without warnings, tiled, compressed) as
   it is, else convert it with rio-cogeo (deflate, tiled, internal overviews where the
   size warrants) into a private temporary directory;
3. read the metadata of the final COG (projection, bands, statistics, footprint) and
   render a thumbnail;
   The metadata files that came with the scene (Landsat MTL, a STAC sidecar, S1
   productInfo, CBERS XML; ``eoshare.ingest.scene_meta``) give the acquisition time,
   platform, angles, cloud cover and band names;
4. commit: the files go into the store first, the item is written to the catalogue last.
   If anything fails, the files written in this run are deleted (and objects they
   replaced are put back), so a failure leaves neither orphans nor a half item.

Ingesting the same files again computes the same item id and asset keys, so the item is
updated in place (``upsert_items(..., on_conflict="update")``), never duplicated.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import rasterio
import rasterio.errors
import rasterio.warp
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import MultiPoint, Polygon, mapping
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.ops import unary_union

from eoshare import STAC_VERSION
from eoshare.catalog.assetkeys import held_assets
from eoshare.catalog.base import JSON, Catalog
from eoshare.catalog.validate import check_item, safe_id
from eoshare.errors import EoshareError, IngestError, InvalidRequestError, NotFoundError
from eoshare.ingest.checksums import multihash_sha256, sha256_file
from eoshare.ingest.collections import made_by_eoshare, minimal_collection, refresh_extent
from eoshare.ingest.safe_open import RasterLimits, open_user_raster, safe_gdal_env
from eoshare.ingest.scene_meta import (
    SceneMetadata,
    datetime_from_tags,
    extension_schemas,
    read_scene_metadata,
)
from eoshare.ingest.thumbnail import render_thumbnail
from eoshare.storage.base import Store
from eoshare.workdirs import sweep
from eoshare.workdirs import workdir as scratch_dir

log = logging.getLogger(__name__)
INGEST_WORKDIR = "eoshare-ingest-"

STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
]
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

# The band suffix that ends a per-band file name: S2_..._B04, LC08_..._B4, _SCL, _TCI...
DEFAULT_GROUP_PATTERN = r"[_-](?P<asset>B\d{1,2}A?|BAND\d{1,2}|SCL|TCI|AOT|WVP|BQA|QA_[A-Z_]+)$"
# Band names -> eo:common_name. Sentinel-2 MSI and Landsat 8/9 OLI number bands
# differently (S2 B08 is nir, Landsat 8 B5 is nir), so the table depends on the mission.
_S2_COMMON = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red",
    "B05": "rededge071", "B06": "rededge075", "B07": "rededge078", "B08": "nir",
    "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip
_OLI_COMMON = {
    "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08",
    "B6": "swir16", "B7": "swir22", "B8": "pan", "B9": "cirrus", "B10": "lwir11",
    "B11": "lwir12",
}  # fmt: skip
# CBERS-4/4A band numbers: PAN (1-4), MUX (5-8), WFI/AWFI (13-16).
_CBERS_COMMON = {
    "BAND1": "pan", "BAND2": "green", "BAND3": "red", "BAND4": "nir",
    "BAND5": "blue", "BAND6": "green", "BAND7": "red", "BAND8": "nir",
    "BAND13": "blue", "BAND14": "green", "BAND15": "red", "BAND16": "nir",
}  # fmt: skip
_COLORINTERP_COMMON = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}
# Keys whose values are classes: overviews must pick, not average, them.
_CATEGORICAL = re.compile(r"^(SCL|BQA|QA.*|MASK.*|CLASS.*)$", re.IGNORECASE)
_NAME_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")
_FOOTPRINT_POINTS = 21  # points per edge: curved edges after reprojection stay close


@dataclass
class IngestFailure:
    """One file that could not be ingested, and why (one readable sentence)."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What :func:`ingest_rasters` did. The CLI prints one line per failure and a summary."""

    item_ids: list[str] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    files_ingested: int = 0
    failures: list[IngestFailure] = field(default_factory=list)
    collection_created: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures


class _FileError(Exception):
    """A failure that belongs to one input file (internal: becomes an IngestFailure)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class _Member:
    path: Path
    asset_key: str


@dataclass
class _Group:
    item_id: str
    members: list[_Member]


@dataclass
class _Prepared:
    """One asset ready to be stored: a local COG and what was read from it."""

    member: _Member
    cog_path: Path
    sha256: str
    size: int
    asset: JSON
    footprint: BaseGeometry
    proj: JSON
    gsd: float | None
    datetime_hint: datetime | None
    rgb: bool


def asset_href(store: Store, key: str) -> str:
    """The href of a stored object: the key made absolute against the store's URL.

    The API later rewrites hrefs to its download URLs, using ``eoshare:key``."""
    return f"{store.url.rstrip('/')}/{quote(key)}"


# --- grouping -------------------------------------------------------------------------
def group_files(
    paths: Sequence[Path],
    *,
    pattern: str | None = None,
    one_item: bool = False,
    item_id: str | None = None,
) -> list[_Group]:
    """Split the input files into scenes.

    ``pattern`` is a regular expression searched in each file's stem: the text it matches
    is removed to give the item id, and its group named ``asset`` (else its first group,
    else the whole match without separators) is the asset key. A file it does not match
    is an item of its own with the asset key ``data``. ``one_item`` puts every file into
    a single item. ``item_id`` names the item; it needs exactly one group."""
    try:
        regex = re.compile(pattern or DEFAULT_GROUP_PATTERN, 0 if pattern else re.IGNORECASE)
    except re.error as exc:
        raise InvalidRequestError(
            f"--group pattern {pattern!r} is not a valid regex: {exc}"
        ) from exc
    groups: dict[str, _Group] = {}
    for path in paths:
        stem = path.stem
        match = regex.search(stem)
        if match:
            scene = (stem[: match.start()] + stem[match.end() :]).strip("_-. ")
            named = match.groupdict().get("asset")
            key = named or (match.group(1) if match.groups() else match.group(0))
            key = key.strip("_-. ") or "data"
        else:
            scene, key = stem, "data"
        if one_item:
            key = key if match else stem
            scene = "*"
        # ids derived from file names become safe ids (they name store keys and folders)
        key = safe_id(key)
        scene = safe_id(scene) if scene and scene != "*" else scene
        group = groups.setdefault(scene, _Group(item_id=scene or safe_id(stem), members=[]))
        if any(m.asset_key == key for m in group.members):
            raise InvalidRequestError(
                f"{path}: two files of item {group.item_id!r} would both be asset {key!r}; "
                "use --group with a pattern that tells them apart"
            )
        group.members.append(_Member(path=path, asset_key=key))
    result = list(groups.values())
    if one_item and result:
        result[0].item_id = safe_id(_common_id([m.path for m in result[0].members]))
    if item_id is not None:
        if len(result) != 1:
            raise InvalidRequestError(
                f"--id names one item but the files make {len(result)} items; "
                "use --one-item or ingest them separately"
            )
        result[0].item_id = item_id
    return result


def _common_id(paths: list[Path]) -> str:
    stems = [p.stem for p in paths]
    prefix = stems[0]
    for stem in stems[1:]:
        while not stem.startswith(prefix):
            prefix = prefix[:-1]
    return prefix.strip("_-. ") or stems[0]


# --- reading one file -----------------------------------------------------------------
@contextlib.contextmanager
def _quiet_gdal() -> Iterator[None]:
    """Silence warnings we handle ourselves, deliberately and only them.

    NotGeoreferencedWarning: we check georeferencing and refuse with a clear message.
    affine's PendingDeprecationWarning about ``*``: raised inside rasterio's WarpedVRT
    (which rio-cogeo uses), not in our code; nothing we can change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
        warnings.filterwarnings(
            "ignore", message=r"Use `@` matmul", category=PendingDeprecationWarning
        )
        yield


def _open_error(path: Path, exc: Exception) -> _FileError:
    if isinstance(exc, FileNotFoundError) or not path.exists():
        return _FileError(path, "no such file")
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return _FileError(path, "is a directory, not a raster file")
    if isinstance(exc, rasterio.errors.RasterioIOError):
        return _FileError(path, "not a raster file that GDAL can read")
    return _FileError(path, f"cannot read: {exc}")


def _datetime_from_name(name: str) -> datetime | None:
    """The first valid YYYYMMDD[THHMMSS] in a file name (acquisition dates come first in
    Sentinel and Landsat names; later dates are processing dates)."""
    for m in _NAME_DATE.finditer(name):
        y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        try:
            return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
        except ValueError:
            continue
    return None


def _datetime_from_tags(tags: dict[str, str]) -> datetime | None:
    value = tags.get("TIFFTAG_DATETIME", "").strip()
    try:
        return datetime.strptime(value, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _common_names(path: Path, key: str, ds: Any) -> list[str | None]:
    stem = path.name.upper()
    names: list[str | None] = []
    for i in range(ds.count):
        name: str | None = None
        if ds.count == 1:
            upper = key.upper()
            if stem.startswith("CBERS"):
                name = _CBERS_COMMON.get(upper)
            elif re.match(r"^L[COTE]0[89]", stem):
                name = _OLI_COMMON.get(upper)
            elif stem.startswith("S2") or re.match(r"^B\d\d$|^B8A$", upper):
                name = _S2_COMMON.get(upper)
        if name is None:
            name = _COLORINTERP_COMMON.get(ds.colorinterp[i])
        names.append(name)
    return names


def _footprint(ds: Any) -> BaseGeometry:
    """The dataset's outline in WGS84: its edges densified, then reprojected."""
    left, bottom, right, top = ds.bounds
    n = _FOOTPRINT_POINTS
    xs: list[float] = []
    ys: list[float] = []
    for i in range(n):  # top edge, west -> east
        xs.append(left + (right - left) * i / (n - 1))
        ys.append(top)
    for i in range(1, n):  # east edge, north -> south
        xs.append(right)
        ys.append(top - (top - bottom) * i / (n - 1))
    for i in range(1, n):  # bottom edge, east -> west
        xs.append(right - (right - left) * i / (n - 1))
        ys.append(bottom)
    for i in range(1, n - 1):  # west edge, south -> north
        xs.append(left)
        ys.append(bottom + (top - bottom) * i / (n - 1))
    lons, lats = rasterio.warp.transform(ds.crs, "EPSG:4326", xs, ys)
    if max(lons) - min(lons) > 180.0:
        # Splitting across the antimeridian is not done yet; better to refuse than to
        # publish a footprint that wraps around the world.
        raise IngestError("footprint crosses the antimeridian, which ingest does not support")
    ring = [(round(x, 7), round(y, 7)) for x, y in zip(lons, lats, strict=True)]
    return orient(Polygon(ring), 1.0)


def _statistics(ds: Any) -> list[JSON]:
    """Per-band statistics from a reduced-resolution read (approximate, cheap)."""
    height, width = (
        (ds.height, ds.width)
        if max(ds.height, ds.width) <= 1024
        else (
            max(1, round(ds.height * 1024 / max(ds.height, ds.width))),
            max(1, round(ds.width * 1024 / max(ds.height, ds.width))),
        )
    )
    data = ds.read(out_shape=(ds.count, height, width), masked=True, resampling=Resampling.nearest)
    stats: list[JSON] = []
    for band in data:
        valid = band.compressed()
        if valid.size == 0:
            stats.append({"valid_percent": 0.0})
            continue
        stats.append(
            {
                "minimum": float(valid.min()),
                "maximum": float(valid.max()),
                "mean": round(float(valid.mean()), 4),
                "stddev": round(float(np.std(valid)), 4),
                "valid_percent": round(100.0 * valid.size / band.size, 2),
            }
        )
    return stats


def _cog_blocksize(width: int, height: int) -> int:
    """The largest tile size (512 down to 64) whose COG passes cog_validate.

    rio-cogeo's validator calls a level "not tiled" when its tile is exactly as wide as
    the level while the level is over 512 px in either direction: a 4096 x 8192 image
    with 512 px tiles has an overview of 512 x 1024 and fails ("Overview of index 2 is
    not tiled"). Its overview levels are rio-cogeo's: halving until the smaller side is
    at most one tile."""
    for size in (512, 256, 128, 64):
        factor, levels = 1, [1]
        while min(width // factor, height // factor) > size:
            factor *= 2
            levels.append(factor)
        if not any(
            -(-width // f) == size and (-(-width // f) > 512 or -(-height // f) > 512)
            for f in levels
        ):
            return size
    return 512


def _to_cog(src: Any, dest: Path, *, categorical: bool) -> None:
    profile: dict[str, Any] = dict(cog_profiles.get("deflate"))  # type: ignore[no-untyped-call]
    size = _cog_blocksize(int(src.width), int(src.height))
    profile.update(blockxsize=size, blockysize=size)
    cog_translate(
        src,
        dest,
        profile,
        in_memory=False,
        quiet=True,
        overview_resampling="nearest" if categorical else "average",
    )


def _is_real_cog(path: Path, src: Any) -> bool:
    """A file to store byte for byte: a valid COG without warnings, tiled and compressed.

    cog_validate accepts a striped, uncompressed file under 512 px as a COG (with a
    warning); such a file is converted, so that every stored asset is a real COG."""
    valid, _errors, warns = cog_validate(path, quiet=True)
    if not valid or warns:
        return False
    tiled = bool(src.profile.get("tiled")) and src.block_shapes[0][1] < src.width + 1
    return tiled and src.compression is not None


def _prepare(member: _Member, workdir: Path, limits: RasterLimits) -> _Prepared:
    """Check, convert (if needed) and describe one input file. Raises _FileError.

    The file is a user's: it is opened through ``open_user_raster`` (GeoTIFF only, no
    side-car files, no external references, bounded size) and every later read of it
    and of its conversion runs with GDAL's safe configuration."""
    path = member.path
    categorical = bool(_CATEGORICAL.match(member.asset_key))
    cog_path = workdir / f"{member.asset_key}.tif"
    try:
        with _quiet_gdal(), safe_gdal_env():
            with open_user_raster(path, limits) as src:
                gcps, gcp_crs = src.gcps
                tags = src.tags()
                if src.crs is None and not gcps:
                    raise _FileError(
                        path, "has no georeferencing (no CRS and no ground control points)"
                    )
                if src.crs is None:
                    if gcp_crs is None:
                        raise _FileError(path, "has ground control points without a CRS")
                    # Georeferenced only by GCPs: warp to lon/lat through them. Areas
                    # outside the swath need a nodata value; 0 is what S1 GRD uses.
                    nodata = src.nodata if src.nodata is not None else 0
                    with WarpedVRT(
                        src, src_crs=gcp_crs, crs="EPSG:4326", nodata=nodata,
                        resampling=Resampling.nearest if categorical else Resampling.bilinear,
                    ) as vrt:  # fmt: skip
                        _to_cog(vrt, cog_path, categorical=categorical)
                    source_is_cog = False
                    # The GCPs outline the swath itself, which is tilted inside the warped
                    # grid: their hull is a truer footprint than the grid's rectangle.
                    gcp_lons, gcp_lats = rasterio.warp.transform(
                        gcp_crs, "EPSG:4326", [g.x for g in gcps], [g.y for g in gcps]
                    )
                    gcp_hull: BaseGeometry | None = orient(
                        MultiPoint(list(zip(gcp_lons, gcp_lats, strict=True))).convex_hull, 1.0
                    )
                else:
                    gcp_hull = None
                    source_is_cog = _is_real_cog(path, src)
                    if not source_is_cog:
                        _to_cog(src, cog_path, categorical=categorical)
            if source_is_cog:
                # Already a COG: store the original bytes, byte for byte.
                shutil.copyfile(path, cog_path)
            valid, errors, _ = cog_validate(cog_path, quiet=True)
            if not valid:
                raise _FileError(path, f"conversion to COG failed: {'; '.join(errors)}")
            with rasterio.open(cog_path) as ds:
                footprint = gcp_hull if gcp_hull is not None else _footprint(ds)
                stats = _statistics(ds)
                names = _common_names(path, member.asset_key, ds)
                epsg = ds.crs.to_epsg()
                proj: JSON = {"proj:code": f"EPSG:{epsg}" if epsg else None}
                if not epsg:
                    proj["proj:wkt2"] = ds.crs.to_wkt()
                proj["proj:shape"] = [ds.height, ds.width]
                proj["proj:transform"] = [float(v) for v in list(ds.transform)[:6]]
                proj["proj:bbox"] = [float(v) for v in ds.bounds]
                metres = (ds.crs.linear_units or "").lower() in ("metre", "meter", "m")
                gsd = float(abs(ds.res[0])) if ds.crs.is_projected and metres else None
                area_or_point = ds.tags().get("AREA_OR_POINT") or tags.get("AREA_OR_POINT")
                sampling = "point" if (area_or_point or "").lower() == "point" else "area"
                bands: list[JSON] = []
                for i in range(ds.count):
                    name = member.asset_key if ds.count == 1 else f"{member.asset_key}_{i + 1}"
                    band: JSON = {"name": name, "data_type": ds.dtypes[i]}
                    if ds.descriptions[i]:
                        band["description"] = ds.descriptions[i]
                    if names[i]:
                        band["eo:common_name"] = names[i]
                    if ds.nodata is not None:
                        band["nodata"] = _json_number(ds.nodata)
                    band["statistics"] = stats[i]
                    # raster v2 needs at least one raster:* field; these two are facts.
                    band["raster:sampling"] = sampling
                    if gsd is not None:
                        band["raster:spatial_resolution"] = gsd
                    bands.append(band)
                rgb = ds.count >= 3 and (
                    member.asset_key.upper() == "TCI"
                    or [ds.colorinterp[i] for i in range(3)]
                    == [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
                    or ds.count == 3
                )
    except _FileError:
        raise
    except IngestError as exc:
        raise _FileError(path, exc.detail) from exc
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise _open_error(path, exc) from exc
    sha = sha256_file(cog_path)
    asset: JSON = {
        "type": COG_MEDIA_TYPE,
        "roles": ["data"],
        "title": path.name,
        "bands": bands,
        **proj,
    }
    if gsd is not None:
        asset["gsd"] = gsd
    # An acquisition date tag (CBERS) beats the name; TIFFTAG_DATETIME (often the
    # processing time) comes last.
    dt_hint = (
        datetime_from_tags(tags) or _datetime_from_name(path.name) or _datetime_from_tags(tags)
    )
    return _Prepared(
        member=member,
        cog_path=cog_path,
        sha256=sha,
        size=cog_path.stat().st_size,
        asset=asset,
        footprint=footprint,
        proj=proj,
        gsd=gsd,
        datetime_hint=dt_hint,
        rgb=rgb,
    )


def _json_number(value: float) -> float | int | str:
    if np.isnan(value):
        return "nan"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if float(value).is_integer() else float(value)


def _geojson(geom: BaseGeometry) -> JSON:
    """shapely -> GeoJSON with lists (not tuples), as the validator expects."""

    def lists(c: Any) -> Any:
        return [lists(x) for x in c] if isinstance(c, list | tuple) else c

    raw = mapping(geom)
    return {"type": raw["type"], "coordinates": lists(raw["coordinates"])}


# --- building the item ----------------------------------------------------------------
def _build_item(
    group: _Group,
    prepared: list[_Prepared],
    *,
    store: Store,
    collection_id: str,
    when: datetime,
    scene: SceneMetadata | None = None,
) -> JSON:
    footprint = unary_union([p.footprint for p in prepared])
    if footprint.geom_type not in ("Polygon", "MultiPolygon"):
        footprint = footprint.convex_hull
    minx, miny, maxx, maxy = footprint.bounds
    properties: JSON = {"datetime": _iso(when)}
    # Projection fields shared by every asset go on the item; the rest stay on the assets.
    for name in ("proj:code", "proj:wkt2", "proj:shape", "proj:transform", "proj:bbox"):
        values = [p.proj.get(name) for p in prepared]
        if name in prepared[0].proj and all(v == values[0] for v in values):
            properties[name] = values[0]
            for p in prepared:
                p.asset.pop(name, None)
    gsds = [p.gsd for p in prepared if p.gsd is not None]
    if gsds:
        properties["gsd"] = min(gsds)
        if all(g == gsds[0] for g in gsds) and len(gsds) == len(prepared):
            for p in prepared:
                p.asset.pop("gsd", None)
    scene = scene or SceneMetadata()
    for name, value in scene.properties.items():
        properties.setdefault(name, value)
    for p in prepared:  # the scene's own band names win over ours (the same, or better)
        info = scene.bands.get(p.member.asset_key.upper())
        if info and len(p.asset["bands"]) == 1:
            p.asset["bands"][0].update(info)
    properties["updated"] = _iso(datetime.now(UTC))
    assets: JSON = {}
    for p in prepared:
        key = f"{collection_id}/{group.item_id}/{p.member.asset_key}.tif"
        assets[p.member.asset_key] = {
            "href": asset_href(store, key),
            **p.asset,
            "file:checksum": multihash_sha256(p.sha256),
            "file:size": p.size,
            "eoshare:key": key,
        }
    extensions = list(STAC_EXTENSIONS)
    extensions += [e for e in extension_schemas(properties) if e not in extensions]
    if not any("eo:" in str(a) for a in assets.values()) and not any(
        k.startswith("eo:") for k in properties
    ):
        # the eo schema requires eo fields once declared (radar has none)
        extensions = [e for e in extensions if "/eo/" not in e]
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": group.item_id,
        "collection": collection_id,
        "geometry": _geojson(footprint),
        "bbox": [minx, miny, maxx, maxy],
        "properties": properties,
        # STAC requires this link when 'collection' is set. Relative to the item's API
        # URL (/collections/{cid}/items/{iid}) it resolves to /collections/{cid}; the
        # API replaces it with an absolute link when serving.
        "links": [
            {
                "rel": "collection",
                "href": f"../../{quote(collection_id)}",
                "type": "application/json",
            }
        ],
        "assets": assets,
    }


def _iso(dt: datetime) -> str:
    """RFC 3339 in UTC; fractions of a second only when there are some (metadata files
    give the scene centre time to the microsecond)."""
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- committing -----------------------------------------------------------------------
class _StoreWrites:
    """The objects one item's commit writes, so that they can be undone.

    An object that already existed (re-ingest) is copied aside first and put back on
    rollback, so a failed update leaves the old item's files intact."""

    def __init__(self, store: Store, backup_dir: Path) -> None:
        self.store = store
        self.backup_dir = backup_dir
        self.written: list[str] = []
        self.backups: dict[str, Path] = {}

    def _backup(self, key: str) -> None:
        if key in self.backups or not self.store.exists(key):
            return
        target = self.backup_dir / f"backup-{len(self.backups)}"
        with self.store.open(key) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        self.backups[key] = target

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        self._backup(key)
        self.written.append(key)
        stored = self.store.put_file(key, path)
        if stored.sha256 is not None and stored.sha256 != f"sha256:{sha256}":
            raise IngestError(f"checksum of stored {key!r} does not match the file written")

    def put_bytes(self, key: str, data: bytes) -> None:
        self._backup(key)
        self.written.append(key)
        self.store.put_bytes(key, data)

    def rollback(self) -> None:
        for key in reversed(self.written):
            try:
                if key in self.backups:
                    self.store.put_file(key, self.backups[key])
                else:
                    self.store.delete(key)
            except EoshareError as exc:  # keep undoing the rest; say what is left
                log.error("rollback could not undo %s: %s", key, exc.detail)


def _existing_keys(catalog: Catalog, collection_id: str, item_id: str) -> set[str]:
    try:
        item = catalog.get_item(collection_id, item_id)
    except NotFoundError:
        return set()
    # only keys bound to this item: a replaced item never deletes another item's objects
    return {key for _, _, key in held_assets(item)}


def _ingest_group(
    group: _Group,
    *,
    catalog: Catalog,
    store: Store,
    collection_id: str,
    when: datetime | None,
    limits: RasterLimits,
) -> tuple[JSON, bool]:
    """Ingest one scene; returns (item, whether it replaced an existing one)."""
    with scratch_dir(INGEST_WORKDIR) as workdir:
        prepared = [_prepare(m, workdir, limits) for m in group.members]
        scene = read_scene_metadata(m.path for m in group.members)
        # An explicit --datetime wins; then the scene's metadata files (the acquisition
        # time), then an acquisition tag, the file name (a date, often without a time),
        # and last the TIFF tag, which is often the processing time.
        dt = (
            when
            or scene.datetime
            or next((p.datetime_hint for p in prepared if p.datetime_hint), None)
        )
        if dt is None:
            raise _FileError(
                group.members[0].path,
                "no acquisition date found in the file name or TIFF tags; pass --datetime",
            )
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        best = next((p for p in prepared if p.member.asset_key.upper() == "TCI"), None)
        best = best or next((p for p in prepared if p.rgb), None) or prepared[0]
        try:
            thumbnail = render_thumbnail(best.cog_path, rgb=best.rgb)
        except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
            raise _FileError(best.member.path, f"cannot render a thumbnail: {exc}") from exc
        item = _build_item(
            group, prepared, store=store, collection_id=collection_id, when=dt, scene=scene
        )
        thumb_key = f"{collection_id}/{group.item_id}/thumbnail.png"
        item["assets"]["thumbnail"] = {
            "href": asset_href(store, thumb_key),
            "type": "image/png",
            "roles": ["thumbnail"],
            "title": "Thumbnail",
            "eoshare:key": thumb_key,
        }
        check_item(item)  # fail before any byte is written

        old_keys = _existing_keys(catalog, collection_id, group.item_id)
        backups = workdir / "backups"
        backups.mkdir()
        writes = _StoreWrites(store, backups)
        try:
            for p in prepared:
                writes.put_file(
                    item["assets"][p.member.asset_key]["eoshare:key"], p.cog_path, p.sha256
                )
            writes.put_bytes(thumb_key, thumbnail)
            result = catalog.upsert_items([item], collection_id=collection_id, on_conflict="update")
        except BaseException:
            writes.rollback()
            raise
        # The item now points at the new objects only; drop the ones it no longer uses.
        for key in old_keys - {a["eoshare:key"] for a in item["assets"].values()}:
            try:
                store.delete(key)
            except EoshareError as exc:
                log.warning("could not delete replaced object %s: %s", key, exc.detail)
        return item, result.updated > 0


# --- the entry point ------------------------------------------------------------------
def ensure_collection(catalog: Catalog, collection_id: str, *, create: bool) -> bool:
    """Check that the collection exists; create a minimal one when ``create``.

    Returns True when it was created. Raises NotFoundError otherwise."""
    try:
        catalog.get_collection(collection_id)
        return False
    except NotFoundError:
        if not create:
            raise NotFoundError(
                f"collection {collection_id!r} does not exist; create it first "
                "or pass --create-collection"
            ) from None
    catalog.create_collection(minimal_collection(collection_id, made_by="eoshare ingest"))
    return True


def ingest_rasters(
    paths: Iterable[str | Path],
    *,
    catalog: Catalog,
    store: Store,
    collection_id: str,
    group: str | None = None,
    one_item: bool = False,
    datetime: datetime | None = None,
    item_id: str | None = None,
    create_collection: bool = False,
    progress: bool = False,
    limits: RasterLimits | None = None,
) -> IngestReport:
    """Ingest raster files into ``collection_id``; called by ``eoshare ingest`` and the
    demo builder.

    Files are grouped into items (see :func:`group_files`). A file that fails is
    reported in ``IngestReport.failures`` (its item is not written; the others are); a
    problem with the request itself (unknown collection, bad pattern, ``item_id`` with
    several items) raises before anything is written. Every file is opened as a user's
    file (``eoshare.ingest.safe_open``) under ``limits``."""
    files = [Path(p) for p in paths]
    if not files:
        raise InvalidRequestError("no input files given")
    sweep(INGEST_WORKDIR)  # what an earlier, killed ingest left in the temporary folder
    groups = group_files(files, pattern=group, one_item=one_item, item_id=item_id)
    report = IngestReport()
    report.collection_created = ensure_collection(catalog, collection_id, create=create_collection)

    bar = _progress(progress, len(groups))
    with bar or contextlib.nullcontext():
        task = bar.add_task("ingesting", total=len(groups)) if bar else None
        for g in groups:
            try:
                item, replaced = _ingest_group(
                    g,
                    catalog=catalog,
                    store=store,
                    collection_id=collection_id,
                    when=datetime,
                    limits=limits or RasterLimits(),
                )
            except _FileError as exc:
                report.failures.append(IngestFailure(str(exc.path), exc.reason))
            except EoshareError as exc:
                for m in g.members:
                    report.failures.append(IngestFailure(str(m.path), exc.detail))
            else:
                report.item_ids.append(item["id"])
                report.files_ingested += len(g.members)
                if replaced:
                    report.updated += 1
                else:
                    report.inserted += 1
                # with a progress bar on a terminal the bar says it; logs keep it at debug
                log.log(
                    logging.DEBUG if bar is not None else logging.INFO,
                    "ingested item",
                    extra={
                        "collection": collection_id,
                        "item": item["id"],
                        "files": len(g.members),
                    },
                )
            if bar is not None and task is not None:
                bar.advance(task)

    if report.collection_created or (
        report.item_ids and made_by_eoshare(catalog.get_collection(collection_id))
    ):
        if report.item_ids:
            refresh_extent(catalog, collection_id)  # and its summaries
        else:
            # Nothing went in: leave no trace of this run, not even the new collection.
            with contextlib.suppress(EoshareError):
                catalog.delete_collection(collection_id)
            report.collection_created = False
    return report


def _progress(enabled: bool, total: int) -> Any:
    if not enabled or total < 1:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
