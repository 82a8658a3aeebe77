"""The landing page, conformance and the global queryables."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from eoshare.api.deps import Catalog, Settings
from eoshare.api.links import GEOJSON, base_url, link, render_collection
from eoshare.api.responses import JSONResponse, SchemaJSONResponse
from eoshare.api.routes.web import prefers_html, ui_page

router = APIRouter(tags=["Core"])

STAC_API = "https://api.stacspec.org/v1.0.0"
CONFORMANCE = [
    f"{STAC_API}/core",
    f"{STAC_API}/collections",
    f"{STAC_API}/ogcapi-features",
    f"{STAC_API}/item-search",
    f"{STAC_API}/item-search#sort",
    f"{STAC_API}/item-search#fields",
    f"{STAC_API}/item-search#query",
    f"{STAC_API}/ogcapi-features#sort",
    f"{STAC_API}/ogcapi-features#fields",
    f"{STAC_API}/ogcapi-features#query",
    f"{STAC_API}/ogcapi-features/extensions/transaction",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text",
    "https://api.stacspec.org/v1.0.0-rc.1/ogcapi-features#free-text",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search",
    "https://api.stacspec.org/v1.0.0-rc.2/children",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#free-text",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/simpletx",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/array-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/array-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
    "http://www.opengis.net/spec/cql2/1.0/conf/arithmetic",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/accent-insensitive-comparison",
]


@router.get("/", response_class=JSONResponse, summary="Landing page")
def landing_page(request: Request, catalog: Catalog, settings: Settings) -> Response:
    """The STAC API root: what this node is and where everything lives."""
    # a browser (Accept: text/html first) gets the web UI; STAC clients get JSON
    if prefers_html(request.headers.get("accept")):
        return ui_page(request)
    base = base_url(request)
    links = [
        link("self", f"{base}/", title="Landing page"),
        link("root", f"{base}/", title="Landing page"),
        link("conformance", f"{base}/conformance", title="Conformance classes"),
        link("data", f"{base}/collections", title="Collections"),
        link("children", f"{base}/children", title="Children"),
        link("search", f"{base}/search", GEOJSON, method="GET", title="Item search"),
        link("search", f"{base}/search", GEOJSON, method="POST", title="Item search"),
        link(
            "http://www.opengis.net/def/rel/ogc/1.0/queryables",
            f"{base}/queryables",
            "application/schema+json",
            title="Queryables",
        ),
        link(
            "service-desc",
            f"{base}/api",
            "application/vnd.oai.openapi+json;version=3.0",
            title="OpenAPI definition",
        ),
        link("service-doc", f"{base}/api.html", "text/html", title="API documentation"),
    ]
    for c in catalog.list_collections():
        if render_collection(request, c) is None:  # hidden from this caller
            continue
        links.append(link("child", f"{base}/collections/{c['id']}", title=c.get("title", c["id"])))
    return JSONResponse(
        {
            "type": "Catalog",
            "stac_version": "1.1.0",
            "id": "eoshare",
            "title": settings.api.title,
            "description": settings.api.description,
            "conformsTo": CONFORMANCE,
            "links": links,
        },
        headers={"Vary": "Accept"},
    )


@router.get("/conformance", response_class=JSONResponse, summary="Conformance classes")
def conformance() -> JSONResponse:
    """The standards this node implements."""
    return JSONResponse({"conformsTo": CONFORMANCE})


@router.get("/queryables", response_class=SchemaJSONResponse, summary="Queryables", tags=["Filter"])
def queryables(request: Request, catalog: Catalog) -> SchemaJSONResponse:
    """The properties a CQL2 filter may use, across all collections."""
    schema = catalog.queryables(None)
    return SchemaJSONResponse(
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": f"{base_url(request)}/queryables",
            "title": "Queryables for all collections",
            **schema,
        }
    )
