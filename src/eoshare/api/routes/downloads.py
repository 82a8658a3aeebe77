"""Asset bytes: ``GET``/``HEAD /download/{collection_id}/{item_id}/{asset_key}``.

* ranges (206/416), ``Accept-Ranges``, ``Content-Range``, ``ETag`` with ``If-None-Match``
  (304) and ``If-Range``, ``Content-Length``, the asset's media type and an attachment
  ``Content-Disposition``; bodies are streamed from the store in chunks, never loaded whole;
* signed links: ``?exp=&sub=&kid=&sig=`` (see ``eoshare.downloads.signing``) stand in for
  the caller's credentials, so tools that send no headers can fetch;
* every request asks ``access``: the item must be visible (else 404), ``decide`` must
  allow the action (``download``, or ``thumbnail`` for thumbnails). A reduced decision
  allows thumbnails only: full-resolution files are refused (403 naming the agreement).
  Every GET that sends bytes is recorded with the number of bytes actually sent, also
  when the client goes away part-way.

The item decorator :func:`asset_hrefs` rewrites the ``href`` of every asset held in this
node's store (those with ``eoshare:key``) to this route, and signs it when the request
says ``?sign=true`` (item, items and search requests, GET or POST).
"""

from __future__ import annotations

import logging
import mimetypes
import re
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import anyio
import anyio.to_thread
from fastapi import APIRouter, Path, Request
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from eoshare.access import AccessPolicy, Action, Decision, Principal
from eoshare.api.deps import Access, Caller, Catalog, Settings, Store
from eoshare.api.errors import problem
from eoshare.api.links import JSON, q
from eoshare.downloads.ranges import plan
from eoshare.downloads.signing import SIGNATURE_PARAMS, Signer
from eoshare.errors import InvalidRequestError, NotFoundError

log = logging.getLogger(__name__)
router = APIRouter(tags=["Downloads"])

SIGN_PARAM = "sign"
_TRUE = {"1", "true", "yes", "on"}
_BAD_SEGMENT = re.compile(r"[\x00-\x1f\x7f/\\]")


# --- helpers shared with orders --------------------------------------------------------
def get_signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def check_segment(value: str, what: str) -> str:
    """Ids and asset keys are single path segments: no '/', '\\', '..', control
    characters, nor percent-encoded forms of them (400)."""
    decoded, previous = value, None
    while decoded != previous:
        from urllib.parse import unquote

        previous, decoded = decoded, unquote(decoded)
    for form in (value, decoded):
        if form in ("", ".", "..") or _BAD_SEGMENT.search(form) or form.startswith("~"):
            raise InvalidRequestError(
                f"{what} {value!r} is not valid: it must be one path segment "
                "(no '/', '\\', '..' or control characters)"
            )
    return value


def download_url(base: str, collection_id: str, item_id: str, asset_key: str) -> str:
    return f"{base}/download/{q(collection_id)}/{q(item_id)}/{q(asset_key)}"


def signed_url(
    signer: Signer,
    principal: Principal,
    base: str,
    collection_id: str,
    item_id: str,
    asset_key: str,
    *,
    expires: int | None = None,
) -> str:
    link = signer.sign(principal, collection_id, item_id, asset_key, expires=expires)
    return f"{download_url(base, collection_id, item_id, asset_key)}?{urlencode(link.params())}"


def action_for(asset: JSON) -> Action:
    roles = asset.get("roles") or []
    return Action.THUMBNAIL if isinstance(roles, list) and "thumbnail" in roles else Action.DOWNLOAD


def refusal(decision: Decision, action: Action, what: str) -> str | None:
    """Why a decision does not allow handing out the bytes, or None when it does."""
    agreement = f" (agreement {decision.agreement!r})" if decision.agreement else ""
    if decision.kind == "denied":
        return f"{what} may not be downloaded{agreement}: {decision.reason or 'access denied'}"
    if decision.kind == "reduced" and action != Action.THUMBNAIL:
        return (
            f"{what} is available to you only at reduced resolution "
            f"({decision.max_resolution_m:g} m){agreement}; full-resolution files cannot be "
            "downloaded: use the tiles or previews instead"
        )
    return None


def held_assets(item: JSON) -> Iterator[tuple[str, JSON, str]]:
    """(asset key, asset, store key) of every asset held in this node's store."""
    for name, asset in (item.get("assets") or {}).items():
        if isinstance(asset, dict) and isinstance(asset.get("eoshare:key"), str):
            yield name, asset, asset["eoshare:key"]


def filename_for(item_id: str, asset_key: str, store_key: str) -> str:
    base = store_key.rsplit("/", 1)[-1]
    ext = base[base.rfind(".") :] if "." in base else ""
    return f"{item_id}_{asset_key}{ext}"


def content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def media_type(asset: JSON, store_key: str) -> str:
    declared = asset.get("type")
    if isinstance(declared, str) and declared and "\n" not in declared and "\r" not in declared:
        return declared
    return mimetypes.guess_type(store_key)[0] or "application/octet-stream"


