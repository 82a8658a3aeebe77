"""Checks that a document is a STAC Item or Collection before it is written.

These are hand-written (not JSON-schema) checks of everything the catalogue relies on,
fast enough for bulk loads; each failure says what is wrong and where. Documents are
kept exactly as given: nothing here changes them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from eoshare.catalog.geometry import Bbox, check_bbox, check_geometry, compute_bbox
from eoshare.errors import InvalidItemError, InvalidRequestError

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# RFC 9110 media type: token "/" token *( OWS ";" OWS token "=" ( token / quoted-string ) )
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_MEDIA_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*$")


def is_media_type(value: object) -> bool:
    """Whether ``value`` is a media type that may go into a Content-Type header as it
    is: RFC 9110 grammar, printable ASCII only, at most 256 characters."""
    return isinstance(value, str) and len(value) <= 256 and _media_type(value)


# The same few media types and asset keys come in every item of a bulk load: their
# answers are remembered (bounded) instead of matching the pattern each time.
@lru_cache(maxsize=4096)
def _media_type(value: str) -> bool:
    return bool(_MEDIA_TYPE.match(value))


def parse_datetime(value: str, *, what: str = "datetime") -> datetime:
    """Parse an RFC 3339 date-time (with a time zone) into an aware UTC datetime."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidRequestError(
            f"{what} {value!r} is not an RFC 3339 date-time such as 2020-02-19T11:30:00Z"
        )
    text = value.replace("z", "Z").replace("t", "T")
    # Python < 3.12 accepts at most 6 fraction digits
    m = re.match(r"^(.*?\.)(\d+)(.*)$", text)
    if m and len(m.group(2)) > 6:
        text = m.group(1) + m.group(2)[:6] + m.group(3)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise InvalidRequestError(f"{what} {value!r} is not a valid date-time: {exc}") from exc


def iso(dt: datetime) -> str:
    """The sortable UTC text form used in indexes: 2020-02-19T11:30:00.000000Z."""
    utc = dt.astimezone(UTC)
    if utc.year >= 1000:  # (isoformat: the same text, several times faster)
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Ids name folders and files (store keys, order zips, Metalink entries): one safe path
# segment. Letters, digits and ``_ - . : @ + = ,``; not starting with a dot or a dash;
# never ``..``; at most 256 characters.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+=,-]{0,255}$")
ID_RULE = (
    "one path segment of at most 256 letters, digits and '_-.:@+=,', not starting with "
    "'.' or '-' and without '..'"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@+=,-]+")


def is_safe_id(value: object) -> bool:
    """Whether ``value`` is a valid collection, item or asset id (see ``ID_RULE``)."""
    return isinstance(value, str) and len(value) <= 256 and _safe_id(value)


@lru_cache(maxsize=4096)
def _safe_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value)) and ".." not in value


def safe_id(text: str, fallback: str = "data") -> str:
    """``text`` made into a valid id (for ids derived from file names)."""
    out = _UNSAFE.sub("_", text).replace("..", "_").lstrip(".-")[:256]
    return out if is_safe_id(out) else fallback


def check_new_id(value: Any, what: str) -> str:
    """InvalidRequestError (400) unless ``value`` is a valid id (see ``ID_RULE``)."""
    return _check_id(value, what)


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidItemError(f"{what} must be a non-empty string")
    if not is_safe_id(value):
        raise InvalidItemError(f"{what} {value!r} is not a valid id: it must be {ID_RULE}")
    return value


def _check_links(doc: dict[str, Any], where: str) -> None:
    links = doc.get("links", [])
    if not isinstance(links, list):
        raise InvalidItemError(f"{where}: 'links' must be an array")
    for i, link in enumerate(links):
        if not isinstance(link, dict):
            raise InvalidItemError(f"{where}: links[{i}] must be an object")
        for key in ("href", "rel"):
            if not isinstance(link.get(key), str):
                raise InvalidItemError(f"{where}: links[{i}] needs a string '{key}'")


# Asset keys and media types found valid lately (a bulk load's items have the same
# few): a set lookup instead of two checks per asset. Bounded: forgotten when full.
_GOOD_ASSET_KEYS: set[str] = set()
_GOOD_MEDIA_TYPES: set[str] = set()


def _check_assets(doc: dict[str, Any], where: str) -> None:
    assets = doc.get("assets", {})
    if not isinstance(assets, dict):
        raise InvalidItemError(f"{where}: 'assets' must be an object")
    good_keys, good_types = _GOOD_ASSET_KEYS, _GOOD_MEDIA_TYPES
    for key, asset in assets.items():
        if key not in good_keys:
            if not is_safe_id(key):
                raise InvalidItemError(
                    f"{where}: asset key {key!r} is not valid: it must be {ID_RULE}"
                )
            if len(good_keys) >= 4096:
                good_keys.clear()
            good_keys.add(key)
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            raise InvalidItemError(f"{where}: asset {key!r} needs a string 'href'")
        media = asset.get("type")
        if media is None or (isinstance(media, str) and media in good_types):
            continue
        if is_media_type(media):
            if len(good_types) >= 4096:
                good_types.clear()
            good_types.add(media)
        else:
            raise InvalidItemError(
                f"{where}: asset {key!r} has type {media!r}, which is not a media type such "
                "as 'image/tiff; application=geotiff' (printable ASCII, type/subtype and "
                "optional parameters)"
            )


