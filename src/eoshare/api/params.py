"""Search parameters: GET query strings and POST bodies both become one validated
``SearchQuery`` (plus the fields selection, which the API applies itself)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eoshare.catalog.base import SearchQuery, SortField
from eoshare.catalog.bounds import DEFAULT_BOUNDS, InputBounds, check_json
from eoshare.catalog.cql2filter import parse_filter, parse_query
from eoshare.catalog.geometry import check_bbox, check_geometry
from eoshare.catalog.validate import parse_datetime
from eoshare.errors import InvalidRequestError

JSON = dict[str, Any]


class SearchBody(BaseModel):
    """The body of POST /search (STAC API item search and its extensions)."""

    model_config = ConfigDict(extra="allow")

    # an array; a single id (or a comma-separated list) is accepted as text too
    collections: list[str] | str | None = None
    ids: list[str] | str | None = None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    datetime: str | None = None
    limit: int | None = Field(default=None, description="Items per page")
    token: str | None = None
    filter: dict[str, Any] | str | None = None
    filter_lang: str | None = Field(default=None, alias="filter-lang")
    filter_crs: str | None = Field(default=None, alias="filter-crs")
    sortby: list[dict[str, Any]] | str | None = None
    fields: dict[str, Any] | str | None = None
    query: dict[str, Any] | None = None
    q: list[str] | str | None = None


@dataclass(frozen=True)
class Fields:
    """The fields extension: which parts of each item to return.

    ``include`` given and not empty: the item's identity (type, stac_version, id,
    collection) and those fields (a field both included and excluded stays).
    ``include`` given but null or empty, with ``exclude``: the default set less those.
    ``include`` absent, with ``exclude``: the whole item less those.
    Neither: the whole item."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_given: bool = False

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude)


# Paging tokens are opaque to clients: base64 of "o:<offset>". They carry nothing a
# client could not ask for anyway (another page), but they reach SQL, so they are read
# strictly: plain digits, no sign, no "_", no exponent, and a bound far below SQLite's
# 64-bit OFFSET (an "o:" followed by 23 digits used to overflow it: a 500).
MAX_OFFSET = 1_000_000_000
_MAX_TOKEN_CHARS = 32
_TOKEN = re.compile(r"^o:(0|[1-9][0-9]{0,9})$")


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    bad = InvalidRequestError("the paging token is not valid; follow the 'next' link")
    if len(token) > _MAX_TOKEN_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", token):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise bad from exc
    m = _TOKEN.match(raw)
    if m is None or int(m.group(1)) > MAX_OFFSET:
        raise bad
    return int(m.group(1))


