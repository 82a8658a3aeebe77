"""The openEO API 1.2 under ``/openeo/1.2`` (and ``/.well-known/openeo``).

Handlers are thin: they call ``ProcessingService`` (``app.state.processing``). Errors on
these paths are openEO error documents ``{"id", "code", "message"}``: ``OpenEOError``s
carry their own code; every other error (a problem document from the rest of the API,
the authentication middleware's 401) is rewritten by ``OpenEOMiddleware`` with the code
of its status. Bearer tokens arrive in openEO's form (``basic//TOKEN``,
``oidc/PROVIDER/TOKEN``) and are handed to the node's authentication as plain tokens.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, FastAPI, Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import eoshare
from eoshare.access.auth import plain_token
from eoshare.access.base import Principal
from eoshare.api.deps import Caller
from eoshare.api.links import base_url, render_item
from eoshare.api.responses import JSONResponse
from eoshare.errors import RateLimitedError
from eoshare.processing.errors import (
    CODE_FOR_STATUS,
    AuthenticationRequired,
    CredentialsInvalid,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessGraphMissing,
)
from eoshare.processing.execute import FORMATS
from eoshare.processing.graph import graph_of
from eoshare.processing.service import ProcessingService

JSON = dict[str, Any]
API_VERSION = "1.2.0"
PREFIX = "/openeo/1.2"
router = APIRouter(prefix=PREFIX, tags=["openEO"])
well_known = APIRouter(tags=["openEO"])
_BASIC_HEADER = b"x-eoshare-openeo-basic"
_ID = re.compile(r"^\w+$")


async def get_processing(request: Request) -> ProcessingService:
    service: ProcessingService = request.app.state.processing
    return service


Processing = Annotated[ProcessingService, Depends(get_processing)]


def error_document(status: int, code: str, message: str) -> Response:
    body = {"id": uuid.uuid4().hex, "code": code, "message": message, "links": []}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class OpenEOMiddleware:
    """On ``/openeo`` paths: openEO bearer forms become plain bearer tokens; Basic
    credentials reach ``/credentials/basic`` only; problem documents become openEO
    error documents."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/openeo"):
            await self.app(scope, receive, send)
            return
        headers = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() == "basic":
                    headers.append((_BASIC_HEADER, value))
                    continue
                if scheme.lower() == "bearer":
                    value = ("Bearer " + _plain_token(token.strip())).encode("latin-1")
            headers.append((name, value))
        scope = {**scope, "headers": headers}
        start: Message | None = None
        body = b""

        async def rewrite(message: Message) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                if ctype.startswith(b"application/problem+json"):
                    start = message
                    return
                await send(message)
                return
            if start is None:
                await send(message)
                return
            body += message.get("body", b"")
            if message.get("more_body"):
                return
            status = int(start["status"])
            try:
                detail = str(orjson.loads(body).get("detail", ""))
            except (orjson.JSONDecodeError, AttributeError):
                detail = body.decode("utf-8", "replace")
            code = CODE_FOR_STATUS.get(status, "Internal" if status >= 500 else "BadRequest")
            if status == 401 and detail and "not valid" in detail:
                code, status = "TokenInvalid", 403
            response = error_document(status, code, detail or code)
            extra = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-type", b"content-length")
            ]
            response.raw_headers = [*response.raw_headers, *extra]
            await response(scope, receive, send)

        await self.app(scope, receive, rewrite)


def _plain_token(token: str) -> str:
    return plain_token(token)


def install(app: FastAPI) -> None:
    """Register the openEO routes, their error handler and middleware (create_app)."""

    @app.exception_handler(OpenEOError)
    async def _openeo(request: Request, exc: OpenEOError) -> Response:
        return error_document(exc.status, exc.code, exc.detail)

    app.include_router(well_known)
    app.include_router(router)


# --- discovery and capabilities ---------------------------------------------------------
@well_known.get("/.well-known/openeo", summary="openEO versions of this node")
def discovery(request: Request) -> JSONResponse:
    base = base_url(request)
    return JSONResponse(
        {"versions": [{"url": f"{base}{PREFIX}/", "api_version": API_VERSION, "production": True}]}
    )


