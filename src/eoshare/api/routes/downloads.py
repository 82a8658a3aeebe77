"""Asset bytes: ``GET``/``HEAD /download/{collection_id}/{item_id}/{asset_key}``.

* ranges (206/416), ``Accept-Ranges``, ``Content-Range``, ``ETag`` with ``If-None-Match``
  (304) and ``If-Range``, ``Content-Length``, the asset's media type and an attachment
  ``Content-Disposition``; bodies are streamed from the store in chunks, never loaded whole;
* signed links: ``?exp=&sub=&kid=&sig=`` (see ``eoshare.downloads.signing``) stand in for
  the caller's credentials, so tools that send no headers can fetch;
* every request goes through ``AssetGate`` (``eoshare.access.egress``, the one path for
  bytes): the item must be visible (else 404), the asset's store key bound to it, and
  ``decide`` must allow the action (``download``, or ``thumbnail`` for thumbnails). A
  reduced decision allows thumbnails only: full-resolution files are refused (403 naming
  the agreement). The size of the range is reserved against the caller's daily quota
  before sending (403 saying how much remains), and every GET that sends bytes is
  recorded with the number of bytes actually sent, also when the client goes away;
* the bytes are a provider's, not this origin's pages: ``X-Content-Type-Options:
  nosniff``, ``Content-Security-Policy: sandbox``, an attachment disposition, and a
  media type that was checked when the item was written (else guessed from the key).

The item decorator :func:`asset_hrefs` rewrites the ``href`` of every asset held in this
node's store (those with ``eoshare:key``) to this route, and signs it when the request
says ``?sign=true`` (item, items and search requests, GET or POST).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from email.utils import formatdate
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote, urlencode

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream
from fastapi import APIRouter, Path, Request
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from eoshare.access import Principal
from eoshare.access.egress import download_headers
from eoshare.api import zerocopy
from eoshare.api.deps import Caller, Gate, Settings, Store
from eoshare.api.errors import problem
from eoshare.api.links import JSON, q
from eoshare.catalog.assetkeys import held_assets
from eoshare.downloads.ranges import plan
from eoshare.downloads.signing import Signer
from eoshare.storage.local import read_file_range
from eoshare.storage.s3raw import RawBody

log = logging.getLogger(__name__)
router = APIRouter(tags=["Downloads"])

SIGN_PARAM = "sign"
# S3 bodies at least this long are spliced from a socket of their own to the client
# (eoshare.storage.s3raw); shorter ones (a GDAL client's ranged reads) take obstore's
# pooled connections
SPLICE_MIN_BYTES = 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}


# --- helpers shared with orders --------------------------------------------------------
def get_signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


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


# --- the streaming response ------------------------------------------------------------
class StoreResponse(Response):
    """Streams chunks from a store iterator (read in a worker thread), stops as soon as
    the client disconnects, closes the iterator in every case and reports the bytes
    actually sent to ``on_done`` (the audit record)."""

    def __init__(
        self,
        chunks: Iterator[bytes] | AsyncIterator[bytes | memoryview] | None,
        *,
        status: int,
        headers: dict[str, str],
        on_done: Callable[[int], None] | None = None,
        file: BinaryIO | None = None,
        span: tuple[int, int] = (0, 0),
        chunk_size: int = 4 * 1024 * 1024,
        source: RawBody | None = None,
    ) -> None:
        # Response.__init__ would render a body; set what Starlette and FastAPI read.
        self.chunks = chunks
        self.status_code = self.status = status
        self.background = None
        self.raw_headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
        self.on_done = on_done
        # an open local file and the bytes [start, end) of it to send: zero-copy where the
        # server offers it (eoshare.api.zerocopy), else read in chunks
        self.file = file
        self.span = span
        self.chunk_size = chunk_size
        # an S3 object's body on a socket: spliced to the client by the server
        # (eoshare.api.zerocopy), the route only opens it where the server offers that
        self.source = source

    async def _zero_copy(self, send: Send) -> int:
        assert self.file is not None
        start, end = self.span
        message: dict[str, Any] = {"type": zerocopy.EXTENSION, "file": self.file,
                                   "offset": start, "count": end - start,
                                   "more_body": False}  # fmt: skip
        await send(message)
        sent: int = message.get("sent", end - start)
        return sent

    async def _splice(self, send: Send) -> int:
        assert self.source is not None
        source, sent = self.source, 0
        if source.head:  # the body's first bytes, read with the S3 server's headers
            await send({"type": "http.response.body", "body": source.head, "more_body": True})
            sent = len(source.head)
        rest = source.length - sent
        if not rest:
            await send({"type": "http.response.body", "body": b""})
            return sent
        message: dict[str, Any] = {"type": zerocopy.EXTENSION, "file": source.sock,
                                   "offset": 0, "count": rest, "more_body": False}  # fmt: skip
        await send(message)
        return sent + int(message.get("sent", rest))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0
        gone = False
        parts: MemoryObjectReceiveStream[bytes | memoryview] | None = None
        try:
            if self.source is not None:
                await send({"type": "http.response.start", "status": self.status,
                            "headers": self.raw_headers})  # fmt: skip
                sent = await self._splice(send)
                gone = sent < self.source.length
                return
            if self.file is not None:
                if zerocopy.EXTENSION in (scope.get("extensions") or {}):
                    await send({"type": "http.response.start", "status": self.status,
                                "headers": self.raw_headers})  # fmt: skip
                    sent = await self._zero_copy(send)
                    gone = sent < self.span[1] - self.span[0]
                    return
                self.chunks = read_file_range(self.file, "", *self.span, self.chunk_size)
                self.file = None  # the generator closes it
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
                failed: list[Exception] = []
                if isinstance(iterator, AsyncIterator):
                    # read ahead: the next part arrives from the store while this one
                    # goes to the client (one part waits at most)
                    ahead, parts = anyio.create_memory_object_stream[bytes | memoryview](1)
                    tg.start_soon(_read_ahead, iterator, ahead, failed)
                while True:
                    if parts is not None:
                        try:
                            chunk: bytes | memoryview | None = await parts.receive()
                        except anyio.EndOfStream:
                            chunk = None
                    else:
                        assert not isinstance(iterator, AsyncIterator)
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
                if not gone and not failed:
                    await send({"type": "http.response.body", "body": b""})
                tg.cancel_scope.cancel()
            if failed:
                raise failed[0]
        except Exception as exc:
            # Headers are out: all we can do is stop; the client sees a short body and
            # resumes with a range. Logged without a traceback (the cause is the store).
            log.error("download stopped", extra={"error": str(exc), "bytes": sent})
        finally:
            if parts is not None:
                parts.close()
            if self.source is not None:
                self.source.close()
            if self.file is not None:
                self.file.close()
            if isinstance(self.chunks, AsyncGenerator):
                with anyio.CancelScope(shield=True):
                    await self.chunks.aclose()
            elif self.chunks is not None:
                close = getattr(self.chunks, "close", None)
                if close is not None:
                    await anyio.to_thread.run_sync(close)
            if self.on_done is not None:
                self.on_done(sent)
            if gone:
                log.info("client went away", extra={"bytes": sent})


async def _read_ahead(
    source: AsyncIterator[bytes | memoryview],
    sink: anyio.abc.ObjectSendStream[bytes | memoryview],
    failed: list[Exception],
) -> None:
    async with sink:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except Exception as exc:  # the store failed: the sender stops and says so
            failed.append(exc)


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
    held = {name for name, _, _ in held_assets(item)}
    for name, asset in assets.items():
        if name in held:
            asset = dict(asset)
            if principal is not None and signer is not None:
                asset["href"] = signed_url(signer, principal, base, cid, iid, name)
            else:
                asset["href"] = download_url(base, cid, iid, name)
        new_assets[name] = asset
    out["assets"] = new_assets
    return out


# --- the route -----------------------------------------------------------------------
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
        403: {"description": "not allowed, a bad/expired signed link, or over a quota"},
        416: {"description": "the range starts past the end"},
    },
)
def download(
    request: Request,
    collection_id: Annotated[str, Path()],
    item_id: Annotated[str, Path()],
    asset_key: Annotated[str, Path()],
    gate: Gate,
    store: Store,
    caller: Caller,
    settings: Settings,
) -> Any:
    """The asset's bytes, whole or a range; signed links need no other credentials."""
    principal = gate.caller(caller, collection_id, item_id, asset_key, request.query_params)
    grant = gate.open(principal, collection_id, item_id, asset_key)
    stat = store.stat(grant.store_key)
    etag = f'"{stat.etag}"' if stat.etag else f'"{stat.size:x}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        **download_headers(grant),
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
    # reserve the range's size against the quota before the first byte goes out
    record = grant.reserve(answer.length)
    accel = settings.downloads.accel_redirect
    if accel and store.local_path(grant.store_key) is not None:
        # nginx sends the file (and applies the request's Range itself); what was asked
        # for is what is recorded
        record(answer.length)
        handed = {k: v for k, v in headers.items() if k not in ("Content-Length", "Content-Range")}
        handed["X-Accel-Redirect"] = accel.rstrip("/") + "/" + quote(grant.store_key)
        return Response(status_code=200, headers=handed)
    if settings.downloads.redirect:
        target = store.presigned_url(grant.store_key, settings.downloads.redirect_ttl_s)
        if target is not None:
            # the store sends the bytes: what was asked for is what is recorded
            record(answer.length)
            log.info("download redirected", extra={"collection": collection_id,
                     "item": item_id, "asset": asset_key, "bytes": answer.length})  # fmt: skip
            return Response(
                status_code=307,
                headers={"Location": target, "Cache-Control": "private, no-store"},
            )
    chunks: Iterator[bytes] | AsyncIterator[bytes | memoryview] | None = None
    file: BinaryIO | None = None
    source: RawBody | None = None
    try:
        if settings.downloads.zero_copy and store.local_path(grant.store_key) is not None:
            # a local file: opened here (a missing one fails before any byte is promised)
            # and sent by the kernel where the server can (StoreResponse)
            file = store.open(grant.store_key)
        elif (source := _spliceable(request, store, grant.store_key, answer, settings)) is not None:
            # an S3 object over plain HTTP to a server that splices: the body, on a socket
            # of its own, goes from socket to socket in the kernel (StoreResponse)
            pass
        elif callable(streaming := getattr(store, "stream_bytes", None)):
            # a remote store with an asynchronous body (S3): no thread per chunk
            chunks = streaming(
                grant.store_key, answer.start, answer.end, settings.downloads.chunk_bytes
            )
        else:
            chunks = store.iter_bytes(
                grant.store_key, answer.start, answer.end, settings.downloads.chunk_bytes
            )
    except BaseException:
        record(0)
        raise
    started = time.monotonic()

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

    return StoreResponse(
        chunks, status=answer.status, headers=headers, on_done=done, file=file,
        span=(answer.start, answer.end), chunk_size=settings.downloads.chunk_bytes,
        source=source,
    )  # fmt: skip


