"""Bulk orders: ``POST /orders`` turns a search or a list of ids into an order;
``GET /orders/{id}`` its status; ``/orders/{id}/manifest.json`` (a STAC ItemCollection
with signed hrefs), ``/urls.txt`` (one signed URL a line), ``/order.meta4`` (Metalink 4
with sizes and sha-256) and ``/download.zip`` (every file, one streamed zip).

The quota is checked first: at most ``order_max_items`` items, ``order_max_bytes`` bytes
and ``orders_per_caller`` open orders; over it is a 403 that says which limit. Assets the
caller may not download are left out and listed under ``skipped``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

import eoshare
from eoshare.access import Principal
from eoshare.access.egress import AssetGrant
from eoshare.api.deps import Access, Caller, Catalog, Gate, Settings, Store
from eoshare.api.links import base_url, q, render_item
from eoshare.api.params import SearchBody, from_body
from eoshare.api.responses import GeoJSONResponse
from eoshare.api.routes.downloads import StoreResponse, get_signer, signed_url
from eoshare.catalog.assetkeys import held_assets
from eoshare.catalog.bounds import InputBounds
from eoshare.downloads.metalink import MEDIA_TYPE, MetalinkFile, metalink
from eoshare.downloads.orders import Order, OrderAsset, OrderBook
from eoshare.downloads.signing import encode_principal
from eoshare.downloads.zipstream import entry_name, stream_zip
from eoshare.errors import AccessDeniedError, InvalidRequestError, NotFoundError
from eoshare.ingest.checksums import hexdigest_from_multihash
from eoshare.storage.base import Store as StoreBackend

router = APIRouter(tags=["Orders"])


class ItemRef(BaseModel):
    collection: str
    id: str


class OrderRequest(BaseModel):
    """Either ``ids`` or ``search`` (a POST /search body); ``assets`` limits the asset keys."""

    ids: list[ItemRef] | None = None
    search: dict[str, Any] | None = None
    assets: list[str] | None = Field(default=None, description="asset keys to include")


def get_orders(request: Request) -> OrderBook:
    book: OrderBook = request.app.state.orders
    return book


def _own(request: Request, order_id: str, caller: Principal) -> Order:
    order = get_orders(request).get(order_id)
    if order.owner != encode_principal(caller):
        raise NotFoundError(f"no order {order_id!r}")  # others' orders do not exist for you
    return order


def _status(request: Request, order: Order) -> dict[str, Any]:
    base = f"{base_url(request)}/orders/{order.id}"
    doc: dict[str, Any] = {
        "id": order.id,
        "status": "expired" if order.expired else "ready",
        "created": _iso(order.created),
        "expires": _iso(order.expires),
        "items": len(order.items),
        "files": len(order.assets),
        "bytes": order.total_bytes,
        "skipped": order.skipped,
        "links": [],
    }
    if not order.expired:
        doc["links"] = [
            {"rel": "self", "href": base, "type": "application/json"},
            {"rel": "manifest", "href": f"{base}/manifest.json", "type": "application/geo+json"},
            {"rel": "urls", "href": f"{base}/urls.txt", "type": "text/plain"},
            {"rel": "metalink", "href": f"{base}/order.meta4", "type": MEDIA_TYPE},
            {"rel": "archive", "href": f"{base}/download.zip", "type": "application/zip"},
        ]
    return doc


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _order_asset(grant: AssetGrant, store: StoreBackend) -> OrderAsset:
    asset = grant.asset
    size = asset.get("file:size")
    if not isinstance(size, int):
        size = store.stat(grant.store_key).size
    sha = None
    if isinstance(asset.get("file:checksum"), str):
        try:
            sha = hexdigest_from_multihash(asset["file:checksum"])
        except ValueError:
            sha = None
    return OrderAsset(grant.collection_id, grant.item_id, grant.asset_key, grant.store_key,
                      size, sha, grant.media_type)  # fmt: skip


def _entry(a: OrderAsset) -> str:
    """The order's folder layout (zip and Metalink): ``<collection>/<item>/<file>``, each
    segment made safe so that no entry can leave the folder it is unpacked in."""
    return entry_name(a.collection, a.item, a.key.rsplit("/", 1)[-1])


@router.post("/orders", status_code=201, summary="Order a search or a list of items")
def create_order(
    request: Request,
    body: OrderRequest,
    catalog: Catalog,
    store: Store,
    access: Access,
    gate: Gate,
    caller: Caller,
    settings: Settings,
) -> Any:
    """Check the quota, resolve the items, keep the order; answers its status."""
    limits = settings.downloads
    book = get_orders(request)
    owner = encode_principal(caller)
    if (body.ids is None) == (body.search is None):
        raise InvalidRequestError("an order needs exactly one of 'ids' or 'search'")
    if book.open_count(owner) >= limits.orders_per_caller:
        raise AccessDeniedError(
            f"quota: you already have {limits.orders_per_caller} open orders; "
            "wait for one to expire"
        )
    visible = access.visible_filter(caller)
    items: list[dict[str, Any]] = []
    if body.ids is not None:
        if len(body.ids) > limits.order_max_items:
            raise AccessDeniedError(
                f"quota: an order may hold {limits.order_max_items} items, "
                f"this one asks for {len(body.ids)}"
            )
        for ref in body.ids:
            items.append(gate.item(caller, ref.collection, ref.id))
    else:
        sq, _ = from_body(
            SearchBody.model_validate(body.search),
            settings.api.default_limit,
            10**9,
            InputBounds.from_settings(settings.security),
        )
        sq = replace(sq, limit=limits.order_max_items + 1, offset=0, visible=visible, count=False)
        page = catalog.search(sq)
        if len(page.items) > limits.order_max_items:
            raise AccessDeniedError(
                f"quota: an order may hold {limits.order_max_items} items and this search "
                "matches more; narrow it"
            )
        items = page.items
    wanted = set(body.assets) if body.assets else None
    assets: list[OrderAsset] = []
    skipped: list[dict[str, str]] = []
    for item in items:
        for name, _, _ in held_assets(item):
            if wanted is not None and name not in wanted:
                continue
            grant = gate.try_grant(caller, item, name)
            if not isinstance(grant, AssetGrant):
                skipped.append({"collection": item["collection"], "item": item["id"],
                                "asset": name, "reason": grant.detail})  # fmt: skip
                continue
            assets.append(_order_asset(grant, store))
    total = sum(a.size or 0 for a in assets)
    if total > limits.order_max_bytes:
        raise AccessDeniedError(
            f"quota: an order may hold {limits.order_max_bytes} bytes, this one is {total}"
        )
    if not assets:
        raise InvalidRequestError(
            "nothing to order: the items have no files this node holds that you may download"
        )
    order = book.create(
        owner,
        assets,
        [(i["collection"], i["id"]) for i in items],
        skipped,
        limits.order_ttl_s,
    )
    return _status(request, order)


@router.get("/orders/{order_id}", summary="Order status")
def order_status(request: Request, order_id: str, caller: Caller) -> Any:
    return _status(request, _own(request, order_id, caller))


def _ready(request: Request, order_id: str, caller: Principal) -> Order:
    order = _own(request, order_id, caller)
    if order.expired:
        raise NotFoundError(f"order {order_id!r} expired at {_iso(order.expires)}; order again")
    return order


def _links(request: Request, order: Order, caller: Principal) -> list[tuple[OrderAsset, str]]:
    signer = get_signer(request)
    base = base_url(request)
    return [
        (
            a,
            signed_url(
                signer, caller, base, a.collection, a.item, a.asset, expires=int(order.expires)
            ),
        )
        for a in order.assets
    ]


@router.get("/orders/{order_id}/manifest.json", summary="Order manifest (STAC ItemCollection)")
def order_manifest(request: Request, order_id: str, gate: Gate, caller: Caller) -> GeoJSONResponse:
    order = _ready(request, order_id, caller)
    by_item: dict[tuple[str, str], dict[str, str]] = {}
    for a, url in _links(request, order, caller):
        by_item.setdefault((a.collection, a.item), {})[a.asset] = url
    features = []
    for (cid, iid), urls in by_item.items():
        try:
            item = render_item(request, gate.item(caller, cid, iid))
        except NotFoundError:
            continue  # deleted or hidden since the order was made
        item["assets"] = {
            k: {**v, "href": urls[k]} for k, v in item.get("assets", {}).items() if k in urls
        }
        features.append(item)
    self_href = f"{base_url(request)}/orders/{q(order.id)}/manifest.json"
    return GeoJSONResponse({"type": "FeatureCollection", "features": features,
                            "numberReturned": len(features),
                            "links": [{"rel": "self", "href": self_href,
                                       "type": "application/geo+json"}]})  # fmt: skip


@router.get("/orders/{order_id}/urls.txt", summary="Order as a plain URL list")
def order_urls(request: Request, order_id: str, caller: Caller) -> Response:
    order = _ready(request, order_id, caller)
    text = "".join(f"{url}\n" for _, url in _links(request, order, caller))
    return Response(text, media_type="text/plain; charset=utf-8")


@router.get("/orders/{order_id}/order.meta4", summary="Order as Metalink 4")
def order_metalink(request: Request, order_id: str, caller: Caller) -> Response:
    order = _ready(request, order_id, caller)
    files = [
        MetalinkFile(_entry(a), url, a.size, a.sha256) for a, url in _links(request, order, caller)
    ]
    body = metalink(files, generator=f"eoshare/{eoshare.__version__}", published=order.created)
    return Response(
        body,
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="order-{order.id}.meta4"'},
    )


@router.get("/orders/{order_id}/download.zip", summary="Every file of the order, one zip")
def order_zip(
    request: Request,
    order_id: str,
    gate: Gate,
    store: Store,
    caller: Caller,
    settings: Settings,
) -> Response:
    """Streamed as it is made (no Content-Length, no ranges: use the manifest to resume).
    Each file goes through the gate again (visible, bound, decided); the sizes of all of
    them are reserved against the caller's quota before the first byte, and each file
    sent is recorded."""
    order = _ready(request, order_id, caller)
    grants: list[tuple[str, AssetGrant, int]] = []
    for a in order.assets:
        try:
            grant = gate.grant(caller, gate.item(caller, a.collection, a.item), a.asset)
        except (NotFoundError, AccessDeniedError):
            continue  # deleted, hidden or refused since the order was made
        # fail with 404/503 before the first byte, not inside the zip
        grants.append((_entry(a), grant, store.stat(grant.store_key).size))
    done: dict[str, Callable[[int], None]] = {}
    try:
        for name, grant, size in grants:
            done[name] = grant.reserve(size)
    except BaseException:
        for finish in done.values():
            finish(0)
        raise

    def opener(grant: AssetGrant) -> Callable[[], Iterator[bytes]]:
        return lambda: store.iter_bytes(grant.store_key, 0, None, settings.downloads.chunk_bytes)

    seen: set[str] = set()

    def on_entry(name: str, nbytes: int) -> None:
        seen.add(name)
        done[name](nbytes)

    def settle_rest(_: int) -> None:  # entries never reached (the client went away)
        for name, finish in done.items():
            if name not in seen:
                finish(0)

    chunks = stream_zip([(name, opener(grant)) for name, grant, _ in grants], on_entry=on_entry)
    return StoreResponse(
        chunks,
        status=200,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="order-{order.id}.zip"',
            "X-Content-Type-Options": "nosniff",
        },
        on_done=settle_rest,
    )


__all__ = ["router"]