_ENDPOINTS = [
    ("/", ["GET"]),
    ("/conformance", ["GET"]),
    ("/credentials/basic", ["GET"]),
    ("/credentials/oidc", ["GET"]),
    ("/me", ["GET"]),
    ("/collections", ["GET"]),
    ("/collections/{collection_id}", ["GET"]),
    ("/processes", ["GET"]),
    ("/file_formats", ["GET"]),
    ("/result", ["POST"]),
    ("/validation", ["POST"]),
    ("/jobs", ["GET", "POST"]),
    ("/jobs/{job_id}", ["GET", "PATCH", "DELETE"]),
    ("/jobs/{job_id}/results", ["GET", "POST", "DELETE"]),
    ("/jobs/{job_id}/estimate", ["GET"]),
    ("/jobs/{job_id}/logs", ["GET"]),
    ("/process_graphs", ["GET"]),
    ("/process_graphs/{process_graph_id}", ["GET", "PUT", "DELETE"]),
]
CONFORMANCE = [
    "https://api.openeo.org/1.2.0",
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
]


@router.get("/", summary="openEO capabilities")
@router.get("", include_in_schema=False)
def capabilities(request: Request) -> JSONResponse:
    base = base_url(request) + PREFIX
    settings = request.app.state.settings
    return JSONResponse(
        {
            "api_version": API_VERSION,
            "backend_version": eoshare.__version__,
            "stac_version": "1.1.0",
            "type": "Catalog",
            "id": "eoshare",
            "title": f"{settings.api.title} (openEO)",
            "description": "openEO processing of this eoshare node's collections on Dask; "
            "results are published back to the catalogue.",
            "production": True,
            "conformsTo": CONFORMANCE,
            "endpoints": [{"path": p, "methods": m} for p, m in _ENDPOINTS],
            "links": [
                {"rel": "self", "href": f"{base}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{base}/conformance", "type": "application/json"},
                {"rel": "data", "href": f"{base}/collections", "type": "application/json"},
                {"rel": "version-history", "href": f"{base_url(request)}/.well-known/openeo",
                 "type": "application/json"},
            ],
        }
    )  # fmt: skip


@router.get("/conformance", summary="openEO conformance classes")
def conformance() -> JSONResponse:
    return JSONResponse({"conformsTo": CONFORMANCE})


# --- authentication ---------------------------------------------------------------------
@router.get("/credentials/basic", summary="exchange a user name and password for a token")
def credentials_basic(request: Request) -> JSONResponse:
    raw = request.headers.get(_BASIC_HEADER.decode())
    if not raw:
        raise AuthenticationRequired("Send 'Authorization: Basic' with a user name and password.")
    try:
        decoded = base64.b64decode(raw.split(" ", 1)[1].strip(), validate=True).decode()
        username, _, password = decoded.partition(":")
    except (IndexError, binascii.Error, UnicodeDecodeError) as exc:
        raise CredentialsInvalid("Credentials are not correct.") from exc
    services = request.app.state.access_services
    store = services.store
    address = request.client.host if request.client else None
    try:
        # the same lockout as /auth/login (eoshare.access.ratelimit): 429 when locked
        user = services.sign_in(username, password, address)
    except RateLimitedError:
        raise
    except Exception as exc:  # NotAuthenticatedError: one message for every cause
        raise CredentialsInvalid("Credentials are not correct.") from exc
    _, secret = store.create_token(user.username, days=1, label="openeo", who=user.username)
    return JSONResponse({"access_token": secret})


@router.get("/credentials/oidc", summary="the OpenID Connect providers of this node")
def credentials_oidc(request: Request) -> JSONResponse:
    providers = []
    for n, p in enumerate(request.app.state.settings.access.oidc):
        issuer = str(getattr(p, "issuer", ""))
        providers.append(
            {
                "id": getattr(p, "id", None) or f"p{n}",
                "issuer": issuer,
                "title": issuer,
                "scopes": ["openid"],
            }
        )
    return JSONResponse({"providers": providers})


def _user(caller: Principal) -> str:
    if caller.user is None:
        raise AuthenticationRequired("Unauthorized.")
    return caller.user


