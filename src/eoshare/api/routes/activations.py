"""Disaster activations (``eoshare.disaster``): ``/activations``, the pass plan
(``/planning/passes``, ``/orbits``) and alerts (``/alerts/...``, server-sent events).

Handlers are thin: the caller, one service call, a document.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from eoshare.api.deps import Caller
from eoshare.api.links import base_url
from eoshare.api.params import parse_bbox_text, parse_intersects
from eoshare.api.responses import GeoJSONResponse, JSONResponse
from eoshare.disaster.activations import parse_time, who_of
from eoshare.disaster.areas import bbox_area, parse_area, parse_area_file
from eoshare.disaster.passes import Pass
from eoshare.disaster.service import DisasterServices
from eoshare.errors import InvalidRequestError

JSON = dict[str, Any]
router = APIRouter(tags=["Disaster activations"])
AnyBody = Annotated[dict[str, Any], Body()]
PassFormat = Literal["json", "geojson", "stapi"]


def disaster(request: Request) -> DisasterServices:
    svc: DisasterServices = request.app.state.disaster
    return svc


def _doc(request: Request, row: Any) -> JSON:
    out: JSON = disaster(request).activations.to_doc(row, base_url(request))
    return out


# --- standing pre-approvals (before /activations/{id}) --------------------------------
@router.get("/activations/preapprovals", response_class=JSONResponse, summary="Pre-approvals")
def list_preapprovals(request: Request, caller: Caller) -> JSONResponse:
    who_of(caller)
    return JSONResponse({"preapprovals": disaster(request).store.list_preapprovals()})


@router.put(
    "/activations/preapprovals/{member}",
    response_class=JSONResponse,
    summary="Give a member a standing pre-approval (operators)",
)
def put_preapproval(request: Request, member: str, caller: Caller) -> JSONResponse:
    return JSONResponse(disaster(request).activations.set_preapproval(caller, member, on=True))


@router.delete(
    "/activations/preapprovals/{member}",
    response_class=JSONResponse,
    summary="Withdraw a member's pre-approval (operators)",
)
def delete_preapproval(request: Request, member: str, caller: Caller) -> JSONResponse:
    return JSONResponse(disaster(request).activations.set_preapproval(caller, member, on=False))


# --- activations ----------------------------------------------------------------------
@router.post(
    "/activations/area",
    response_class=JSONResponse,
    summary="Read an area from an uploaded GeoJSON, KML, GeoPackage or zipped shapefile",
)
async def read_area(
    request: Request,
    caller: Caller,
    filename: Annotated[str, Query(description="its name: .geojson .kml .gpkg .zip")],
) -> JSONResponse:
    """The request body is the file itself; the answer is the area as GeoJSON, for the
    ``area`` of an activation request."""
    who_of(caller)
    data = await request.body()
    area = await run_in_threadpool(parse_area_file, data, filename)
    return JSONResponse({"area": area})


@router.get("/activations", response_class=JSONResponse, summary="Activations the caller sees")
def list_activations(
    request: Request,
    caller: Caller,
    state: Annotated[str | None, Query(description="requested, approved, ...")] = None,
) -> JSONResponse:
    rows = disaster(request).activations.visible_to(caller, state=state)
    return JSONResponse({"activations": [_doc(request, a) for a in rows]})


@router.post(
    "/activations", response_class=JSONResponse, status_code=201, summary="Request an activation"
)
def request_activation(request: Request, body: AnyBody, caller: Caller) -> JSONResponse:
    row = disaster(request).activations.request(caller, body)
    return JSONResponse(_doc(request, row), status_code=201)


@router.get("/activations/{aid}", response_class=JSONResponse, summary="One activation")
def get_activation(request: Request, aid: str, caller: Caller) -> JSONResponse:
    return JSONResponse(_doc(request, disaster(request).activations.get(caller, aid)))


@router.post("/activations/{aid}/approve", response_class=JSONResponse, summary="Approve")
def approve(
    request: Request, aid: str, caller: Caller, body: Annotated[JSON | None, Body()] = None
) -> JSONResponse:
    body = body or {}
    expires = parse_time(body["expires"], "expires") if body.get("expires") else None
    row = disaster(request).activations.approve(caller, aid, expires=expires, note=body.get("note"))
    return JSONResponse(_doc(request, row))


@router.post("/activations/{aid}/reject", response_class=JSONResponse, summary="Reject")
def reject(request: Request, aid: str, caller: Caller, body: AnyBody) -> JSONResponse:
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise InvalidRequestError("a rejection needs a 'reason'")
    return JSONResponse(
        _doc(request, disaster(request).activations.reject(caller, aid, reason=reason))
    )


@router.post("/activations/{aid}/close", response_class=JSONResponse, summary="Close")
def close(
    request: Request, aid: str, caller: Caller, body: Annotated[JSON | None, Body()] = None
) -> JSONResponse:
    note = (body or {}).get("note")
    row = disaster(request).activations.close(caller, aid, note=note)
    return JSONResponse(_doc(request, row))


@router.post(
    "/activations/{aid}/responders", response_class=JSONResponse, summary="Add a responder"
)
def add_responder(request: Request, aid: str, caller: Caller, body: AnyBody) -> JSONResponse:
    row = disaster(request).activations.add_responder(
        caller, aid, member=body.get("member"), user=body.get("user")
    )
    return JSONResponse(_doc(request, row))


@router.get(
    "/activations/{aid}/archive",
    response_class=GeoJSONResponse,
    summary="Pre- and post-event scenes, ranked (an ItemCollection)",
)
def archive(request: Request, aid: str, caller: Caller) -> GeoJSONResponse:
    return GeoJSONResponse(disaster(request).archive(caller, aid))


@router.get("/activations/{aid}/summary", response_class=JSONResponse, summary="Summary")
def summary(request: Request, aid: str, caller: Caller) -> JSONResponse:
    return JSONResponse(disaster(request).activations.summary(caller, aid))


@router.post(
    "/activations/{aid}/products",
    response_class=JSONResponse,
    status_code=201,
    summary="Make the activation's value-added product (map, report) now",
)
def make_product(request: Request, aid: str, caller: Caller) -> JSONResponse:
    return JSONResponse(request.app.state.products.make(caller, aid), status_code=201)


@router.get("/activations/{aid}/passes", summary="Passes of member satellites over the area")
def activation_passes(
    request: Request,
    aid: str,
    caller: Caller,
    start: Annotated[str | None, Query(description="RFC 3339; default now")] = None,
    hours: Annotated[float, Query(description="window length")] = 72.0,
    format: Annotated[PassFormat, Query()] = "json",
) -> Response:
    svc = disaster(request)
    a = svc.activations.get(caller, aid)
    begin = parse_time(start, "start") if start else None
    passes, warnings = svc.passes(a.area, begin, hours)
    return _passes_response(passes, warnings, format)


# --- planning -------------------------------------------------------------------------
@router.get("/planning/passes", summary="Passes of member satellites over an area")
def planning_passes(
    request: Request,
    bbox: Annotated[str | None, Query(description="west,south,east,north")] = None,
    intersects: Annotated[str | None, Query(description="a GeoJSON geometry")] = None,
    start: Annotated[str | None, Query(description="RFC 3339; default now")] = None,
    hours: Annotated[float, Query(description="window length")] = 72.0,
    usable_only: Annotated[bool, Query(description="only passes that can image it")] = False,
    format: Annotated[PassFormat, Query()] = "json",
) -> Response:
    area = _area(bbox, intersects)
    begin = parse_time(start, "start") if start else None
    passes, warnings = disaster(request).passes(area, begin, hours, usable_only=usable_only)
    return _passes_response(passes, warnings, format)


def _area(bbox: str | None, intersects: str | None) -> JSON:
    bbox = bbox.strip() if bbox else None
    intersects = intersects.strip() if intersects else None
    if bool(bbox) == bool(intersects):
        raise InvalidRequestError("give the area as one of bbox or intersects")
    if bbox:
        box = parse_bbox_text(bbox)
        if box is None:
            raise InvalidRequestError("bbox is four numbers: west,south,east,north")
        return bbox_area(list(box))
    geometry = parse_intersects(intersects)
    if geometry is None:
        raise InvalidRequestError("intersects is a GeoJSON geometry")
    return parse_area(geometry)


def _passes_response(passes: list[Pass], warnings: list[str], format: PassFormat) -> Response:
    if format == "geojson":
        return GeoJSONResponse(
            {"type": "FeatureCollection", "features": [p.feature() for p in passes],
             "warnings": warnings}
        )  # fmt: skip
    if format == "stapi":
        return GeoJSONResponse(
            {"type": "FeatureCollection", "features": [p.opportunity() for p in passes],
             "links": [], "warnings": warnings}
        )  # fmt: skip
    return JSONResponse({"passes": [p.to_dict() for p in passes], "warnings": warnings})


@router.get("/orbits", response_class=JSONResponse, summary="Loaded element sets")
def orbits(request: Request) -> JSONResponse:
    svc = disaster(request)
    now = svc.now()
    return JSONResponse(
        {"satellites": svc.orbits.listing(now), "warnings": svc.orbits.stale_warnings(now)}
    )


# --- alerts ---------------------------------------------------------------------------
@router.post(
    "/alerts/subscriptions", response_class=JSONResponse, status_code=201, summary="Subscribe"
)
def subscribe(request: Request, body: AnyBody, caller: Caller) -> JSONResponse:
    alerts = disaster(request).alerts
    row, secret = alerts.subscribe(caller, body)
    # the webhook secret is shown once, here
    return JSONResponse({**alerts.to_doc(row), "secret": secret}, status_code=201)


@router.get("/alerts/subscriptions", response_class=JSONResponse, summary="My subscriptions")
def list_subscriptions(request: Request, caller: Caller) -> JSONResponse:
    alerts = disaster(request).alerts
    return JSONResponse({"subscriptions": [alerts.to_doc(s) for s in alerts.visible_to(caller)]})


@router.get("/alerts/subscriptions/{sid}", response_class=JSONResponse, summary="A subscription")
def get_subscription(request: Request, sid: str, caller: Caller) -> JSONResponse:
    alerts = disaster(request).alerts
    return JSONResponse(alerts.to_doc(alerts.get(caller, sid)))


@router.post(
    "/alerts/subscriptions/{sid}/secret",
    response_class=JSONResponse,
    summary="A new webhook secret (shown once)",
)
def rotate_secret(request: Request, sid: str, caller: Caller) -> JSONResponse:
    return JSONResponse({"id": sid, "secret": disaster(request).alerts.rotate_secret(caller, sid)})


@router.delete("/alerts/subscriptions/{sid}", status_code=204, summary="Unsubscribe")
def cancel_subscription(request: Request, sid: str, caller: Caller) -> Response:
    disaster(request).alerts.cancel(caller, sid)
    return Response(status_code=204)


@router.get("/alerts/dead-letters", response_class=JSONResponse, summary="Failed webhooks")
def dead_letters(request: Request, caller: Caller) -> JSONResponse:
    return JSONResponse({"dead_letters": disaster(request).alerts.dead_letters(caller)})


# Server-sent events: an endless text/event-stream, left out of the OpenAPI document (a
# schema-driven client would wait on it forever); described in the README.
@router.get("/alerts/stream", summary="Alerts as server-sent events", include_in_schema=False)
async def stream(request: Request, caller: Caller) -> StreamingResponse:
    alerts = disaster(request).alerts
    listener = alerts.listen(caller)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(listener.queue.get(), timeout=15.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield b": keep-alive\n\n"
                    continue
                data = orjson.dumps(event)
                yield b"id: " + event["id"].encode() + b"\nevent: alert\ndata: " + data + b"\n\n"
        finally:
            alerts.unlisten(listener)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
