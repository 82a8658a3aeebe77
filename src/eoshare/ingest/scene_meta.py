"""What a scene's own metadata files say about it: acquisition time, platform, angles...

Used by ``eoshare.ingest.raster`` while ingesting. Missions ship metadata files beside
their rasters; they are found by name (a metadata file whose name, less its suffix, is
the start of a raster's name) and read into STAC properties:

- Landsat ``*_MTL.txt`` / ``*_MTL.json`` (Collection 1 and 2): scene centre time, platform,
  instruments, sun angles, cloud cover, processing level, WRS path/row;
- a STAC item sidecar ``*_stac-item.json`` (e.g. Earth Search's Sentinel-2 items) or
  ``*_stac.json`` (Landsat Collection 2 products):
  datetime, platform, instruments, cloud cover, view angles, and per-band names;
- Sentinel-1 ``*_productInfo.json``: start time, platform, mode, polarizations;
- CBERS ``*.xml`` (INPE's per-band metadata): acquisition (scene centre) time, platform,
  instrument, sun angles. CBERS GeoTIFF tags ("Acquisition Date") are read by
  :func:`datetime_from_tags`.

These files are user input: each is read only when it is a regular file under
``MAX_SIDECAR_BYTES``; XML with a DOCTYPE (entities, external references) is refused
before parsing. A file that cannot be read is skipped with a warning: the scene is still
ingested from what its rasters say.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eoshare.catalog.base import JSON

log = logging.getLogger(__name__)

MAX_SIDECAR_BYTES = 1 << 20  # 1 MiB: real MTL/STAC/productInfo files are a few kB
SIDECAR_SUFFIXES = (
    "_MTL.txt", "_MTL.json", "_stac-item.json", "_stac.json", "_productInfo.json", ".xml",
)  # fmt: skip

# The extension schema that each property prefix needs (declared only when used).
EXTENSION_SCHEMAS = {
    "view:": "https://stac-extensions.github.io/view/v1.1.0/schema.json",
    "sat:": "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
    "sar:": "https://stac-extensions.github.io/sar/v1.3.0/schema.json",
    "processing:": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "landsat:": "https://stac-extensions.github.io/landsat/v2.0.0/schema.json",
}
# Properties copied from a STAC item sidecar (others are the source's own business).
_STAC_KEEP = re.compile(
    r"^(platform|constellation|mission|instruments|start_datetime|end_datetime|gsd"
    r"|eo:cloud_cover|eo:snow_cover|view:[a-z_]+|sat:(orbit_state|relative_orbit|absolute_orbit)"
    r"|processing:level|sar:[a-z_]+)$"
)
_LANDSAT_REQUIRED = (
    "landsat:scene_id", "landsat:collection_category", "landsat:collection_number",
    "landsat:wrs_type", "landsat:wrs_path", "landsat:wrs_row", "landsat:cloud_cover_land",
    "landsat:correction",
)  # fmt: skip
_S1_POLARIZATIONS = {
    "DV": ["VV", "VH"], "DH": ["HH", "HV"], "SV": ["VV"], "SH": ["HH"],
    "VV": ["VV"], "VH": ["VH"], "HH": ["HH"], "HV": ["HV"],
}  # fmt: skip


@dataclass
class SceneMetadata:
    """What the metadata files of one scene say; empty when there are none."""

    properties: JSON = field(default_factory=dict)
    datetime: datetime | None = None
    # band file key (upper case, e.g. "B04") -> eo band fields (common_name, wavelength)
    bands: dict[str, JSON] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


class SidecarError(ValueError):
    """A metadata file that cannot be read safely (internal: logged and skipped)."""


# --- finding and reading ----------------------------------------------------------------
def find_sidecars(rasters: Iterable[Path]) -> list[Path]:
    """Metadata files beside ``rasters`` whose name (less its suffix) starts a raster's name.

    The candidates are the raster name cut at each ``_``/``-`` (and whole), each with each
    known suffix; only those are looked up, so a folder of thousands of files costs a few
    lookups per raster. XML is taken only for INPE's missions (CBERS, Amazonia)."""
    found: dict[Path, None] = {}
    for raster in rasters:
        stem = raster.stem
        prefixes = [stem[: m.start()] for m in re.finditer(r"[_-]", stem)] + [stem]
        for prefix in reversed(prefixes):  # the longest (most specific) first
            if not prefix:
                continue
            for suffix in SIDECAR_SUFFIXES:
                if suffix == ".xml" and not re.match(r"(?i)^(CBERS|AMAZONIA)", prefix):
                    continue
                for name in dict.fromkeys((prefix + suffix, prefix + suffix.lower())):
                    candidate = raster.parent / name
                    if candidate.is_file():
                        found[candidate] = None
    return list(found)


