"""Collections: list (with collection search), one, and each one's queryables."""

from __future__ import annotations

from typing import Annotated

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
from eoshare.api.routes.federation import (
    federated_collections,
    hub_of,
    peer_collection_response,
    peer_collection_target,
)
from eoshare.catalog.collection_search import CollectionQuery, search_collections

router = APIRouter(tags=["Collections"])


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
    if (hub := hub_of(request)) is not None:  # a hub lists its peers' too (eoshare.federation)
        params = {"bbox": bbox, "datetime": datetime, "q": q_, "limit": limit, "token": token}
        return federated_collections(
            request, hub, bbox=bbox, datetime=datetime, q_=q_, limit=lim, offset=offset,
            params=params,
        )  # fmt: skip
    # shaped for the caller first (hidden ones dropped, item-derived extents of partly
    # visible ones removed), so that matching and counting never see what they hide
    shown = [r for c in catalog.list_collections() if (r := render_collection(request, c))]
    found = search_collections(shown, CollectionQuery(box, start, end, terms))
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
    if (peer := peer_collection_target(request, collection_id)) is not None:
        return peer_collection_response(request, *peer)  # <peer>.<id> on a hub
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


@router.get("/children", response_class=JSONResponse, summary="Children of the root catalogue")
def children(request: Request, catalog: Catalog) -> JSONResponse:
    """STAC API - Children: every child of the landing page (the collections the caller
    may see), each exactly as its own URL gives it, in one document."""
    base = base_url(request)
    shown = [r for c in catalog.list_collections() if (r := render_collection(request, c))]
    return JSONResponse(
        {
            "children": shown,
            "links": [
                link("self", f"{base}/children", title="Children"),
                link("root", f"{base}/", title="Landing page"),
            ],
        }
    )
