"""Map tiles, TileJSON, WMTS, previews, point values and statistics under ``/tiles``.

Every route that shows an item or returns its pixels first finds the item through the
caller's visibility filter (a hidden item answers 404), then asks the access policy for
``Action.TILE`` on each asset it reads (denied: 403 naming the agreement; reduced: zooms
and sizes limited to the allowed resolution), and audits what it returns. The drawing is
``eoshare.tiles.TileService`` (``app.state.tiles``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from eoshare.access import AccessPolicy as AccessBackend
from eoshare.access import Decision, Principal
from eoshare.access.egress import AssetGate, PictureGrant
from eoshare.api.deps import Access, Caller, Catalog, Gate, Settings, principal_of
from eoshare.api.links import JSONT, base_url, link, q, visible_collection
from eoshare.api.params import build_query, parse_bbox_text
from eoshare.api.responses import JSONResponse
from eoshare.catalog.base import SortField
from eoshare.catalog.bounds import InputBounds
from eoshare.errors import AccessDeniedError, EoshareError, InvalidRequestError, NotFoundError
from eoshare.tiles import make_spec, raster_assets, render_defaults
from eoshare.tiles.access import check_tile, max_zoom
from eoshare.tiles.cache import Rendered
from eoshare.tiles.lazy import LazyTileService
from eoshare.tiles.render import ImageFormat, Plan, RenderSpec, image_format
from eoshare.tiles.tms import check_tile_index, get_tms
from eoshare.tiles.wmts import WmtsLayer, capabilities

if TYPE_CHECKING:
    import morecantile

    from eoshare.tiles.service import TileService
else:
    # app.state.tiles is an eoshare.tiles.lazy.LazyTileService: rio-tiler loads on the
    # first picture, not with this module (FastAPI reads the annotation of get_tiles)
    TileService = Any

JSON = dict[str, Any]
router = APIRouter(prefix="/tiles", tags=["Tiles"])

WMTS_TYPE = "application/xml"
_TILE_END = re.compile(r"^(?P<y>\d+)(?:@(?P<scale>\d+)x)?(?:\.(?P<format>[A-Za-z]+))?$")
_MAX_SCALE = 4


async def get_tiles(request: Request) -> TileService:
    tiles = request.app.state.tiles
    # the service itself, built on the first picture (eoshare.tiles.lazy)
    service: TileService = tiles.service if isinstance(tiles, LazyTileService) else tiles
    return service


Tiles = Annotated[TileService, Depends(get_tiles)]


async def render_params(
    settings: Settings,
    assets: Annotated[
        list[str], Query(description="asset keys to read (repeat, or comma-separated)")
    ] = [],  # noqa: B006 - FastAPI copies defaults
    expression: Annotated[
        str | None, Query(description="band math, e.g. (B08-B04)/(B08+B04); ';' between bands")
    ] = None,
    bidx: Annotated[list[int], Query(description="band indexes of the asset (from 1)")] = [],  # noqa: B006
    rescale: Annotated[
        list[str], Query(description="min,max to stretch to 0-255 (once, or per band)")
    ] = [],  # noqa: B006
    colormap_name: Annotated[str | None, Query(description="e.g. viridis, rdylgn")] = None,
    resampling: Annotated[str | None, Query(description="nearest, bilinear, ...")] = None,
    nodata: Annotated[str | None, Query(description="a value to treat as no data")] = None,
    return_mask: Annotated[bool, Query(description="transparent where there is no data")] = True,
) -> RenderSpec:
    """The rendering parameters shared by every picture route."""
    return make_spec(
        assets=assets,
        expression=expression,
        bidx=bidx,
        rescale=rescale,
        colormap_name=colormap_name,
        resampling=resampling,
        nodata=nodata,
        return_mask=return_mask,
        max_expression_chars=settings.tiles.max_expression_chars,
    )


Render = Annotated[RenderSpec, Depends(render_params)]
TmsId = Annotated[str, Query(alias="tileMatrixSetId", description="a tile matrix set id")]


# --- responses --------------------------------------------------------------------------
def _cache_control(request: Request, caller: Principal) -> dict[str, str]:
    max_age = request.app.state.settings.tiles.max_age_s
    scope = "public" if caller.anonymous else "private"
    return {"Cache-Control": f"{scope}, max-age={max_age}", "Vary": "Authorization, Cookie"}


def _image(request: Request, rendered: Rendered, caller: Principal) -> tuple[Response, int]:
    """The picture, or 304 when the client already has it; and the bytes sent."""
    headers = {"ETag": rendered.etag, **_cache_control(request, caller)}
    wanted = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",") if t.strip()}
    if rendered.etag in tags or "*" in tags:
        return Response(status_code=304, headers=headers), 0
    return (
        Response(rendered.content, media_type=rendered.media_type, headers=headers),
        len(rendered.content),
    )


def _tile_end(y: str) -> tuple[int, int, ImageFormat]:
    m = _TILE_END.match(y)
    if m is None:
        raise InvalidRequestError(
            f"{y!r} is not a tile row: write {{y}}, {{y}}.png or {{y}}@2x.png"
        )
    scale = int(m.group("scale") or 1)
    if not 1 <= scale <= _MAX_SCALE:
        raise InvalidRequestError(f"tile scale @{scale}x must be between 1 and {_MAX_SCALE}")
    return int(m.group("y")), scale, image_format(m.group("format"))


def _qs(spec: RenderSpec, **extra: Any) -> str:
    pairs = spec.query() + [(k, str(v)) for k, v in extra.items() if v is not None]
    return f"?{urlencode(pairs)}" if pairs else ""


def _item_root(base: str, cid: str, iid: str) -> str:
    return f"{base}/tiles/collections/{q(cid)}/items/{q(iid)}"


def _tilejson(
    name: str,
    template: str,
    minzoom: int,
    maxzoom: int,
    bounds: tuple[float, float, float, float],
    description: str | None = None,
) -> dict[str, Any]:
    """A TileJSON 3.0 document (items and mosaics)."""
    west, south, east, north = bounds
    doc: dict[str, Any] = {"tilejson": "3.0.0", "name": name}
    if description is not None:
        doc["description"] = description
    doc.update(
        {
            "version": "1.0.0",
            "scheme": "xyz",
            "tiles": [template],
            "minzoom": minzoom,
            "maxzoom": maxzoom,
            "bounds": [west, south, east, north],
            "center": [(west + east) / 2.0, (south + north) / 2.0, minzoom],
        }
    )
    return doc


def _suffix(scale: int, fmt: ImageFormat) -> str:
    return f"{'' if scale == 1 else f'@{scale}x'}.{fmt.name}"


# --- tile matrix sets -------------------------------------------------------------------
@router.get("/tileMatrixSets", response_class=JSONResponse, summary="Tile matrix sets")
def tile_matrix_sets(request: Request) -> JSONResponse:
    """The OGC tile matrix sets tiles can be asked in."""
    base = base_url(request)
    sets = []
    import morecantile

    for tms_id in morecantile.tms.list():
        tms = get_tms(tms_id)
        href = f"{base}/tiles/tileMatrixSets/{q(tms_id)}"
        sets.append(
            {
                "id": tms_id,
                "title": tms.title or tms_id,
                "links": [
                    link(
                        "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                        href,
                        "application/json",
                        title=f"Definition of {tms_id}",
                    )
                ],
            }
        )
    return JSONResponse({"tileMatrixSets": sets})


@router.get(
    "/tileMatrixSets/{tileMatrixSetId}", response_class=JSONResponse, summary="A tile matrix set"
)
def tile_matrix_set(tms_id: Annotated[str, Path(alias="tileMatrixSetId")]) -> JSONResponse:
    """The OGC TileMatrixSet 2.0 document of one set."""
    return JSONResponse(get_tms(tms_id).model_dump(mode="json", exclude_none=True))


@router.get("/colormaps", response_class=JSONResponse, summary="Colour maps")
def colormaps() -> JSONResponse:
    """The names ``colormap_name`` accepts."""
    from rio_tiler.colormap import cmap

    return JSONResponse({"colormaps": sorted(cmap.list())})


# --- one item ---------------------------------------------------------------------------
@router.get(
    "/collections/{collection_id}/items/{item_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
    summary="A map tile of an item",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
async def item_tile(
    request: Request,
    collection_id: str,
    item_id: str,
    tms_id: Annotated[str, Path(alias="tileMatrixSetId")],
    z: int,
    x: int,
    y: Annotated[str, Path(description="row, then @2x and .png/.jpg/.webp/.tif if wanted")],
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    spec: Render,
) -> Response:
    """One tile: ``{y}``, ``{y}.png``, ``{y}@2x.webp``...

    Async on purpose: the lookups and the decision are sub-millisecond SQLite reads, so a
    tile already in the cache is answered without a thread hop; only rendering (GDAL
    reads, encoding) goes to the thread pool."""
    row, scale, fmt = _tile_end(y)
    tms = get_tms(tms_id)
    item = gate.item(caller, collection_id, item_id)
    plan = tiles.plan(item, spec)
    check_tile_index(tms, z, x, row)
    pixels = int(tms.matrix(z).tileWidth) * scale
    grant = gate.pictures(
        caller, item, plan.assets, check=lambda d: check_tile(d, tms, z, x, row, pixels)
    )
    rendered = tiles.cached_tile(item, plan, tms, z, x, row, scale=scale, fmt=fmt)
    if rendered is None:
        rendered = await run_in_threadpool(
            tiles.tile, item, plan, tms, z, x, row, scale=scale, fmt=fmt
        )
    response, sent = _image(request, rendered, caller)
    grant.record(sent)
    return response


@router.get(
    "/collections/{collection_id}/items/{item_id}/tilejson.json",
    response_class=JSONResponse,
    summary="TileJSON of an item",
)
def item_tilejson(
    request: Request,
    collection_id: str,
    item_id: str,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    spec: Render,
    tms_id: TmsId = "WebMercatorQuad",
    tile_format: Annotated[str | None, Query(description="png, jpg, webp or tif")] = None,
    tile_scale: Annotated[int, Query(ge=1, le=_MAX_SCALE)] = 1,
) -> JSONResponse:
    """A TileJSON 3.0 document whose ``tiles`` template draws this item as asked (with no
    parameters: its default rendering, see ``render_defaults``)."""
    tms = get_tms(tms_id)
    fmt = image_format(tile_format)
    item = gate.item(caller, collection_id, item_id)
    plan = tiles.plan(item, spec)
    decision = gate.pictures(caller, item, plan.assets, count=False).decision
    info = tiles.info(item, plan, tms)
    west, south, east, north = info.bounds
    centre = ((west + east) / 2.0, (south + north) / 2.0)
    maxzoom = info.maxzoom
    allowed = max_zoom(decision, tms, centre, tile_scale)
    if allowed is None:
        raise AccessDeniedError(
            f"no zoom of {tms.id} is coarse enough for the {decision.max_resolution_m:g} m "
            "this caller may get"
        )
    maxzoom = min(maxzoom, allowed)
    minzoom = min(info.minzoom, maxzoom)
    template = (
        f"{_item_root(base_url(request), collection_id, item_id)}/tiles/{tms.id}"
        f"/{{z}}/{{x}}/{{y}}{_suffix(tile_scale, fmt)}{_qs(plan.spec)}"
    )
    doc = _tilejson(
        item_id, template, minzoom, maxzoom, info.bounds, f"{collection_id} / {item_id}"
    )
    return JSONResponse(doc, headers=_cache_control(request, caller))


@router.get(
    "/collections/{collection_id}/items/{item_id}/WMTSCapabilities.xml",
    summary="WMTS capabilities of an item",
    response_class=Response,
    responses={200: {"content": {WMTS_TYPE: {}}}},
)
def item_wmts(
    request: Request,
    collection_id: str,
    item_id: str,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    spec: Render,
    tms_id: TmsId = "WebMercatorQuad",
    tile_format: Annotated[str | None, Query(description="png, jpg, webp or tif")] = None,
) -> Response:
    """One layer, the item drawn as asked, for QGIS / OpenLayers / OWSLib."""
    tms = get_tms(tms_id)
    fmt = image_format(tile_format)
    item = gate.item(caller, collection_id, item_id)
    plan = tiles.plan(item, spec)
    decision = gate.pictures(caller, item, plan.assets, count=False).decision
    info = tiles.info(item, plan, tms)
    west, south, east, north = info.bounds
    allowed = max_zoom(decision, tms, ((west + east) / 2.0, (south + north) / 2.0))
    if allowed is None:
        raise AccessDeniedError("no zoom is coarse enough for what this caller may get")
    maxzoom = min(info.maxzoom, allowed)
    root = _item_root(base_url(request), collection_id, item_id)
    layer = WmtsLayer(
        identifier=item_id,
        title=str((item.get("properties") or {}).get("title") or item_id),
        abstract=f"{collection_id} / {item_id}",
        bounds=info.bounds,
        template=f"{root}/tiles/{tms.id}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{fmt.name}"
        + _qs(plan.spec),
        media_type=fmt.media_type,
        minzoom=min(info.minzoom, maxzoom),
        maxzoom=maxzoom,
    )
    xml = capabilities(title=f"eoshare: {item_id}", url=str(request.url), layers=[layer], tms=tms)
    return Response(xml, media_type=WMTS_TYPE, headers=_cache_control(request, caller))


@router.get(
    "/collections/{collection_id}/items/{item_id}/preview",
    summary="A preview of a whole asset",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
@router.get(
    "/collections/{collection_id}/items/{item_id}/preview.{format}",
    summary="A preview of a whole asset, in a format",
    response_class=Response,
    include_in_schema=False,
)
def item_preview(
    request: Request,
    collection_id: str,
    item_id: str,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    settings: Settings,
    spec: Render,
    format: str | None = None,
    max_size: Annotated[int | None, Query(ge=1, description="longest side, pixels")] = None,
    width: Annotated[int | None, Query(ge=1)] = None,
    height: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The whole asset, at most ``max_size`` pixels on its longest side; for a reduced
    decision, smaller so that its pixels are no finer than allowed."""
    fmt = image_format(format)
    item = gate.item(caller, collection_id, item_id)
    plan = tiles.plan(item, spec)
    grant = gate.pictures(caller, item, plan.assets)
    size = max_size or settings.tiles.preview_size
    rendered = tiles.preview(
        item, plan, fmt=fmt, max_size=size, width=width, height=height,
        min_pixel_m=grant.min_pixel_m,
    )  # fmt: skip
    response, sent = _image(request, rendered, caller)
    grant.record(sent)
    return response