def _prefixed(where: str, detail: str) -> str:
    # the link and asset checks already name the document
    return detail if detail.startswith(f"{where}:") else f"{where}: {detail}"


class ItemFacts:
    """What the catalogue indexes about a valid item."""

    __slots__ = ("bbox", "collection", "datetime_end", "datetime_start", "id")

    def __init__(
        self, id: str, collection: str | None, bbox: Bbox | None, start: str, end: str
    ) -> None:
        self.id = id
        self.collection = collection
        self.bbox = bbox
        self.datetime_start = start
        self.datetime_end = end


def check_item(item: Any) -> ItemFacts:
    """Validate a STAC Item; return the facts the catalogue indexes.

    Raises InvalidItemError naming the item and the problem."""
    if not isinstance(item, dict):
        raise InvalidItemError("a STAC item must be a JSON object")
    ident = item.get("id")
    where = f"item {ident!r}" if isinstance(ident, str) else "item"
    try:
        if item.get("type") != "Feature":
            raise InvalidItemError(f"'type' must be 'Feature', got {item.get('type')!r}")
        if not isinstance(item.get("stac_version"), str):
            raise InvalidItemError("'stac_version' must be a string such as '1.1.0'")
        ident = _check_id(ident, "'id'")
        collection = item.get("collection")
        if collection is not None:
            _check_id(collection, "'collection'")
        ext = item.get("stac_extensions", [])
        if not isinstance(ext, list) or not all(isinstance(e, str) for e in ext):
            raise InvalidItemError("'stac_extensions' must be an array of strings")
        if "geometry" not in item:
            raise InvalidItemError("'geometry' is required (it may be null)")
        geometry = item["geometry"]
        bbox: Bbox | None = None
        if geometry is not None:
            check_geometry(geometry)
            bbox = check_bbox(item["bbox"]) if "bbox" in item else compute_bbox(geometry)
        elif "bbox" in item:
            raise InvalidItemError("an item with a null geometry must not have a bbox")
        props = item.get("properties")
        if not isinstance(props, dict):
            raise InvalidItemError("'properties' must be an object")
        if "datetime" not in props:
            raise InvalidItemError("'properties.datetime' is required (it may be null)")
        start_raw, end_raw = props.get("start_datetime"), props.get("end_datetime")
        start = parse_datetime(start_raw, what="start_datetime") if start_raw is not None else None
        end = parse_datetime(end_raw, what="end_datetime") if end_raw is not None else None
        if props["datetime"] is not None:
            dt = parse_datetime(props["datetime"], what="datetime")
            start, end = start or dt, end or dt
        elif start is None or end is None:
            raise InvalidItemError(
                "a null 'datetime' needs both 'start_datetime' and 'end_datetime'"
            )
        if start > end:
            raise InvalidItemError("'start_datetime' is after 'end_datetime'")
        _check_links(item, where)
        _check_assets(item, where)
    except InvalidRequestError as exc:
        raise InvalidItemError(_prefixed(where, exc.detail)) from exc
    return ItemFacts(ident, collection, bbox, iso(start), iso(end))


def check_collection(collection: Any) -> str:
    """Validate a STAC Collection; return its id."""
    if not isinstance(collection, dict):
        raise InvalidItemError("a STAC collection must be a JSON object")
    ident = collection.get("id")
    where = f"collection {ident!r}" if isinstance(ident, str) else "collection"
    try:
        if collection.get("type") != "Collection":
            raise InvalidItemError(f"'type' must be 'Collection', got {collection.get('type')!r}")
        if not isinstance(collection.get("stac_version"), str):
            raise InvalidItemError("'stac_version' must be a string such as '1.1.0'")
        ident = _check_id(ident, "'id'")
        if not isinstance(collection.get("description"), str):
            raise InvalidItemError("'description' must be a string")
        if not isinstance(collection.get("license"), str):
            raise InvalidItemError("'license' must be a string (an SPDX id, 'other' or 'various')")
        extent = collection.get("extent")
        if not isinstance(extent, dict):
            raise InvalidItemError("'extent' must be an object with 'spatial' and 'temporal'")
        spatial = extent.get("spatial")
        if (
            not isinstance(spatial, dict)
            or not isinstance(spatial.get("bbox"), list)
            or not (spatial["bbox"])
        ):
            raise InvalidItemError("'extent.spatial.bbox' must be a non-empty array of bboxes")
        for i, b in enumerate(spatial["bbox"]):
            check_bbox(b, what=f"extent.spatial.bbox[{i}]")
        temporal = extent.get("temporal")
        if (
            not isinstance(temporal, dict)
            or not isinstance(temporal.get("interval"), list)
            or not (temporal["interval"])
        ):
            raise InvalidItemError("'extent.temporal.interval' must be a non-empty array")
        for i, interval in enumerate(temporal["interval"]):
            if not isinstance(interval, list) or len(interval) != 2:
                raise InvalidItemError(f"extent.temporal.interval[{i}] must be [start, end]")
            bounds = [
                parse_datetime(v, what=f"extent.temporal.interval[{i}]") if v is not None else None
                for v in interval
            ]
            if bounds[0] and bounds[1] and bounds[0] > bounds[1]:
                raise InvalidItemError(f"extent.temporal.interval[{i}] starts after it ends")
        _check_links(collection, where)
        _check_assets(collection, where)
    except InvalidRequestError as exc:
        raise InvalidItemError(_prefixed(where, exc.detail)) from exc
    return ident
