"""An item checked and turned into what a catalogue writes, before any database is touched.

``prepare_item`` does all the per-item work of a write that needs no database: the full
validation (``check_item``), the derived facts (times, bbox, the indexed footprint as
WKB), the document as JSON text, the free-text words and the property types. It is a
pure function of the document, so that ``eoshare load`` can run it in worker processes
(``eoshare.ingest.parallel``) beside one process that writes; ``SqliteCatalog`` uses the
same function for its own ``upsert_items``, so both paths store the same rows.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import orjson
import shapely

from eoshare.catalog.geometry import reshaped_geometry
from eoshare.catalog.queryables import _TYPE_NAMES, json_type
from eoshare.catalog.validate import check_item
from eoshare.errors import InvalidItemError

JSON = dict[str, Any]

_TEXT_FIELDS = ("title", "description", "platform", "constellation", "mission")
_TEXT_LISTS = ("keywords", "instruments")
ITEM_COLUMNS = 10  # see PreparedItem
_WKB_POLYGON = struct.Struct("<BII")  # little-endian, type 3 (Polygon), ring count
_WKB_COUNT = struct.Struct("<I")


class PreparedItem(NamedTuple):
    """A valid item as the catalogue stores it (a tuple: cheap to send between processes)."""

    collection: str
    id: str
    dt_start: str
    dt_end: str
    minx: float | None  # the bbox (None: no geometry)
    miny: float | None
    maxx: float | None
    maxy: float | None
    geom_wkb: bytes | None
    content: bytes  # the document as JSON text, UTF-8 (bound as TEXT by the writers)
    fts: str
    properties: tuple[tuple[str, str], ...]  # (name, queryable type) of each property
    reshaped: bool  # geom_wkb is not the geometry as written (antimeridian, made valid)

    # the first ten fields are the columns of the catalogue's ``items`` table, in order,
    # after its row id: ``(rowid, *row[:ITEM_COLUMNS])`` is bound as it is

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        if self.minx is None or self.miny is None or self.maxx is None or self.maxy is None:
            return None
        return (self.minx, self.miny, self.maxx, self.maxy)

    def __reduce__(self) -> tuple[Any, ...]:
        # unpickled by one C call (eoshare load's workers send thousands a second)
        return (tuple.__new__, (PreparedItem, tuple(self)))


_SEEN: dict[Any, Any] = {}


def interned(value: Any) -> Any:
    """One object for equal values seen lately (the property types of a bulk load's
    items are mostly alike): sent between processes once per batch, compared by
    identity. Bounded: forgotten wholesale when full."""
    if len(_SEEN) > 1024:
        _SEEN.clear()
    return _SEEN.setdefault(value, value)


def fts_text(item: JSON) -> str:
    """The words free-text search (``q``) finds an item by."""
    props = item.get("properties") or {}
    parts = [str(item.get("id", ""))]
    for key in _TEXT_FIELDS:
        v = props.get(key)
        if isinstance(v, str):
            parts.append(v)
    for key in _TEXT_LISTS:
        v = props.get(key)
        if isinstance(v, list):
            parts.extend(str(x) for x in v)
    return " ".join(parts)


def prepare_item(item: Any, collection_id: str | None = None) -> tuple[PreparedItem, JSON]:
    """Validate ``item`` and derive what is stored; the row and the document as stored
    (``collection`` and a computed ``bbox`` added where missing, nothing else changed).

    Raises InvalidItemError naming the item and the problem (as ``check_item`` does)."""
    facts = check_item(item)
    cid = collection_id or facts.collection
    if cid is None:
        raise InvalidItemError(f"item {facts.id!r} names no collection")
    if facts.collection is not None and facts.collection != cid:
        raise InvalidItemError(
            f"item {facts.id!r} belongs to collection {facts.collection!r}, not {cid!r}"
        )
    if facts.collection is None:
        item = {**item, "collection": cid}
    bbox = facts.bbox
    if bbox is not None and "bbox" not in item:
        # STAC requires a bbox beside a geometry; computed (antimeridian-aware)
        item = {**item, "bbox": list(bbox)}
    geom_wkb = None
    reshaped = False
    geometry = item.get("geometry")
    if geometry is not None:
        geom_wkb = plain_polygon_wkb(geometry)
        if geom_wkb is None:
            shaped, reshaped = reshaped_geometry(geometry)
            geom_wkb = shapely.to_wkb(shaped)
    props = item.get("properties") or {}
    types: list[tuple[str, str]] = []
    for name, value in props.items():  # (json_type, its common cases inline)
        kind = _TYPE_NAMES.get(value.__class__)
        types.append((name, kind if kind is not None else json_type(value)))
    row = PreparedItem(
        cid,
        facts.id,
        facts.datetime_start,
        facts.datetime_end,
        bbox[0] if bbox else None,
        bbox[1] if bbox else None,
        bbox[2] if bbox else None,
        bbox[3] if bbox else None,
        geom_wkb,
        orjson.dumps(item),
        fts_text(item),
        interned(tuple(types)),
        reshaped,
    )
    return row, item


def plain_polygon_wkb(geometry: JSON) -> bytes | None:
    """The WKB that ``shapely.to_wkb(reshaped_geometry(g)[0])`` gives for a valid 2D
    Polygon that does not jump the antimeridian (nearly every item's footprint),
    written directly; None for any other geometry (which takes the general path)."""
    if geometry.get("type") != "Polygon":
        return None
    rings = geometry["coordinates"]  # (checked by check_item: rings of positions)
    parts = [_WKB_POLYGON.pack(1, 3, len(rings))]
    for ring in rings:
        flat: list[float] = []
        last = None
        for pos in ring:
            if len(pos) != 2:
                return None
            x = pos[0]
            if last is not None and abs(x - last) > 180.0:
                return None  # jumps the antimeridian
            last = x
            flat.append(x)
            flat.append(pos[1])
        parts.append(_WKB_COUNT.pack(len(ring)))
        parts.append(struct.pack(f"<{len(flat)}d", *flat))
    wkb = b"".join(parts)
    return wkb if shapely.is_valid(shapely.from_wkb(wkb)) else None