@router.get(
    "/collections/{collection_id}/items/{item_id}/point/{lon},{lat}",
    response_class=JSONResponse,
    summary="Values at a point",
)
def item_point(
    request: Request,
    collection_id: str,
    item_id: str,
    lon: float,
    lat: float,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    spec: Render,
) -> JSONResponse:
    """The value of each output band at lon,lat (null where there is no data)."""
    item = gate.item(caller, collection_id, item_id)
    plan = tiles.plan(item, spec)
    grant = gate.pictures(caller, item, plan.assets)
    result = tiles.point(item, plan, lon, lat, min_pixel_m=grant.min_pixel_m)
    response = JSONResponse(result, headers=_cache_control(request, caller))
    grant.record(len(response.body))
    return response


def _statistics(
    request: Request,
    grant: PictureGrant,
    plan: Plan,
    tiles: TileService,
    caller: Principal,
    *,
    bbox: tuple[float, float, float, float] | None,
    geometry: JSON | None,
    max_size: int | None,
    categorical: bool,
) -> JSONResponse:
    size = max_size or request.app.state.settings.tiles.preview_size
    result = tiles.statistics(
        grant.item, plan, bbox=bbox, geometry=geometry, max_size=size,
        min_pixel_m=grant.min_pixel_m, categorical=categorical,
    )  # fmt: skip
    response = JSONResponse(result, headers=_cache_control(request, caller))
    grant.record(len(response.body))
    return response


