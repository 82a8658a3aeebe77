"""Item search: GET and POST /search, and the FeatureCollection page both share."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from eoshare.api.deps import Access, Caller, Catalog, Settings
from eoshare.api.links import GEOJSON, base_url, link, render_item
from eoshare.api.params import (
    Fields,
    SearchBody,
    apply_fields,
    build_query,
    encode_token,
    from_body,
    parse_bbox_text,
    parse_fields,
    split_csv,
)
from eoshare.api.responses import GeoJSONResponse
from eoshare.api.routes.federation import federated_response, hub_of
from eoshare.catalog.base import ItemPage, SearchQuery
from eoshare.catalog.bounds import InputBounds

router = APIRouter(tags=["Item Search"])


def page_response(
    request: Request,
    page: ItemPage,
    query: SearchQuery,
    fields: Fields,
    *,
    self_url: str,
    post_body: dict[str, Any] | None = None,
) -> GeoJSONResponse:
    """A page of items as a GeoJSON FeatureCollection with next/prev links.

    GET pages link with the same query string and a new token; POST pages link with
    ``method: POST`` and the same body plus the token, as STAC API prescribes."""
    base = base_url(request)
    features = [apply_fields(render_item(request, item), fields) for item in page.items]
    links = [link("self", self_url, GEOJSON), link("root", f"{base}/")]
    for rel, offset in (("next", page.next_offset), ("prev", page.prev_offset)):
        if offset is None:
            continue
        token = encode_token(offset)
        if post_body is None:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            from urllib.parse import urlencode

            url = str(request.url.replace(query=urlencode([*params, ("token", token)])))
            if request.app.state.base_url:
                url = base + request.url.path + "?" + urlencode([*params, ("token", token)])
            links.append(link(rel, url, GEOJSON, method="GET"))
        else:
            links.append(
                link(
                    rel,
                    f"{base}/search",
                    GEOJSON,
                    method="POST",
                    body={**post_body, "token": token},
                    merge=False,
                )
            )
    body: dict[str, Any] = {"type": "FeatureCollection", "features": features, "links": links}
    if page.number_matched is not None:
        body["numberMatched"] = page.number_matched
    body["numberReturned"] = len(features)
    return GeoJSONResponse(body)


@router.get("/search", response_class=GeoJSONResponse, summary="Search items (GET)")
def search_get(
    request: Request,
    catalog: Catalog,
    settings: Settings,
    access: Access,
    caller: Caller,
    collections: Annotated[str | None, Query(description="collection ids, comma-separated")] = None,
    ids: Annotated[str | None, Query(description="item ids, comma-separated")] = None,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy")] = None,
    intersects: Annotated[str | None, Query(description="a GeoJSON geometry")] = None,
    datetime: Annotated[str | None, Query(description="instant, or range start/end")] = None,
    limit: Annotated[int | None, Query(description="items per page")] = None,
    token: Annotated[str | None, Query(description="paging token from a next link")] = None,
    filter: Annotated[str | None, Query(description="CQL2 filter")] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs")] = None,
    sortby: Annotated[str | None, Query(description="e.g. -datetime,+id")] = None,
    fields: Annotated[str | None, Query(description="e.g. id,-geometry")] = None,
    query: Annotated[str | None, Query(description="query extension, as JSON")] = None,
    q: Annotated[str | None, Query(description="free-text terms, comma-separated")] = None,
) -> GeoJSONResponse:
    """Items across collections matching every given criterion."""
    hub = hub_of(request)  # a node with peers answers for them too (eoshare.federation)
    sq = build_query(
        collections=split_csv(collections),
        ids=split_csv(ids),
        bbox=parse_bbox_text(bbox),
        intersects=intersects,
        datetime_text=datetime,
        limit=limit,
        token=None if hub else token,
        filter=filter,
        filter_lang=filter_lang,
        filter_crs=filter_crs,
        sortby=sortby,
        query=query,
        q=q,
        default_limit=settings.api.default_limit,
        max_limit=settings.api.max_limit,
        bounds=InputBounds.from_settings(settings.security),
    )
    if hub is not None:
        return federated_response(
            request, hub, sq, token, parse_fields(fields), self_url=str(request.url)
        )
    page = catalog.search(replace(sq, visible=access.visible_filter(caller)))
    return page_response(request, page, sq, parse_fields(fields), self_url=str(request.url))


@router.post("/search", response_class=GeoJSONResponse, summary="Search items (POST)")
def search_post(
    request: Request,
    body: SearchBody,
    catalog: Catalog,
    settings: Settings,
    access: Access,
    caller: Caller,
) -> GeoJSONResponse:
    """The same search with a JSON body (for long geometries and filters)."""
    hub = hub_of(request)  # a node with peers answers for them too (eoshare.federation)
    token = body.token
    if hub is not None:
        body = body.model_copy(update={"token": None})
    sq, fields = from_body(
        body,
        settings.api.default_limit,
        settings.api.max_limit,
        InputBounds.from_settings(settings.security),
    )
    raw = body.model_dump(by_alias=True, exclude_none=True)
    raw.pop("token", None)
    if hub is not None:
        return federated_response(
            request, hub, sq, token, fields, self_url=f"{base_url(request)}/search", post_body=raw
        )
    page = catalog.search(replace(sq, visible=access.visible_filter(caller)))
    return page_response(
        request, page, sq, fields, self_url=f"{base_url(request)}/search", post_body=raw
    )
