"""The area of an activation or a subscription, read safely from what a person pastes.

GeoJSON (a Geometry, a Feature or a FeatureCollection of polygons, in lon/lat): the text
is bounded in size, the vertices in number, coordinates must be finite numbers
in range, and nothing in the document is fetched or followed (GeoJSON has no external
references; ``crs`` members are refused rather than honoured). The result is one valid
Polygon or MultiPolygon as a GeoJSON geometry. Uploaded KML, GeoPackage and zipped
shapefiles are read by ``parse_area_file`` (GDAL through pyogrio, with limits).
"""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import shapely
from shapely.geometry import mapping, shape

from eoshare.errors import InvalidRequestError, PayloadTooLargeError

JSON = dict[str, Any]
MAX_AREA_BYTES = 2 * 1024 * 1024
MAX_VERTICES = 50_000
_POLYGONAL = ("Polygon", "MultiPolygon")


def _count(coords: Any, depth: int = 0) -> int:
    if depth > 6:
        raise InvalidRequestError("the area's coordinates are nested too deeply")
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], int | float):
        if len(coords) < 2 or not all(
            isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
            for c in coords
        ):
            raise InvalidRequestError("each position of the area must be finite numbers [lon, lat]")
        lon, lat = coords[0], coords[1]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InvalidRequestError(
                f"position [{lon}, {lat}] is outside lon -180..180, lat -90..90"
            )
        return 1
    if not isinstance(coords, list | tuple):
        raise InvalidRequestError("the area's coordinates must be arrays of positions")
    return sum(_count(c, depth + 1) for c in coords)


def _geometries(doc: JSON) -> list[JSON]:
    kind = doc.get("type")
    if "crs" in doc:
        raise InvalidRequestError("GeoJSON 'crs' members are not supported: use lon/lat (WGS84)")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list) or not features:
            raise InvalidRequestError("the FeatureCollection has no features")
        out: list[JSON] = []
        for f in features:
            if not isinstance(f, dict):
                raise InvalidRequestError("every feature must be a GeoJSON Feature object")
            out.extend(_geometries(f))
        return out
    if kind == "Feature":
        geom = doc.get("geometry")
        if not isinstance(geom, dict):
            raise InvalidRequestError("the Feature has no geometry")
        return _geometries(geom)
    if kind == "GeometryCollection":
        parts = doc.get("geometries")
        if not isinstance(parts, list):
            raise InvalidRequestError("the GeometryCollection has no geometries")
        return [g for p in parts if isinstance(p, dict) for g in _geometries(p)]
    if kind in _POLYGONAL:
        return [doc]
    raise InvalidRequestError(
        f"the area must be polygons (Polygon, MultiPolygon, or Features of them), got {kind!r}"
    )