def _read_text(path: Path) -> str:
    if path.is_symlink() or not path.is_file():
        raise SidecarError("not a regular file")
    with open(path, "rb") as f:
        data = f.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"larger than {MAX_SIDECAR_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SidecarError("not UTF-8 text") from exc


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SidecarError(f"not valid JSON: {exc}") from exc


def parse_xml(text: str) -> ET.Element:
    """Parse untrusted XML: a DOCTYPE (and so any entity) is refused before parsing."""
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise SidecarError("XML with a DOCTYPE or entities is not accepted")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise SidecarError(f"not valid XML: {exc}") from exc


def read_scene_metadata(rasters: Iterable[Path]) -> SceneMetadata:
    """Read every metadata file found beside ``rasters``; later facts do not overwrite
    earlier ones (files are read in name order)."""
    meta = SceneMetadata()
    for path in find_sidecars(rasters):
        name = path.name.lower()
        try:
            text = _read_text(path)
            if name.endswith("_mtl.txt"):
                part = landsat_mtl(_flatten_mtl_txt(text))
            elif name.endswith("_mtl.json"):
                part = landsat_mtl(_flatten_json(_json(text)))
            elif name.endswith(("_stac-item.json", "_stac.json")):
                part = stac_sidecar(_json(text))
            elif name.endswith("_productinfo.json"):
                part = sentinel1_product_info(_json(text))
            else:
                part = cbers_xml(parse_xml(text))
        except SidecarError as exc:
            log.warning("skipping metadata file %s: %s", path, exc)
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("skipping metadata file %s: unexpected content (%s)", path, exc)
            continue
        if part.datetime is None and not part.properties and not part.bands:
            continue
        meta.sources.append(path.name)
        meta.datetime = meta.datetime or part.datetime
        for key, value in part.properties.items():
            meta.properties.setdefault(key, value)
        for key, band in part.bands.items():
            meta.bands.setdefault(key, band)
    return meta


