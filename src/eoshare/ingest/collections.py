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
    set_extent(catalog, collection_id, extent, summarize_items(catalog.iter_items(collection_id)))


def set_extent(catalog: Catalog, collection_id: str, extent: JSON | None, summaries: JSON) -> None:
    """Write a collection's extent and ``summaries`` (when they changed)."""
    collection = catalog.get_collection(collection_id)
    changed = dict(collection)
    if extent is not None:
        changed["extent"] = extent
    if summaries:
        changed["summaries"] = summaries
    else:
        changed.pop("summaries", None)
    if changed != collection:
        catalog.update_collection(collection_id, changed)


class Extent:
    """A collection's extent built up from the rows written (bbox and UTC times in the
    catalogue's text form), the same object that ``SqliteCatalog.collection_extent``
    computes from the items table: ``eoshare load`` keeps one for each collection it
    makes, instead of reading every item back at the end."""

    def __init__(self) -> None:
        self.count = 0
        self.bbox: list[float] | None = None  # minx, miny, maxx, maxy
        self.crossing = False
        self.start: str | None = None
        self.end: str | None = None

    def add(self, bbox: tuple[float, float, float, float] | None, start: str, end: str) -> None:
        self.count += 1
        if bbox is not None:
            minx, miny, maxx, maxy = bbox
            if self.bbox is None:
                self.bbox = [minx, miny, maxx, maxy]
            else:
                b = self.bbox
                b[0], b[1] = min(b[0], minx), min(b[1], miny)
                b[2], b[3] = max(b[2], maxx), max(b[3], maxy)
            self.crossing = self.crossing or minx > maxx
        if self.start is None or start < self.start:
            self.start = start
        if self.end is None or end > self.end:
            self.end = end

    def result(self) -> JSON | None:
        if not self.count:
            return None
        if self.bbox is None:
            spatial = [[-180.0, -90.0, 180.0, 90.0]]
        else:
            minx, miny, maxx, maxy = self.bbox
            if self.crossing:
                minx, maxx = -180.0, 180.0
            spatial = [[minx, miny, maxx, maxy]]
        return {
            "spatial": {"bbox": spatial},
            "temporal": {"interval": [[_stac_time(self.start), _stac_time(self.end)]]},
        }


def _stac_time(value: str | None) -> str | None:
    # 2020-02-19T11:30:00.000000Z -> 2020-02-19T11:30:00Z when there is no fraction
    return None if value is None else value.replace(".000000Z", "Z")


def _add(values: dict[str, Any], value: Any) -> None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        values.setdefault(repr(value), value)


# What one item adds to its collection's summaries (see summary_facts): small and
# picklable, so that worker processes of ``eoshare load`` can compute it. The first part
# is the same for most items of a collection (one builder skips repeats of it).
SummaryFacts = tuple[
    tuple[
        tuple[Any, ...],  # platform, constellation, gsd (of the item)
        tuple[Any, ...],  # instruments
        tuple[Any, ...],  # gsd of data assets
        tuple[tuple[str, tuple[tuple[str, Any], ...]], ...],  # bands: (name, entry items)
    ],
    float | None,  # eo:cloud_cover
]

_BAND_FIELDS = (
    ("eo:common_name", "eo:common_name"),
    ("common_name", "eo:common_name"),
    ("eo:center_wavelength", "eo:center_wavelength"),
    ("center_wavelength", "eo:center_wavelength"),
)


def summary_facts(item: JSON) -> SummaryFacts:
    """What ``item`` contributes to its collection's ``summaries``."""
    props = item.get("properties") or {}
    cloud = props.get("eo:cloud_cover")
    gsds: list[Any] = []
    bands: list[tuple[str, tuple[tuple[str, Any], ...]]] = []
    for asset in (item.get("assets") or {}).values():
        if not isinstance(asset, dict) or "data" not in (asset.get("roles") or ["data"]):
            continue
        gsds.append(asset.get("gsd"))
        for band in (asset.get("bands") or []) + (asset.get("eo:bands") or []):
            if not isinstance(band, dict) or not isinstance(band.get("name"), str):
                continue
            entry: JSON = {"name": band["name"]}
            for src, dst in _BAND_FIELDS:
                if band.get(src) is not None:
                    entry.setdefault(dst, band[src])
            bands.append((band["name"], tuple(entry.items())))
    static = (
        (props.get("platform"), props.get("constellation"), props.get("gsd")),
        tuple(props.get("instruments") or ()),
        tuple(gsds),
        tuple(bands),
    )
    return static, float(cloud) if isinstance(cloud, int | float) else None


class Summaries:
    """``summaries`` built up one item at a time (``add``), or from several partial
    builders; ``result()`` is what :func:`summarize_items` returns for the same items."""

    def __init__(self) -> None:
        self.lists: dict[str, dict[str, Any]] = {
            "platform": {}, "constellation": {}, "instruments": {}, "gsd": {},
        }  # fmt: skip
        self.bands: dict[str, JSON] = {}
        self.cloud_min: float | None = None
        self.cloud_max: float | None = None
        self._done: set[Any] = set()  # the static parts added already (a bounded set)

    def add(self, facts: SummaryFacts) -> None:
        static, cloud = facts
        if cloud is not None:
            if self.cloud_min is None or cloud < self.cloud_min:
                self.cloud_min = cloud
            if self.cloud_max is None or cloud > self.cloud_max:
                self.cloud_max = cloud
        try:
            if static in self._done:
                return  # adds nothing: every list keeps the first of equal values
            if len(self._done) < 4096:
                self._done.add(static)
        except TypeError:  # an unhashable value (a list as "gsd"...): added each time
            pass
        (platform, constellation, gsd), instruments, gsds, bands = static
        lists = self.lists
        _add(lists["platform"], platform)
        _add(lists["constellation"], constellation)
        _add(lists["gsd"], gsd)
        for value in instruments:
            _add(lists["instruments"], value)
        for value in gsds:
            _add(lists["gsd"], value)
        for name, entry in bands:
            if name not in self.bands:
                self.bands[name] = dict(entry)

    def result(self) -> JSON:
        summaries: JSON = {}
        for key, values in self.lists.items():
            if 0 < len(values) <= _MAX_VALUES:
                summaries[key] = sorted(values.values(), key=lambda v: (str(type(v)), v))
        if 0 < len(self.bands) <= _MAX_VALUES:
            summaries["bands"] = [self.bands[name] for name in sorted(self.bands)]
        if self.cloud_min is not None:
            summaries["eo:cloud_cover"] = {"minimum": self.cloud_min, "maximum": self.cloud_max}
        return summaries


def summarize_items(items: Any) -> JSON:
    """STAC ``summaries`` of items: platform, constellation, instruments, gsd and bands
    as lists of distinct values, eo:cloud_cover as a range."""
    builder = Summaries()
    for item in items:
        builder.add(summary_facts(item))
    return builder.result()