# --- the streaming response ------------------------------------------------------------
class StoreResponse(Response):
    """Streams chunks from a store iterator (read in a worker thread), stops as soon as
    the client disconnects, closes the iterator in every case and reports the bytes
    actually sent to ``on_done`` (the audit record)."""

    def __init__(
        self,
        chunks: Iterator[bytes] | None,
        *,
        status: int,
        headers: dict[str, str],
        on_done: Callable[[int], None] | None = None,
    ) -> None:
        # Response.__init__ would render a body; set what Starlette and FastAPI read.
        self.chunks = chunks
        self.status_code = self.status = status
        self.background = None
        self.raw_headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0
        gone = False
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": self.raw_headers})  # fmt: skip
            if self.chunks is None:
                await send({"type": "http.response.body", "body": b""})
                return

            async def watch(scope_: anyio.CancelScope) -> None:
                nonlocal gone
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        gone = True
                        scope_.cancel()
                        return

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, tg.cancel_scope)
                iterator = self.chunks
                while True:
                    chunk = await anyio.to_thread.run_sync(next, iterator, None)
                    if chunk is None:
                        break
                    try:
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})  # fmt: skip
                    except OSError:
                        gone = True
                        break
                    sent += len(chunk)
                if not gone:
                    await send({"type": "http.response.body", "body": b""})
                tg.cancel_scope.cancel()
        except Exception as exc:
            # Headers are out: all we can do is stop; the client sees a short body and
            # resumes with a range. Logged without a traceback (the cause is the store).
            log.error("download stopped", extra={"error": str(exc), "bytes": sent})
        finally:
            if self.chunks is not None:
                close = getattr(self.chunks, "close", None)
                if close is not None:
                    await anyio.to_thread.run_sync(close)
            if self.on_done is not None:
                self.on_done(sent)
            if gone:
                log.info("client went away", extra={"bytes": sent})