# --- Landsat MTL ------------------------------------------------------------------------
def _flatten_mtl_txt(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key in ("GROUP", "END_GROUP"):
            continue
        values.setdefault(key, value.strip().strip('"'))
    return values


def _flatten_json(doc: Any) -> dict[str, str]:
    values: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict | list):
                    walk(value)
                elif value is not None:
                    values.setdefault(str(key), str(value))
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return values


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def parse_time(value: str) -> datetime:
    """An ISO 8601 date-time; no zone means UTC; more than 6 decimals are cut."""
    value = value.strip().replace("Z", "+00:00")
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def landsat_mtl(mtl: dict[str, str]) -> SceneMetadata:
    """A Landsat MTL's values (txt or json, flattened) as STAC properties."""
    meta = SceneMetadata()
    date, time = mtl.get("DATE_ACQUIRED"), mtl.get("SCENE_CENTER_TIME")
    if date:
        meta.datetime = parse_time(f"{date}T{time or '00:00:00Z'}")
    props = meta.properties
    if spacecraft := mtl.get("SPACECRAFT_ID"):
        props["platform"] = spacecraft.lower().replace("_", "-")  # LANDSAT_8 -> landsat-8
        props["constellation"] = "landsat"
    if sensor := mtl.get("SENSOR_ID"):
        props["instruments"] = [s for s in sensor.lower().split("_") if s]  # OLI_TIRS
    for key, prop in (("SUN_AZIMUTH", "view:sun_azimuth"), ("SUN_ELEVATION", "view:sun_elevation")):
        if (number := _float(mtl.get(key))) is not None:
            props[prop] = number
    cloud = _float(mtl.get("CLOUD_COVER"))
    if cloud is not None and 0 <= cloud <= 100:  # -1 means "not computed"
        props["eo:cloud_cover"] = cloud
    level = mtl.get("PROCESSING_LEVEL") or mtl.get("DATA_TYPE")
    if level:
        props["processing:level"] = level
    path, row = mtl.get("WRS_PATH"), mtl.get("WRS_ROW")
    land = _float(mtl.get("CLOUD_COVER_LAND"))
    landsat = {
        "landsat:scene_id": mtl.get("LANDSAT_SCENE_ID"),
        "landsat:collection_category": mtl.get("COLLECTION_CATEGORY"),
        "landsat:collection_number": mtl.get("COLLECTION_NUMBER"),
        "landsat:wrs_type": mtl.get("WRS_TYPE", "2"),
        "landsat:wrs_path": f"{int(path):03d}" if path and path.isdigit() else None,
        "landsat:wrs_row": f"{int(row):03d}" if row and row.isdigit() else None,
        "landsat:cloud_cover_land": land if land is not None and 0 <= land <= 100 else None,
        "landsat:correction": level,
    }
    # The landsat extension requires all of them: declare it only when all are known.
    if all(landsat.get(k) is not None for k in _LANDSAT_REQUIRED):
        props.update(landsat)
    return meta