def parse_area(value: Any) -> JSON:
    """One Polygon/MultiPolygon GeoJSON geometry from a GeoJSON document (text, bytes or
    an already parsed object)."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_AREA_BYTES:
            raise PayloadTooLargeError(f"the area is over {MAX_AREA_BYTES} bytes")
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"the area is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("the area must be a GeoJSON object")
    geoms = _geometries(value)
    vertices = sum(_count(g.get("coordinates")) for g in geoms)
    if vertices > MAX_VERTICES:
        raise PayloadTooLargeError(f"the area has {vertices} vertices; at most {MAX_VERTICES}")
    try:
        parts = [shape(g) for g in geoms]
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidRequestError(f"the area is not valid GeoJSON: {exc}") from exc
    geom = shapely.make_valid(shapely.union_all(parts))
    geom = shapely.union_all([p for p in shapely.get_parts(geom) if p.geom_type in _POLYGONAL])
    if geom.is_empty or geom.area == 0:
        raise InvalidRequestError("the area is empty: draw a polygon with some surface")
    out: JSON = orjson.loads(orjson.dumps(mapping(geom)))
    return out


def bbox_area(bbox: list[float]) -> JSON:
    """A bbox ``[w, s, e, n]`` as a GeoJSON polygon."""
    if len(bbox) != 4:
        raise InvalidRequestError("bbox is four numbers: west,south,east,north")
    w, s, e, n = bbox
    if not (w < e and s < n):
        raise InvalidRequestError("bbox must have west < east and south < north")
    return parse_area(mapping(shapely.box(w, s, e, n)))


# --- uploaded files: KML, GeoPackage, zipped shapefile --------------------------------
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_UNZIPPED_BYTES = 100 * 1024 * 1024
MAX_ZIP_MEMBERS = 50
MAX_FEATURES = 10_000
_SHAPEFILE_PARTS = {".shp", ".shx", ".dbf", ".prj", ".cpg"}


def parse_area_file(data: bytes, filename: str) -> JSON:
    """The area from an uploaded file, chosen by its name: GeoJSON (``.geojson``/
    ``.json``), KML (``.kml``), GeoPackage (``.gpkg``) or a zipped shapefile (``.zip``).

    Read safely: size limits on the file, the unzipped members and the features; KML
    with a DOCTYPE, entities or network links is refused (no entity expansion, nothing
    fetched); zip members must be plain shapefile parts with plain names; every layer is
    read with GDAL from a private temporary folder and turned to lon/lat."""
    if len(data) > MAX_FILE_BYTES:
        raise PayloadTooLargeError(f"{filename}: the file is over {MAX_FILE_BYTES} bytes")
    suffix = Path(filename).suffix.lower()
    if suffix in (".geojson", ".json"):
        return parse_area(data)
    if suffix == ".kml":
        head = data[:200_000].lower()
        if b"<!doctype" in head or b"<!entity" in head or b"<networklink" in data.lower():
            raise InvalidRequestError(
                f"{filename}: KML with a DOCTYPE, entities or network links is refused"
            )
        return _read_vector(data, "area.kml")
    if suffix == ".gpkg":
        if not data.startswith(b"SQLite format 3\x00"):
            raise InvalidRequestError(f"{filename}: not a GeoPackage (SQLite) file")
        return _read_vector(data, "area.gpkg")
    if suffix == ".zip":
        return _read_zipped_shapefile(data, filename)
    raise InvalidRequestError(
        f"{filename}: send the area as GeoJSON (.geojson), KML (.kml), GeoPackage (.gpkg) "
        "or a zipped shapefile (.zip)"
    )


def _read_zipped_shapefile(data: bytes, filename: str) -> JSON:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InvalidRequestError(f"{filename}: not a valid zip file") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise InvalidRequestError(f"{filename}: more than {MAX_ZIP_MEMBERS} files inside")
        if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
            raise PayloadTooLargeError(f"{filename}: over {MAX_UNZIPPED_BYTES} bytes unzipped")
        parts: dict[str, bytes] = {}
        for m in members:
            name = PurePosixPath(m.filename).name
            if "__MACOSX" in m.filename or name.startswith("."):
                continue
            if Path(name).suffix.lower() not in _SHAPEFILE_PARTS:
                continue
            if m.flag_bits & 0x1:
                raise InvalidRequestError(f"{filename}: encrypted zip members are refused")
            with archive.open(m) as f:
                content = f.read(MAX_UNZIPPED_BYTES + 1)
            if len(content) > m.file_size or len(content) > MAX_UNZIPPED_BYTES:
                raise PayloadTooLargeError(f"{filename}: a member is larger than it says")
            parts[name] = content
    shps = [n for n in parts if n.lower().endswith(".shp")]
    if len(shps) != 1:
        raise InvalidRequestError(
            f"{filename}: the zip must hold exactly one .shp (found {len(shps)})"
        )
    stem = Path(shps[0]).stem
    files = {f"area{Path(n).suffix.lower()}": c for n, c in parts.items() if Path(n).stem == stem}
    if "area.shx" not in files or "area.dbf" not in files:
        raise InvalidRequestError(f"{filename}: the shapefile needs its .shx and .dbf")
    return _read_vector(files, "area.shp")


def _read_vector(data: bytes | dict[str, bytes], name: str) -> JSON:
    import pyogrio
    import pyogrio.errors
    from pyproj import CRS, Transformer

    files = data if isinstance(data, dict) else {name: data}
    geoms: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="eoshare-area-") as tmp:
        for fname, content in files.items():
            (Path(tmp) / fname).write_bytes(content)
        path = str(Path(tmp) / name)
        try:
            layers = [str(row[0]) for row in pyogrio.list_layers(path)]
            for layer in layers[:20]:
                meta, _, wkbs, _ = pyogrio.raw.read(
                    path, layer=layer, read_geometry=True, force_2d=True, columns=[],
                    max_features=MAX_FEATURES + 1,
                )  # fmt: skip
                if wkbs is None:
                    continue
                if len(wkbs) > MAX_FEATURES:
                    raise PayloadTooLargeError(f"more than {MAX_FEATURES} features")
                parts = [shapely.from_wkb(w) for w in wkbs if w is not None]
                crs = meta.get("crs")
                if crs and CRS.from_user_input(crs) != CRS.from_epsg(4326):
                    to_lonlat = Transformer.from_crs(crs, 4326, always_xy=True)
                    parts = [shapely.transform(g, lambda xy, t=to_lonlat: _apply(t, xy))
                             for g in parts]  # fmt: skip
                geoms.extend(parts)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise InvalidRequestError(f"the area file cannot be read: {exc}") from exc
    if not geoms:
        raise InvalidRequestError("the area file holds no geometries")
    return parse_area(mapping(shapely.GeometryCollection(geoms)))


def _apply(transformer: Any, xy: Any) -> Any:
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])