def _spliceable(request: Request, store: Any, key: str, answer: Any, settings: Any
                ) -> RawBody | None:  # fmt: skip
    """The body on a socket of its own (``S3Store.raw_body``) when the server splices
    (zero-copy extension: plain TCP to the client), zero-copy is on and the body is long
    enough; else None (obstore's path). Fails like ``stream_bytes`` before any byte."""
    raw = getattr(store, "raw_body", None)
    if (
        not callable(raw)
        or not zerocopy.CAN_SPLICE
        or not settings.downloads.zero_copy
        or answer.length < SPLICE_MIN_BYTES
        or zerocopy.EXTENSION not in (request.scope.get("extensions") or {})
    ):
        return None
    body: RawBody | None = raw(key, answer.start, answer.end, whole=answer.status == 200)
    return body


def install(app: Any, settings: Any) -> None:
    """Build the download services once (called by ``create_app``) and mount the routes:
    the link signer, the order and upload books, the asset-href item decorator."""
    from eoshare.api.routes import orders, uploads
    from eoshare.downloads.orders import OrderBook
    from eoshare.downloads.signing import load_or_create_keys, parse_keys
    from eoshare.downloads.uploads import UploadBook

    d = settings.downloads
    data_dir = settings.data_dir
    key_file = None if d.signing_keys else data_dir / "signing-keys.json"
    keys = parse_keys(d.signing_keys) if key_file is None else load_or_create_keys(key_file)
    app.state.signer = Signer(
        keys, ttl_s=d.link_ttl_s, max_ttl_s=d.max_link_ttl_s, key_file=key_file
    )
    app.state.orders = OrderBook(settings.state_db(data_dir / "orders.db"))
    app.state.uploads = UploadBook(settings.state_db(data_dir / "uploads.db"), data_dir / "uploads")
    app.state.item_decorators = [*getattr(app.state, "item_decorators", []), asset_hrefs]
    for module in (sys.modules[__name__], orders, uploads):
        app.include_router(module.router)