# --- STAC item sidecar ------------------------------------------------------------------
def stac_sidecar(doc: Any) -> SceneMetadata:
    """A STAC item that came with the files (the source archive's own item)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("properties"), dict):
        raise SidecarError("not a STAC item (no properties)")
    meta = SceneMetadata()
    props = doc["properties"]
    if isinstance(props.get("datetime"), str):
        meta.datetime = parse_time(props["datetime"])
    elif isinstance(props.get("start_datetime"), str):
        meta.datetime = parse_time(props["start_datetime"])
    for key, value in props.items():
        if _STAC_KEEP.match(key) and value is not None:
            meta.properties[key] = value
    if "processing:level" not in meta.properties:
        product = str(props.get("s2:product_type", ""))
        if m := re.search(r"MSI(L\d[A-C]|\d[A-C])$", product):
            level = m.group(1)
            meta.properties["processing:level"] = level if level[0] == "L" else f"L{level}"
    for asset in (doc.get("assets") or {}).values():
        if not isinstance(asset, dict):
            continue
        bands = asset.get("eo:bands") or asset.get("bands")
        href = str(asset.get("href", ""))
        if not isinstance(bands, list) or len(bands) != 1 or not isinstance(bands[0], dict):
            continue
        file_key = Path(href.split("?")[0]).stem.upper()
        if not file_key or href.lower().endswith((".jp2", ".xml")):
            continue
        band = bands[0]
        info: JSON = {}
        common = band.get("common_name") or band.get("eo:common_name")
        if isinstance(common, str):
            info["eo:common_name"] = common
        for src, dst in (
            ("center_wavelength", "eo:center_wavelength"),
            ("eo:center_wavelength", "eo:center_wavelength"),
            ("full_width_half_max", "eo:full_width_half_max"),
            ("eo:full_width_half_max", "eo:full_width_half_max"),
        ):
            if isinstance(band.get(src), int | float):
                info[dst] = band[src]
        if isinstance(band.get("description"), str):
            info["description"] = band["description"]
        if info:
            meta.bands.setdefault(file_key, info)
    return meta


# --- Sentinel-1 productInfo.json --------------------------------------------------------
def sentinel1_product_info(doc: Any) -> SceneMetadata:
    """Sentinel-1 productInfo.json (the sentinel-s1-l1c archive's per-product summary)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("startTime"), str):
        raise SidecarError("not a Sentinel-1 productInfo (no startTime)")
    meta = SceneMetadata(datetime=parse_time(doc["startTime"]))
    props = meta.properties
    props["start_datetime"] = _iso(meta.datetime)  # type: ignore[arg-type]
    if isinstance(doc.get("stopTime"), str):
        props["end_datetime"] = _iso(parse_time(doc["stopTime"]))
    mission = str(doc.get("missionId", ""))
    if m := re.fullmatch(r"S1([A-D])", mission.upper()):
        props["platform"] = f"sentinel-1{m.group(1).lower()}"
        props["constellation"] = "sentinel-1"
        props["instruments"] = ["c-sar"]
        props["sar:frequency_band"] = "C"
        props["sar:center_frequency"] = 5.405
    if isinstance(doc.get("mode"), str):
        props["sar:instrument_mode"] = doc["mode"]
    polarizations = _S1_POLARIZATIONS.get(str(doc.get("polarization", "")).upper())
    if polarizations:
        props["sar:polarizations"] = polarizations
    if isinstance(doc.get("productType"), str):
        props["sar:product_type"] = doc["productType"]
    if isinstance(doc.get("absoluteOrbitNumber"), int):
        props["sat:absolute_orbit"] = doc["absoluteOrbitNumber"]
    direction = doc.get("orbitDirection") or doc.get("passDirection")
    if isinstance(direction, str) and direction.lower() in ("ascending", "descending"):
        props["sat:orbit_state"] = direction.lower()
    return meta


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- CBERS ------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def cbers_xml(root: ET.Element) -> SceneMetadata:
    """INPE's CBERS metadata XML: satellite name/number, instrument, the scene centre
    time (``timeStamp/center``, else an acquisition date element), sun position."""
    meta = SceneMetadata()
    by_name: dict[str, ET.Element] = {}
    for element in root.iter():
        by_name.setdefault(_local(element.tag), element)
    stamp = by_name.get("timestamp")
    centre = None
    if stamp is not None:
        centre = next((c for c in stamp if _local(c.tag) in ("center", "centre")), None)
    for candidate in (centre, by_name.get("acquisitiondate"), by_name.get("acquisition_date")):
        if candidate is not None and (candidate.text or "").strip():
            meta.datetime = parse_time(candidate.text or "")
            break
    satellite = by_name.get("satellite")
    if satellite is not None:
        parts = {_local(c.tag): (c.text or "").strip() for c in satellite}
        name, number = parts.get("name", ""), parts.get("number", "")
        if name:
            meta.properties["platform"] = f"{name}-{number}".lower().strip("-")
            meta.properties["constellation"] = name.lower()
        if parts.get("instrument"):
            meta.properties["instruments"] = [parts["instrument"].lower()]
    sun = by_name.get("sunposition")
    if sun is not None:
        parts = {_local(c.tag): (c.text or "").strip() for c in sun}
        for key, prop in (("sunazimuth", "view:sun_azimuth"), ("elevation", "view:sun_elevation")):
            if (num := _float(parts.get(key))) is not None:
                meta.properties[prop] = num
    return meta


def datetime_from_tags(tags: dict[str, str]) -> datetime | None:
    """An acquisition date in GeoTIFF metadata tags (CBERS: "Acquisition Date")."""
    for key, value in tags.items():
        if re.sub(r"[\s_-]", "", key).lower() in ("acquisitiondate", "acquisitiontime"):
            try:
                return parse_time(value.strip().replace(" ", "T", 1))
            except ValueError:
                continue
    return None


def extension_schemas(properties: JSON) -> list[str]:
    """The extension schemas that ``properties`` need, in a fixed order."""
    return [
        url
        for prefix, url in EXTENSION_SCHEMAS.items()
        if any(key.startswith(prefix) for key in properties)
    ]
