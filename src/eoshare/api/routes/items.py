"""Items of one collection (OGC API Features) and single items."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request

from eoshare.api.deps import Access, Caller, Catalog, Settings
from eoshare.api.links import link, q, render_item, visible_collection
from eoshare.api.params import build_query, parse_bbox_text, parse_fields
from eoshare.api.responses import GeoJSONResponse
from eoshare.api.routes.federation import (
    peer_collection_target,
    peer_item_response,
    peer_items_response,
)
from eoshare.api.routes.search import page_response
from eoshare.catalog.bounds import InputBounds

router = APIRouter(tags=["Features"])


@router.get(
    "/collections/{collection_id}/items",
    response_class=GeoJSONResponse,
    summary="Items of a collection",
)
def collection_items(
    request: Request,
    collection_id: str,
    catalog: Catalog,
    settings: Settings,
    access: Access,
    caller: Caller,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy")] = None,
    datetime: Annotated[str | None, Query(description="instant, or range start/end")] = None,
    limit: Annotated[int | None, Query(description="items per page")] = None,
    token: Annotated[str | None, Query()] = None,
    filter: Annotated[str | None, Query(description="CQL2 filter")] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs")] = None,
    sortby: Annotated[str | None, Query()] = None,
    fields: Annotated[str | None, Query()] = None,
    query: Annotated[str | None, Query(description="query extension, as JSON")] = None,
    q_: Annotated[str | None, Query(alias="q", description="free-text terms")] = None,
) -> GeoJSONResponse:
    """A page of the collection's items."""
    if (peer := peer_collection_target(request, collection_id)) is not None:
        return peer_items_response(request, *peer)  # <peer>.<id> on a hub
    # 404 for an unknown collection, or one hidden from the caller
    visible_collection(request, catalog.get_collection(collection_id))
    sq = build_query(
        collections=(collection_id,),
        bbox=parse_bbox_text(bbox),
        datetime_text=datetime,
        limit=limit,
        token=token,
        filter=filter,
        filter_lang=filter_lang,
        filter_crs=filter_crs,
        sortby=sortby,
        query=query,
        q=q_,
        default_limit=settings.api.default_limit,
        max_limit=settings.api.max_limit,
        bounds=InputBounds.from_settings(settings.security),
    )
    page = catalog.search(replace(sq, visible=access.visible_filter(caller)))
    response = page_response(request, page, sq, parse_fields(fields), self_url=str(request.url))
    return response


@router.get(
    "/collections/{collection_id}/items/{item_id}",
    response_class=GeoJSONResponse,
    summary="One item",
)
def get_item(
    request: Request,
    collection_id: str,
    item_id: str,
    catalog: Catalog,
    access: Access,
    caller: Caller,
) -> GeoJSONResponse:
    """One item with its links."""
    if (peer := peer_collection_target(request, collection_id)) is not None:
        return peer_item_response(request, *peer, item_id)  # <peer>.<id> on a hub
    item = catalog.get_item(collection_id, item_id, visible=access.visible_filter(caller))
    return GeoJSONResponse(render_item(request, item))


__all__ = ["link", "q", "router"]