_USER_ID = re.compile(r"[^\w\-.~]")


@router.get("/me", summary="the authenticated user")
def me(caller: Caller) -> JSONResponse:
    user = _user(caller)
    return JSONResponse(
        {
            # openEO user ids are [\w-.~]+ (an OIDC user is "oidc:<issuer>:<subject>")
            "user_id": _USER_ID.sub("_", user),
            "name": user,
            "eoshare:member": caller.member,
            "eoshare:roles": sorted(caller.roles),
            "links": [],
        }
    )


# --- metadata ---------------------------------------------------------------------------
@router.get("/collections", summary="the collections the caller may see")
def list_collections(caller: Caller, processing: Processing) -> JSONResponse:
    return JSONResponse({"collections": processing.openeo_collections(caller), "links": []})


@router.get("/collections/{collection_id}", summary="one collection with cube:dimensions")
def get_collection(collection_id: str, caller: Caller, processing: Processing) -> JSONResponse:
    return JSONResponse(processing.openeo_collection(caller, collection_id, full=True))


@router.get("/processes", summary="the processes this node runs")
def processes(processing: Processing) -> JSONResponse:
    return JSONResponse({"processes": processing.process_list(), "links": []})


@router.get("/file_formats", summary="output formats")
def file_formats() -> JSONResponse:
    output = {
        name: {
            "title": name,
            "gis_data_types": ["raster"] if kind == "raster" else ["vector", "table", "other"],
            "parameters": {},
        }
        for name, (_, _, kind) in FORMATS.items()
    }
    return JSONResponse({"input": {}, "output": output})


@router.get("/service_types", include_in_schema=False)
@router.get("/udf_runtimes", include_in_schema=False)
def nothing() -> JSONResponse:
    return JSONResponse({})


