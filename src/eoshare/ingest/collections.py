"""Collections that ingest and load make on the user's behalf.

Used by ``eoshare ingest --create-collection`` (raster.py) and
``eoshare load --create-collections`` (stacdocs.py): a minimal valid STAC 1.1
collection first, and its extent and ``summaries`` set from its items once they are in
(and again after every later ingest into it: :func:`made_by_eoshare`).
"""

from __future__ import annotations

from typing import Any

from eoshare import STAC_VERSION
from eoshare.catalog.base import JSON, Catalog

_MADE_BY = "created by eoshare"
_MAX_VALUES = 100  # a summary listing more distinct values than this is left out


def minimal_collection(collection_id: str, *, made_by: str) -> JSON:
    """A minimal valid STAC 1.1 collection; its extent is filled in afterwards."""
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": collection_id,
        "title": collection_id,
        "description": f"Collection {collection_id}, created by {made_by}.",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def made_by_eoshare(collection: JSON) -> bool:
    """Whether eoshare made this collection (so eoshare keeps its extent and summaries)."""
    return f", {_MADE_BY} " in str(collection.get("description", ""))


def refresh_extent(catalog: Catalog, collection_id: str) -> None:
    """Set a collection's extent to that of its items (``Catalog.collection_extent``) and
    its ``summaries`` to what its items say (:func:`summarize_items`)."""
    extent = catalog.collection_extent(collection_id)
    collection = catalog.get_collection(collection_id)
    changed = dict(collection)
    if extent is not None:
        changed["extent"] = extent
    summaries = summarize_items(catalog.iter_items(collection_id))
    if summaries:
        changed["summaries"] = summaries
    else:
        changed.pop("summaries", None)
    if changed != collection:
        catalog.update_collection(collection_id, changed)


def _add(values: dict[str, Any], value: Any) -> None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        values.setdefault(repr(value), value)


def summarize_items(items: Any) -> JSON:
    """STAC ``summaries`` of items: platform, constellation, instruments, gsd and bands
    as lists of distinct values, eo:cloud_cover as a range."""
    lists: dict[str, dict[str, Any]] = {
        "platform": {}, "constellation": {}, "instruments": {}, "gsd": {},
    }  # fmt: skip
    bands: dict[str, JSON] = {}
    cloud: list[float] = []
    for item in items:
        props = item.get("properties") or {}
        for key in ("platform", "constellation", "gsd"):
            _add(lists[key], props.get(key))
        for value in props.get("instruments") or []:
            _add(lists["instruments"], value)
        if isinstance(props.get("eo:cloud_cover"), int | float):
            cloud.append(float(props["eo:cloud_cover"]))
        for asset in (item.get("assets") or {}).values():
            if not isinstance(asset, dict) or "data" not in (asset.get("roles") or ["data"]):
                continue
            _add(lists["gsd"], asset.get("gsd"))
            for band in (asset.get("bands") or []) + (asset.get("eo:bands") or []):
                if not isinstance(band, dict) or not isinstance(band.get("name"), str):
                    continue
                entry: JSON = {"name": band["name"]}
                for src, dst in (
                    ("eo:common_name", "eo:common_name"),
                    ("common_name", "eo:common_name"),
                    ("eo:center_wavelength", "eo:center_wavelength"),
                    ("center_wavelength", "eo:center_wavelength"),
                ):
                    if band.get(src) is not None:
                        entry.setdefault(dst, band[src])
                bands.setdefault(band["name"], entry)
    summaries: JSON = {}
    for key, values in lists.items():
        if 0 < len(values) <= _MAX_VALUES:
            summaries[key] = sorted(values.values(), key=lambda v: (str(type(v)), v))
    if 0 < len(bands) <= _MAX_VALUES:
        summaries["bands"] = [bands[name] for name in sorted(bands)]
    if cloud:
        summaries["eo:cloud_cover"] = {"minimum": min(cloud), "maximum": max(cloud)}
    return summaries