class GZipExceptBytes:
    """GZip for API documents, never for asset bytes (already compressed, sent with
    ranges and exact lengths): paths under /download and order archives pass through,
    and so do rendered images under /tiles (PNG/JPEG/WebP are compressed already; only
    TileJSON and WMTS capabilities there are text). The UI's static files come
    compressed once by their own handler.

    Level 4, not gzip's 9: a 10-item search page (~150 KB of JSON) takes ~6 ms at 9 and
    well under 1 ms at 4, for a few KB more on the wire."""

    def __init__(self, app: ASGIApp, minimum_size: int = 4096, compresslevel: int = 4) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)

    @staticmethod
    def _raw(path: str) -> bool:
        if path.startswith(("/download/", "/ui/")):
            return True
        if path.startswith("/orders/") and path.endswith(".zip"):
            return True
        return path.startswith("/tiles/") and not path.endswith((".json", ".xml"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if self._raw(path):
            await self.app(scope, receive, send)
        else:
            await self.gzip(scope, receive, send)


# --- the item decorator --------------------------------------------------------------
def asset_hrefs(request: Request, base: str, item: JSON) -> JSON:
    """Point held assets at this node's download route; sign them on ``?sign=true``."""
    cid, iid = item.get("collection"), item.get("id")
    assets = item.get("assets")
    if not isinstance(cid, str) or not isinstance(iid, str) or not isinstance(assets, dict):
        return item
    sign = request.query_params.get(SIGN_PARAM, "").lower() in _TRUE
    signer: Signer | None = getattr(request.app.state, "signer", None)
    principal: Principal | None = None
    if sign and signer is not None:
        from eoshare.api.deps import principal_of

        principal = principal_of(request)
    out = dict(item)
    new_assets: JSON = {}
    for name, asset in assets.items():
        if isinstance(asset, dict) and isinstance(asset.get("eoshare:key"), str):
            asset = dict(asset)
            if principal is not None and signer is not None:
                asset["href"] = signed_url(signer, principal, base, cid, iid, name)
            else:
                asset["href"] = download_url(base, cid, iid, name)
        new_assets[name] = asset
    out["assets"] = new_assets
    return out


# --- the route -----------------------------------------------------------------------
def _principal_for(request: Request, caller: Principal, cid: str, iid: str, key: str) -> Principal:
    params = request.query_params
    if any(p in params for p in SIGNATURE_PARAMS):
        signer = get_signer(request)
        return signer.verify(cid, iid, key, {p: params.get(p, "") for p in SIGNATURE_PARAMS})
    return caller


def _record(
    access: AccessPolicy,
    principal: Principal,
    item: JSON,
    asset_key: str,
    action: Action,
    decision: Decision,
) -> Callable[[int], None]:
    def done(nbytes: int) -> None:
        try:
            access.record(principal, item, asset_key, action, decision, nbytes)
        except Exception:  # the audit must not turn a finished download into an error
            log.exception("could not record a download grant")

    return done


_DOWNLOAD = "/download/{collection_id}/{item_id}/{asset_key}"


@router.head(
    _DOWNLOAD,
    operation_id="head_asset",
    summary="Size, type and ETag of an asset",
    response_class=Response,
)
@router.get(
    _DOWNLOAD,
    operation_id="download_asset",
    summary="Download an asset (ranges, signed links)",
    response_class=Response,
    responses={
        200: {"description": "the whole asset"},
        206: {"description": "the requested byte range"},
        304: {"description": "not modified (If-None-Match)"},
        403: {"description": "not allowed, or a bad/expired signed link"},
        416: {"description": "the range starts past the end"},
    },
)
def download(
    request: Request,
    collection_id: Annotated[str, Path()],
    item_id: Annotated[str, Path()],
    asset_key: Annotated[str, Path()],
    catalog: Catalog,
    store: Store,
    access: Access,
    caller: Caller,
    settings: Settings,
) -> Any:
    """The asset's bytes, whole or a range; signed links need no other credentials."""
    check_segment(collection_id, "collection id")
    check_segment(item_id, "item id")
    check_segment(asset_key, "asset key")
    principal = _principal_for(request, caller, collection_id, item_id, asset_key)
    item = catalog.get_item(collection_id, item_id, visible=access.visible_filter(principal))
    asset = (item.get("assets") or {}).get(asset_key)
    if not isinstance(asset, dict):
        raise NotFoundError(f"item {item_id!r} has no asset {asset_key!r}")
    key = asset.get("eoshare:key")
    if not isinstance(key, str):
        raise NotFoundError(
            f"asset {asset_key!r} of item {item_id!r} is not held by this node; "
            f"fetch it from its own href"
        )
    action = action_for(asset)
    decision = access.decide(principal, item, asset_key, action)
    why = refusal(decision, action, f"asset {asset_key!r} of item {item_id!r}")
    if why is not None:
        extra: dict[str, Any] = {"agreement": decision.agreement} if decision.agreement else {}
        return problem(403, why, **extra)
    stat = store.stat(key)
    etag = f'"{stat.etag}"' if stat.etag else f'"{stat.size:x}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Type": media_type(asset, key),
        "Content-Disposition": content_disposition(filename_for(item_id, asset_key, key)),
        "Cache-Control": "private, max-age=0, must-revalidate",
    }
    if stat.modified is not None:
        headers["Last-Modified"] = formatdate(stat.modified, usegmt=True)
    answer = plan(
        stat.size,
        etag,
        range_header=request.headers.get("range"),
        if_range=request.headers.get("if-range"),
        if_none_match=request.headers.get("if-none-match"),
    )
    if answer.status == 304:
        return Response(status_code=304, headers={k: v for k, v in headers.items()
                                                  if k in ("ETag", "Last-Modified",
                                                           "Cache-Control")})  # fmt: skip
    if answer.status == 416:
        return problem(
            416,
            f"the range {request.headers.get('range')!r} starts at or past the end of the "
            f"asset ({stat.size} bytes)",
            headers={"Content-Range": f"bytes */{stat.size}", "Accept-Ranges": "bytes"},
        )
    headers["Content-Length"] = str(answer.length)
    if answer.status == 206:
        headers["Content-Range"] = f"bytes {answer.start}-{answer.end - 1}/{stat.size}"
    if request.method == "HEAD" or answer.length == 0:
        return StoreResponse(None, status=answer.status, headers=headers)
    chunks = store.iter_bytes(key, answer.start, answer.end, settings.downloads.chunk_bytes)
    started = time.monotonic()
    record = _record(access, principal, item, asset_key, action, decision)

    def done(nbytes: int) -> None:
        record(nbytes)
        log.info(
            "download",
            extra={
                "collection": collection_id,
                "item": item_id,
                "asset": asset_key,
                "status": answer.status,
                "bytes": nbytes,
                "complete": nbytes == answer.length,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    return StoreResponse(chunks, status=answer.status, headers=headers, on_done=done)


def install(app: Any, settings: Any) -> None:
    """Build the download services once (called by ``create_app``) and mount the routes:
    the link signer, the order and upload books, the asset-href item decorator."""
    from eoshare.api.routes import orders, uploads
    from eoshare.downloads.orders import OrderBook
    from eoshare.downloads.signing import load_or_create_keys, parse_keys
    from eoshare.downloads.uploads import UploadBook

    d = settings.downloads
    data_dir = settings.data_dir
    keys = (
        parse_keys(d.signing_keys)
        if d.signing_keys
        else load_or_create_keys(data_dir / "signing-keys.json")
    )
    app.state.signer = Signer(keys, ttl_s=d.link_ttl_s, max_ttl_s=d.max_link_ttl_s)
    app.state.orders = OrderBook(data_dir / "orders.db")
    app.state.uploads = UploadBook(data_dir / "uploads.db", data_dir / "uploads")
    app.state.item_decorators = [*getattr(app.state, "item_decorators", []), asset_hrefs]
    for module in (sys.modules[__name__], orders, uploads):
        app.include_router(module.router)