# --- processing -------------------------------------------------------------------------
def _body(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise ProcessGraphMissing("The request body must be a JSON object with a process graph.")
    return body


@router.post("/validation", summary="check a process graph")
def validation(
    caller: Caller, processing: Processing, body: Annotated[Any, Body()] = None
) -> JSONResponse:
    body = _body(body)  # no process at all is a 400, an invalid one a list of errors
    try:
        graph = graph_of(body)
    except OpenEOError as exc:
        return JSONResponse({"errors": [{"code": exc.code, "message": exc.detail}]})
    return JSONResponse({"errors": processing.validation_errors(caller, graph)})


@router.post("/result", summary="run a process graph and return its result")
async def result(
    caller: Caller, processing: Processing, body: Annotated[Any, Body()] = None
) -> Response:
    graph = graph_of(_body(body))
    out = await run_in_threadpool(processing.run_sync, caller, graph)
    return FileResponse(
        out.path,
        media_type=out.media_type.split(";")[0] if "png" in out.media_type else out.media_type,
        filename=out.path.name,
        background=BackgroundTask(out.cleanup),
    )


# --- batch jobs -------------------------------------------------------------------------
@router.get("/jobs", summary="the caller's batch jobs")
def list_jobs(caller: Caller, processing: Processing, limit: int = 100) -> JSONResponse:
    jobs = processing.list_jobs(caller, limit=max(1, min(limit, 1000)))
    return JSONResponse({"jobs": [j.summary() for j in jobs], "links": []})


@router.post("/jobs", status_code=201, summary="create a batch job")
def create_job(
    request: Request, caller: Caller, processing: Processing, body: Annotated[Any, Body()] = None
) -> Response:
    job = processing.create_job(caller, _body(body))
    url = f"{base_url(request)}{PREFIX}/jobs/{job.id}"
    return Response(status_code=201, headers={"Location": url, "OpenEO-Identifier": job.id})


@router.get("/jobs/{job_id}", summary="describe a batch job")
def get_job(job_id: str, caller: Caller, processing: Processing) -> JSONResponse:
    return JSONResponse(processing.get_job(caller, job_id).to_dict())


@router.patch("/jobs/{job_id}", status_code=204, summary="change a batch job")
def update_job(
    job_id: str, caller: Caller, processing: Processing, body: Annotated[Any, Body()] = None
) -> Response:
    if not isinstance(body, dict):
        raise ProcessGraphInvalid("The request body must be a JSON object.")
    processing.update_job(caller, job_id, body)
    return Response(status_code=204)


@router.delete("/jobs/{job_id}", status_code=204, summary="delete a batch job")
def delete_job(job_id: str, caller: Caller, processing: Processing) -> Response:
    processing.delete_job(caller, job_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/results", status_code=202, summary="start a batch job")
def start_job(job_id: str, caller: Caller, processing: Processing) -> Response:
    processing.start_job(caller, job_id)
    return Response(status_code=202)


@router.delete("/jobs/{job_id}/results", status_code=204, summary="cancel a batch job")
def cancel_job(job_id: str, caller: Caller, processing: Processing) -> Response:
    processing.cancel_job(caller, job_id)
    return Response(status_code=204)


@router.get("/jobs/{job_id}/estimate", summary="estimate a batch job")
def estimate(job_id: str, caller: Caller, processing: Processing) -> JSONResponse:
    return JSONResponse(processing.estimate(caller, job_id))


@router.get("/jobs/{job_id}/logs", summary="the logs of a batch job")
def logs(
    job_id: str, caller: Caller, processing: Processing, offset: str | None = None
) -> JSONResponse:
    after = int(offset) if offset and offset.isdigit() else 0
    entries = processing.job_logs(caller, job_id, after=after)
    return JSONResponse({"logs": entries, "links": []})


@router.get("/jobs/{job_id}/results", summary="the results of a finished batch job")
def job_results(
    request: Request, job_id: str, caller: Caller, processing: Processing
) -> JSONResponse:
    item = processing.job_results(caller, job_id)
    out = render_item(request, item)
    signer = getattr(request.app.state, "signer", None)
    base = base_url(request)
    assets = {}
    # the files of the result, as signed links that need no header (clients download
    # every asset listed: previews and tiles are on the item in the STAC API)
    for name, asset in (out.get("assets") or {}).items():
        if not isinstance(asset, dict) or "eoshare:key" not in (item["assets"].get(name) or {}):
            continue
        if signer is not None:
            from eoshare.api.routes.downloads import signed_url

            href = signed_url(signer, caller, base, item["collection"], item["id"], name)
            asset = {**asset, "href": href}
        assets[name] = asset
    out["assets"] = assets
    job = processing.get_job(caller, job_id)
    out.setdefault("properties", {})["openeo:status"] = job.status
    return JSONResponse(out, media_type="application/geo+json")


# --- user-defined processes ---------------------------------------------------------------
@router.get("/process_graphs", summary="the caller's user-defined processes")
def list_process_graphs(caller: Caller, processing: Processing) -> JSONResponse:
    user = _user(caller)
    specs = processing.jobs.visible_process_graphs(user, caller.member)
    return JSONResponse({"processes": specs, "links": []})


@router.get("/process_graphs/{pg_id}", summary="one user-defined process")
def get_process_graph(pg_id: str, caller: Caller, processing: Processing) -> JSONResponse:
    user = _user(caller)
    return JSONResponse(processing.jobs.get_process_graph(user, caller.member, pg_id))


@router.put("/process_graphs/{pg_id}", status_code=200, summary="store a user-defined process")
def put_process_graph(
    pg_id: str, caller: Caller, processing: Processing, body: Annotated[Any, Body()] = None
) -> Response:
    user = _user(caller)
    spec = _body(body)
    if not _ID.match(pg_id):
        raise ProcessGraphInvalid("A process graph id is letters, digits and '_'.")
    graph = graph_of(spec)
    processing.check(caller, graph)
    shared = bool(spec.pop("eoshare:shared", False))
    spec = {**spec, "id": pg_id, "process_graph": graph}
    processing.jobs.put_process_graph(user, caller.member, spec, shared)
    return Response(status_code=200)


@router.delete("/process_graphs/{pg_id}", status_code=204, summary="delete a user-defined process")
def delete_process_graph(pg_id: str, caller: Caller, processing: Processing) -> Response:
    processing.jobs.delete_process_graph(_user(caller), pg_id)
    return Response(status_code=204)
