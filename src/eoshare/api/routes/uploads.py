"""Resumable uploads by providers (publishing rights on the target collection):

* ``POST /uploads`` ``{"collection", "filename", "size", "sha256"[, "item_id"]}`` -> the
  upload's id, ``chunk_bytes`` and ``chunk_count``;
* ``PUT /uploads/{id}/chunks/{n}`` the bytes of chunk ``n`` (every chunk is
  ``chunk_bytes`` long but the last), with ``X-Chunk-SHA256: <hex>``;
* ``GET /uploads/{id}`` which chunks are ``missing`` (to resume after an interruption);
* ``POST /uploads/{id}/complete`` verifies the whole file's sha256, then ingests it
  (COG + item, atomically); only now does anything become visible;
* ``DELETE /uploads/{id}`` abandons it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from eoshare.access import Principal
from eoshare.api.deps import Caller, Catalog, Settings, Store
from eoshare.api.links import base_url, q
from eoshare.catalog.validate import check_new_id
from eoshare.downloads.signing import encode_principal
from eoshare.downloads.uploads import Upload, UploadBook
from eoshare.errors import (
    AccessDeniedError,
    ConflictError,
    IngestError,
    NotAuthenticatedError,
    NotFoundError,
)

router = APIRouter(tags=["Uploads"])


class UploadRequest(BaseModel):
    collection: str
    filename: str
    size: int = Field(description="the whole file's size in bytes")
    sha256: str = Field(description="the whole file's sha256, hex")
    item_id: str | None = None


def get_uploads(request: Request) -> UploadBook:
    book: UploadBook = request.app.state.uploads
    return book


def _check_publisher(
    request: Request, principal: Principal, collection: str, *, exists: bool = True
) -> None:
    if principal.anonymous:
        raise NotAuthenticatedError("uploads need 'Authorization: Bearer <token>'")
    check = getattr(request.app.state.access, "check_publish", None)
    if check is None:
        if "operator" not in principal.roles:
            raise AccessDeniedError("uploads are for operators on this node")
        return
    check(principal, collection, exists=exists, creating=False,
          new_access=request.app.state.settings.access.new_collection_access)  # fmt: skip


def _own(request: Request, upload_id: str, caller: Principal) -> Upload:
    upload = get_uploads(request).get(upload_id)
    if upload.owner != encode_principal(caller):
        raise NotFoundError(f"no upload {upload_id!r}")
    return upload


def _status(request: Request, u: Upload) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": u.id,
        "state": u.state,
        "collection": u.collection,
        "filename": u.filename,
        "size": u.size,
        "sha256": u.sha256,
        "chunk_bytes": u.chunk_bytes,
        "chunk_count": u.chunk_count,
        "received_bytes": u.received_bytes,
        "missing": u.missing,
        "href": f"{base_url(request)}/uploads/{q(u.id)}",
    }
    if u.result:
        doc["result"] = u.result
    return doc


@router.post("/uploads", status_code=201, summary="Start a resumable upload")
def start_upload(
    request: Request, body: UploadRequest, caller: Caller, catalog: Catalog, settings: Settings
) -> Any:
    try:
        catalog.get_collection(body.collection)
        exists = True
    except NotFoundError:
        exists = False
    # publishing rights first: a hidden collection answers as an unknown one
    _check_publisher(request, caller, body.collection, exists=exists)
    if not exists:
        raise NotFoundError(f"collection {body.collection!r} does not exist")
    if body.item_id is not None:
        check_new_id(body.item_id, "'item_id'")  # it names the item's folder in the store
    d = settings.downloads
    upload = get_uploads(request).create(
        encode_principal(caller),
        collection=body.collection,
        filename=body.filename,
        size=body.size,
        sha256=body.sha256,
        chunk_bytes=d.upload_chunk_bytes,
        max_bytes=d.upload_max_bytes,
        ttl_s=d.upload_ttl_s,
        item_id=body.item_id,
    )
    return _status(request, upload)


@router.get("/uploads/{upload_id}", summary="Upload status (which chunks are missing)")
def upload_status(request: Request, upload_id: str, caller: Caller) -> Any:
    return _status(request, _own(request, upload_id, caller))


@router.put("/uploads/{upload_id}/chunks/{index}", summary="Send one chunk")
async def put_chunk(request: Request, upload_id: str, index: int, caller: Caller) -> Any:
    upload = await run_in_threadpool(_own, request, upload_id, caller)
    data = await request.body()
    digest = request.headers.get("x-chunk-sha256")
    book = get_uploads(request)
    upload = await run_in_threadpool(book.write_chunk, upload, index, data, digest)
    return _status(request, upload)


@router.post("/uploads/{upload_id}/complete", summary="Verify and ingest the upload")
def complete_upload(
    request: Request,
    upload_id: str,
    caller: Caller,
    catalog: Catalog,
    store: Store,
    settings: Settings,
) -> Any:
    from eoshare.ingest.raster import ingest_rasters
    from eoshare.ingest.safe_open import RasterLimits

    book = get_uploads(request)
    upload = _own(request, upload_id, caller)
    if upload.state == "complete":
        return _status(request, upload)
    if upload.state != "receiving":
        raise ConflictError(f"upload {upload_id!r} is {upload.state}")
    _check_publisher(request, caller, upload.collection)
    path = book.verify(upload)
    # Fail fast (503) when the store is unreachable, before any work is done.
    store.exists(f"{upload.collection}/.eoshare-probe")
    report = ingest_rasters(
        [path],
        catalog=catalog,
        store=store,
        collection_id=upload.collection,
        item_id=upload.item_id,
        # a user's file: GeoTIFF only, no references outside it, bounded size
        limits=RasterLimits.from_settings(settings.ingest),
    )
    if not report.ok:
        reasons = "; ".join(f.reason for f in report.failures)
        # The staged bytes stay: the provider can complete again once the cause is fixed.
        raise IngestError(f"the upload could not be ingested: {reasons}")
    base = base_url(request)
    result = {
        "items": [
            f"{base}/collections/{q(upload.collection)}/items/{q(i)}" for i in report.item_ids
        ]
    }
    book.set_state(upload, "complete", result)
    book.discard_bytes(upload)
    return _status(request, upload)


@router.delete("/uploads/{upload_id}", status_code=204, summary="Abandon an upload")
def abort_upload(request: Request, upload_id: str, caller: Caller) -> None:
    upload = _own(request, upload_id, caller)
    get_uploads(request).delete(upload)
