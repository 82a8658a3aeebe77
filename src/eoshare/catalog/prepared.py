"""An item checked and turned into what a catalogue writes, before any database is touched.

``prepare_item`` does all the per-item work of a write that needs no database: the full
validation (``check_item``), the derived facts (times, bbox, the indexed footprint as
WKB), the document as JSON text, the free-text words and the property types. It is a
pure function of the document, so that ``eoshare load`` can run it in worker processes
(``eoshare.ingest.parallel``) beside one process that writes; ``SqliteCatalog`` uses the
same function for its own ``upsert_items``, so both paths store the same rows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
import shapely

from eoshare.catalog.geometry import reshaped_geometry
from eoshare.catalog.queryables import json_type
from eoshare.catalog.validate import check_item
from eoshare.errors import InvalidItemError

JSON = dict[str, Any]

_TEXT_FIELDS = ("title", "description", "platform", "constellation", "mission")
_TEXT_LISTS = ("keywords", "instruments")


class PreparedItem(NamedTuple):
    """A valid item as the catalogue stores it (a tuple: cheap to send between processes)."""

    collection: str
    id: str
    dt_start: str
    dt_end: str
    bbox: tuple[float, float, float, float] | None
    geom_wkb: bytes | None
    content: str
    fts: str
    properties: tuple[tuple[str, str], ...]  # (name, queryable type) of each property
    reshaped: bool  # geom_wkb is not the geometry as written (antimeridian, made valid)


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
    if item.get("geometry") is not None:
        shaped, reshaped = reshaped_geometry(item["geometry"])
        geom_wkb = shapely.to_wkb(shaped)
    props = item.get("properties") or {}
    row = PreparedItem(
        cid,
        facts.id,
        facts.datetime_start,
        facts.datetime_end,
        (bbox[0], bbox[1], bbox[2], bbox[3]) if bbox else None,
        geom_wkb,
        orjson.dumps(item).decode(),
        fts_text(item),
        interned(tuple((name, json_type(value)) for name, value in props.items())),
        reshaped,
    )
    return row, item
