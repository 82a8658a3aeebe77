"""Collection search (STAC API collection-search, with free text): which collections
match a bbox, a datetime range and free-text terms. Backend-neutral, over collection
documents.

It runs over the documents *as the caller is shown them* (the access layer drops hidden
collections and replaces the item-derived extents of partly visible ones), so that a
match never reveals what is hidden; collections are few (tens to thousands), so this
costs little next to the rendering itself.

- **bbox**: a collection matches when one of its extent boxes meets the query box. The
  first extent box is the overall one; when more follow, they describe the data more
  precisely and are used instead. Boxes crossing the antimeridian (minx > maxx), in the
  query or the extent, are split at 180 degrees; 3D boxes use their 2D part. A
  collection without a spatial extent is kept (nothing says it is elsewhere).
- **datetime**: likewise with the temporal intervals (null ends are open).
- **q**: terms are OR-ed; a term matches when its words occur in a row in the
  collection's id, title, description or keywords, ignoring case and accents (as the
  item free-text search does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eoshare.catalog.geometry import split_bbox
from eoshare.catalog.text import accenti, casei
from eoshare.catalog.validate import parse_datetime
from eoshare.errors import InvalidRequestError

JSON = dict[str, Any]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class CollectionQuery:
    """A validated collection search. Built by the API from GET /collections."""

    bbox: Box | None = None
    datetime_start: datetime | None = None
    datetime_end: datetime | None = None
    q: tuple[str, ...] = ()


def search_collections(collections: Iterable[JSON], query: CollectionQuery) -> list[JSON]:
    """The collections that match, in the order given."""
    return [c for c in collections if matches(c, query)]


def matches(collection: JSON, query: CollectionQuery) -> bool:
    extent = _object(collection.get("extent"))
    if query.bbox is not None and not _meets_space(extent, query.bbox):
        return False
    if (query.datetime_start or query.datetime_end) and not _meets_time(
        extent, query.datetime_start, query.datetime_end
    ):
        return False
    return not query.q or _meets_text(collection, query.q)


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _precise(values: Any) -> list[Any]:
    if not isinstance(values, list) or not values:
        return []
    return values[1:] if len(values) > 1 else values


def _boxes(raw: Any) -> list[Box]:
    out: list[Box] = []
    for b in _precise(raw):
        if not isinstance(b, list | tuple) or len(b) not in (4, 6):
            continue
        x0, y0, x1, y1 = (b[0], b[1], b[3], b[4]) if len(b) == 6 else tuple(b)
        out += split_bbox((float(x0), float(y0), float(x1), float(y1)))
    return out


def _meets_space(extent: JSON, bbox: Box) -> bool:
    spatial = _object(extent.get("spatial"))
    boxes = _boxes(spatial.get("bbox"))
    if not boxes:
        return True
    return any(
        a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]
        for a in split_bbox(bbox)
        for b in boxes
    )


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or value in ("", ".."):
        return None
    try:
        return parse_datetime(value)
    except InvalidRequestError:
        return None


def _meets_time(extent: JSON, start: datetime | None, end: datetime | None) -> bool:
    temporal = _object(extent.get("temporal"))
    intervals = [i for i in _precise(temporal.get("interval")) if isinstance(i, list | tuple)]
    if not intervals:
        return True
    for interval in intervals:
        lo = _instant(interval[0]) if len(interval) > 0 else None
        hi = _instant(interval[1]) if len(interval) > 1 else None
        if (end is None or lo is None or lo <= end) and (
            start is None or hi is None or hi >= start
        ):
            return True
    return False


def words(text: str) -> list[str]:
    """Words without case or accents: letters and digits, split at everything else."""
    return re.findall(r"[^\W_]+", accenti(casei(text)))


def _meets_text(collection: JSON, terms: tuple[str, ...]) -> bool:
    parts = [collection.get(k) for k in ("id", "title", "description")]
    keywords = collection.get("keywords")
    if isinstance(keywords, list):
        parts += keywords
    fields = [words(p) for p in parts if isinstance(p, str)]
    for term in terms:
        phrase = words(term)
        n = len(phrase)
        for w in fields if n else ():
            if any(w[i : i + n] == phrase for i in range(len(w) - n + 1)):
                return True
    return False