def split_csv(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_bbox_text(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None or value == "":
        return None
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError as exc:
        raise InvalidRequestError(
            f"bbox {value!r} must be 4 or 6 comma-separated numbers: minx,miny,maxx,maxy"
        ) from exc
    return check_bbox(numbers)


def parse_datetime_range(value: str | None) -> tuple[datetime | None, datetime | None]:
    """An instant, a closed range ``a/b`` or an open one (``../b``, ``a/..``, ``/b``, ``a/``)."""
    if value is None or value.strip() == "":
        return None, None
    value = value.strip()
    if "/" not in value:
        dt = parse_datetime(value, what="datetime")
        return dt, dt
    parts = value.split("/")
    if len(parts) != 2:
        raise InvalidRequestError(f"datetime {value!r} must be an instant or a range start/end")
    start_s, end_s = parts
    start = None if start_s in ("", "..") else parse_datetime(start_s, what="datetime start")
    end = None if end_s in ("", "..") else parse_datetime(end_s, what="datetime end")
    if start is None and end is None:
        raise InvalidRequestError("datetime range '../..' is open at both ends; give one bound")
    if start and end and start > end:
        raise InvalidRequestError(f"datetime range {value!r} starts after it ends")
    return start, end


_SORT_TERM = re.compile(r"^([+-]?)(.+)$")


def parse_sortby(value: Any) -> tuple[SortField, ...]:
    if value is None or value == "" or value == []:
        return ()
    terms: list[SortField] = []
    if isinstance(value, str):
        for raw in split_csv(value):
            m = _SORT_TERM.match(raw)
            assert m is not None
            terms.append(SortField(m.group(2).strip(), m.group(1) != "-"))
        return tuple(terms)
    if not isinstance(value, list):
        raise InvalidRequestError("sortby must be a list of {field, direction}")
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
            raise InvalidRequestError("each sortby entry needs a 'field'")
        direction = str(entry.get("direction", "asc")).lower()
        if direction not in ("asc", "desc"):
            raise InvalidRequestError(f"sortby direction {direction!r} must be 'asc' or 'desc'")
        terms.append(SortField(entry["field"], direction == "asc"))
    return tuple(terms)


def parse_fields(value: Any) -> Fields:
    """GET's ``id,+assets,-geometry`` text or POST's ``{"include": [], "exclude": []}``."""
    if value is None or value == "":
        return Fields()
    if isinstance(value, str):
        include, exclude = [], []
        for raw in split_csv(value):
            if raw.startswith("-"):
                exclude.append(raw[1:])
            else:
                include.append(raw.lstrip("+"))
        return Fields(tuple(include), tuple(exclude), bool(include))
    if isinstance(value, dict):
        unknown = set(value) - {"include", "exclude"}
        if unknown:
            raise InvalidRequestError(
                f"fields has unknown members {sorted(unknown)}; use include and exclude"
            )
        inc, exc = value.get("include") or [], value.get("exclude") or []
        if not isinstance(inc, list) or not isinstance(exc, list):
            raise InvalidRequestError("fields.include and fields.exclude must be lists")
        if not all(isinstance(x, str) and x for x in [*inc, *exc]):
            raise InvalidRequestError("fields entries must be non-empty strings")
        return Fields(tuple(inc), tuple(exc), "include" in value)
    raise InvalidRequestError("fields must be an object with include/exclude lists")


def parse_intersects(value: Any, bounds: InputBounds = DEFAULT_BOUNDS) -> JSON | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequestError("intersects must be a GeoJSON geometry (JSON)") from exc
    # vertices and nesting first: the checks below walk every position
    check_json(value, bounds, what="intersects geometry")
    check_geometry(value, what="intersects")
    return dict(value)


def check_limit(limit: int | None, default: int, maximum: int) -> int:
    if limit is None:
        return default
    if limit < 1:
        raise InvalidRequestError("limit must be at least 1")
    # OGC API Features /req/core/fc-limit-response-1: a limit above the maximum is not
    # an error; the server answers with the maximum (clients read numberReturned).
    return min(limit, maximum)


def build_query(
    *,
    collections: tuple[str, ...] = (),
    ids: tuple[str, ...] = (),
    bbox: tuple[float, float, float, float] | None = None,
    intersects: Any = None,
    datetime_text: str | None = None,
    limit: int | None = None,
    token: str | None = None,
    filter: Any = None,
    filter_lang: str | None = None,
    filter_crs: str | None = None,
    sortby: Any = None,
    query: Any = None,
    q: Any = None,
    default_limit: int = 10,
    max_limit: int = 1000,
    bounds: InputBounds = DEFAULT_BOUNDS,
) -> SearchQuery:
    """Check every parameter and assemble the query; raises InvalidRequestError."""
    if bbox is not None and intersects not in (None, ""):
        raise InvalidRequestError("bbox and intersects cannot be used together")
    if filter_crs not in (None, "", "http://www.opengis.net/def/crs/OGC/1.3/CRS84"):
        raise InvalidRequestError("filter-crs must be http://www.opengis.net/def/crs/OGC/1.3/CRS84")
    start, end = parse_datetime_range(datetime_text)
    cql = parse_filter(filter, filter_lang, bounds) if filter not in (None, "") else None
    terms = tuple(str(t) for t in q if str(t).strip()) if isinstance(q, list) else split_csv(q)
    return SearchQuery(
        collections=collections,
        ids=ids,
        bbox=bbox,
        intersects=parse_intersects(intersects, bounds),
        datetime_start=start,
        datetime_end=end,
        filter=cql,
        query=parse_query(query),
        q=terms,
        sortby=parse_sortby(sortby),
        limit=check_limit(limit, default_limit, max_limit),
        offset=decode_token(token),
    )


def _ids(value: list[str] | str | None) -> tuple[str, ...]:
    if isinstance(value, str):
        return split_csv(value)
    return tuple(value or ())


def from_body(
    body: SearchBody, default_limit: int, max_limit: int, bounds: InputBounds = DEFAULT_BOUNDS
) -> tuple[SearchQuery, Fields]:
    bbox = check_bbox(body.bbox) if body.bbox is not None else None
    if "fields" in body.model_fields_set and body.fields is None:
        raise InvalidRequestError("fields must be an object with include/exclude lists, not null")
    query = build_query(
        collections=_ids(body.collections),
        ids=_ids(body.ids),
        bbox=bbox,
        intersects=body.intersects,
        datetime_text=body.datetime,
        limit=body.limit,
        token=body.token,
        filter=body.filter,
        filter_lang=body.filter_lang,
        filter_crs=body.filter_crs,
        sortby=body.sortby,
        query=body.query,
        q=body.q,
        default_limit=default_limit,
        max_limit=max_limit,
        bounds=bounds,
    )
    return query, parse_fields(body.fields)


def restrict(query: SearchQuery, **changes: Any) -> SearchQuery:
    return replace(query, **changes)


# --- fields ---------------------------------------------------------------------------

_IDENTITY = ("type", "stac_version", "id", "collection")

_DEFAULT_FIELDS = (
    "type",
    "stac_version",
    "stac_extensions",
    "id",
    "bbox",
    "geometry",
    "collection",
    "links",
    "assets",
    "properties.datetime",
)


def _get(doc: JSON, path: list[str]) -> tuple[bool, Any]:
    cur: Any = doc
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _set(doc: JSON, path: list[str], value: Any) -> None:
    cur = doc
    for part in path[:-1]:
        cur = cur.setdefault(part, {})
    cur[path[-1]] = value


def _drop(doc: JSON, path: list[str]) -> None:
    cur: Any = doc
    for part in path[:-1]:
        if not isinstance(cur, dict) or part not in cur:
            return
        cur = cur[part]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)


def _split(field: str) -> list[str]:
    # "properties.eo:cloud_cover" -> ["properties", "eo:cloud_cover"]; a bare property
    # name that is not a top-level member means properties.<name>
    head, _, rest = field.partition(".")
    if not rest:
        return [head]
    return [head, *rest.split(".")]


def _pick(item: JSON, names: tuple[str, ...]) -> JSON:
    out: JSON = {}
    for f in names:
        path = _split(f)
        found, value = _get(item, path)
        if not found and len(path) == 1:
            # a bare property name: properties.<name>
            found, value = _get(item, ["properties", path[0]])
            path = ["properties", path[0]]
        if found:
            _set(out, path, json.loads(json.dumps(value)))
    return out


def apply_fields(item: JSON, fields: Fields) -> JSON:
    """The fields extension (see ``Fields`` for the rules)."""
    if not fields.active:
        return item
    if fields.include:
        # the extension calls include a hint; an item without its identity (type,
        # stac_version, id, collection) cannot be told apart or read by clients
        out = _pick(item, (*_IDENTITY, *fields.include))
    elif fields.include_given:
        out = _pick(item, _DEFAULT_FIELDS)
    else:
        out = json.loads(json.dumps(item))
    kept = [_split(f) for f in fields.include]
    for f in fields.exclude:
        path = _split(f)
        # a field both included and excluded is included, as is anything included
        # below an excluded parent ("-properties,+properties.eo:cloud_cover")
        if any(k[: len(path)] == path for k in kept):
            continue
        _drop(out, path)
    return out