@router.get(
    "/collections/{collection_id}/items/{item_id}/statistics",
    response_class=JSONResponse,
    summary="Statistics over a bounding box",
)
def item_statistics(
    request: Request,
    collection_id: str,
    item_id: str,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    spec: Render,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (lon/lat)")] = None,
    max_size: Annotated[int | None, Query(ge=1)] = None,
    categorical: bool = False,
) -> JSONResponse:
    """Per-band statistics over ``bbox`` (or the whole asset)."""
    box = parse_bbox_text(bbox)
    item = gate.item(caller, collection_id, item_id)
    plan = tiles.plan(item, spec)
    grant = gate.pictures(caller, item, plan.assets)
    return _statistics(
        request, grant, plan, tiles, caller,
        bbox=box, geometry=None, max_size=max_size, categorical=categorical,
    )  # fmt: skip


def _feature_geometry(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a GeoJSON Feature or geometry object")
    geometry = body.get("geometry") if body.get("type") == "Feature" else body
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidRequestError(
            "statistics need a GeoJSON Feature (or geometry) whose geometry is a Polygon "
            "or a MultiPolygon"
        )
    return geometry


@router.post(
    "/collections/{collection_id}/items/{item_id}/statistics",
    response_class=JSONResponse,
    summary="Statistics over a GeoJSON feature",
)
def item_feature_statistics(
    request: Request,
    collection_id: str,
    item_id: str,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    spec: Render,
    body: Annotated[dict[str, Any], Body(description="a GeoJSON Feature (Polygon)")],
    max_size: Annotated[int | None, Query(ge=1)] = None,
    categorical: bool = False,
) -> JSONResponse:
    """Per-band statistics of the pixels inside a polygon."""
    geometry = _feature_geometry(body)
    item = gate.item(caller, collection_id, item_id)
    plan = tiles.plan(item, spec)
    grant = gate.pictures(caller, item, plan.assets)
    return _statistics(
        request, grant, plan, tiles, caller,
        bbox=None, geometry=geometry, max_size=max_size, categorical=categorical,
    )  # fmt: skip


# --- a mosaic of a search -----------------------------------------------------------------
def _mosaic_query(
    settings: Any,
    cid: str,
    box: tuple[float, float, float, float] | None,
    datetime: str | None,
    filter: str | None,
    filter_lang: str | None,
    limit: int,
) -> Any:
    return build_query(
        collections=(cid,),
        bbox=box,
        datetime_text=datetime,
        filter=filter,
        filter_lang=filter_lang,
        limit=limit,
        default_limit=limit,
        max_limit=max(limit, settings.api.max_limit),
        bounds=InputBounds.from_settings(settings.security),
    )


def _intersect(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float] | None
) -> tuple[float, float, float, float] | None:
    if b is None:
        return a
    if b[0] > b[2]:  # a user box across the antimeridian: keep the tile's own box
        return a
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] <= box[2] and box[1] <= box[3] else None


