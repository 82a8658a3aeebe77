"""Collections: list (with collection search), one, and each one's queryables."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from eoshare.api.deps import Catalog, Settings
from eoshare.api.links import (
    base_url,
    link,
    q,
    render_collection,
    visible_collection,
    with_query,
)
from eoshare.api.params import (
    check_limit,
    decode_token,
    encode_token,
    parse_bbox_text,
    parse_datetime_range,
    split_csv,
)
from eoshare.api.responses import JSONResponse, SchemaJSONResponse
from eoshare.catalog.geometry import bbox_geometry, split_bbox
from eoshare.catalog.validate import parse_datetime

router = APIRouter(tags=["Collections"])


def _matches(
    c: dict[str, Any],
    bbox: tuple[float, float, float, float] | None,
    start: Any,
    end: Any,
    terms: tuple[str, ...],
) -> bool:
    extent = c.get("extent", {})
    if bbox is not None:
        boxes = extent.get("spatial", {}).get("bbox") or []
        if boxes:
            b = boxes[0]
            two_d = (b[0], b[1], b[3], b[4]) if len(b) == 6 else tuple(b)
            if not bbox_geometry(bbox).intersects(bbox_geometry(two_d)):
                return False
    if start is not None or end is not None:
        intervals = extent.get("temporal", {}).get("interval") or [[None, None]]
        lo, hi = intervals[0]
        lo_dt = parse_datetime(lo) if lo else None
        hi_dt = parse_datetime(hi) if hi else None
        if end is not None and lo_dt is not None and lo_dt > end:
            return False
        if start is not None and hi_dt is not None and hi_dt < start:
            return False
    if terms:
        text = " ".join(
            [c.get("id", ""), c.get("title", ""), c.get("description", ""), *c.get("keywords", [])]
        ).lower()
        if not any(t.lower() in text for t in terms):
            return False
    return True


@router.get("/collections", response_class=JSONResponse, summary="Collections")
def list_collections(
    request: Request,
    catalog: Catalog,
    settings: Settings,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy")] = None,
    datetime: Annotated[str | None, Query(description="instant or range")] = None,
    q_: Annotated[
        str | None, Query(alias="q", description="free-text terms, comma-separated")
    ] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    token: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    """All collections, or those matching a collection search."""
    box = parse_bbox_text(bbox)
    start, end = parse_datetime_range(datetime)
    terms = split_csv(q_)
    lim = check_limit(limit, 100, settings.api.max_limit)
    offset = decode_token(token)
    # shaped for the caller first (hidden ones dropped, item-derived extents of partly
    # visible ones removed), so that matching and counting never see what they hide
    shown = [r for c in catalog.list_collections() if (r := render_collection(request, c))]
    found = [c for c in shown if _matches(c, box, start, end, terms)]
    page = found[offset : offset + lim]
    base = base_url(request)
    here = f"{base}/collections"
    params = {"bbox": bbox, "datetime": datetime, "q": q_, "limit": limit}
    links = [link("self", with_query(here, {**params, "token": token})), link("root", f"{base}/")]
    if offset + lim < len(found):
        links.append(
            link("next", with_query(here, {**params, "token": encode_token(offset + lim)}))
        )
    if offset > 0:
        links.append(
            link("prev", with_query(here, {**params, "token": encode_token(max(offset - lim, 0))}))
        )
    return JSONResponse(
        {
            "collections": page,
            "links": links,
            "numberMatched": len(found),
            "numberReturned": len(page),
        }
    )


@router.get("/collections/{collection_id}", response_class=JSONResponse, summary="One collection")
def get_collection(request: Request, collection_id: str, catalog: Catalog) -> JSONResponse:
    """One collection with its links."""
    return JSONResponse(visible_collection(request, catalog.get_collection(collection_id)))


@router.get(
    "/collections/{collection_id}/queryables",
    response_class=SchemaJSONResponse,
    summary="Queryables of a collection",
    tags=["Filter"],
)
def collection_queryables(
    request: Request, collection_id: str, catalog: Catalog
) -> SchemaJSONResponse:
    """The properties a CQL2 filter may use on this collection's items."""
    visible_collection(request, catalog.get_collection(collection_id))  # 404 when hidden
    schema = catalog.queryables(collection_id)
    return SchemaJSONResponse(
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": f"{base_url(request)}/collections/{q(collection_id)}/queryables",
            "title": f"Queryables for {collection_id}",
            **schema,
        }
    )


__all__ = ["router", "split_bbox"]