MosaicBbox = Annotated[str | None, Query(description="minx,miny,maxx,maxy to limit the search")]
MosaicDatetime = Annotated[str | None, Query(description="instant or range start/end")]
MosaicFilter = Annotated[str | None, Query(description="CQL2 filter on the items")]
MosaicFilterLang = Annotated[str | None, Query(alias="filter-lang")]


@router.get(
    "/collections/{collection_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
    summary="A map tile of a mosaic of a collection's items",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
def mosaic_tile(
    request: Request,
    collection_id: str,
    tms_id: Annotated[str, Path(alias="tileMatrixSetId")],
    z: int,
    x: int,
    y: str,
    catalog: Catalog,
    access: Access,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    settings: Settings,
    spec: Render,
    bbox: MosaicBbox = None,
    datetime: MosaicDatetime = None,
    filter: MosaicFilter = None,
    filter_lang: MosaicFilterLang = None,
) -> Response:
    """The visible items of the collection over the tile (and ``bbox``, ``datetime``,
    ``filter``), newest on top, as one tile."""
    row, scale, fmt = _tile_end(y)
    tms = get_tms(tms_id)
    visible_collection(request, catalog.get_collection(collection_id))
    user_box = parse_bbox_text(bbox)
    check_tile_index(tms, z, x, row)
    import morecantile

    b = tms.bounds(morecantile.Tile(x, row, z))
    box = _intersect((b.left, b.bottom, b.right, b.top), user_box)
    if box is None:
        raise NotFoundError(f"tile {z}/{x}/{row} is outside the bbox of this mosaic")
    limit = settings.tiles.mosaic_max_items
    sq = _mosaic_query(settings, collection_id, box, datetime, filter, filter_lang, limit)
    sq = replace(
        sq,
        visible=access.visible_filter(caller),
        sortby=(SortField("datetime", ascending=False),),
        count=False,
    )
    pixels = int(tms.matrix(z).tileWidth) * scale
    entries: list[tuple[JSON, Plan]] = []
    decisions: dict[str, Decision] = {}
    too_fine: AccessDeniedError | None = None
    plan_error: InvalidRequestError | None = None
    for item in catalog.search(sq).items:
        if not raster_assets(item):
            continue
        try:
            plan = tiles.plan(item, spec)
        except InvalidRequestError as exc:  # this item lacks the bands asked for
            plan_error = plan_error or exc
            continue
        decision = gate.picture_decision(caller, item, plan.assets)
        if decision.kind == "denied":
            continue
        try:
            check_tile(decision, tms, z, x, row, pixels)
        except AccessDeniedError as exc:
            too_fine = too_fine or exc
            continue
        entries.append((item, plan))
        decisions[item["id"]] = decision
    if not entries:
        if too_fine is not None:
            raise too_fine
        if plan_error is not None:
            raise plan_error
        raise NotFoundError(f"no visible item of this mosaic covers tile {z}/{x}/{row}")
    gate.count_picture(caller, collection_id)  # one picture against the daily quota
    rendered, used = tiles.mosaic_tile(entries, spec, tms, z, x, row, scale=scale, fmt=fmt)
    response, sent = _image(request, rendered, caller)
    plans = {i["id"]: p for i, p in entries}
    share, rest = divmod(sent, max(1, len(used)))
    for n, item in enumerate(used):
        grant = gate.picture_grant(caller, item, plans[item["id"]].assets, decisions[item["id"]])
        grant.record(share + (rest if n == 0 else 0))
    return response


def _mosaic_info(
    request: Request,
    collection_id: str,
    catalog: Catalog,
    access: AccessBackend,
    caller: Principal,
    gate: AssetGate,
    tiles: TileService,
    settings: Any,
    spec: RenderSpec,
    tms: morecantile.TileMatrixSet,
    bbox: str | None,
    datetime: str | None,
    filter: str | None,
    filter_lang: str | None,
    *,
    check_visible: bool = True,
) -> tuple[tuple[float, float, float, float], int, int]:
    """Bounds and zoom range of a collection mosaic: the collection's extent (cut by
    ``bbox``) and the zooms of its newest matching item. NotFoundError when there is
    nothing the caller may see drawn."""
    collection = catalog.get_collection(collection_id)
    if check_visible:
        collection = visible_collection(request, collection)
    user_box = parse_bbox_text(bbox)
    extent = catalog.collection_extent(collection_id) or collection.get("extent") or {}
    boxes = (extent.get("spatial") or {}).get("bbox") or [[-180.0, -90.0, 180.0, 90.0]]
    first = boxes[0]
    coll_box: tuple[float, float, float, float] = (
        (first[0], first[1], first[3], first[4]) if len(first) == 6 else tuple(first[:4])
    )
    bounds = _intersect(coll_box, user_box) or coll_box
    sq = _mosaic_query(settings, collection_id, user_box, datetime, filter, filter_lang, 20)
    sq = replace(
        sq,
        visible=access.visible_filter(caller),
        sortby=(SortField("datetime", ascending=False),),
        count=False,
    )
    for item in catalog.search(sq).items:
        if not raster_assets(item):
            continue
        try:
            plan = tiles.plan(item, spec)
        except InvalidRequestError:
            continue
        decision = gate.picture_decision(caller, item, plan.assets)
        if decision.kind == "denied":
            continue
        info = tiles.info(item, plan, tms)
        west, south, east, north = bounds
        allowed = max_zoom(decision, tms, ((west + east) / 2.0, (south + north) / 2.0))
        if allowed is None:
            continue
        maxzoom = min(info.maxzoom, allowed)
        return bounds, min(info.minzoom, maxzoom), maxzoom
    raise NotFoundError(
        f"collection {collection_id!r} has no visible item with raster assets to draw"
    )


@router.get(
    "/collections/{collection_id}/tilejson.json",
    response_class=JSONResponse,
    summary="TileJSON of a collection mosaic",
)
def mosaic_tilejson(
    request: Request,
    collection_id: str,
    catalog: Catalog,
    access: Access,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    settings: Settings,
    spec: Render,
    tms_id: TmsId = "WebMercatorQuad",
    tile_format: Annotated[str | None, Query(description="png, jpg, webp or tif")] = None,
    tile_scale: Annotated[int, Query(ge=1, le=_MAX_SCALE)] = 1,
    bbox: MosaicBbox = None,
    datetime: MosaicDatetime = None,
    filter: MosaicFilter = None,
    filter_lang: MosaicFilterLang = None,
) -> JSONResponse:
    """TileJSON for the mosaic of the collection's visible items (as filtered)."""
    tms = get_tms(tms_id)
    fmt = image_format(tile_format)
    bounds, minzoom, maxzoom = _mosaic_info(
        request, collection_id, catalog, access, caller, gate, tiles, settings, spec, tms,
        bbox, datetime, filter, filter_lang,
    )  # fmt: skip
    extra = {"bbox": bbox, "datetime": datetime, "filter": filter, "filter-lang": filter_lang}
    template = (
        f"{base_url(request)}/tiles/collections/{q(collection_id)}/tiles/{tms.id}"
        f"/{{z}}/{{x}}/{{y}}{_suffix(tile_scale, fmt)}{_qs(spec, **extra)}"
    )
    doc = _tilejson(collection_id, template, minzoom, maxzoom, bounds)
    return JSONResponse(doc, headers=_cache_control(request, caller))


@router.get(
    "/collections/{collection_id}/WMTSCapabilities.xml",
    summary="WMTS capabilities of a collection mosaic",
    response_class=Response,
    responses={200: {"content": {WMTS_TYPE: {}}}},
)
def mosaic_wmts(
    request: Request,
    collection_id: str,
    catalog: Catalog,
    access: Access,
    caller: Caller,
    gate: Gate,
    tiles: Tiles,
    settings: Settings,
    spec: Render,
    tms_id: TmsId = "WebMercatorQuad",
    tile_format: Annotated[str | None, Query(description="png, jpg, webp or tif")] = None,
    bbox: MosaicBbox = None,
    datetime: MosaicDatetime = None,
    filter: MosaicFilter = None,
    filter_lang: MosaicFilterLang = None,
) -> Response:
    """One layer: the collection mosaic, for QGIS / OpenLayers / OWSLib."""
    tms = get_tms(tms_id)
    fmt = image_format(tile_format)
    bounds, minzoom, maxzoom = _mosaic_info(
        request, collection_id, catalog, access, caller, gate, tiles, settings, spec, tms,
        bbox, datetime, filter, filter_lang,
    )  # fmt: skip
    extra = {"bbox": bbox, "datetime": datetime, "filter": filter, "filter-lang": filter_lang}
    root = f"{base_url(request)}/tiles/collections/{q(collection_id)}"
    layer = WmtsLayer(
        identifier=collection_id,
        title=collection_id,
        bounds=bounds,
        template=f"{root}/tiles/{tms.id}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{fmt.name}"
        + _qs(spec, **extra),
        media_type=fmt.media_type,
        minzoom=minzoom,
        maxzoom=maxzoom,
    )
    xml = capabilities(
        title=f"eoshare: {collection_id}", url=str(request.url), layers=[layer], tms=tms
    )
    return Response(xml, media_type=WMTS_TYPE, headers=_cache_control(request, caller))


# --- STAC discovery -----------------------------------------------------------------------
def decorate_item(request: Request, base: str, item: JSON) -> JSON:
    """Items with raster assets get ``tilejson`` and ``xyz`` links and a
    ``rendered_preview`` asset (the Planetary Computer's conventions), drawn with the
    item's default rendering. Metadata only: nothing is read."""
    if not raster_assets(item):
        return item
    try:
        defaults = render_defaults(item)
    except InvalidRequestError:
        return item
    cid, iid = str(item.get("collection", "")), str(item["id"])
    root = _item_root(base, cid, iid)
    query = _qs(defaults)
    out = dict(item)
    out["links"] = [
        *[x for x in item.get("links", []) if x.get("rel") not in ("tilejson", "xyz")],
        link("tilejson", f"{root}/tilejson.json{query}", JSONT, title="TileJSON of this item"),
        link(
            "xyz",
            f"{root}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png{query}",
            "image/png",
            title="Map tiles (Web Mercator)",
        ),
        link(
            "wmts",
            f"{root}/WMTSCapabilities.xml{query}",
            WMTS_TYPE,
            title="WMTS capabilities of this item",
        ),
    ]
    assets = dict(item.get("assets") or {})
    assets["rendered_preview"] = {
        "href": f"{root}/preview.png{query}",
        "type": "image/png",
        "roles": ["overview"],
        "title": "Rendered preview",
        "rel": "preview",
    }
    out["assets"] = assets
    return out


def decorate_collection(request: Request, base: str, collection: JSON) -> JSON:
    """Collections get a ``wmts`` link (and a ``tilejson`` link) to the mosaic of their
    items, when that mosaic draws something for this caller: not for a collection whose
    assets are elsewhere (loaded STAC with remote hrefs), empty, or denied to the caller;
    there both routes would answer 404, and clients that follow every link (STAC
    Browser, GDAL's WMTS driver) would report errors."""
    out = dict(collection)
    links = [x for x in collection.get("links", []) if x.get("rel") not in ("tilejson", "wmts")]
    if _mosaic_drawable(request, str(collection["id"])):
        root = f"{base}/tiles/collections/{q(collection['id'])}"
        links += [
            link("wmts", f"{root}/WMTSCapabilities.xml", WMTS_TYPE, title="WMTS capabilities"),
            link("tilejson", f"{root}/tilejson.json", JSONT, title="TileJSON of the mosaic"),
        ]
    out["links"] = links
    return out


def _mosaic_drawable(request: Request, collection_id: str) -> bool:
    """Whether the collection's mosaic routes answer this caller with the default
    rendering: the same search and checks as they make (the picture metadata is cached)."""
    state = request.app.state
    try:
        _mosaic_info(
            request, collection_id, state.catalog, state.access,
            principal_of(request), state.gate, state.tiles, state.settings, RenderSpec(),
            get_tms("WebMercatorQuad"), None, None, None, None, check_visible=False,
        )  # fmt: skip
    except EoshareError:
        return False
    return True
